package demux

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/rawip"
)

// fakeConn replays queued batches of ESP packets, then reports closed.
type fakeConn struct {
	mu      sync.Mutex
	batches [][]rawip.Message
	written int
}

func (c *fakeConn) ReadBatch(msgs []rawip.Message) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.batches) == 0 {
		return 0, net.ErrClosed
	}
	b := c.batches[0]
	c.batches = c.batches[1:]
	for i, m := range b {
		msgs[i].Off, msgs[i].N, msgs[i].Addr = 0, copy(msgs[i].Buf, m.Buf), m.Addr
	}
	return len(b), nil
}

func (c *fakeConn) WriteBatch(msgs []rawip.Message) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.written += len(msgs)
	return len(msgs), nil
}

func (c *fakeConn) Close() error { return nil }

// recorder is a tunnel that notes the SPIs of the runs it received.
type recorder struct {
	name string
	runs [][]uint32
}

func (r *recorder) Receive(msgs []rawip.Message, bases [][]byte) {
	var run []uint32
	for i, m := range msgs {
		if &bases[i][len(bases[i])-len(m.Buf)] != &m.Buf[0] {
			panic("message buffer is not inside its base")
		}
		run = append(run, binary.BigEndian.Uint32(m.Buf[m.Off:]))
	}
	r.runs = append(r.runs, run)
}

func espPacket(spi uint32, from string) rawip.Message {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b, spi)
	return rawip.Message{Buf: b, N: len(b), Addr: netip.MustParseAddr(from)}
}

func TestDispatchBySPI(t *testing.T) {
	spis := NewSPITable()
	a, b, fallback := &recorder{name: "a"}, &recorder{name: "b"}, &recorder{name: "fallback"}
	for _, x := range []struct {
		spi uint32
		s   Sink
	}{{0x1000, a}, {0x1001, a}, {0x2000, b}} {
		if !spis.Add(x.spi, x.s) {
			t.Fatalf("Add(0x%x) refused", x.spi)
		}
	}
	if spis.Add(0x1000, b) {
		t.Fatal("a second tunnel took SPI 0x1000")
	}
	conn := &fakeConn{batches: [][]rawip.Message{{
		espPacket(0x1000, "198.18.0.2"), espPacket(0x1001, "198.18.0.2"), // a run of two for a
		espPacket(0x2000, "198.18.0.3"),                                       // b
		espPacket(0x3000, "198.18.0.4"),                                       // unknown SPI from the fallback's peer
		espPacket(0x3000, "198.18.0.9"),                                       // unknown SPI, unknown peer: dropped
		{Buf: []byte{1, 2, 3}, N: 3, Addr: netip.MustParseAddr("198.18.0.2")}, // shorter than an SPI
		espPacket(0x1000, "198.18.0.2"),                                       // a again, after the others
	}}}
	p := NewESPPort(conn, spis, 8, 16, 64)
	if !p.AddPeer(netip.MustParseAddr("198.18.0.4"), fallback) {
		t.Fatal("AddPeer refused")
	}
	if p.AddPeer(netip.MustParseAddr("198.18.0.4"), a) {
		t.Fatal("a second tunnel took peer 198.18.0.4")
	}
	p.Run()

	check := func(r *recorder, want [][]uint32) {
		t.Helper()
		if len(r.runs) != len(want) {
			t.Fatalf("%s got runs %x, want %x", r.name, r.runs, want)
		}
		for i := range want {
			if len(r.runs[i]) != len(want[i]) {
				t.Fatalf("%s got runs %x, want %x", r.name, r.runs, want)
			}
			for j := range want[i] {
				if r.runs[i][j] != want[i][j] {
					t.Fatalf("%s got runs %x, want %x", r.name, r.runs, want)
				}
			}
		}
	}
	check(a, [][]uint32{{0x1000, 0x1001}, {0x1000}})
	check(b, [][]uint32{{0x2000}})
	check(fallback, [][]uint32{{0x3000}})
	if got := p.Stats().UnknownSPI.Load(); got != 1 {
		t.Errorf("unknown SPI drops = %d, want 1", got)
	}
	if got := p.Stats().Malformed.Load(); got != 1 {
		t.Errorf("malformed drops = %d, want 1", got)
	}

	// A tunnel that goes takes its SPIs with it; its packets are then
	// counted drops, not delivered.
	spis.RemoveAll(a)
	p.RemovePeer(netip.MustParseAddr("198.18.0.4"), fallback)
	conn.batches = [][]rawip.Message{{espPacket(0x1000, "198.18.0.2"), espPacket(0x3000, "198.18.0.4")}}
	p.Run()
	check(a, [][]uint32{{0x1000, 0x1001}, {0x1000}})
	check(fallback, [][]uint32{{0x3000}})
	if got := p.Stats().UnknownSPI.Load(); got != 3 {
		t.Errorf("unknown SPI drops = %d, want 3", got)
	}
}

