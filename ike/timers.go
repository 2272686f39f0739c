// The engine's clock: tick (every 250 ms) runs retransmissions, the
// redundant-SA grace, NAT keepalives, half-open expiry and reconnects; timers
// runs an established SA's rekeys (by time, bytes and sequence number) and
// liveness checks.

package ike

import (
	"slices"
	"time"
)

// tick runs timers: retransmission, DPD, rekeying, reconnecting.
func (e *Engine) tick(now time.Time) {
	defer e.publish()
	for _, sa := range slices.Clone(e.sas) {
		e.retransmit(now, sa) // task.go
	}
	for _, sa := range slices.Clone(e.sas) {
		switch {
		case sa.gone():
		case sa.state == saRedundant && !sa.initiator && now.Sub(sa.redundantSince) >= redundantGrace:
			// The peer should have deleted it by now; it may not follow
			// our collision rule, so we do.
			e.log.Info("peer did not delete the redundant IKE SA; deleting it", e.saFields(sa, nil)...)
			e.deleteIKESA(now, sa)
		case sa.usable():
			e.timers(now, sa)
		}
	}
	e.natKeepalive(now)
	if e.in.cookieMode.Load() {
		e.cookiesRequired(now) // turns Offer's cookie demands off once the flood has passed
	}
	for _, sa := range e.half.expired(now) {
		e.log.Debug("half-open IKE SA expired", e.saFields(sa, nil)...)
		e.removeSA(sa)
	}
	if len(e.sas) == 0 && e.cfg.Initiate && !e.retryAt.IsZero() && !now.Before(e.retryAt) {
		e.initiate(now)
	}
}

// timers runs an established SA's periodic work.
func (e *Engine) timers(now time.Time, sa *ikeSA) {
	// Liveness: inbound ESP counts as a sign of life.
	for _, c := range sa.children {
		in, _ := e.dp.ChildBytes(c.keys.SPIIn)
		if in != c.lastIn {
			c.lastIn = in
			sa.lastRecv = now
			c.peerHas = true // the peer sends on it: it has it
		}
	}
	e.switchPending()
	if sa.req != nil || len(sa.queue) > 0 {
		return
	}
	if e.cfg.Lifetime > 0 && !sa.ikeRekeying && !now.Before(sa.rekeyAt) && !now.Before(sa.retryRekey) {
		e.rekeyIKE(now, sa)
		return
	}
	for _, c := range sa.children {
		if c.state != childInstalled || c.replacedBy != nil || now.Before(c.retryRekey) {
			continue
		}
		due := e.cfg.ChildLifetime > 0 && !now.Before(c.rekeyAt)
		if c.rekeyBytes > 0 {
			in, out := e.dp.ChildBytes(c.keys.SPIIn)
			due = due || max(in, out) >= c.rekeyBytes
		}
		if sq, ok := e.dp.(SequenceReporter); ok {
			// Without ESN the 32-bit sequence number must not wrap
			// (RFC 4303 §3.3.3): a fast link with no byte limit can use
			// it up well within the time lifetime.
			due = due || sq.ChildSequence(c.keys.SPIIn) >= seqRekeyAt
		}
		if due {
			e.rekeyChild(now, sa, c, DHNone, 0)
			return
		}
	}
	if e.cfg.DPD > 0 && !now.Before(sa.lastRecv.Add(e.cfg.DPD)) {
		e.sendLivenessCheck(now, sa)
	}
}

// rekeyTime is when we start rekeying something with lifetime d created at
// t (zero: never). The original initiator rekeys at 85–88 %, the responder
// at 92–95 %: the asymmetry and the jitter make collisions rare; the
// collision handling makes them harmless.
func (e *Engine) rekeyTime(sa *ikeSA, t time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	base := d * 85 / 100
	if !sa.initiator {
		base = d * 92 / 100
	}
	return t.Add(base + e.randDuration(0, d*3/100))
}

// rekeyBytes is the byte count at which we rekey a CHILD_SA with byte
// lifetime lb (0: none): like rekeyTime, at 85–88 % of it for the original
// initiator and 92–95 % for the responder. Both peers count the same
// traffic, so without the spread they would always rekey at once and
// collide.
func (e *Engine) rekeyBytes(sa *ikeSA, lb uint64) uint64 {
	if lb == 0 {
		return 0
	}
	pct := uint64(85)
	if !sa.initiator {
		pct = 92
	}
	return lb/100*pct + uint64(e.randDuration(0, time.Duration(lb/100*3)))
}
