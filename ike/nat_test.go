package ike

import (
	"bytes"
	"crypto/rand"
	"net/netip"
	"testing"
	"time"
)

// NAT traversal between two engines in one process. Each engine's sends
// (port 500 and port 4500) go to one outbox with their destination; the
// test delivers them as a NAT would: with the source address and port the
// NAT gives them, on the port they were sent to.

type sent struct {
	b         []byte
	to        netip.AddrPort
	natt      bool // on the 4500 socket (behind the non-ESP marker)
	keepalive bool
}

type outbox struct{ out []sent }

// udp500 is the port-500 socket.
type udp500 struct{ o *outbox }

func (u udp500) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	u.o.out = append(u.o.out, sent{b: bytes.Clone(b), to: to})
	return len(b), nil
}

// udp4500 is the NAT-T socket.
type udp4500 struct{ o *outbox }

func (u udp4500) SendIKE(b []byte, to netip.AddrPort) error {
	u.o.out = append(u.o.out, sent{b: bytes.Clone(b), to: to, natt: true})
	return nil
}

func (u udp4500) SendKeepalive(to netip.AddrPort) error {
	u.o.out = append(u.o.out, sent{to: to, natt: true, keepalive: true})
	return nil
}

// movingDP records ESPPeerMover calls.
type movingDP struct {
	switchingDP
	moves []netip.AddrPort
}

func (d *movingDP) MoveESPPeer(to netip.AddrPort) { d.moves = append(d.moves, to) }

type natPeer struct {
	*testPeer
	box *outbox
	mdp *movingDP
}

var (
	aPrivate = netip.MustParseAddr("198.18.0.1")  // a's own address
	aPublic  = netip.MustParseAddr("198.18.0.99") // a's NAT's outside address
	bAddr    = netip.MustParseAddr("198.18.0.2")
)

// newNATPair makes a (initiator, 198.18.0.1) and b (responder,
// 198.18.0.2), both with a 4500 socket; behindNAT puts a behind a NAT
// whose outside address, aPublic, is what b is configured with.
func newNATPair(t *testing.T, behindNAT bool, mutate func(a, b *Config)) (a, b *natPeer) {
	ta, tb := newPair(t, func(ca, cb *Config) {
		cb.Initiate = false
		ca.NATKeepalive = 20 * time.Second
		cb.NATKeepalive = 20 * time.Second
		if behindNAT {
			cb.Remote = aPublic
		}
		if mutate != nil {
			mutate(ca, cb)
		}
	})
	wrap := func(p *testPeer) *natPeer {
		n := &natPeer{testPeer: p, box: &outbox{}}
		n.mdp = &movingDP{switchingDP: switchingDP{p.dp}}
		n.e.dp = n.mdp
		n.e.conn = udp500{n.box}
		n.e.UseNATSocket(udp4500{n.box})
		return n
	}
	return wrap(ta), wrap(tb)
}

// next takes p's oldest send.
func (p *natPeer) next(t *testing.T) sent {
	t.Helper()
	if len(p.box.out) == 0 {
		t.Fatalf("%s has nothing to send", p.name)
	}
	s := p.box.out[0]
	p.box.out = p.box.out[1:]
	return s
}

// pass delivers p's oldest IKE send to `to`, as coming from `from` (the
// NAT's mapping), on the socket it was sent to; it checks that it was
// sent to want (with natt: on port 4500).
func (p *natPeer) pass(t *testing.T, to *natPeer, from, want netip.AddrPort, natt bool, now time.Time) sent {
	t.Helper()
	s := p.next(t)
	for s.keepalive {
		s = p.next(t)
	}
	if s.to != want || s.natt != natt {
		t.Fatalf("%s sent to %s (port 4500 socket: %v); want %s (%v)", p.name, s.to, s.natt, want, natt)
	}
	to.e.handleOn(s.b, from, natt, now)
	harvest(to.testPeer)
	return s
}

var (
	a500     = netip.AddrPortFrom(aPrivate, 500)
	aMap500  = netip.AddrPortFrom(aPublic, 40500) // the NAT's mapping of a's port 500
	aMap4500 = netip.AddrPortFrom(aPublic, 44500) // ... of a's port 4500
	b500     = netip.AddrPortFrom(bAddr, 500)
	b4500    = netip.AddrPortFrom(bAddr, 4500)
)

