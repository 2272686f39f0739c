// IKE_SA_INIT (RFC 7296 §1.2), both roles. Initiator: initiate, sendInit,
// initResponse, with bounded COOKIE and INVALID_KE_PAYLOAD retries.
// Responder: respondInit runs its checks cheapest first and computes nothing
// secret, nor keeps any state, before all pass (cookieDemand, answerInit;
// loadKey under load).

package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"
)

// Nonces are 32 bytes: at least half the PRF key size of every PRF we
// offer (§2.10).
const nonceLen = 32

// maxInitRetries bounds COOKIE and INVALID_KE_PAYLOAD round trips so that a
// hostile responder cannot keep us looping.
const maxInitRetries = 4

// initiate starts IKE_SA_INIT with the first DH group we propose.
func (e *Engine) initiate(now time.Time) {
	e.retryAt = time.Time{}
	if len(e.sas) == 0 {
		e.resetPath() // a new IKE SA starts on port 500 (nat.go)
	}
	groups := DHGroups(e.cfg.Proposals)
	if len(groups) == 0 {
		e.lastErr = "no DH group in the IKE proposals"
		return
	}
	sa := &ikeSA{spiI: e.newIKESPI(), initiator: true, ni: e.randBytes(nonceLen), seq: e.nextSeq(), createdAt: now}
	e.sas = append(e.sas, sa)
	e.log.Info("initiating", e.saFields(sa, nil)...)
	e.sendInit(now, sa, groups[0], 0)
}

func (e *Engine) sendInit(now time.Time, sa *ikeSA, group DHGroup, tries int) {
	dh, err := GenerateDH(group, e.rand)
	if err != nil {
		e.fail(now, sa, err.Error())
		return
	}
	sa.dh = dh
	var ps Payloads
	if sa.cookie != nil {
		ps = append(ps, &Notify{Kind: COOKIE, Data: sa.cookie}) // §2.6: first
	}
	ps = append(ps, &SA{Proposals: e.cfg.Proposals}, &KE{Group: uint16(group), Data: dh.Public()}, &Nonce{Data: sa.ni})
	ps = append(ps, e.natPayloads(sa.spiI, 0, e.nat.floated, e.peer)...)
	ps = append(ps, e.fragPayloads(sa)...)
	m := &Message{SPIi: sa.spiI, Exchange: IKE_SA_INIT, Flags: FlagInitiator, Payloads: ps}
	raw, err := m.Encode()
	if err != nil {
		e.fail(now, sa, err.Error())
		return
	}
	sa.initReq = raw
	e.noteInitiating() // before the answer can arrive (inbox.go)
	e.sendRaw(now, sa, IKE_SA_INIT, 0, raw, &ikeInit{sa: sa, group: group, tries: tries})
}

// ikeInit is our IKE_SA_INIT request on sa with DH group group; tries
// counts the COOKIE and INVALID_KE_PAYLOAD round trips before it.
type ikeInit struct {
	sa    *ikeSA
	group DHGroup
	tries int
}

func (t *ikeInit) process(e *Engine, now time.Time, m *Message, raw []byte, _ Payloads) string {
	e.initResponse(now, t.sa, t.group, t.tries, m, raw)
	return ""
}

func (t *ikeInit) timeout(e *Engine, now time.Time) { e.fail(now, t.sa, "IKE_SA_INIT: no response") }

// initResponse processes the answer to our IKE_SA_INIT on sa (sent with
// DH group group after tries COOKIE or INVALID_KE_PAYLOAD round trips):
// another try, a failure, or the keys and our IKE_AUTH.
func (e *Engine) initResponse(now time.Time, sa *ikeSA, group DHGroup, tries int, m *Message, raw []byte) {
	ps := m.Payloads
	if e.retryInit(now, sa, group, tries, m) {
		return
	}
	if n := ps.FirstError(); n != nil {
		if n.Kind == NO_PROPOSAL_CHOSEN {
			e.log.Warn("peer accepts none of our IKE proposals", append(e.saFields(sa, m),
				zap.String("ours", FormatProposals(e.cfg.Proposals)), zap.String("theirs", "unknown (the responder does not say)"))...)
		}
		e.fail(now, sa, "IKE_SA_INIT: peer sent "+n.Kind.String())
		return
	}
	suite, nr, shared, err := e.acceptInitResponse(sa, group, m)
	if err != nil {
		e.fail(now, sa, "IKE_SA_INIT: "+err.Error())
		return
	}
	sa.spiR, sa.nr, sa.suite, sa.initResp = m.SPIr, nr, suite, raw
	e.fragAgree(sa, ps)
	e.checkNAT(sa, ps)
	if e.natRefused(now, sa) {
		shared.Wipe()
		return
	}
	skeyseed, err := SKEYSEED(suite.PRF, sa.ni, sa.nr, shared)
	shared.Wipe()
	if err == nil {
		err = sa.deriveKeys(skeyseed)
	}
	if err != nil {
		e.fail(now, sa, err.Error())
		return
	}
	e.keyGen++
	sa.dh = nil
	sa.nextReqID, sa.expectReqID = 1, 0
	e.log.Info("IKE_SA_INIT done", append(e.saFields(sa, m), zap.Stringer("suite", suite))...)
	e.sendAuth(now, sa)
}

