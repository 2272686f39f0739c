package ike

import (
	"net/netip"
	"sync/atomic"
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
}

type inbox struct {
	known    chan datagram // responder SPI set
	fresh    chan datagram // IKE_SA_INIT requests and their error answers
	received atomic.Uint64
}

func newInbox() inbox {
	return inbox{known: make(chan datagram, queueLen), fresh: make(chan datagram, queueLen)}
}

// Offer hands one received datagram to the engine. It is safe to call from
// any goroutine (the socket reader) and does not block: what cannot be
// queued is counted and dropped. b is copied only if it is queued.
func (e *Engine) Offer(b []byte, from netip.AddrPort) {
	e.in.received.Add(1)
	if from.Addr().Unmap() != e.cfg.Remote.Unmap() {
		e.drops.add(DropUnknownSource)
		return
	}
	if len(b) < minDatagram || b[offVersion]>>4 != Version2>>4 {
		e.drops.add(DropMalformed)
		return
	}
	q := e.in.fresh
	if Header(b).SPIr() != 0 {
		q = e.in.known
	}
	select {
	case q <- datagram{append([]byte(nil), b...), from}:
	default:
		e.drops.add(DropQueueFull)
	}
}

// drop counts one datagram the engine goroutine did not process.
func (e *Engine) drop(r DropReason) { e.drops.add(r) }
