package ike

import (
	"crypto/subtle"
	"time"

	"go.uber.org/zap"
)

// gre is IP protocol 47: the only traffic our CHILD_SAs carry.
const gre = 47

func (e *Engine) selectors() (local, remote TrafficSelector) {
	return HostSelector(e.cfg.Local, gre), HostSelector(e.cfg.Remote, gre)
}

// sendAuth sends the initiator's IKE_AUTH request with the first CHILD_SA
// (§1.2): IDi, [IDr], AUTH, USE_TRANSPORT_MODE, SA, TSi, TSr. The child
// proposal carries no DH group (there is no KE here), as strongSwan sends it.
func (e *Engine) sendAuth(now time.Time, sa *ikeSA) {
	sa.childSPI = e.newESPSPI()
	idi := e.localID()
	auth := PSKAuth(sa.suite.PRF, e.cfg.LocalPSK, sa.initReq, sa.nr, sa.keys.SKpi, idi)
	inner := Payloads{&IDi{idi}}
	if e.cfg.RemoteID.Type != 0 {
		inner = append(inner, &IDr{e.cfg.RemoteID})
	}
	inner = append(inner, &Auth{Method: AuthPSK, Data: auth}, &Notify{Kind: INITIAL_CONTACT})
	inner = append(inner, e.childRequest(WithoutDH(e.cfg.ESPProposals), sa.childSPI)...)
	e.sendRequest(now, sa, IKE_AUTH, inner, func(now time.Time, m *Message, raw []byte, ps Payloads) {
		e.authResponse(now, sa, m, ps)
	}, func(now time.Time) { e.fail(now, "IKE_AUTH: no response") })
}

// childRequest is the CHILD_SA part of a request: transport mode, our
// proposals with our inbound SPI, GRE host-to-host selectors.
func (e *Engine) childRequest(props []Proposal, spi uint32) Payloads {
	local, remote := e.selectors()
	ps := make([]Proposal, len(props))
	for i, p := range props {
		p.SPI = []byte{byte(spi >> 24), byte(spi >> 16), byte(spi >> 8), byte(spi)}
		ps[i] = p
	}
	return Payloads{
		&Notify{Kind: USE_TRANSPORT_MODE},
		&SA{Proposals: ps},
		&TSi{TrafficSelectors{[]TrafficSelector{local}}},
		&TSr{TrafficSelectors{[]TrafficSelector{remote}}},
	}
}

func (e *Engine) authResponse(now time.Time, sa *ikeSA, m *Message, ps Payloads) {
	if n := ps.Notify(AUTHENTICATION_FAILED); n != nil {
		e.counters.AuthFailures++
		e.fail(now, "IKE_AUTH: peer says AUTHENTICATION_FAILED")
		return
	}
	idr, _ := ps.Get(PayloadIDr).(*IDr)
	auth, _ := ps.Get(PayloadAUTH).(*Auth)
	if idr == nil || auth == nil {
		if n := ps.FirstError(); n != nil {
			e.fail(now, "IKE_AUTH: peer sent "+n.Kind.String())
		} else {
			e.fail(now, "IKE_AUTH: response lacks IDr or AUTH")
		}
		return
	}
	if !e.authentic(sa, idr.ID, auth, sa.initResp, sa.ni, sa.keys.SKpr) {
		e.fail(now, "IKE_AUTH: peer failed authentication")
		return
	}
	sa.established, sa.establishedAt, sa.lastRecv = true, now, now
	e.log.Info("IKE SA established", append(e.saFields(sa, m), zap.Stringer("id", idr.ID))...)
	c, err := e.completeChild(now, sa, ps, e.cfg.ESPProposals, sa.childSPI, sa.ni, sa.nr, nil, false, true)
	if err != nil {
		// An IKE SA without its one CHILD_SA is of no use to us.
		e.log.Warn("CHILD_SA not established", append(e.saFields(sa, m), zap.Error(err))...)
		e.deleteIKE(now, sa)
		e.fail(now, "CHILD_SA: "+err.Error())
		return
	}
	sa.children = append(sa.children, c)
}

