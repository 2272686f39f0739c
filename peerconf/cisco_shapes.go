package peerconf

import (
	"fmt"
	"strings"
)

// IOS names for the shapes other than GRE in transport mode.
const (
	iosCryptoMap = "GRESEC-MAP"
	iosGREACL    = "GRESEC-GRE"
)

// iosCryptoMap is GRE in tunnel-mode ESP the crypto map way (the Cisco
// GRE-over-IPsec configuration guides): Tunnel0 is plain GRE, and a
// crypto map on the WAN interface encrypts the GRE packets between the
// two underlay addresses, matched by an ACL. `ipsec-isakmp` is only the
// entry's type: `set ikev2-profile` makes IOS negotiate it with IKEv2.
func (m *mirror) iosCryptoMap(b *strings.Builder, replay string, sets []string, pfs int) {
	acl, cmap, ifcmd := "ip access-list extended", "crypto map", "crypto map"
	if m.v6() {
		acl, cmap, ifcmd = "ipv6 access-list", "crypto map ipv6", "ipv6 crypto map"
	}
	b.WriteString("! GRE between the two underlay addresses, the traffic the crypto map encrypts:\n")
	fmt.Fprintf(b, "%s %s\n permit gre host %s host %s\n", acl, iosGREACL, m.local, m.remote)
	fmt.Fprintf(b, "%s %s 10 ipsec-isakmp\n", cmap, iosCryptoMap)
	fmt.Fprintf(b, " set peer %s\n", m.remote)
	m.iosSASettings(b, replay, sets, pfs)
	fmt.Fprintf(b, " match address %s\n", iosGREACL)
	// Tunnel0 without tunnel protection: the crypto map encrypts what
	// leaves it. GRE keepalives then work both ways, since IOS's answer
	// to gresec's is a GRE packet between the same two addresses, which
	// the ACL matches.
	m.iosTunnel(b, false)
	b.WriteString("! The WAN interface toward gresec (its name here is a placeholder):\n")
	fmt.Fprintf(b, "interface <WAN interface>\n %s %s\n", ifcmd, iosCryptoMap)
}

// iosVTI is a static VTI: Tunnel0 in `tunnel mode ipsec ipv4` (ipv6 over
// an IPv6 underlay), the inner packet in tunnel-mode ESP, selectors
// any <-> any of that family, routes into Tunnel0 deciding what is sent.
func (m *mirror) iosVTI(b *strings.Builder) {
	b.WriteString("interface Tunnel0\n")
	m.innerComments(b, " !")
	family, other := "ipv4", "ipv6"
	if m.v6() {
		family, other = "ipv6", "ipv4"
	}
	for _, a := range m.inner {
		addr := a.placeholder()
		if a.theirs.IsValid() {
			addr = a.theirs.Addr().String()
		}
		switch {
		case a.ours.Addr().Is6() != m.v6():
			fmt.Fprintf(b, " ! gresec's tunnel also has %s: `tunnel mode ipsec %s` carries %s only; where the release\n", a.ours, family, family)
			fmt.Fprintf(b, " ! has `tunnel mode ipsec dual-overlay`, use it and add this end's %s address (%s), or\n", other, addr)
			fmt.Fprintf(b, " ! build a second VTI for %s.\n", other)
		case m.v6():
			fmt.Fprintf(b, " ipv6 address %s/%d\n", addr, a.ours.Bits())
		default:
			fmt.Fprintf(b, " ip address %s %s\n", addr, v4Mask(a.ours.Bits()))
		}
	}
	if m.v6() {
		fmt.Fprintf(b, " ipv6 mtu %d\n ipv6 tcp adjust-mss %d\n", m.c.MTU, m.mss6())
	} else {
		fmt.Fprintf(b, " ip mtu %d\n ip tcp adjust-mss %d\n", m.c.MTU, m.mss4())
	}
	fmt.Fprintf(b, " tunnel source %s\n tunnel mode ipsec %s\n tunnel destination %s\n", m.local, family, m.remote)
	fmt.Fprintf(b, " tunnel protection ipsec profile %s\n", iosIPsec)
	any := "0.0.0.0/0"
	if m.v6() {
		any = "::/0"
	}
	fmt.Fprintf(b, " ! IOS negotiates selectors %[1]s <-> %[1]s only: gresec's ike.local_ts and remote_ts must\n", any)
	fmt.Fprintf(b, " ! include them (its default, 0.0.0.0/0 and ::/0, does; gresec narrows to IOS's). Now: %s <-> %s.\n",
		prefixList(m.c.IKE.LocalTS), prefixList(m.c.IKE.RemoteTS))
}
