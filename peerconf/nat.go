package peerconf

import (
	"fmt"
	"strings"

	"github.com/gresec/gresec/config"
)

// NAT traversal, mirrored. gresec's [ipsec] udp_encap decides it:
//   - "auto": IKE finds a NAT (RFC 7296 §2.23) and both ends move to UDP
//     4500; every IKEv2 peer does this by default, so nothing is written
//     but a note.
//   - "always": gresec fakes its NAT detection hash, so the peer believes
//     gresec is behind a NAT and encapsulates too; strongSwan is told the
//     same with encap = yes. With static keys both SAs get `encap
//     espinudp` (Linux).
//   - "never": raw ESP; a NAT between the ends breaks the tunnel.

// natBehindNote is for every IKEv2 peer: a NAT in front of gresec changes
// the address this end sees, not gresec's identity.
const natBehindNote = "If gresec is behind a NAT, write the NAT's public address where gresec's address stands as the peer's address; its identity stays as written."

// swanEncap writes strongSwan's connection lines for udp_encap.
func (m *mirror) swanEncap(b *strings.Builder) {
	switch m.c.UDPEncap {
	case config.UDPEncapAlways:
		b.WriteString("    # gresec has udp_encap = \"always\": ESP in UDP 4500 even without a NAT.\n")
		b.WriteString("    encap = yes\n")
	case config.UDPEncapNever:
		b.WriteString("    # gresec has udp_encap = \"never\": raw ESP only; a NAT between the ends breaks the tunnel.\n")
	default:
		b.WriteString("    # NAT traversal (gresec's udp_encap = \"auto\"): IKE and ESP move to UDP 4500 when\n")
		b.WriteString("    # either end is behind a NAT; strongSwan's keep_alive (20 s) holds the mapping.\n")
	}
}

// ikedEncap writes iked.conf comments for udp_encap: iked negotiates NAT
// traversal by itself and has no per-policy setting (iked -t would force
// it for every policy and listen on port 4500 only).
func (m *mirror) ikedEncap(b *strings.Builder) {
	switch m.c.UDPEncap {
	case config.UDPEncapAlways:
		b.WriteString("# gresec has udp_encap = \"always\": it fakes its NAT detection, so iked sends ESP in\n")
		b.WriteString("# UDP 4500 without a setting here (iked -t would force it for every policy).\n")
	case config.UDPEncapNever:
		b.WriteString("# gresec has udp_encap = \"never\": raw ESP only; a NAT between the ends breaks the tunnel.\n")
	default:
		b.WriteString("# NAT traversal (gresec's udp_encap = \"auto\"): iked moves IKE and ESP to UDP 4500 when\n")
		b.WriteString("# either end is behind a NAT (pf below passes 4500).\n")
	}
}

// iosEncap writes IOS's NAT traversal lines. NAT-T is on by default in
// IOS (crypto ipsec nat-transparency udp-encapsulation); the keepalive
// is off unless configured, and the end behind a NAT must send it.
func (m *mirror) iosEncap(b *strings.Builder) {
	switch m.c.UDPEncap {
	case config.UDPEncapNever:
		b.WriteString("! gresec has udp_encap = \"never\": raw ESP only; a NAT between the ends breaks the tunnel.\n")
		return
	case config.UDPEncapAlways:
		b.WriteString("! gresec has udp_encap = \"always\": it fakes its NAT detection, so this router sends\n")
		b.WriteString("! ESP in UDP 4500 with NAT traversal on (the IOS default, written out).\n")
	default:
		b.WriteString("! NAT traversal (gresec's udp_encap = \"auto\"): IKE and ESP move to UDP 4500 when either\n")
		b.WriteString("! end is behind a NAT. NAT-T is the IOS default, written out.\n")
	}
	b.WriteString("crypto ipsec nat-transparency udp-encapsulation\n")
	b.WriteString("! NAT keepalives every 20 s (RFC 3948's interval), sent when this router is behind the NAT.\n")
	b.WriteString("crypto ikev2 nat keepalive 20\n")
}

// xfrmEncap is the `encap` part of an ip xfrm state line for static keys
// with udp_encap = "always" (both ends on udp_port), else "".
func (m *mirror) xfrmEncap() string {
	if !m.c.ESPInUDP() {
		return ""
	}
	return fmt.Sprintf(" encap espinudp %d %d 0.0.0.0", m.c.UDPPort, m.c.UDPPort)
}

// xfrmEncapSocket explains and opens the socket without which the Linux
// kernel never decapsulates ESP in UDP: xfrm does not open one itself;
// an IKE daemon would.
func (m *mirror) xfrmEncapSocket(b *strings.Builder) {
	if !m.c.ESPInUDP() {
		return
	}
	fmt.Fprintf(b, "# ESP in UDP %d (gresec's udp_encap = \"always\"): the kernel decapsulates it only on a UDP\n", m.c.UDPPort)
	b.WriteString("# socket with the UDP_ENCAP option set, which an IKE daemon opens and nothing does with\n")
	b.WriteString("# static keys. Keep one open while the tunnel runs, e.g. (UDP_ENCAP = 100, ESPINUDP = 2):\n")
	family := "AF_INET"
	if m.v6() {
		family = "AF_INET6"
	}
	fmt.Fprintf(b, "python3 -c 'import socket,signal; s=socket.socket(socket.%s,socket.SOCK_DGRAM); s.bind((\"\",%d)); s.setsockopt(socket.IPPROTO_UDP,100,2); signal.pause()' &\n",
		family, m.c.UDPPort)
}

// refuseStaticEncap refuses static keys in UDP for a peer whose static
// keying peer-config writes for raw ESP only.
func (m *mirror) refuseStaticEncap(peer string) error {
	if !m.c.ESPInUDP() {
		return nil
	}
	return fmt.Errorf("peerconf: %s has udp_encap = \"always\" with static keys (ESP in UDP %d), but --for %s writes static SAs for raw ESP only; use udp_encap = \"never\" or \"auto\", --for linux (ip xfrm ... encap espinudp), or IKEv2 with strongSwan", m.c.Path, m.c.UDPPort, peer)
}
