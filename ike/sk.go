package ike

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrIntegrity: an SK payload failed to authenticate. Such a message is
// dropped silently (RFC 7296 §2.21.2): it may be an attacker's.
var ErrIntegrity = errors.New("ike: SK payload failed integrity check")

// ErrInnerSyntax: an SK payload authenticated and decrypted, but what it
// carries does not parse. Unlike an integrity failure this is the peer's
// genuine message, so a request gets INVALID_SYNTAX back (§2.21.2).
// Errors wrapping it also wrap ErrMalformed.
var ErrInnerSyntax = errors.New("ike: encrypted payloads do not parse")

const (
	gcmSaltLen = 4
	gcmIVLen   = 8  // RFC 5282 §3
	gcmICVLen  = 16 // ENCR_AES_GCM_16
)

// SKCipher seals and opens SK payloads for one direction of an IKE SA with
// AES-GCM and a 16-byte ICV (RFC 5282). The key material is key || salt,
// as derived for SK_ei/SK_er. The IV is a per-key counter: unique, which is
// all GCM asks (RFC 5282 §3.1). Not safe for concurrent Seal calls.
type SKCipher struct {
	aead cipher.AEAD
	salt [gcmSaltLen]byte
	iv   uint64
}

// Format keeps the key schedule out of logs.
func (c *SKCipher) Format(f fmt.State, verb rune) { f.Write([]byte("SKCipher" + redacted)) }

// NewSKCipher makes an SK cipher from 20 (AES-128) or 36 (AES-256) bytes of
// key material (key || salt).
func NewSKCipher(keymat Secret) (*SKCipher, error) {
	if len(keymat) != 16+gcmSaltLen && len(keymat) != 24+gcmSaltLen && len(keymat) != 32+gcmSaltLen {
		return nil, fmt.Errorf("ike: SK key material of %d bytes", len(keymat))
	}
	block, err := aes.NewCipher(keymat[:len(keymat)-gcmSaltLen])
	if err != nil {
		return nil, errors.New("ike: AES key rejected")
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, errors.New("ike: GCM rejected")
	}
	c := &SKCipher{aead: aead}
	copy(c.salt[:], keymat[len(keymat)-gcmSaltLen:])
	return c, nil
}

// Overhead is what the SK payload adds to its inner payloads: generic
// header, IV, pad length and ICV.
const Overhead = genericHeaderLen + gcmIVLen + 1 + gcmICVLen

// Seal builds the wire form of m with inner encrypted in a final SK
// payload. m.Payloads (normally none) go before it in the clear.
func (c *SKCipher) Seal(m *Message, inner Payloads) ([]byte, error) {
	for _, p := range m.Payloads {
		if p.Type() == PayloadSK {
			return nil, errors.New("ike: Seal given a message that already has an SK payload")
		}
	}
	plain, err := appendChain(make([]byte, 0, 256), inner)
	if err != nil {
		return nil, err
	}
	plain = append(plain, 0) // no padding: GCM needs no block alignment

	// An empty INFORMATIONAL (liveness check) is legal: the SK payload then
	// has next payload 0 and just the pad length inside.
	first := PayloadNone
	if len(inner) > 0 {
		first = inner[0].Type()
	}
	skLen := genericHeaderLen + gcmIVLen + len(plain) + gcmICVLen
	if skLen > 0xffff {
		return nil, fmt.Errorf("ike: SK payload of %d bytes", skLen)
	}
	b := m.appendHeader(make([]byte, 0, HeaderLen+64+skLen))
	Header(b).SetNextPayload(PayloadSK)
	outer := append(Payloads(nil), m.Payloads...)
	outer = append(outer, &Encrypted{First: first})
	if len(m.Payloads) > 0 {
		Header(b).SetNextPayload(m.Payloads[0].Type())
	}
	b, err = appendChain(b, outer) // SK with an empty body for now
	if err != nil {
		return nil, err
	}
	skStart := len(b) - genericHeaderLen
	binary.BigEndian.PutUint16(b[skStart+2:], uint16(skLen))
	total := skStart + skLen
	if total > MaxMessageLen {
		return nil, fmt.Errorf("ike: message of %d bytes", total)
	}
	Header(b).SetLength(uint32(total))

	c.iv++
	var nonce [gcmSaltLen + gcmIVLen]byte
	copy(nonce[:], c.salt[:])
	binary.BigEndian.PutUint64(nonce[gcmSaltLen:], c.iv)
	b = append(b, nonce[gcmSaltLen:]...)
	aad := b[:skStart+genericHeaderLen]
	return c.aead.Seal(b, nonce[:], plain, aad), nil
}

// Open authenticates and decrypts the SK payload that ends raw, whose
// decoded form is m, and returns the inner payloads.
func (c *SKCipher) Open(raw []byte, m *Message) (Payloads, error) {
	if len(m.Payloads) == 0 {
		return nil, errors.New("ike: message has no SK payload")
	}
	e, ok := m.Payloads[len(m.Payloads)-1].(*Encrypted)
	if !ok {
		return nil, errors.New("ike: message has no SK payload")
	}
	if len(e.Data) < gcmIVLen+1+gcmICVLen {
		return nil, malformed(PayloadSK, "%d bytes", len(e.Data))
	}
	skStart := len(raw) - genericHeaderLen - len(e.Data)
	if skStart < HeaderLen || len(raw) < HeaderLen || Header(raw).Length() != uint32(len(raw)) {
		return nil, errors.New("ike: raw message does not match its decoded form")
	}
	var nonce [gcmSaltLen + gcmIVLen]byte
	copy(nonce[:], c.salt[:])
	copy(nonce[gcmSaltLen:], e.Data[:gcmIVLen])
	plain, err := c.aead.Open(nil, nonce[:], e.Data[gcmIVLen:], raw[:skStart+genericHeaderLen])
	if err != nil {
		return nil, ErrIntegrity
	}
	pad := int(plain[len(plain)-1])
	if pad > len(plain)-1 {
		return nil, fmt.Errorf("%w: %w", ErrInnerSyntax, malformed(PayloadSK, "pad length %d in %d bytes", pad, len(plain)))
	}
	n := len(m.Payloads) - 1
	inner, err := decodeChain(e.First, plain[:len(plain)-1-pad], false, &n)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInnerSyntax, err)
	}
	return inner, nil
}
