// Package peerconf writes the configuration for the other end of a gresec
// tunnel: strongSwan (swanctl.conf), OpenBSD (iked.conf, gre(4), pf),
// Cisco IOS, the Linux kernel (ip tunnel, ip xfrm) or FreeBSD (gif, gre,
// setkey).
//
// Everything is mirrored from a loaded config.Config: the peer's local
// address, identity and key are our remote ones and the other way round,
// its inbound SA is our outbound SA, and it initiates when we do not.
// Proposals are translated from the parsed []ike.Proposal, not copied as
// text, so a suite the peer cannot express is an error that names it
// instead of a configuration that fails at run time.
//
// Pre-shared and static keys appear only when Options.IncludeSecret is
// set; otherwise a placeholder names the file of ours that holds them.
package peerconf

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/ike"
)

// Peer is the kind of system at the other end.
type Peer string

const (
	StrongSwan Peer = "strongswan" // strongSwan swanctl.conf plus Linux ip tunnel lines
	OpenBSD    Peer = "openbsd"    // iked.conf, hostname.gre0, pf.conf, sysctl.conf
	CiscoIOS   Peer = "cisco-ios"  // IOS IKEv2, IPsec profile and Tunnel0
	Linux      Peer = "linux"      // ip tunnel and ip xfrm (static keys) or plain GRE
	FreeBSD    Peer = "freebsd"    // gif(4) or gre(4) and setkey (static keys) or no ESP
)

// Peers lists the accepted --for values.
var Peers = []Peer{StrongSwan, OpenBSD, CiscoIOS, Linux, FreeBSD, CiscoIOSIKEv1, FreeBSDRacoon}

// ParsePeer reads a --for value.
func ParsePeer(s string) (Peer, error) {
	for _, p := range Peers {
		if string(p) == s {
			return p, nil
		}
	}
	names := make([]string, len(Peers))
	for i, p := range Peers {
		names[i] = string(p)
	}
	return "", fmt.Errorf("peerconf: unknown peer %q; expected one of %s", s, strings.Join(names, ", "))
}

// Options say what to generate.
type Options struct {
	Peer Peer
	// IncludeSecret prints pre-shared and static keys. Without it the
	// output holds placeholders naming the file of ours with the key.
	IncludeSecret bool
}

// Section is one file (or one list of commands) for the peer.
type Section struct {
	// Name is the file's usual path on the peer ("/etc/iked.conf") or,
	// for commands, what they are for ("commands (as root)").
	Name string
	// Mode is the file mode the peer needs (0600 where a key is or will
	// be); 0 for commands and files without secrets.
	Mode os.FileMode
	// Text is the content, newline-terminated. It holds keys when the
	// output was generated with IncludeSecret.
	Text string
}

// Format keeps Text (which may hold keys) out of %v and friends.
func (s Section) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "peerconf.Section{%q, %d bytes}", s.Name, len(s.Text))
}

// Output is the peer's configuration.
type Output struct {
	Peer     Peer
	Sections []Section
	comment  string // the peer's comment leader: "#" or "!"
	header   []string
}

// Format keeps the sections' text (which may hold keys) out of %v.
func (o *Output) Format(f fmt.State, _ rune) {
	fmt.Fprintf(f, "peerconf.Output{%s, %d sections}", o.Peer, len(o.Sections))
}

// Section returns the section called name.
func (o *Output) Section(name string) (Section, bool) {
	for _, s := range o.Sections {
		if s.Name == name {
			return s, true
		}
	}
	return Section{}, false
}

