package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/crypto/cryptobyte"
)

// Limits on what a decoder accepts. Every element consumes input bytes, so
// memory is bounded by the message anyway; the counts bound the work a
// hostile peer can make us do per message and keep logs readable.
const (
	maxPayloads      = 64
	maxProposals     = 32
	maxTransforms    = 64
	maxAttributes    = 8
	maxSelectors     = 32
	maxDeleteSPIs    = 256
	maxCPAttributes  = 64
	minNonceLen      = 16
	maxNonceLen      = 256
	maxSPILen        = 8
	maxKEDataLen     = 1024 // MODP 8192 is 1024 bytes: nothing we speak is bigger
	maxNotifyDataLen = 4096
)

// ErrMalformed is wrapped by every decoding error: the peer should get
// INVALID_SYNTAX (RFC 7296 §2.21) or, for a request we cannot attribute,
// silence.
var ErrMalformed = errors.New("ike: malformed message")

// SyntaxError says which payload failed to decode and why.
type SyntaxError struct {
	Payload PayloadType
	Reason  string
}

func (e *SyntaxError) Error() string {
	return "ike: malformed " + e.Payload.String() + " payload: " + e.Reason
}

func (e *SyntaxError) Unwrap() error { return ErrMalformed }

func malformed(p PayloadType, format string, args ...any) error {
	return &SyntaxError{Payload: p, Reason: fmt.Sprintf(format, args...)}
}

// Payload is one decoded IKE payload. The concrete types are *SA, *KE,
// *Nonce, *IDi, *IDr, *Auth, *Notify, *Delete, *Vendor, *TSi, *TSr, *CP,
// *Encrypted and *Unknown.
type Payload interface {
	Type() PayloadType
	// appendBody appends the payload body (after the generic header).
	appendBody(b []byte) []byte
}

// clone copies b, keeping the "empty is nil" convention so that decoded
// values compare equal with reflect.DeepEqual after a round trip, and so
// that no decoded value aliases the caller's buffer.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// DecodePayload decodes one payload body of type t (the bytes after the
// generic payload header). Types this package does not parse come back as
// *Unknown. SK is not accepted here: it only makes sense inside a message.
func DecodePayload(t PayloadType, body []byte) (Payload, error) {
	return decodeBody(t, body, false)
}

func decodeBody(t PayloadType, body []byte, critical bool) (Payload, error) {
	switch t {
	case PayloadSA:
		return decodeSA(body)
	case PayloadKE:
		return decodeKE(body)
	case PayloadNonce:
		if len(body) < minNonceLen || len(body) > maxNonceLen {
			return nil, malformed(t, "nonce of %d bytes, want %d..%d", len(body), minNonceLen, maxNonceLen)
		}
		return &Nonce{Data: clone(body)}, nil
	case PayloadIDi, PayloadIDr:
		id, err := decodeID(t, body)
		if err != nil {
			return nil, err
		}
		if t == PayloadIDi {
			return &IDi{id}, nil
		}
		return &IDr{id}, nil
	case PayloadAUTH:
		return decodeAuth(body)
	case PayloadNotify:
		return decodeNotify(body)
	case PayloadDelete:
		return decodeDelete(body)
	case PayloadVendor:
		return &Vendor{Data: clone(body)}, nil
	case PayloadTSi, PayloadTSr:
		ts, err := decodeTS(t, body)
		if err != nil {
			return nil, err
		}
		if t == PayloadTSi {
			return &TSi{ts}, nil
		}
		return &TSr{ts}, nil
	case PayloadCP:
		return decodeCP(body)
	case PayloadSK:
		return nil, malformed(t, "SK payload outside a message")
	}
	return &Unknown{PayloadType: t, Critical: critical, Data: clone(body)}, nil
}

// EncodePayload returns the body of p (without the generic header).
func EncodePayload(p Payload) []byte { return p.appendBody(nil) }

// --- KE (§3.4) ---

// KE is the Key Exchange payload. Data is the fixed-length public value:
// never a big.Int, whose encoding would drop leading zero bytes.
type KE struct {
	Group uint16
	Data  []byte
}

