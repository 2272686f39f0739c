// CREATE_CHILD_SA (RFC 7296 §1.3): rekeying a CHILD_SA, with PFS when the
// ESP proposals name a group, and its collision rule (§2.8.1); the
// responder's respondCreateChild, which also dispatches IKE SA rekeys
// (ike_rekey.go) and a VTI's extra children.

package ike

import (
	"encoding/binary"
	"slices"
	"time"

	"go.uber.org/zap"
)

// After TEMPORARY_FAILURE (§2.25) or another failed rekey we try again
// after a random delay in this range, so that two peers that collided do
// not collide again.
const (
	rekeyRetryMin = 5 * time.Second
	rekeyRetryMax = 20 * time.Second
)

// rekeyChild replaces c with a new CHILD_SA through CREATE_CHILD_SA
// (§1.3.3) with PFS when our ESP proposals name a group, then deletes c.
// group, when set, is the one the peer asked for with INVALID_KE_PAYLOAD.
func (e *Engine) rekeyChild(now time.Time, sa *ikeSA, c *childSA, group DHGroup, tries int) {
	e.setChildState(c, childRekeying)
	if group == DHNone {
		if groups := DHGroups(e.cfg.ESPProposals); len(groups) > 0 {
			group = groups[0]
		}
	}
	t := &childRekey{sa: sa, c: c, group: group, tries: tries, ni: e.randBytes(nonceLen), spiIn: e.newESPSPI()}
	inner := Payloads{&Notify{Protocol: ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, c.keys.SPIIn), Kind: REKEY_SA}}
	child := e.childRequest(e.cfg.ESPProposals, t.spiIn)
	// child is [USE_TRANSPORT_MODE,] SA, TSi, TSr (tunnel mode has no
	// mode notify): the nonce and KE go between the SA and the TS.
	ts := len(child) - 2
	if e.cfg.Child.Narrow && len(c.keys.LocalTS) > 0 && len(c.keys.RemoteTS) > 0 {
		// A VTI's CHILD_SA keeps the selectors it was narrowed to: one
		// of several, one per family, must not grow into the others.
		child[ts], child[ts+1] = &TSi{TrafficSelectors{c.keys.LocalTS}}, &TSr{TrafficSelectors{c.keys.RemoteTS}}
	}
	inner = append(inner, child[:ts]...)
	inner = append(inner, &Nonce{Data: t.ni})
	if group != DHNone {
		var err error
		if t.dh, err = GenerateDH(group, e.rand); err != nil {
			t.retryLater(e, now, "no DH key: "+err.Error())
			return
		}
		inner = append(inner, &KE{Group: uint16(group), Data: t.dh.Public()})
	}
	inner = append(inner, child[ts:]...)
	e.log.Info("rekeying CHILD_SA", append(e.saFields(sa, nil), zap.Uint32("spi_in", c.keys.SPIIn), zap.Stringer("pfs", group))...)
	e.sendRequest(now, sa, CREATE_CHILD_SA, inner, t)
}

// childRekey is our CREATE_CHILD_SA rekeying c on sa: our nonce, inbound
// SPI and, with PFS, DH key of group; tries counts INVALID_KE_PAYLOAD
// round trips before it.
type childRekey struct {
	sa    *ikeSA
	c     *childSA
	group DHGroup
	tries int
	ni    []byte
	spiIn uint32
	dh    *DHKey
}

