package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestPingIPv4AndIPv6BothWays(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  pairOpt
	}{
		{"esp-over-ipv4", pairOpt{keying: "static"}},
		{"esp-over-ipv6", pairOpt{keying: "static", ipv6: true}},
		{"plain-gre", pairOpt{keying: "none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPair(t, tc.opt)
			for _, c := range []struct {
				from *side
				dst  netip.Addr
			}{
				{p.a, p.b.tun4.Addr()}, {p.a, p.b.tun6.Addr()},
				{p.b, p.a.tun4.Addr()}, {p.b, p.a.tun6.Addr()},
			} {
				if got, out := p.ping(c.from, c.dst, 5); got < 4 {
					t.Errorf("ping %s from %s: %d of 5 replies\n%s", c.dst, c.from.ns.Name, got, out)
				}
			}
			for _, s := range []*side{p.a, p.b} {
				st := p.mustStatus(s)
				if st.Inner.TxPackets < 20 || st.Inner.RxPackets < 20 {
					t.Errorf("%s: inner tx %d rx %d packets, want >= 20 each (10 requests + 10 replies)", s.ns.Name, st.Inner.TxPackets, st.Inner.RxPackets)
				}
				if tc.opt.keying == "static" {
					if st.Protocol != "esp" || st.Outbound == nil || len(st.Inbound) != 1 {
						t.Fatalf("%s: status %+v: want ESP with one outbound and one inbound SA", s.ns.Name, st)
					}
					if st.Outbound.Packets != st.Inner.TxPackets || st.Inbound[0].Packets != st.Inner.RxPackets {
						t.Errorf("%s: SA counters (out %d, in %d) disagree with inner counters (tx %d, rx %d)", s.ns.Name,
							st.Outbound.Packets, st.Inbound[0].Packets, st.Inner.TxPackets, st.Inner.RxPackets)
					}
				}
				for reason, n := range st.Drops {
					if n != 0 {
						t.Errorf("%s: %d drops (%s) on a clean link", s.ns.Name, n, reason)
					}
				}
			}
		})
	}
}

// TestTCPTransfer sends 8 MiB of random data through the tunnel and checks
// the receiver's SHA-256 against the sender's.
func TestTCPTransfer(t *testing.T) {
	for _, keying := range []string{"static", "ikev2"} {
		t.Run(keying, func(t *testing.T) { tcpTransfer(t, keying) })
	}
}

func tcpTransfer(t *testing.T, keying string) { tcpTransferWith(t, pairOpt{keying: keying}) }

// tcpTransferWith is TestTCPTransfer between a pair started with o,
// which it returns.
func tcpTransferWith(t *testing.T, o pairOpt) *pair {
	p := startPair(t, o)
	if o.keying == "ikev2" {
		p.waitEstablished(15 * time.Second)
	}
	const size = 8 << 20
	data := make([]byte, size)
	rand.Read(data)

	for _, dst := range []netip.Addr{p.b.tun4.Addr(), p.b.tun6.Addr()} {
		transferTCP(t, p.a, p.b, dst, data)
	}
	st := p.mustStatus(p.b)
	if st.Inner.RxBytes < 2*size {
		t.Errorf("b received %d inner bytes, want >= %d", st.Inner.RxBytes, 2*size)
	}
	return p
}

// transferTCP sends data over one TCP connection from `from` to dst (an
// address of `to`) through the tunnel and checks the receiver's SHA-256.
func transferTCP(t *testing.T, from, to *side, dst netip.Addr, data []byte) {
	t.Helper()
	want := sha256.Sum256(data)
	var ln net.Listener
	err := to.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 5201).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan [32]byte, 1)
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			got <- [32]byte{}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		io.Copy(h, c)
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		got <- sum
	}()

	var c net.Conn
	err = from.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", netip.AddrPortFrom(dst, 5201).String(), 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dial %s through the tunnel: %v", dst, err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.Copy(c, bytes.NewReader(data)); err != nil {
		t.Fatalf("sending to %s: %v", dst, err)
	}
	c.Close()
	select {
	case sum := <-got:
		if sum != want {
			t.Fatalf("%s: receiver's SHA-256 %x differs from the sender's %x", dst, sum, want)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: transfer did not finish in 60 s", dst)
	}
}

func TestWrongKeyCountsAuthFailures(t *testing.T) {
	p := startPair(t, pairOpt{wrongKey: true})
	if got, out := p.ping(p.a, p.b.tun4.Addr(), 5); got != 0 {
		t.Fatalf("%d replies with mismatched keys: traffic must not be delivered\n%s", got, out)
	}
	st := p.mustStatus(p.b)
	if st.Inner.RxPackets != 0 {
		t.Errorf("b delivered %d packets decrypted with the wrong key", st.Inner.RxPackets)
	}
	if len(st.Inbound) != 1 || st.Inbound[0].Drops["auth"] < 5 {
		t.Errorf("b inbound SA drops %v, want >= 5 ICV (auth) failures", st.Inbound)
	}
}
