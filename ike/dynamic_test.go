package ike

import (
	"net/netip"
	"testing"
)

// binderDP records the addresses a dynamic engine binds its data plane to.
type binderDP struct {
	switchingDP
	bound []netip.Addr
}

func (d *binderDP) BindPeer(a netip.Addr) { d.bound = append(d.bound, a) }

// claimConn records the SPIs an engine announces (SPIClaimer).
type claimConn struct {
	*fakeConn
	claimed []uint64
}

func (c *claimConn) Claim(spi uint64) { c.claimed = append(c.claimed, spi) }

// dynamicHub is two engines with remote = "any" on one address, d1 for
// identity one.example and d2 for two.example, each finding the other
// through Handoff; routed records the SPIs handed over.
func dynamicHub(t *testing.T) (d1, d2 *testPeer, b1, b2 *binderDP, routed *[]uint64) {
	dyn := func(id string) func(a, b *Config) {
		return func(_, b *Config) {
			b.AnyRemote, b.Remote, b.RemoteID = true, netip.Addr{}, ID{Type: ID_FQDN, Data: []byte(id)}
		}
	}
	_, d1 = newPeers(t, dyn("one.example"))
	_, d2 = newPeers(t, dyn("two.example"))
	b1, b2 = &binderDP{switchingDP: switchingDP{d1.dp}}, &binderDP{switchingDP: switchingDP{d2.dp}}
	d1.e.dp, d2.e.dp = b1, b2
	routed = new([]uint64)
	handoff := func(id ID) (*Engine, func(uint64)) {
		route := func(spi uint64) { *routed = append(*routed, spi) }
		switch string(id.Data) {
		case "one.example":
			return d1.e, route
		case "two.example":
			return d2.e, route
		}
		return nil, nil
	}
	d1.e.cfg.Handoff, d2.e.cfg.Handoff = handoff, handoff
	return d1, d2, b1, b2, routed
}

// initiator is an engine at local claiming identity id with psk, to the
// hub's address.
func initiator(t *testing.T, local, id string, psk Secret) *testPeer {
	a, _ := newPeers(t, func(a, _ *Config) {
		a.Local, a.LocalID, a.LocalPSK = netip.MustParseAddr(local), ID{Type: ID_FQDN, Data: []byte(id)}, psk
	})
	a.addr = netip.AddrPortFrom(a.e.cfg.Local, 500)
	return a
}

// TestDynamicHandoff: the IKE_SA_INIT of two.example's peer reaches d1,
// whose IKE_AUTH hands the SA to d2, which authenticates the peer with its
// own PSK and binds to its address. A retransmission that still reaches
// d1 is dropped without an INVALID_IKE_SPI hint. A peer claiming
// two.example without its PSK is refused by d2 and moves nothing.
func TestDynamicHandoff(t *testing.T) {
	d1, d2, b1, b2, routed := dynamicHub(t)
	a := initiator(t, "198.18.0.7", "two.example", d2.e.cfg.RemotePSK)
	a.e.initiate(t0)
	deliver(t, a, d1, t0) // IKE_SA_INIT, answered by d1
	deliver(t, d1, a, t0)
	auth := deliver(t, a, d1, t0) // IKE_AUTH: handed to d2
	if len(d1.conn.out) != 0 || d1.e.half.len() != 0 || len(d1.e.sas) != 0 {
		t.Fatalf("d1 kept the SA: %d to send, %d half-open, %d SAs", len(d1.conn.out), d1.e.half.len(), len(d1.e.sas))
	}
	d2.e.adopt(t0, <-d2.e.adopted)
	d2.e.publish()
	deliver(t, d2, a, t0)
	for _, p := range []*testPeer{a, d2} {
		if st := p.e.Status(); st.State != "established" || len(st.Children) != 1 {
			t.Fatalf("%s after the handoff: %+v", p.name, st)
		}
	}
	checkCrosswise(t, a.dp.installed[0], d2.dp.installed[0])
	sa := d2.e.primary()
	if len(*routed) != 1 || (*routed)[0] != sa.spiR {
		t.Errorf("routed %x, want d2's SPI %x", *routed, sa.spiR)
	}
	if len(b2.bound) != 1 || b2.bound[0] != a.addr.Addr() || d2.e.cfg.Remote != a.addr.Addr() || d2.e.peer != a.addr || len(b1.bound) != 0 {
		t.Errorf("bound d1 %v, d2 %v (remote %s, peer %s); want d2 alone at %s", b1.bound, b2.bound, d2.e.cfg.Remote, d2.e.peer, a.addr)
	}
	d1.e.handle(auth, a.addr, t0)
	if len(d1.conn.out) != 0 {
		t.Errorf("d1 answered a retransmission of an SA it handed over")
	}

	x := initiator(t, "198.18.0.9", "two.example", Secret("not-two.example's-key"))
	x.e.initiate(t0)
	deliver(t, x, d1, t0)
	deliver(t, d1, x, t0)
	deliver(t, x, d1, t0)
	d2.e.adopt(t0, <-d2.e.adopted)
	d2.e.publish()
	deliver(t, d2, x, t0)
	if st := x.e.Status(); st.State == "established" {
		t.Fatalf("the impostor established: %+v", st)
	}
	if len(b2.bound) != 1 || d2.e.primary() != sa || len(d2.e.sas) != 1 {
		t.Errorf("the impostor moved d2: bound %v, %d SAs", b2.bound, len(d2.e.sas))
	}
}

// TestRekeyClaimsSPI: both ends announce the SPI of the IKE SA a rekey
// creates to sockets that route by it.
func TestRekeyClaimsSPI(t *testing.T) {
	a, b := newPair(t, noDPD)
	establish(t, a, b)
	ca, cb := &claimConn{fakeConn: a.conn}, &claimConn{fakeConn: b.conn}
	a.e.conn, b.e.conn = ca, cb
	at := a.e.Status().RekeyAt
	a.e.tick(at)
	deliver(t, a, b, at)
	deliver(t, b, a, at)
	deliver(t, a, b, at)
	deliver(t, b, a, at)
	quiet(t, a, b)
	sa, sb := a.e.primary(), b.e.primary()
	if len(ca.claimed) != 1 || ca.claimed[0] != sa.spiI || len(cb.claimed) != 1 || cb.claimed[0] != sb.spiR {
		t.Errorf("claimed a %x, b %x; want the new SA's %x and %x", ca.claimed, cb.claimed, sa.spiI, sb.spiR)
	}
}
