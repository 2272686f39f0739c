package peerconf

import (
	"fmt"
	"strings"

	"github.com/gresec/gresec/config"
)

// vtiIfID is the xfrm interface id the Linux and strongSwan VTI configs
// share.
const vtiIfID = 42

// checkShape refuses the shapes a peer's writer does not know yet, so
// that no configuration of another shape is written for them.
func (m *mirror) checkShape() error {
	s := m.c.Shape()
	if s == config.ShapeGRE {
		return nil
	}
	switch m.o.Peer {
	case StrongSwan, Linux:
		return nil
	case CiscoIOS:
		if s == config.ShapeVTI || s == config.ShapeGRETunnel {
			return nil
		}
	case FreeBSD:
		if s == config.ShapeIPIP {
			return nil
		}
	}
	writes := map[Peer]string{
		CiscoIOS: "GRE in transport mode, GRE in tunnel mode (crypto map) and the VTI",
		FreeBSD:  "GRE and IP-in-IP (gif) in transport mode",
	}[m.o.Peer]
	if writes == "" {
		writes = "GRE in transport mode"
	}
	return fmt.Errorf("peerconf: %s builds %s (ipsec.mode = %q, tunnel.encap = %q); --for %s writes %s only so far: see docs/interop.md for the shapes' peer configurations, or use --for strongswan or linux",
		m.c.Path, s, m.c.Mode, m.c.Encap, m.o.Peer, writes)
}

// swanChild is the mode and selectors of the strongSwan child for the
// shape, from the peer's point of view.
func (m *mirror) swanChild(b *strings.Builder) {
	l, r := hostPrefix(m.local), hostPrefix(m.remote)
	switch m.c.Shape() {
	case config.ShapeGRETunnel:
		b.WriteString("        # GRE in tunnel mode (an IP header between the two addresses around GRE).\n")
		fmt.Fprintf(b, "        mode = tunnel\n        local_ts = %s[gre]\n        remote_ts = %s[gre]\n", l, r)
	case config.ShapeIPIP:
		b.WriteString("        # IP-in-IP (protocol 4, and 41 for IPv6 inside) in transport mode.\n")
		fmt.Fprintf(b, "        mode = transport\n        local_ts = %[1]s[4],%[1]s[41]\n        remote_ts = %[2]s[4],%[2]s[41]\n", l, r)
	case config.ShapeVTI:
		b.WriteString("        # Route-based (gresec's encap = \"none\"): the xfrm interface below carries what is routed into it.\n")
		fmt.Fprintf(b, "        mode = tunnel\n        local_ts = %s\n        remote_ts = %s\n", prefixList(m.c.IKE.RemoteTS), prefixList(m.c.IKE.LocalTS))
		fmt.Fprintf(b, "        if_id_in = %d\n        if_id_out = %d\n", vtiIfID, vtiIfID)
	default:
		fmt.Fprintf(b, "        mode = transport\n        local_ts = %s[gre]\n        remote_ts = %s[gre]\n", l, r)
	}
}

func prefixList[P fmt.Stringer](ps []P) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// xfrmMode is the ESP mode of the shape, as ip xfrm spells it, and the
// extra state flags it needs.
func (m *mirror) xfrmMode() (mode, flags string) {
	switch m.c.Shape() {
	case config.ShapeGRETunnel:
		return "tunnel", ""
	case config.ShapeVTI:
		// One SA pair for IPv4 and IPv6 inside, on the xfrm interface.
		return "tunnel", fmt.Sprintf(" flag af-unspec if_id %d", vtiIfID)
	}
	return "transport", ""
}

