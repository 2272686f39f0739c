// IKE_AUTH (RFC 7296 §1.2, §2.15), both roles, with PSK (AUTH method 2);
// the first CHILD_SA rides in it (child_create.go). checkDuplicates resolves
// two IKE SAs with the peer once one authenticates.

package ike

import (
	"crypto/subtle"
	"slices"
	"time"

	"go.uber.org/zap"
)

func (e *Engine) localID() ID {
	if e.cfg.LocalID.Type != 0 {
		return e.cfg.LocalID
	}
	return AddrID(e.cfg.Local)
}

func (e *Engine) remoteIDString() string {
	if e.cfg.RemoteID.Type == 0 {
		return "any"
	}
	return e.cfg.RemoteID.String()
}

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
	e.sendRequest(now, sa, IKE_AUTH, inner, &ikeAuth{sa: sa})
}

// ikeAuth is our IKE_AUTH request on sa, with its first CHILD_SA.
type ikeAuth struct{ sa *ikeSA }

func (t *ikeAuth) process(e *Engine, now time.Time, m *Message, _ []byte, inner Payloads) string {
	return e.authResponse(now, t.sa, m, inner)
}

func (t *ikeAuth) timeout(e *Engine, now time.Time) { e.fail(now, t.sa, "IKE_AUTH: no response") }

// authResponse processes the answer to our IKE_AUTH and returns a failure
// it found that the answer does not name ("": as the answer says).
func (e *Engine) authResponse(now time.Time, sa *ikeSA, m *Message, ps Payloads) string {
	if n := ps.Notify(AUTHENTICATION_FAILED); n != nil {
		e.counters.AuthFailures++
		e.log.Warn("peer rejects our authentication", append(e.saFields(sa, m),
			zap.Stringer("local_id", e.localID()), zap.String("remote_id", e.remoteIDString()))...)
		e.fail(now, sa, "IKE_AUTH: peer says AUTHENTICATION_FAILED")
		return ""
	}
	idr, _ := ps.Get(PayloadIDr).(*IDr)
	auth, _ := ps.Get(PayloadAUTH).(*Auth)
	if idr == nil || auth == nil {
		if n := ps.FirstError(); n != nil {
			e.fail(now, sa, "IKE_AUTH: peer sent "+n.Kind.String())
		} else {
			e.fail(now, sa, "IKE_AUTH: response lacks IDr or AUTH")
		}
		return ""
	}
	if !e.authentic(sa, idr.ID, auth, sa.initResp, sa.ni, sa.keys.SKpr) {
		e.fail(now, sa, "IKE_AUTH: peer failed authentication")
		return AUTHENTICATION_FAILED.String()
	}
	e.established(now, sa)
	e.log.Info("IKE SA established", append(e.saFields(sa, m), zap.Stringer("id", idr.ID))...)
	c, err := e.completeChild(now, sa, ps, e.cfg.ESPProposals, sa.childSPI, sa.ni, sa.nr, nil, false)
	if err != nil {
		// An IKE SA without its one CHILD_SA is of no use to us.
		e.log.Warn("CHILD_SA not established", append(e.saFields(sa, m), zap.Error(err))...)
		e.deleteIKEOnce(sa)
		e.fail(now, sa, "CHILD_SA: "+err.Error())
		return "" // counted as the answer says (resultOf)
	}
	sa.children = append(sa.children, c)
	if sa.afterHint {
		e.forgetOthers(sa)
	}
	e.checkDuplicates(now, sa)
	e.addFamilyChildren(now, sa, c) // child_family.go
	return ""
}

