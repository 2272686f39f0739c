// Package config loads and validates a gresec tunnel configuration (TOML).
//
// Every error names the file, the key and what was expected, so that an
// operator can fix a config without reading the source.
package config

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/gresec/gresec/esp"
)

// Encapsulation sizes used to derive the default MTU and MSS.
const (
	ipv4HeaderLen   = 20
	ipv6HeaderLen   = 40
	greHeaderLen    = 4
	tcpIPv4Overhead = 40
	tcpIPv6Overhead = 60

	// DefaultUnderlayMTU is the link MTU assumed under the tunnel.
	DefaultUnderlayMTU = 1500
	// DefaultReplayWindow is the seed's `replay window-size 1024`.
	DefaultReplayWindow = 1024
	maxReplayWindow     = 1 << 16
	minMTU              = 1280 // IPv6 needs 1280 on every link it crosses
	maxMTU              = 65535 - 100
)

// Keying says where the ESP keys come from.
type Keying string

const (
	KeyingStatic Keying = "static"
	KeyingIKEv2  Keying = "ikev2"
	KeyingNone   Keying = "none" // plain GRE, no ESP
)

// Mode is the ESP mode, [ipsec] mode.
type Mode string

const (
	ModeTransport Mode = "transport"
	ModeTunnel    Mode = "tunnel"
)

// Encap is what carries the inner packets, [tunnel] encap.
type Encap string

const (
	EncapGRE  Encap = "gre"  // GRE (RFC 2784/2890)
	EncapIPIP Encap = "ipip" // IP in IP, protocol 4 or 41 (RFC 2003, RFC 4213)
	EncapNone Encap = "none" // nothing: the inner packet is ESP's payload (VTI)
)

// Shape is one of the four tunnel shapes gresec builds.
type Shape uint8

const (
	// ShapeGRE is GRE in transport-mode ESP (or plain GRE).
	ShapeGRE Shape = iota
	// ShapeGRETunnel is GRE in tunnel-mode ESP: the ESP payload is an IP
	// header between the underlay addresses, protocol 47, then the GRE
	// packet (a crypto map in tunnel mode over a GRE tunnel).
	ShapeGRETunnel
	// ShapeVTI is the inner packet in tunnel-mode ESP (a route-based
	// VTI, an xfrm interface).
	ShapeVTI
	// ShapeIPIP is IP-in-IP in transport-mode ESP (FreeBSD gif with a
	// transport policy for protocol 4). On the wire it is the same as
	// ShapeVTI: only the negotiation differs.
	ShapeIPIP
)

// Shape is the tunnel's shape, from Mode and Encap (validated together).
func (c *Config) Shape() Shape {
	switch {
	case c.Encap == EncapGRE && c.Mode == ModeTunnel:
		return ShapeGRETunnel
	case c.Encap == EncapNone:
		return ShapeVTI
	case c.Encap == EncapIPIP:
		return ShapeIPIP
	}
	return ShapeGRE
}

// String names the shape as check and status print it.
func (s Shape) String() string {
	switch s {
	case ShapeGRETunnel:
		return "GRE in tunnel-mode ESP"
	case ShapeVTI:
		return "IP in tunnel-mode ESP (VTI)"
	case ShapeIPIP:
		return "IP-in-IP in transport-mode ESP"
	}
	return "GRE in transport-mode ESP"
}

// Config is a validated tunnel configuration.
type Config struct {
	Path string

	Interface string
	Local     netip.Addr
	Remote    netip.Addr // invalid with AnyRemote until a peer binds it
	// AnyRemote: remote = "any", a dynamic peer chosen by its IKE
	// identity (ike.remote_id), responder only.
	AnyRemote   bool
	Addresses   []netip.Prefix
	MTU         int  // inner (TUN) MTU
	MTUComputed bool // true when MTU was derived, not configured
	UnderlayMTU int
	MSSClamp    bool
	GREKey      *uint32 // RFC 2890 key, when configured
	// Keepalive is how often a GRE keepalive is sent (0: never), and
	// KeepaliveRetries how many in a row may go unanswered before the
	// interface loses carrier: IOS's `keepalive 10 3`.
	Keepalive        time.Duration
	KeepaliveRetries int

	Keying       Keying
	ReplayWindow int
	// UDPEncap and UDPPort: ESP in UDP (config/udp.go).
	UDPEncap UDPEncap
	UDPPort  int
	// NATKeepalive: how often the side behind a NAT sends a NAT keepalive
	// when nothing else went out (IKEv2 only; 0: never).
	NATKeepalive time.Duration
	// Mode is the ESP mode and Encap what carries the inner packets
	// inside it; together they are the tunnel's shape (Shape).
	Mode  Mode
	Encap Encap

	Static Static
	IKE    IKE

	ControlSocket string
	LogLevel      string

	// MetricsListen is where the Prometheus endpoint listens ("": off).
	MetricsListen netip.AddrPort
	// User is who the daemon becomes once its devices and sockets are
	// open ("": it stays who started it).
	User string
}