// retryInit handles a COOKIE demand or an INVALID_KE_PAYLOAD in answer to
// our IKE_SA_INIT: another try (bounded by maxInitRetries), or a failure.
// false: the answer is neither.
func (e *Engine) retryInit(now time.Time, sa *ikeSA, group DHGroup, tries int, m *Message) bool {
	ps := m.Payloads
	if n := ps.Notify(COOKIE); n != nil {
		// handleResponse dropped cookies of hostile sizes.
		if tries >= maxInitRetries {
			e.fail(now, sa, "IKE_SA_INIT: responder keeps asking for a COOKIE")
			return true
		}
		e.log.Info("responder asks for a cookie", e.saFields(sa, m)...)
		sa.cookie = append([]byte(nil), n.Data...)
		e.sendInit(now, sa, group, tries+1)
		return true
	}
	n := ps.Notify(INVALID_KE_PAYLOAD)
	if n == nil {
		return false
	}
	if len(n.Data) != 2 || tries >= maxInitRetries {
		e.fail(now, sa, "IKE_SA_INIT: bad INVALID_KE_PAYLOAD")
		return true
	}
	want := DHGroup(binary.BigEndian.Uint16(n.Data))
	if want == group || !slices.Contains(DHGroups(e.cfg.Proposals), want) {
		e.fail(now, sa, fmt.Sprintf("IKE_SA_INIT: peer wants DH group %v, which we do not propose", want))
		return true
	}
	e.log.Info("peer asks for another DH group", append(e.saFields(sa, m), zap.Stringer("group", want))...)
	e.sendInit(now, sa, want, tries+1)
	return true
}

// acceptInitResponse checks the responder's SA, KE and nonce against our
// request (DH group group): the suite, its nonce and the DH shared secret
// (the caller wipes it).
func (e *Engine) acceptInitResponse(sa *ikeSA, group DHGroup, m *Message) (Suite, []byte, Secret, error) {
	ps := m.Payloads
	saP, _ := ps.Get(PayloadSA).(*SA)
	ke, _ := ps.Get(PayloadKE).(*KE)
	nonce, _ := ps.Get(PayloadNonce).(*Nonce)
	if saP == nil || ke == nil || nonce == nil || m.SPIr == 0 || len(saP.Proposals) != 1 {
		return Suite{}, nil, nil, errors.New("response lacks SA, KE or nonce")
	}
	suite, err := e.acceptedSuite(e.cfg.Proposals, saP.Proposals[0], true)
	if err != nil {
		e.logProposalMismatch(sa, m, e.cfg.Proposals, saP.Proposals)
		return Suite{}, nil, nil, err
	}
	if suite.DH != group || DHGroup(ke.Group) != group {
		return Suite{}, nil, nil, errors.New("responder chose a DH group we did not send")
	}
	shared, err := sa.dh.Shared(ke.Data)
	if err != nil {
		return Suite{}, nil, nil, err
	}
	return suite, nonce.Data, shared, nil
}

// acceptedSuite checks that a responder's single proposal is one of ours.
func (e *Engine) acceptedSuite(ours []Proposal, theirs Proposal, withDH bool) (Suite, error) {
	got, err := SuiteOf(theirs)
	if err != nil {
		return Suite{}, err
	}
	sel, ok := SelectProposal(ours, []Proposal{theirs}, withDH)
	if !ok {
		return Suite{}, fmt.Errorf("responder chose a proposal we did not offer")
	}
	want, err := SuiteOf(sel)
	if err != nil || want != got {
		return Suite{}, fmt.Errorf("responder chose a proposal we did not offer")
	}
	return got, nil
}

