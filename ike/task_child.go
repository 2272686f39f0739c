package ike

import (
	"encoding/binary"
	"slices"
	"time"

	"go.uber.org/zap"
)

const rekeyRetry = 30 * time.Second

// rekeyChild replaces c with a new CHILD_SA through CREATE_CHILD_SA
// (§1.3.3) with PFS when our ESP proposals name a group, then deletes c.
// group, when set, is the one the peer asked for with INVALID_KE_PAYLOAD.
func (e *Engine) rekeyChild(now time.Time, sa *ikeSA, c *childSA, group DHGroup, tries int) {
	c.rekeying = true
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
			c.rekeying = false
			return
		}
		inner = append(inner, &KE{Group: uint16(group), Data: dh.Public()})
	}
	inner = append(inner, child[2], child[3])
	e.log.Info("rekeying CHILD_SA", append(e.saFields(sa, nil), zap.Uint32("spi_in", c.keys.SPIIn), zap.Stringer("pfs", group))...)
	retryLater := func(now time.Time, why string) {
		c.rekeying = false
		c.retryRekey = now.Add(rekeyRetry)
		e.log.Warn("CHILD_SA rekey failed", append(e.saFields(sa, nil), zap.String("reason", why))...)
	}
	e.sendRequest(now, sa, CREATE_CHILD_SA, inner, func(now time.Time, m *Message, raw []byte, ps Payloads) {
		if n := ps.Notify(INVALID_KE_PAYLOAD); n != nil && len(n.Data) == 2 && tries < maxInitRetries {
			want := DHGroup(binary.BigEndian.Uint16(n.Data))
			if want != group && slices.Contains(groups, want) {
				e.rekeyChild(now, sa, c, want, tries+1)
				return
			}
		}
		if n := ps.Notify(TEMPORARY_FAILURE); n != nil {
			// §2.25: a collision; try again a little later.
			retryLater(now, "TEMPORARY_FAILURE")
			return
		}
		nonce, _ := ps.Get(PayloadNonce).(*Nonce)
		if nonce == nil {
			retryLater(now, "no nonce in response")
			return
		}
		var shared Secret
		if dh != nil {
			ke, _ := ps.Get(PayloadKE).(*KE)
			if ke == nil || DHGroup(ke.Group) != group {
				retryLater(now, "response without our PFS group")
				return
			}
			var err error
			if shared, err = dh.Shared(ke.Data); err != nil {
				retryLater(now, err.Error())
				return
			}
			defer shared.Wipe()
		}
		ours := e.cfg.ESPProposals
		if dh == nil {
			ours = WithoutDH(ours)
		}
		nc, err := e.completeChild(now, sa, ps, ours, spiIn, ni, nonce.Data, shared, dh != nil, true)
		if err != nil {
			retryLater(now, err.Error())
			return
		}
		sa.children = append(sa.children, nc)
		e.counters.Rekeys++
		// Make before break: the new SA is in; now retire the old one.
		e.sendRequest(now, sa, INFORMATIONAL, Payloads{&Delete{Protocol: ProtoESP, SPIs: []uint32{c.keys.SPIIn}}},
			func(now time.Time, m *Message, raw []byte, ps Payloads) {
				if sa.child(c.keys.SPIIn) != nil {
					e.removeChild(sa, c)
				}
			},
			func(now time.Time) { e.fail(now, "no answer to CHILD_SA delete") })
	}, func(now time.Time) { e.fail(now, "CREATE_CHILD_SA: no response") })
}

// rekeyIKE replaces sa with a new IKE SA (§1.3.2, §2.18); the children move
// over and the old SA is deleted.
func (e *Engine) rekeyIKE(now time.Time, sa *ikeSA) {
	sa.rekeying = true
	ni := e.randBytes(nonceLen)
	spiI := e.newIKESPI()
	dh, err := GenerateDH(sa.suite.DH, e.rand)
	if err != nil {
		sa.rekeying = false
		return
	}
	props := make([]Proposal, len(e.cfg.Proposals))
	for i, p := range e.cfg.Proposals {
		p.SPI = binary.BigEndian.AppendUint64(nil, spiI)
		props[i] = p
	}
	retryLater := func(now time.Time, why string) {
		sa.rekeying = false
		sa.retryRekey = now.Add(rekeyRetry)
		e.log.Warn("IKE SA rekey failed", append(e.saFields(sa, nil), zap.String("reason", why))...)
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
			retryLater(now, "incomplete response")
			return
		}
		suite, err := e.acceptedSuite(e.cfg.Proposals, saP.Proposals[0], true)
		if err != nil || suite.DH != sa.suite.DH || DHGroup(ke.Group) != sa.suite.DH {
			retryLater(now, "unacceptable proposal")
			return
		}
		shared, err := dh.Shared(ke.Data)
		if err != nil {
			retryLater(now, err.Error())
			return
		}
		nsa := &ikeSA{spiI: spiI, spiR: binary.BigEndian.Uint64(saP.Proposals[0].SPI), initiator: true,
			suite: suite, ni: ni, nr: nonce.Data}
		if err := e.installRekeyedIKE(now, sa, nsa, shared); err != nil {
			retryLater(now, err.Error())
			return
		}
		e.sendRequest(now, sa, INFORMATIONAL, Payloads{&Delete{Protocol: ProtoIKE}},
			func(now time.Time, m *Message, raw []byte, ps Payloads) { e.dropSA(now, sa, "rekeyed") },
			func(now time.Time) { e.dropSA(now, sa, "rekeyed") })
	}, func(now time.Time) { e.fail(now, "CREATE_CHILD_SA (IKE rekey): no response") })
}

