package interop

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
)

// TestScenario2StrongSwanKernelESPInUDP: strongSwan in the guest with
// `encap = yes` keys the guest kernel's ESP in UDP (XFRM `encap espinudp
// 4500 4500`) against gresec, and the kernel's GRE device talks to gresec
// through it, both ways. Once with gresec initiating at its default
// udp_encap = "auto" (it follows charon's faked NAT; its MTU stays the raw
// 1442), once with the guest initiating and gresec at udp_encap =
// "always" (MTU 1434). The guest's GRE device has MTU 1434 both times:
// its kernel refuses DF packets that do not fit ESP in UDP in 1500 bytes
// ("message too long, mtu=1434"). At "auto" gresec's own 1442-byte
// packets leave 8 bytes over the link MTU and its kernel fragments them:
// those arrive too. On the wire only UDP
// 4500 to 4500: no raw ESP, no bare GRE; the guest's SAs decrypted the
// pings without replay, ICV or XFRM errors.
func TestScenario2StrongSwanKernelESPInUDP(t *testing.T) {
	for _, tc := range []struct {
		name            string
		gresecInitiates bool
		ipsecExtra      string
		mtu             int
	}{
		{"gresec-initiates-auto", true, "", 1442},
		{"strongswan-initiates-always", false, "udp_encap = \"always\"\n", 1434},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.hostRunInput(nftUDPCounters, "nft", "-f", "-")
			psk := l.guestStrongSwanConn("mode = transport\n\t\t\t\tlocal_ts = dynamic[gre]\n\t\t\t\tremote_ts = dynamic[gre]", "encap = yes")
			l.ipsecExtra = tc.ipsecExtra
			st := l.startGresecIKE(psk, tc.gresecInitiates)
			if !tc.gresecInitiates {
				out := l.guestRun("swanctl --initiate --child gre --timeout 30")
				if !strings.Contains(out, "initiate completed successfully") {
					t.Fatalf("swanctl --initiate did not complete:\n%s", out)
				}
				st = l.waitEstablished(20 * time.Second)
			}
			if st.MTU != tc.mtu {
				t.Errorf("gresec MTU %d, want %d", st.MTU, tc.mtu)
			}
			sw := l.guestRun("swanctl --list-sas")
			for _, want := range []string{"ESTABLISHED", "INSTALLED, TRANSPORT-in-UDP, ESP:AES_GCM_16-256",
				guestUnder[0].Addr().String() + "[4500]", hostUnder[0].Addr().String() + "[4500]"} {
				if !strings.Contains(sw, want) {
					t.Errorf("guest strongSwan lacks %q:\n%s", want, sw)
				}
			}
			if xs := l.guestRun("ip xfrm state"); strings.Count(xs, "encap type espinudp sport 4500 dport 4500") != 2 {
				t.Errorf("guest SAs are not both ESP in UDP 4500:\n%s", xs)
			}
			// gresec: no NAT in front of it; charon's faked one in front of
			// the guest; its own faked one with "always".
			n := st.IKE.NAT
			wantFaked := tc.ipsecExtra != ""
			if n.Encap != "udp" || n.NATHere || !n.NATThere || n.Faked != wantFaked || n.LocalPort != 4500 || n.RemotePort != 4500 {
				t.Errorf("gresec NAT status %+v; want encap udp, a NAT at the peer only, faked %v, ports 4500", n, wantFaked)
			}
			if u := st.UDPEncap; u == nil || u.LocalPort != 4500 || u.RemotePort != 4500 {
				t.Errorf("gresec udp_encap status %+v; want ESP in UDP 4500 to 4500", u)
			}

			// ESP in UDP fits 1434 bytes of GRE payload in a 1500-byte link.
			const pathMTU = 1434
			l.guestGRE(pathMTU)
			l.pingAll(pathMTU)
			if st.MTU > pathMTU {
				// gresec's largest packets: UDP over the link MTU, fragmented
				// by the host kernel, reassembled by the guest's.
				l.pingFromHost(guestIn4.Addr(), st.MTU-28)
			}
			min := uint64(8 * pingCount)
			l.checkGuestInbound(st, min)
			l.checkNoPlainGRE()
			if n := l.wire("esp_out") + l.wire("esp_in"); n != 0 {
				t.Errorf("%d raw ESP packets crossed an ESP-in-UDP tunnel", n)
			}
			udp := func(name string) uint64 {
				out := l.hostRun("nft", "list", "counter", "inet", "gresec_iop_udp", name)
				m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
				if m == nil {
					t.Fatalf("no packet count in %q", out)
				}
				v, _ := strconv.ParseUint(m[1], 10, 64)
				return v
			}
			if out, in := udp("udp_out"), udp("udp_in"); out < min || in < min {
				t.Errorf("host sent %d and received %d UDP 4500->4500 packets, want >= %d each", out, in, min)
			}

			// strongSwan rekeys the CHILD_SA: the new SAs are in UDP too.
			old := st.Outbound.SPI
			l.guestRun("swanctl --rekey --child gre")
			if !netns.WaitFor(20*time.Second, func() bool {
				s, err := l.status()
				if err == nil && s.Outbound != nil && s.Outbound.SPI != old {
					st = s
					return true
				}
				return false
			}) {
				t.Fatal("gresec did not follow strongSwan's CHILD_SA rekey")
			}
			l.pingFromHost(guestIn4.Addr(), 56)
			l.pingFromGuest(hostInner4.Addr(), 56)
			if n := l.wire("esp_out") + l.wire("esp_in"); n != 0 {
				t.Errorf("%d raw ESP packets after the rekey", n)
			}
		})
	}
}