// establishBehindNAT runs IKE_SA_INIT on port 500 and IKE_AUTH on 4500
// through a's NAT.
func establishBehindNAT(t *testing.T, a, b *natPeer) {
	t.Helper()
	a.e.initiate(t0)
	a.pass(t, b, aMap500, b500, false, t0)
	b.pass(t, a, b500, aMap500, false, t0) // answered where it came from
	a.pass(t, b, aMap4500, b4500, true, t0)
	b.pass(t, a, b4500, aMap4500, true, t0)
	for _, p := range []*natPeer{a, b} {
		if st := p.e.Status(); st.State != StateEstablished || len(st.Children) != 1 {
			t.Fatalf("%s: %+v", p.name, st)
		}
	}
}

// TestNATInitiatorBehindNAT: the hashes show a NAT in front of a (not
// b); a moves IKE to 4500 from IKE_AUTH on; b answers there, to the
// mapping; both CHILD_SAs carry ESP in UDP to the other's 4500 (b: to
// a's mapping); b accepts a's selectors naming its private address.
func TestNATInitiatorBehindNAT(t *testing.T) {
	a, b := newNATPair(t, true, nil)
	establishBehindNAT(t, a, b)
	sa, sb := a.e.primary(), b.e.primary()
	if !sa.nat.here || sa.nat.there || sb.nat.here || !sb.nat.there {
		t.Errorf("NAT found: a %+v, b %+v; want a: here, b: there", sa.nat, sb.nat)
	}
	if got := a.dp.installed[0].UDPPeer; got != b4500 {
		t.Errorf("a's CHILD_SA sends ESP in UDP to %v; want %v", got, b4500)
	}
	if got := b.dp.installed[0].UDPPeer; got != aMap4500 {
		t.Errorf("b's CHILD_SA sends ESP in UDP to %v; want a's mapping %v", got, aMap4500)
	}
	na, nb := a.e.Status().NAT, b.e.Status().NAT
	if na.Encap != "udp" || !na.NATHere || na.NATThere || na.LocalPort != 4500 || na.RemotePort != 4500 {
		t.Errorf("a's NAT status %+v", na)
	}
	if nb.Encap != "udp" || nb.NATHere || !nb.NATThere || nb.Peer != aMap4500.String() {
		t.Errorf("b's NAT status %+v", nb)
	}
	checkCrosswise(t, a.dp.installed[0], b.dp.installed[0])
}

// TestNATRebinding: b follows a's new mapping on an authenticated request
// from it, and on authentic ESP from it (the tunnel's NoteESPPeer), but
// not on anything unauthenticated.
func TestNATRebinding(t *testing.T) {
	a, b := newNATPair(t, true, nil)
	establishBehindNAT(t, a, b)
	now := t0.Add(time.Second)

	// A forged request from another port: the ICV fails; b stays.
	forged := netip.AddrPortFrom(aPublic, 50000)
	sa := b.e.primary()
	junk := &Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: INFORMATIONAL, MessageID: 2, Flags: FlagInitiator,
		Payloads: Payloads{&Encrypted{Data: make([]byte, 64)}}}
	raw, err := junk.Encode()
	if err != nil {
		t.Fatal(err)
	}
	moves := len(b.mdp.moves) // the float to 4500 was one
	b.e.handleOn(raw, forged, true, now)
	if b.e.peer != aMap4500 || len(b.mdp.moves) != moves {
		t.Fatalf("b moved on an unauthenticated message: peer %v, moves %v", b.e.peer, b.mdp.moves)
	}

	// A liveness check from a new mapping: b answers there and moves.
	moved := netip.AddrPortFrom(aPublic, 45000)
	a.e.sendLivenessCheck(now, a.e.primary())
	a.pass(t, b, moved, b4500, true, now)
	if b.e.peer != moved || len(b.mdp.moves) != moves+1 || b.mdp.moves[moves] != moved {
		t.Fatalf("b did not follow the new mapping: peer %v, moves %v", b.e.peer, b.mdp.moves)
	}
	b.pass(t, a, b4500, moved, true, now)
	if c := b.e.Status().Counters.NATRebinds; c != 1 {
		t.Errorf("rebinds %d", c)
	}

	// Authentic ESP in UDP from yet another mapping.
	again := netip.AddrPortFrom(aPublic, 46000)
	b.e.espPeer(again)
	if b.e.peer != again || len(b.mdp.moves) != moves+2 {
		t.Errorf("b did not follow ESP's new mapping: peer %v, moves %v", b.e.peer, b.mdp.moves)
	}
	// From another address: never (Offer drops it before, too).
	b.e.espPeer(netip.AddrPortFrom(bAddr, 47000))
	if b.e.peer != again {
		t.Errorf("b moved to another address: %v", b.e.peer)
	}

	// b is not behind a NAT: a does not follow b's port changes (that
	// would be MOBIKE).
	a.e.espPeer(netip.AddrPortFrom(bAddr, 4600))
	if a.e.peer != b4500 {
		t.Errorf("a followed a peer that is not behind a NAT: %v", a.e.peer)
	}
}

