// Which CHILD_SA sends: after a rekey or a collision the outbound SA moves
// only once the peer is known to have the new one (make before break).

package ike

import "go.uber.org/zap"

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

func (e *Engine) newestChild(sa *ikeSA) *childSA {
	var best *childSA
	for _, c := range sa.children {
		if c.state != childGone && (best == nil || c.seq > best.seq) {
			best = c
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