// Static holds manually configured SAs.
type Static struct {
	SPIOut, SPIIn uint32
	KeyOut, KeyIn Key           // Transform.KeymatLen() bytes each
	Transform     esp.Transform // of both SAs (config/esp.go)
	SeqOut        uint64        // last sequence number sent before this start
}

// Key is ESP key material: the encryption key (with its 4-byte salt for
// AES-GCM and ChaCha20-Poly1305) followed by the integrity key (AES-CBC's
// HMAC key), the order of IKEv2 KEYMAT. Its formatting methods never
// reveal the bytes.
type Key []byte

func (k Key) String() string             { return fmt.Sprintf("<%d-byte key redacted>", len(k)) }
func (k Key) GoString() string           { return k.String() }
func (k Key) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.String()) }

// MSS4 and MSS6 are the largest TCP MSS that fits the tunnel MTU.
func (c *Config) MSS4() int { return c.MTU - tcpIPv4Overhead }
func (c *Config) MSS6() int { return c.MTU - tcpIPv6Overhead }

// MSSInUDP4 and MSSInUDP6 are the largest TCP MSS whose packet still fits
// the underlay when IKE floats ESP into UDP (udp_encap = "auto" behind a
// NAT): the MTU is the raw path's, 8 bytes too large for that one, and a
// clamp to it keeps TCP from making every full segment an IP fragment.
func (c *Config) MSSInUDP4() int { return c.mtuInUDP() - tcpIPv4Overhead }
func (c *Config) MSSInUDP6() int { return c.mtuInUDP() - tcpIPv6Overhead }

// mtuInUDP is the tunnel MTU, or less if ESP in UDP would not fit it.
func (c *Config) mtuInUDP() int {
	if c.Keying == KeyingNone || c.udpOverhead() != 0 {
		return c.MTU
	}
	fit := c.ESPTransform().TunnelMTU(c.UnderlayMTU, c.outerLen()+udpHeaderLen, c.EncapLen())
	return min(c.MTU, fit)
}

// Overhead is what the encapsulation adds to an inner packet of the
// largest size, outer IP header included.
func (c *Config) Overhead() int {
	outer := c.outerLen()
	if c.Keying == KeyingNone {
		return outer + c.EncapLen()
	}
	outer += c.udpOverhead()
	// ESP pads encapsulation+inner+2 to whole blocks of its transform.
	return outer + c.EncapLen() + c.ESPTransform().Overhead(c.EncapLen()+c.MTU)
}

func (c *Config) outerLen() int {
	if c.Local.Is6() {
		return ipv6HeaderLen
	}
	return ipv4HeaderLen
}

// EncapLen is what the shape puts in front of the inner packet inside
// ESP (or, without ESP, inside the outer IP header): the GRE header in
// transport mode, tunnel mode's own IP header and the GRE header, or
// nothing for a VTI and IP-in-IP (whose only IP header is the outer one,
// and ESP comes between it and the inner packet).
func (c *Config) EncapLen() int {
	switch c.Shape() {
	case ShapeGRETunnel:
		return c.outerLen() + c.greLen()
	case ShapeVTI, ShapeIPIP:
		return 0
	}
	return c.greLen()
}

func (c *Config) greLen() int {
	if c.GREKey != nil {
		return greHeaderLen + 4
	}
	return greHeaderLen
}

// ComputedMTU is the MTU gresec derives when none is configured (for
// callers that change the transforms after Parse, like peerconf's tests).
func (c *Config) ComputedMTU() int { return c.computeMTU() }

