package ike

import "net/netip"

// ChildPolicy is what the CHILD_SAs carry, the tunnel's shape as IKEv2
// negotiates it: the ESP mode and the traffic selectors. Its zero value
// is GRE in transport mode between the two IKE endpoints.
type ChildPolicy struct {
	// TunnelMode: no USE_TRANSPORT_MODE is sent, and a peer's choice of
	// transport mode is not accepted (the data plane would not build it).
	TunnelMode bool
	// LocalTS and RemoteTS are our selectors for our side and the
	// peer's; nil: GRE (protocol 47) host to host between Local and
	// Remote.
	LocalTS, RemoteTS []TrafficSelector
	// Narrow lets either side narrow our selectors (RFC 7296 §2.9) to
	// any part of them, as a route-based tunnel can carry any subset;
	// without it a selector is agreed whole or not at all (the data
	// plane carries all of GRE or IP-in-IP between the endpoints, and
	// never a part of it).
	Narrow bool
}

// RangeSelector is a selector for every address of prefix p, any
// protocol and port: what a route-based tunnel (a VTI) negotiates.
func RangeSelector(p netip.Prefix) TrafficSelector {
	p = p.Masked()
	start := p.Addr()
	end := start
	bits := start.BitLen()
	b := end.AsSlice()
	for i := p.Bits(); i < bits; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	end, _ = netip.AddrFromSlice(b)
	t := TS_IPV4_ADDR_RANGE
	if start.Is6() {
		t = TS_IPV6_ADDR_RANGE
	}
	return TrafficSelector{TSType: t, StartPort: 0, EndPort: 0xffff, Start: start, End: end}
}

// Intersect is the part of both selectors (ts ∩ o), and false when they
// share nothing: another family, other protocols, disjoint addresses or
// ports. Port ranges with start after end (OPAQUE, §3.13.1) intersect only
// with themselves or with all ports.
func (ts TrafficSelector) Intersect(o TrafficSelector) (TrafficSelector, bool) {
	if ts.TSType != o.TSType || ts.Raw != nil || o.Raw != nil {
		return TrafficSelector{}, false
	}
	if ts.Contains(o) {
		return o, true
	}
	if o.Contains(ts) {
		return ts, true
	}
	x := ts
	switch {
	case ts.Protocol == 0:
		x.Protocol = o.Protocol
	case o.Protocol != 0 && o.Protocol != ts.Protocol:
		return TrafficSelector{}, false
	}
	if ts.StartPort > ts.EndPort || o.StartPort > o.EndPort {
		return TrafficSelector{}, false // opaque against a partial range
	}
	x.StartPort, x.EndPort = max(ts.StartPort, o.StartPort), min(ts.EndPort, o.EndPort)
	if x.StartPort > x.EndPort {
		return TrafficSelector{}, false
	}
	if ts.Start.Compare(o.Start) < 0 {
		x.Start = o.Start
	}
	if o.End.Compare(ts.End) < 0 {
		x.End = o.End
	}
	if x.Start.Compare(x.End) > 0 {
		return TrafficSelector{}, false
	}
	return x, true
}

// selectors are our local and remote selectors.
func (e *Engine) selectors() (local, remote []TrafficSelector) {
	p := &e.cfg.Child
	if p.LocalTS == nil || p.RemoteTS == nil {
		return []TrafficSelector{HostSelector(e.cfg.Local, gre)}, []TrafficSelector{HostSelector(e.cfg.Remote, gre)}
	}
	return p.LocalTS, p.RemoteTS
}

// narrowTS is the responder's choice (§2.9) from the peer's selectors
// theirs for one side, given ours for that side: with Narrow, every
// non-empty intersection; without, each of ours the peer's contain
// whole. Empty: TS_UNACCEPTABLE.
func (e *Engine) narrowTS(theirs, ours []TrafficSelector) []TrafficSelector {
	var out []TrafficSelector
	for _, o := range ours {
		if !e.cfg.Child.Narrow {
			if anyContains(theirs, o) {
				out = append(out, o)
			}
			continue
		}
		for _, t := range theirs {
			if x, ok := t.Intersect(o); ok && !anyContains(out, x) {
				out = append(out, x)
			}
		}
	}
	return out
}

// acceptableTS reports whether the responder's selectors got for one
// side are ours or (with Narrow) narrowed from ours: never wider, never
// something else, never empty.
func (e *Engine) acceptableTS(got, ours []TrafficSelector) bool {
	if len(got) == 0 {
		return false
	}
	for _, g := range got {
		ok := false
		for _, o := range ours {
			if o.Contains(g) && (e.cfg.Child.Narrow || g.Contains(o)) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// modeRequest is the mode notify of a CHILD_SA request or answer: none
// for tunnel mode.
func (e *Engine) modeRequest() Payloads {
	if e.cfg.Child.TunnelMode {
		return nil
	}
	return Payloads{&Notify{Kind: USE_TRANSPORT_MODE}}
}
