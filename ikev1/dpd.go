package ikev1

import (
	"bytes"
	"encoding/binary"
	"time"

	"go.uber.org/zap"
)

// Dead peer detection (RFC 3706): when the peer said it speaks DPD (its
// vendor ID) and nothing has come from it for the dpd interval — no ESP
// on our SAs, no protected IKEv1 message — we send R-U-THERE and expect
// R-U-THERE-ACK with the same sequence number. Each try has a new number
// and waits longer, as requests do; after the last the peer is dead: its
// SAs go and, if we initiate, Main Mode starts again.
type dpdState struct {
	lastAlive   time.Time
	lastInBytes uint64
	seq         uint32
	waiting     bool
	retry       retry
}

func hasDPD(ps []Payload) bool {
	for _, v := range All(ps, PayloadVendor) {
		if bytes.Equal(v.Body, VendorDPD) {
			return true
		}
	}
	return false
}

// alive notes a sign of life from the peer.
func (e *Engine) alive(now time.Time) {
	e.dpd.lastAlive = now
	e.dpd.waiting = false
	e.dpd.retry = retry{}
}

func (e *Engine) dpdTick(now time.Time) {
	p := e.established()
	if e.cfg.DPD <= 0 || p == nil || !p.peerDPD {
		e.dpd.waiting = false
		return
	}
	var in uint64
	for _, c := range e.children {
		b, _ := e.dp.ChildBytes(c.spiIn)
		in += b
	}
	if in != e.dpd.lastInBytes {
		e.dpd.lastInBytes = in
		e.alive(now)
	}
	if e.dpd.lastAlive.Before(p.since) {
		e.dpd.lastAlive = p.since
	}
	if !e.dpd.waiting {
		if now.Sub(e.dpd.lastAlive) >= e.cfg.DPD {
			e.dpd.waiting = true
			e.sendRUThere(p)
			e.dpd.retry = retry{msg: []byte{1}, next: now.Add(e.cfg.Retransmit)}
		}
		return
	}
	if now.Before(e.dpd.retry.next) {
		return
	}
	e.dpd.retry.tries++
	if e.dpd.retry.tries >= e.cfg.RetransmitTries {
		e.log.Warn("peer is dead: no R-U-THERE-ACK (RFC 3706)", zap.String("peer", e.peer.String()), zap.Int("tries", e.dpd.retry.tries),
			zap.Duration("idle", now.Sub(e.dpd.lastAlive)))
		e.dpd.waiting = false
		e.counts.dpdFailures.Add(1)
		for _, c := range append([]*child(nil), e.children...) {
			e.deleteChild(c, false)
		}
		for _, q := range append([]*phase1(nil), e.p1s...) {
			e.remove(q)
		}
		e.reconnect(now)
		return
	}
	d := float64(e.cfg.Retransmit)
	for range e.dpd.retry.tries {
		d *= e.cfg.RetransmitBase
	}
	e.dpd.retry.next = now.Add(time.Duration(d))
	e.sendRUThere(p)
}

func (e *Engine) sendRUThere(p *phase1) {
	if e.dpd.seq == 0 {
		e.dpd.seq = binary.BigEndian.Uint32(e.random(4))>>1 + 1 // room to count up (RFC 3706 §7)
	}
	e.dpd.seq++
	e.sendInfo(p, PayloadNotify, Notify{Protocol: ProtoISAKMP, Type: NotifyRUThere, SPI: p.cookies(), Data: be32(e.dpd.seq)}.Encode())
}

// ruThereAck takes an acknowledgement of our latest R-U-THERE; it
// reports whether it was one (fresh, not a replay).
func (e *Engine) ruThereAck(now time.Time, n Notify) bool {
	if e.dpd.waiting && len(n.Data) == 4 && binary.BigEndian.Uint32(n.Data) == e.dpd.seq {
		e.alive(now)
		return true
	}
	return false
}
