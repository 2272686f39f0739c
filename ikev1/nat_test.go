package ikev1

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gresec/gresec/ike"
)

// movingPlane records where MoveESPPeer sends ESP in UDP.
type movingPlane struct {
	plane
	moved atomic.Pointer[netip.AddrPort]
}

func (p *movingPlane) MoveESPPeer(to netip.AddrPort) { p.moved.Store(&to) }

// natLab joins two engines through a simulated NAT in front of a: a's
// datagrams reach b from natPub with a's ports mapped (500 to map500,
// 4500 to map4500); b reaches a only by sending to a mapping.
type natLab struct {
	a, b            *Engine
	pa, pb          *movingPlane
	natPub          netip.AddrPort // the NAT's address, port unused
	map500, map4500 atomic.Uint32
	keepalives      atomic.Uint64 // a's keepalives that reached b
	misdirected     atomic.Uint64 // b's datagrams to no mapping
	addrAPriv       netip.Addr
}

type labSock struct {
	send func(b []byte, to netip.AddrPort, natt bool)
	ka   func(to netip.AddrPort)
}

func (s labSock) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	s.send(b, to, false)
	return len(b), nil
}
func (s labSock) SendIKE(b []byte, to netip.AddrPort) error { s.send(b, to, true); return nil }
func (s labSock) SendKeepalive(to netip.AddrPort) error     { s.ka(to); return nil }

func newNATLab(t *testing.T, encap ike.EncapMode, noNAT bool, mods ...func(a, b *ike.Config)) *natLab {
	t.Helper()
	l := &natLab{pa: &movingPlane{}, pb: &movingPlane{}}
	pub := netip.MustParseAddr("198.18.0.9")
	l.addrAPriv = netip.MustParseAddr("198.18.1.2")
	if noNAT {
		pub, l.addrAPriv = addrA, addrA
	}
	l.natPub = netip.AddrPortFrom(pub, 0)
	l.map500.Store(500)
	l.map4500.Store(4500)
	if !noNAT {
		l.map500.Store(1500)
		l.map4500.Store(14500)
	}
	ca, cb := testConfig(l.addrAPriv, addrB, true), testConfig(addrB, pub, false)
	ca.RemoteID, cb.LocalID = ike.AddrID(addrB), ike.AddrID(addrB)
	ca.LocalID, cb.RemoteID = ike.AddrID(l.addrAPriv), ike.AddrID(l.addrAPriv)
	ca.UDPEncap, cb.UDPEncap = encap, encap
	ca.NATKeepalive = 200 * time.Millisecond
	for _, m := range mods {
		m(&ca, &cb)
	}
	var err error
	if l.a, err = New(ca, l.pa, zaptest.NewLogger(t).Named("a")); err != nil {
		t.Fatal(err)
	}
	if l.b, err = New(cb, l.pb, zaptest.NewLogger(t).Named("b")); err != nil {
		t.Fatal(err)
	}
	aSock := labSock{send: func(b []byte, to netip.AddrPort, natt bool) {
		if to.Addr() != addrB {
			return
		}
		if natt {
			l.b.OfferNATT(b, netip.AddrPortFrom(pub, uint16(l.map4500.Load())))
		} else {
			l.b.Offer(b, netip.AddrPortFrom(pub, uint16(l.map500.Load())))
		}
	}, ka: func(to netip.AddrPort) {
		if to == netip.AddrPortFrom(addrB, 4500) {
			l.keepalives.Add(1)
		}
	}}
	bSock := labSock{send: func(b []byte, to netip.AddrPort, natt bool) {
		switch {
		case natt && to == netip.AddrPortFrom(pub, uint16(l.map4500.Load())):
			l.a.OfferNATT(b, netip.AddrPortFrom(addrB, 4500))
		case !natt && to == netip.AddrPortFrom(pub, uint16(l.map500.Load())):
			l.a.Offer(b, netip.AddrPortFrom(addrB, 500))
		default:
			l.misdirected.Add(1)
		}
	}, ka: func(netip.AddrPort) {}}
	l.a.UseNATSocket(aSock)
	l.b.UseNATSocket(bSock)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.a.Serve(ctx, aSock) }()
	go func() { defer wg.Done(); l.b.Serve(ctx, bSock) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return l
}

func (l *natLab) agreed(t *testing.T) (ike.ChildKeys, ike.ChildKeys) {
	t.Helper()
	tp := &testPair{pa: &l.pa.plane, pb: &l.pb.plane}
	return tp.agreed(t)
}