// xfrmPolicies are the peer's policies for the shape: ESP for what the
// shape carries, both ways.
func (m *mirror) xfrmPolicies(b *strings.Builder) {
	mode, _ := m.xfrmMode()
	switch m.c.Shape() {
	case config.ShapeVTI:
		// Policies for everything routed into the interface: the
		// selectors gresec proposes by default.
		for _, sel := range []string{"0.0.0.0/0", "::/0"} {
			fmt.Fprintf(b, "ip xfrm policy add src %[3]s dst %[3]s dir out tmpl src %[1]s dst %[2]s proto esp mode tunnel if_id %[4]d\n", m.local, m.remote, sel, vtiIfID)
			fmt.Fprintf(b, "ip xfrm policy add src %[3]s dst %[3]s dir in tmpl src %[2]s dst %[1]s proto esp mode tunnel if_id %[4]d\n", m.local, m.remote, sel, vtiIfID)
		}
		return
	case config.ShapeIPIP:
		for _, p := range []string{"4", "41"} {
			fmt.Fprintf(b, "ip xfrm policy add src %[1]s dst %[2]s proto %[3]s dir out tmpl src %[1]s dst %[2]s proto esp mode transport\n", m.local, m.remote, p)
			fmt.Fprintf(b, "ip xfrm policy add src %[2]s dst %[1]s proto %[3]s dir in tmpl src %[2]s dst %[1]s proto esp mode transport\n", m.local, m.remote, p)
		}
		return
	}
	fmt.Fprintf(b, "ip xfrm policy add src %[1]s dst %[2]s proto gre dir out tmpl src %[1]s dst %[2]s proto esp mode %[3]s\n", m.local, m.remote, mode)
	fmt.Fprintf(b, "ip xfrm policy add src %[2]s dst %[1]s proto gre dir in tmpl src %[2]s dst %[1]s proto esp mode %[3]s\n", m.local, m.remote, mode)
}

// dev is the peer's tunnel device for the shape.
func (m *mirror) dev() string {
	switch m.c.Shape() {
	case config.ShapeVTI:
		return "xfrm1"
	case config.ShapeIPIP:
		return "ipip1"
	}
	return linuxDev
}

// deviceLines are the peer's tunnel device for the shape: the kernel's
// GRE device, an xfrm interface for a VTI, a sit device in mode any
// (IPv4 and IPv6 in IPv4, as FreeBSD gif) for IP-in-IP.
func (m *mirror) deviceLines(b *strings.Builder) {
	dev := m.dev()
	switch m.c.Shape() {
	case config.ShapeVTI:
		fmt.Fprintf(b, "# xfrm interface (route-based, if_id %d). MTU %d as gresec's %s.\n", vtiIfID, m.c.MTU, m.mtuNote())
		b.WriteString("# dev: the interface toward gresec.\n")
		fmt.Fprintf(b, "ip link add %s type xfrm dev <underlay-device> if_id %d\n", dev, vtiIfID)
	case config.ShapeIPIP:
		if m.v6() {
			fmt.Fprintf(b, "# IP-in-IPv6 device (ip6tnl, mode any). MTU %d as gresec's %s.\n", m.c.MTU, m.mtuNote())
			fmt.Fprintf(b, "ip -6 tunnel add %s mode any local %s remote %s hoplimit 64\n", dev, m.local, m.remote)
		} else {
			fmt.Fprintf(b, "# IP-in-IP device (sit, mode any: IPv4 as protocol 4, IPv6 as 41). MTU %d as gresec's %s.\n", m.c.MTU, m.mtuNote())
			fmt.Fprintf(b, "ip link add %s type sit local %s remote %s ttl 64 mode any\n", dev, m.local, m.remote)
		}
	default:
		m.greDeviceLines(b)
		return
	}
	m.innerComments(b, "#")
	for _, a := range m.inner {
		addr := a.placeholder()
		if a.theirs.IsValid() {
			addr = a.theirs.Addr().String()
		}
		fmt.Fprintf(b, "ip addr add %s/%d dev %s\n", addr, a.ours.Bits(), dev)
	}
	fmt.Fprintf(b, "ip link set %s mtu %d up\n", dev, m.c.MTU)
}