// established marks sa authenticated and schedules its rekeying.
func (e *Engine) established(now time.Time, sa *ikeSA) {
	e.setState(sa, saEstablished)
	sa.establishedAt, sa.lastRecv, sa.estSeq = now, now, e.nextSeq()
	sa.rekeyAt = e.rekeyTime(sa, now, e.cfg.Lifetime)
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

// respondAuth answers IKE_AUTH on a half-open SA. established: sa
// authenticated with its CHILD_SA; once the answer is out, the caller
// checks for duplicate IKE SAs (checkDuplicates), so that the peer has sa
// before it hears of a collision.
func (e *Engine) respondAuth(now time.Time, sa *ikeSA, m *Message, ps Payloads) (resp Payloads, established bool) {
	if sa.initiator || sa.state != saConnecting {
		return Payloads{&Notify{Kind: INVALID_SYNTAX}}, false
	}
	idi, _ := ps.Get(PayloadIDi).(*IDi)
	auth, _ := ps.Get(PayloadAUTH).(*Auth)
	if idi == nil || auth == nil {
		sa.deleteAfterResponse = true
		return Payloads{&Notify{Kind: INVALID_SYNTAX}}, false
	}
	if !e.authentic(sa, idi.ID, auth, sa.initReq, sa.nr, sa.keys.SKpi) {
		sa.deleteAfterResponse = true
		return Payloads{&Notify{Kind: AUTHENTICATION_FAILED}}, false
	}
	// Authentic: now where it came from may move IKE and ESP in UDP
	// (before the child is accepted: it sends where the peer is), and
	// a dynamic peer's address is known.
	moved := e.bindPeer(e.nat.cur.from, e.nat.cur.natt)
	e.notePeer(sa, e.nat.cur.from, e.nat.cur.natt)
	idr := e.localID()
	out := Payloads{&IDr{idr}, &Auth{Method: AuthPSK, Data: PSKAuth(sa.suite.PRF, e.cfg.LocalPSK, sa.initResp, sa.ni, sa.keys.SKpr, idr)}}
	e.clearPending(sa.spiI)
	e.half.remove(sa)
	e.sas = append(e.sas, sa)
	e.keyGen++
	e.established(now, sa)
	e.log.Info("IKE SA established", append(e.saFields(sa, m), zap.Stringer("id", idi.ID))...)
	_, child, notify := e.acceptChild(now, sa, ps, WithoutDH(e.cfg.ESPProposals), sa.ni, sa.nr, nil, false, false)
	if ps.Notify(INITIAL_CONTACT) != nil || moved {
		// The peer has no other IKE SA with us (it restarted, or lost
		// one), or a dynamic peer moved and the data plane with it:
		// those we had before its IKE_SA_INIT arrived are dead. Later
		// ones are a simultaneous initiation, which the nonce rule
		// resolves. (After the new child is in: sending moves to it.)
		for _, old := range slices.Clone(e.sas) {
			if old != sa && old.state != saConnecting && old.estSeq < sa.seq {
				e.log.Info("INITIAL_CONTACT: forgetting an IKE SA the peer has lost", e.saFields(old, nil)...)
				e.removeSA(old)
			}
		}
	}
	if notify != nil {
		return append(out, notify), false
	}
	return append(out, child...), true
}

// checkDuplicates runs when n has authenticated: another established IKE
// SA with the peer (both peers initiated at once, or a second connection
// from a peer that did not say INITIAL_CONTACT) is redundant. As for
// colliding rekeys (§2.8.1), the SA whose IKE_SA_INIT had the lowest nonce
// loses and whoever initiated it deletes it; both peers see the same
// nonces, so they agree without talking.
func (e *Engine) checkDuplicates(now time.Time, n *ikeSA) {
	for _, d := range e.sas {
		if !n.usable() {
			return
		}
		if d == n || !d.usable() {
			continue
		}
		red, surv := n, d
		if loses(d.ni, d.nr, n.ni, n.nr) {
			red, surv = d, n
		}
		e.setState(red, saRedundant)
		red.survivor, red.redundantSince = surv, now
		e.log.Info("two IKE SAs with the peer: deleting the redundant one", append(e.saFields(red, nil),
			zap.String("survivor_spi_i", hex64(surv.spiI)), zap.String("survivor_spi_r", hex64(surv.spiR)),
			zap.Bool("we_delete", red.initiator))...)
		e.switchOutbound(e.newestChild(surv))
		if red.initiator {
			e.deleteIKESA(now, red)
		}
	}
}
