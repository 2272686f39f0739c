package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gresec/gresec/ike"
)

// Defaults are the iked + IOS pair's: iked/IOS with aes-256-gcm, prf hmac-sha2-384,
// ecp384, PFS ecp384, 86400 s / 3600 s / 500 MiB, DPD.
var (
	DefaultProposals     = []string{"aes256gcm16-prfsha384-ecp384"}
	DefaultESPProposals  = []string{"aes256gcm16-ecp384"}
	DefaultLifetime      = 24 * time.Hour
	DefaultChildLifetime = time.Hour
	DefaultChildBytes    = uint64(500 << 20)
	DefaultDPD           = 60 * time.Second
	// Retransmissions: 2, 4, 8, 16 s, then give up at 32 s.
	DefaultRetransmitTimeout = 2 * time.Second
	DefaultRetransmitBase    = 2.0
	DefaultRetransmitTries   = 5
)

// IKE is the [ike] section: how IKEv2 negotiates the ESP keys.
type IKE struct {
	Initiate            bool
	LocalPSKFile        string
	RemotePSKFile       string
	LocalPSK, RemotePSK ike.Secret // read by Load, never by Parse
	LocalID, RemoteID   ike.ID
	LocalIDText         string
	RemoteIDText        string
	Proposals           []ike.Proposal
	ESPProposals        []ike.Proposal
	ProposalText        []string
	ESPProposalText     []string
	Lifetime            time.Duration
	ChildLifetime       time.Duration
	ChildLifetimeBytes  uint64
	DPD                 time.Duration
	// Retransmissions: first timeout, growth factor, tries (strongSwan's
	// retransmit_timeout, retransmit_base, retransmit_tries).
	RetransmitTimeout time.Duration
	RetransmitBase    float64
	RetransmitTries   int
	// LocalTS and RemoteTS are a VTI's traffic selectors: the prefixes
	// of inner addresses on our side and the peer's (encap = "none"
	// only; the other shapes negotiate their underlay addresses).
	LocalTS, RemoteTS []netip.Prefix

	// IKE fragmentation (RFC 7383): Fragmentation announces and uses it
	// (fragmentation = "yes", the default, or "no"); FragmentSize is the
	// largest IP datagram carrying a fragment (fragment_size, default
	// ike.DefaultFragmentSize).
	Fragmentation bool
	FragmentSize  int
}

type ikeFile struct {
	Initiate           *bool    `toml:"initiate"`
	PSKFile            *string  `toml:"psk_file"`
	LocalPSKFile       *string  `toml:"local_psk_file"`
	RemotePSKFile      *string  `toml:"remote_psk_file"`
	LocalID            *string  `toml:"local_id"`
	RemoteID           *string  `toml:"remote_id"`
	Proposals          []string `toml:"proposals"`
	ESPProposals       []string `toml:"esp_proposals"`
	Lifetime           *string  `toml:"lifetime"`
	ChildLifetime      *string  `toml:"child_lifetime"`
	ChildLifetimeBytes *string  `toml:"child_lifetime_bytes"`
	DPD                *string  `toml:"dpd"`
	RetransmitTimeout  *string  `toml:"retransmit_timeout"`
	RetransmitBase     *float64 `toml:"retransmit_base"`
	RetransmitTries    *int64   `toml:"retransmit_tries"`
	LocalTS            []string `toml:"local_ts"`
	RemoteTS           []string `toml:"remote_ts"`

	Fragmentation *string `toml:"fragmentation"`
	FragmentSize  *int64  `toml:"fragment_size"`
}

