package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// crypter is the cipher side of one SA: the transform's IV, encryption and
// integrity over a packet laid out as SPI | seq | IV | plaintext | ICV.
// Implementations are safe for concurrent use, allocate nothing per packet
// and redact themselves under every fmt verb.
type crypter interface {
	// writeIV fills iv (IVLen bytes of the packet) for sequence number seq.
	writeIV(iv []byte, seq uint64)
	// seal encrypts pkt[prefix:prefix+n] in place and writes the ICV after
	// it; SPI, sequence number and IV are in place. seqHi is the high half
	// of the 64-bit sequence number (used under ESN only).
	seal(pkt []byte, n int, seqHi uint32)
	// open authenticates the whole packet and decrypts it in place,
	// returning the plaintext (trailer included); ok is false when the
	// ICV does not verify, and then nothing has been decrypted.
	open(pkt []byte, seqHi uint32) (plain []byte, ok bool)
}

// aeadCrypter is AES-GCM (RFC 4106) or ChaCha20-Poly1305 (RFC 7634): the
// nonce is salt || IV, the AAD SPI || seq, or SPI || seq-high || seq-low
// under ESN (RFC 4106 §5, RFC 7634 §2.3). The IV is the 64-bit sequence
// counter, unique for the key (RFC 4106 §3.1, RFC 7634 §2).
type aeadCrypter struct {
	aead cipher.AEAD
	salt [saltLen]byte
	esn  bool
}

// Format redacts under every verb: a key must not reach a log through %v
// (or %d, %x, ...) of its holder.
func (c *aeadCrypter) Format(f fmt.State, verb rune) { io.WriteString(f, "[redacted]") }

func newAEADCrypter(t Transform, keymat []byte) (*aeadCrypter, error) {
	key, salt := keymat[:len(keymat)-saltLen], keymat[len(keymat)-saltLen:]
	c := &aeadCrypter{esn: t.ESN}
	copy(c.salt[:], salt)
	var err error
	switch t.Cipher {
	case CipherAESGCM16:
		var block cipher.Block
		if block, err = aes.NewCipher(key); err == nil {
			c.aead, err = cipher.NewGCM(block)
		}
	case CipherChaCha20Poly1305:
		c.aead, err = chacha20poly1305.New(key)
	default:
		err = errors.New("not an AEAD")
	}
	if err != nil {
		// Not reachable with the lengths Transform checks; never echo the key.
		return nil, fmt.Errorf("esp: %s unavailable", t.Name())
	}
	return c, nil
}

// aeadScratch holds the nonce and the ESN AAD. On the stack they would
// escape to the heap (they pass through the cipher.AEAD interface), and the
// packet has no free room for them: the bytes in front of the ciphertext
// hold SPI || seq and the IV at once.
type aeadScratch struct {
	nonce [saltLen + IVLen]byte
	aad   [12]byte
}

var aeadScratches = sync.Pool{New: func() any { return new(aeadScratch) }}

// prepare fills s with the nonce and returns the AAD for pkt.
func (c *aeadCrypter) prepare(s *aeadScratch, pkt []byte, seqHi uint32) []byte {
	copy(s.nonce[:saltLen], c.salt[:])
	copy(s.nonce[saltLen:], pkt[HeaderLen:HeaderLen+IVLen])
	if !c.esn {
		return pkt[:HeaderLen]
	}
	copy(s.aad[:4], pkt[spiOffset:spiOffset+4])
	binary.BigEndian.PutUint32(s.aad[4:], seqHi)
	copy(s.aad[8:], pkt[seqOffset:seqOffset+4])
	return s.aad[:]
}

func (c *aeadCrypter) writeIV(iv []byte, seq uint64) { binary.BigEndian.PutUint64(iv, seq) }

func (c *aeadCrypter) seal(pkt []byte, n int, seqHi uint32) {
	s := aeadScratches.Get().(*aeadScratch)
	aad := c.prepare(s, pkt, seqHi)
	c.aead.Seal(pkt[PrefixLen:PrefixLen], s.nonce[:], pkt[PrefixLen:PrefixLen+n], aad)
	aeadScratches.Put(s)
}

func (c *aeadCrypter) open(pkt []byte, seqHi uint32) ([]byte, bool) {
	s := aeadScratches.Get().(*aeadScratch)
	aad := c.prepare(s, pkt, seqHi)
	plain, err := c.aead.Open(pkt[PrefixLen:PrefixLen], s.nonce[:], pkt[PrefixLen:], aad)
	aeadScratches.Put(s)
	return plain, err == nil
}
