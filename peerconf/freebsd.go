package peerconf

import (
	"fmt"
	"strings"

	"github.com/gresec/gresec/config"
)

// SetkeyConf is the FreeBSD setkey(8) file the ipsec rc.d script loads.
const SetkeyConf = "/etc/ipsec.conf"

// freebsd is the FreeBSD kernel end: gif(4) for IP-in-IP or gre(4) for
// GRE, and for static keys the SAD and SPD entries setkey(8) loads, ESP
// in transport mode on protocol 4 and 41 (gif) or 47 (gre) between the
// two underlay addresses.
func (m *mirror) freebsd() error {
	dev, what := "gre0", "gre(4)"
	if m.c.Shape() == config.ShapeIPIP {
		dev, what = "gif0", "gif(4)"
	}
	switch m.c.Keying {
	case config.KeyingIKEv2:
		// The FreeBSD kernel has no IKE daemon; strongSwan runs there
		// (kernel-pfkey), and its swanctl.conf is --for strongswan's.
		return fmt.Errorf("peerconf: %s uses ipsec.keying = \"ikev2\": --for freebsd writes %s with setkey for static keys (keying = \"static\") or without ESP (keying = \"none\"); for IKEv2 run strongSwan on FreeBSD and take its swanctl.conf from --for strongswan (the interface lines there are Linux's: use %s as --for freebsd writes it)", m.c.Path, what, what)
	case config.KeyingStatic:
		if err := m.refuseStaticEncap("freebsd"); err != nil {
			return err
		}
		var notes []string
		if !m.o.IncludeSecret {
			notes = append(notes, "ESP keys are placeholders: paste them from the [static] section named (or run again with --include-secret).")
		}
		m.header(fmt.Sprintf("FreeBSD (%s, setkey, static keys)", what), notes...)
		var b strings.Builder
		if err := m.setkeyLines(&b); err != nil {
			return err
		}
		m.add(SetkeyConf, 0o600, b.String())
	default:
		m.header(fmt.Sprintf("FreeBSD (%s, no ESP)", what))
	}
	var b strings.Builder
	m.freebsdDevice(&b, dev)
	m.add(CommandsSection, 0, b.String())
	return nil
}

// setkeyLines are the static SAs, mirrored as in xfrmLines, and the
// policies that require ESP for what the device sends and receives.
func (m *mirror) setkeyLines(b *strings.Builder) error {
	s := m.c.Static
	keyOut, err := m.setkeyKey(s.KeyOut, "key_out")
	if err != nil {
		return err
	}
	keyIn, err := m.setkeyKey(s.KeyIn, "key_in")
	if err != nil {
		return err
	}
	// No flush; or spdflush;: they would take every other tunnel's SAs
	// and policies on this host with them.
	replay := ""
	if m.c.ReplayWindow > 0 {
		// setkey(8) takes the window in bytes, 8 packets each.
		replay = fmt.Sprintf(" -r %d", (m.c.ReplayWindow+7)/8)
		fmt.Fprintf(b, "# Inbound (from gresec): gresec's spi_out and key_out; replay window %d packets as gresec's.\n", m.c.ReplayWindow)
	} else {
		b.WriteString("# Inbound (from gresec): gresec's spi_out and key_out; anti-replay off as in gresec (replay_window = 0).\n")
	}
	fmt.Fprintf(b, "add %s %s esp 0x%08x -m transport%s -E %s;\n", m.remote, m.local, s.SPIOut, replay, keyOut)
	b.WriteString("# Outbound (to gresec): gresec's spi_in and key_in.\n")
	fmt.Fprintf(b, "add %s %s esp 0x%08x -m transport -E %s;\n", m.local, m.remote, s.SPIIn, keyIn)
	protos := []string{"gre"}
	if m.c.Shape() == config.ShapeIPIP {
		protos = []string{"ipencap", "41"} // IPv4 and IPv6 inside gif
	}
	for _, p := range protos {
		fmt.Fprintf(b, "spdadd %s %s %s -P out ipsec esp/transport//require;\n", m.local, m.remote, p)
		fmt.Fprintf(b, "spdadd %s %s %s -P in ipsec esp/transport//require;\n", m.remote, m.local, p)
	}
	return nil
}

// setkeyKey is the algorithm and key of one static SA as setkey takes
// them: AES-GCM-16, the key with its 4-byte salt appended (RFC 4106),
// no -A (an AEAD has no separate authentication).
func (m *mirror) setkeyKey(k config.Key, field string) (string, error) {
	s := staticSuite(m.c)
	if m.o.IncludeSecret {
		if len(k) == 0 {
			return "", fmt.Errorf("peerconf: --include-secret: static.%s is not loaded", field)
		}
		if len(k) != s.KeyLen()+s.IntegKeyLen() {
			return "", fmt.Errorf("peerconf: static.%s holds %d bytes; %s needs %d", field, len(k), s.Transform(), s.KeyLen()+s.IntegKeyLen())
		}
		return fmt.Sprintf("aes-gcm-16 0x%x", []byte(k)), nil
	}
	return fmt.Sprintf("aes-gcm-16 0x<%s of [static] in %s>", field, m.c.Path), nil
}

// freebsdDevice is the gif or gre device with our inner addresses
// mirrored (point to point, gresec's address the destination), its MTU
// and GRE key, and pf's MSS clamp.
func (m *mirror) freebsdDevice(b *strings.Builder, dev string) {
	if m.c.Keying == config.KeyingStatic {
		fmt.Fprintf(b, "# Load the SAs and policies first, so that %s's first packets are already encrypted:\n", dev)
		b.WriteString("kldload -n ipsec\n")
		fmt.Fprintf(b, "sysrc ipsec_enable=YES ipsec_file=%s\nservice ipsec start\n", SetkeyConf)
	}
	if dev == "gre0" {
		b.WriteString("kldload -n if_gre\n")
	}
	fmt.Fprintf(b, "# MTU %d as gresec's %s.\n", m.c.MTU, m.mtuNote())
	fmt.Fprintf(b, "ifconfig %s create\nifconfig %s tunnel %s %s\n", dev, dev, m.local, m.remote)
	if dev == "gre0" && m.c.GREKey != nil {
		fmt.Fprintf(b, "ifconfig %s grekey %d\n", dev, *m.c.GREKey)
	}
	m.innerComments(b, "#")
	for _, a := range m.inner {
		addr := a.placeholder()
		if a.theirs.IsValid() {
			addr = a.theirs.Addr().String()
		}
		if a.ours.Addr().Is4() {
			fmt.Fprintf(b, "ifconfig %s inet %s %s netmask 255.255.255.255\n", dev, addr, a.ours.Addr())
		} else {
			fmt.Fprintf(b, "ifconfig %s inet6 %s %s prefixlen 128\n", dev, addr, a.ours.Addr())
		}
	}
	fmt.Fprintf(b, "ifconfig %s mtu %d up\n", dev, m.c.MTU)
	fmt.Fprintf(b, "# TCP MSS clamp, in /etc/pf.conf: %d for IPv4 (MTU - 40), %d for IPv6 (MTU - 60).\n", m.mss4(), m.mss6())
	fmt.Fprintf(b, "# scrub on %s inet all max-mss %d\n# scrub on %s inet6 all max-mss %d\n", dev, m.mss4(), dev, m.mss6())
}
