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
	t := &familyChild{sa: sa}
	if groups := DHGroups(e.cfg.ESPProposals); len(groups) > 0 {
		t.group = groups[0]
	}
	t.ni, t.spiIn = e.randBytes(nonceLen), e.newESPSPI()
	child := e.childRequest(e.cfg.ESPProposals, t.spiIn)
	ts := len(child) - 2
	inner := append(Payloads{}, child[:ts]...)
	inner = append(inner, &Nonce{Data: t.ni})
	t.fields = append(e.saFields(sa, nil), zap.String("local_ts", FormatSelectors(local)), zap.String("remote_ts", FormatSelectors(remote)))
	if t.group != DHNone {
		var err error
		if t.dh, err = GenerateDH(t.group, e.rand); err != nil {
			t.failed(e, "no DH key: "+err.Error())
			return
		}
		inner = append(inner, &KE{Group: uint16(t.group), Data: t.dh.Public()})
	}
	inner = append(inner, &TSi{TrafficSelectors{local}}, &TSr{TrafficSelectors{remote}})
	e.log.Info("responder narrowed a family away: asking for it in another CHILD_SA", t.fields...)
	e.sendRequest(now, sa, CREATE_CHILD_SA, inner, t)
}

// familyChild is our CREATE_CHILD_SA for a family the first CHILD_SA on
// sa lost: our nonce, inbound SPI and, with PFS, DH key of group.
type familyChild struct {
	sa     *ikeSA
	group  DHGroup
	ni     []byte
	spiIn  uint32
	dh     *DHKey
	fields []zap.Field // the SA and the selectors asked for
}

func (t *familyChild) process(e *Engine, now time.Time, _ *Message, _ []byte, ps Payloads) string {
	if n := ps.FirstError(); n != nil {
		t.failed(e, n.Kind.String())
		return ""
	}
	nr, shared, result, err := e.childExchangeKeys(ps, t.dh, t.group)
	if err != nil {
		t.failed(e, err.Error())
		return result
	}
	defer shared.Wipe()
	if t.sa.gone() {
		return ""
	}
	nc, err := e.completeChild(now, t.sa, ps, e.cfg.ESPProposals, t.spiIn, t.ni, nr, shared, t.dh != nil)
	if err != nil {
		t.failed(e, err.Error())
		return ""
	}
	t.sa.children = append(t.sa.children, nc)
	return ""
}

func (t *familyChild) timeout(e *Engine, now time.Time) {
	e.fail(now, t.sa, "CREATE_CHILD_SA: no response")
}

// failed logs why the peer did not give us the CHILD_SA; Info, not a
// warning: a peer that carries one family only says so every time.
func (t *familyChild) failed(e *Engine, why string) {
	e.log.Info("additional CHILD_SA not established", append(t.fields, zap.String("reason", why))...)
}