// installRekeyedIKE derives the new SA's keys from the old SK_d and makes it
// current; the old one stays to finish its Delete exchange.
func (e *Engine) installRekeyedIKE(now time.Time, old, nsa *ikeSA, shared Secret) error {
	skeyseed, err := RekeySKEYSEED(nsa.suite.PRF, old.keys.SKd, shared, nsa.ni, nsa.nr)
	shared.Wipe()
	if err != nil {
		return err
	}
	if err := nsa.deriveKeys(skeyseed); err != nil {
		return err
	}
	nsa.established, nsa.establishedAt, nsa.lastRecv = true, now, now
	nsa.children, old.children = old.children, nil
	e.sa, e.old = nsa, old
	e.counters.Rekeys++
	e.log.Info("IKE SA rekeyed", append(e.saFields(nsa, nil), zap.String("old_spi_i", hex64(old.spiI)), zap.String("old_spi_r", hex64(old.spiR)))...)
	return nil
}

// respondCreateChild answers CREATE_CHILD_SA: a CHILD_SA rekey (REKEY_SA
// notify) or an IKE SA rekey (SA payload of protocol IKE). New additional
// CHILD_SAs are refused: one GRE SA is all a peering needs.
func (e *Engine) respondCreateChild(now time.Time, sa *ikeSA, ps Payloads) Payloads {
	if sa != e.sa || !sa.established {
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
	if old.rekeying || sa.rekeying {
		// Collision: RFC 7296 §2.25 lets us refuse; the peer retries later.
		return Payloads{&Notify{Kind: TEMPORARY_FAILURE}}
	}
	chosen, ok := SelectProposal(e.cfg.ESPProposals, saP.Proposals, true)
	if !ok {
		return Payloads{&Notify{Kind: NO_PROPOSAL_CHOSEN}}
	}
	suite, err := SuiteOf(chosen)
	if err != nil {
		return Payloads{&Notify{Kind: NO_PROPOSAL_CHOSEN}}
	}
	nr := e.randBytes(nonceLen)
	var shared Secret
	var kePayload Payload
	if suite.DH != DHNone {
		if ke == nil || DHGroup(ke.Group) != suite.DH {
			return Payloads{&Notify{Kind: INVALID_KE_PAYLOAD, Data: binary.BigEndian.AppendUint16(nil, uint16(suite.DH))}}
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
	child, notify := e.acceptChild(now, sa, ps, ours, nonce.Data, nr, shared, suite.DH != DHNone)
	if notify != nil {
		return Payloads{notify}
	}
	// The old child stays until the initiator deletes it (§2.8).
	out := Payloads{child[0], child[1], &Nonce{Data: nr}}
	if kePayload != nil {
		out = append(out, kePayload)
	}
	e.counters.Rekeys++
	return append(out, child[2], child[3])
}

func (e *Engine) respondRekeyIKE(now time.Time, sa *ikeSA, saP *SA, nonce *Nonce, ke *KE) Payloads {
	if sa.rekeying || e.old != nil {
		return Payloads{&Notify{Kind: TEMPORARY_FAILURE}}
	}
	chosen, ok := SelectProposal(e.cfg.Proposals, saP.Proposals, true)
	if !ok || len(chosen.SPI) != 8 {
		return Payloads{&Notify{Kind: NO_PROPOSAL_CHOSEN}}
	}
	suite, err := SuiteOf(chosen)
	if err != nil {
		return Payloads{&Notify{Kind: NO_PROPOSAL_CHOSEN}}
	}
	if ke == nil || DHGroup(ke.Group) != suite.DH {
		return Payloads{&Notify{Kind: INVALID_KE_PAYLOAD, Data: binary.BigEndian.AppendUint16(nil, uint16(suite.DH))}}
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
	if err := e.installRekeyedIKE(now, sa, nsa, shared); err != nil {
		return Payloads{&Notify{Kind: TEMPORARY_FAILURE}}
	}
	chosen.SPI = binary.BigEndian.AppendUint64(nil, nsa.spiR)
	return Payloads{&SA{Proposals: []Proposal{chosen}}, &Nonce{Data: nsa.nr}, &KE{Group: uint16(suite.DH), Data: dh.Public()}}
}
