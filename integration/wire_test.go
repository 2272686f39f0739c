package integration

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gresec/gresec/internal/netns"
)

// captureESP holds an AF_PACKET socket in ns that sees ESP before the
// kernel's input path, which an nftables rule closes so gresec never sees
// the captured packets: they are fresh (never-received) sequence numbers.
func captureESP(t *testing.T, s *side) (next func() []byte) {
	t.Helper()
	for _, cmd := range [][]string{
		{"nft", "add", "table", "inet", "gresectest"},
		{"nft", "add", "chain", "inet", "gresectest", "in", "{ type filter hook input priority 0; policy accept; }"},
		{"nft", "add", "rule", "inet", "gresectest", "in", "meta", "l4proto", "esp", "drop"},
	} {
		if out, err := s.ns.Run(cmd[0], cmd[1:]...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	var fd int
	err := s.ns.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return func() []byte {
		buf := make([]byte, 2048)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				t.Fatalf("no ESP packet captured within 5 s: %v", err)
			}
			ihl := int(buf[0]&0x0f) * 4
			if n > ihl && buf[9] == 50 {
				return append([]byte(nil), buf[ihl:n]...)
			}
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func stopDroppingESP(t *testing.T, s *side) {
	if out, err := s.ns.Run("nft", "delete", "table", "inet", "gresectest"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// TestReplayAndTamperDropped injects captured ESP packets from the peer's
// address: one with a flipped ciphertext byte (ICV failure, window not
// moved), the original (accepted), the original again (replay).
func TestReplayAndTamperDropped(t *testing.T) {
	p := startPair(t, pairOpt{})
	next := captureESP(t, p.b)
	go p.ping(p.a, p.b.tun4.Addr(), 1)
	esp := next()
	stopDroppingESP(t, p.b)

	var raw net.PacketConn
	if err := p.a.ns.Do(func() (err error) {
		raw, err = net.ListenPacket("ip4:50", p.a.under.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	inject := func(pkt []byte) {
		t.Helper()
		if _, err := raw.WriteTo(pkt, &net.IPAddr{IP: p.b.under.Addr().AsSlice()}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	tampered := append([]byte(nil), esp...)
	tampered[20] ^= 0x01 // inside the ciphertext (SPI 4, seq 4, IV 8)
	inject(tampered)
	st := p.mustStatus(p.b)
	if got := st.Inbound[0].Drops["auth"]; got != 1 {
		t.Errorf("after a flipped byte: auth drops %d, want 1 (drops %v)", got, st.Inbound[0].Drops)
	}

	inject(esp)
	st = p.mustStatus(p.b)
	// Other traffic (IPv6 neighbour discovery, MLD) may cross meanwhile,
	// so judge delivery by the drop counters, not by packet totals.
	if d := st.Inbound[0].Drops; d["replay"] != 0 || d["auth"] != 1 {
		t.Errorf("the original packet was refused after its tampered copy (drops %v): the ICV failure must not move the replay window", d)
	}

	inject(esp)
	st = p.mustStatus(p.b)
	if got := st.Inbound[0].Drops["replay"]; got != 1 {
		t.Errorf("after replaying a delivered packet: replay drops %d, want 1 (drops %v)", got, st.Inbound[0].Drops)
	}
}

// captureESPFile starts tcpdump on the site's veth, writing ESP to a pcap; stop
// flushes and ends it. --immediate-mode: without it tcpdump loses the last
// packets when stopped.
func captureESPFile(t *testing.T, s *side, iface string) (pcap string, stop func()) {
	t.Helper()
	pcap = filepath.Join(t.TempDir(), "esp.pcap")
	dump, err := s.ns.Start("tcpdump", "-n", "--immediate-mode", "-Z", "root", "-i", iface, "-w", pcap, "esp")
	if err != nil {
		t.Fatal(err)
	}
	if !netns.WaitFor(5*time.Second, func() bool { return strings.Contains(dump.Out.String(), "listening on") }) {
		t.Fatalf("tcpdump did not start: %s", dump.Out)
	}
	return pcap, func() { dump.Stop(5 * time.Second) }
}

// espSA is one row of Wireshark's ESP SA table.
type espSA struct {
	src, dst netip.Addr
	spi      string // "0x%08x"
	key      string // "0x" + key and salt in hex
	// For AES-CBC: Wireshark's names of the cipher and integrity
	// algorithm, and the integrity key; empty: AES-GCM.
	encr, integ, authKey string
}

// tsharkESP has Wireshark's dissectors decrypt pcap with only the given SAs
// and returns the fields, comma-separated, one line per packet.
func tsharkESP(t *testing.T, pcap string, sas []espSA, fields ...string) string {
	t.Helper()
	args := []string{"-n", "-r", pcap, "-o", "esp.enable_encryption_decode:TRUE"}
	for _, sa := range sas {
		encr, integ := "AES-GCM with 16 octet ICV [RFC4106]", "NULL"
		if sa.encr != "" {
			encr, integ = sa.encr, sa.integ
		}
		args = append(args, "-o", fmt.Sprintf(`uat:esp_sa:"IPv4","%s","%s","%s","%s","%s","%s","%s"`,
			sa.src, sa.dst, sa.spi, encr, sa.key, integ, sa.authKey))
	}
	args = append(args, "-T", "fields", "-E", "separator=,")
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	return string(out)
}

// TestTsharkDecryptsESP captures the tunnel's ESP with tcpdump and has
// Wireshark's dissectors, given only the configured keys, find GRE inside
// carrying the pings.
func TestTsharkDecryptsESP(t *testing.T) {
	for _, tool := range []string{"tshark", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: `sudo make test` installs it", tool)
		}
	}
	p := startPair(t, pairOpt{})
	pcap, stop := captureESPFile(t, p.b, "veth-b")
	p.ping(p.a, p.b.tun4.Addr(), 3)
	p.ping(p.a, p.b.tun6.Addr(), 3)
	stop()

	out := tsharkESP(t, pcap, []espSA{
		{p.a.under.Addr(), p.b.under.Addr(), fmt.Sprintf("0x%08x", p.a.spiOut), p.a.keyOut, "", "", ""},
		{p.b.under.Addr(), p.a.under.Addr(), fmt.Sprintf("0x%08x", p.b.spiOut), p.b.keyOut, "", "", ""},
	}, "esp.spi", "gre.proto", "icmp.type", "icmpv6.type")
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		counts[line]++
	}
	// spi,gre protocol,icmp type,icmpv6 type
	for _, want := range []string{
		"0x00001001,0x0800,8,", "0x00001002,0x0800,0,",
		"0x00001001,0x86dd,,128", "0x00001002,0x86dd,,129",
	} {
		if counts[want] < 3 {
			t.Errorf("tshark found %d packets %q, want 3; all:\n%s", counts[want], want, out)
		}
	}
}
