package ike

import (
	"encoding/binary"
	"slices"
	"time"

	"go.uber.org/zap"
)

// Unprotected notifications outside any IKE SA (RFC 7296 §1.5). When a
// peer restarts it forgets its SAs; the survivor keeps sending on them
// until a liveness check gives up, which takes a minute or more. The
// restarted side can say so at once — INVALID_SPI for ESP on an SPI it
// does not know, INVALID_IKE_SPI for an IKE request on an unknown IKE SA —
// but anyone on the path could forge that, so the survivor takes it only
// as a hint: it sets up a new IKE SA (with INITIAL_CONTACT) beside the old
// one and drops the old one once the new one has authenticated. A forged
// hint costs one extra handshake, at most one per hintInterval; the
// tunnel keeps working on the old SAs meanwhile.

// hintInterval bounds the hints we send and the ones we act on.
const hintInterval = 2 * time.Second

// NoteUnknownSPI tells the engine that ESP arrived from the peer on an SPI
// the data plane does not know. Safe from any goroutine; never blocks.
func (e *Engine) NoteUnknownSPI(spi uint32) {
	select {
	case e.unknownSPI <- spi:
	default: // one is pending already: that is enough for a hint
	}
}

// hintInvalidSPI answers ESP on an unknown SPI when we have no IKE SA with
// the peer: with one, the SPI is more likely a straggler of a deleted SA.
func (e *Engine) hintInvalidSPI(now time.Time, spi uint32) {
	for _, sa := range e.sas {
		if sa.usable() {
			return
		}
	}
	if now.Before(e.hintSentAt.Add(hintInterval)) {
		return
	}
	e.hintSentAt = now
	e.log.Info("ESP from the peer on an unknown SPI and no IKE SA: telling the peer (INVALID_SPI)", zap.Uint32("spi", spi))
	e.sendHint(0, 0, 0, &Notify{Kind: INVALID_SPI, Data: binary.BigEndian.AppendUint32(nil, spi)})
}

// hintInvalidIKESPI answers an encrypted request on an unknown IKE SA.
func (e *Engine) hintInvalidIKESPI(now time.Time, m *Message) {
	if !m.Payloads.Encrypted() || now.Before(e.hintSentAt.Add(hintInterval)) {
		return
	}
	e.hintSentAt = now
	e.sendHint(m.SPIi, m.SPIr, m.MessageID, &Notify{Kind: INVALID_IKE_SPI})
}

// sendHint sends n unprotected, flagged as a response so that no peer
// answers it (§1.5: answering could loop).
func (e *Engine) sendHint(spiI, spiR uint64, id uint32, n *Notify) {
	out := &Message{SPIi: spiI, SPIr: spiR, Exchange: INFORMATIONAL, Flags: FlagResponse, MessageID: id, Payloads: Payloads{n}}
	if b, err := out.Encode(); err == nil {
		e.write(b)
	}
}

// handleHint takes an unprotected INFORMATIONAL message as a hint that the
// peer lost our SAs, if it names one of them.
func (e *Engine) handleHint(now time.Time, m *Message) {
	named := false
	if n := m.Payloads.Notify(INVALID_SPI); n != nil && len(n.Data) == 4 {
		spi := binary.BigEndian.Uint32(n.Data)
		for _, sa := range e.sas {
			named = named || sa.childByOut(spi) != nil
		}
	}
	if n := m.Payloads.Notify(INVALID_IKE_SPI); n != nil {
		sa := e.findSA(m.SPIi, m.SPIr)
		named = named || sa != nil && sa.req != nil && sa.req.id == m.MessageID
	}
	if !named {
		e.drop(DropUnexpected)
		return
	}
	if now.Before(e.hintTakenAt.Add(hintInterval)) {
		e.drop(DropRateLimited)
		return
	}
	e.hintTakenAt = now
	if !e.cfg.Initiate {
		// We may not initiate: check liveness now instead of waiting for
		// the DPD interval; a dead peer is then noticed after the
		// retransmissions, and a restarted initiator reconnects itself.
		for _, sa := range e.sas {
			if sa.usable() && sa.req == nil {
				e.log.Info("peer hints it lost our SAs: checking liveness", e.saFields(sa, nil)...)
				e.sendLivenessCheck(now, sa)
			}
		}
		return
	}
	for _, sa := range e.sas {
		if sa.state == saConnecting {
			return // already setting one up
		}
	}
	e.log.Info("peer hints it lost our SAs: setting up a new IKE SA beside the old one",
		zap.Stringer("notify", m.Payloads[0].(*Notify).Kind))
	e.initiate(now)
	if n := len(e.sas); n > 0 {
		e.sas[n-1].afterHint = true
	}
}

// forgetOthers runs when an IKE SA set up after a hint has authenticated:
// the peer, told INITIAL_CONTACT, has dropped every other SA with us, so
// we drop ours (telling the peer once, in case the hint was forged and it
// still has them).
func (e *Engine) forgetOthers(sa *ikeSA) {
	for _, old := range slices.Clone(e.sas) {
		if old == sa {
			continue
		}
		e.log.Info("replaced after the peer's hint", e.saFields(old, nil)...)
		if old.keyed() && old.state != saConnecting {
			e.deleteIKEOnce(old)
		}
		e.removeSA(old)
	}
}
