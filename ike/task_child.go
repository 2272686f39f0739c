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
	inner = append(inner, child[0], child[1], &Nonce{Data: ni})
	if group != DHNone {
		var err error
		if dh, err = GenerateDH(group, e.rand); err != nil {
			e.endRekey(c)
			return
		}
		inner = append(inner, &KE{Group: uint16(group), Data: dh.Public()})
	}
	inner = append(inner, child[2], child[3])
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

// deleteChild asks the peer to delete c and removes it once the peer
// confirms (the peer may send on it until then).
func (e *Engine) deleteChild(now time.Time, sa *ikeSA, c *childSA) {
	e.setChildState(c, childDeleting)
	e.sendRequest(now, sa, INFORMATIONAL, Payloads{&Delete{Protocol: ProtoESP, SPIs: []uint32{c.keys.SPIIn}}},
		func(now time.Time, m *Message, raw []byte, ps Payloads) {
			if owner := e.ownerOf(c); owner != nil {
				e.retireChild(owner, c)
			}
		},
		func(now time.Time) { e.fail(now, sa, "no answer to CHILD_SA delete") })
}

// rekeyIKE replaces sa with a new IKE SA (§1.3.2, §2.18); the children move
// over and the old SA is deleted.
func (e *Engine) rekeyIKE(now time.Time, sa *ikeSA) {
	ni := e.randBytes(nonceLen)
	spiI := e.newIKESPI()
	dh, err := GenerateDH(sa.suite.DH, e.rand)
	if err != nil {
		return
	}
	sa.ikeRekeying = true
	props := make([]Proposal, len(e.cfg.Proposals))
	for i, p := range e.cfg.Proposals {
		p.SPI = binary.BigEndian.AppendUint64(nil, spiI)
		props[i] = p
	}
	retryLater := func(now time.Time, why string) {
		sa.ikeRekeying = false
		if p := sa.peerRekey; p != nil {
			// The peer's rekey of sa, which crossed ours, stands alone.
			sa.peerRekey = nil
			e.completeIKERekey(now, sa, p, false)
			return
		}
		sa.retryRekey = now.Add(e.randDuration(rekeyRetryMin, rekeyRetryMax))
		e.log.Warn("IKE SA rekey failed", append(e.saFields(sa, nil), zap.String("reason", why), zap.Time("retry_at", sa.retryRekey))...)
	}
	e.log.Info("rekeying IKE SA", e.saFields(sa, nil)...)
	inner := Payloads{&SA{Proposals: props}, &Nonce{Data: ni}, &KE{Group: uint16(sa.suite.DH), Data: dh.Public()}}
	e.sendRequest(now, sa, CREATE_CHILD_SA, inner, func(now time.Time, m *Message, raw []byte, ps Payloads) {
		if n := ps.FirstError(); n != nil {
			retryLater(now, n.Kind.String())
			return
		}
		saP, _ := ps.Get(PayloadSA).(*SA)
		nonce, _ := ps.Get(PayloadNonce).(*Nonce)
		ke, _ := ps.Get(PayloadKE).(*KE)
		if saP == nil || nonce == nil || ke == nil || len(saP.Proposals) != 1 || len(saP.Proposals[0].SPI) != 8 {
			e.result = INVALID_SYNTAX.String()
			retryLater(now, "incomplete response")
			return
		}
		suite, err := e.acceptedSuite(e.cfg.Proposals, saP.Proposals[0], true)
		if err != nil || suite.DH != sa.suite.DH || DHGroup(ke.Group) != sa.suite.DH {
			e.logProposalMismatch(sa, m, e.cfg.Proposals, saP.Proposals)
			e.result = NO_PROPOSAL_CHOSEN.String()
			retryLater(now, "unacceptable proposal")
			return
		}
		shared, err := dh.Shared(ke.Data)
		if err != nil {
			e.result = INVALID_SYNTAX.String()
			retryLater(now, err.Error())
			return
		}
		nsa := &ikeSA{spiI: spiI, spiR: binary.BigEndian.Uint64(saP.Proposals[0].SPI), initiator: true,
			suite: suite, ni: ni, nr: nonce.Data}
		if err := e.deriveRekeyed(now, sa, nsa, shared); err != nil {
			retryLater(now, err.Error())
			return
		}
		sa.ikeRekeying = false
		e.resolveIKERekey(now, sa, nsa)
	}, func(now time.Time) { e.fail(now, sa, "CREATE_CHILD_SA (IKE rekey): no response") })
}

