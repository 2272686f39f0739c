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
		b.Child = vtiPolicy([]string{"198.19.1.0/24"}, []string{"198.19.0.0/31"})
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