func (t *childRekey) process(e *Engine, now time.Time, m *Message, _ []byte, ps Payloads) string {
	if want, ok := t.otherGroup(e, ps); ok {
		e.rekeyChild(now, t.sa, t.c, want, t.tries+1)
		return ""
	}
	if ps.Notify(CHILD_SA_NOT_FOUND) != nil {
		t.notFound(e, now, m)
		return ""
	}
	if n := ps.FirstError(); n != nil {
		// TEMPORARY_FAILURE is a collision (§2.25); anything else, too,
		// is worth another try later.
		if n.Kind == NO_PROPOSAL_CHOSEN {
			e.log.Warn("peer accepts none of our ESP proposals for the rekey", append(e.saFields(t.sa, m),
				zap.String("ours", FormatProposals(e.cfg.ESPProposals)), zap.String("theirs", "unknown (the responder does not say)"))...)
		}
		t.retryLater(e, now, n.Kind.String())
		return ""
	}
	nr, shared, result, err := e.childExchangeKeys(ps, t.dh, t.group)
	if err != nil {
		t.retryLater(e, now, err.Error())
		return result
	}
	defer shared.Wipe()
	owner := e.ownerOf(t.c) // an IKE rekey may have moved c
	if owner == nil {
		owner = t.sa
	}
	nc, err := e.completeChild(now, owner, ps, e.cfg.ESPProposals, t.spiIn, t.ni, nr, shared, t.dh != nil)
	if err != nil {
		t.retryLater(e, now, err.Error())
		return NO_PROPOSAL_CHOSEN.String()
	}
	owner.children = append(owner.children, nc)
	e.counters.Rekeys++
	e.resolveChildRekey(now, owner, t.c, nc)
	return ""
}

func (t *childRekey) timeout(e *Engine, now time.Time) {
	e.fail(now, t.sa, "CREATE_CHILD_SA: no response")
}

// otherGroup is the DH group the peer asks for with INVALID_KE_PAYLOAD,
// if we propose it and may try again.
func (t *childRekey) otherGroup(e *Engine, ps Payloads) (DHGroup, bool) {
	n := ps.Notify(INVALID_KE_PAYLOAD)
	if n == nil || len(n.Data) != 2 || t.tries >= maxInitRetries {
		return DHNone, false
	}
	want := DHGroup(binary.BigEndian.Uint16(n.Data))
	ok := want != t.group && slices.Contains(DHGroups(e.cfg.ESPProposals), want) && t.c.state != childGone
	return want, ok
}

// notFound handles CHILD_SA_NOT_FOUND (§2.25): the peer has no such
// CHILD_SA. Unless a rekey or a delete crossed ours, our state is out of
// step with the peer's: start over.
func (t *childRekey) notFound(e *Engine, now time.Time, m *Message) {
	c := t.c
	e.endRekey(c)
	if c.replacedBy == nil && c.peerRekey == nil && c.state != childGone {
		e.log.Warn("peer does not know the CHILD_SA we rekey", append(e.saFields(t.sa, m), zap.Uint32("spi_in", c.keys.SPIIn))...)
		e.deleteIKEOnce(t.sa)
		e.fail(now, t.sa, "CREATE_CHILD_SA: CHILD_SA_NOT_FOUND")
	}
}

// retryLater ends a failed rekey of c: it is tried again after a random
// delay, unless the peer's rekey replaced c or c is gone.
func (t *childRekey) retryLater(e *Engine, now time.Time, why string) {
	c := t.c
	e.endRekey(c)
	c.peerRekey = nil
	if c.replacedBy != nil || c.state == childGone {
		e.log.Info("CHILD_SA rekey not needed any more", append(e.saFields(t.sa, nil), zap.String("reason", why))...)
		return
	}
	c.retryRekey = now.Add(e.randDuration(rekeyRetryMin, rekeyRetryMax))
	e.log.Warn("CHILD_SA rekey failed", append(e.saFields(t.sa, nil), zap.String("reason", why), zap.Time("retry_at", c.retryRekey))...)
}