// TestNATTraversal: a behind a NAT that changes its ports. Main Mode
// finds the NAT, IKE floats to 4500 from message 5, both phase 2 SAs
// carry ESP in UDP (UDP-Encapsulated-Transport) to the other's 4500 as
// each sees it, a sends keepalives, and b follows a new mapping that
// authentic ESP comes from.
func TestNATTraversal(t *testing.T) {
	l := newNATLab(t, ike.EncapAuto, false)
	ka, kb := l.agreed(t)
	checkMirror(t, ka, kb)
	if want := netip.AddrPortFrom(addrB, 4500); ka.UDPPeer != want {
		t.Errorf("a sends ESP to %v, want %v", ka.UDPPeer, want)
	}
	if want := netip.AddrPortFrom(l.natPub.Addr(), 14500); kb.UDPPeer != want {
		t.Errorf("b sends ESP to %v, want %v", kb.UDPPeer, want)
	}
	sa, sb := l.a.Status().NAT, l.b.Status().NAT
	if sa == nil || sb == nil || !sa.NATHere || sa.NATThere || sb.NATHere || !sb.NATThere || sa.Encap != "udp" || sb.Encap != "udp" {
		t.Fatalf("NAT status a %+v b %+v", sa, sb)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.keepalives.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := l.keepalives.Load(); n < 2 {
		t.Errorf("%d NAT keepalives from a, want at least 2", n)
	}
	l.map4500.Store(24500)
	moved := netip.AddrPortFrom(l.natPub.Addr(), 24500)
	l.b.NoteESPPeer(moved)
	for time.Now().Before(deadline.Add(5*time.Second)) && (l.pb.moved.Load() == nil || *l.pb.moved.Load() != moved) {
		time.Sleep(20 * time.Millisecond)
	}
	if p := l.pb.moved.Load(); p == nil || *p != moved {
		t.Fatalf("b did not follow the new mapping: %v", p)
	}
	if l.b.Status().NAT.Rebinds != 1 || l.b.Status().NAT.RemotePort != 24500 {
		t.Errorf("b NAT status after rebind: %+v", l.b.Status().NAT)
	}
	// A spoofed source (another address) is not followed.
	l.b.NoteESPPeer(netip.MustParseAddrPort("198.18.0.77:999"))
	time.Sleep(300 * time.Millisecond)
	if *l.pb.moved.Load() != moved {
		t.Errorf("b followed a foreign address")
	}
}

// TestNATTraversalAlways: udp_encap = "always" without a NAT fakes the
// hash, and both sides encapsulate; "never" sends no NAT-T vendor ID,
// and both keep raw ESP.
func TestNATTraversalAlways(t *testing.T) {
	for _, tc := range []struct {
		mode ike.EncapMode
		udp  bool
	}{{ike.EncapAlways, true}, {ike.EncapNever, false}, {ike.EncapAuto, false}} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			l := newNATLab(t, tc.mode, true)
			ka, kb := l.agreed(t)
			checkMirror(t, ka, kb)
			if ka.UDPPeer.IsValid() != tc.udp || kb.UDPPeer.IsValid() != tc.udp {
				t.Fatalf("ESP in UDP: a %v b %v, want %v", ka.UDPPeer, kb.UDPPeer, tc.udp)
			}
			if tc.udp && (ka.UDPPeer != netip.AddrPortFrom(addrB, 4500) || kb.UDPPeer != netip.AddrPortFrom(addrA, 4500)) {
				t.Errorf("UDP peers a %v b %v", ka.UDPPeer, kb.UDPPeer)
			}
			// With "always" each side sees the other's faked hash as a
			// NAT in front of the peer.
			st := l.a.Status().NAT
			if st.NATHere || st.NATThere != (tc.mode == ike.EncapAlways) || st.Faked != (tc.mode == ike.EncapAlways) {
				t.Errorf("a NAT status %+v", st)
			}
		})
	}
}

// TestNATPhase1Rekey: the phase 1 rekey of a floated initiator runs on
// port 4500 from its first message, finds the NAT again, and keeps the
// phase 2 SA in UDP.
func TestNATPhase1Rekey(t *testing.T) {
	l := newNATLab(t, ike.EncapAuto, false, func(a, b *ike.Config) { a.Lifetime, b.Lifetime = 3*time.Second, 3*time.Second })
	ka, _ := l.agreed(t)
	first := l.a.Status().Phase1[0].Cookies
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		// Done when the first phase 1 SA is gone from both sides and each
		// has a successor in QM_IDLE. (Not "exactly one each": with a 3 s
		// lifetime the successor's own rekey starts about when the first
		// expires, so a third SA may already be on its way.)
		sa, sb := l.a.Status(), l.b.Status()
		gone, idleA, idleB := true, 0, 0
		for i, p := range append(sa.Phase1, sb.Phase1...) {
			gone = gone && p.Cookies != first
			if p.State == "QM_IDLE" && i < len(sa.Phase1) {
				idleA++
			} else if p.State == "QM_IDLE" {
				idleB++
			}
		}
		if gone && idleA > 0 && idleB > 0 {
			ka2, kb2 := l.agreed(t)
			if ka2.SPIIn != ka.SPIIn || !ka2.UDPPeer.IsValid() || !kb2.UDPPeer.IsValid() {
				t.Fatalf("phase 2 after the rekey: a %+v", ka2)
			}
			if n := sa.NAT; !n.NATHere || n.Encap != "udp" || sb.NAT.RemotePort != 14500 {
				t.Errorf("NAT status after the rekey: a %+v b %+v", n, sb.NAT)
			}
			if n := l.misdirected.Load(); n != 0 {
				t.Errorf("b sent %d datagrams to no mapping", n)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no phase 1 rekey: a %+v, b %+v", l.a.Status().Phase1, l.b.Status().Phase1)
}
