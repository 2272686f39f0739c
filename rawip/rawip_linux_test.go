package rawip

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
)

// twoSites returns raw sockets for proto in two fresh namespaces joined by
// veth, with addresses a and b. Each socket is made on a thread inside its
// namespace and stays there.
func twoSites(t testing.TB, proto int, a, b netip.Prefix, batch int) (ca, cb *Conn) {
	t.Helper()
	nstest.RequireRoot(t, "raw sockets, network namespaces")
	var ns [2]*netns.NS
	for i := range ns {
		n, err := netns.Create(netns.Unique("gresec-rawip"))
		if err != nil {
			t.Fatal(err)
		}
		ns[i] = n
		t.Cleanup(func() { n.Delete() })
	}
	if err := netns.Link(ns[0], "veth0", []netip.Prefix{a}, ns[1], "veth1", []netip.Prefix{b}); err != nil {
		t.Fatal(err)
	}
	conns := [2]*Conn{}
	for i, p := range []netip.Prefix{a, b} {
		err := ns[i].Do(func() (err error) {
			conns[i], err = Listen(proto, p.Addr(), batch)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		c := conns[i]
		t.Cleanup(func() { c.Close() })
	}
	return conns[0], conns[1]
}

// readN reads until it has n packets, failing the test instead of hanging
// if they do not come.
func readN(t *testing.T, c *Conn, n int, bufSize int) []Message {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	defer c.SetReadDeadline(time.Time{})
	var got []Message
	in := make([]Message, 16)
	for len(got) < n {
		for i := range in {
			in[i] = Message{Buf: make([]byte, bufSize)}
		}
		k, err := c.ReadBatch(in)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d packets: %v", len(got), n, err)
		}
		if k < 1 || k > len(in) {
			t.Fatalf("ReadBatch returned %d", k)
		}
		got = append(got, in[:k]...)
	}
	return got
}

func payloadOf(m Message) []byte { return m.Buf[m.Off : m.Off+m.N] }

// TestBatchBothWays sends batches each way, more packets than the batch
// size (so WriteBatch loops), with distinct contents and lengths, and
// reads them back exactly, headers stripped, sources reported.
func TestBatchBothWays(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto int
		a, b  string
	}{
		{"ipv4 esp", 50, "198.18.3.1/24", "198.18.3.2/24"},
		{"ipv6 esp", 50, "2001:db8:3::1/64", "2001:db8:3::2/64"},
		{"ipv4 gre", 47, "198.18.6.1/24", "198.18.6.2/24"},
		{"ipv6 gre", 47, "2001:db8:6::1/64", "2001:db8:6::2/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := netip.MustParsePrefix(tc.a), netip.MustParsePrefix(tc.b)
			const batch = 32
			ca, cb := twoSites(t, tc.proto, a, b, batch)
			for _, dir := range []struct {
				from, to *Conn
				src, dst netip.Addr
			}{{ca, cb, a.Addr(), b.Addr()}, {cb, ca, b.Addr(), a.Addr()}} {
				const n = 3*batch + 5
				out := make([]Message, n)
				for i := range out {
					// Payloads at an offset, as the tunnel sends them.
					const off = 64
					buf := make([]byte, off+100+i+7)
					copy(buf[off:], fmt.Sprintf("packet %03d from %s", i, dir.src))
					buf[off+100+i-1] = byte(i)
					out[i] = Message{Buf: buf, Off: off, N: 100 + i, Addr: dir.dst}
				}
				sent, err := dir.from.WriteBatch(out)
				if err != nil || sent != n {
					t.Fatalf("WriteBatch: %d of %d, %v", sent, n, err)
				}
				for i, m := range readN(t, dir.to, n, 2048) {
					want := payloadOf(out[i])
					if m.Addr != dir.src || !bytes.Equal(payloadOf(m), want) {
						t.Fatalf("packet %d: from %s %q, want from %s %q", i, m.Addr, payloadOf(m), dir.src, want)
					}
					if a.Addr().Is4() && m.Off != 20 {
						t.Errorf("packet %d: IPv4 payload at %d, want 20 (after the header)", i, m.Off)
					}
					if a.Addr().Is6() && m.Off != 0 {
						t.Errorf("packet %d: IPv6 payload at %d", i, m.Off)
					}
				}
			}
			if ca.Dropped() != 0 || cb.Dropped() != 0 {
				t.Errorf("dropped %d, %d", ca.Dropped(), cb.Dropped())
			}
		})
	}
}

