package ike

import (
	"net/netip"
	"testing"
)

func vtiPolicy(local, remote []string) ChildPolicy {
	p := ChildPolicy{TunnelMode: true, Narrow: true}
	for _, s := range local {
		p.LocalTS = append(p.LocalTS, RangeSelector(netip.MustParsePrefix(s)))
	}
	for _, s := range remote {
		p.RemoteTS = append(p.RemoteTS, RangeSelector(netip.MustParsePrefix(s)))
	}
	return p
}

var anyBoth = []string{"0.0.0.0/0", "::/0"}

// TestRangeSelectorAndIntersect: prefixes become address ranges, and the
// intersection of two selectors is the part both hold, or nothing.
func TestRangeSelectorAndIntersect(t *testing.T) {
	all4 := RangeSelector(netip.MustParsePrefix("0.0.0.0/0"))
	if all4.Start.String() != "0.0.0.0" || all4.End.String() != "255.255.255.255" || all4.Protocol != 0 || all4.EndPort != 0xffff {
		t.Errorf("0.0.0.0/0 -> %v", all4)
	}
	net6 := RangeSelector(netip.MustParsePrefix("2001:db8:19::5/48"))
	if net6.TSType != TS_IPV6_ADDR_RANGE || net6.Start.String() != "2001:db8:19::" || net6.End.String() != "2001:db8:19:ffff:ffff:ffff:ffff:ffff" {
		t.Errorf("2001:db8:19::/48 -> %v", net6)
	}
	a := RangeSelector(netip.MustParsePrefix("198.19.0.0/16"))
	b := HostSelector(netip.MustParseAddr("198.19.7.1"), 47)
	if x, ok := all4.Intersect(b); !ok || !sameTS(x, b) {
		t.Errorf("all ∩ host/gre = %v %v", x, ok)
	}
	if x, ok := a.Intersect(all4); !ok || !sameTS(x, a) {
		t.Errorf("/16 ∩ all = %v %v", x, ok)
	}
	c := RangeSelector(netip.MustParsePrefix("198.19.128.0/17"))
	c.Protocol, c.StartPort, c.EndPort = 6, 100, 200
	d := RangeSelector(netip.MustParsePrefix("198.19.0.0/16"))
	d.StartPort, d.EndPort = 150, 300
	x, ok := c.Intersect(d)
	if !ok || x.Protocol != 6 || x.StartPort != 150 || x.EndPort != 200 || x.Start.String() != "198.19.128.0" || x.End.String() != "198.19.255.255" {
		t.Errorf("partial overlap = %v %v", x, ok)
	}
	for _, no := range [][2]TrafficSelector{
		{all4, net6},
		{RangeSelector(netip.MustParsePrefix("198.19.0.0/24")), RangeSelector(netip.MustParsePrefix("198.19.1.0/24"))},
		{HostSelector(netip.MustParseAddr("198.19.0.1"), 47), HostSelector(netip.MustParseAddr("198.19.0.1"), 4)},
	} {
		if x, ok := no[0].Intersect(no[1]); ok {
			t.Errorf("%v ∩ %v = %v, want nothing", no[0], no[1], x)
		}
	}
}