func (v *validator) ike(f *ikeFile, c *Config) {
	if f == nil {
		v.fail("ike", "missing; ipsec.keying = %q needs an [ike] section with at least psk_file", c.Keying)
		return
	}
	k := &c.IKE
	k.Initiate = true
	k.LocalTS = v.selectors("ike.local_ts", f.LocalTS, c)
	k.RemoteTS = v.selectors("ike.remote_ts", f.RemoteTS, c)
	if f.Initiate != nil {
		k.Initiate = *f.Initiate
	}
	switch {
	case f.PSKFile != nil && (f.LocalPSKFile != nil || f.RemotePSKFile != nil):
		v.fail("ike.psk_file", "expected either psk_file or local_psk_file + remote_psk_file, not both")
	case f.PSKFile != nil:
		k.LocalPSKFile, k.RemotePSKFile = *f.PSKFile, *f.PSKFile
	case f.LocalPSKFile != nil && f.RemotePSKFile != nil:
		k.LocalPSKFile, k.RemotePSKFile = *f.LocalPSKFile, *f.RemotePSKFile
	default:
		v.fail("ike.psk_file", "missing; expected the path of a file holding the pre-shared key (mode 0600)")
	}

	k.LocalIDText = c.Local.String()
	if f.LocalID != nil {
		k.LocalIDText = *f.LocalID
	}
	var err error
	if k.LocalID, err = ike.ParseID(k.LocalIDText); err != nil {
		v.fail("ike.local_id", "expected an IP address, a domain name or user@domain, got %s", quote(k.LocalIDText))
	}
	k.RemoteIDText = ""
	if c.Remote.IsValid() {
		k.RemoteIDText = c.Remote.String()
	}
	if f.RemoteID != nil {
		k.RemoteIDText = *f.RemoteID
	}
	if k.RemoteIDText == "" {
		// remote = "any": anyRemote says what is missing.
	} else if k.RemoteID, err = ike.ParseID(k.RemoteIDText); err != nil {
		v.fail("ike.remote_id", "expected an IP address, a domain name or user@domain, got %s", quote(k.RemoteIDText))
	}

	k.ProposalText, k.Proposals = v.proposals("ike.proposals", ike.ProtoIKE, f.Proposals, DefaultProposals)
	k.ESPProposalText, k.ESPProposals = v.proposals("ike.esp_proposals", ike.ProtoESP, f.ESPProposals, DefaultESPProposals)
	k.Lifetime = v.duration("ike.lifetime", f.Lifetime, DefaultLifetime, time.Minute)
	k.ChildLifetime = v.duration("ike.child_lifetime", f.ChildLifetime, DefaultChildLifetime, 3*time.Second)
	k.DPD = v.duration("ike.dpd", f.DPD, DefaultDPD, 0)
	k.RetransmitTimeout = v.duration("ike.retransmit_timeout", f.RetransmitTimeout, DefaultRetransmitTimeout, 100*time.Millisecond)
	k.RetransmitBase, k.RetransmitTries = DefaultRetransmitBase, DefaultRetransmitTries
	if b := f.RetransmitBase; b != nil {
		if *b < 1 || *b > 4 {
			v.fail("ike.retransmit_base", "expected a factor from 1 to 4, got %g", *b)
		}
		k.RetransmitBase = *b
	}
	if n := f.RetransmitTries; n != nil {
		if *n < 1 || *n > 20 {
			v.fail("ike.retransmit_tries", "expected 1 to 20 tries, got %d", *n)
		}
		k.RetransmitTries = int(*n)
	}
	k.ChildLifetimeBytes = DefaultChildBytes
	if f.ChildLifetimeBytes != nil {
		n, err := parseBytes(*f.ChildLifetimeBytes)
		if err != nil || (n != 0 && n < 1<<20) {
			v.fail("ike.child_lifetime_bytes", "expected a size like \"500MiB\", \"2GB\" or \"0\" (no limit), at least 1MiB, got %s", quote(*f.ChildLifetimeBytes))
		}
		k.ChildLifetimeBytes = n
	}
	v.fragmentation(f, k, c.Keying)
}

