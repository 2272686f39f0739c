package peerconf

import (
	"fmt"
	"strings"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/ike"
)

// linuxDev is the peer's kernel GRE device. Not gre0: the ip_gre module
// creates gre0 itself as its catch-all fallback device.
const linuxDev = "gre1"

// linux is the Linux kernel end: ip tunnel, and for static keying the
// XFRM states and policies that encrypt GRE in transport mode.
func (m *mirror) linux() error {
	switch m.c.Keying {
	case config.KeyingIKEv2:
		return fmt.Errorf("peerconf: %s uses ipsec.keying = \"ikev2\": the Linux kernel has no IKE daemon; use --for strongswan (swanctl.conf plus the ip tunnel lines)", m.c.Path)
	case config.KeyingStatic:
		var notes []string
		if !m.o.IncludeSecret {
			notes = append(notes, "ESP keys are placeholders: paste them from the [static] section named (or run again with --include-secret).")
		}
		m.header("Linux kernel (ip xfrm, static keys)", notes...)
	default:
		m.header("Linux kernel (plain GRE, no ESP)")
	}
	var b strings.Builder
	if m.c.Keying == config.KeyingStatic {
		if err := m.xfrmLines(&b); err != nil {
			return err
		}
		b.WriteString("\n")
	}
	m.deviceLines(&b)
	m.mssClampLines(&b)
	m.add(CommandsSection, 0, b.String())
	return nil
}

// xfrmLines are the static SAs, mirrored: the peer receives on our
// outbound SA (our spi_out and key_out) and sends on our inbound one.
func (m *mirror) xfrmLines(b *strings.Builder) error {
	s := m.c.Static
	keyOut, err := m.staticKey(s.KeyOut, "key_out")
	if err != nil {
		return err
	}
	keyIn, err := m.staticKey(s.KeyIn, "key_in")
	if err != nil {
		return err
	}
	switch m.c.Shape() {
	case config.ShapeVTI:
		fmt.Fprintf(b, "# Modules: esp%s, xfrm_user, xfrm_interface. Add the SAs and policies before the xfrm device,\n", m.ipv())
	case config.ShapeIPIP:
		fmt.Fprintf(b, "# Modules: esp%s, xfrm_user, %s. Add the SAs and policies before the IP-in-IP device,\n", m.ipv(), map[bool]string{false: "sit", true: "ip6_tunnel"}[m.v6()])
	default:
		fmt.Fprintf(b, "# Modules: esp%s, xfrm_user, ip%s_gre. Add the SAs and policies before the GRE device,\n", m.ipv(), m.ipv6Suffix())
	}
	b.WriteString("# so that its first packets are already encrypted.\n")
	if m.c.ReplayWindow > 0 {
		fmt.Fprintf(b, "# Inbound (from gresec): gresec's spi_out and key_out; replay window %d as gresec's.\n", m.c.ReplayWindow)
	} else {
		b.WriteString("# Inbound (from gresec): gresec's spi_out and key_out; anti-replay off as in gresec (replay_window = 0).\n")
	}
	mode, flags := m.xfrmMode()
	fmt.Fprintf(b, "ip xfrm state add src %s dst %s proto esp spi 0x%08x mode %s replay-window %d%s %s%s\n",
		m.remote, m.local, s.SPIOut, mode, m.c.ReplayWindow, flags, keyOut, m.xfrmEncap())
	b.WriteString("# Outbound (to gresec): gresec's spi_in and key_in.\n")
	fmt.Fprintf(b, "ip xfrm state add src %s dst %s proto esp spi 0x%08x mode %s%s %s%s\n",
		m.local, m.remote, s.SPIIn, mode, flags, keyIn, m.xfrmEncap())
	m.xfrmPolicies(b)
	m.xfrmEncapSocket(b)
	return nil
}

// staticSuite is the transform of the static SAs: AES-GCM-16 with the
// key length the keys have (key and 4-byte salt).
func staticSuite(c *config.Config) ike.Suite {
	bits := 256
	if len(c.Static.KeyOut) == 16+4 {
		bits = 128
	}
	return ike.Suite{Encr: ike.ENCR_AES_GCM_16, KeyBits: bits}
}