// deriveRekeyed derives a new IKE SA's keys from the old SK_d (§2.18) and
// adds it, established, to the engine's SAs.
func (e *Engine) deriveRekeyed(now time.Time, old, nsa *ikeSA, shared Secret) error {
	nsa.nat = old.nat // the path to the peer stays (nat.go)
	skeyseed, err := RekeySKEYSEED(nsa.suite.PRF, old.keys.SKd, shared, nsa.ni, nsa.nr)
	shared.Wipe()
	if err != nil {
		return err
	}
	if err := nsa.deriveKeys(skeyseed); err != nil {
		return err
	}
	nsa.seq, nsa.createdAt = e.nextSeq(), now
	e.established(now, nsa)
	e.sas = append(e.sas, nsa)
	e.keyGen++
	return nil
}

// resolveIKERekey finishes our rekey of old, which created ours. If the
// peer rekeyed old at the same time (§2.8.2), the new IKE SA whose exchange
// had the lowest nonce is redundant and deleted by whoever initiated it;
// the initiator of the survivor deletes old.
func (e *Engine) resolveIKERekey(now time.Time, old, ours *ikeSA) {
	p := old.peerRekey
	old.peerRekey = nil
	if p == nil || p.gone() {
		e.completeIKERekey(now, old, ours, true)
		return
	}
	p.pendingOn = nil
	e.setState(p, saEstablished) // decided now
	if loses(ours.ni, ours.nr, p.ni, p.nr) {
		e.log.Info("IKE SA rekey collision: ours is redundant, deleting it", append(e.saFields(ours, nil),
			zap.String("survivor_spi_i", hex64(p.spiI)), zap.String("survivor_spi_r", hex64(p.spiR)))...)
		e.completeIKERekey(now, old, p, false) // the peer deletes old
		e.setState(ours, saRedundant)
		ours.survivor, ours.redundantSince = p, now
		e.deleteIKESA(now, ours)
		return
	}
	e.log.Info("IKE SA rekey collision: the peer's is redundant, the peer deletes it", append(e.saFields(p, nil),
		zap.String("survivor_spi_i", hex64(ours.spiI)), zap.String("survivor_spi_r", hex64(ours.spiR)))...)
	e.setState(p, saRedundant)
	p.survivor, p.redundantSince = ours, now
	e.completeIKERekey(now, old, ours, true)
}

// completeIKERekey moves old's children to nsa, which takes over; if
// deleteOld (we initiated the surviving rekey), old is deleted.
func (e *Engine) completeIKERekey(now time.Time, old, nsa *ikeSA, deleteOld bool) {
	if nsa.state == saPending {
		e.setState(nsa, saEstablished)
	}
	nsa.pendingOn = nil
	moved := old.children
	nsa.children, old.children = append(nsa.children, moved...), nil
	e.setState(old, saRekeyed)
	// Requests queued on old die with it (§2.8.2: no new exchanges on an
	// SA being rekeyed); child deletes among them move to the new SA.
	old.queue = nil
	for _, c := range moved {
		e.endRekey(c)
		if c.state == childDeleting {
			e.deleteChild(now, nsa, c)
		}
	}
	e.counters.Rekeys++
	e.log.Info("IKE SA rekeyed", append(e.saFields(nsa, nil), zap.String("old_spi_i", hex64(old.spiI)), zap.String("old_spi_r", hex64(old.spiR)))...)
	if deleteOld {
		e.deleteIKESA(now, old)
	}
}

