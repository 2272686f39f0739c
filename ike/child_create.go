// Creating a CHILD_SA, shared by IKE_AUTH, CREATE_CHILD_SA rekeys and a
// VTI's extra children: the request's child payloads (childRequest), the
// responder's side (acceptChild), the initiator's (completeChild), and
// handing the keys to the data plane (installChild).

package ike

import (
	"errors"
	"time"

	"go.uber.org/zap"
)

// gre is IP protocol 47: what our CHILD_SAs carry unless Config.Child
// says otherwise.
const gre = 47

// childRequest is the CHILD_SA part of a request: the mode (transport
// unless Config.Child says tunnel), our proposals with our inbound SPI,
// our selectors (GRE host to host by default).
func (e *Engine) childRequest(props []Proposal, spi uint32) Payloads {
	local, remote := e.selectors()
	ps := make([]Proposal, len(props))
	for i, p := range props {
		p.SPI = []byte{byte(spi >> 24), byte(spi >> 16), byte(spi >> 8), byte(spi)}
		ps[i] = p
	}
	return append(e.modeRequest(),
		&SA{Proposals: ps},
		&TSi{TrafficSelectors{local}},
		&TSr{TrafficSelectors{remote}},
	)
}

// acceptChild is the responder's side of creating a CHILD_SA: it checks
// mode, proposal and selectors, derives and installs the keys, and returns
// the new child and the payloads of the answer, or an error notify.
func (e *Engine) acceptChild(now time.Time, sa *ikeSA, ps Payloads, ours []Proposal, ni, nr []byte, shared Secret, withDH, rekey bool) (*childSA, Payloads, *Notify) {
	if !e.modeAcceptable(sa, ps) {
		return nil, nil, &Notify{Kind: NO_PROPOSAL_CHOSEN}
	}
	saP, _ := ps.Get(PayloadSA).(*SA)
	tsi, _ := ps.Get(PayloadTSi).(*TSi)
	tsr, _ := ps.Get(PayloadTSr).(*TSr)
	if saP == nil || tsi == nil || tsr == nil {
		return nil, nil, &Notify{Kind: INVALID_SYNTAX}
	}
	chosen, ok := SelectProposal(ours, saP.Proposals, withDH)
	if !ok || len(chosen.SPI) != 4 {
		e.logProposalMismatch(sa, nil, ours, saP.Proposals)
		return nil, nil, &Notify{Kind: NO_PROPOSAL_CHOSEN}
	}
	suite, err := SuiteOf(chosen)
	if err != nil {
		e.logProposalMismatch(sa, nil, ours, saP.Proposals)
		return nil, nil, &Notify{Kind: NO_PROPOSAL_CHOSEN}
	}
	narrowI, narrowR := e.narrowedSelectors(sa, tsi, tsr)
	if len(narrowI) == 0 || len(narrowR) == 0 {
		return nil, nil, &Notify{Kind: TS_UNACCEPTABLE}
	}
	spiIn := e.newESPSPI()
	i2r, r2i, err := ChildKeymat(sa.suite.PRF, sa.keys.SKd, shared, ni, nr, suite.KeyLen()+suite.IntegKeyLen())
	if err != nil {
		return nil, nil, &Notify{Kind: NO_PROPOSAL_CHOSEN}
	}
	keys := e.childKeys(spiIn, be32(chosen.SPI), i2r, r2i, suite) // we answer: i->r is inbound
	keys.LocalTS, keys.RemoteTS = narrowR, narrowI
	if _, ok := e.dp.(OutboundSwitcher); ok && (rekey || e.outSPI != 0) {
		// Keep sending on the SA the peer has until it has this one
		// (outbound.go: switchOutbound waits for the proof).
		keys.KeepOutbound = true
	}
	c, err := e.installChild(now, sa, keys, ni, nr)
	if err != nil {
		e.log.Error("installing CHILD_SA failed", append(e.saFields(sa, nil), zap.Error(err))...)
		return nil, nil, &Notify{Kind: TEMPORARY_FAILURE}
	}
	sa.children = append(sa.children, c)
	chosen.SPI = []byte{byte(spiIn >> 24), byte(spiIn >> 16), byte(spiIn >> 8), byte(spiIn)}
	return c, append(e.modeRequest(),
		&SA{Proposals: []Proposal{chosen}},
		&TSi{TrafficSelectors{narrowI}}, // narrowed to ours (§2.9)
		&TSr{TrafficSelectors{narrowR}},
	), nil
}

