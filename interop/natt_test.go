package interop

import (
	"os"
	"os/exec"
	"path/filepath"
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
				t.Errorf("guest SAs are not both ESP in UDP 4500:\n%s", redactKeys(xs))
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

// TestPeerConfigLinuxESPInUDP: what `gresec peer-config --for linux`
// writes for static keys with udp_encap = "always", run in the guest:
// its `encap espinudp 4500 4500` states and policies, the GRE device, and
// the UDP_ENCAP socket the kernel needs. The guest has no python, so the
// generated python3 line is swapped for udpencapsock, which opens the
// same socket (UDP_ENCAP = UDP_ENCAP_ESPINUDP on port 4500). Pings both
// ways at MTU 1434, only UDP 4500 on the wire, the guest's SAs count them.
func TestPeerConfigLinuxESPInUDP(t *testing.T) {
	l := newLab(t)
	helper := filepath.Join(l.g.Share(), "udpencapsock")
	build := exec.Command("go", "build", "-o", helper, "./udpencapsock")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building udpencapsock: %v\n%s", err, out)
	}
	l.hostRunInput(nftUDPCounters, "nft", "-f", "-")
	keys := shapeKeys(t)
	l.ipsecExtra = "udp_encap = \"always\"\n"
	l.writeGresecConfig("static", keys)
	out, err := exec.Command(gresecBin, "peer-config", "--for", "linux", "--include-secret", "-c", l.cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("peer-config: %v\n%s", err, out)
	}
	text := string(out)
	i := strings.Index(text, "==== commands (as root) ====")
	if i < 0 {
		t.Fatalf("no commands section:\n%s", text)
	}
	_, script, _ := strings.Cut(text[i:], "\n")
	sas, device, ok := strings.Cut(script, "\n\n")
	if !ok || strings.Count(sas, "encap espinudp 4500 4500 0.0.0.0") != 2 {
		t.Fatalf("want two ip xfrm states with encap espinudp 4500 4500 before the device:\n%s", script)
	}
	var lines []string
	swapped := 0
	for _, line := range strings.Split(sas, "\n") {
		if strings.HasPrefix(line, "python3 -c ") && strings.Contains(line, "setsockopt(socket.IPPROTO_UDP,100,2)") && strings.Contains(line, `bind(("",4500))`) {
			line = "(/share/udpencapsock >/tmp/udpencapsock.log 2>&1 &)"
			swapped++
		}
		lines = append(lines, line)
	}
	if swapped != 1 {
		t.Fatalf("want one generated UDP_ENCAP socket line on port 4500:\n%s", sas)
	}
	device, _, _ = strings.Cut(device, "# TCP MSS clamp")
	l.guestRun("set -e\n" + strings.Join(lines, "\n"))
	if !netns.WaitFor(10*time.Second, func() bool {
		return strings.Contains(l.guestRun("cat /tmp/udpencapsock.log"), "ready")
	}) {
		t.Fatalf("udpencapsock not ready in the guest: %s", l.guestRun("cat /tmp/udpencapsock.log"))
	}
	st := l.runGresec()
	const mtu = 1434
	if st.MTU != mtu {
		t.Fatalf("gresec MTU %d, want %d", st.MTU, mtu)
	}
	l.guestRun("set -e\n" + device)
	l.pingAll(mtu)

	min := uint64(8 * pingCount)
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
	if n := l.wire("esp_out") + l.wire("esp_in"); n != 0 {
		t.Errorf("%d raw ESP packets crossed an ESP-in-UDP tunnel", n)
	}
	if n := l.wire("gre_out") + l.wire("gre_in"); n != 0 {
		t.Errorf("%d plaintext GRE packets crossed", n)
	}
	sas2 := l.guestSAs()
	if in, out := sas2[keys.spiOut], sas2[keys.spiIn]; in.packets < min || out.packets < min || in.replay != 0 || in.integrty != 0 {
		t.Errorf("guest SAs: inbound %+v, outbound %+v; want >= %d packets each, no replay or ICV failure", in, out, min)
	}
	if stats := l.guestRun("cat /proc/net/xfrm_stat"); !allZero(stats) {
		t.Errorf("guest XFRM error counters moved:\n%s", stats)
	}
}

// TestIkedESPInUDP: OpenBSD iked (openiked-portable in the guest, PF_KEY)
// answering a gresec with udp_encap = "always": iked.conf says nothing
// about NAT traversal (as peer-config writes it); gresec's faked NAT
// detection moves iked to UDP 4500 and makes it key the guest kernel's SAs
// with ESP in UDP. Pings both ways at MTU 1434 over the kernel's GRE
// device, only UDP 4500 on the wire.
func TestIkedESPInUDP(t *testing.T) {
	l := newLab(t)
	l.hostRunInput(nftUDPCounters, "nft", "-f", "-")
	psk := "gresec-iked-" + newKey(t)[2:30]
	l.guestIked(psk, "passive", ikedChild)
	l.ipsecExtra = "udp_encap = \"always\"\n"
	l.startGresecIked(psk, true, ikedChild)
	st := l.waitEstablished(ikedTimeout)
	if n := st.IKE.NAT; n.Encap != "udp" || !n.Faked || n.LocalPort != 4500 || n.RemotePort != 4500 {
		t.Errorf("gresec NAT status %+v; want encap udp, faked, IKE on 4500 both ends", n)
	}
	if u := st.UDPEncap; u == nil || u.RemotePort != 4500 {
		t.Errorf("gresec udp_encap status %+v; want ESP in UDP to port 4500", u)
	}
	// iked installs the second SA a moment after gresec reports.
	var xs string
	if !netns.WaitFor(10*time.Second, func() bool {
		xs = l.guestRun("ip xfrm state")
		return strings.Count(xs, "encap type espinudp sport 4500 dport 4500") == 2
	}) {
		t.Errorf("iked did not key both guest SAs as ESP in UDP 4500:\n%s", redactKeys(xs))
	}
	l.checkIked(st, false)
	if n := l.wire("esp_out") + l.wire("esp_in"); n != 0 {
		t.Errorf("%d raw ESP packets crossed an ESP-in-UDP tunnel", n)
	}
	out := l.hostRun("nft", "list", "counter", "inet", "gresec_iop_udp", "udp_in")
	var v uint64
	if m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out); m != nil {
		v, _ = strconv.ParseUint(m[1], 10, 64)
	}
	if v < 8*pingCount {
		t.Errorf("host received %d UDP 4500->4500 packets, want >= %d", v, 8*pingCount)
	}
}

// redactKeys blanks the key hex in `ip xfrm state` output, so that a
// failure message carries no key.
func redactKeys(s string) string {
	return regexp.MustCompile(`0x[0-9a-f]{32,}`).ReplaceAllString(s, "[key]")
}