// resolveChildRekey finishes our rekey of old, which created ours. If the
// peer rekeyed old at the same time (§2.8.1), the new CHILD_SA whose
// exchange had the lowest nonce is redundant and deleted by whoever
// initiated it; the initiator of the survivor deletes old.
func (e *Engine) resolveChildRekey(now time.Time, sa *ikeSA, old, ours *childSA) {
	p := old.peerRekey
	old.peerRekey = nil
	replaced := func(by *childSA) {
		old.replacedBy = by
		if old.state == childInstalled || old.state == childRekeying || old.state == childRedundant {
			e.setChildState(old, childRekeyed)
		}
	}
	if p != nil && p.state != childGone {
		if loses(ours.ni, ours.nr, p.ni, p.nr) {
			e.log.Info("CHILD_SA rekey collision: ours is redundant, deleting it", append(e.saFields(sa, nil),
				zap.Uint32("redundant_spi_in", ours.keys.SPIIn), zap.Uint32("survivor_spi_in", p.keys.SPIIn))...)
			e.setChildState(ours, childRedundant)
			replaced(p)
			// Keep sending on ours, which the peer has installed, until
			// the peer answers its DELETE: the peer may not have read our
			// answer that made p yet (retireChild switches to p then).
			e.deleteChild(now, sa, ours)
			return // the peer won and deletes old
		}
		e.log.Info("CHILD_SA rekey collision: the peer's is redundant, the peer deletes it", append(e.saFields(sa, nil),
			zap.Uint32("redundant_spi_in", p.keys.SPIIn), zap.Uint32("survivor_spi_in", ours.keys.SPIIn))...)
		if p.state == childInstalled || p.state == childRekeying {
			e.setChildState(p, childRedundant)
		}
	}
	replaced(ours)
	e.switchOutbound(ours)
	if old.state == childRekeyed {
		// Make before break: the new SA is in; now retire the old one.
		e.deleteChild(now, sa, old)
	}
}

// respondCreateChild answers CREATE_CHILD_SA: a CHILD_SA rekey (REKEY_SA
// notify) or an IKE SA rekey (SA payload of protocol IKE). New additional
// CHILD_SAs are refused (one GRE SA is all a peering needs) except for a
// VTI, whose peer may negotiate one per family.
func (e *Engine) respondCreateChild(now time.Time, sa *ikeSA, ps Payloads) Payloads {
	if sa.state != saEstablished && sa.state != saRedundant {
		// Being replaced or deleted (§2.25.1, §2.25.2).
		return Payloads{&Notify{Kind: TEMPORARY_FAILURE}}
	}
	saP, _ := ps.Get(PayloadSA).(*SA)
	nonce, _ := ps.Get(PayloadNonce).(*Nonce)
	ke, _ := ps.Get(PayloadKE).(*KE)
	if saP == nil || nonce == nil || len(saP.Proposals) == 0 {
		return Payloads{&Notify{Kind: INVALID_SYNTAX}}
	}
	if saP.Proposals[0].Protocol == ProtoIKE {
		return e.respondRekeyIKE(now, sa, saP, nonce, ke) // ike_rekey.go
	}
	old, refuse := e.childToRekey(sa, ps)
	if refuse != nil {
		return Payloads{refuse}
	}
	suite, refuse := e.chosenESP(sa, saP)
	if refuse != nil {
		return Payloads{refuse}
	}
	nr := e.randBytes(nonceLen) // before the DH key: the order tests' random sources expect
	shared, kePayload, refuse := e.responderPFS(suite.DH, ke)
	if refuse != nil {
		return Payloads{refuse}
	}
	defer shared.Wipe()
	ours := e.cfg.ESPProposals
	if suite.DH == DHNone {
		ours = WithoutDH(ours)
	}
	nc, child, notify := e.acceptChild(now, sa, ps, ours, nonce.Data, nr, shared, suite.DH != DHNone, old != nil)
	if notify != nil {
		return Payloads{notify}
	}
	// child is [USE_TRANSPORT_MODE,] SA, TSi, TSr: the nonce and KE go
	// after the SA. (Tunnel mode has no mode notify: indexing by
	// position would run past the end.)
	ts := len(child) - 2
	out := append(slices.Clone(child[:ts]), &Nonce{Data: nr})
	if kePayload != nil {
		out = append(out, kePayload)
	}
	out = append(out, child[ts:]...)
	if old == nil {
		e.log.Info("additional CHILD_SA created by the peer", append(e.saFields(sa, nil), zap.Uint32("spi_in", nc.keys.SPIIn))...)
		return out
	}
	e.peerRekeyedChild(sa, old, nc)
	return out
}