// respondInit answers an IKE_SA_INIT request (§1.2). The checks run
// cheapest first, and nothing secret is computed, nor any state kept,
// before the request has passed all of them: the cookie (under load), the
// payloads, the proposal, and the peer's public value.
func (e *Engine) respondInit(now time.Time, m *Message, raw []byte, from netip.AddrPort) {
	if !e.newInitRequest(m, raw) {
		return
	}
	nonce, _ := m.Payloads.Get(PayloadNonce).(*Nonce)
	if nonce == nil {
		e.drop(DropMalformed) // not even a cookie can be made for it
		return
	}
	if demand := e.cookieDemand(now, m, nonce, from); demand != nil {
		e.refuseInit(m, demand)
		return
	}
	// Every request that gets this far counts towards the cookie
	// threshold until its IKE SA authenticates, failures included: a
	// flood of bad requests turns cookies on as surely as good ones.
	e.notePending(now, m.SPIi)
	chosen, suite, ke, refuse := e.checkInitRequest(m)
	if refuse != nil {
		e.refuseInit(m, refuse)
		return
	}
	sa, resp, err := e.answerInit(now, m, raw, chosen, suite, ke, nonce)
	if err != nil {
		e.log.Warn("cannot answer IKE_SA_INIT", append(e.saFields(nil, m), zap.Error(err))...)
		e.refuseInit(m, &Notify{Kind: NO_PROPOSAL_CHOSEN})
		return
	}
	for _, old := range e.half.add(sa) {
		e.setState(old, saGone)
		old.keys.Wipe()
		e.log.Debug("half-open IKE SA evicted", e.saFields(old, nil)...)
	}
	e.log.Info("IKE_SA_INIT answered", append(e.saFields(sa, m), zap.Stringer("suite", suite))...)
	e.reply(resp)
	e.countExchange(IKE_SA_INIT, false, "ok")
}

// newInitRequest checks m's header as a new IKE_SA_INIT request; a
// retransmission of one we answered gets the same answer again. Either
// way false means m is done with.
func (e *Engine) newInitRequest(m *Message, raw []byte) bool {
	if m.SPIr != 0 || m.MessageID != 0 || !m.FromInitiator() {
		e.drop(DropUnexpected)
		return false
	}
	if m.SPIi == 0 {
		e.drop(DropMalformed) // §3.1: the initiator's SPI MUST NOT be zero
		return false
	}
	if h := e.half.retransmitted(m.SPIi, raw); h != nil {
		e.reply(h.initResp) // the initiator did not get our answer
		return false
	}
	return true
}

// checkInitRequest checks an IKE_SA_INIT request's payloads, proposal and
// public value, without any secret work: the proposal we take, its suite
// and the peer's KE payload, or the notify that refuses the request.
func (e *Engine) checkInitRequest(m *Message) (Proposal, Suite, *KE, *Notify) {
	ps := m.Payloads
	if u := ps.UnsupportedCritical(); u != nil {
		return Proposal{}, Suite{}, nil, &Notify{Kind: UNSUPPORTED_CRITICAL_PAYLOAD, Data: []byte{byte(u.PayloadType)}}
	}
	saP, _ := ps.Get(PayloadSA).(*SA)
	ke, _ := ps.Get(PayloadKE).(*KE)
	if saP == nil || ke == nil {
		return Proposal{}, Suite{}, nil, &Notify{Kind: INVALID_SYNTAX}
	}
	chosen, ok := SelectProposal(e.cfg.Proposals, saP.Proposals, true)
	var suite Suite
	var err error
	if ok && len(chosen.SPI) == 0 {
		suite, err = SuiteOf(chosen)
	}
	if !ok || len(chosen.SPI) != 0 || err != nil {
		e.logProposalMismatch(nil, m, e.cfg.Proposals, saP.Proposals)
		return Proposal{}, Suite{}, nil, &Notify{Kind: NO_PROPOSAL_CHOSEN}
	}
	if DHGroup(ke.Group) != suite.DH {
		return Proposal{}, Suite{}, nil, &Notify{Kind: INVALID_KE_PAYLOAD, Data: binary.BigEndian.AppendUint16(nil, uint16(suite.DH))}
	}
	if err := ValidatePublic(suite.DH, ke.Data); err != nil {
		// RFC 6989: checked before we make a key of our own.
		e.drop(DropBadKE)
		e.log.Debug("IKE_SA_INIT with an invalid KE payload", e.saFields(nil, m)...)
		return Proposal{}, Suite{}, nil, &Notify{Kind: INVALID_SYNTAX}
	}
	return chosen, suite, ke, nil
}