func (*KE) Type() PayloadType { return PayloadKE }
func (k *KE) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, k.Group)
	b = append(b, 0, 0)
	return append(b, k.Data...)
}

func decodeKE(body []byte) (*KE, error) {
	if len(body) < 4 {
		return nil, malformed(PayloadKE, "%d bytes, want at least 4", len(body))
	}
	if len(body)-4 > maxKEDataLen {
		return nil, malformed(PayloadKE, "key exchange data of %d bytes", len(body)-4)
	}
	return &KE{Group: binary.BigEndian.Uint16(body), Data: clone(body[4:])}, nil
}

// --- Nonce (§3.9) ---

// Nonce is the Ni/Nr payload (16 to 256 bytes).
type Nonce struct{ Data []byte }

func (*Nonce) Type() PayloadType            { return PayloadNonce }
func (n *Nonce) appendBody(b []byte) []byte { return append(b, n.Data...) }

// --- ID (§3.5) ---

// ID is an identity: its type and data as carried in IDi/IDr.
type ID struct {
	Type IDType
	Data []byte
}

// AddrID is ID_IPV4_ADDR or ID_IPV6_ADDR for a.
func AddrID(a netip.Addr) ID {
	a = a.Unmap()
	if a.Is4() {
		return ID{Type: ID_IPV4_ADDR, Data: a.AsSlice()}
	}
	return ID{Type: ID_IPV6_ADDR, Data: a.AsSlice()}
}

// FQDNID is an ID_FQDN.
func FQDNID(name string) ID { return ID{Type: ID_FQDN, Data: []byte(name)} }

// EmailID is an ID_RFC822_ADDR.
func EmailID(addr string) ID { return ID{Type: ID_RFC822_ADDR, Data: []byte(addr)} }

// KeyID is an ID_KEY_ID (opaque bytes).
func KeyID(b []byte) ID { return ID{Type: ID_KEY_ID, Data: clone(b)} }

// ParseID reads an identity the way strongSwan's configuration does: an IP
// address, "@fqdn" or a bare name for ID_FQDN, "user@host" for
// ID_RFC822_ADDR, "@#hex" for ID_KEY_ID.
func ParseID(s string) (ID, error) {
	if s == "" {
		return ID{}, errors.New("ike: empty identity")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return AddrID(a), nil
	}
	if len(s) > 2 && s[:2] == "@#" {
		var out []byte
		h := s[2:]
		if len(h)%2 != 0 {
			return ID{}, errors.New("ike: key id needs an even number of hex digits")
		}
		for i := 0; i < len(h); i += 2 {
			var v byte
			if _, err := fmt.Sscanf(h[i:i+2], "%02x", &v); err != nil {
				return ID{}, errors.New("ike: key id is not hex")
			}
			out = append(out, v)
		}
		return KeyID(out), nil
	}
	if s[0] == '@' {
		return FQDNID(s[1:]), nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '@' {
			return EmailID(s), nil
		}
	}
	return FQDNID(s), nil
}

// Equal compares type and data.
func (id ID) Equal(o ID) bool { return id.Type == o.Type && string(id.Data) == string(o.Data) }

func (id ID) String() string {
	switch id.Type {
	case ID_IPV4_ADDR, ID_IPV6_ADDR:
		if a, ok := netip.AddrFromSlice(id.Data); ok {
			return a.String()
		}
	case ID_FQDN, ID_RFC822_ADDR:
		return fmt.Sprintf("%q", id.Data)
	}
	return fmt.Sprintf("id%d:%x", id.Type, id.Data)
}

func (id ID) appendBody(b []byte) []byte {
	b = append(b, byte(id.Type), 0, 0, 0)
	return append(b, id.Data...)
}

