// Rekeying the IKE SA with CREATE_CHILD_SA (RFC 7296 §1.3.2, §2.18),
// both roles, and its collision rule (§2.8.2: the exchange with the lowest
// nonce loses; its initiator deletes what it created).

package ike

import (
	"encoding/binary"
	"errors"
	"time"

	"go.uber.org/zap"
)

// rekeyIKE replaces sa with a new IKE SA (§1.3.2, §2.18); the children move
// over and the old SA is deleted.
func (e *Engine) rekeyIKE(now time.Time, sa *ikeSA) {
	t := &ikeRekey{sa: sa, ni: e.randBytes(nonceLen), spiI: e.newIKESPI()}
	e.claimSPI(t.spiI)
	var err error
	if t.dh, err = GenerateDH(sa.suite.DH, e.rand); err != nil {
		sa.retryRekey = now.Add(e.randDuration(rekeyRetryMin, rekeyRetryMax))
		e.log.Error("IKE SA rekey: no DH key", append(e.saFields(sa, nil), zap.Error(err), zap.Time("retry_at", sa.retryRekey))...)
		return
	}
	sa.ikeRekeying = true
	props := make([]Proposal, len(e.cfg.Proposals))
	for i, p := range e.cfg.Proposals {
		p.SPI = binary.BigEndian.AppendUint64(nil, t.spiI)
		props[i] = p
	}
	e.log.Info("rekeying IKE SA", e.saFields(sa, nil)...)
	inner := Payloads{&SA{Proposals: props}, &Nonce{Data: t.ni}, &KE{Group: uint16(sa.suite.DH), Data: t.dh.Public()}}
	e.sendRequest(now, sa, CREATE_CHILD_SA, inner, t)
}

// ikeRekey is our CREATE_CHILD_SA rekeying sa: the new SA's nonce, our
// SPI of it and our DH key (of sa's group).
type ikeRekey struct {
	sa   *ikeSA
	ni   []byte
	spiI uint64
	dh   *DHKey
}

func (t *ikeRekey) process(e *Engine, now time.Time, m *Message, _ []byte, ps Payloads) string {
	if n := ps.FirstError(); n != nil {
		t.retryLater(e, now, n.Kind.String())
		return ""
	}
	nsa, shared, result, err := t.accept(e, m, ps)
	if err == nil {
		err = e.deriveRekeyed(now, t.sa, nsa, shared)
	}
	if err != nil {
		t.retryLater(e, now, err.Error())
		return result
	}
	t.sa.ikeRekeying = false
	e.resolveIKERekey(now, t.sa, nsa)
	return ""
}
func (t *ikeRekey) timeout(e *Engine, now time.Time) {
	e.fail(now, t.sa, "CREATE_CHILD_SA (IKE rekey): no response")
}

// accept checks the responder's answer and makes the new IKE SA from it,
// with the DH shared secret its keys come from; on failure it returns the
// result to count for the exchange and why.
func (t *ikeRekey) accept(e *Engine, m *Message, ps Payloads) (nsa *ikeSA, shared Secret, result string, err error) {
	sa := t.sa
	saP, _ := ps.Get(PayloadSA).(*SA)
	nonce, _ := ps.Get(PayloadNonce).(*Nonce)
	ke, _ := ps.Get(PayloadKE).(*KE)
	if saP == nil || nonce == nil || ke == nil || len(saP.Proposals) != 1 || len(saP.Proposals[0].SPI) != 8 {
		return nil, nil, INVALID_SYNTAX.String(), errors.New("incomplete response")
	}
	suite, err := e.acceptedSuite(e.cfg.Proposals, saP.Proposals[0], true)
	if err != nil || suite.DH != sa.suite.DH || DHGroup(ke.Group) != sa.suite.DH {
		e.logProposalMismatch(sa, m, e.cfg.Proposals, saP.Proposals)
		return nil, nil, NO_PROPOSAL_CHOSEN.String(), errors.New("unacceptable proposal")
	}
	if shared, err = t.dh.Shared(ke.Data); err != nil {
		return nil, nil, INVALID_SYNTAX.String(), err
	}
	nsa = &ikeSA{spiI: t.spiI, spiR: binary.BigEndian.Uint64(saP.Proposals[0].SPI), initiator: true,
		suite: suite, ni: t.ni, nr: nonce.Data}
	return nsa, shared, "", nil
}

// retryLater ends a failed rekey of sa: a rekey of sa by the peer that
// crossed ours stands alone; otherwise we try again after a random delay.
func (t *ikeRekey) retryLater(e *Engine, now time.Time, why string) {
	sa := t.sa
	sa.ikeRekeying = false
	if p := sa.peerRekey; p != nil {
		sa.peerRekey = nil
		e.completeIKERekey(now, sa, p, false)
		return
	}
	sa.retryRekey = now.Add(e.randDuration(rekeyRetryMin, rekeyRetryMax))
	e.log.Warn("IKE SA rekey failed", append(e.saFields(sa, nil), zap.String("reason", why), zap.Time("retry_at", sa.retryRekey))...)
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
		e.log.Error("cannot make a DH key to answer the IKE SA rekey", append(e.saFields(sa, nil), zap.Error(err))...)
		return Payloads{&Notify{Kind: TEMPORARY_FAILURE}}
	}
	shared, err := dh.Shared(ke.Data)
	if err != nil {
		return Payloads{&Notify{Kind: INVALID_SYNTAX}}
	}
	nsa := &ikeSA{spiI: binary.BigEndian.Uint64(chosen.SPI), spiR: e.newIKESPI(), initiator: false,
		suite: suite, ni: nonce.Data, nr: e.randBytes(nonceLen)}
	if err := e.deriveRekeyed(now, sa, nsa, shared); err != nil {
		e.log.Error("cannot derive the keys of the peer's rekeyed IKE SA", append(e.saFields(sa, nil), zap.Error(err))...)
		return Payloads{&Notify{Kind: TEMPORARY_FAILURE}}
	}
	chosen.SPI = binary.BigEndian.AppendUint64(nil, nsa.spiR)
	e.claimSPI(nsa.spiR)
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
