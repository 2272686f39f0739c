package ike

import (
	"errors"
	"time"

	"go.uber.org/zap"
)

// A task is one exchange we initiate, as strongSwan's task_t: the
// function that starts it (initiate, sendAuth, rekeyChild, rekeyIKE,
// deleteChild, ...) builds the request and hands it with its task to
// sendRequest; the task then processes the response or learns that none
// came. What it needs from the start (nonces, DH key, SPIs) it keeps in
// its fields; what it found it returns, it does not leave in the engine.
//
// Each task type lives in the file of its exchange: ikeInit (ike_init.go),
// ikeAuth (ike_auth.go), childRekey (child_rekey.go), familyChild
// (child_family.go), ikeRekey (ike_rekey.go), childDelete
// (child_delete.go), ikeDelete (ike_delete.go), livenessCheck
// (ike_dpd.go).
type task interface {
	// process handles the response m (its payloads decrypted: inner) and
	// says how the exchange ended, for Counters.Exchanges: "" when the
	// response says it (resultOf), else a failure we found in it.
	process(e *Engine, now time.Time, m *Message, raw []byte, inner Payloads) string
	// timeout runs when the peer answered none of the retransmissions.
	timeout(e *Engine, now time.Time)
}

// request is our one outstanding request on an IKE SA (window size 1, §2.3).
type request struct {
	exchange ExchangeType
	id       uint32
	packets  [][]byte // the message as sent: one datagram, or its fragments (fragment.go)
	deadline time.Time
	timeout  time.Duration
	tries    int
	task     task
	// unprotected is an error answer to IKE_SA_INIT, held until the
	// request is due for retransmission (see handleResponse).
	unprotected    *Message
	unprotectedRaw []byte
}

// queuedRequest waits on an IKE SA for the request in flight to finish.
// Its payloads were built when its task started (nonces, DH keys and SPIs
// are drawn in the order the tasks start).
type queuedRequest struct {
	exchange ExchangeType
	inner    Payloads
	task     task
}

// sendRequest sends a request of task t on sa now, or queues it behind the
// one in flight there.
func (e *Engine) sendRequest(now time.Time, sa *ikeSA, exch ExchangeType, inner Payloads, t task) {
	if sa.gone() {
		return
	}
	if sa.req != nil {
		sa.queue = append(sa.queue, queuedRequest{exchange: exch, inner: inner, task: t})
		return
	}
	m := &Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: exch, Flags: sa.flags(false), MessageID: sa.nextReqID}
	packets, err := e.seal(sa, m, inner)
	if err != nil {
		e.log.Error("cannot build request", append(e.saFields(sa, m), zap.Error(err))...)
		return
	}
	sa.nextReqID++
	sa.req = &request{exchange: exch, id: m.MessageID, packets: packets, timeout: e.cfg.Retransmit,
		deadline: now.Add(e.cfg.Retransmit), task: t}
	e.log.Debug("request", e.saFields(sa, m)...)
	e.writeAll(packets)
}

// sendRaw puts a ready-made request in flight (IKE_SA_INIT, which is not
// encrypted and whose bytes the AUTH payload covers).
func (e *Engine) sendRaw(now time.Time, sa *ikeSA, exch ExchangeType, id uint32, raw []byte, t task) {
	sa.req = &request{exchange: exch, id: id, packets: [][]byte{raw}, timeout: e.cfg.Retransmit,
		deadline: now.Add(e.cfg.Retransmit), task: t}
	e.write(raw)
}

// nextRequest sends what is queued on sa, if its window is free.
func (e *Engine) nextRequest(now time.Time, sa *ikeSA) {
	for sa.req == nil && !sa.gone() && len(sa.queue) > 0 {
		q := sa.queue[0]
		sa.queue = sa.queue[1:]
		e.sendRequest(now, sa, q.exchange, q.inner, q.task)
	}
}

