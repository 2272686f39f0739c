package ike

import (
	"crypto/subtle"
	"slices"
	"time"

	"go.uber.org/zap"
)

// gre is IP protocol 47: what our CHILD_SAs carry unless Config.Child
// says otherwise.
const gre = 47

// sendAuth sends the initiator's IKE_AUTH request with the first CHILD_SA
// (§1.2): IDi, [IDr], AUTH, [INITIAL_CONTACT], USE_TRANSPORT_MODE, SA,
// TSi, TSr. The child proposal carries no DH group (there is no KE here),
// as strongSwan sends it.
func (e *Engine) sendAuth(now time.Time, sa *ikeSA) {
	sa.childSPI = e.newESPSPI()
	idi := e.localID()
	auth := PSKAuth(sa.suite.PRF, e.cfg.LocalPSK, sa.initReq, sa.nr, sa.keys.SKpi, idi)
	inner := Payloads{&IDi{idi}}
	if e.cfg.RemoteID.Type != 0 {
		inner = append(inner, &IDr{e.cfg.RemoteID})
	}
	inner = append(inner, &Auth{Method: AuthPSK, Data: auth})
	if len(e.sas) == 1 || sa.afterHint {
		// INITIAL_CONTACT tells the peer to forget IKE SAs it has with us
		// (§2.4); only when we have no other one, in any state, so that
		// simultaneous initiation is resolved by the nonce rule instead;
		// and after a hint that the peer lost the others (hint.go).
		inner = append(inner, &Notify{Kind: INITIAL_CONTACT})
	}
	inner = append(inner, e.childRequest(WithoutDH(e.cfg.ESPProposals), sa.childSPI)...)
	e.sendRequest(now, sa, IKE_AUTH, inner, func(now time.Time, m *Message, raw []byte, ps Payloads) {
		e.authResponse(now, sa, m, ps)
	}, func(now time.Time) { e.fail(now, sa, "IKE_AUTH: no response") })
}

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

func (e *Engine) authResponse(now time.Time, sa *ikeSA, m *Message, ps Payloads) {
	if n := ps.Notify(AUTHENTICATION_FAILED); n != nil {
		e.counters.AuthFailures++
		e.log.Warn("peer rejects our authentication", append(e.saFields(sa, m),
			zap.Stringer("local_id", e.localID()), zap.String("remote_id", e.remoteIDString()))...)
		e.fail(now, sa, "IKE_AUTH: peer says AUTHENTICATION_FAILED")
		return
	}
	idr, _ := ps.Get(PayloadIDr).(*IDr)
	auth, _ := ps.Get(PayloadAUTH).(*Auth)
	if idr == nil || auth == nil {
		if n := ps.FirstError(); n != nil {
			e.fail(now, sa, "IKE_AUTH: peer sent "+n.Kind.String())
		} else {
			e.fail(now, sa, "IKE_AUTH: response lacks IDr or AUTH")
		}
		return
	}
	if !e.authentic(sa, idr.ID, auth, sa.initResp, sa.ni, sa.keys.SKpr) {
		e.result = AUTHENTICATION_FAILED.String()
		e.fail(now, sa, "IKE_AUTH: peer failed authentication")
		return
	}
	e.established(now, sa)
	e.log.Info("IKE SA established", append(e.saFields(sa, m), zap.Stringer("id", idr.ID))...)
	c, err := e.completeChild(now, sa, ps, e.cfg.ESPProposals, sa.childSPI, sa.ni, sa.nr, nil, false, true)
	if err != nil {
		// An IKE SA without its one CHILD_SA is of no use to us.
		e.log.Warn("CHILD_SA not established", append(e.saFields(sa, m), zap.Error(err))...)
		if n := ps.FirstError(); n != nil {
			e.result = n.Kind.String()
		}
		e.deleteIKEOnce(sa)
		e.fail(now, sa, "CHILD_SA: "+err.Error())
		return
	}
	sa.children = append(sa.children, c)
	if sa.afterHint {
		e.forgetOthers(sa)
	}
	e.checkDuplicates(now, sa)
}

// established marks sa authenticated and schedules its rekeying.
func (e *Engine) established(now time.Time, sa *ikeSA) {
	e.setState(sa, saEstablished)
	sa.establishedAt, sa.lastRecv, sa.estSeq = now, now, e.nextSeq()
	sa.rekeyAt = e.rekeyTime(sa, now, e.cfg.Lifetime)
}

func (e *Engine) remoteIDString() string {
	if e.cfg.RemoteID.Type == 0 {
		return "any"
	}
	return e.cfg.RemoteID.String()
}

// authentic checks an identity and its PSK AUTH payload (§2.15).
func (e *Engine) authentic(sa *ikeSA, id ID, auth *Auth, realMessage, nonce []byte, skp Secret) bool {
	fields := func(why string) []zap.Field {
		return append(e.saFields(sa, nil), zap.Stringer("id", id), zap.String("want", e.remoteIDString()),
			zap.Stringer("local_id", e.localID()), zap.String("reason", why))
	}
	if e.cfg.RemoteID.Type != 0 && !id.Equal(e.cfg.RemoteID) {
		e.counters.AuthFailures++
		e.log.Warn("peer identity mismatch", fields("identity not the configured one")...)
		return false
	}
	if auth.Method != AuthPSK {
		e.counters.AuthFailures++
		e.log.Warn("peer authentication failed", fields("AUTH method "+itoa(int(auth.Method))+", we use PSK (2)")...)
		return false
	}
	want := PSKAuth(sa.suite.PRF, e.cfg.RemotePSK, realMessage, nonce, skp, id)
	if subtle.ConstantTimeCompare(want, auth.Data) != 1 {
		e.counters.AuthFailures++
		e.log.Warn("peer authentication failed", fields("AUTH payload does not match the PSK")...)
		return false
	}
	return true
}