// computeMTU returns the largest inner MTU whose encapsulated packet fits
// in the underlay MTU, padding included: 1442 for AES-GCM over IPv4/1500.
func (c *Config) computeMTU() int {
	outer := c.outerLen()
	if c.Keying == KeyingNone {
		return c.UnderlayMTU - outer - c.EncapLen()
	}
	outer += c.udpOverhead()
	return c.ESPTransform().TunnelMTU(c.UnderlayMTU, outer, c.EncapLen())
}

// file mirrors the TOML layout. Pointers tell "absent" from "zero".
type file struct {
	Tunnel struct {
		Interface        *string  `toml:"interface"`
		Local            *string  `toml:"local"`
		Remote           *string  `toml:"remote"`
		Addresses        []string `toml:"addresses"`
		MTU              *int64   `toml:"mtu"`
		UnderlayMTU      *int64   `toml:"underlay_mtu"`
		MSSClamp         *bool    `toml:"mss_clamp"`
		GREKey           *int64   `toml:"gre_key"`
		Keepalive        *string  `toml:"keepalive"`
		KeepaliveRetries *int64   `toml:"keepalive_retries"`
		Encap            *string  `toml:"encap"`
	} `toml:"tunnel"`
	IPsec struct {
		Keying       *string `toml:"keying"`
		Mode         *string `toml:"mode"`
		ReplayWindow *int64  `toml:"replay_window"`
		UDPEncap     *string `toml:"udp_encap"`
		UDPPort      *int64  `toml:"udp_port"`
		NATKeepalive *string `toml:"nat_keepalive"`
	} `toml:"ipsec"`
	Static *struct {
		SPIOut *int64  `toml:"spi_out"`
		SPIIn  *int64  `toml:"spi_in"`
		KeyOut *string `toml:"key_out"`
		KeyIn  *string `toml:"key_in"`
		// The transform and its extra keys: config/esp.go.
		ESP        *string `toml:"esp"`
		ESN        *bool   `toml:"esn"`
		AuthKeyOut *string `toml:"auth_key_out"`
		AuthKeyIn  *string `toml:"auth_key_in"`
		SeqOut     *int64  `toml:"seq_out"`
	} `toml:"static"`
	IKE     *ikeFile `toml:"ike"`
	Control struct {
		Socket *string `toml:"socket"`
	} `toml:"control"`
	Log struct {
		Level *string `toml:"level"`
	} `toml:"log"`
	Metrics struct {
		Listen *string `toml:"listen"`
	} `toml:"metrics"`
	Daemon struct {
		User *string `toml:"user"`
	} `toml:"daemon"`
}

// Error is a configuration error at one key.
type Error struct {
	File string
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Key, e.Msg)
}

// Load reads, decodes and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	switch c.Keying {
	case KeyingStatic:
		if err := checkPrivate(path); err != nil {
			return nil, err
		}
	case KeyingIKEv2, KeyingIKEv1:
		if err := loadPSKs(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// checkPrivate refuses a key-holding file that others can read, as ssh does.
func checkPrivate(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return &Error{File: path, Key: "static", Msg: fmt.Sprintf(
			"file holds keys but has mode %#o; expected no group/other access (chmod 600 %s)", st.Mode().Perm(), path)}
	}
	return nil
}

