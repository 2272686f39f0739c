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
	groups := DHGroups(e.cfg.ESPProposals)
	if group == DHNone && len(groups) > 0 {
		group = groups[0]
	}
	var dh *DHKey
	ni := e.randBytes(nonceLen)
	spiIn := e.newESPSPI()
	inner := Payloads{&Notify{Protocol: ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, c.keys.SPIIn), Kind: REKEY_SA}}
	child := e.childRequest(e.cfg.ESPProposals, spiIn)
	// child is [USE_TRANSPORT_MODE,] SA, TSi, TSr (tunnel mode has no
	// mode notify): the nonce and KE go between the SA and the TS.
	ts := len(child) - 2
	if e.cfg.Child.Narrow && len(c.keys.LocalTS) > 0 && len(c.keys.RemoteTS) > 0 {
		// A VTI's CHILD_SA keeps the selectors it was narrowed to: one
		// of several, one per family, must not grow into the others.
		child[ts], child[ts+1] = &TSi{TrafficSelectors{c.keys.LocalTS}}, &TSr{TrafficSelectors{c.keys.RemoteTS}}
	}
	inner = append(inner, child[:ts]...)
	inner = append(inner, &Nonce{Data: ni})
	if group != DHNone {
		var err error
		if dh, err = GenerateDH(group, e.rand); err != nil {
			e.endRekey(c)
			return
		}
		inner = append(inner, &KE{Group: uint16(group), Data: dh.Public()})
	}
	inner = append(inner, child[ts:]...)
	e.log.Info("rekeying CHILD_SA", append(e.saFields(sa, nil), zap.Uint32("spi_in", c.keys.SPIIn), zap.Stringer("pfs", group))...)
	retryLater := func(now time.Time, why string) {
		e.endRekey(c)
		c.peerRekey = nil
		if c.replacedBy != nil || c.state == childGone {
			// The peer's rekey of it won or it is gone: nothing to retry.
			e.log.Info("CHILD_SA rekey not needed any more", append(e.saFields(sa, nil), zap.String("reason", why))...)
			return
		}
		c.retryRekey = now.Add(e.randDuration(rekeyRetryMin, rekeyRetryMax))
		e.log.Warn("CHILD_SA rekey failed", append(e.saFields(sa, nil), zap.String("reason", why), zap.Time("retry_at", c.retryRekey))...)
	}
	e.sendRequest(now, sa, CREATE_CHILD_SA, inner, func(now time.Time, m *Message, raw []byte, ps Payloads) {
		if n := ps.Notify(INVALID_KE_PAYLOAD); n != nil && len(n.Data) == 2 && tries < maxInitRetries {
			want := DHGroup(binary.BigEndian.Uint16(n.Data))
			if want != group && slices.Contains(groups, want) && c.state != childGone {
				e.rekeyChild(now, sa, c, want, tries+1)
				return
			}
		}
		if n := ps.Notify(CHILD_SA_NOT_FOUND); n != nil {
			// §2.25: the peer has no such CHILD_SA. Unless a rekey or a
			// delete crossed ours, our state is out of step with the
			// peer's: start over.
			e.endRekey(c)
			if c.replacedBy == nil && c.peerRekey == nil && c.state != childGone {
				e.log.Warn("peer does not know the CHILD_SA we rekey", append(e.saFields(sa, m), zap.Uint32("spi_in", c.keys.SPIIn))...)
				e.deleteIKEOnce(sa)
				e.fail(now, sa, "CREATE_CHILD_SA: CHILD_SA_NOT_FOUND")
			}
			return
		}
		if n := ps.FirstError(); n != nil {
			// TEMPORARY_FAILURE is a collision (§2.25); anything else, too,
			// is worth another try later.
			if n.Kind == NO_PROPOSAL_CHOSEN {
				e.log.Warn("peer accepts none of our ESP proposals for the rekey", append(e.saFields(sa, m),
					zap.String("ours", FormatProposals(e.cfg.ESPProposals)), zap.String("theirs", "unknown (the responder does not say)"))...)
			}
			retryLater(now, n.Kind.String())
			return
		}
		nonce, _ := ps.Get(PayloadNonce).(*Nonce)
		if nonce == nil {
			e.result = INVALID_SYNTAX.String()
			retryLater(now, "no nonce in response")
			return
		}
		var shared Secret
		if dh != nil {
			ke, _ := ps.Get(PayloadKE).(*KE)
			if ke == nil || DHGroup(ke.Group) != group {
				e.result = INVALID_KE_PAYLOAD.String()
				retryLater(now, "response without our PFS group")
				return
			}
			var err error
			if shared, err = dh.Shared(ke.Data); err != nil {
				e.result = INVALID_SYNTAX.String()
				retryLater(now, err.Error())
				return
			}
			defer shared.Wipe()
		}
		ours := e.cfg.ESPProposals
		if dh == nil {
			ours = WithoutDH(ours)
		}
		owner := e.ownerOf(c)
		if owner == nil {
			owner = sa
		}
		nc, err := e.completeChild(now, owner, ps, ours, spiIn, ni, nonce.Data, shared, dh != nil, true)
		if err != nil {
			e.result = NO_PROPOSAL_CHOSEN.String()
			retryLater(now, err.Error())
			return
		}
		owner.children = append(owner.children, nc)
		e.counters.Rekeys++
		e.resolveChildRekey(now, owner, c, nc)
	}, func(now time.Time) { e.fail(now, sa, "CREATE_CHILD_SA: no response") })
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
		return e.respondRekeyIKE(now, sa, saP, nonce, ke)
	}
	rk := ps.Notify(REKEY_SA)
	var old *childSA
	switch {
	case rk == nil && !e.cfg.Child.Narrow:
		return Payloads{&Notify{Kind: NO_ADDITIONAL_SAS}}
	case rk == nil:
		// A VTI carries whatever selectors its CHILD_SAs hold: a peer
		// with one child per family (strongSwan's children of 0.0.0.0/0
		// and ::/0) creates the second one here. The data plane sends
		// each packet on the SA whose selectors cover it.
		if sa.ikeRekeying {
			return Payloads{&Notify{Kind: TEMPORARY_FAILURE}}
		}
	default:
		if len(rk.SPI) != 4 {
			return Payloads{&Notify{Kind: INVALID_SYNTAX}}
		}
		if old = sa.childByOut(be32(rk.SPI)); old == nil {
			return Payloads{&Notify{Protocol: ProtoESP, SPI: rk.SPI, Kind: CHILD_SA_NOT_FOUND}}
		}
		if sa.ikeRekeying || old.state == childDeleting || old.replacedBy != nil {
			// We are rekeying the IKE SA, or closing (or have replaced)
			// this child: the peer retries later, on the new IKE SA (§2.25).
			return Payloads{&Notify{Kind: TEMPORARY_FAILURE}}
		}
	}
	chosen, ok := SelectProposal(e.cfg.ESPProposals, saP.Proposals, true)
	if !ok {
		e.logProposalMismatch(sa, nil, e.cfg.ESPProposals, saP.Proposals)
		return Payloads{&Notify{Kind: NO_PROPOSAL_CHOSEN}}
	}
	suite, err := SuiteOf(chosen)
	if err != nil {
		e.logProposalMismatch(sa, nil, e.cfg.ESPProposals, saP.Proposals)
		return Payloads{&Notify{Kind: NO_PROPOSAL_CHOSEN}}
	}
	nr := e.randBytes(nonceLen)
	var shared Secret
	var kePayload Payload
	if suite.DH != DHNone {
		if ke == nil || DHGroup(ke.Group) != suite.DH {
			return Payloads{&Notify{Kind: INVALID_KE_PAYLOAD, Data: binary.BigEndian.AppendUint16(nil, uint16(suite.DH))}}
		}
		if ValidatePublic(suite.DH, ke.Data) != nil {
			return Payloads{&Notify{Kind: INVALID_SYNTAX}} // RFC 6989, before any key of ours
		}
		dh, err := GenerateDH(suite.DH, e.rand)
		if err != nil {
			return Payloads{&Notify{Kind: TEMPORARY_FAILURE}}
		}
		if shared, err = dh.Shared(ke.Data); err != nil {
			return Payloads{&Notify{Kind: INVALID_SYNTAX}}
		}
		defer shared.Wipe()
		kePayload = &KE{Group: uint16(suite.DH), Data: dh.Public()}
	}
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
	// The old child stays until the initiator deletes it (§2.8). If we
	// are rekeying it too, the collision is resolved when our exchange
	// completes (§2.8.1).
	old.replacedBy = nc
	if old.state != childRekeying {
		e.setChildState(old, childRekeyed)
	} else {
		old.peerRekey = nc
		e.log.Info("CHILD_SA rekey collision: answering the peer's rekey, resolving when ours completes",
			append(e.saFields(sa, nil), zap.Uint32("spi_in", old.keys.SPIIn))...)
	}
	e.counters.Rekeys++
	return out
}
