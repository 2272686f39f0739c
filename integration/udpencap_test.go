package integration

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
)

const udpAlways = "udp_encap = \"always\"\n"

// TestESPInUDPStatic: two gresec with static keys and udp_encap =
// "always" ping each other both ways (IPv4 and IPv6 inside, over an IPv4
// and an IPv6 underlay), and a capture on the wire holds only UDP 4500
// to 4500 with the SPI first, no raw ESP, which tshark decodes as ESP in
// UDP and decrypts with the static keys down to the GRE and ICMP inside.
func TestESPInUDPStatic(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatalf("tshark is not installed: `sudo make test` installs it")
	}
	for _, ipv6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[ipv6], func(t *testing.T) {
			p := newPair(t, pairOpt{ipv6: ipv6, ipsecExtra: udpAlways})
			pcap := filepath.Join(t.TempDir(), "wire.pcap")
			dump, err := p.b.ns.Start("tcpdump", "-n", "--immediate-mode", "-Z", "root", "-i", "veth-b", "-w", pcap, "esp or udp")
			if err != nil {
				t.Fatal(err)
			}
			if !netns.WaitFor(5*time.Second, func() bool { return strings.Contains(dump.Out.String(), "listening on") }) {
				t.Fatalf("tcpdump did not start: %s", dump.Out)
			}
			for _, s := range []*side{p.a, p.b} {
				p.start(s)
			}
			for _, dir := range [][2]*side{{p.a, p.b}, {p.b, p.a}} {
				for _, dst := range []string{dir[1].tun4.Addr().String(), dir[1].tun6.Addr().String()} {
					out, _ := dir[0].ns.RunTimeout(20*time.Second, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-w", "15", dst)
					if got := replies(out); got < 3 {
						t.Fatalf("ping %s: %d of 3 replies\n%s\n%s", dst, got, out, p.a.proc.Out)
					}
				}
			}
			// Large pings: full-size packets across the 8-byte smaller MTU.
			out, _ := p.a.ns.RunTimeout(20*time.Second, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-w", "15", "-s", "1300", "-M", "do", p.b.tun4.Addr().String())
			if got := replies(out); got < 3 {
				t.Fatalf("ping -s 1300: %d of 3 replies\n%s", got, out)
			}
			dump.Stop(5 * time.Second)

			ipv := "IPv4"
			if ipv6 {
				ipv = "IPv6"
			}
			sa := func(src, dst *side) string {
				return fmt.Sprintf(`"%s","%s","%s","0x%08x","AES-GCM with 16 octet ICV [RFC4106]","%s","NULL",""`,
					ipv, src.under.Addr(), dst.under.Addr(), src.spiOut, src.keyOut)
			}
			tshark := func(filter string, fields ...string) []string {
				args := []string{"-n", "-r", pcap, "-o", "esp.enable_encryption_decode:TRUE",
					"-o", "uat:esp_sa:" + sa(p.a, p.b), "-o", "uat:esp_sa:" + sa(p.b, p.a), "-Y", filter, "-T", "fields"}
				for _, f := range fields {
					args = append(args, "-e", f)
				}
				got, err := exec.Command("tshark", args...).Output()
				if err != nil {
					t.Fatalf("tshark -Y %q: %v", filter, err)
				}
				return strings.Fields(string(got))
			}
			if raw := tshark("ip.proto == 50 || ipv6.nxt == 50", "frame.number"); len(raw) != 0 {
				t.Errorf("%d raw ESP packets on the wire; want ESP in UDP only", len(raw))
			}
			ports := tshark("udp && !(udp.srcport == 4500 && udp.dstport == 4500)", "udp.srcport", "udp.dstport")
			if len(ports) != 0 {
				t.Errorf("UDP packets not from 4500 to 4500: %v", ports)
			}
			spis := tshark("udp.port == 4500 && esp", "esp.spi")
			seen := map[string]int{}
			for _, s := range spis {
				seen[s]++
			}
			// 3 pings each way, IPv4 and IPv6, requests and replies, plus
			// the large pings: at least 9 packets with each SPI.
			if seen["0x00001001"] < 9 || seen["0x00001002"] < 9 || len(seen) != 2 {
				t.Errorf("ESP SPIs in UDP 4500: %v; want 0x00001001 and 0x00001002, >= 9 each", seen)
			}
			if icmp := tshark("esp && gre && (icmp || icmpv6.type == 128 || icmpv6.type == 129)", "frame.number"); len(icmp) < 18 {
				t.Errorf("tshark decrypted %d pings inside ESP-in-UDP/GRE, want >= 18", len(icmp))
			}
			for _, s := range []*side{p.a, p.b} {
				st := p.mustStatus(s)
				if st.Drops["esp_malformed"] != 0 || st.Drops["esp_bad_spi"] != 0 {
					t.Errorf("%s: drops %v", s.ns.Name, st.Drops)
				}
				if u := st.UDPEncap; u == nil || u.LocalPort != 4500 || u.RemotePort != 4500 || u.Dropped != 0 || u.IKEDropped != 0 {
					t.Errorf("%s: udp_encap status %+v; want ports 4500, nothing dropped", s.ns.Name, u)
				}
			}
		})
	}
}

// TestESPInUDPTCPTransfer: 8 MiB each over IPv4 and IPv6 inside a static
// ESP-in-UDP tunnel arrive intact (UDP GSO and GRO on the underlay).
// The sender's status shows segmented sends, the receiver's coalesced
// receives.
func TestESPInUDPTCPTransfer(t *testing.T) {
	p := tcpTransferWith(t, pairOpt{ipsecExtra: udpAlways})
	a, b := p.mustStatus(p.a).UDPEncap, p.mustStatus(p.b).UDPEncap
	if a == nil || b == nil {
		t.Fatalf("status has no udp_encap: %+v, %+v", a, b)
	}
	if !a.GSO || !a.GRO || a.GSOSends == 0 || b.GROReceives == 0 {
		t.Errorf("offloads: sender %+v, receiver %+v; want GSO and GRO on, segmented sends and coalesced receives", a, b)
	}
}

// TestESPInUDPOneSideRaw: an ESP-in-UDP end and a raw ESP end do not talk
// (nothing is delivered), and the raw end's kernel answers nothing that
// gresec mistakes for traffic.
func TestESPInUDPOneSideRaw(t *testing.T) {
	p := newPair(t, pairOpt{})
	p.ipsecExtra = udpAlways
	p.writeConfig(p.a, p.b, "static")
	for _, s := range []*side{p.a, p.b} {
		p.start(s)
	}
	if got, out := p.ping(p.a, p.b.tun4.Addr(), 3); got != 0 {
		t.Fatalf("%d replies between ESP in UDP and raw ESP\n%s", got, out)
	}
	if st := p.mustStatus(p.b); st.Inner.RxPackets != 0 || st.UDPEncap != nil {
		t.Errorf("raw ESP end delivered %d packets, udp_encap status %+v", st.Inner.RxPackets, st.UDPEncap)
	}
}