var ifaceName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,14}$`)

// Parse decodes and validates TOML text; name is used in error messages.
// No error it returns shows text of the file that could be key material:
// syntax errors give the line and what was expected there, type errors
// the key and the TOML types, and values are echoed only when they cannot
// be keys (see quote).
func Parse(name string, data []byte) (*Config, error) {
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return nil, syntaxError(name, data, err)
	}
	if err := checkTypes(name, doc); err != nil {
		return nil, err
	}
	var f file
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		// checkTypes has matched every value with the layout, so this is
		// the decoder disagreeing; its message may quote a value.
		return nil, &Error{File: name, Msg: "cannot be decoded (the decoder's message is not shown: it may quote key material)"}
	}
	if und := md.Undecoded(); len(und) > 0 {
		// checkTypes reports unknown keys first; kept as a safety net.
		return nil, &Error{File: name, Msg: "unknown key; see docs/configuration.md for the valid keys"}
	}
	v := validator{file: name}
	c := v.build(&f)
	if v.err != nil {
		return nil, v.err
	}
	return c, nil
}

type validator struct {
	file string
	err  error
}

func (v *validator) fail(key, format string, args ...any) {
	if v.err == nil {
		v.err = &Error{File: v.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
}

func (v *validator) build(f *file) *Config {
	c := &Config{Path: v.file, UnderlayMTU: DefaultUnderlayMTU, ReplayWindow: DefaultReplayWindow, MSSClamp: true, LogLevel: "info"}
	t := &f.Tunnel

	c.Interface = "gre0"
	if t.Interface != nil {
		if !ifaceName.MatchString(*t.Interface) {
			v.fail("tunnel.interface", "expected an interface name of 1-15 letters, digits, '_', '.', '-' starting with a letter, got %s", quote(*t.Interface))
		}
		c.Interface = *t.Interface
	}
	c.Local = v.addr("tunnel.local", t.Local)
	if t.Remote != nil && *t.Remote == RemoteAny {
		c.AnyRemote = true
	} else {
		c.Remote = v.addr("tunnel.remote", t.Remote)
	}
	if c.Local.IsValid() && c.Remote.IsValid() {
		if c.Local.Is4() != c.Remote.Is4() {
			v.fail("tunnel.remote", "expected the same address family as tunnel.local (%s), got %s", c.Local, c.Remote)
		}
		if c.Local == c.Remote {
			v.fail("tunnel.remote", "expected an address other than tunnel.local, got %s", c.Remote)
		}
	}
	for i, s := range t.Addresses {
		key := fmt.Sprintf("tunnel.addresses[%d]", i)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			v.fail(key, "expected an address with prefix length like \"198.19.0.0/31\" or \"2001:db8::/127\", got %s", quote(s))
			continue
		}
		// The prefix becomes a route into the tunnel: one that holds an
		// underlay address would send the ESP itself into the tunnel.
		for _, u := range []struct {
			name string
			addr netip.Addr
		}{{"tunnel.local", c.Local}, {"tunnel.remote", c.Remote}} {
			if u.addr.IsValid() && p.Contains(u.addr) {
				v.fail(key, "%s contains %s %s: the route to the peer would lead into the tunnel itself; expected a prefix apart from the underlay addresses", p, u.name, u.addr)
			}
		}
		c.Addresses = append(c.Addresses, p)
	}
	if t.MSSClamp != nil {
		c.MSSClamp = *t.MSSClamp
	}
	if t.GREKey != nil {
		if *t.GREKey < 0 || *t.GREKey > 0xffffffff {
			v.fail("tunnel.gre_key", "expected an integer 0..4294967295, got %d", *t.GREKey)
		}
		k := uint32(*t.GREKey)
		c.GREKey = &k
	}
	v.keepalive(t.Keepalive, t.KeepaliveRetries, c)
	if t.UnderlayMTU != nil {
		if *t.UnderlayMTU < 576 || *t.UnderlayMTU > 65535 {
			v.fail("tunnel.underlay_mtu", "expected an integer 576..65535, got %d", *t.UnderlayMTU)
		}
		c.UnderlayMTU = int(*t.UnderlayMTU)
	}

	c.Keying = KeyingStatic
	if k := f.IPsec.Keying; k != nil {
		switch Keying(*k) {
		case KeyingStatic, KeyingNone, KeyingIKEv2, KeyingIKEv1:
			c.Keying = Keying(*k)
		default:
			v.fail("ipsec.keying", "expected \"static\", \"ikev2\", \"ikev1\" or \"none\", got %s", quote(*k))
		}
	}
	if c.AnyRemote && c.Keying != KeyingIKEv2 {
		v.fail("tunnel.remote", "\"any\" needs ipsec.keying = \"ikev2\" (the peer is known by its IKE identity), got %q", c.Keying)
	}
	v.shape(f, c)
	if w := f.IPsec.ReplayWindow; w != nil {
		if *w < 0 || *w > maxReplayWindow {
			v.fail("ipsec.replay_window", "expected an integer 0..%d (0 disables anti-replay), got %d", maxReplayWindow, *w)
		}
		c.ReplayWindow = int(*w)
	}
	v.udpEncap(f.IPsec.UDPEncap, f.IPsec.UDPPort, c)
	c.NATKeepalive = v.duration("ipsec.nat_keepalive", f.IPsec.NATKeepalive, DefaultNATKeepalive, 0)
	if f.IPsec.NATKeepalive != nil && !c.Keying.IKE() {
		// Only IKE finds a NAT and keeps its mapping; a key that does
		// nothing would let a reader believe it does.
		v.fail("ipsec.nat_keepalive", "NAT keepalives belong to IKE's NAT traversal, but ipsec.keying is %q; remove it", c.Keying)
	}

	switch c.Keying {
	case KeyingStatic:
		v.static(f, c)
	case KeyingIKEv2, KeyingIKEv1:
		v.ike(f.IKE, c)
		if c.Keying == KeyingIKEv1 {
			v.ikev1(c)
		}
		v.anyRemote(f.IKE, c)
		if f.Static != nil {
			v.fail("static", "static keys given but ipsec.keying is %q; expected no [static] section", c.Keying)
		}
	case KeyingNone:
		if f.Static != nil {
			v.fail("static", "keys given but ipsec.keying is \"none\"; expected no [static] section")
		}
	}
	if !c.Keying.IKE() && f.IKE != nil {
		v.fail("ike", "[ike] given but ipsec.keying is %q; expected keying = \"ikev2\" or \"ikev1\", or no [ike] section", c.Keying)
	}

	if t.MTU != nil {
		if *t.MTU < minMTU || *t.MTU > maxMTU {
			v.fail("tunnel.mtu", "expected an integer %d..%d, got %d", minMTU, maxMTU, *t.MTU)
		}
		c.MTU = int(*t.MTU)
	} else if c.Local.IsValid() {
		c.MTU = c.computeMTU()
		c.MTUComputed = true
	}

	c.ControlSocket = "/run/gresec/" + c.Interface + ".sock"
	v.daemonWide(f, c)
	return c
}

// daemonWide validates the daemon-wide sections ([control], [log],
// [metrics], [daemon]) into c, over its defaults.
func (v *validator) daemonWide(f *file, c *Config) {
	if s := f.Control.Socket; s != nil {
		if !strings.HasPrefix(*s, "/") {
			v.fail("control.socket", "expected an absolute path, got %s", quote(*s))
		}
		c.ControlSocket = *s
	}
	if l := f.Log.Level; l != nil {
		switch *l {
		case "debug", "info", "warn", "error":
			c.LogLevel = *l
		default:
			v.fail("log.level", "expected \"debug\", \"info\", \"warn\" or \"error\", got %s", quote(*l))
		}
	}
	if l := f.Metrics.Listen; l != nil {
		ap, err := netip.ParseAddrPort(*l)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			v.fail("metrics.listen", "expected an address and port like \"127.0.0.1:9470\" or \"[::1]:9470\", got %s", quote(*l))
		}
		c.MetricsListen = ap
	}
	if u := f.Daemon.User; u != nil {
		if !userName.MatchString(*u) {
			v.fail("daemon.user", "expected a user name or numeric uid such as \"gresec\", got %s", quote(*u))
		}
		c.User = *u
	}
}

// Keepalive limits, IOS's: `keepalive <1-32767> <1-255>`.
const (
	DefaultKeepaliveRetries = 3
	maxKeepalive            = 32767 * time.Second
	maxKeepaliveRetries     = 255
)

func (v *validator) keepalive(period *string, retries *int64, c *Config) {
	c.KeepaliveRetries = DefaultKeepaliveRetries
	if period != nil && *period != "0" {
		c.Keepalive = v.duration("tunnel.keepalive", period, 0, time.Second)
		if c.Keepalive > maxKeepalive {
			v.fail("tunnel.keepalive", "expected a duration from 1s to %s, or \"0\" for none, got %s", maxKeepalive, quote(*period))
		}
	}
	if retries == nil {
		return
	}
	if *retries < 1 || *retries > maxKeepaliveRetries {
		v.fail("tunnel.keepalive_retries", "expected an integer 1..%d, got %d", maxKeepaliveRetries, *retries)
	}
	if c.Keepalive == 0 {
		v.fail("tunnel.keepalive_retries", "given, but no keepalives are sent; expected tunnel.keepalive as well, such as keepalive = \"10s\"")
	}
	c.KeepaliveRetries = int(*retries)
}

// shape reads [ipsec] mode and [tunnel] encap and refuses the
// combinations no peer builds or gresec cannot carry.
func (v *validator) shape(f *file, c *Config) {
	c.Mode, c.Encap = ModeTransport, EncapGRE
	if m := f.IPsec.Mode; m != nil {
		switch Mode(*m) {
		case ModeTransport, ModeTunnel:
			c.Mode = Mode(*m)
		default:
			v.fail("ipsec.mode", "expected \"transport\" or \"tunnel\", got %s", quote(*m))
			return
		}
	}
	if e := f.Tunnel.Encap; e != nil {
		switch Encap(*e) {
		case EncapGRE, EncapIPIP, EncapNone:
			c.Encap = Encap(*e)
		default:
			v.fail("tunnel.encap", "expected \"gre\", \"ipip\" or \"none\", got %s", quote(*e))
			return
		}
	}
	switch {
	case c.Keying == KeyingNone && c.Encap != EncapGRE:
		v.fail("tunnel.encap", "%q needs ESP, but ipsec.keying is \"none\" (plain GRE); expected encap = \"gre\" or keying = \"static\" or \"ikev2\"", c.Encap)
	case c.Keying == KeyingNone && c.Mode == ModeTunnel:
		v.fail("ipsec.mode", "\"tunnel\" is an ESP mode, but ipsec.keying is \"none\" (plain GRE); expected mode = \"transport\" or keying = \"static\" or \"ikev2\"")
	case c.Mode == ModeTransport && c.Encap == EncapNone:
		v.fail("tunnel.encap", "\"none\" leaves nothing to carry the inner packets in transport mode; expected mode = \"tunnel\" (a VTI), or encap = \"gre\" or \"ipip\"")
	case c.Mode == ModeTunnel && c.Encap == EncapIPIP:
		v.fail("tunnel.encap", "\"ipip\" inside tunnel-mode ESP would wrap each packet in two IP headers; expected encap = \"none\" (a VTI: tunnel mode is the IP-in-IP) or mode = \"transport\" (IP-in-IP protected like FreeBSD gif)")
	}
	if c.Encap != EncapGRE {
		if c.GREKey != nil {
			v.fail("tunnel.gre_key", "given, but tunnel.encap is %q: there is no GRE header to carry it; expected no gre_key", c.Encap)
		}
		if c.Keepalive != 0 {
			v.fail("tunnel.keepalive", "given, but tunnel.encap is %q: keepalives are GRE packets; expected no keepalive (a VTI relies on IKE's dead peer detection)", c.Encap)
		}
	}
}

var userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$|^[0-9]{1,10}$`)

