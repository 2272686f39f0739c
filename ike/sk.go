package ike

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
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

// SKCipher seals and opens SK payloads (RFC 7296 §3.14) for one direction
// of an IKE SA. Not safe for concurrent Seal calls.
type SKCipher interface {
	// Seal builds the wire form of m with inner encrypted in a final SK
	// payload. m.Payloads (normally none) go before it in the clear.
	Seal(m *Message, inner Payloads) ([]byte, error)
	// Open authenticates and decrypts the SK payload that ends raw, whose
	// decoded form is m, and returns the inner payloads.
	Open(raw []byte, m *Message) (Payloads, error)
}

// NewSK makes the SK cipher of suite s from one direction's keys: enc is
// SK_e (key || salt for the AEAD ciphers), integ is SK_a (nil for AEAD).
// r supplies CBC's unpredictable IVs (nil: crypto/rand).
func NewSK(s Suite, enc, integ Secret, r io.Reader) (SKCipher, error) {
	if len(enc) != s.KeyLen() || len(integ) != s.IntegKeyLen() {
		return nil, fmt.Errorf("ike: SK key material of %d+%d bytes for %s", len(enc), len(integ), s.Transform())
	}
	switch s.Encr {
	case ENCR_AES_GCM_16:
		return NewSKCipher(enc)
	case ENCR_CHACHA20_POLY1305:
		aead, err := chacha20poly1305.New(enc[:chacha20poly1305.KeySize])
		if err != nil {
			return nil, errors.New("ike: ChaCha20-Poly1305 key rejected")
		}
		c := &aeadSK{aead: aead}
		copy(c.salt[:], enc[chacha20poly1305.KeySize:])
		return c, nil
	case ENCR_AES_CBC:
		block, err := aes.NewCipher(enc)
		if err != nil {
			return nil, errors.New("ike: AES key rejected")
		}
		if r == nil {
			r = rand.Reader
		}
		alg := integAlgs[s.Integ]
		return &cbcSK{block: block, mac: hmac.New(alg.prf.hash(), integ), icvLen: alg.icvLen, rand: r}, nil
	}
	return nil, fmt.Errorf("ike: no SK cipher for %s", s.EncrName())
}

// aeadSK is AES-GCM with a 16-byte ICV (RFC 5282) or ChaCha20-Poly1305
// (RFC 7634 §4): key || 4-byte salt, an 8-byte IV that is a per-key
// counter (unique, which is all either asks), AAD = the message up to and
// including the SK payload's generic header.
type aeadSK struct {
	aead cipher.AEAD
	salt [gcmSaltLen]byte
	iv   uint64
}

// Format keeps the key schedule out of logs.
func (c *aeadSK) Format(f fmt.State, verb rune) { f.Write([]byte("SKCipher" + redacted)) }

// NewSKCipher makes an AES-GCM SK cipher from 20, 28 or 36 bytes of key
// material (key || salt).
func NewSKCipher(keymat Secret) (SKCipher, error) {
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
	c := &aeadSK{aead: aead}
	copy(c.salt[:], keymat[len(keymat)-gcmSaltLen:])
	return c, nil
}

// Overhead is what an AEAD SK payload adds to its inner payloads: generic
// header, IV, pad length and ICV.
const Overhead = genericHeaderLen + gcmIVLen + 1 + gcmICVLen

// frame encodes m with an SK payload of skLen bytes last and returns the
// bytes up to the end of the SK payload's generic header, where the IV
// goes next.
func frame(m *Message, first PayloadType, skLen int) ([]byte, error) {
	for _, p := range m.Payloads {
		if p.Type() == PayloadSK {
			return nil, errors.New("ike: Seal given a message that already has an SK payload")
		}
	}
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
	b, err := appendChain(b, outer) // SK with an empty body for now
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
	return b, nil
}

// firstType is the type of the first inner payload (an empty
// INFORMATIONAL, a liveness check, has none).
func firstType(inner Payloads) PayloadType {
	if len(inner) > 0 {
		return inner[0].Type()
	}
	return PayloadNone
}

// sealed returns the SK payload's body and where it starts in raw.
func sealed(raw []byte, m *Message) (body []byte, skStart int, e *Encrypted, err error) {
	if len(m.Payloads) == 0 {
		return nil, 0, nil, errors.New("ike: message has no SK payload")
	}
	e, ok := m.Payloads[len(m.Payloads)-1].(*Encrypted)
	if !ok {
		return nil, 0, nil, errors.New("ike: message has no SK payload")
	}
	skStart = len(raw) - genericHeaderLen - len(e.Data)
	if skStart < HeaderLen || len(raw) < HeaderLen || Header(raw).Length() != uint32(len(raw)) {
		return nil, 0, nil, errors.New("ike: raw message does not match its decoded form")
	}
	return e.Data, skStart, e, nil
}