// childToRekey is the CHILD_SA a CREATE_CHILD_SA request rekeys (nil: it
// asks for an additional one), or the notify that refuses the request.
func (e *Engine) childToRekey(sa *ikeSA, ps Payloads) (*childSA, *Notify) {
	rk := ps.Notify(REKEY_SA)
	switch {
	case rk == nil && !e.cfg.Child.Narrow:
		return nil, &Notify{Kind: NO_ADDITIONAL_SAS}
	case rk == nil:
		// A VTI carries whatever selectors its CHILD_SAs hold: a peer
		// with one child per family (strongSwan's children of 0.0.0.0/0
		// and ::/0) creates the second one here. The data plane sends
		// each packet on the SA whose selectors cover it.
		if sa.ikeRekeying {
			return nil, &Notify{Kind: TEMPORARY_FAILURE}
		}
		return nil, nil
	case len(rk.SPI) != 4:
		return nil, &Notify{Kind: INVALID_SYNTAX}
	}
	old := sa.childByOut(be32(rk.SPI))
	if old == nil {
		return nil, &Notify{Protocol: ProtoESP, SPI: rk.SPI, Kind: CHILD_SA_NOT_FOUND}
	}
	if sa.ikeRekeying || old.state == childDeleting || old.replacedBy != nil {
		// We are rekeying the IKE SA, or closing (or have replaced)
		// this child: the peer retries later, on the new IKE SA (§2.25).
		return nil, &Notify{Kind: TEMPORARY_FAILURE}
	}
	return old, nil
}

// chosenESP is the suite of the ESP proposal we take from saP, or
// NO_PROPOSAL_CHOSEN.
func (e *Engine) chosenESP(sa *ikeSA, saP *SA) (Suite, *Notify) {
	chosen, ok := SelectProposal(e.cfg.ESPProposals, saP.Proposals, true)
	var suite Suite
	var err error
	if ok {
		suite, err = SuiteOf(chosen)
	}
	if !ok || err != nil {
		e.logProposalMismatch(sa, nil, e.cfg.ESPProposals, saP.Proposals)
		return Suite{}, &Notify{Kind: NO_PROPOSAL_CHOSEN}
	}
	return suite, nil
}

// responderPFS makes our half of the PFS exchange of a CREATE_CHILD_SA we
// answer with DH group g (DHNone: no PFS): the shared secret (the caller
// wipes it) and our KE payload, or the notify that refuses the request.
func (e *Engine) responderPFS(g DHGroup, ke *KE) (Secret, Payload, *Notify) {
	if g == DHNone {
		return nil, nil, nil
	}
	if ke == nil || DHGroup(ke.Group) != g {
		return nil, nil, &Notify{Kind: INVALID_KE_PAYLOAD, Data: binary.BigEndian.AppendUint16(nil, uint16(g))}
	}
	if ValidatePublic(g, ke.Data) != nil {
		return nil, nil, &Notify{Kind: INVALID_SYNTAX} // RFC 6989, before any key of ours
	}
	dh, err := GenerateDH(g, e.rand)
	if err != nil {
		e.log.Error("cannot make a DH key to answer CREATE_CHILD_SA", zap.Stringer("group", g), zap.Error(err))
		return nil, nil, &Notify{Kind: TEMPORARY_FAILURE}
	}
	shared, err := dh.Shared(ke.Data)
	if err != nil {
		return nil, nil, &Notify{Kind: INVALID_SYNTAX}
	}
	return shared, &KE{Group: uint16(g), Data: dh.Public()}, nil
}

// peerRekeyedChild records that the peer's rekey of old created nc. The
// old child stays until the initiator deletes it (§2.8). If we are
// rekeying it too, the collision is resolved when our exchange completes
// (§2.8.1).
func (e *Engine) peerRekeyedChild(sa *ikeSA, old, nc *childSA) {
	old.replacedBy = nc
	if old.state != childRekeying {
		e.setChildState(old, childRekeyed)
	} else {
		old.peerRekey = nc
		e.log.Info("CHILD_SA rekey collision: answering the peer's rekey, resolving when ours completes",
			append(e.saFields(sa, nil), zap.Uint32("spi_in", old.keys.SPIIn))...)
	}
	e.counters.Rekeys++
}