// staticKey is the algorithm and key part of an ip xfrm state line for
// one static SA: its key in ip xfrm's 0x-hex form, or a placeholder
// naming where ours is.
func (m *mirror) staticKey(k config.Key, field string) (string, error) {
	if m.o.IncludeSecret && len(k) == 0 {
		return "", fmt.Errorf("peerconf: --include-secret: static.%s is not loaded", field)
	}
	s := staticSuite(m.c)
	if m.o.IncludeSecret && len(k) != s.KeyLen()+s.IntegKeyLen() {
		return "", fmt.Errorf("peerconf: static.%s holds %d bytes; %s needs %d", field, len(k), s.Transform(), s.KeyLen()+s.IntegKeyLen())
	}
	return xfrmAlgorithm(s, func(from, to int) string {
		if !m.o.IncludeSecret {
			if from == 0 && to == len(k) {
				return fmt.Sprintf("0x<%s of [static] in %s>", field, m.c.Path)
			}
			return fmt.Sprintf("0x<bytes %d-%d of %s of [static] in %s>", from+1, to, field, m.c.Path)
		}
		return fmt.Sprintf("0x%x", []byte(k[from:to]))
	})
}

func (m *mirror) ipv() string {
	if m.v6() {
		return "6"
	}
	return "4"
}

func (m *mirror) ipv6Suffix() string {
	if m.v6() {
		return "6"
	}
	return ""
}

// greDeviceLines set up the kernel's GRE device with our tunnel's inner
// addresses mirrored, its MTU and GRE key.
func (m *mirror) greDeviceLines(b *strings.Builder) {
	key := ""
	if m.c.GREKey != nil {
		key = fmt.Sprintf(" key %d", *m.c.GREKey)
	}
	fmt.Fprintf(b, "# GRE device (%s: gre0 is the kernel's fallback device). MTU %d as gresec's %s.\n", linuxDev, m.c.MTU, m.mtuNote())
	if m.v6() {
		fmt.Fprintf(b, "ip -6 tunnel add %s mode ip6gre local %s remote %s hoplimit 64%s\n", linuxDev, m.local, m.remote, key)
	} else {
		fmt.Fprintf(b, "ip tunnel add %s mode gre local %s remote %s ttl 64%s\n", linuxDev, m.local, m.remote, key)
	}
	m.innerComments(b, "#")
	for _, a := range m.inner {
		addr := a.placeholder()
		if a.theirs.IsValid() {
			addr = a.theirs.Addr().String()
		}
		fmt.Fprintf(b, "ip addr add %s/%d dev %s\n", addr, a.ours.Bits(), linuxDev)
	}
	fmt.Fprintf(b, "ip link set %s mtu %d up\n", linuxDev, m.c.MTU)
}

// innerComments explain addresses the peer must choose itself.
func (m *mirror) innerComments(b *strings.Builder, cmt string) {
	if len(m.inner) == 0 {
		fmt.Fprintf(b, "%s gresec's tunnel has no addresses (tunnel.addresses is empty): add this end's if it needs any.\n", cmt)
	}
	for _, a := range m.inner {
		if !a.theirs.IsValid() {
			fmt.Fprintf(b, "%s gresec's tunnel address %s is not a /31 or /127: fill in this end's address in %s.\n", cmt, a.ours, a.ours.Masked())
		}
	}
}

func (m *mirror) mtuNote() string {
	if m.c.MTUComputed {
		return fmt.Sprintf("(computed: underlay %d - overhead %d)", m.c.UnderlayMTU, m.c.Overhead())
	}
	return "(configured)"
}

// mssClampLines clamp TCP SYNs crossing the GRE device to what fits its
// MTU, both ways; the guard keeps smaller MSS values.
func (m *mirror) mssClampLines(b *strings.Builder) {
	fmt.Fprintf(b, "# TCP MSS clamp: %d for IPv4 (MTU - 40), %d for IPv6 (MTU - 60). nftables:\n", m.mss4(), m.mss6())
	b.WriteString("nft add table inet gresec\n")
	b.WriteString("nft 'add chain inet gresec mss { type filter hook forward priority mangle; policy accept; }'\n")
	for _, dir := range []string{"oifname", "iifname"} {
		for _, f := range []struct {
			proto string
			mss   int
		}{{"ipv4", m.mss4()}, {"ipv6", m.mss6()}} {
			fmt.Fprintf(b, "nft 'add rule inet gresec mss %s \"%s\" meta nfproto %s tcp flags syn tcp option maxseg size gt %d tcp option maxseg size set %d'\n",
				dir, m.dev(), f.proto, f.mss, f.mss)
		}
	}
	b.WriteString("# or iptables:\n")
	fmt.Fprintf(b, "# iptables -t mangle -A FORWARD -o %s -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss %d\n", m.dev(), m.mss4())
	fmt.Fprintf(b, "# ip6tables -t mangle -A FORWARD -o %s -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss %d\n", m.dev(), m.mss6())
}