// fragmentation reads ike.fragmentation and ike.fragment_size.
func (v *validator) fragmentation(f *ikeFile, k *IKE, keying Keying) {
	if keying == KeyingIKEv1 {
		// RFC 7383 is IKEv2's; the IKEv1 engine sends whole messages.
		// Taking the keys would promise small datagrams that never come.
		k.Fragmentation = false
		switch {
		case f.FragmentSize != nil:
			v.fail("ike.fragment_size", "keying = \"ikev1\" has no IKE fragmentation (RFC 7383 is IKEv2's); remove it")
		case f.Fragmentation != nil && *f.Fragmentation != "no":
			v.fail("ike.fragmentation", "keying = \"ikev1\" has no IKE fragmentation (RFC 7383 is IKEv2's); remove it or write \"no\"")
		}
		return
	}
	k.Fragmentation, k.FragmentSize = true, ike.DefaultFragmentSize
	if f.Fragmentation != nil {
		switch *f.Fragmentation {
		case "yes":
		case "no":
			k.Fragmentation = false
		default:
			v.fail("ike.fragmentation", "expected \"yes\" or \"no\", got %s", quote(*f.Fragmentation))
		}
	}
	if n := f.FragmentSize; n != nil {
		if *n < minFragmentSize || *n > 65535 {
			v.fail("ike.fragment_size", "expected an IP datagram size from %d to 65535 bytes, got %d", minFragmentSize, *n)
		}
		k.FragmentSize = int(*n)
	}
}

// minFragmentSize leaves an IKE fragment room for content under IPv6
// and UDP headers with any SK cipher.
const minFragmentSize = 200

func (v *validator) proposals(key string, proto ike.ProtocolID, given, def []string) ([]string, []ike.Proposal) {
	if given == nil {
		given = def
	}
	if len(given) == 0 {
		v.fail(key, "expected at least one proposal like %q", def[0])
		return nil, nil
	}
	var all []ike.Proposal
	for i, s := range given {
		ps, err := ike.ParseProposals(proto, s)
		if err != nil {
			v.fail(fmt.Sprintf("%s[%d]", key, i), "expected a proposal like %q: %s", def[0], hexRun.ReplaceAllString(err.Error(), "(not shown)"))
			continue
		}
		if proto == ike.ProtoESP {
			if _, removed := ike.DataPlaneESP(ps, ESPSupported); len(removed) > 0 {
				v.fail(fmt.Sprintf("%s[%d]", key, i), "%s: not implemented by the ESP data plane; remove it", removed[0])
				continue
			}
		}
		all = append(all, ps...)
	}
	return given, ike.Numbered(all)
}

func (v *validator) duration(key string, s *string, def, min time.Duration) time.Duration {
	if s == nil {
		return def
	}
	if *s == "0" && min == 0 {
		return 0
	}
	d, err := time.ParseDuration(*s)
	if err != nil || d < min || (d == 0 && min > 0) {
		v.fail(key, "expected a duration like \"1h\" or \"90s\" of at least %s, got %s", min, quote(*s))
		return def
	}
	return d
}

var sizeRE = regexp.MustCompile(`^([0-9]+)\s*([KMGT]i?B|B)?$`)

// parseBytes reads "500MiB", "2GB", "4096" (bytes).
func parseBytes(s string) (uint64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return 0, err
	}
	mult := map[string]uint64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]]
	if n > (1<<64-1)/mult {
		return 0, fmt.Errorf("size too large: %q", s)
	}
	return n * mult, nil
}

// loadPSKs reads the pre-shared keys, refusing files others can read.
func loadPSKs(c *Config) error {
	read := func(key, path string) (ike.Secret, error) {
		st, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &Error{File: c.Path, Key: key, Msg: fmt.Sprintf(
				"the pre-shared key file %s does not exist; expected a random key both ends share: openssl rand -base64 24 > %s; chmod 600 %s, then the same file on the peer", path, path, path)}
		}
		if err != nil {
			return nil, &Error{File: c.Path, Key: key, Msg: fmt.Sprintf("cannot read the pre-shared key file: %v", err)}
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, &Error{File: c.Path, Key: key, Msg: fmt.Sprintf(
				"%s has mode %#o; expected no group/other access (chmod 600 %s)", path, st.Mode().Perm(), path)}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, &Error{File: c.Path, Key: key, Msg: fmt.Sprintf("cannot read the pre-shared key file: %v", err)}
		}
		// One trailing newline is how editors save a one-line file.
		b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
		if why := weakPSK(b); why != "" {
			clear(b)
			return nil, &Error{File: c.Path, Key: key, Msg: fmt.Sprintf("%s %s; expected a pre-shared key of at least %d bytes with at least %d different characters other than spaces (value not shown)", path, why, minPSKLen, minPSKDistinct)}
		}
		return ike.Secret(b), nil
	}
	var err error
	key := "ike.psk_file"
	if c.IKE.LocalPSKFile != c.IKE.RemotePSKFile {
		key = "ike.local_psk_file"
	}
	if c.IKE.LocalPSK, err = read(key, c.IKE.LocalPSKFile); err != nil {
		return err
	}
	if c.IKE.LocalPSKFile == c.IKE.RemotePSKFile {
		c.IKE.RemotePSK = c.IKE.LocalPSK
		return nil
	}
	c.IKE.RemotePSK, err = read("ike.remote_psk_file", c.IKE.RemotePSKFile)
	return err
}