// retransmit runs sa's request timer: it sends the request again with
// exponential back-off, or, after the last try, ends the task (timeout)
// with the SA's queue.
func (e *Engine) retransmit(now time.Time, sa *ikeSA) {
	r := sa.req
	if sa.gone() || r == nil || now.Before(r.deadline) {
		return
	}
	if u := r.unprotected; u != nil {
		// No real answer came after the error one: believe it.
		e.finishRequest(now, sa, r, u, r.unprotectedRaw, u.Payloads)
		return
	}
	if r.tries+1 >= e.cfg.RetransmitTries {
		e.log.Warn("peer does not answer, giving up", e.saFields(sa, &Message{MessageID: r.id, Exchange: r.exchange})...)
		sa.req, sa.queue = nil, nil
		e.countExchange(r.exchange, true, "timeout")
		r.task.timeout(e, now)
		return
	}
	r.tries++
	r.timeout = time.Duration(float64(r.timeout) * e.cfg.RetransmitBase)
	r.deadline = now.Add(r.timeout)
	e.counters.Retransmits++
	e.log.Debug("retransmit", append(e.saFields(sa, &Message{MessageID: r.id, Exchange: r.exchange}), zap.Int("try", r.tries))...)
	e.writeAll(r.packets) // every fragment (RFC 7383 §2.6)
}

// handleResponse matches a response to the request in flight by SPIs,
// message ID and exchange.
func (e *Engine) handleResponse(now time.Time, m *Message, raw []byte) {
	var sa *ikeSA
	for _, x := range e.sas {
		if x.initiatorOfReq(m) {
			sa = x
			break
		}
	}
	if sa == nil || sa.req == nil || sa.req.id != m.MessageID || sa.req.exchange != m.Exchange {
		e.drop(DropUnexpected)
		return
	}
	r := sa.req
	if m.Exchange == IKE_SA_INIT {
		if n := m.Payloads.Notify(COOKIE); n != nil && (len(n.Data) < 1 || len(n.Data) > 64) {
			// §2.6 allows 1..64 bytes; anything else is not from a real
			// responder. Keep waiting for one.
			e.drop(DropMalformed)
			return
		}
		if n := m.Payloads.FirstError(); n != nil && n.Kind != INVALID_KE_PAYLOAD && m.Payloads.Get(PayloadSA) == nil {
			// §2.21.1: an error answer to IKE_SA_INIT is not
			// authenticated; anyone who saw our request could forge one
			// to end the exchange. Keep waiting for the real answer until
			// the request is due again; only then believe the error.
			if r.unprotected == nil {
				r.unprotected, r.unprotectedRaw = m, raw
				e.log.Info("IKE_SA_INIT answered with an error; waiting for a real answer before believing it",
					append(e.saFields(sa, m), zap.Stringer("notify", n.Kind))...)
			} else {
				e.drop(DropUnexpected)
			}
			return
		}
		e.finishRequest(now, sa, r, m, raw, m.Payloads)
		return
	}
	inner, err := sa.unprotect(m, raw)
	e.answered(now, sa, r, m, raw, inner, err)
}

// answered finishes our request r with its response m, whose SK payload
// (or reassembled fragments) opened to inner or failed with err.
func (e *Engine) answered(now time.Time, sa *ikeSA, r *request, m *Message, raw []byte, inner Payloads, err error) {
	switch {
	case errors.Is(err, ErrInnerSyntax):
		// Authentic but unparseable: the exchange failed; nothing would
		// come of waiting for a retransmission of the same bytes.
		e.counters.InvalidSyntax++
		e.log.Warn("response decrypted but its payloads do not parse",
			append(e.saFields(sa, m), zap.String("reason", err.Error()))...)
		inner = Payloads{&Notify{Kind: INVALID_SYNTAX}}
	case err != nil:
		e.drop(DropIntegrity)
		return
	}
	sa.lastRecv = now
	e.notePeer(sa, e.nat.cur.from, e.nat.cur.natt)
	e.finishRequest(now, sa, r, m, raw, inner)
}

// finishRequest ends the task of r with its response and sends what is
// queued next.
func (e *Engine) finishRequest(now time.Time, sa *ikeSA, r *request, m *Message, raw []byte, inner Payloads) {
	sa.req = nil
	result := r.task.process(e, now, m, raw, inner)
	if result == "" {
		result = resultOf(inner)
	}
	e.countExchange(r.exchange, true, result)
	e.nextRequest(now, sa)
}