// TestNarrowTS: the responder answers with the part of the peer's
// selectors that is in ours (RFC 7296 §2.9) when narrowing is allowed,
// and with whole selectors of ours otherwise; the initiator accepts
// only ours or, with narrowing allowed, parts of ours.
func TestNarrowTS(t *testing.T) {
	e := &Engine{}
	e.cfg.Child = vtiPolicy([]string{"198.19.0.0/16", "2001:db8::/32"}, anyBoth)
	theirs := []TrafficSelector{RangeSelector(netip.MustParsePrefix("0.0.0.0/0")), RangeSelector(netip.MustParsePrefix("2001:db8:5::/48"))}
	got := e.narrowTS(theirs, e.cfg.Child.LocalTS)
	if len(got) != 2 || !sameTS(got[0], e.cfg.Child.LocalTS[0]) || !sameTS(got[1], theirs[1]) {
		t.Errorf("narrowed to %s", FormatSelectors(got))
	}
	if !e.acceptableTS(got, e.cfg.Child.LocalTS) {
		t.Error("a narrowing of ours not acceptable")
	}
	if e.acceptableTS(theirs, e.cfg.Child.LocalTS) {
		t.Error("a wider selector (0.0.0.0/0 for our /16) accepted")
	}
	if e.acceptableTS(nil, e.cfg.Child.LocalTS) {
		t.Error("no selectors accepted")
	}
	if got := e.narrowTS([]TrafficSelector{RangeSelector(netip.MustParsePrefix("10.0.0.0/8"))}, e.cfg.Child.LocalTS); len(got) != 0 {
		t.Errorf("disjoint selectors narrowed to %s", FormatSelectors(got))
	}

	// Without Narrow (GRE, IP-in-IP): whole selectors or nothing.
	host4 := HostSelector(netip.MustParseAddr("198.18.0.1"), 4)
	host41 := HostSelector(netip.MustParseAddr("198.18.0.1"), 41)
	e.cfg.Child = ChildPolicy{LocalTS: []TrafficSelector{host4, host41}, RemoteTS: []TrafficSelector{host4}}
	if got := e.narrowTS([]TrafficSelector{host4}, e.cfg.Child.LocalTS); len(got) != 1 || !sameTS(got[0], host4) {
		t.Errorf("strict: %s", FormatSelectors(got))
	}
	part := host4
	part.StartPort = 1
	if got := e.narrowTS([]TrafficSelector{part}, e.cfg.Child.LocalTS); len(got) != 0 {
		t.Errorf("strict narrowed a selector to part of it: %s", FormatSelectors(got))
	}
	if e.acceptableTS([]TrafficSelector{part}, e.cfg.Child.LocalTS) {
		t.Error("strict accepted part of a selector")
	}
}

// TestTunnelModeVTI: two engines with route-based policies negotiate a
// tunnel-mode CHILD_SA; the responder narrows the initiator's 0.0.0.0/0
// and ::/0 to its prefixes, which the initiator accepts.
func TestTunnelModeVTI(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) {
		a.Child = vtiPolicy(anyBoth, anyBoth)
		b.Child = vtiPolicy([]string{"198.19.0.0/16", "::/0"}, anyBoth)
	})
	establish(t, a, b)
	checkCrosswise(t, a.dp.installed[0], b.dp.installed[0])
}

// TestChildModeMismatch: a tunnel-mode initiator and a transport-mode
// responder, and the other way round, install nothing: neither side
// builds an SA of a mode its data plane does not carry.
func TestChildModeMismatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tunnelA bool
		wantLog string // on the side that refuses
	}{
		{"tunnel initiator", true, "peer proposes a tunnel-mode CHILD_SA; we need transport mode"},
		{"transport initiator", false, "peer proposes a transport-mode CHILD_SA; we need tunnel mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newPair(t, func(a, b *Config) {
				a.Child.TunnelMode = tc.tunnelA
				b.Child.TunnelMode = !tc.tunnelA
			})
			a.e.initiate(t0)
			for range 4 {
				from, to := a, b
				if len(a.conn.out) == 0 {
					from, to = b, a
				}
				deliver(t, from, to, t0)
			}
			if len(a.dp.installed) != 0 {
				t.Errorf("initiator installed %d CHILD_SAs", len(a.dp.installed))
			}
			if len(b.dp.installed) != 0 {
				t.Errorf("responder installed %d CHILD_SAs", len(b.dp.installed))
			}
			if b.logs.FilterMessage(tc.wantLog).Len() != 1 {
				t.Errorf("responder did not log %q", tc.wantLog)
			}
		})
	}
}

func sameTS(a, b TrafficSelector) bool { return a.Contains(b) && b.Contains(a) }