// refuseInit answers an IKE_SA_INIT request with n alone (an error, or a
// COOKIE demand), keeping nothing.
func (e *Engine) refuseInit(m *Message, n *Notify) {
	out := &Message{SPIi: m.SPIi, Exchange: IKE_SA_INIT, Flags: FlagResponse, Payloads: Payloads{n}}
	if b, err := out.Encode(); err == nil {
		e.reply(b)
	}
	result := n.Kind.String()
	if !n.Kind.IsError() {
		result = "COOKIE"
	}
	e.countExchange(IKE_SA_INIT, false, result)
}

// cookieDemand is the N(COOKIE) to answer m with, or nil when none is
// needed: under load the cookie must come first (§2.6), and without a
// valid one we keep nothing and spend no DH computation.
func (e *Engine) cookieDemand(now time.Time, m *Message, nonce *Nonce, from netip.AddrPort) *Notify {
	if !e.cookiesRequired(now) {
		return nil
	}
	var got []byte
	n, brought := m.Payloads[0].(*Notify)
	if brought = brought && n.Kind == COOKIE; brought {
		got = n.Data
	}
	if e.validCookie(now, got, nonce.Data, from.Addr(), m.SPIi) {
		return nil
	}
	if brought {
		e.drop(DropCookie)
		e.log.Debug("IKE_SA_INIT with a wrong or stale cookie", e.saFields(nil, m)...)
	}
	return &Notify{Kind: COOKIE, Data: e.makeCookie(now, nonce.Data, from.Addr(), m.SPIi)}
}

// answerInit makes the half-open SA for a checked IKE_SA_INIT request and
// our answer to it. Under load (while cookies are demanded) it answers
// with the engine's short-lived shared DH key and leaves g^ir for the
// first IKE_AUTH on the SA (keyHalfOpen): a flood of IKE_SA_INIT requests,
// even with valid cookies from an attacker on the path, then costs no DH
// at all, and a real peer's request is answered at once.
func (e *Engine) answerInit(now time.Time, m *Message, raw []byte, chosen Proposal, suite Suite, ke *KE, nonce *Nonce) (*ikeSA, []byte, error) {
	sa := &ikeSA{spiI: m.SPIi, spiR: e.newIKESPI(), suite: suite, ni: nonce.Data, nr: e.randBytes(nonceLen), initReq: raw,
		expectReqID: 1, nextReqID: 0, seq: e.nextSeq(), createdAt: now}
	var err error
	if e.in.cookieMode.Load() {
		sa.dh, err = e.loadKey(now, suite.DH)
		sa.peerKE = ke.Data
	} else {
		sa.dh, err = GenerateDH(suite.DH, e.rand)
	}
	if err != nil {
		return nil, nil, err
	}
	natD := e.responderNAT(sa, m.Payloads)
	e.fragAgree(sa, m.Payloads)
	out := &Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: IKE_SA_INIT, Flags: FlagResponse,
		Payloads: append(Payloads{&SA{Proposals: []Proposal{chosen}}, &KE{Group: uint16(suite.DH), Data: sa.dh.Public()}, &Nonce{Data: sa.nr}},
			natD...)}
	out.Payloads = append(out.Payloads, e.fragPayloads(sa)...)
	if sa.initResp, err = out.Encode(); err != nil {
		return nil, nil, err
	}
	if sa.peerKE == nil {
		if err := sa.keyFrom(ke.Data); err != nil {
			return nil, nil, err
		}
	}
	return sa, sa.initResp, nil
}

// keyFrom computes g^ir with the peer's public value and derives sa's keys.
func (sa *ikeSA) keyFrom(peer []byte) error {
	shared, err := sa.dh.Shared(peer)
	if err != nil {
		return err
	}
	defer shared.Wipe()
	skeyseed, err := SKEYSEED(sa.suite.PRF, sa.ni, sa.nr, shared)
	if err != nil {
		return err
	}
	sa.dh, sa.peerKE = nil, nil
	return sa.deriveKeys(skeyseed)
}

// loadKey is the DH key the engine answers with under load: one per
// group, replaced after loadKeyLife. RFC 7296 §2.12 allows reusing a DH
// value for a while to resist denial of service; we do it only while
// cookies are demanded, so a quiet responder keeps a fresh key per SA.
func (e *Engine) loadKey(now time.Time, g DHGroup) (*DHKey, error) {
	if k := e.loadKeys[g]; k.key != nil && now.Sub(k.made) < loadKeyLife {
		return k.key, nil
	}
	k, err := GenerateDH(g, e.rand)
	if err != nil {
		return nil, err
	}
	if e.loadKeys == nil {
		e.loadKeys = map[DHGroup]loadKeyEntry{}
	}
	e.loadKeys[g] = loadKeyEntry{key: k, made: now}
	return k, nil
}