// completeChild is the initiator's side: it checks the responder's choice
// and installs the CHILD_SA.
func (e *Engine) completeChild(now time.Time, sa *ikeSA, ps Payloads, ours []Proposal, spiIn uint32, ni, nr []byte, shared Secret, withDH bool) (*childSA, error) {
	if n := ps.FirstError(); n != nil {
		switch n.Kind {
		case NO_PROPOSAL_CHOSEN:
			e.log.Warn("peer accepts none of our ESP proposals", append(e.saFields(sa, nil),
				zap.String("ours", FormatProposals(ours)), zap.String("theirs", "unknown (the responder does not say)"))...)
		case TS_UNACCEPTABLE:
			local, remote := e.selectors()
			e.log.Warn("peer does not accept our traffic selectors", append(e.saFields(sa, nil),
				zap.String("ours_local", FormatSelectors(local)), zap.String("ours_remote", FormatSelectors(remote)))...)
		}
		return nil, errorf("peer sent %v", n.Kind)
	}
	if transport := ps.Notify(USE_TRANSPORT_MODE) != nil; transport == e.cfg.Child.TunnelMode {
		if transport {
			// We did not ask for it (§1.3.1: only the initiator may).
			return nil, errorf("peer chose transport mode; we need tunnel mode")
		}
		return nil, errorf("peer did not accept transport mode")
	}
	saP, _ := ps.Get(PayloadSA).(*SA)
	tsi, _ := ps.Get(PayloadTSi).(*TSi)
	tsr, _ := ps.Get(PayloadTSr).(*TSr)
	if saP == nil || tsi == nil || tsr == nil || len(saP.Proposals) != 1 || len(saP.Proposals[0].SPI) != 4 {
		return nil, errorf("response lacks SA or selectors")
	}
	if !withDH {
		ours = WithoutDH(ours)
	}
	suite, err := e.acceptedSuite(ours, saP.Proposals[0], withDH)
	if err != nil {
		e.logProposalMismatch(sa, nil, ours, saP.Proposals)
		return nil, err
	}
	local, remote := e.selectors()
	gotI, _ := e.natSelectors(tsi.Selectors, local, sa.nat.here)
	gotR, _ := e.natSelectors(tsr.Selectors, remote, sa.nat.there)
	if !e.acceptableTS(gotI, local) || !e.acceptableTS(gotR, remote) {
		e.log.Warn("responder narrowed the traffic selectors to something else", append(e.saFields(sa, nil),
			zap.String("ours_local", FormatSelectors(local)), zap.String("ours_remote", FormatSelectors(remote)),
			zap.String("their_tsi", FormatSelectors(tsi.Selectors)), zap.String("their_tsr", FormatSelectors(tsr.Selectors)))...)
		return nil, errorf("responder narrowed the traffic selectors to something else")
	}
	i2r, r2i, err := ChildKeymat(sa.suite.PRF, sa.keys.SKd, shared, ni, nr, suite.KeyLen()+suite.IntegKeyLen())
	if err != nil {
		return nil, err
	}
	keys := e.childKeys(spiIn, be32(saP.Proposals[0].SPI), r2i, i2r, suite) // we initiated: r->i is inbound (§2.17)
	keys.LocalTS, keys.RemoteTS = gotI, gotR
	c, err := e.installChild(now, sa, keys, ni, nr)
	if c != nil {
		c.peerHas = true // it answered: it has installed its side
	}
	return c, err
}

// modeAcceptable reports whether a CHILD_SA request asks for the mode we
// build. The data plane builds one mode: an SA of the other is one it
// cannot carry. (A tunnel-mode responder could answer a transport request
// in tunnel mode, §1.3.1, but the initiator asked for what it builds, and
// would delete the SA.)
func (e *Engine) modeAcceptable(sa *ikeSA, ps Payloads) bool {
	transport := ps.Notify(USE_TRANSPORT_MODE) != nil
	if transport != e.cfg.Child.TunnelMode {
		return true
	}
	if transport {
		e.log.Warn("peer proposes a transport-mode CHILD_SA; we need tunnel mode", e.saFields(sa, nil)...)
	} else {
		e.log.Warn("peer proposes a tunnel-mode CHILD_SA; we need transport mode", e.saFields(sa, nil)...)
	}
	return false
}

