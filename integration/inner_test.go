package integration

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/gresec/gresec/internal/netns"
)

// TestMalformedInnerNeverReachesTUN: GRE packets forged from the peer's
// address whose inner IPv4/IPv6 header lengths do not fit the bytes that
// came are counted as inner_malformed, and nothing of them is written to
// the TUN device (a capture on it sees only the well-formed packet, cut to
// the length its header states).
func TestMalformedInnerNeverReachesTUN(t *testing.T) {
	p := startPair(t, pairOpt{keying: "none"})
	src4 := [4]byte{198, 19, 0, 99} // only these forged packets use it

	v4 := func(ihl byte, total uint16, size int) []byte {
		pkt := make([]byte, size)
		pkt[0] = 0x40 | ihl
		binary.BigEndian.PutUint16(pkt[2:], total)
		pkt[8], pkt[9] = 64, 17
		copy(pkt[12:], src4[:])
		copy(pkt[16:], p.b.tun4.Addr().AsSlice())
		return pkt
	}
	v6 := func(payload uint16, size int) []byte {
		pkt := make([]byte, size)
		pkt[0] = 0x60
		binary.BigEndian.PutUint16(pkt[4:], payload)
		pkt[6], pkt[7] = 17, 64
		copy(pkt[8:], []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x19, 14: 0, 15: 0x99})
		copy(pkt[24:], p.b.tun6.Addr().AsSlice())
		return pkt
	}
	// A well-formed UDP packet (checksum 0: none) with 10 bytes of trailer.
	good := v4(5, 36, 46)
	binary.BigEndian.PutUint16(good[20:], 9)
	binary.BigEndian.PutUint16(good[22:], 9)
	binary.BigEndian.PutUint16(good[24:], 16)
	malformed := [][]byte{
		v4(4, 48, 48),  // IHL under 5
		v4(15, 48, 48), // IHL*4 beyond the packet
		v4(5, 60, 48),  // total beyond the bytes present
		v4(5, 12, 48),  // total under the header
		v6(0, 60),      // payload length 0: jumbogram
		v6(100, 60),    // payload beyond the bytes present
	}

	pcap := filepath.Join(t.TempDir(), "gre0.pcap")
	dump, err := p.b.ns.Start("tcpdump", "-n", "--immediate-mode", "-Z", "root", "-i", "gre0", "-w", pcap)
	if err != nil {
		t.Fatal(err)
	}
	if !netns.WaitFor(5*time.Second, func() bool { return strings.Contains(dump.Out.String(), "listening on") }) {
		t.Fatalf("tcpdump did not start: %s", dump.Out)
	}
	var raw net.PacketConn
	if err := p.a.ns.Do(func() (err error) {
		raw, err = net.ListenPacket("ip4:47", p.a.under.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	before := p.mustStatus(p.b).Drops["inner_malformed"]
	for _, inner := range append(malformed, good) {
		proto := uint16(0x0800)
		if inner[0]>>4 == 6 {
			proto = 0x86dd
		}
		gre := binary.BigEndian.AppendUint16(make([]byte, 2), proto)
		if _, err := raw.WriteTo(append(gre, inner...), &net.IPAddr{IP: p.b.under.Addr().AsSlice()}); err != nil {
			t.Fatal(err)
		}
	}
	if !netns.WaitFor(5*time.Second, func() bool {
		return p.mustStatus(p.b).Drops["inner_malformed"]-before >= uint64(len(malformed))
	}) {
		t.Errorf("inner_malformed moved by %d, want %d", p.mustStatus(p.b).Drops["inner_malformed"]-before, len(malformed))
	}
	time.Sleep(300 * time.Millisecond) // the good packet was sent last; let the capture see it
	dump.Stop(5 * time.Second)

	f, err := os.Open(pcap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var forged [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		v4src := len(data) >= 16 && data[0]>>4 == 4 && [4]byte(data[12:16]) == src4
		v6src := len(data) >= 24 && data[0]>>4 == 6 && data[23] == 0x99 && data[9] == 0x19
		if v4src || v6src {
			forged = append(forged, data)
		}
	}
	if len(forged) != 1 || string(forged[0]) != string(good[:36]) {
		t.Errorf("the TUN saw %d forged packets (want only the good one, cut to 36 bytes): %x", len(forged), forged)
	}
	if got := p.mustStatus(p.b).Drops["inner_malformed"] - before; got != uint64(len(malformed)) {
		t.Errorf("inner_malformed = %d, want %d", got, len(malformed))
	}
}