// The weakest pre-shared key accepted. Length alone lets "aaaaaaaaaaaaaaaa"
// or sixteen spaces through; eight different characters rule out keys of
// one repeated character, a short word doubled, and whitespace. This is a
// floor against mistakes, not a strength meter: a PSK should come from a
// random generator (`openssl rand -base64 24`).
const (
	minPSKLen      = 16
	minPSKDistinct = 8
)

// weakPSK says why b is too weak to be a pre-shared key, or "". The
// answer never includes the key.
func weakPSK(b []byte) string {
	if len(b) < minPSKLen {
		return fmt.Sprintf("holds %d bytes", len(b))
	}
	var seen [256]bool
	distinct := 0
	for _, x := range b {
		if x == ' ' || x == '\t' || x == '\n' || x == '\r' || x == '\v' || x == '\f' {
			continue
		}
		if !seen[x] {
			seen[x] = true
			distinct++
		}
	}
	switch {
	case distinct == 0:
		return "holds only whitespace"
	case distinct < minPSKDistinct:
		return fmt.Sprintf("holds only %d different characters other than spaces", distinct)
	}
	return ""
}

// vtiSelectors are a VTI's traffic selectors when none are configured:
// everything of both families, as IOS `tunnel mode ipsec ipv4` and
// strongSwan's route-based examples use.
var vtiSelectors = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// selectors reads ike.local_ts or ike.remote_ts: prefixes, for a VTI only.
func (v *validator) selectors(key string, list []string, c *Config) []netip.Prefix {
	if c.Shape() != ShapeVTI {
		if list != nil {
			v.fail(key, "given, but the tunnel is %s, whose selectors are the underlay addresses; expected %s only with mode = \"tunnel\" and encap = \"none\"", c.Shape(), key)
		}
		return nil
	}
	if list == nil {
		return vtiSelectors
	}
	if len(list) == 0 {
		v.fail(key, "empty; expected prefixes such as [\"0.0.0.0/0\", \"::/0\"] or [\"198.19.0.0/16\"]")
	}
	var out []netip.Prefix
	for i, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			v.fail(fmt.Sprintf("%s[%d]", key, i), "expected a prefix such as \"0.0.0.0/0\", \"198.19.0.0/16\" or \"2001:db8::/32\", got %s", quote(s))
			continue
		}
		out = append(out, p.Masked())
	}
	return out
}

// RemoteAny is tunnel.remote for a dynamic peer.
const RemoteAny = "any"

// anyRemote checks a tunnel with remote = "any": the daemon cannot start
// the negotiation (it does not know where to), and it tells the peer from
// the others by its identity, proven with this tunnel's PSK.
func (v *validator) anyRemote(f *ikeFile, c *Config) {
	if !c.AnyRemote || f == nil {
		return
	}
	if f.Initiate != nil && *f.Initiate {
		v.fail("ike.initiate", "tunnel.remote = \"any\" only responds (there is no address to initiate to); expected initiate = false or no initiate")
	}
	c.IKE.Initiate = false
	if f.RemoteID == nil {
		v.fail("ike.remote_id", "missing; tunnel.remote = \"any\" picks the tunnel by the identity the peer proves: expected the peer's IKE identity (a domain name, user@domain or address)")
	}
}

// RemoteText is tunnel.remote as configured: the address, or "any".
func (c *Config) RemoteText() string {
	if c.AnyRemote {
		return RemoteAny
	}
	return c.Remote.String()
}