// authentic checks an identity and its PSK AUTH payload (§2.15).
func (e *Engine) authentic(sa *ikeSA, id ID, auth *Auth, realMessage, nonce []byte, skp Secret) bool {
	if e.cfg.RemoteID.Type != 0 && !id.Equal(e.cfg.RemoteID) {
		e.counters.AuthFailures++
		e.log.Warn("peer identity mismatch", append(e.saFields(sa, nil), zap.Stringer("id", id), zap.Stringer("want", e.cfg.RemoteID))...)
		return false
	}
	if auth.Method != AuthPSK {
		e.counters.AuthFailures++
		return false
	}
	want := PSKAuth(sa.suite.PRF, e.cfg.RemotePSK, realMessage, nonce, skp, id)
	if subtle.ConstantTimeCompare(want, auth.Data) != 1 {
		e.counters.AuthFailures++
		return false
	}
	return true
}

// respondAuth answers IKE_AUTH on a half-open SA.
func (e *Engine) respondAuth(now time.Time, sa *ikeSA, m *Message, ps Payloads) Payloads {
	if sa != e.half || sa.established {
		return Payloads{&Notify{Kind: INVALID_SYNTAX}}
	}
	idi, _ := ps.Get(PayloadIDi).(*IDi)
	auth, _ := ps.Get(PayloadAUTH).(*Auth)
	if idi == nil || auth == nil {
		sa.deleteAfterResponse = true
		return Payloads{&Notify{Kind: INVALID_SYNTAX}}
	}
	if !e.authentic(sa, idi.ID, auth, sa.initReq, sa.nr, sa.keys.SKpi) {
		e.log.Warn("IKE_AUTH: initiator failed authentication", e.saFields(sa, m)...)
		sa.deleteAfterResponse = true
		return Payloads{&Notify{Kind: AUTHENTICATION_FAILED}}
	}
	idr := e.localID()
	out := Payloads{&IDr{idr}, &Auth{Method: AuthPSK, Data: PSKAuth(sa.suite.PRF, e.cfg.LocalPSK, sa.initResp, sa.ni, sa.keys.SKpr, idr)}}

	// The peer authenticated: this SA replaces whatever we had (a restart
	// of the peer, or its reconnect after losing state).
	if old := e.sa; old != nil {
		e.removeChildren(old)
		old.keys.Wipe()
		if e.req != nil && e.req.sa == old {
			e.req, e.queue = nil, nil
		}
	}
	e.sa, e.half = sa, nil
	sa.established, sa.establishedAt, sa.lastRecv = true, now, now
	e.log.Info("IKE SA established", append(e.saFields(sa, m), zap.Stringer("id", idi.ID))...)
	child, notify := e.acceptChild(now, sa, ps, WithoutDH(e.cfg.ESPProposals), sa.ni, sa.nr, nil, false)
	if notify != nil {
		return append(out, notify)
	}
	return append(out, child...)
}

