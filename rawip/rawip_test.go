package rawip

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIPPED (-short): needs root and network namespaces")
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root (raw sockets, network namespaces) and CI runs as root")
	}
	t.Skip("SKIPPED: needs root (raw sockets, network namespaces); run `sudo make test`")
}

// twoSites returns raw ESP sockets in two fresh namespaces joined by veth.
func twoSites(t testing.TB, a, b netip.Prefix) (ca, cb *Conn) {
	t.Helper()
	requireRoot(t)
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
			conns[i], err = Listen(50, p.Addr(), 64)
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

func TestBatchBothWays(t *testing.T) {
	for _, fam := range []struct{ name, a, b string }{
		{"ipv4", "198.18.3.1/24", "198.18.3.2/24"},
		{"ipv6", "2001:db8:3::1/64", "2001:db8:3::2/64"},
	} {
		t.Run(fam.name, func(t *testing.T) {
			a, b := netip.MustParsePrefix(fam.a), netip.MustParsePrefix(fam.b)
			ca, cb := twoSites(t, a, b)
			for _, dir := range []struct {
				from, to *Conn
				src, dst netip.Addr
			}{{ca, cb, a.Addr(), b.Addr()}, {cb, ca, b.Addr(), a.Addr()}} {
				const n = 50
				out := make([]Message, n)
				for i := range out {
					// Payloads at an offset, as the tunnel sends them.
					buf := make([]byte, 64+100+i)
					copy(buf[64:], fmt.Sprintf("packet %03d from %s", i, dir.src))
					out[i] = Message{Buf: buf, Off: 64, N: 100 + i, Addr: dir.dst}
				}
				sent, err := dir.from.WriteBatch(out)
				if err != nil || sent != n {
					t.Fatalf("WriteBatch: %d of %d, %v", sent, n, err)
				}
				in := make([]Message, 16)
				for i := range in {
					in[i].Buf = make([]byte, 2048)
				}
				got := 0
				deadline := time.Now().Add(5 * time.Second)
				for got < n && time.Now().Before(deadline) {
					k, err := dir.to.ReadBatch(in)
					if err != nil {
						t.Fatal(err)
					}
					for _, m := range in[:k] {
						want := out[got].Buf[64 : 64+out[got].N]
						if m.Addr != dir.src || !bytes.Equal(m.Buf[m.Off:m.Off+m.N], want) {
							t.Fatalf("packet %d: from %s %q, want from %s %q", got, m.Addr, m.Buf[m.Off:m.Off+m.N], dir.src, want)
						}
						got++
					}
				}
				if got != n {
					t.Fatalf("received %d of %d", got, n)
				}
			}
		})
	}
}

func TestCloseUnblocksReader(t *testing.T) {
	ca, _ := twoSites(t, netip.MustParsePrefix("198.18.4.1/24"), netip.MustParsePrefix("198.18.4.2/24"))
	done := make(chan error, 1)
	go func() {
		_, err := ca.ReadBatch([]Message{{Buf: make([]byte, 100)}})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	ca.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("ReadBatch on a closed socket returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock ReadBatch")
	}
}

func BenchmarkWriteReadBatch(b *testing.B) {
	ca, cb := twoSites(b, netip.MustParsePrefix("198.18.5.1/24"), netip.MustParsePrefix("198.18.5.2/24"))
	const n = 32
	out := make([]Message, n)
	in := make([]Message, n)
	for i := range out {
		out[i] = Message{Buf: make([]byte, 1500), Off: 0, N: 1400, Addr: netip.MustParseAddr("198.18.5.2")}
		in[i].Buf = make([]byte, 2048)
	}
	b.SetBytes(n * 1400)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.WriteBatch(out); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < n; {
			k, err := cb.ReadBatch(in)
			if err != nil {
				b.Fatal(err)
			}
			got += k
		}
	}
}
