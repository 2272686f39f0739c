// Package esp is the ESP data plane of gresec: security associations
// (RFC 4303 transport mode) that seal and open packets in place, the
// RFC 6479 anti-replay window, and the SA database a tunnel looks inbound
// SAs up in.
//
// Transforms (transform.go): AES-GCM-16 (RFC 4106) and ChaCha20-Poly1305
// (RFC 7634), AEADs with an 8-byte IV and a 16-byte ICV; AES-CBC (RFC 3602)
// with a 16-byte IV and HMAC-SHA1-96 (RFC 2404) or HMAC-SHA2-256-128,
// -384-192, -512-256 (RFC 4868). Each may use extended sequence numbers
// (RFC 4303 §2.2.1): a 64-bit counter of which the low half is sent.
//
// An ESP packet, as it follows the outer IP header:
//
//	SPI(4) | seq(4) | IV(8 or 16) | ciphertext[payload | pad | padlen(1) | next(1)] | ICV(12..32)
//
// AEAD key material is key || salt, the layout of Linux `ip xfrm ... aead
// 'rfc4106(gcm(aes))'` (or 'rfc7539esp(chacha20,poly1305)'), of IKEv2
// KEYMAT and of Wireshark's ESP SA table; the nonce is salt || IV and the
// AAD SPI || seq (SPI || seq-high || seq-low under ESN). AES-CBC key
// material is the AES key followed by the HMAC key, KEYMAT's order.
//
// The constants below without a transform in their name describe the
// AEAD layout (AES-GCM, the default transform); Transform has the figures
// of each transform.
package esp

import "encoding/binary"

const (
	HeaderLen  = 8                 // SPI + sequence number
	IVLen      = 8                 // explicit IV of RFC 4106
	ICVLen     = 16                // AES-GCM-16 tag
	PrefixLen  = HeaderLen + IVLen // bytes Seal writes in front of the payload
	TrailerLen = 2                 // pad length + next header
	// MaxSuffixLen is the most bytes Seal appends after the payload, for
	// any transform: AES-CBC's 15 bytes of padding, the trailer and
	// HMAC-SHA2-512-256's 32-byte ICV.
	MaxSuffixLen  = maxBlockLen - 1 + TrailerLen + maxICVLen
	NextHeaderGRE = 47
	// MinLen is the shortest well-formed AEAD ESP packet: an empty
	// payload still has its trailer and ICV.
	MinLen = PrefixLen + TrailerLen + ICVLen

	// MaxSeq is the last sequence number an SA without ESN may send
	// (RFC 4303 §3.3.3: the counter must not cycle).
	MaxSeq = 1<<32 - 1
	// MaxSeqESN is the last one an SA with ESN may send.
	MaxSeqESN = 1<<64 - 1
)

// Overhead is the exact number of bytes AES-GCM's ESP adds to a payload of
// n bytes: the prefix, the padding that 4-byte aligns the trailer, the
// trailer and the ICV. Transform.Overhead is the same for any transform.
func Overhead(n int) int { return DefaultTransform.Overhead(n) }

// Header is a view of the first PrefixLen bytes of an ESP packet.
type Header []byte

const (
	spiOffset = 0
	seqOffset = 4
	ivOffset  = 8
)

// SPI is the security parameters index.
func (h Header) SPI() uint32 { return binary.BigEndian.Uint32(h[spiOffset:]) }

// Seq is the (low 32 bits of the) sequence number.
func (h Header) Seq() uint32 { return binary.BigEndian.Uint32(h[seqOffset:]) }

// IV is the first 8 bytes of the explicit IV: the whole IV of an AEAD
// transform, which Seal makes the 64-bit sequence counter.
func (h Header) IV() uint64 { return binary.BigEndian.Uint64(h[ivOffset:]) }

// SPIOf returns the SPI of an ESP packet; ok is false when pkt is too short
// to hold an SPI and a sequence number.
func SPIOf(pkt []byte) (spi uint32, ok bool) {
	if len(pkt) < HeaderLen {
		return 0, false
	}
	return Header(pkt).SPI(), true
}