func decodeID(t PayloadType, body []byte) (ID, error) {
	if len(body) < 4 {
		return ID{}, malformed(t, "%d bytes, want at least 4", len(body))
	}
	id := ID{Type: IDType(body[0]), Data: clone(body[4:])}
	switch id.Type {
	case ID_IPV4_ADDR:
		if len(id.Data) != 4 {
			return ID{}, malformed(t, "ID_IPV4_ADDR of %d bytes", len(id.Data))
		}
	case ID_IPV6_ADDR:
		if len(id.Data) != 16 {
			return ID{}, malformed(t, "ID_IPV6_ADDR of %d bytes", len(id.Data))
		}
	}
	return id, nil
}

// IDi is the initiator's identification payload.
type IDi struct{ ID }

// IDr is the responder's identification payload.
type IDr struct{ ID }

func (*IDi) Type() PayloadType { return PayloadIDi }
func (*IDr) Type() PayloadType { return PayloadIDr }

// --- AUTH (§3.8) ---

// Auth is the Authentication payload.
type Auth struct {
	Method AuthMethod
	Data   []byte
}

func (*Auth) Type() PayloadType { return PayloadAUTH }
func (a *Auth) appendBody(b []byte) []byte {
	b = append(b, byte(a.Method), 0, 0, 0)
	return append(b, a.Data...)
}

func decodeAuth(body []byte) (*Auth, error) {
	if len(body) < 4 {
		return nil, malformed(PayloadAUTH, "%d bytes, want at least 4", len(body))
	}
	return &Auth{Method: AuthMethod(body[0]), Data: clone(body[4:])}, nil
}

// --- Notify (§3.10) ---

// Notify is a Notify payload. SPI is empty, 4 bytes (ESP/AH) or 8 (IKE).
type Notify struct {
	Protocol ProtocolID
	SPI      []byte
	Kind     NotifyType
	Data     []byte
}

func (*Notify) Type() PayloadType { return PayloadNotify }
func (n *Notify) appendBody(b []byte) []byte {
	b = append(b, byte(n.Protocol), byte(len(n.SPI)))
	b = binary.BigEndian.AppendUint16(b, uint16(n.Kind))
	b = append(b, n.SPI...)
	return append(b, n.Data...)
}

func decodeNotify(body []byte) (*Notify, error) {
	s := cryptobyte.String(body)
	var proto, spiLen uint8
	var kind uint16
	var spi []byte
	if !s.ReadUint8(&proto) || !s.ReadUint8(&spiLen) || !s.ReadUint16(&kind) {
		return nil, malformed(PayloadNotify, "%d bytes, want at least 4", len(body))
	}
	if spiLen > maxSPILen || !s.ReadBytes(&spi, int(spiLen)) {
		return nil, malformed(PayloadNotify, "SPI size %d in %d bytes", spiLen, len(body))
	}
	if len(s) > maxNotifyDataLen {
		return nil, malformed(PayloadNotify, "%d bytes of notification data", len(s))
	}
	return &Notify{Protocol: ProtocolID(proto), SPI: clone(spi), Kind: NotifyType(kind), Data: clone(s)}, nil
}

// --- Delete (§3.11) ---

// Delete asks the peer to delete SAs: the IKE SA itself (Protocol IKE, no
// SPIs) or CHILD SAs by the SPIs the sender receives on.
type Delete struct {
	Protocol ProtocolID
	SPIs     []uint32
}

func (*Delete) Type() PayloadType { return PayloadDelete }
func (d *Delete) appendBody(b []byte) []byte {
	spiLen := byte(4)
	if d.Protocol == ProtoIKE {
		spiLen = 0
	}
	b = append(b, byte(d.Protocol), spiLen)
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.SPIs)))
	for _, spi := range d.SPIs {
		b = binary.BigEndian.AppendUint32(b, spi)
	}
	return b
}