// respondCreateChild answers CREATE_CHILD_SA: a CHILD_SA rekey (REKEY_SA
// notify) or an IKE SA rekey (SA payload of protocol IKE). New additional
// CHILD_SAs are refused: one GRE SA is all a peering needs.
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
	if rk == nil {
		return Payloads{&Notify{Kind: NO_ADDITIONAL_SAS}}
	}
	if len(rk.SPI) != 4 {
		return Payloads{&Notify{Kind: INVALID_SYNTAX}}
	}
	old := sa.childByOut(be32(rk.SPI))
	if old == nil {
		return Payloads{&Notify{Protocol: ProtoESP, SPI: rk.SPI, Kind: CHILD_SA_NOT_FOUND}}
	}
	if sa.ikeRekeying || old.state == childDeleting || old.replacedBy != nil {
		// We are rekeying the IKE SA, or closing (or have replaced) this
		// child: the peer retries later, on the new IKE SA (§2.25).
		return Payloads{&Notify{Kind: TEMPORARY_FAILURE}}
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
	nc, child, notify := e.acceptChild(now, sa, ps, ours, nonce.Data, nr, shared, suite.DH != DHNone, true)
	if notify != nil {
		return Payloads{notify}
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
	out := Payloads{child[0], child[1], &Nonce{Data: nr}}
	if kePayload != nil {
		out = append(out, kePayload)
	}
	e.counters.Rekeys++
	return append(out, child[2], child[3])
}

func (e *Engine) respondRekeyIKE(now time.Time, sa *ikeSA, saP *SA, nonce *Nonce, ke *KE) Payloads {
	if !sa.usable() {
		// Being replaced, deleted or found redundant (§2.25.2).
		return Payloads{&Notify{Kind: TEMPORARY_FAILURE}}
	}
	if r := sa.req; r != nil && r.exchange == CREATE_CHILD_SA && !sa.ikeRekeying {
		// Our CHILD_SA rekey is in flight on sa: §2.25.2 (and strongSwan)
		// refuse; both sides retry after a random delay.
		return Payloads{&Notify{Kind: TEMPORARY_FAILURE}}
	}
	chosen, ok := SelectProposal(e.cfg.Proposals, saP.Proposals, true)
	if !ok || len(chosen.SPI) != 8 {
		e.logProposalMismatch(sa, nil, e.cfg.Proposals, saP.Proposals)
		return Payloads{&Notify{Kind: NO_PROPOSAL_CHOSEN}}
	}
	suite, err := SuiteOf(chosen)
	if err != nil {
		e.logProposalMismatch(sa, nil, e.cfg.Proposals, saP.Proposals)
		return Payloads{&Notify{Kind: NO_PROPOSAL_CHOSEN}}
	}
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
	shared, err := dh.Shared(ke.Data)
	if err != nil {
		return Payloads{&Notify{Kind: INVALID_SYNTAX}}
	}
	nsa := &ikeSA{spiI: binary.BigEndian.Uint64(chosen.SPI), spiR: e.newIKESPI(), initiator: false,
		suite: suite, ni: nonce.Data, nr: e.randBytes(nonceLen)}
	if err := e.deriveRekeyed(now, sa, nsa, shared); err != nil {
		return Payloads{&Notify{Kind: TEMPORARY_FAILURE}}
	}
	chosen.SPI = binary.BigEndian.AppendUint64(nil, nsa.spiR)
	resp := Payloads{&SA{Proposals: []Proposal{chosen}}, &Nonce{Data: nsa.nr}, &KE{Group: uint16(suite.DH), Data: dh.Public()}}
	if sa.ikeRekeying {
		// Both rekey sa (§2.8.2): keep the peer's new SA aside until ours
		// completes and the nonces say which one stays.
		e.setState(nsa, saPending)
		nsa.pendingOn = sa
		sa.peerRekey = nsa
		e.log.Info("IKE SA rekey collision: answering the peer's rekey, resolving when ours completes", e.saFields(sa, nil)...)
		return resp
	}
	// The peer deletes sa when it has our answer.
	e.completeIKERekey(now, sa, nsa, false)
	return resp
}
