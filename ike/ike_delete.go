// Deleting an IKE SA (RFC 7296 §1.4.1): with an INFORMATIONAL exchange,
// or one unanswered message when we drop it anyway.

package ike

import "time"

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
	e.sendRequest(now, sa, INFORMATIONAL, Payloads{&Delete{Protocol: ProtoIKE}}, &ikeDelete{sa: sa})
}

// ikeDelete is our Delete of sa: answered or not, sa goes.
type ikeDelete struct{ sa *ikeSA }

func (t *ikeDelete) process(e *Engine, now time.Time, _ *Message, _ []byte, _ Payloads) string {
	e.dropSA(now, t.sa, "deleted")
	return ""
}

func (t *ikeDelete) timeout(e *Engine, now time.Time) { e.dropSA(now, t.sa, "deleted") }