// narrowedSelectors narrows the initiator's TSi and TSr to ours (§2.9);
// an empty result (logged) means they are unacceptable. Behind a NAT the
// peer names its own private address, or ours as its NAT shows it:
// substituted (nat.go), and answered as it was sent.
func (e *Engine) narrowedSelectors(sa *ikeSA, tsi *TSi, tsr *TSr) (narrowI, narrowR []TrafficSelector) {
	local, remote := e.selectors()
	subI, natI := e.natSelectors(tsi.Selectors, remote, sa.nat.there)
	subR, natR := e.natSelectors(tsr.Selectors, local, sa.nat.here)
	narrowI, narrowR = e.narrowTS(subI, remote), e.narrowTS(subR, local)
	if natI && len(narrowI) > 0 {
		narrowI = tsi.Selectors
	}
	if natR && len(narrowR) > 0 {
		narrowR = tsr.Selectors
	}
	if len(narrowI) == 0 || len(narrowR) == 0 {
		e.log.Warn("traffic selectors unacceptable", append(e.saFields(sa, nil),
			zap.String("ours_local", FormatSelectors(local)), zap.String("ours_remote", FormatSelectors(remote)),
			zap.String("their_tsi", FormatSelectors(tsi.Selectors)), zap.String("their_tsr", FormatSelectors(tsr.Selectors)))...)
	}
	return narrowI, narrowR
}

// installChild hands keys to the data plane, whose outbound SA is then
// this child's, and schedules its rekeying.
func (e *Engine) installChild(now time.Time, sa *ikeSA, keys ChildKeys, ni, nr []byte) (*childSA, error) {
	keys.UDPPeer = e.udpPeer(sa)
	if err := e.dp.InstallChild(keys); err != nil {
		return nil, err
	}
	if !keys.KeepOutbound || e.outSPI == 0 {
		e.outSPI = keys.SPIIn
	}
	e.keyGen++
	c := &childSA{keys: keys, installed: now, seq: e.nextSeq(), ni: ni, nr: nr}
	c.rekeyAt = e.rekeyTime(sa, now, e.cfg.ChildLifetime)
	c.rekeyBytes = e.rekeyBytes(sa, e.cfg.ChildLifetimeBytes)
	if e.cfg.ChildLifetime > 0 {
		c.expiresAt = now.Add(e.cfg.ChildLifetime)
	}
	e.log.Info("CHILD_SA installed", append(e.saFields(sa, nil), zap.Uint32("spi_in", keys.SPIIn), zap.Uint32("spi_out", keys.SPIOut),
		zap.String("transform", keys.Transform), zap.Bool("esp_in_udp", keys.UDPPeer.IsValid()))...)
	return c, nil
}

// childExchangeKeys reads what a CREATE_CHILD_SA response to our request
// for a CHILD_SA brings besides the child payloads: the responder's nonce
// and, if we sent a KE with dh (PFS, group), the shared secret (nil
// without PFS; the caller wipes it). On failure it returns the result to
// count for the exchange and why.
func (e *Engine) childExchangeKeys(ps Payloads, dh *DHKey, group DHGroup) (nr []byte, shared Secret, result string, err error) {
	nonce, _ := ps.Get(PayloadNonce).(*Nonce)
	if nonce == nil {
		return nil, nil, INVALID_SYNTAX.String(), errors.New("no nonce in response")
	}
	if dh == nil {
		return nonce.Data, nil, "", nil
	}
	ke, _ := ps.Get(PayloadKE).(*KE)
	if ke == nil || DHGroup(ke.Group) != group {
		return nil, nil, INVALID_KE_PAYLOAD.String(), errors.New("response without our PFS group")
	}
	if shared, err = dh.Shared(ke.Data); err != nil {
		return nil, nil, INVALID_SYNTAX.String(), err
	}
	return nonce.Data, shared, "", nil
}

func (e *Engine) childKeys(spiIn, spiOut uint32, keyIn, keyOut Secret, s Suite) ChildKeys {
	return ChildKeys{SPIIn: spiIn, SPIOut: spiOut, KeyIn: keyIn, KeyOut: keyOut,
		Suite: s, Transform: s.Transform(), Lifetime: e.cfg.ChildLifetime, LifetimeBytes: e.cfg.ChildLifetimeBytes,
		ESN: s.ESN, ReplayWindow: e.cfg.ReplayWindow}
}

func anyContains(sels []TrafficSelector, want TrafficSelector) bool {
	for _, s := range sels {
		if s.Contains(want) {
			return true
		}
	}
	return false
}

func allEquivalent(sels []TrafficSelector, want TrafficSelector) bool {
	for _, s := range sels {
		if !s.Contains(want) || !want.Contains(s) {
			return false
		}
	}
	return len(sels) > 0
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