// TestNATKeepalives: the side behind the NAT sends one 0xFF keepalive to
// the peer's 4500 when nothing went out for NATKeepalive; the other none.
func TestNATKeepalives(t *testing.T) {
	a, b := newNATPair(t, true, nil)
	establishBehindNAT(t, a, b)
	var ka int
	for i := 1; i <= 10; i++ {
		now := t0.Add(time.Duration(i) * 5 * time.Second)
		a.e.natKeepalive(now)
		b.e.natKeepalive(now)
	}
	for _, s := range a.box.out {
		if !s.keepalive || s.to != b4500 {
			t.Errorf("a sent %+v", s)
		}
		ka++
	}
	if ka < 2 || ka > 3 {
		t.Errorf("a sent %d keepalives in 50 s at 20 s intervals", ka)
	}
	if len(b.box.out) != 0 {
		t.Errorf("b, not behind a NAT, sent %d", len(b.box.out))
	}
	a.e.publish() // the engine loop publishes after each tick
	if n := a.e.Status().Counters.NATKeepalives; n != uint64(ka) {
		t.Errorf("keepalives counted %d, sent %d", n, ka)
	}
}

// TestNATPeerFloatsWithoutNAT: strongSwan with mobike = yes moves
// IKE_AUTH to port 4500 without a NAT. We answer on 4500 from 4500, keep
// raw ESP (no NAT: no encapsulation), and send our own requests there
// from then on.
func TestNATPeerFloatsWithoutNAT(t *testing.T) {
	a, b := newNATPair(t, false, nil)
	a4500 := netip.AddrPortFrom(aPrivate, 4500)
	a.e.initiate(t0)
	a.pass(t, b, a500, b500, false, t0)
	b.pass(t, a, b500, a500, false, t0)
	// a did not float (no NAT): it sent IKE_AUTH on 500; deliver it as
	// strongSwan's would come, on 4500.
	s := a.next(t)
	if s.natt || s.to != b500 {
		t.Fatalf("a floated without a NAT: %+v", s)
	}
	b.e.handleOn(s.b, a4500, true, t0)
	r := b.next(t)
	if !r.natt || r.to != a4500 {
		t.Fatalf("b answered %+v; want on 4500 to %v", r, a4500)
	}
	if k := b.dp.installed[0]; k.UDPPeer.IsValid() {
		t.Errorf("b encapsulates without a NAT: %v", k.UDPPeer)
	}
	b.e.sendLivenessCheck(t0, b.e.primary())
	if q := b.next(t); !q.natt || q.to != a4500 {
		t.Errorf("b's own request went %+v; want on 4500 to %v", q, a4500)
	}
	if st := b.e.Status().NAT; st.Encap != "none" || st.LocalPort != 4500 || st.NATHere || st.NATThere {
		t.Errorf("b's NAT status %+v", st)
	}
}

// TestNATAlways: udp_encap = "always" fakes our source hash: both float
// and encapsulate without a NAT; no keepalives (no real NAT here).
func TestNATAlways(t *testing.T) {
	a, b := newNATPair(t, false, func(ca, cb *Config) { ca.UDPEncap, cb.UDPEncap = EncapAlways, EncapAlways })
	a.e.initiate(t0)
	a.pass(t, b, a500, b500, false, t0)
	b.pass(t, a, b500, a500, false, t0)
	a4500 := netip.AddrPortFrom(aPrivate, 4500)
	a.pass(t, b, a4500, b4500, true, t0)
	b.pass(t, a, b4500, a4500, true, t0)
	if a.dp.installed[0].UDPPeer != b4500 || b.dp.installed[0].UDPPeer != a4500 {
		t.Errorf("UDP peers %v %v", a.dp.installed[0].UDPPeer, b.dp.installed[0].UDPPeer)
	}
	if n := a.e.primary().nat; !n.faked || n.here || !n.there {
		t.Errorf("a's NAT flags %+v", n)
	}
	a.e.natKeepalive(t0.Add(time.Minute))
	if len(a.box.out) != 0 {
		t.Errorf("keepalive without a real NAT: %+v", a.box.out)
	}
}

