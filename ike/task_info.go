package ike

import (
	"time"

	"go.uber.org/zap"
)

// deleteIKEOnce tells the peer we are deleting sa (one try; no answer
// needed): for an SA we are dropping anyway.
func (e *Engine) deleteIKEOnce(sa *ikeSA) {
	m := &Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: INFORMATIONAL, Flags: sa.flags(false), MessageID: sa.nextReqID}
	if sa.req != nil {
		m.MessageID = sa.req.id + 1
	}
	if packets, err := e.seal(sa, m, Payloads{&Delete{Protocol: ProtoIKE}}); err == nil {
		e.writeAll(packets)
	}
}

// deleteIKESA deletes sa with an INFORMATIONAL exchange and forgets it
// when the peer answers (or does not).
func (e *Engine) deleteIKESA(now time.Time, sa *ikeSA) {
	if sa.state == saDeleting || sa.gone() {
		return
	}
	e.setState(sa, saDeleting)
	e.log.Info("deleting IKE SA", e.saFields(sa, nil)...)
	done := func(now time.Time) { e.dropSA(now, sa, "deleted") }
	e.sendRequest(now, sa, INFORMATIONAL, Payloads{&Delete{Protocol: ProtoIKE}},
		func(now time.Time, _ *Message, _ []byte, _ Payloads) { done(now) }, done)
}

// respondInformational handles Delete and liveness checks (§1.4, §2.4).
func (e *Engine) respondInformational(now time.Time, sa *ikeSA, ps Payloads) Payloads {
	var out Payloads
	var ours []uint32
	for _, p := range ps {
		d, ok := p.(*Delete)
		if !ok {
			continue
		}
		switch d.Protocol {
		case ProtoIKE:
			// §2.25.2: a delete beats our own rekey of it, which is
			// forgotten with the SA. If the peer rekeyed it too, its
			// Delete says its rekey won (its answer to ours is late).
			e.log.Info("peer deletes the IKE SA", e.saFields(sa, nil)...)
			if p := sa.peerRekey; p != nil && !p.gone() {
				sa.peerRekey, sa.ikeRekeying = nil, false
				e.completeIKERekey(now, sa, p, false)
			}
			sa.deleteAfterResponse = true
			return nil
		case ProtoESP:
			for _, spi := range d.SPIs {
				// The peer names its inbound SPIs: our outbound ones.
				c := sa.childByOut(spi)
				if c == nil {
					continue
				}
				ours = append(ours, c.keys.SPIIn)
				e.retireChild(sa, c)
			}
		}
	}
	if len(ours) > 0 {
		out = append(out, &Delete{Protocol: ProtoESP, SPIs: ours})
	}
	return append(out, e.mobikeAnswer(sa, ps)...)
}

// ownerOf is the IKE SA that c belongs to now (a rekey moves children).
func (e *Engine) ownerOf(c *childSA) *ikeSA {
	for _, sa := range e.sas {
		for _, x := range sa.children {
			if x == c {
				return sa
			}
		}
	}
	return nil
}

// retireChild removes c from sa and from the data plane, first moving
// sending to another CHILD_SA if c was the one sending.
func (e *Engine) retireChild(sa *ikeSA, c *childSA) {
	for i, x := range sa.children {
		if x == c {
			sa.children = append(sa.children[:i:i], sa.children[i+1:]...)
			break
		}
	}
	if c.state == childGone {
		return
	}
	e.setChildState(c, childGone)
	if c.keys.SPIIn == e.outSPI {
		// Send on the best SA the peer is known to have; if that is not
		// the best one, move on when the peer has that (switchPending).
		best, proven := e.bestChild(false), e.bestChild(true)
		switch {
		case best == nil:
		case best.peerHas || proven == nil:
			e.forceOutbound(best)
		default:
			e.forceOutbound(proven)
			e.pendingOut = best
		}
	}
	if err := e.dp.RemoveChild(c.keys.SPIIn); err != nil {
		e.log.Warn("remove child failed", zap.Uint32("spi_in", c.keys.SPIIn), zap.Error(err))
	}
	if c.keys.SPIIn == e.outSPI {
		e.outSPI = 0
	}
	e.keyGen++
	e.log.Info("CHILD_SA removed", append(e.saFields(sa, nil), zap.Uint32("spi_in", c.keys.SPIIn), zap.Uint32("spi_out", c.keys.SPIOut))...)
}