// TestTruncatedDropped: a packet larger than its buffer comes back with
// N = 0 and is counted; the packets around it are intact.
func TestTruncatedDropped(t *testing.T) {
	for _, fam := range []struct{ a, b string }{
		{"198.18.7.1/24", "198.18.7.2/24"},
		{"2001:db8:7::1/64", "2001:db8:7::2/64"},
	} {
		a, b := netip.MustParsePrefix(fam.a), netip.MustParsePrefix(fam.b)
		ca, cb := twoSites(t, 50, a, b, 8)
		out := []Message{
			{Buf: bytes.Repeat([]byte{1}, 100), N: 100, Addr: b.Addr()},
			{Buf: bytes.Repeat([]byte{2}, 1000), N: 1000, Addr: b.Addr()},
			{Buf: bytes.Repeat([]byte{3}, 100), N: 100, Addr: b.Addr()},
		}
		if sent, err := ca.WriteBatch(out); sent != 3 || err != nil {
			t.Fatalf("WriteBatch: %d, %v", sent, err)
		}
		got := readN(t, cb, 3, 500)
		if !bytes.Equal(payloadOf(got[0]), payloadOf(out[0])) || got[1].N != 0 || got[1].Addr.IsValid() ||
			!bytes.Equal(payloadOf(got[2]), payloadOf(out[2])) {
			t.Errorf("%s: got N %d/%d/%d", fam.a, got[0].N, got[1].N, got[2].N)
		}
		if cb.Dropped() != 1 {
			t.Errorf("%s: Dropped %d, want 1", fam.a, cb.Dropped())
		}
	}
}

// TestWriteBatchSkipsBadMessages: malformed messages are skipped and
// reported, never a panic, and the good ones around them still go.
func TestWriteBatchSkipsBadMessages(t *testing.T) {
	a, b := netip.MustParsePrefix("198.18.8.1/24"), netip.MustParsePrefix("198.18.8.2/24")
	ca, cb := twoSites(t, 50, a, b, 4)
	good := func(i byte) Message { return Message{Buf: []byte{i, i, i, i}, N: 4, Addr: b.Addr()} }
	out := []Message{
		good(1),
		{Buf: make([]byte, 10), Off: 8, N: 4, Addr: b.Addr()},                     // past the end
		{Buf: make([]byte, 10), Off: -1, N: 4, Addr: b.Addr()},                    // negative
		{Buf: make([]byte, 10), N: 4, Addr: netip.MustParseAddr("2001:db8:8::2")}, // wrong family
		{Buf: make([]byte, 10), N: 4},                                             // no address
		good(2),
		{Buf: make([]byte, 10), N: 4, Addr: netip.MustParseAddr("198.18.8.3")}, // fine: nobody there, but sent
		good(3),
	}
	sent, err := ca.WriteBatch(out)
	if sent != 4 || !errors.Is(err, ErrMessage) {
		t.Errorf("WriteBatch: %d, %v; want 4, ErrMessage", sent, err)
	}
	got := readN(t, cb, 3, 100)
	for i, m := range got {
		if want := payloadOf(good(byte(i + 1))); !bytes.Equal(payloadOf(m), want) {
			t.Errorf("packet %d: %x, want %x", i, payloadOf(m), want)
		}
	}
	// An IPv4-mapped IPv6 address is an IPv4 destination.
	if sent, err := ca.WriteBatch([]Message{{Buf: []byte{9}, N: 1, Addr: netip.AddrFrom16(b.Addr().As16())}}); sent != 1 || err != nil {
		t.Errorf("IPv4-mapped destination: %d, %v", sent, err)
	}
	if m := readN(t, cb, 1, 100)[0]; !bytes.Equal(payloadOf(m), []byte{9}) || m.Addr != a.Addr() {
		t.Errorf("IPv4-mapped destination: got %x from %s", payloadOf(m), m.Addr)
	}
}

func TestListenRefuses(t *testing.T) {
	nstest.RequireRoot(t, "raw sockets, network namespaces")
	for _, tc := range []struct {
		proto int
		addr  netip.Addr
	}{
		{0, netip.MustParseAddr("127.0.0.1")},
		{255, netip.MustParseAddr("127.0.0.1")},
		{256, netip.MustParseAddr("127.0.0.1")},
		{50, netip.Addr{}},
		{50, netip.MustParseAddr("fe80::1%lo")},
		{50, netip.MustParseAddr("198.18.250.250")}, // not a local address
	} {
		if c, err := Listen(tc.proto, tc.addr, 4); err == nil {
			c.Close()
			t.Errorf("Listen(%d, %s) succeeded", tc.proto, tc.addr)
		}
	}
}