func TestSPIAllocateUnique(t *testing.T) {
	spis := NewSPITable()
	r := &recorder{}
	seen := map[uint32]bool{}
	for i := 0; i < 4000; i++ {
		spi := spis.Allocate()
		if spi <= 255 {
			t.Fatalf("allocated reserved SPI %d", spi)
		}
		if seen[spi] {
			t.Fatalf("SPI 0x%08x allocated twice", spi)
		}
		seen[spi] = true
		if i%2 == 0 && !spis.Add(spi, r) {
			t.Fatalf("Add of an allocated SPI refused")
		}
	}
	if spis.Len() != 2000 {
		t.Fatalf("table holds %d SPIs, want 2000", spis.Len())
	}
	// Reservations that never became SAs expire: the table does not grow
	// with failed negotiations.
	spis.clock = func() time.Time { return time.Now().Add(2 * reserveFor) }
	spis.Allocate()
	if n := len(spis.reserved); n != 1 {
		t.Fatalf("%d reservations left after expiry, want 1", n)
	}
}

// ikeHeader is the IKE header of a protected message (an SK payload
// follows) with these SPIs and flags.
func ikeHeader(spiI, spiR uint64, flags ike.Flags) []byte {
	h := make(ike.Header, ike.HeaderLen)
	h.SetNextPayload(ike.PayloadSK)
	h.SetSPIi(spiI)
	h.SetSPIr(spiR)
	h.SetVersion(ike.Version2)
	h.SetFlags(flags)
	return h
}

type nullSender struct{ n int }

func (s *nullSender) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	s.n++
	return len(b), nil
}