// bestChild is the CHILD_SA that should send: the newest one that is not
// on its way out, on an IKE SA that stays; if proven, among those the peer
// is known to have.
func (e *Engine) bestChild(proven bool) *childSA {
	var best *childSA
	rank := func(sa *ikeSA, c *childSA) int {
		r := 0
		if c.inUse() {
			r += 2
		}
		if sa.state == saEstablished || sa.state == saPending {
			r++
		}
		return r
	}
	bestRank := -1
	for _, sa := range e.sas {
		for _, c := range sa.children {
			if c.state == childGone || proven && !c.peerHas {
				continue
			}
			if r := rank(sa, c); r > bestRank || r == bestRank && c.seq > best.seq {
				best, bestRank = c, r
			}
		}
	}
	return best
}

// switchOutbound makes c's outbound SA the sending one as soon as the
// peer has installed it (peerHas); until then the current one keeps
// sending (it is on both sides) and c waits in e.pendingOut.
func (e *Engine) switchOutbound(c *childSA) {
	if c == nil || c.state == childGone || c.keys.SPIIn == e.outSPI {
		return
	}
	if !c.peerHas && e.outSPI != 0 {
		e.pendingOut = c
		return
	}
	e.forceOutbound(c)
}

// proven records that the peer has the CHILD_SAs of sa (it sent a new
// request, after our answers), and makes a waiting switch happen.
func (e *Engine) proven(sa *ikeSA) {
	for _, c := range sa.children {
		c.peerHas = true
	}
	e.switchPending()
}

func (e *Engine) switchPending() {
	if c := e.pendingOut; c != nil && (c.peerHas || c.state == childGone) {
		e.pendingOut = nil
		if c.state != childGone && e.bestChild(false) == c {
			e.forceOutbound(c)
		}
	}
}

// forceOutbound switches sending to c now.
func (e *Engine) forceOutbound(c *childSA) {
	if c == nil || c.state == childGone || c.keys.SPIIn == e.outSPI {
		return
	}
	if e.pendingOut == c {
		e.pendingOut = nil
	}
	sw, ok := e.dp.(OutboundSwitcher)
	if !ok {
		if !e.warnedSw {
			e.warnedSw = true
			e.log.Warn("data plane cannot switch its outbound SA back after a collision; sending may pause until the next rekey")
		}
		return
	}
	if err := sw.SetOutbound(c.keys.SPIIn); err != nil {
		e.log.Warn("switching the outbound SA failed", zap.Uint32("spi_in", c.keys.SPIIn), zap.Error(err))
		return
	}
	e.outSPI = c.keys.SPIIn
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

func (e *Engine) newestChild(sa *ikeSA) *childSA {
	var best *childSA
	for _, c := range sa.children {
		if c.state != childGone && (best == nil || c.seq > best.seq) {
			best = c
		}
	}
	return best
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

// sendLivenessCheck sends an empty INFORMATIONAL request (§1.4); no answer
// after the retransmissions means the peer is dead.
func (e *Engine) sendLivenessCheck(now time.Time, sa *ikeSA) {
	e.log.Debug("liveness check", e.saFields(sa, nil)...)
	sa.lastRecv = now // one check per interval
	e.sendRequest(now, sa, INFORMATIONAL, nil, func(time.Time, *Message, []byte, Payloads) {},
		func(now time.Time) {
			e.counters.DPDFailures++
			e.fail(now, sa, "peer is dead (no answer to liveness check)")
		})
}
