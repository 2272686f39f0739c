package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrVersion: the message's major version is not 2. A request like that
// deserves INVALID_MAJOR_VERSION (§2.5), a response is dropped.
var ErrVersion = errors.New("ike: unsupported major version")

// Message is a decoded IKE message: the header fields and the payloads in
// order. An encrypted message ends with an *Encrypted payload until it is
// opened with an SKCipher.
type Message struct {
	SPIi      uint64
	SPIr      uint64
	Exchange  ExchangeType
	Flags     Flags
	MessageID uint32
	Payloads  Payloads
}

// IsResponse reports the R flag.
func (m *Message) IsResponse() bool { return m.Flags&FlagResponse != 0 }

// FromInitiator reports the I flag (sent by the IKE SA's original initiator).
func (m *Message) FromInitiator() bool { return m.Flags&FlagInitiator != 0 }

// DecodeMessage decodes one IKE message. The header's length must equal
// len(b): one UDP datagram carries exactly one message. The result does not
// alias b.
func DecodeMessage(b []byte) (*Message, error) {
	if len(b) < HeaderLen {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the IKE header", ErrMalformed, len(b))
	}
	if len(b) > MaxMessageLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	h := Header(b)
	if h.Version()>>4 != 2 {
		return nil, fmt.Errorf("%w: version %#x", ErrVersion, h.Version())
	}
	if h.Length() != uint32(len(b)) {
		return nil, fmt.Errorf("%w: header length %d, datagram %d bytes", ErrMalformed, h.Length(), len(b))
	}
	m := &Message{
		SPIi:      h.SPIi(),
		SPIr:      h.SPIr(),
		Exchange:  h.Exchange(),
		Flags:     h.Flags() & (FlagResponse | FlagVersion | FlagInitiator),
		MessageID: h.MessageID(),
	}
	n := 0
	var err error
	m.Payloads, err = decodeChain(h.NextPayload(), b[HeaderLen:], true, &n)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// decodeChain decodes a chain of payloads starting with type next. The
// SK payload, where allowed, must be the last one and is kept encrypted.
func decodeChain(next PayloadType, b []byte, allowSK bool, n *int) (Payloads, error) {
	var out Payloads
	for next != PayloadNone {
		if *n == maxPayloads {
			return nil, fmt.Errorf("%w: more than %d payloads", ErrMalformed, maxPayloads)
		}
		*n++
		if len(b) < genericHeaderLen {
			return nil, malformed(next, "truncated generic header")
		}
		following := PayloadType(b[0])
		critical := b[1]&0x80 != 0
		length := int(binary.BigEndian.Uint16(b[2:]))
		if length < genericHeaderLen || length > len(b) {
			return nil, malformed(next, "length %d with %d bytes left", length, len(b))
		}
		body := b[genericHeaderLen:length]
		b = b[length:]
		if next == PayloadSK || next == PayloadSKF {
			if !allowSK {
				return nil, malformed(next, "nested SK payload")
			}
			if len(b) != 0 {
				// §3.14: SK is the last payload; anything after it would be
				// unauthenticated.
				return nil, malformed(next, "%d bytes after the SK payload", len(b))
			}
			if next == PayloadSKF {
				f, err := decodeFragment(following, body)
				if err != nil {
					return nil, err
				}
				return append(out, f), nil
			}
			return append(out, &Encrypted{First: following, Data: clone(body)}), nil
		}
		p, err := decodeBody(next, body, critical)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
		next = following
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last payload", ErrMalformed, len(b))
	}
	return out, nil
}

// appendChain appends ps with generic headers; the last payload's next field
// is 0 and an *Encrypted payload's is the type of its first inner payload.
func appendChain(b []byte, ps Payloads) ([]byte, error) {
	for i, p := range ps {
		next := PayloadNone
		if i+1 < len(ps) {
			next = ps[i+1].Type()
		}
		if e, ok := p.(*Encrypted); ok {
			if i != len(ps)-1 {
				return nil, errors.New("ike: SK must be the last payload")
			}
			next = e.First
		}
		if f, ok := p.(*EncryptedFragment); ok {
			if i != len(ps)-1 {
				return nil, errors.New("ike: SKF must be the last payload")
			}
			next = f.First
		}
		var flags byte
		if u, ok := p.(*Unknown); ok && u.Critical {
			flags = 0x80
		}
		start := len(b)
		b = append(b, byte(next), flags, 0, 0)
		b = p.appendBody(b)
		if len(b)-start > 0xffff {
			return nil, fmt.Errorf("ike: %v payload of %d bytes", p.Type(), len(b)-start)
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b, nil
}

func (m *Message) appendHeader(b []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, HeaderLen)...)
	h := Header(b[start:])
	h.SetSPIi(m.SPIi)
	h.SetSPIr(m.SPIr)
	if len(m.Payloads) > 0 {
		h.SetNextPayload(m.Payloads[0].Type())
	}
	h.SetVersion(Version2)
	h.SetExchange(m.Exchange)
	h.SetFlags(m.Flags)
	h.SetMessageID(m.MessageID)
	return b
}

// Encode returns the message on the wire. An *Encrypted payload, if any, is
// written as it is (see SKCipher.Seal to build one).
func (m *Message) Encode() ([]byte, error) {
	b := m.appendHeader(make([]byte, 0, 512))
	b, err := appendChain(b, m.Payloads)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMessageLen {
		return nil, fmt.Errorf("ike: message of %d bytes", len(b))
	}
	Header(b).SetLength(uint32(len(b)))
	return b, nil
}

// Payloads is a message's payload list with look-up helpers.
type Payloads []Payload

// Get returns the first payload of type t, or nil.
func (ps Payloads) Get(t PayloadType) Payload {
	for _, p := range ps {
		if p.Type() == t {
			return p
		}
	}
	return nil
}

// Notify returns the first notify of kind k, or nil.
func (ps Payloads) Notify(k NotifyType) *Notify {
	for _, p := range ps {
		if n, ok := p.(*Notify); ok && n.Kind == k {
			return n
		}
	}
	return nil
}

// Notifies returns all notifies of kind k.
func (ps Payloads) Notifies(k NotifyType) []*Notify {
	var out []*Notify
	for _, p := range ps {
		if n, ok := p.(*Notify); ok && n.Kind == k {
			out = append(out, n)
		}
	}
	return out
}

// FirstError returns the first error notify, or nil.
func (ps Payloads) FirstError() *Notify {
	for _, p := range ps {
		if n, ok := p.(*Notify); ok && n.Kind.IsError() {
			return n
		}
	}
	return nil
}

// UnsupportedCritical returns the first payload that has the critical bit
// and a type we do not understand: the message must then be rejected with
// UNSUPPORTED_CRITICAL_PAYLOAD carrying that type (§2.5).
func (ps Payloads) UnsupportedCritical() *Unknown {
	for _, p := range ps {
		if u, ok := p.(*Unknown); ok && u.Critical && !understood(u.PayloadType) {
			return u
		}
	}
	return nil
}

// Encrypted reports whether the message carries an SK payload (it is then
// the last payload, still sealed).
func (ps Payloads) Encrypted() bool {
	if len(ps) == 0 {
		return false
	}
	_, ok := ps[len(ps)-1].(*Encrypted)
	return ok
}