func TestIKEDispatch(t *testing.T) {
	p := NewIKEPort(nil)
	var got []string
	offer := func(name string) Offer {
		return func(b []byte, from netip.AddrPort) { got = append(got, name+":"+from.Addr().Unmap().String()) }
	}
	out := &nullSender{}
	a := p.Join(netip.MustParseAddr("198.18.0.2"), offer("a"), nil, out, nil)
	b := p.Join(netip.MustParseAddr("2001:db8::2"), offer("b"), nil, out, nil)
	if a == nil || b == nil {
		t.Fatal("Join refused")
	}
	if p.Join(netip.MustParseAddr("198.18.0.2"), offer("c"), nil, out, nil) != nil {
		t.Fatal("a second engine took peer 198.18.0.2")
	}
	peerA := netip.MustParseAddrPort("198.18.0.2:500")
	// By address: a new IKE_SA_INIT (no responder SPI), as a dual-stack
	// socket reports an IPv4 sender too.
	p.Dispatch(ikeHeader(0x11, 0, ike.FlagInitiator), netip.MustParseAddrPort("[::ffff:198.18.0.2]:500"))
	p.Dispatch(ikeHeader(0x22, 0, ike.FlagInitiator), netip.MustParseAddrPort("[2001:db8::2]:500"))
	p.Dispatch(ikeHeader(0x33, 0, ike.FlagInitiator), netip.MustParseAddrPort("198.18.0.7:500"))
	// a answers as responder with its SPI 0xa1, and initiates an SA of its
	// own with SPI 0xa2: both are learned.
	a.WriteToUDPAddrPort(ikeHeader(0x11, 0xa1, ike.FlagResponse), peerA)
	a.WriteToUDPAddrPort(ikeHeader(0xa2, 0, ike.FlagInitiator), peerA)
	if out.n != 2 {
		t.Fatalf("%d datagrams sent, want 2", out.n)
	}
	// By SPI, whatever the address (a peer that moved, peers behind one
	// NAT): the peer's next request on a's responder SA, and the answer to
	// a's own request.
	moved := netip.MustParseAddrPort("198.18.0.9:4500")
	p.Dispatch(ikeHeader(0x11, 0xa1, ike.FlagInitiator), moved)
	p.Dispatch(ikeHeader(0xa2, 0xb7, ike.FlagResponse), moved)
	// An SPI nobody has, from nobody's address: counted.
	p.Dispatch(ikeHeader(0x11, 0xff, ike.FlagInitiator), moved)
	p.Dispatch([]byte("short"), moved)
	want := []string{"a:198.18.0.2", "b:2001:db8::2", "a:198.18.0.9", "a:198.18.0.9"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dispatched %v, want %v", got, want)
	}
	if n := p.Unrouted.Load(); n != 3 {
		t.Fatalf("unrouted = %d, want 3", n)
	}
	// An engine that leaves is reached neither by address nor by SPI, and
	// learns nothing from its last sends.
	a.Leave()
	a.WriteToUDPAddrPort(ikeHeader(0xa3, 0, ike.FlagInitiator), peerA)
	got = nil
	p.Dispatch(ikeHeader(0x11, 0xa1, ike.FlagInitiator), peerA)
	p.Dispatch(ikeHeader(0xa3, 0x1, ike.FlagResponse), peerA)
	if len(got) != 0 || len(*p.bySPI.Load()) != 0 {
		t.Fatalf("after Leave: dispatched %v, %d SPIs kept", got, len(*p.bySPI.Load()))
	}
	// The SPIs kept per engine are bounded.
	for i := uint64(1); i <= 3*spisPerClient; i++ {
		b.WriteToUDPAddrPort(ikeHeader(0x1000+i, 0, ike.FlagInitiator), peerA)
	}
	if n := len(*p.bySPI.Load()); n != spisPerClient {
		t.Fatalf("%d SPIs kept for one engine, want %d", n, spisPerClient)
	}
}

type natSender struct{ ike, keepalives int }

func (s *natSender) SendIKE([]byte, netip.AddrPort) error { s.ike++; return nil }
func (s *natSender) SendKeepalive(netip.AddrPort) error   { s.keepalives++; return nil }

// TestIKEDispatchNATT: IKE on 4500 reaches the engine's OfferNATT, by the
// SPI it learned on 500 or on 4500, or by the address; an engine without
// NAT traversal gets none.
func TestIKEDispatchNATT(t *testing.T) {
	p := NewIKEPort(nil)
	var got []string
	offer := func(name string) Offer {
		return func(b []byte, from netip.AddrPort) { got = append(got, name) }
	}
	nat := &natSender{}
	a := p.Join(netip.MustParseAddr("198.18.0.2"), offer("a500"), offer("a4500"), &nullSender{}, nat)
	p.Join(netip.MustParseAddr("198.18.0.3"), offer("b500"), nil, &nullSender{}, nil)
	a.WriteToUDPAddrPort(ikeHeader(0x11, 0xa1, ike.FlagResponse), netip.MustParseAddrPort("198.18.0.2:500"))
	if err := a.SendIKE(ikeHeader(0xa2, 0, ike.FlagInitiator), netip.MustParseAddrPort("198.18.0.2:4500")); err != nil {
		t.Fatal(err)
	}
	a.SendKeepalive(netip.MustParseAddrPort("198.18.0.2:4500"))
	natted := netip.MustParseAddrPort("198.18.0.99:31000")           // the peer's NAT
	p.DispatchNATT(ikeHeader(0x11, 0xa1, ike.FlagInitiator), natted) // learned on 500
	p.DispatchNATT(ikeHeader(0xa2, 0x5, ike.FlagResponse), natted)   // learned on 4500
	p.DispatchNATT(ikeHeader(0x77, 0, ike.FlagInitiator), netip.MustParseAddrPort("198.18.0.2:4500"))
	p.DispatchNATT(ikeHeader(0x78, 0, ike.FlagInitiator), netip.MustParseAddrPort("198.18.0.3:4500")) // b: no NAT-T
	if fmt.Sprint(got) != "[a4500 a4500 a4500]" || nat.ike != 1 || nat.keepalives != 1 || p.Unrouted.Load() != 1 {
		t.Fatalf("dispatched %v, sent %d IKE and %d keepalives on 4500, %d unrouted", got, nat.ike, nat.keepalives, p.Unrouted.Load())
	}
}