// TestNATNever: udp_encap = "never". An initiator behind a NAT refuses
// (the peer would encapsulate); a responder that sees a NAT answers with
// no NAT_DETECTION payloads, so the initiator never floats.
func TestNATNever(t *testing.T) {
	t.Run("initiator", func(t *testing.T) {
		a, b := newNATPair(t, true, func(ca, cb *Config) { ca.UDPEncap = EncapNever })
		a.e.initiate(t0)
		a.pass(t, b, aMap500, b500, false, t0)
		b.pass(t, a, b500, aMap500, false, t0)
		if len(a.box.out) != 0 || a.e.primary() != nil {
			t.Fatalf("a went on behind a NAT with udp_encap never: %d sends", len(a.box.out))
		}
		if st := a.e.Status(); st.LastError != `NAT detected and udp_encap = "never"` {
			t.Errorf("last error %q", st.LastError)
		}
	})
	t.Run("responder", func(t *testing.T) {
		a, b := newNATPair(t, true, func(ca, cb *Config) { cb.UDPEncap = EncapNever })
		a.e.initiate(t0)
		a.pass(t, b, aMap500, b500, false, t0)
		r := b.next(t)
		m, err := DecodeMessage(r.b)
		if err != nil {
			t.Fatal(err)
		}
		if m.Payloads.Notify(NAT_DETECTION_SOURCE_IP) != nil {
			t.Error("responder with udp_encap never sent NAT detection payloads")
		}
		a.e.handleOn(r.b, b500, false, t0)
		if s := a.next(t); s.natt {
			t.Errorf("a floated though the responder does no NAT-T")
		}
		if b.logs.FilterMessageSnippet(`udp_encap = "never"`).Len() == 0 {
			t.Error("no warning about the NAT")
		}
	})
}

// TestNATSelectorsSubstituted: in transport mode behind a NAT, a's
// selector names its private address; b takes it for a's public one and
// answers with what a sent. Tunnel mode takes selectors as they are.
func TestNATSelectorsSubstituted(t *testing.T) {
	e := New(Config{Local: bAddr, Remote: aPublic}, &fakeDP{}, nil)
	ours := []TrafficSelector{HostSelector(aPublic, gre)}
	theirs := []TrafficSelector{HostSelector(aPrivate, gre)}
	got, ok := e.natSelectors(theirs, ours, true)
	if !ok || got[0].Start != aPublic || theirs[0].Start != aPrivate {
		t.Errorf("substituted %v (%v); theirs now %v", got, ok, theirs)
	}
	if _, ok := e.natSelectors(theirs, ours, false); ok {
		t.Error("substituted without a NAT")
	}
	if _, ok := e.natSelectors([]TrafficSelector{HostSelector(aPrivate, 4)}, ours, true); ok {
		t.Error("substituted across protocols")
	}
	e.cfg.Child.TunnelMode = true
	if _, ok := e.natSelectors(theirs, ours, true); ok {
		t.Error("substituted in tunnel mode")
	}
}

// TestNATMobikeNotifies: a peer behind a NAT that sends MOBIKE's
// UPDATE_SA_ADDRESSES (with COOKIE2) though we never offered MOBIKE: the
// answer copies COOKIE2 and nothing else changes but what notePeer does
// for any authenticated message (the new mapping is followed).
func TestNATMobikeNotifies(t *testing.T) {
	a, b := newNATPair(t, true, nil)
	establishBehindNAT(t, a, b)
	cookie2 := bytes.Repeat([]byte{0xc2}, 16)
	now := t0.Add(time.Second)
	a.e.sendRequest(now, a.e.primary(), INFORMATIONAL, Payloads{&Notify{Kind: UPDATE_SA_ADDRESSES}, &Notify{Kind: COOKIE2, Data: cookie2},
		&Notify{Kind: NO_NATS_ALLOWED, Data: make([]byte, 12)}}, &testTask{sa: a.e.primary(), onResp: func(ps Payloads) {
		if n := ps.Notify(COOKIE2); n == nil || !bytes.Equal(n.Data, cookie2) || len(ps) != 1 {
			t.Errorf("answer %v; want COOKIE2 copied, nothing else", ps)
		}
	}})
	moved := netip.AddrPortFrom(aPublic, 45001)
	a.pass(t, b, moved, b4500, true, now)
	b.pass(t, a, b4500, moved, true, now)
	if st := a.e.Status(); st.State != StateEstablished || len(st.Children) != 1 || b.e.peer != moved {
		t.Errorf("a %+v, b's peer %v", st, b.e.peer)
	}
	if a.e.Status().Counters.Exchanges[ExchangeKey{Exchange: "INFORMATIONAL", Initiated: true, Result: "ok"}] != 1 {
		t.Errorf("counters %+v", a.e.Status().Counters.Exchanges)
	}
}

