// Liveness checks (dead peer detection, RFC 7296 §1.4): an empty
// INFORMATIONAL request when nothing came from the peer for Config.DPD.

package ike

import "time"

// sendLivenessCheck sends an empty INFORMATIONAL request (§1.4); no answer
// after the retransmissions means the peer is dead.
func (e *Engine) sendLivenessCheck(now time.Time, sa *ikeSA) {
	e.log.Debug("liveness check", e.saFields(sa, nil)...)
	sa.lastRecv = now // one check per interval
	e.sendRequest(now, sa, INFORMATIONAL, nil, &livenessCheck{sa: sa})
}

// livenessCheck is our empty INFORMATIONAL request on sa: any answer will
// do.
type livenessCheck struct{ sa *ikeSA }

func (t *livenessCheck) process(*Engine, time.Time, *Message, []byte, Payloads) string { return "" }

func (t *livenessCheck) timeout(e *Engine, now time.Time) {
	e.counters.DPDFailures++
	e.fail(now, t.sa, "peer is dead (no answer to liveness check)")
}
