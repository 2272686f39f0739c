package ike

import (
	"crypto/sha256"
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// Dynamic peers (Config.AnyRemote): a responder whose peer's address is
// not known in advance (DHCP, LTE, a NAT's public address), like iked's
// "from any" policies and strongSwan's %any. Such an engine answers
// IKE_SA_INIT from any address and binds to the address its peer
// authenticates from.
//
// Several such tunnels may share one local address, each with its own
// remote_id and PSK; the IKE SA is negotiated before the peer names
// itself, so whichever of them the sockets hand a new IKE_SA_INIT to
// answers it, and when the IKE_AUTH request opens (its IDi is in the
// encrypted part) the half-open SA moves to the engine whose remote_id
// that is (Config.Handoff), which checks the AUTH payload with its own
// PSK as if it had answered the IKE_SA_INIT itself. The keys of a
// half-open SA are the DH result and the nonces: nothing in it belongs to
// the engine that made it, and its SPIs go with it (the route callback).

// adoption is a half-open IKE SA handed over with the IKE_AUTH request
// that named this engine's peer.
type adoption struct {
	sa     *ikeSA
	m      *Message
	inner  Payloads
	digest [sha256.Size]byte
	from   netip.AddrPort
	natt   bool
}

// movedSAs is how many handed-over SAs an engine remembers, so that a
// retransmission of their IKE_AUTH that reaches it before the sockets
// route it to the new owner is dropped, not answered with INVALID_IKE_SPI.
const movedSAs = 16

// PeerBinder is an optional DataPlane method, for Config.AnyRemote: the
// engine authenticated its peer at addr, or followed it there; the data
// plane sends there from now on.
type PeerBinder interface {
	BindPeer(addr netip.Addr)
}

// Key is id as a map key: its type and data.
func (id ID) Key() string { return string(rune(id.Type)) + string(id.Data) }

// handOff moves sa, a half-open SA whose IKE_AUTH request m opened to
// inner, to the engine for the identity the peer claims, when that is
// another engine. It reports whether sa left (the caller is done with m).
func (e *Engine) handOff(sa *ikeSA, m *Message, inner Payloads, digest [sha256.Size]byte) bool {
	if e.cfg.Handoff == nil || sa.initiator || sa.state != saConnecting {
		return false
	}
	idi, _ := inner.Get(PayloadIDi).(*IDi)
	if idi == nil || (e.cfg.RemoteID.Type != 0 && idi.ID.Equal(e.cfg.RemoteID)) {
		return false
	}
	to, route := e.cfg.Handoff(idi.ID)
	if to == nil || to == e {
		return false // ours to refuse (AUTHENTICATION_FAILED)
	}
	// Everything this engine does with sa is done before it goes: from
	// the send on, sa is the adopter's.
	spis, fields := spiPair{sa.spiI, sa.spiR}, append(e.saFields(sa, m), zap.Stringer("id", idi.ID))
	e.half.remove(sa)
	a := adoption{sa: sa, m: m, inner: inner, digest: digest, from: e.nat.cur.from, natt: e.nat.cur.natt}
	select {
	case to.adopted <- a:
	default:
		e.half.add(sa) // still ours; the peer retransmits its IKE_AUTH
		e.drop(DropQueueFull)
		return true
	}
	// Queued first, rerouted second: a retransmission the sockets send
	// to its new owner queues behind the SA it belongs to.
	if route != nil {
		route(spis.r) // our SPI of a responder SA: the one the sockets route by
	}
	e.clearPending(spis.i)
	e.moved[e.movedNext] = spis
	e.movedNext = (e.movedNext + 1) % movedSAs
	e.log.Info("IKE_AUTH names another tunnel's peer: handing the IKE SA over", fields...)
	return true
}

// wasMoved: an SA this engine handed over.
func (e *Engine) wasMoved(spiI, spiR uint64) bool {
	for _, p := range e.moved {
		if p.i == spiI && p.r == spiR && p != (spiPair{}) {
			return true
		}
	}
	return false
}

// adopt takes over a half-open SA another engine answered, and answers
// its IKE_AUTH as if this engine had answered the IKE_SA_INIT.
func (e *Engine) adopt(now time.Time, a adoption) {
	sa := a.sa
	sa.seq = e.nextSeq()
	for _, old := range e.half.add(sa) {
		e.setState(old, saGone)
		old.keys.Wipe()
	}
	e.nat.cur.from, e.nat.cur.natt = a.from, a.natt
	e.answerRequest(now, sa, a.m, a.inner, nil, a.digest)
}

// bindPeer makes from, where the peer just authenticated, the engine's
// peer: IKE requests go there, and the data plane follows. It reports
// whether the address changed (the IKE SAs from the old one are dead).
func (e *Engine) bindPeer(from netip.AddrPort, natt bool) (moved bool) {
	if !e.cfg.AnyRemote || from == e.peer {
		return false
	}
	addr := from.Addr().Unmap()
	if addr != e.cfg.Remote {
		e.log.Info("dynamic peer authenticated from a new address", zap.Stringer("address", from), zap.Stringer("was", e.cfg.Remote))
		moved = e.cfg.Remote.IsValid()
		e.setRemote(addr)
	}
	e.peer, e.nat.floated = from, natt
	if m, ok := e.dp.(ESPPeerMover); ok && natt {
		m.MoveESPPeer(from)
	}
	return moved
}

// setRemote makes addr the dynamic peer's address, in the engine, its
// CHILD_SAs' selectors and the data plane.
func (e *Engine) setRemote(addr netip.Addr) {
	e.cfg.Remote = addr
	if e.cfg.ChildFor != nil {
		e.cfg.Child = e.cfg.ChildFor(addr)
	}
	if b, ok := e.dp.(PeerBinder); ok {
		b.BindPeer(addr)
	}
}
