package ike

import (
	"testing"
)

// TestVTIChildRekeyBothWays: tunnel-mode CHILD_SAs (no USE_TRANSPORT_MODE
// notify in the child payloads) rekey with either peer initiating, and a
// rekey proposes the selectors the CHILD_SA was narrowed to, not the
// configured ones: a VTI with one CHILD_SA per family must not see the
// rekey of one grow into the other's. (The child payloads were indexed
// by position as if the mode notify were always there: a tunnel-mode
// rekey went out of range on both sides.)
func TestVTIChildRekeyBothWays(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) {
		noDPD(a, b)
		a.Child = vtiPolicy(anyBoth, anyBoth)
		b.Child = vtiPolicy([]string{"198.19.1.0/24", "2001:db8:1::/48"}, []string{"198.19.0.0/31", "2001:db8:19::/127"})
	})
	establish(t, a, b)
	first := a.dp.installed[0]
	if FormatSelectors(first.LocalTS) != FormatSelectors(b.e.cfg.Child.RemoteTS) || FormatSelectors(first.RemoteTS) != FormatSelectors(b.e.cfg.Child.LocalTS) {
		t.Fatalf("a's CHILD_SA carries %s === %s, want b's narrowing", FormatSelectors(first.LocalTS), FormatSelectors(first.RemoteTS))
	}
	bk := b.dp.installed[0]
	if FormatSelectors(bk.LocalTS) != FormatSelectors(first.RemoteTS) || FormatSelectors(bk.RemoteTS) != FormatSelectors(first.LocalTS) {
		t.Fatalf("b's CHILD_SA carries %s === %s, a's the mirror %s === %s", FormatSelectors(bk.LocalTS), FormatSelectors(bk.RemoteTS),
			FormatSelectors(first.LocalTS), FormatSelectors(first.RemoteTS))
	}
	for round, p := range []struct{ from, to *testPeer }{{a, b}, {b, a}} {
		from, to := p.from, p.to
		n := len(from.dp.installed)
		at := from.e.Status().Children[0].RekeyAt
		from.e.tick(at)
		req := deliver(t, from, to, at)
		m, _ := DecodeMessage(req)
		inner, err := to.e.primary().in.Open(req, m)
		if err != nil || m.Exchange != CREATE_CHILD_SA {
			t.Fatal(m.Exchange, err)
		}
		if inner.Notify(USE_TRANSPORT_MODE) != nil {
			t.Errorf("round %d: a tunnel-mode rekey asks for transport mode", round)
		}
		tsi, _ := inner.Get(PayloadTSi).(*TSi)
		if want := from.dp.installed[n-1].LocalTS; tsi == nil || FormatSelectors(tsi.Selectors) != FormatSelectors(want) {
			t.Errorf("round %d: rekey proposes TSi %v, want the CHILD_SA's %s", round, tsi, FormatSelectors(want))
		}
		deliver(t, to, from, at) // response
		deliver(t, from, to, at) // Delete of the old one
		deliver(t, to, from, at) // its answer
		quiet(t, a, b)
		if len(from.dp.installed) != n+1 {
			t.Fatalf("round %d: %s installed %d CHILD_SAs, want %d", round, from.name, len(from.dp.installed), n+1)
		}
		checkCrosswise(t, from.dp.installed[n], to.dp.installed[len(to.dp.installed)-1])
		if got := from.dp.installed[n]; FormatSelectors(got.LocalTS) != FormatSelectors(from.dp.installed[n-1].LocalTS) ||
			FormatSelectors(got.RemoteTS) != FormatSelectors(from.dp.installed[n-1].RemoteTS) {
			t.Errorf("round %d: the rekeyed CHILD_SA carries %s === %s", round, FormatSelectors(got.LocalTS), FormatSelectors(got.RemoteTS))
		}
		for _, q := range []*testPeer{a, b} {
			if st := q.e.Status(); len(st.Children) != 1 {
				t.Errorf("round %d: %s has %d CHILD_SAs", round, q.name, len(st.Children))
			}
		}
	}
}

// TestVTIFamilyNarrowedAway: a responder that narrows an initiating VTI's
// IPv4+IPv6 proposal to IPv4 gets a CREATE_CHILD_SA for IPv6 alone (no
// REKEY_SA, PFS KE, only IPv6 selectors); refused (TS_UNACCEPTABLE from
// a responder with no IPv6), the IKE SA and its IPv4 CHILD_SA stay.
func TestVTIFamilyNarrowedAway(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) {
		noDPD(a, b)
		a.Child = vtiPolicy(anyBoth, anyBoth)
		b.Child = vtiPolicy([]string{"198.19.1.0/24"}, []string{"198.19.0.0/31"})
	})
	a.e.initiate(t0)
	for range 4 { // IKE_SA_INIT, IKE_AUTH
		from, to := a, b
		if len(a.conn.out) == 0 {
			from, to = b, a
		}
		deliver(t, from, to, t0)
	}
	req := deliver(t, a, b, t0)
	m, _ := DecodeMessage(req)
	inner, err := b.e.primary().in.Open(req, m)
	if err != nil || m.Exchange != CREATE_CHILD_SA {
		t.Fatalf("after IKE_AUTH: %v %v, want a CREATE_CHILD_SA for IPv6", m.Exchange, err)
	}
	if inner.Notify(REKEY_SA) != nil {
		t.Error("the additional CHILD_SA names an SA to rekey")
	}
	if ke, _ := inner.Get(PayloadKE).(*KE); ke == nil {
		t.Error("no PFS KE")
	}
	tsi, _ := inner.Get(PayloadTSi).(*TSi)
	tsr, _ := inner.Get(PayloadTSr).(*TSr)
	if tsi == nil || tsr == nil || FormatSelectors(tsi.Selectors) != "::/0" || FormatSelectors(tsr.Selectors) != "::/0" {
		t.Errorf("additional CHILD_SA proposes %v === %v, want ::/0 === ::/0", tsi, tsr)
	}
	resp := deliver(t, b, a, t0)
	rm, _ := DecodeMessage(resp)
	rin, err := a.e.primary().in.Open(resp, rm)
	if err != nil || rin.Notify(TS_UNACCEPTABLE) == nil {
		t.Errorf("b answered %v (%v), want TS_UNACCEPTABLE", rin, err)
	}
	quiet(t, a, b)
	for _, p := range []*testPeer{a, b} {
		if st := p.e.Status(); st.State != "established" || len(st.Children) != 1 {
			t.Errorf("%s: %+v", p.name, st)
		}
	}
}