func decodeDelete(body []byte) (*Delete, error) {
	s := cryptobyte.String(body)
	var proto, spiLen uint8
	var n uint16
	if !s.ReadUint8(&proto) || !s.ReadUint8(&spiLen) || !s.ReadUint16(&n) {
		return nil, malformed(PayloadDelete, "%d bytes, want at least 4", len(body))
	}
	d := &Delete{Protocol: ProtocolID(proto)}
	switch d.Protocol {
	case ProtoIKE:
		// §3.11: SPI size zero and no SPIs; the header names the SA.
		if spiLen != 0 || n != 0 || len(s) != 0 {
			return nil, malformed(PayloadDelete, "IKE delete with SPI size %d and %d SPIs", spiLen, n)
		}
		return d, nil
	case ProtoAH, ProtoESP:
		if spiLen != 4 {
			return nil, malformed(PayloadDelete, "SPI size %d for %v", spiLen, d.Protocol)
		}
	default:
		return nil, malformed(PayloadDelete, "protocol %d", proto)
	}
	if n > maxDeleteSPIs || len(s) != int(n)*4 {
		return nil, malformed(PayloadDelete, "%d SPIs in %d bytes", n, len(s))
	}
	if n > 0 {
		d.SPIs = make([]uint32, n)
		for i := range d.SPIs {
			d.SPIs[i] = binary.BigEndian.Uint32(s[4*i:])
		}
	}
	return d, nil
}

// --- Vendor ID (§3.12) ---

// Vendor is a Vendor ID payload.
type Vendor struct{ Data []byte }

func (*Vendor) Type() PayloadType            { return PayloadVendor }
func (v *Vendor) appendBody(b []byte) []byte { return append(b, v.Data...) }

// --- CP (§3.15) ---

// CP is a Configuration payload. We never request configuration (host to
// host transport mode), but a peer may send one and it must decode.
type CP struct {
	CfgType    uint8
	Attributes []CPAttribute
}

// CPAttribute is one configuration attribute; the reserved top bit of the
// type is dropped.
type CPAttribute struct {
	Type  uint16
	Value []byte
}

func (*CP) Type() PayloadType { return PayloadCP }
func (c *CP) appendBody(b []byte) []byte {
	b = append(b, c.CfgType, 0, 0, 0)
	for _, a := range c.Attributes {
		b = binary.BigEndian.AppendUint16(b, a.Type&0x7fff)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
		b = append(b, a.Value...)
	}
	return b
}

func decodeCP(body []byte) (*CP, error) {
	if len(body) < 4 {
		return nil, malformed(PayloadCP, "%d bytes, want at least 4", len(body))
	}
	c := &CP{CfgType: body[0]}
	s := cryptobyte.String(body[4:])
	for !s.Empty() {
		if len(c.Attributes) == maxCPAttributes {
			return nil, malformed(PayloadCP, "more than %d attributes", maxCPAttributes)
		}
		var typ uint16
		var val cryptobyte.String
		if !s.ReadUint16(&typ) || !s.ReadUint16LengthPrefixed(&val) {
			return nil, malformed(PayloadCP, "truncated attribute")
		}
		c.Attributes = append(c.Attributes, CPAttribute{Type: typ & 0x7fff, Value: clone(val)})
	}
	return c, nil
}

// --- SK (§3.14, RFC 5282) ---

// Encrypted is the SK payload as it travels: First names the first inner
// payload, Data is IV || ciphertext || ICV. Open and Seal live in sk.go.
type Encrypted struct {
	First PayloadType
	Data  []byte
}

func (*Encrypted) Type() PayloadType            { return PayloadSK }
func (e *Encrypted) appendBody(b []byte) []byte { return append(b, e.Data...) }

// --- anything else ---

// Unknown keeps a payload we do not parse (CERT, CERTREQ, EAP, private
// types). A Critical one of a type we do not know makes the message fail
// with UNSUPPORTED_CRITICAL_PAYLOAD (§2.5).
type Unknown struct {
	PayloadType PayloadType
	Critical    bool
	Data        []byte
}

func (u *Unknown) Type() PayloadType          { return u.PayloadType }
func (u *Unknown) appendBody(b []byte) []byte { return append(b, u.Data...) }

// understood reports payload types RFC 7296 defines: for these the critical
// bit is ignored (§3.2) even when we only keep the bytes.
func understood(t PayloadType) bool { return t >= PayloadSA && t <= PayloadEAP }
