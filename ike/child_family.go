package ike

import (
	"time"

	"go.uber.org/zap"
)

// A VTI proposes all its selectors, IPv4 and IPv6, in one CHILD_SA. A
// responder that keeps a CHILD_SA per family (strongSwan with children of
// 0.0.0.0/0 and ::/0) picks one child for that proposal and narrows it to
// one family. The initiator then asks for each family it lost in a
// CHILD_SA of its own (RFC 7296 §1.3.1), proposing that family only.

// addFamilyChildren runs after our first CHILD_SA c on sa is installed.
func (e *Engine) addFamilyChildren(now time.Time, sa *ikeSA, c *childSA) {
	if !e.cfg.Child.Narrow {
		return
	}
	local, remote := e.selectors()
	for _, fam := range []TSType{TS_IPV4_ADDR_RANGE, TS_IPV6_ADDR_RANGE} {
		l, r := ofType(local, fam), ofType(remote, fam)
		if len(l) == 0 || len(r) == 0 || len(ofType(c.keys.LocalTS, fam)) > 0 && len(ofType(c.keys.RemoteTS, fam)) > 0 {
			continue
		}
		e.createFamilyChild(now, sa, l, r)
	}
}

func ofType(ts []TrafficSelector, t TSType) []TrafficSelector {
	var out []TrafficSelector
	for _, s := range ts {
		if s.TSType == t {
			out = append(out, s)
		}
	}
	return out
}

// createFamilyChild asks for one more CHILD_SA with the selectors local
// and remote, with PFS when our ESP proposals name a group. A refusal is
// logged, not retried: the peer decides what it carries.
func (e *Engine) createFamilyChild(now time.Time, sa *ikeSA, local, remote []TrafficSelector) {
	var group DHGroup
	if groups := DHGroups(e.cfg.ESPProposals); len(groups) > 0 {
		group = groups[0]
	}
	var dh *DHKey
	ni := e.randBytes(nonceLen)
	spiIn := e.newESPSPI()
	child := e.childRequest(e.cfg.ESPProposals, spiIn)
	ts := len(child) - 2
	inner := append(Payloads{}, child[:ts]...)
	inner = append(inner, &Nonce{Data: ni})
	if group != DHNone {
		var err error
		if dh, err = GenerateDH(group, e.rand); err != nil {
			return
		}
		inner = append(inner, &KE{Group: uint16(group), Data: dh.Public()})
	}
	inner = append(inner, &TSi{TrafficSelectors{local}}, &TSr{TrafficSelectors{remote}})
	fields := append(e.saFields(sa, nil), zap.String("local_ts", FormatSelectors(local)), zap.String("remote_ts", FormatSelectors(remote)))
	e.log.Info("responder narrowed a family away: asking for it in another CHILD_SA", fields...)
	e.sendRequest(now, sa, CREATE_CHILD_SA, inner, func(now time.Time, m *Message, raw []byte, ps Payloads) {
		fail := func(why string) {
			// Info, not a warning: a peer that carries one family only
			// says so here every time.
			e.log.Info("additional CHILD_SA not established", append(fields, zap.String("reason", why))...)
		}
		if n := ps.FirstError(); n != nil {
			fail(n.Kind.String())
			return
		}
		nonce, _ := ps.Get(PayloadNonce).(*Nonce)
		if nonce == nil {
			fail("no nonce in response")
			return
		}
		var shared Secret
		if dh != nil {
			ke, _ := ps.Get(PayloadKE).(*KE)
			if ke == nil || DHGroup(ke.Group) != group {
				fail("response without our PFS group")
				return
			}
			var err error
			if shared, err = dh.Shared(ke.Data); err != nil {
				fail(err.Error())
				return
			}
			defer shared.Wipe()
		}
		ours := e.cfg.ESPProposals
		if dh == nil {
			ours = WithoutDH(ours)
		}
		if sa.gone() {
			return
		}
		nc, err := e.completeChild(now, sa, ps, ours, spiIn, ni, nonce.Data, shared, dh != nil, true)
		if err != nil {
			fail(err.Error())
			return
		}
		sa.children = append(sa.children, nc)
	}, func(now time.Time) { e.fail(now, sa, "CREATE_CHILD_SA: no response") })
}
