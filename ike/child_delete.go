// Deleting a CHILD_SA (RFC 7296 §1.4.1): the request, and retiring it
// from the engine and the data plane once the peer confirms.

package ike

import (
	"time"

	"go.uber.org/zap"
)

// deleteChild asks the peer to delete c and removes it once the peer
// confirms (the peer may send on it until then).
func (e *Engine) deleteChild(now time.Time, sa *ikeSA, c *childSA) {
	e.setChildState(c, childDeleting)
	e.sendRequest(now, sa, INFORMATIONAL, Payloads{&Delete{Protocol: ProtoESP, SPIs: []uint32{c.keys.SPIIn}}},
		&childDelete{sa: sa, c: c})
}

// childDelete is our Delete of c, sent on sa.
type childDelete struct {
	sa *ikeSA
	c  *childSA
}

func (t *childDelete) process(e *Engine, _ time.Time, _ *Message, _ []byte, _ Payloads) string {
	// An IKE rekey may have moved c to another IKE SA meanwhile.
	if owner := e.ownerOf(t.c); owner != nil {
		e.retireChild(owner, t.c)
	}
	return ""
}

func (t *childDelete) timeout(e *Engine, now time.Time) {
	e.fail(now, t.sa, "no answer to CHILD_SA delete")
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