func (v *validator) addr(key string, s *string) netip.Addr {
	if s == nil {
		v.fail(key, "missing; expected an IPv4 or IPv6 address")
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(*s)
	if err != nil || a.Zone() != "" {
		v.fail(key, "expected an IPv4 or IPv6 address, got %s", quote(*s))
		return netip.Addr{}
	}
	a = a.Unmap()
	if why := notPeerAddress(a); why != "" {
		v.fail(key, "expected a unicast address of this host or its peer, got %s (%s)", a, why)
	}
	return a
}

// notPeerAddress says why a cannot be an end of the underlay, or "".
// A packet to any of these never reaches one peer: it stays on this host
// (loopback), reaches no one (unspecified) or everyone (broadcast,
// multicast, link-local multicast among them).
func notPeerAddress(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "unspecified"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	case a.IsLinkLocalMulticast():
		return "link-local multicast"
	case a.IsMulticast():
		return "multicast"
	case a.IsLoopback():
		return "loopback: ESP to it never leaves this host"
	}
	return ""
}

func (v *validator) static(f *file, c *Config) {
	s := f.Static
	if s == nil {
		v.fail("static", "missing; ipsec.keying = \"static\" needs spi_out, spi_in, key_out and key_in")
		return
	}
	c.Static.SPIOut = v.spi("static.spi_out", s.SPIOut)
	c.Static.SPIIn = v.spi("static.spi_in", s.SPIIn)
	v.staticESP(&c.Static, s.ESP, s.ESN, s.KeyOut, s.AuthKeyOut, s.KeyIn, s.AuthKeyIn, s.SeqOut)
}

func (v *validator) spi(key string, n *int64) uint32 {
	switch {
	case n == nil:
		v.fail(key, "missing; expected an SPI like 0x1001")
	case *n < 256 || *n > 0xffffffff:
		// RFC 4303 §2.1: SPIs 1-255 are reserved by IANA, 0 is local use.
		v.fail(key, "expected an integer 256..0xffffffff (1-255 are reserved), got %d", *n)
	default:
		return uint32(*n)
	}
	return 0
}
