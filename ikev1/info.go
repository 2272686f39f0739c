package ikev1

import (
	"encoding/binary"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/gresec/gresec/ike"
)

// sendInfo sends a protected informational exchange (RFC 2409 §5.7):
// HDR*, HASH(1), N/D with HASH(1) = prf(SKEYID_a, M-ID | N/D).
func (e *Engine) sendInfo(p *phase1, t PayloadType, body []byte) {
	if p == nil || p.state != stateEstablished {
		return
	}
	mid := e.newMsgID(p)
	iv := Phase2IV(p.suite.PRF, p.iv, mid)
	rest := []Payload{{t, body}}
	h := hashPayloads(p, be32(mid), rest)
	msg, err := e.encrypt(p.header(ExchangeInfo, mid, 0), append([]Payload{{PayloadHash, h}}, rest...), p.keys.Enc, &iv)
	if err != nil {
		return
	}
	e.write(msg)
}

// info handles a protected informational exchange: DELETE, DPD.
func (e *Engine) info(now time.Time, p *phase1, m *Message) {
	if m.Encrypted == nil {
		e.unprotectedInfo(m)
		return
	}
	if p.state != stateEstablished {
		e.drop(ike.DropUnexpected)
		return
	}
	iv := Phase2IV(p.suite.PRF, p.iv, m.MsgID)
	ps, err := e.decrypt(p.keys.Enc, &iv, m)
	if err != nil {
		return
	}
	if len(ps) < 2 || ps[0].Type != PayloadHash {
		e.drop(ike.DropMalformed)
		return
	}
	want := hashPayloads(p, be32(m.MsgID), ps[1:])
	if !ike.Secret(want).Equal(ps[0].Body) {
		e.drop(ike.DropIntegrity)
		return
	}
	// Not a sign of life by itself: an informational exchange has no
	// replay protection, so a recorded one verifies again. Only an
	// acknowledgement of our latest R-U-THERE is fresh (ruThereAck), and
	// only it may move the peer to a new NAT mapping (notePeer).
	for _, pl := range ps[1:] {
		switch pl.Type {
		case PayloadDelete:
			d, err := DecodeDelete(pl.Body)
			if err != nil {
				e.drop(ike.DropMalformed)
				continue
			}
			e.peerDelete(now, p, d)
		case PayloadNotify:
			n, err := DecodeNotify(pl.Body)
			if err != nil {
				e.drop(ike.DropMalformed)
				continue
			}
			switch n.Type {
			case NotifyRUThere:
				e.sendInfo(p, PayloadNotify, Notify{Protocol: ProtoISAKMP, Type: NotifyRUThereAck, SPI: p.cookies(), Data: n.Data}.Encode())
			case NotifyRUThereAck:
				if e.ruThereAck(now, n) {
					e.notePeer(p)
				}
			case NotifyInitialContact:
				// IOS sends it in an informational exchange of its own
				// right after Main Mode rather than in message 5.
				e.initialContact(p)
			default:
				e.log.Info("notification from the peer", zap.Uint16("type", n.Type), zap.String("name", notifyName(n.Type)))
			}
		}
	}
}

// peerDelete: ESP SPIs are the peer's inbound ones, our outbound.
func (e *Engine) peerDelete(now time.Time, p *phase1, d Delete) {
	switch d.Protocol {
	case ProtoESP:
		for _, s := range d.SPIs {
			if len(s) != 4 {
				continue
			}
			spi := binary.BigEndian.Uint32(s)
			for _, c := range e.children {
				if c.spiOut == spi {
					e.log.Info("peer deleted phase 2 SA", zap.String("spi_in", fmt.Sprintf("0x%08x", c.spiIn)), zap.String("spi_out", fmt.Sprintf("0x%08x", spi)))
					e.deleteChild(c, false)
					break
				}
			}
		}
	case ProtoISAKMP:
		for _, s := range d.SPIs {
			if len(s) == 16 && binary.BigEndian.Uint64(s) == p.ic && binary.BigEndian.Uint64(s[8:]) == p.rc {
				e.log.Info("peer deleted phase 1 SA", zap.String("spi", p.spis()))
				e.remove(p)
				if len(e.children) == 0 {
					e.reconnect(now)
				}
				return
			}
		}
	}
}

// unprotectedInfo only logs: an unauthenticated notification must not
// change state (anyone can send one). Anyone can send a flood of them
// too, so only the first and every hundredth message is logged, and only
// its first notification.
func (e *Engine) unprotectedInfo(m *Message) {
	e.drop(ike.DropUnexpected)
	n := e.unprotLogged.Add(1)
	if n != 1 && n%100 != 0 {
		return
	}
	for _, pl := range m.Payloads {
		if pl.Type != PayloadNotify {
			continue
		}
		if nt, err := DecodeNotify(pl.Body); err == nil {
			e.log.Warn("unprotected notification from the peer", zap.Uint16("type", nt.Type), zap.String("name", notifyName(nt.Type)),
				zap.Uint64("unprotected", n))
			return
		}
	}
}

func notifyName(t uint16) string {
	switch t {
	case NotifyNoProposalChosen:
		return "NO_PROPOSAL_CHOSEN"
	case NotifyPayloadMalformed:
		return "PAYLOAD_MALFORMED"
	case NotifyInvalidHashInfo:
		return "INVALID_HASH_INFORMATION"
	case NotifyAuthFailed:
		return "AUTHENTICATION_FAILED"
	case NotifyInvalidID:
		return "INVALID_ID_INFORMATION"
	case NotifyInitialContact:
		return "INITIAL_CONTACT"
	case NotifyResponderLifetime:
		return "RESPONDER_LIFETIME"
	case NotifyInvalidCookie:
		return "INVALID_COOKIE"
	}
	return fmt.Sprintf("NOTIFY(%d)", t)
}