// nullSink counts packets.
type nullSink struct{ n int }

func (s *nullSink) Receive(msgs []rawip.Message, _ [][]byte) { s.n += len(msgs) }

// BenchmarkDispatch: a batch of 128 packets for 100 tunnels of 3 SPIs
// each, interleaved. allocs/op must be 0, and ns/op must not grow with
// the number of tunnels (compare -bench with tunnels=1000).
func BenchmarkDispatch(b *testing.B) {
	for _, tunnels := range []int{1, 100, 1000} {
		b.Run(map[int]string{1: "tunnels=1", 100: "tunnels=100", 1000: "tunnels=1000"}[tunnels], func(b *testing.B) {
			spis := NewSPITable()
			sinks := make([]*nullSink, tunnels)
			var all []uint32
			for i := range sinks {
				sinks[i] = &nullSink{}
				for j := 0; j < 3; j++ {
					spi := spis.Allocate()
					spis.Add(spi, sinks[i])
					all = append(all, spi)
				}
			}
			const batch = 128
			p := NewESPPort(&fakeConn{}, spis, batch, 16, 64)
			for i := range p.msgs {
				binary.BigEndian.PutUint32(p.msgs[i].Buf, all[(i*7)%len(all)])
				p.msgs[i].N = 16
				p.msgs[i].Addr = netip.MustParseAddr("198.18.0.2")
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.dispatch(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/packet")
		})
	}
}

// TestDispatchAllocatesNothing holds the hot path to its promise: a batch
// dispatched to many tunnels, unknown SPIs and fallbacks included, costs
// no allocation.
func TestDispatchAllocatesNothing(t *testing.T) {
	spis := NewSPITable()
	sinks := make([]*nullSink, 50)
	var all []uint32
	for i := range sinks {
		sinks[i] = &nullSink{}
		spi := spis.Allocate()
		spis.Add(spi, sinks[i])
		all = append(all, spi)
	}
	p := NewESPPort(&fakeConn{}, spis, 64, 16, 64)
	fallback := &nullSink{}
	p.AddPeer(netip.MustParseAddr("198.18.0.3"), fallback)
	for i := range p.msgs {
		spi := all[i%len(all)]
		if i%5 == 0 {
			spi = 0xdead0000 + uint32(i) // no tunnel's
		}
		binary.BigEndian.PutUint32(p.msgs[i].Buf, spi)
		p.msgs[i].N = 16
		p.msgs[i].Addr = netip.MustParseAddr([]string{"198.18.0.2", "198.18.0.3"}[i%2])
	}
	if a := testing.AllocsPerRun(100, func() { p.dispatch(len(p.msgs)) }); a != 0 {
		t.Fatalf("dispatch allocates %.1f times per batch", a)
	}
	if fallback.n == 0 || p.Stats().UnknownSPI.Load() == 0 {
		t.Fatalf("fallback got %d packets, %d unknown-SPI drops: the test did not reach both paths", fallback.n, p.Stats().UnknownSPI.Load())
	}
}