// acceptChild is the responder's side of creating a CHILD_SA: it checks
// mode, proposal and selectors, derives and installs the keys, and returns
// the payloads of the answer or an error notify.
func (e *Engine) acceptChild(now time.Time, sa *ikeSA, ps Payloads, ours []Proposal, ni, nr []byte, shared Secret, withDH bool) (Payloads, *Notify) {
	if ps.Notify(USE_TRANSPORT_MODE) == nil {
		// We carry GRE between the two endpoints: tunnel mode is not offered.
		return nil, &Notify{Kind: NO_PROPOSAL_CHOSEN}
	}
	saP, _ := ps.Get(PayloadSA).(*SA)
	tsi, _ := ps.Get(PayloadTSi).(*TSi)
	tsr, _ := ps.Get(PayloadTSr).(*TSr)
	if saP == nil || tsi == nil || tsr == nil {
		return nil, &Notify{Kind: INVALID_SYNTAX}
	}
	chosen, ok := SelectProposal(ours, saP.Proposals, withDH)
	if !ok || len(chosen.SPI) != 4 {
		return nil, &Notify{Kind: NO_PROPOSAL_CHOSEN}
	}
	suite, err := SuiteOf(chosen)
	if err != nil {
		return nil, &Notify{Kind: NO_PROPOSAL_CHOSEN}
	}
	local, remote := e.selectors()
	if !anyContains(tsi.Selectors, remote) || !anyContains(tsr.Selectors, local) {
		e.log.Info("traffic selectors unacceptable", e.saFields(sa, nil)...)
		return nil, &Notify{Kind: TS_UNACCEPTABLE}
	}
	spiIn := e.newESPSPI()
	i2r, r2i, err := ChildKeymat(sa.suite.PRF, sa.keys.SKd, shared, ni, nr, suite.KeyLen())
	if err != nil {
		return nil, &Notify{Kind: NO_PROPOSAL_CHOSEN}
	}
	keys := e.childKeys(spiIn, be32(chosen.SPI), i2r, r2i, suite) // we answer: i->r is inbound
	if err := e.dp.InstallChild(keys); err != nil {
		e.log.Error("installing CHILD_SA failed", append(e.saFields(sa, nil), zap.Error(err))...)
		return nil, &Notify{Kind: TEMPORARY_FAILURE}
	}
	sa.children = append(sa.children, &childSA{keys: keys, installed: now})
	e.log.Info("CHILD_SA installed", append(e.saFields(sa, nil), zap.Uint32("spi_in", keys.SPIIn), zap.Uint32("spi_out", keys.SPIOut), zap.String("transform", keys.Transform))...)
	chosen.SPI = []byte{byte(spiIn >> 24), byte(spiIn >> 16), byte(spiIn >> 8), byte(spiIn)}
	return Payloads{
		&Notify{Kind: USE_TRANSPORT_MODE},
		&SA{Proposals: []Proposal{chosen}},
		&TSi{TrafficSelectors{[]TrafficSelector{remote}}}, // narrowed to GRE host to host
		&TSr{TrafficSelectors{[]TrafficSelector{local}}},
	}, nil
}

// completeChild is the initiator's side: it checks the responder's choice
// and installs the CHILD_SA. initiator says whether we initiated this
// exchange (which decides the key order, §2.17).
func (e *Engine) completeChild(now time.Time, sa *ikeSA, ps Payloads, ours []Proposal, spiIn uint32, ni, nr []byte, shared Secret, withDH, initiator bool) (*childSA, error) {
	if n := ps.FirstError(); n != nil {
		return nil, errorf("peer sent %v", n.Kind)
	}
	if ps.Notify(USE_TRANSPORT_MODE) == nil {
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
		return nil, err
	}
	local, remote := e.selectors()
	if !allEquivalent(tsi.Selectors, local) || !allEquivalent(tsr.Selectors, remote) {
		return nil, errorf("responder narrowed the traffic selectors to something else")
	}
	i2r, r2i, err := ChildKeymat(sa.suite.PRF, sa.keys.SKd, shared, ni, nr, suite.KeyLen())
	if err != nil {
		return nil, err
	}
	keys := e.childKeys(spiIn, be32(saP.Proposals[0].SPI), r2i, i2r, suite)
	if initiator {
		keys.KeyIn, keys.KeyOut = r2i, i2r
	} else {
		keys.KeyIn, keys.KeyOut = i2r, r2i
	}
	if err := e.dp.InstallChild(keys); err != nil {
		return nil, err
	}
	e.log.Info("CHILD_SA installed", append(e.saFields(sa, nil), zap.Uint32("spi_in", keys.SPIIn), zap.Uint32("spi_out", keys.SPIOut), zap.String("transform", keys.Transform))...)
	return &childSA{keys: keys, installed: now}, nil
}

func (e *Engine) childKeys(spiIn, spiOut uint32, keyIn, keyOut Secret, s Suite) ChildKeys {
	return ChildKeys{SPIIn: spiIn, SPIOut: spiOut, KeyIn: keyIn, KeyOut: keyOut,
		Transform: "aes" + itoa(s.KeyBits) + "gcm16", Lifetime: e.cfg.ChildLifetime, LifetimeBytes: e.cfg.ChildLifetimeBytes}
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