// respondAuth answers IKE_AUTH on a half-open SA.
func (e *Engine) respondAuth(now time.Time, sa *ikeSA, m *Message, ps Payloads) Payloads {
	if sa.initiator || sa.state != saConnecting {
		return Payloads{&Notify{Kind: INVALID_SYNTAX}}
	}
	idi, _ := ps.Get(PayloadIDi).(*IDi)
	auth, _ := ps.Get(PayloadAUTH).(*Auth)
	if idi == nil || auth == nil {
		sa.deleteAfterResponse = true
		return Payloads{&Notify{Kind: INVALID_SYNTAX}}
	}
	if !e.authentic(sa, idi.ID, auth, sa.initReq, sa.nr, sa.keys.SKpi) {
		sa.deleteAfterResponse = true
		return Payloads{&Notify{Kind: AUTHENTICATION_FAILED}}
	}
	idr := e.localID()
	out := Payloads{&IDr{idr}, &Auth{Method: AuthPSK, Data: PSKAuth(sa.suite.PRF, e.cfg.LocalPSK, sa.initResp, sa.ni, sa.keys.SKpr, idr)}}
	e.clearPending(sa.spiI)
	e.half.remove(sa)
	e.sas = append(e.sas, sa)
	e.keyGen++
	e.established(now, sa)
	e.log.Info("IKE SA established", append(e.saFields(sa, m), zap.Stringer("id", idi.ID))...)
	_, child, notify := e.acceptChild(now, sa, ps, WithoutDH(e.cfg.ESPProposals), sa.ni, sa.nr, nil, false, false)
	if ps.Notify(INITIAL_CONTACT) != nil {
		// The peer has no other IKE SA with us (it restarted, or lost
		// one): those we had before its IKE_SA_INIT arrived are dead.
		// Later ones are a simultaneous initiation, which the nonce rule
		// resolves. (After the new child is in: sending moves to it.)
		for _, old := range slices.Clone(e.sas) {
			if old != sa && old.state != saConnecting && old.estSeq < sa.seq {
				e.log.Info("INITIAL_CONTACT: forgetting an IKE SA the peer has lost", e.saFields(old, nil)...)
				e.removeSA(old)
			}
		}
	}
	if notify != nil {
		return append(out, notify)
	}
	// After the response is out, so the peer has this SA before it hears
	// of a collision.
	e.deferred = append(e.deferred, func(now time.Time) { e.checkDuplicates(now, sa) })
	return append(out, child...)
}

// acceptChild is the responder's side of creating a CHILD_SA: it checks
// mode, proposal and selectors, derives and installs the keys, and returns
// the new child and the payloads of the answer, or an error notify.
func (e *Engine) acceptChild(now time.Time, sa *ikeSA, ps Payloads, ours []Proposal, ni, nr []byte, shared Secret, withDH, rekey bool) (*childSA, Payloads, *Notify) {
	if transport := ps.Notify(USE_TRANSPORT_MODE) != nil; transport == e.cfg.Child.TunnelMode {
		// The data plane builds one mode: an SA of the other is one it
		// cannot carry. (A tunnel-mode responder could answer a transport
		// request in tunnel mode, §1.3.1, but the initiator asked for
		// what it builds, and would delete the SA.)
		if transport {
			e.log.Warn("peer proposes a transport-mode CHILD_SA; we need tunnel mode", e.saFields(sa, nil)...)
		} else {
			e.log.Warn("peer proposes a tunnel-mode CHILD_SA; we need transport mode", e.saFields(sa, nil)...)
		}
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
	local, remote := e.selectors()
	// Behind a NAT the peer names its own private address, or ours as
	// its NAT shows it: substituted (nat.go), and answered as it was sent.
	subI, natI := e.natSelectors(tsi.Selectors, remote, sa.nat.there)
	subR, natR := e.natSelectors(tsr.Selectors, local, sa.nat.here)
	narrowI, narrowR := e.narrowTS(subI, remote), e.narrowTS(subR, local)
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
		return nil, nil, &Notify{Kind: TS_UNACCEPTABLE}
	}
	spiIn := e.newESPSPI()
	i2r, r2i, err := ChildKeymat(sa.suite.PRF, sa.keys.SKd, shared, ni, nr, suite.KeyLen()+suite.IntegKeyLen())
	if err != nil {
		return nil, nil, &Notify{Kind: NO_PROPOSAL_CHOSEN}
	}
	keys := e.childKeys(spiIn, be32(chosen.SPI), i2r, r2i, suite) // we answer: i->r is inbound
	if _, ok := e.dp.(OutboundSwitcher); ok && (rekey || e.outSPI != 0) {
		// Keep sending on the SA the peer has until it has this one
		// (task_info.go: switchOutbound waits for the proof).
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

// completeChild is the initiator's side: it checks the responder's choice
// and installs the CHILD_SA. initiator says whether we initiated this
// exchange (which decides the key order, §2.17).
func (e *Engine) completeChild(now time.Time, sa *ikeSA, ps Payloads, ours []Proposal, spiIn uint32, ni, nr []byte, shared Secret, withDH, initiator bool) (*childSA, error) {
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
	keys := e.childKeys(spiIn, be32(saP.Proposals[0].SPI), r2i, i2r, suite)
	if initiator {
		keys.KeyIn, keys.KeyOut = r2i, i2r
	} else {
		keys.KeyIn, keys.KeyOut = i2r, r2i
	}
	c, err := e.installChild(now, sa, keys, ni, nr)
	if c != nil {
		c.peerHas = true // it answered: it has installed its side
	}
	return c, err
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