// WriteTo writes the whole output as one text: a header, then each
// section under a comment line naming it. Every added line is a comment
// in the peer's syntax, so a single-section output can be used as is.
func (o *Output) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	for _, h := range o.header {
		b.WriteString(strings.TrimRight(o.comment+" "+h, " ") + "\n")
	}
	for _, s := range o.Sections {
		mode := ""
		if s.Mode != 0 {
			mode = fmt.Sprintf(" (mode %#o)", s.Mode)
		}
		fmt.Fprintf(&b, "%s\n%s ==== %s%s ====\n", o.comment, o.comment, s.Name, mode)
		b.WriteString(s.Text)
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// Generate mirrors c into the configuration o.Peer needs.
func Generate(c *config.Config, o Options) (*Output, error) {
	if c == nil {
		return nil, errors.New("peerconf: no configuration")
	}
	if _, err := ParsePeer(string(o.Peer)); err != nil {
		return nil, err
	}
	if c.AnyRemote {
		return nil, fmt.Errorf("peerconf: %s: tunnel.remote = \"any\": the peer's own address is not known here; generate from a copy of the file with the peer's address as tunnel.remote (the peer's config is the same wherever it connects from)", c.Path)
	}
	if !c.Local.IsValid() || !c.Remote.IsValid() {
		return nil, fmt.Errorf("peerconf: %s: tunnel.local and tunnel.remote are needed", c.Path)
	}
	m := newMirror(c, o)
	if err := m.checkShape(); err != nil {
		return nil, err
	}
	if err := m.checkIKEv1(); err != nil {
		return nil, err
	}
	var err error
	switch o.Peer {
	case CiscoIOSIKEv1:
		err = m.ciscoIKEv1()
	case FreeBSDRacoon:
		err = m.racoon()
	case StrongSwan:
		err = m.strongswan()
	case OpenBSD:
		err = m.openbsd()
	case CiscoIOS:
		err = m.cisco()
	case Linux:
		err = m.linux()
	case FreeBSD:
		err = m.freebsd()
	}
	if err != nil {
		return nil, err
	}
	return m.out, nil
}

// mirror holds what every peer's writer needs, already swapped to the
// peer's point of view.
type mirror struct {
	c   *config.Config
	o   Options
	out *Output

	local, remote netip.Addr // the peer's: our remote, our local
	inner         []innerAddr
}

// innerAddr is one of our tunnel addresses and the peer's counterpart.
type innerAddr struct {
	ours   netip.Prefix
	theirs netip.Prefix // valid only when ours is a /31 or /127
}

func newMirror(c *config.Config, o Options) *mirror {
	m := &mirror{c: c, o: o, local: c.Remote, remote: c.Local, out: &Output{Peer: o.Peer, comment: "#"}}
	for _, p := range c.Addresses {
		m.inner = append(m.inner, innerAddr{ours: p, theirs: otherEnd(p)})
	}
	return m
}

// otherEnd is the peer's address on a point-to-point /31 (RFC 3021) or
// /127 (RFC 6164): ours with the last bit flipped. Other prefixes leave
// the choice to the operator.
func otherEnd(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if (a.Is4() && p.Bits() != 31) || (a.Is6() && p.Bits() != 127) {
		return netip.Prefix{}
	}
	b := a.AsSlice()
	b[len(b)-1] ^= 1
	o, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(o, p.Bits())
}

// placeholder is what the peer writes for an address it must choose.
func (a innerAddr) placeholder() string {
	return fmt.Sprintf("<an address in %s other than %s>", a.ours.Masked(), a.ours.Addr())
}

// v6 reports an IPv6 underlay.
func (m *mirror) v6() bool { return m.local.Is6() }

func (m *mirror) header(peerName string, lines ...string) {
	m.out.header = append([]string{
		fmt.Sprintf("gresec peer-config --for %s: %s,", m.o.Peer, peerName),
		fmt.Sprintf("the other end of the tunnel configured in %s.", m.c.Path),
		fmt.Sprintf("This end: %s; gresec: %s.", m.local, m.remote),
	}, lines...)
	if m.c.Keying.IKE() && !m.o.IncludeSecret {
		m.out.header = append(m.out.header,
			"Pre-shared keys are placeholders: paste the key from the file named (or run again with --include-secret).")
	}
	if m.c.Keying == config.KeyingIKEv2 {
		m.out.header = append(m.out.header, natBehindNote)
	}
}

func (m *mirror) add(name string, mode os.FileMode, text string) {
	m.out.Sections = append(m.out.Sections, Section{Name: name, Mode: mode, Text: text})
}

// secret is one key of ours as the peer must write it.
type secret struct {
	value ike.Secret // nil unless loaded
	file  string
}

// peerLocalPSK is what the peer authenticates itself with: the key we
// expect from it (our remote key). peerRemotePSK is the key it expects
// from us (our local key).
func (m *mirror) peerLocalPSK() secret {
	return secret{m.c.IKE.RemotePSK, m.c.IKE.RemotePSKFile}
}

func (m *mirror) peerRemotePSK() secret {
	return secret{m.c.IKE.LocalPSK, m.c.IKE.LocalPSKFile}
}

func (m *mirror) asymmetricPSK() bool {
	k := m.c.IKE
	if k.LocalPSKFile == k.RemotePSKFile {
		return false
	}
	if k.LocalPSK != nil && k.RemotePSK != nil {
		return !k.LocalPSK.Equal(k.RemotePSK)
	}
	return true
}

// quoted renders a loaded key as `"text"` when it is plain printable
// ASCII, else as 0x-hex (both swanctl.conf and iked.conf read hex).
func (s secret) quoted() (string, error) {
	if s.value == nil {
		return "", fmt.Errorf("peerconf: --include-secret: the pre-shared key in %s was not loaded", s.file)
	}
	b := []byte(s.value)
	plain := true
	for _, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			plain = false
		}
	}
	if plain {
		return `"` + string(b) + `"`, nil
	}
	return fmt.Sprintf("0x%x", b), nil
}

// pskValue is the key as written in swanctl.conf or iked.conf.
func (m *mirror) pskValue(s secret) (string, error) {
	if !m.o.IncludeSecret {
		return fmt.Sprintf(`"<contents of %s>"`, s.file), nil
	}
	return s.quoted()
}

// idOf reads an identity as gresec's config does (strongSwan's rules).
func idOf(text string) (ike.ID, error) {
	id, err := ike.ParseID(text)
	if err != nil {
		return ike.ID{}, fmt.Errorf("peerconf: identity %q: %v", text, err)
	}
	return id, nil
}

// seconds is d in whole seconds, the unit every peer takes (gresec's
// lifetimes are at least 10 s, so rounding down loses nothing that matters).
func seconds(d time.Duration) int64 { return int64(d / time.Second) }

// hostPrefix is a as a single-host prefix (/32 or /128).
func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// mss is the TCP MSS that fits the tunnel MTU.
func (m *mirror) mss4() int { return m.c.MSS4() }
func (m *mirror) mss6() int { return m.c.MSS6() }
