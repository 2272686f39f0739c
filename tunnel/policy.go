package tunnel

import (
	"slices"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/ike"
)

// A VTI keyed by IKE may hold several CHILD_SAs at once that are not
// rekeys of one another: a peer that negotiates IPv4 and IPv6 on separate
// CHILD_SAs (strongSwan with one child per family), or narrows the
// selectors to some prefixes. Each SA carries its negotiated selectors
// (esp.Selectors): the sender puts a packet on the first outbound SA in
// policy order whose selectors cover it, the receiver drops an inner
// packet its SA's selectors do not cover (RFC 4301 §5.2). Policy order is
// the engine's choice of sending SA first (a rekey's new SA once the peer
// has it), then the others, newest first.

// vtiPolicy is the outbound SAs in policy order; children.mu guards
// order, and the published slice is never written after it is stored.
type vtiPolicy struct {
	order []uint32 // inbound SPIs of the installed CHILD_SAs, preferred first
}

// selectorsOf turns a CHILD_SA's negotiated selectors into the data
// plane's, for a VTI; nil for the other shapes, whose selectors are
// protocols between the underlay addresses that the shape itself keeps.
func (t *Tunnel) selectorsOf(k ike.ChildKeys) *esp.Selectors {
	if t.cfg.Shape() != config.ShapeVTI || len(k.LocalTS) == 0 || len(k.RemoteTS) == 0 {
		return nil
	}
	conv := func(ts []ike.TrafficSelector) []esp.AddrRange {
		var out []esp.AddrRange
		for _, s := range ts {
			if s.Raw != nil || !s.Start.IsValid() || !s.End.IsValid() {
				continue // a selector type we cannot check matches nothing
			}
			out = append(out, esp.AddrRange{First: s.Start, Last: s.End, Proto: s.Protocol})
		}
		return out
	}
	return &esp.Selectors{Local: conv(k.LocalTS), Remote: conv(k.RemoteTS)}
}

// policyInstalled records a new CHILD_SA, preferred unless keep (the
// engine keeps sending on the old one until the peer has it); children.mu
// is held.
func (t *Tunnel) policyInstalled(spiIn uint32, keep bool) {
	p := &t.children.policy
	if keep {
		p.order = append(p.order, spiIn)
	} else {
		p.order = slices.Insert(p.order, 0, spiIn)
	}
	t.publishPolicy()
}

// policyPrefer moves a CHILD_SA to the front; children.mu is held.
func (t *Tunnel) policyPrefer(spiIn uint32) {
	p := &t.children.policy
	if i := slices.Index(p.order, spiIn); i > 0 {
		p.order = slices.Insert(slices.Delete(p.order, i, i+1), 0, spiIn)
		t.publishPolicy()
	}
}

// policyRemoved forgets a CHILD_SA; children.mu is held.
func (t *Tunnel) policyRemoved(spiIn uint32) {
	p := &t.children.policy
	if i := slices.Index(p.order, spiIn); i >= 0 {
		p.order = slices.Delete(p.order, i, i+1)
		t.publishPolicy()
	}
}

// publishPolicy stores the outbound SAs in policy order for the sender;
// children.mu is held.
func (t *Tunnel) publishPolicy() {
	out := make([]*esp.SA, 0, len(t.children.policy.order))
	for _, spi := range t.children.policy.order {
		if sa := t.children.out[spi]; sa != nil {
			out = append(out, sa)
		}
	}
	t.vtiOut.Store(&out)
}

// outboundFor is the SA the inner packet pkt goes on: the first in policy
// order whose selectors cover it, or nil. It does not allocate.
func outboundFor(sas []*esp.SA, pkt []byte) *esp.SA {
	for _, sa := range sas {
		if sel := sa.Selectors(); sel == nil || sel.Outbound(pkt) {
			return sa
		}
	}
	return nil
}