func TestReadDeadline(t *testing.T) {
	ca, _ := twoSites(t, 50, netip.MustParsePrefix("198.18.9.1/24"), netip.MustParsePrefix("198.18.9.2/24"), 4)
	if err := ca.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.ReadBatch([]Message{{Buf: make([]byte, 100)}}); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadBatch past its deadline: %v", err)
	}
}

func TestCloseUnblocksReader(t *testing.T) {
	ca, _ := twoSites(t, 50, netip.MustParsePrefix("198.18.4.1/24"), netip.MustParsePrefix("198.18.4.2/24"), 4)
	done := make(chan error, 1)
	go func() {
		_, err := ca.ReadBatch([]Message{{Buf: make([]byte, 100)}})
		done <- err
	}()
	// Closing before the reader parks is fine too: then ReadBatch fails at
	// once, and the check below is the same.
	ca.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) || !errors.Is(err, os.ErrClosed) {
			t.Fatalf("ReadBatch on a closed socket: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock ReadBatch")
	}
	if _, err := ca.WriteBatch([]Message{{Buf: []byte{1}, N: 1, Addr: netip.MustParseAddr("198.18.4.2")}}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteBatch on a closed socket: %v", err)
	}
}

// BenchmarkWriteReadBatch moves batches of 32 packets of 1400 bytes from
// one namespace to another; allocations are per batch (0 expected).
func BenchmarkWriteReadBatch(b *testing.B) {
	for _, fam := range []struct{ name, a, b string }{
		{"ipv4", "198.18.5.1/24", "198.18.5.2/24"},
		{"ipv6", "2001:db8:5::1/64", "2001:db8:5::2/64"},
	} {
		b.Run(fam.name, func(b *testing.B) {
			pa, pb := netip.MustParsePrefix(fam.a), netip.MustParsePrefix(fam.b)
			const n = 32
			ca, cb := twoSites(b, 50, pa, pb, n)
			out := make([]Message, n)
			in := make([]Message, n)
			for i := range out {
				out[i] = Message{Buf: make([]byte, 1500), Off: 64, N: 1400, Addr: pb.Addr()}
				in[i].Buf = make([]byte, 2048)
			}
			roundTrip := func() {
				if sent, err := ca.WriteBatch(out); err != nil || sent != n {
					b.Fatal(sent, err)
				}
				for got := 0; got < n; {
					k, err := cb.ReadBatch(in[:n-got])
					if err != nil {
						b.Fatal(err)
					}
					got += k
				}
			}
			// Warm up outside the timing: the first packets wait for
			// neighbour resolution (about a second for IPv6 while the new
			// veth's link-local address is still tentative).
			roundTrip()
			b.SetBytes(n * 1400)
			b.ReportAllocs()
			for b.Loop() {
				roundTrip()
			}
		})
	}
}

// TestBatchNoAllocs: a batch costs no allocation, sending or receiving.
func TestBatchNoAllocs(t *testing.T) {
	for _, fam := range []struct{ a, b string }{
		{"198.18.10.1/24", "198.18.10.2/24"},
		{"2001:db8:10::1/64", "2001:db8:10::2/64"},
	} {
		pa, pb := netip.MustParsePrefix(fam.a), netip.MustParsePrefix(fam.b)
		const n = 8
		ca, cb := twoSites(t, 50, pa, pb, n)
		out := make([]Message, n)
		for i := range out {
			out[i] = Message{Buf: make([]byte, 1500), Off: 64, N: 1000, Addr: pb.Addr()}
		}
		in := make([]Message, n)
		for i := range in {
			in[i].Buf = make([]byte, 2048)
		}
		// First packets wait for neighbour resolution; get that over with.
		if _, err := ca.WriteBatch(out); err != nil {
			t.Fatal(err)
		}
		readN(t, cb, n, 2048)
		if err := cb.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
			t.Fatal(err)
		}
		var fail error
		allocs := testing.AllocsPerRun(50, func() {
			if _, err := ca.WriteBatch(out); err != nil {
				fail = err
				return
			}
			for got := 0; got < n; {
				k, err := cb.ReadBatch(in[:n-got])
				if err != nil {
					fail = err
					return
				}
				got += k
			}
		})
		if fail != nil {
			t.Fatal(fail)
		}
		if allocs != 0 {
			t.Errorf("%s: %v allocations per batch", fam.a, allocs)
		}
	}
}