// inner decodes the decrypted plaintext: payloads, padding, pad length.
func innerOf(plain []byte, e *Encrypted, m *Message) (Payloads, error) {
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

func (c *aeadSK) Seal(m *Message, inner Payloads) ([]byte, error) {
	plain, err := appendChain(make([]byte, 0, 256), inner)
	if err != nil {
		return nil, err
	}
	plain = append(plain, 0) // no padding: no block alignment needed
	b, err := frame(m, firstType(inner), genericHeaderLen+gcmIVLen+len(plain)+gcmICVLen)
	if err != nil {
		return nil, err
	}
	skStart := len(b) - genericHeaderLen
	c.iv++
	var nonce [gcmSaltLen + gcmIVLen]byte
	copy(nonce[:], c.salt[:])
	binary.BigEndian.PutUint64(nonce[gcmSaltLen:], c.iv)
	b = append(b, nonce[gcmSaltLen:]...)
	aad := b[:skStart+genericHeaderLen]
	return c.aead.Seal(b, nonce[:], plain, aad), nil
}

func (c *aeadSK) Open(raw []byte, m *Message) (Payloads, error) {
	data, skStart, e, err := sealed(raw, m)
	if err != nil {
		return nil, err
	}
	if len(data) < gcmIVLen+1+gcmICVLen {
		return nil, malformed(PayloadSK, "%d bytes", len(data))
	}
	var nonce [gcmSaltLen + gcmIVLen]byte
	copy(nonce[:], c.salt[:])
	copy(nonce[gcmSaltLen:], data[:gcmIVLen])
	plain, err := c.aead.Open(nil, nonce[:], data[gcmIVLen:], raw[:skStart+genericHeaderLen])
	if err != nil {
		return nil, ErrIntegrity
	}
	return innerOf(plain, e, m)
}

// cbcSK is AES-CBC with a truncated HMAC (RFC 7296 §3.14, RFC 3602, RFC
// 2404, RFC 4868): a random IV, padding to the block, and an ICV over the
// whole message up to the ICV, checked before anything is decrypted.
type cbcSK struct {
	block  cipher.Block
	mac    hash.Hash
	icvLen int
	rand   io.Reader
}

// Format keeps the key schedule out of logs.
func (c *cbcSK) Format(f fmt.State, verb rune) { f.Write([]byte("SKCipher" + redacted)) }

func (c *cbcSK) icv(b []byte) []byte {
	c.mac.Reset()
	c.mac.Write(b)
	return c.mac.Sum(nil)[:c.icvLen]
}

func (c *cbcSK) Seal(m *Message, inner Payloads) ([]byte, error) {
	plain, err := appendChain(make([]byte, 0, 256), inner)
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - (len(plain)+1)%aes.BlockSize
	if pad == aes.BlockSize {
		pad = 0
	}
	plain = append(plain, make([]byte, pad)...)
	plain = append(plain, byte(pad))
	b, err := frame(m, firstType(inner), genericHeaderLen+aes.BlockSize+len(plain)+c.icvLen)
	if err != nil {
		return nil, err
	}
	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(c.rand, iv); err != nil {
		return nil, err
	}
	b = append(b, iv...)
	start := len(b)
	b = append(b, plain...)
	cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(b[start:], b[start:])
	return append(b, c.icv(b)...), nil
}

func (c *cbcSK) Open(raw []byte, m *Message) (Payloads, error) {
	data, _, e, err := sealed(raw, m)
	if err != nil {
		return nil, err
	}
	ct := len(data) - aes.BlockSize - c.icvLen
	if ct < aes.BlockSize || ct%aes.BlockSize != 0 {
		return nil, malformed(PayloadSK, "%d bytes", len(data))
	}
	if !hmac.Equal(c.icv(raw[:len(raw)-c.icvLen]), raw[len(raw)-c.icvLen:]) {
		return nil, ErrIntegrity
	}
	plain := make([]byte, ct)
	cipher.NewCBCDecrypter(c.block, data[:aes.BlockSize]).CryptBlocks(plain, data[aes.BlockSize:aes.BlockSize+ct])
	return innerOf(plain, e, m)
}