// TestNATPeerReturnsTo500: after a floated IKE SA, the peer starts a new
// one that stays on port 500 (it restarted with NAT-T off): b's requests
// go to port 500 again.
func TestNATPeerReturnsTo500(t *testing.T) {
	a, b := newNATPair(t, false, func(ca, cb *Config) { ca.UDPEncap = EncapAlways })
	a4500 := netip.AddrPortFrom(aPrivate, 4500)
	a.e.initiate(t0)
	a.pass(t, b, a500, b500, false, t0)
	b.pass(t, a, b500, a500, false, t0)
	a.pass(t, b, a4500, b4500, true, t0)
	b.pass(t, a, b4500, a4500, true, t0)
	if !b.e.nat.floated || b.e.peer != a4500 {
		t.Fatalf("b did not float: %v", b.e.peer)
	}
	// a restarts with udp_encap = "auto": a new engine, same addresses.
	na, _ := newNATPair(t, false, nil)
	na.e.initiate(t0)
	na.pass(t, b, a500, b500, false, t0)
	b.pass(t, na, b500, a500, false, t0)
	na.pass(t, b, a500, b500, false, t0)
	b.pass(t, na, b500, a500, false, t0)
	if b.e.nat.floated || b.e.peer != a500 {
		t.Errorf("b still sends to %v (floated %v)", b.e.peer, b.e.nat.floated)
	}
}

// TestNATUnauthenticatedAuthMovesNothing: a is behind a NAT, its IKE and
// ESP float to its 4500 mapping. Another host behind the same NAT (the
// same public address, other ports) completes an IKE_SA_INIT with b —
// anyone can — and sends an IKE_AUTH protected with the keys of that
// exchange, but it cannot prove the PSK. Before its AUTH verifies,
// nothing may move: not IKE, not a's ESP in UDP. Both ways: IKE_AUTH on
// port 4500 (a "new mapping"), and on port 500 (a peer "back on 500").
func TestNATUnauthenticatedAuthMovesNothing(t *testing.T) {
	for _, c := range []struct {
		name      string
		local     netip.Addr     // the other host's own address, as it knows it
		init, aut netip.AddrPort // its IKE_SA_INIT and IKE_AUTH as b sees them
		natt      bool
	}{
		{"IKE_AUTH on 4500", aPrivate, netip.AddrPortFrom(aPublic, 40999), netip.AddrPortFrom(aPublic, 44999), true},
		{"IKE_AUTH on 500", aPublic, netip.AddrPortFrom(aPublic, 500), netip.AddrPortFrom(aPublic, 500), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := newNATPair(t, true, nil)
			establishBehindNAT(t, a, b)
			moves := len(b.mdp.moves)
			x, _ := newNATPair(t, false, func(cx, _ *Config) {
				cx.Local = c.local
				cx.Rand = rand.Reader // SPIs and nonces of its own, not a's
				cx.LocalPSK, cx.RemotePSK = Secret("not the PSK of a and b"), Secret("not the PSK of a and b")
			})
			x.e.initiate(t0)
			x.pass(t, b, c.init, b500, false, t0)
			b.pass(t, x, b500, c.init, false, t0)
			bPort := b500
			if c.natt {
				bPort = b4500
			}
			x.pass(t, b, c.aut, bPort, c.natt, t0) // IKE_AUTH with an AUTH b cannot verify
			if b.e.peer != aMap4500 || !b.e.nat.floated {
				t.Errorf("b now sends IKE to %v (floated %v), want a's mapping %v", b.e.peer, b.e.nat.floated, aMap4500)
			}
			if len(b.mdp.moves) != moves {
				t.Errorf("b moved a's ESP in UDP to %v", b.mdp.moves[moves:])
			}
			if st := b.e.Status(); st.State != StateEstablished || len(st.Children) != 1 {
				t.Errorf("b's SA with a: %+v", st)
			}
		})
	}
}
