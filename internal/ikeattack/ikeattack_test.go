package ikeattack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
)

var (
	peerAddr      = netip.MustParseAddrPort("198.18.0.1:500")
	responderAddr = netip.MustParseAddrPort("198.18.0.2:500")
)

func TestBadKEsAreInvalid(t *testing.T) {
	for _, suite := range []string{"ecp384", "ecp256", "ecp521", "curve25519", "modp2048"} {
		f, err := NewForger(peerAddr, responderAddr, "aes256gcm16-prfsha384-"+suite, 1)
		if err != nil {
			t.Fatal(err)
		}
		own, err := ike.GenerateDH(f.Group, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := own.Shared(f.ValidKE().Data); err != nil {
			t.Fatalf("%s: the forger's valid KE is refused: %v", suite, err)
		}
		bad := f.BadKEs()
		if len(bad) < 6 {
			t.Errorf("%s: only %d bad KE values", suite, len(bad))
		}
		for _, b := range bad {
			if ike.DHGroup(b.KE.Group) != f.Group {
				continue // the group the responder did not propose
			}
			if _, err := own.Shared(b.KE.Data); err == nil {
				t.Errorf("%s: %s (%d bytes) is accepted as a public value", suite, b.Name, len(b.KE.Data))
			}
		}
	}
}

func TestForgedInitDecodes(t *testing.T) {
	f, err := NewForger(peerAddr, responderAddr, "aes256gcm16-prfsha384-ecp384", 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, raw := range f.CrashTriple() {
		m, err := ike.DecodeMessage(raw)
		if err != nil || m.Exchange != ike.IKE_SA_INIT || !m.FromInitiator() || m.SPIr != 0 {
			t.Fatalf("request %d: %v %+v", i, err, m)
		}
	}
	tr := f.CrashTriple()
	a, b, c := ike.Header(tr[0]), ike.Header(tr[1]), ike.Header(tr[2])
	if a.SPIi() != c.SPIi() || a.SPIi() == b.SPIi() || string(tr[0]) == string(tr[2]) {
		t.Error("the triple is not S, T, S with another nonce")
	}
	withCookie, err := ike.DecodeMessage(f.Init(7, f.Nonce(), f.ValidKE(), []byte{0, 1, 2}))
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := withCookie.Payloads[0].(*ike.Notify); !ok || n.Kind != ike.COOKIE {
		t.Error("the cookie is not the first payload")
	}
	if h := ike.Header(BareHeader(1, 2, ike.IKE_AUTH, ike.FlagInitiator, 3)); len(h) != 28 || h.Length() != 28 || h.MessageID() != 3 {
		t.Errorf("bare header %x", []byte(h))
	}
}

// fakeConn feeds an engine datagrams from the peer, then blocks.
type fakeConn struct {
	in     chan []byte
	mu     sync.Mutex
	out    [][]byte
	closed chan struct{}
	once   sync.Once
}

func (c *fakeConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	select {
	case d := <-c.in:
		return copy(b, d), peerAddr, nil
	case <-c.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

func (c *fakeConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out, append([]byte(nil), b...))
	return len(b), nil
}

func (c *fakeConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

// TestMalformedCatalogueGetsNowhere runs every malformed datagram through
// a real responder engine: none may earn a full IKE_SA_INIT response (a
// half-open IKE SA). A valid request after each shows the engine was
// listening, and that it handled the datagram before.
func TestMalformedCatalogueGetsNowhere(t *testing.T) {
	f, err := NewForger(peerAddr, responderAddr, "aes256gcm16-prfsha384-ecp384", 3)
	if err != nil {
		t.Fatal(err)
	}
	cat := f.MalformedCatalogue()
	if len(cat) < 30 {
		t.Errorf("only %d malformed datagrams", len(cat))
	}
	// No cookies: each datagram meets the checks a cookie would come
	// before.
	e := ike.New(ike.Config{Local: responderAddr.Addr(), Remote: peerAddr.Addr(), CookieThreshold: -1,
		LocalPSK: ike.Secret("0123456789abcdef0123"), RemotePSK: ike.Secret("0123456789abcdef0123"),
		Proposals:    ike.MustParseProposals(ike.ProtoIKE, "aes256gcm16-prfsha384-ecp384"),
		ESPProposals: ike.MustParseProposals(ike.ProtoESP, "aes256gcm16-ecp384")}, nopDP{}, nil)
	conn := &fakeConn{in: make(chan []byte), closed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, conn) }()
	defer func() { cancel(); <-done }()
	// answers returns what the engine sent since the call before, once
	// it has answered a valid request sent after the datagram: the
	// engine handles datagrams in order.
	seen := 0
	answers := func() [][]byte {
		sentinel := f.SPI()
		conn.in <- f.Init(sentinel, f.Nonce(), f.ValidKE(), nil)
		var got [][]byte
		ok := netns.WaitFor(10*time.Second, func() bool {
			conn.mu.Lock()
			defer conn.mu.Unlock()
			for i := seen; i < len(conn.out); i++ {
				if ike.Header(conn.out[i]).SPIi() == sentinel {
					got = conn.out[seen:i]
					seen = len(conn.out)
					return true
				}
			}
			return false
		})
		if !ok {
			t.Fatal("the engine does not answer a valid request")
		}
		return got
	}
	answers()
	for _, m := range cat {
		if len(m.Data) > maxDatagram {
			t.Errorf("%s: %d bytes do not fit one datagram", m.Name, len(m.Data))
		}
		conn.in <- m.Data
		for _, raw := range answers() {
			r, err := ike.DecodeMessage(raw)
			if err != nil {
				t.Fatalf("%s: the engine answered with an undecodable message: %v", m.Name, err)
			}
			if r.Exchange == ike.IKE_SA_INIT && r.IsResponse() && r.SPIr != 0 && r.Payloads.Get(ike.PayloadSA) != nil {
				t.Errorf("%s: earned a full IKE_SA_INIT response (SPIi %x, SPIr %x): the responder keeps a half-open SA for it", m.Name, r.SPIi, r.SPIr)
			}
		}
	}
}

type nopDP struct{}

func (nopDP) InstallChild(ike.ChildKeys) error      { return nil }
func (nopDP) RemoveChild(uint32) error              { return nil }
func (nopDP) ChildBytes(uint32) (in, out uint64)    { return 0, 0 }
func (nopDP) SetOutbound(uint32) error              { return nil }
func (nopDP) ChildSequence(spiIn uint32) (n uint64) { return 0 }

func TestFloodIsBounded(t *testing.T) {
	n := 0
	got := Flood{Rate: 2000, Duration: 300 * time.Millisecond}.Run(context.Background(), func(int) { n++ })
	if got != n || got > 600 || got == 0 {
		t.Errorf("2000/s for 300 ms: %d datagrams", got)
	}
	start := time.Now()
	got = Flood{Rate: 1e6, Duration: time.Minute, Max: 50}.Run(context.Background(), func(int) {})
	if got != 50 || time.Since(start) > 10*time.Second {
		t.Errorf("Max 50: %d datagrams in %v", got, time.Since(start))
	}
}

func TestUDPChecksum(t *testing.T) {
	// Verifying: the sum over pseudo-header and segment, checksum
	// included, folds to zero.
	pkt := appendIPv4UDP(nil, peerAddr, responderAddr, 64, []byte("odd-length payload!"))
	if checksum(pkt[:20]) != 0 {
		t.Error("IPv4 header checksum does not verify")
	}
	var pseudo []byte
	pseudo = append(pseudo, pkt[12:20]...)
	pseudo = append(pseudo, 0, 17, 0, byte(len(pkt)-20))
	if fold(sum16(sum16(0, pseudo), pkt[20:])) != 0 {
		t.Error("UDP checksum does not verify")
	}
}

// lab is two namespaces joined by veth: the peer (198.18.0.1) and the
// responder (198.18.0.2).
func lab(t *testing.T) (peer, resp *netns.NS) {
	nstest.RequireRoot(t, "network namespaces and raw sockets")
	var nss []*netns.NS
	for _, name := range []string{"ikeattack-p", "ikeattack-r"} {
		ns, err := netns.Create(netns.Unique(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Delete() })
		nss = append(nss, ns)
	}
	if err := netns.Link(nss[0], "veth-p", []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")},
		nss[1], "veth-r", []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}); err != nil {
		t.Fatal(err)
	}
	return nss[0], nss[1]
}

// TestInjectorSpoofsSource sends from an address nobody has; the
// responder's socket and a sniffer next to it both see it, with the
// forged source, the mark TTL and a checksum the kernel accepted.
func TestInjectorSpoofsSource(t *testing.T) {
	peer, resp := lab(t)
	var inj *Injector
	if err := peer.Do(func() (err error) { inj, err = NewInjector(0); return err }); err != nil {
		t.Fatal(err)
	}
	defer inj.Close()
	var conn *net.UDPConn
	var sn *Sniffer
	err := resp.Do(func() (err error) {
		if conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(responderAddr)); err != nil {
			return err
		}
		sn, err = NewSniffer()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer sn.Close()
	spoofed := netip.MustParseAddrPort("198.18.0.77:4242")
	payload := []byte("forged datagram of odd length")
	if err := inj.Send(spoofed, responderAddr, payload); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil || from != spoofed || string(buf[:n]) != string(payload) {
		t.Fatalf("socket got %q from %v (%v)", buf[:n], from, err)
	}
	for {
		d, err := sn.Read()
		if err != nil {
			t.Fatalf("sniffer: %v", err)
		}
		if d.Src == spoofed {
			if d.Dst != responderAddr || d.TTL != MarkTTL || string(d.Payload) != string(payload) {
				t.Errorf("sniffed %+v", d)
			}
			break
		}
	}
	if inj.Sent() != 1 || inj.Errors() != 0 || inj.Bytes() != uint64(len(payload)) {
		t.Errorf("injector counted %d sent, %d errors, %d bytes", inj.Sent(), inj.Errors(), inj.Bytes())
	}
}

// TestCookieAnswererGetsHalfOpenSAs runs a real responder engine that
// demands cookies after one pending request; the on-path attacker answers
// them and gets its requests accepted.
func TestCookieAnswererGetsHalfOpenSAs(t *testing.T) {
	peer, resp := lab(t)
	var conn *net.UDPConn
	if err := resp.Do(func() (err error) {
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(responderAddr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	e := ike.New(ike.Config{Local: responderAddr.Addr(), Remote: peerAddr.Addr(), CookieThreshold: 1,
		LocalPSK: ike.Secret("0123456789abcdef0123"), RemotePSK: ike.Secret("0123456789abcdef0123"),
		Proposals:    ike.MustParseProposals(ike.ProtoIKE, "aes256gcm16-prfsha256-curve25519"),
		ESPProposals: ike.MustParseProposals(ike.ProtoESP, "aes256gcm16")}, nopDP{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	engineDone := make(chan error, 1)
	go func() { engineDone <- e.Run(ctx, conn) }()
	defer func() { cancel(); <-engineDone }()

	f, err := NewForger(peerAddr, responderAddr, "aes256gcm16-prfsha256-curve25519", 4)
	if err != nil {
		t.Fatal(err)
	}
	var inj *Injector
	var sn *Sniffer
	if err := peer.Do(func() (err error) {
		if inj, err = NewInjector(0); err != nil {
			return err
		}
		sn, err = NewSniffer()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer inj.Close()
	defer sn.Close()
	ca := NewCookieAnswerer(f, inj, sn)
	readDone := make(chan error, 1)
	go func() { readDone <- ca.Run(ctx) }()
	Flood{Rate: 200, Duration: time.Second, Max: 20}.Run(ctx, func(int) {
		if err := ca.SendInit(); err != nil {
			t.Error(err)
		}
	})
	ok := netns.WaitFor(10*time.Second, func() bool { s := ca.Stats(); return s.Answered >= 5 && s.Accepted >= 5 })
	cancel()
	if err := <-readDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Error(err)
	}
	if s := ca.Stats(); !ok || s.Demands < s.Answered || s.Answered > 20 {
		t.Errorf("cookie answerer: %+v (want at least 5 demands answered and accepted)", s)
	}
}
