package udpencap

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
	"github.com/gresec/gresec/rawip"
)

const port = 4500

type site struct {
	ns   *netns.NS
	conn *Conn
	addr netip.Addr
}

// twoSites returns ESP-in-UDP sockets on port 4500 in two fresh namespaces
// joined by veth, with addresses a and b.
func twoSites(t testing.TB, a, b netip.Prefix, batch int) (sa, sb site) {
	t.Helper()
	return twoSitesGRO(t, a, b, batch, true)
}

// twoSitesGRO is twoSites; with gro false, site b receives without GRO.
func twoSitesGRO(t testing.TB, a, b netip.Prefix, batch int, gro bool) (sa, sb site) {
	t.Helper()
	nstest.RequireRoot(t, "network namespaces")
	var s [2]site
	for i, p := range []netip.Prefix{a, b} {
		n, err := netns.Create(netns.Unique("gresec-udpencap"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Delete() })
		s[i] = site{ns: n, addr: p.Addr()}
	}
	if err := netns.Link(s[0].ns, "veth0", []netip.Prefix{a}, s[1].ns, "veth1", []netip.Prefix{b}); err != nil {
		t.Fatal(err)
	}
	for i := range s {
		err := s[i].ns.Do(func() (err error) {
			s[i].conn, err = listen(s[i].addr, port, port, batch, gro || i == 0)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		c := s[i].conn
		t.Cleanup(func() { c.Close() })
	}
	return s[0], s[1]
}

// espPacket is a fake ESP packet of n bytes: SPI, sequence number i, then
// bytes that depend on i.
func espPacket(buf []byte, off, n int, i uint32) {
	p := buf[off : off+n]
	binary.BigEndian.PutUint32(p, 0x1001)
	binary.BigEndian.PutUint32(p[4:], i)
	for j := 8; j < n; j++ {
		p[j] = byte(int(i) + j)
	}
}

// readN reads until it has n packets, failing instead of hanging.
func readN(t testing.TB, c *Conn, n int, fromPort uint16) [][]byte {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	defer c.SetReadDeadline(time.Time{})
	var got [][]byte
	in := make([]rawip.Message, 16)
	for len(got) < n {
		for i := range in {
			in[i] = rawip.Message{Buf: make([]byte, 2048)}
		}
		k, err := c.ReadBatch(in)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d packets: %v", len(got), n, err)
		}
		if k < 1 || k > len(in) {
			t.Fatalf("ReadBatch returned %d", k)
		}
		for _, m := range in[:k] {
			if m.Port != fromPort || m.Off != 0 {
				t.Fatalf("packet from port %d at offset %d; expected port %d, offset 0", m.Port, m.Off, fromPort)
			}
			got = append(got, m.Buf[m.Off:m.Off+m.N])
		}
	}
	return got
}

// TestSegmentedBothWays sends runs of equal-size packets with a shorter
// last one, more than a GSO send and a batch can carry, each way, and
// reads every packet back whole and in order; with the offloads on
// (Linux ≥ 5.0 has both) the counters show segmented sends and coalesced
// receives. Then the same with GSO off: one datagram per message.
func TestSegmentedBothWays(t *testing.T) {
	for _, fam := range []struct{ a, b string }{
		{"198.18.20.1/24", "198.18.20.2/24"},
		{"2001:db8:20::1/64", "2001:db8:20::2/64"},
	} {
		sa, sb := twoSites(t, netip.MustParsePrefix(fam.a), netip.MustParsePrefix(fam.b), 128)
		for _, s := range []site{sa, sb} {
			if gso, gro := s.conn.Offloads(); !gso || !gro {
				t.Fatalf("%s: GSO %v, GRO %v; this kernel has both", s.addr, gso, gro)
			}
		}
		for _, withGSO := range []bool{true, false} {
			for _, dir := range [][2]site{{sa, sb}, {sb, sa}} {
				from, to := dir[0], dir[1]
				from.conn.gso = withGSO
				before := from.conn.Stats().GSOBatches
				const n = 200 // > 128 (the batch) and > 64 (one GSO send)
				out := make([]rawip.Message, n)
				want := make([][]byte, n)
				for i := range out {
					size := 1400
					if i == n-1 || i == 99 {
						size = 333 // ends a run early
					}
					out[i] = rawip.Message{Buf: make([]byte, 1500), Off: 40, N: size, Addr: to.addr}
					espPacket(out[i].Buf, 40, size, uint32(i))
					want[i] = out[i].Buf[40 : 40+size]
				}
				// The first packets wait for neighbour resolution.
				warm := []rawip.Message{out[n-1]}
				if sent, err := from.conn.WriteBatch(warm); err != nil || sent != 1 {
					t.Fatal(sent, err)
				}
				readN(t, to.conn, 1, port)
				for _, part := range [][]rawip.Message{out[:100], out[100:]} {
					if sent, err := from.conn.WriteBatch(part); err != nil || sent != len(part) {
						t.Fatalf("%s -> %s (GSO %v): sent %d of %d: %v", from.addr, to.addr, withGSO, sent, len(part), err)
					}
				}
				got := readN(t, to.conn, n, port)
				for i := range want {
					if !bytes.Equal(got[i], want[i]) {
						t.Fatalf("%s -> %s (GSO %v): packet %d: got %d bytes (seq %d), want %d", from.addr, to.addr, withGSO, i, len(got[i]), binary.BigEndian.Uint32(got[i][4:]), len(want[i]))
					}
				}
				gsoSends := from.conn.Stats().GSOBatches - before
				if withGSO && gsoSends < 4 {
					t.Errorf("%s: %d segmented sends for 200 packets in runs of 99 and 100", from.addr, gsoSends)
				}
				if !withGSO && gsoSends != 0 {
					t.Errorf("%s: %d segmented sends with GSO off", from.addr, gsoSends)
				}
			}
		}
		if sa.conn.Stats().GROBatches == 0 && sb.conn.Stats().GROBatches == 0 {
			t.Errorf("no coalesced receive at all: %+v, %+v", sa.conn.Stats(), sb.conn.Stats())
		}
	}
}

// TestNotESP: NAT keepalives, IKE behind the non-ESP marker and runts
// never reach the caller; IKE goes to the handler (marker stripped) or is
// counted dropped without one; the ESP packets around them arrive.
func TestNotESP(t *testing.T) {
	pa, pb := netip.MustParsePrefix("198.18.21.1/24"), netip.MustParsePrefix("198.18.21.2/24")
	sa, sb := twoSites(t, pa, pb, 16)
	var mu sync.Mutex
	var ike [][]byte
	var ikeFrom []netip.AddrPort
	sb.conn.SetIKEHandler(func(msg []byte, from netip.AddrPort) {
		mu.Lock()
		defer mu.Unlock()
		ike = append(ike, bytes.Clone(msg))
		ikeFrom = append(ikeFrom, from)
	})
	// A plain UDP socket beside site A's, on another port.
	var raw *net.UDPConn
	err := sa.ns.Do(func() (err error) {
		raw, err = net.DialUDP("udp4", &net.UDPAddr{IP: pa.Addr().AsSlice(), Port: 4501}, &net.UDPAddr{IP: pb.Addr().AsSlice(), Port: port})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	esp := make([]byte, 100)
	espPacket(esp, 0, 100, 7)
	ikeMsg := append([]byte{0, 0, 0, 0}, bytes.Repeat([]byte{0x2e}, 40)...)
	for _, d := range [][]byte{{0xff}, ikeMsg, {1, 2, 3}, {1, 2, 3, 4, 5, 6, 7}, esp} {
		if _, err := raw.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	got := readN(t, sb.conn, 1, 4501)
	if !bytes.Equal(got[0], esp) {
		t.Fatalf("got %x, want the ESP packet", got[0])
	}
	st := sb.conn.Stats()
	if st.Keepalives != 1 || st.IKE != 1 || st.Dropped != 2 || st.IKEDropped != 0 {
		t.Fatalf("stats %+v; want 1 keepalive, 1 IKE, 2 dropped", st)
	}
	mu.Lock()
	if len(ike) != 1 || !bytes.Equal(ike[0], ikeMsg[4:]) || ikeFrom[0] != netip.AddrPortFrom(pa.Addr(), 4501) {
		t.Fatalf("IKE handler got %x from %v", ike, ikeFrom)
	}
	mu.Unlock()

	sb.conn.SetIKEHandler(nil)
	for _, d := range [][]byte{ikeMsg, esp} {
		if _, err := raw.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	readN(t, sb.conn, 1, 4501)
	if st := sb.conn.Stats(); st.IKEDropped != 1 || st.IKE != 1 || sb.conn.Dropped() != 3 {
		t.Fatalf("stats %+v, Dropped %d; want the IKE message without handler dropped", st, sb.conn.Dropped())
	}
}

// TestSendIKEAndKeepalive: SendIKE puts the non-ESP marker in front and
// the peer's handler gets the message back without it; SendKeepalive's
// one 0xFF byte is counted; both while the reader runs.
func TestSendIKEAndKeepalive(t *testing.T) {
	for _, fam := range []struct{ a, b string }{
		{"198.18.27.1/24", "198.18.27.2/24"},
		{"2001:db8:27::1/64", "2001:db8:27::2/64"},
	} {
		pa, pb := netip.MustParsePrefix(fam.a), netip.MustParsePrefix(fam.b)
		sa, sb := twoSites(t, pa, pb, 8)
		got := make(chan []byte, 1)
		sb.conn.SetIKEHandler(func(msg []byte, from netip.AddrPort) {
			if from == netip.AddrPortFrom(pa.Addr(), port) {
				got <- bytes.Clone(msg)
			}
		})
		to := netip.AddrPortFrom(pb.Addr(), port)
		if err := sa.conn.SendKeepalive(to); err != nil {
			t.Fatal(err)
		}
		ike := bytes.Repeat([]byte{0x21, 0x20}, 50)
		if err := sa.conn.SendIKE(ike, to); err != nil {
			t.Fatal(err)
		}
		esp := []rawip.Message{{Buf: make([]byte, 100), N: 100, Addr: pb.Addr()}}
		espPacket(esp[0].Buf, 0, 100, 1)
		if _, err := sa.conn.WriteBatch(esp); err != nil {
			t.Fatal(err)
		}
		readN(t, sb.conn, 1, port)
		select {
		case m := <-got:
			if !bytes.Equal(m, ike) {
				t.Fatalf("IKE handler got %x, want %x", m, ike)
			}
		default:
			t.Fatal("no IKE message reached the handler")
		}
		if st := sb.conn.Stats(); st.Keepalives != 1 || st.IKE != 1 {
			t.Fatalf("stats %+v; want 1 keepalive, 1 IKE", st)
		}
		if err := sa.conn.SendIKE(ike, netip.MustParseAddrPort("[2001:db8::9]:500")); err != ErrMessage && !pa.Addr().Is6() {
			t.Errorf("SendIKE to the other family: %v, want ErrMessage", err)
		}
	}
}

// TestWriteBatchSkipsBadMessages: a malformed message or one of the wrong
// family is skipped and reported; the others go out.
func TestWriteBatchSkipsBadMessages(t *testing.T) {
	pa, pb := netip.MustParsePrefix("198.18.22.1/24"), netip.MustParsePrefix("198.18.22.2/24")
	sa, sb := twoSites(t, pa, pb, 16)
	msgs := make([]rawip.Message, 5)
	for i := range msgs {
		msgs[i] = rawip.Message{Buf: make([]byte, 200), N: 100, Addr: pb.Addr()}
		espPacket(msgs[i].Buf, 0, 100, uint32(i))
	}
	msgs[1].N = 500                                   // beyond Buf
	msgs[3].Addr = netip.MustParseAddr("2001:db8::1") // wrong family
	sent, err := sa.conn.WriteBatch(msgs)
	if sent != 3 || err != ErrMessage {
		t.Fatalf("sent %d, %v; want 3, ErrMessage", sent, err)
	}
	got := readN(t, sb.conn, 3, port)
	for i, want := range []int{0, 2, 4} {
		if seq := binary.BigEndian.Uint32(got[i][4:]); seq != uint32(want) {
			t.Fatalf("packet %d has seq %d, want %d", i, seq, want)
		}
	}
}

// TestCloseUnblocksReader: Close wakes a waiting ReadBatch with
// net.ErrClosed.
func TestCloseUnblocksReader(t *testing.T) {
	sa, _ := twoSites(t, netip.MustParsePrefix("198.18.23.1/24"), netip.MustParsePrefix("198.18.23.2/24"), 4)
	errc := make(chan error, 1)
	go func() {
		_, err := sa.conn.ReadBatch(make([]rawip.Message, 4))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	sa.conn.Close()
	select {
	case err := <-errc:
		if !isClosedOrDeadline(err) {
			t.Fatalf("ReadBatch after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadBatch still blocked after Close")
	}
}

// roundTrip sends out from a to b and reads as many packets back.
func roundTrip(tb testing.TB, a, b *Conn, out, in []rawip.Message) {
	if sent, err := a.WriteBatch(out); err != nil || sent != len(out) {
		tb.Fatal(sent, err)
	}
	for got := 0; got < len(out); {
		k, err := b.ReadBatch(in[:len(out)-got])
		if err != nil {
			tb.Fatal(err)
		}
		got += k
	}
}

func batchOf(n, size int, to netip.Addr) (out, in []rawip.Message) {
	out, in = make([]rawip.Message, n), make([]rawip.Message, n)
	for i := range out {
		out[i] = rawip.Message{Buf: make([]byte, 1500), Off: 64, N: size, Addr: to}
		espPacket(out[i].Buf, 64, size, uint32(i))
		in[i].Buf = make([]byte, 2048)
	}
	return out, in
}

// TestBatchNoAllocs: a batch costs no allocation, sending or receiving,
// with the offloads and without.
func TestBatchNoAllocs(t *testing.T) {
	for i, gro := range []bool{true, false} {
		pa := netip.MustParsePrefix(fmt.Sprintf("198.18.%d.1/24", 24+i*5))
		pb := netip.MustParsePrefix(fmt.Sprintf("198.18.%d.2/24", 24+i*5))
		sa, sb := twoSitesGRO(t, pa, pb, 32, gro)
		if err := sb.conn.SetReadDeadline(time.Now().Add(60 * time.Second)); err != nil {
			t.Fatal(err)
		}
		out, in := batchOf(32, 1400, pb.Addr())
		roundTrip(t, sa.conn, sb.conn, out, in) // neighbour resolution
		for _, gso := range []bool{true, false} {
			sa.conn.gso = gso
			allocs := testing.AllocsPerRun(50, func() { roundTrip(t, sa.conn, sb.conn, out, in) })
			if allocs != 0 {
				t.Errorf("GSO %v, GRO %v: %v allocations per batch", gso, gro, allocs)
			}
		}
	}
}

// BenchmarkWriteReadBatch moves batches of 64 ESP packets of 1400 bytes
// between namespaces, with UDP GSO/GRO and without GSO.
func BenchmarkWriteReadBatch(b *testing.B) {
	pa, pb := netip.MustParsePrefix("198.18.25.1/24"), netip.MustParsePrefix("198.18.25.2/24")
	sa, sb := twoSites(b, pa, pb, 64)
	out, in := batchOf(64, 1400, pb.Addr())
	roundTrip(b, sa.conn, sb.conn, out, in)
	for _, gso := range []bool{true, false} {
		name := "gso"
		if !gso {
			name = "no-gso"
		}
		b.Run(name, func(b *testing.B) {
			sa.conn.gso = gso
			b.SetBytes(64 * 1400)
			b.ReportAllocs()
			for b.Loop() {
				roundTrip(b, sa.conn, sb.conn, out, in)
			}
		})
	}
}

// TestSegmentsOverPathMTU: a run of packets larger than the link MTU
// cannot be segmented (the kernel refuses a segment size over the MTU with
// EINVAL): WriteBatch sends them one datagram at a time, which the kernel
// fragments, and they all arrive whole; GSO stays on for later runs.
func TestSegmentsOverPathMTU(t *testing.T) {
	pa, pb := netip.MustParsePrefix("198.18.26.1/24"), netip.MustParsePrefix("198.18.26.2/24")
	sa, sb := twoSites(t, pa, pb, 32)
	for _, s := range []struct {
		ns  *netns.NS
		dev string
	}{{sa.ns, "veth0"}, {sb.ns, "veth1"}} {
		if out, err := s.ns.Run("ip", "link", "set", s.dev, "mtu", "1280"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	out, _ := batchOf(20, 1400, pb.Addr())
	if sent, err := sa.conn.WriteBatch(out[:1]); err != nil || sent != 1 {
		t.Fatal(sent, err)
	}
	readN(t, sb.conn, 1, port) // neighbour resolution
	before := sa.conn.Stats().GSOBatches
	if sent, err := sa.conn.WriteBatch(out); err != nil || sent != len(out) {
		t.Fatalf("sent %d of %d: %v", sent, len(out), err)
	}
	got := readN(t, sb.conn, len(out), port)
	for i := range out {
		if !bytes.Equal(got[i], out[i].Buf[out[i].Off:out[i].Off+out[i].N]) {
			t.Fatalf("packet %d differs (%d bytes)", i, len(got[i]))
		}
	}
	if gso, _ := sa.conn.Offloads(); !gso || sa.conn.Stats().GSOBatches != before {
		t.Errorf("GSO %v, %d segmented sends over a too-small MTU; want GSO still on, none", gso, sa.conn.Stats().GSOBatches-before)
	}
	// Packets that fit go segmented again.
	small, _ := batchOf(20, 1000, pb.Addr())
	if sent, err := sa.conn.WriteBatch(small); err != nil || sent != len(small) {
		t.Fatalf("sent %d of %d: %v", sent, len(small), err)
	}
	readN(t, sb.conn, len(small), port)
	if sa.conn.Stats().GSOBatches == before {
		t.Errorf("no segmented send of packets that fit the MTU")
	}
}

// TestGROSize reads the segment size from control messages as the kernel
// lays them out, and refuses malformed ones.
func TestGROSize(t *testing.T) {
	msg := func(level, typ int32, data []byte) []byte {
		b := make([]byte, unix.CmsgSpace(len(data)))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(len(data)))
		copy(b[unix.CmsgLen(0):], data)
		return b
	}
	var seg [4]byte
	binary.NativeEndian.PutUint32(seg[:], 1408)
	gro := msg(unix.IPPROTO_UDP, unix.UDP_GRO, seg[:])
	other := msg(unix.IPPROTO_IP, unix.IP_TOS, []byte{0})
	bad := bytes.Clone(gro)
	(*unix.Cmsghdr)(unsafe.Pointer(&bad[0])).SetLen(1000)
	for _, tc := range []struct {
		name string
		ctl  []byte
		want int
	}{
		{"gro", gro, 1408},
		{"after another", append(bytes.Clone(other), gro...), 1408},
		{"none", other, 0},
		{"empty", nil, 0},
		{"short", gro[:8], 0},
		{"length beyond", bad, 0},
	} {
		if got := groSize(tc.ctl); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestReceiveWithoutGRO: on a kernel without UDP GRO each datagram lands
// in its own message; keepalives, IKE and runts in the middle of a batch
// are taken out and the ESP packets after them move up, in order.
func TestReceiveWithoutGRO(t *testing.T) {
	pa, pb := netip.MustParsePrefix("198.18.28.1/24"), netip.MustParsePrefix("198.18.28.2/24")
	sa, sb := twoSitesGRO(t, pa, pb, 16, false)
	if _, gro := sb.conn.Offloads(); gro {
		t.Fatal("GRO on for a socket opened without it")
	}
	var ike int
	sb.conn.SetIKEHandler(func([]byte, netip.AddrPort) { ike++ })
	out, _ := batchOf(40, 1400, pb.Addr())
	if sent, err := sa.conn.WriteBatch(out[:1]); err != nil || sent != 1 {
		t.Fatal(sent, err)
	}
	readN(t, sb.conn, 1, port) // neighbour resolution
	to := netip.AddrPortFrom(pb.Addr(), port)
	// ESP 0-9, a keepalive, ESP 10-19, IKE, a runt, ESP 20-39, sent
	// before the receiver reads, so they share its batches.
	runt := []rawip.Message{{Buf: []byte{1, 2, 3, 4, 5}, N: 5, Addr: pb.Addr()}}
	steps := []func() error{
		func() error { _, err := sa.conn.WriteBatch(out[0:10]); return err },
		func() error { return sa.conn.SendKeepalive(to) },
		func() error { _, err := sa.conn.WriteBatch(out[10:20]); return err },
		func() error { return sa.conn.SendIKE([]byte("ike"), to) },
		func() error { _, err := sa.conn.WriteBatch(runt); return err },
		func() error { _, err := sa.conn.WriteBatch(out[20:40]); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	got := readN(t, sb.conn, 40, port)
	for i := range out {
		if !bytes.Equal(got[i], out[i].Buf[out[i].Off:out[i].Off+out[i].N]) {
			t.Fatalf("packet %d: seq %d, %d bytes", i, binary.BigEndian.Uint32(got[i][4:]), len(got[i]))
		}
	}
	if st := sb.conn.Stats(); st.Keepalives != 1 || st.IKE != 1 || ike != 1 || st.Dropped != 1 || st.GROBatches != 0 {
		t.Fatalf("stats %+v (handler saw %d IKE); want 1 keepalive, 1 IKE, 1 dropped, no coalesced receive", st, ike)
	}
}
