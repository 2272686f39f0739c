package ike

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// The inbox sits between the socket reader and the engine goroutine. Offer
// runs on the reader: it drops what the engine must never spend time on
// (other sources, non-IKEv2 bytes) before any copy or queue, and sorts the
// rest into two bounded queues. Datagrams that name an IKE SA of ours
// (responder SPI set: IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL, responses)
// go ahead of new IKE_SA_INIT requests, so a flood of IKE_SA_INIT
// requests — the only thing an attacker who cannot authenticate can send
// in bulk that costs us DH work — cannot starve the IKE_AUTH of a real
// peer whose half-open SA is waiting, nor the exchanges of an established
// SA.

const (
	// queueLen bounds each queue. At ~1 ms of DH per IKE_SA_INIT a full
	// queue is tens of milliseconds of work: deeper would only add delay.
	queueLen = 64
	// minDatagram is an IKE header; shorter is not IKE.
	minDatagram = HeaderLen
)

type datagram struct {
	b    []byte
	from netip.AddrPort
	natt bool // came on port 4500 (OfferNATT)
}

type inbox struct {
	known    chan datagram // responder SPI set
	fresh    chan datagram // IKE_SA_INIT requests and their error answers
	received atomic.Uint64
	// While the engine demands cookies (cookieMode), Offer answers an
	// IKE_SA_INIT request that brings no valid cookie itself, statelessly
	// (RFC 7296 §2.6), so that a flood of them never fills the queue in
	// front of a real initiator's retry with its cookie.
	cookieMode   atomic.Bool
	sender       atomic.Pointer[Sender]
	cookiesSent  atomic.Uint64
	cookieFailed atomic.Uint64    // wrong or stale cookies dropped by Offer
	clock        func() time.Time // time.Now; tests hold it still
	// initiating are the SPIi of our IKE_SA_INIT requests awaiting an
	// answer: any other IKE_SA_INIT response is dropped before the queue
	// (a responder flooded with forged requests from our address floods
	// us with its answers to them).
	initiating atomic.Pointer[[]uint64]
}

func newInbox() inbox {
	return inbox{known: make(chan datagram, queueLen), fresh: make(chan datagram, queueLen), clock: time.Now}
}

// Offer hands one received datagram to the engine. It is safe to call from
// any goroutine (the socket reader) and does not block: what cannot be
// queued is counted and dropped. b is copied only if it is queued.
func (e *Engine) Offer(b []byte, from netip.AddrPort) { e.offer(b, from, false) }

func (e *Engine) offer(b []byte, from netip.AddrPort, natt bool) {
	e.in.received.Add(1)
	if !e.cfg.AnyRemote && from.Addr().Unmap() != e.cfg.Remote.Unmap() {
		e.drops.add(DropUnknownSource)
		return
	}
	if len(b) < minDatagram || b[offVersion]>>4 != Version2>>4 {
		e.drops.add(DropMalformed)
		return
	}
	q := e.in.fresh
	if h := Header(b); h.IsResponse() && h.Exchange() == IKE_SA_INIT && !e.awaitsInit(h.SPIi()) {
		e.drops.add(DropUnexpected)
		return
	}
	if Header(b).SPIr() != 0 {
		q = e.in.known
	} else if e.in.cookieMode.Load() && !e.admitInit(b, from, natt) {
		return
	}
	select {
	case q <- datagram{append([]byte(nil), b...), from, natt}:
	default:
		e.drops.add(DropQueueFull)
	}
}

// admitInit decides, on the reader goroutine and without state, whether
// an IKE_SA_INIT request may be queued while cookies are demanded: only
// one that brings a valid cookie. Others get the COOKIE demand at once.
func (e *Engine) admitInit(b []byte, from netip.AddrPort, natt bool) bool {
	h := Header(b)
	if h.Exchange() != IKE_SA_INIT || h.IsResponse() {
		return true // the engine sorts these out
	}
	w := e.in.sender.Load()
	if w == nil {
		return true
	}
	m, err := DecodeMessage(b)
	if err != nil {
		e.drops.add(DropMalformed)
		return false
	}
	nonce, _ := m.Payloads.Get(PayloadNonce).(*Nonce)
	if nonce == nil || m.SPIi == 0 {
		e.drops.add(DropMalformed)
		return false
	}
	now := e.in.clock()
	if n, ok := m.Payloads[0].(*Notify); ok && n.Kind == COOKIE {
		if e.validCookie(now, n.Data, nonce.Data, from.Addr(), m.SPIi) {
			return true
		}
		e.in.cookieFailed.Add(1)
		e.drops.add(DropCookie)
	}
	out := &Message{SPIi: m.SPIi, Exchange: IKE_SA_INIT, Flags: FlagResponse,
		Payloads: Payloads{&Notify{Kind: COOKIE, Data: e.makeCookie(now, nonce.Data, from.Addr(), m.SPIi)}}}
	if raw, err := out.Encode(); err == nil {
		var err error
		if natt && e.nat.sock != nil {
			err = e.nat.sock.SendIKE(raw, from)
		} else {
			_, err = (*w).WriteToUDPAddrPort(raw, from)
		}
		if err == nil {
			e.in.cookiesSent.Add(1)
		}
	}
	return false
}

// awaitsInit reports whether our IKE_SA_INIT request with this SPIi is
// waiting for its answer.
func (e *Engine) awaitsInit(spiI uint64) bool {
	if p := e.in.initiating.Load(); p != nil {
		for _, s := range *p {
			if s == spiI {
				return true
			}
		}
	}
	return false
}

// noteInitiating publishes the SPIi of our IKE_SA_INIT requests in
// flight for Offer (engine goroutine; stores only on change).
func (e *Engine) noteInitiating() {
	var now []uint64
	for _, sa := range e.sas {
		if sa.initiator && sa.state == saConnecting && sa.spiR == 0 {
			now = append(now, sa.spiI)
		}
	}
	if p := e.in.initiating.Load(); p != nil && slices.Equal(*p, now) || p == nil && len(now) == 0 {
		return
	}
	e.in.initiating.Store(&now)
}

// drop counts one datagram the engine goroutine did not process.
func (e *Engine) drop(r DropReason) { e.drops.add(r) }
