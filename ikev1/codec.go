package ikev1

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the ISAKMP version byte of IKEv1: major 1, minor 0.
const Version = 0x10

// Exchange types (RFC 2408 §3.1, RFC 2409 §5).
type Exchange uint8

const (
	ExchangeMain       Exchange = 2 // Identity Protection
	ExchangeAggressive Exchange = 4
	ExchangeInfo       Exchange = 5
	ExchangeQuick      Exchange = 32
)

func (x Exchange) String() string {
	switch x {
	case ExchangeMain:
		return "MAIN_MODE"
	case ExchangeAggressive:
		return "AGGRESSIVE"
	case ExchangeInfo:
		return "INFORMATIONAL_V1"
	case ExchangeQuick:
		return "QUICK_MODE"
	}
	return fmt.Sprintf("EXCHANGE(%d)", uint8(x))
}

// Header flags (RFC 2408 §3.1).
const (
	FlagEncryption = 1
	FlagCommit     = 2
	FlagAuthOnly   = 4
)

// PayloadType is a next-payload value (RFC 2408 §3.1, RFC 3947 §3).
type PayloadType uint8

const (
	PayloadNone     PayloadType = 0
	PayloadSA       PayloadType = 1
	PayloadProposal PayloadType = 2
	PayloadTrans    PayloadType = 3
	PayloadKE       PayloadType = 4
	PayloadID       PayloadType = 5
	PayloadCert     PayloadType = 6
	PayloadCR       PayloadType = 7
	PayloadHash     PayloadType = 8
	PayloadSig      PayloadType = 9
	PayloadNonce    PayloadType = 10
	PayloadNotify   PayloadType = 11
	PayloadDelete   PayloadType = 12
	PayloadVendor   PayloadType = 13
	PayloadNATD     PayloadType = 20
	PayloadNATOA    PayloadType = 21
)

// HeaderLen is the ISAKMP header's size.
const HeaderLen = 28

const (
	// maxPayloads bounds the chain a message may carry: a Main Mode
	// message has at most a dozen (SA, KE, nonce, NAT-D, vendor IDs).
	maxPayloads = 32
	// MaxMessage is the largest message we decode.
	MaxMessage = 65535
)

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("ikev1: malformed message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// Header is the fixed ISAKMP header.
type Header struct {
	ICookie, RCookie uint64
	Next             PayloadType
	Version          uint8
	Exchange         Exchange
	Flags            uint8
	MsgID            uint32
	Length           uint32
}

// IsV1 reports whether a UDP 500 datagram is IKEv1 by its version byte
// (major version 1), which is how IKEv1 and IKEv2 share the port.
func IsV1(b []byte) bool { return len(b) >= HeaderLen && b[17]>>4 == 1 }

// DecodeHeader reads and checks the header of b.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, malformed("%d bytes, shorter than the header", len(b))
	}
	h := Header{
		ICookie: binary.BigEndian.Uint64(b[0:]), RCookie: binary.BigEndian.Uint64(b[8:]),
		Next: PayloadType(b[16]), Version: b[17], Exchange: Exchange(b[18]), Flags: b[19],
		MsgID: binary.BigEndian.Uint32(b[20:]), Length: binary.BigEndian.Uint32(b[24:]),
	}
	if h.Version>>4 != 1 {
		return Header{}, malformed("version 0x%02x", h.Version)
	}
	if h.Length != uint32(len(b)) {
		return Header{}, malformed("header length %d, datagram %d", h.Length, len(b))
	}
	return h, nil
}

func (h Header) append(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, h.ICookie)
	b = binary.BigEndian.AppendUint64(b, h.RCookie)
	b = append(b, byte(h.Next), Version, byte(h.Exchange), h.Flags)
	b = binary.BigEndian.AppendUint32(b, h.MsgID)
	return binary.BigEndian.AppendUint32(b, h.Length)
}

// Payload is one payload of a message: its type and body (the bytes after
// the 4-byte generic header). Typed views decode the body (payload.go).
type Payload struct {
	Type PayloadType
	Body []byte
}

// DecodePayloads reads a payload chain starting with type first. Bytes
// after the last payload are ignored: they are the padding of an
// encrypted message (RFC 2409 Appendix B).
func DecodePayloads(first PayloadType, b []byte) ([]Payload, error) {
	var out []Payload
	next := first
	for next != PayloadNone {
		if len(out) == maxPayloads {
			return nil, malformed("more than %d payloads", maxPayloads)
		}
		if len(b) < 4 {
			return nil, malformed("payload %d truncated", next)
		}
		if b[1] != 0 {
			return nil, malformed("payload %d: reserved byte %d", next, b[1])
		}
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n < 4 || n > len(b) {
			return nil, malformed("payload %d: length %d of %d", next, n, len(b))
		}
		out = append(out, Payload{Type: next, Body: b[4:n:n]})
		next = PayloadType(b[0])
		b = b[n:]
	}
	return out, nil
}

// AppendPayloads encodes a payload chain.
func AppendPayloads(b []byte, ps []Payload) []byte {
	for i, p := range ps {
		next := PayloadNone
		if i+1 < len(ps) {
			next = ps[i+1].Type
		}
		b = append(b, byte(next), 0)
		b = binary.BigEndian.AppendUint16(b, uint16(4+len(p.Body)))
		b = append(b, p.Body...)
	}
	return b
}

// Message is a decoded message. An encrypted one keeps its body in
// Encrypted until the engine decrypts it.
type Message struct {
	Header
	Payloads  []Payload
	Encrypted []byte
}

// Decode parses a datagram: the header, and the payloads unless the body
// is encrypted.
func Decode(b []byte) (*Message, error) {
	h, err := DecodeHeader(b)
	if err != nil {
		return nil, err
	}
	m := &Message{Header: h}
	body := b[HeaderLen:]
	if h.Flags&FlagEncryption != 0 {
		m.Encrypted = body
		return m, nil
	}
	m.Payloads, err = DecodePayloads(h.Next, body)
	return m, err
}

// Encode writes a plaintext message: header (length and next payload
// filled in) and payloads.
func Encode(h Header, ps []Payload) []byte {
	body := AppendPayloads(nil, ps)
	return appendMessage(h, ps, body)
}

func appendMessage(h Header, ps []Payload, body []byte) []byte {
	h.Next = PayloadNone
	if len(ps) > 0 {
		h.Next = ps[0].Type
	}
	h.Length = uint32(HeaderLen + len(body))
	return append(h.append(make([]byte, 0, HeaderLen+len(body))), body...)
}

// Find is the first payload of type t, or nil.
func Find(ps []Payload, t PayloadType) *Payload {
	for i := range ps {
		if ps[i].Type == t {
			return &ps[i]
		}
	}
	return nil
}

// All is every payload of type t.
func All(ps []Payload, t PayloadType) []Payload {
	var out []Payload
	for _, p := range ps {
		if p.Type == t {
			out = append(out, p)
		}
	}
	return out
}
