// Package esp is the ESP data plane of gresec: AES-GCM-16 security
// associations (RFC 4303 transport mode with RFC 4106) that seal and open
// packets in place, the RFC 6479 anti-replay window, and the SA database a
// tunnel looks inbound SAs up in.
//
// An ESP packet, as it follows the outer IP header:
//
//	SPI(4) | seq(4) | IV(8) | ciphertext[payload | pad | padlen(1) | next(1)] | ICV(16)
//
// Key material is key || salt, the layout of Linux `ip xfrm ... aead
// 'rfc4106(gcm(aes))'`, of IKEv2 KEYMAT for ENCR_AES_GCM_16 and of
// Wireshark's ESP SA table. The nonce is salt || IV and the AAD is SPI || seq.
//
// Extended sequence numbers are not negotiated yet, but sequence numbers are
// carried as uint64 throughout (counter, IV, replay window) so that ESN only
// changes the AAD (SPI || seq-high || seq-low, RFC 4106 §5) and the limit.
package esp

import "encoding/binary"

const (
	HeaderLen     = 8                       // SPI + sequence number
	IVLen         = 8                       // explicit IV of RFC 4106
	ICVLen        = 16                      // AES-GCM-16 tag
	PrefixLen     = HeaderLen + IVLen       // bytes Seal writes in front of the payload
	TrailerLen    = 2                       // pad length + next header
	MaxSuffixLen  = 3 + TrailerLen + ICVLen // most bytes Seal appends after the payload
	NextHeaderGRE = 47
	// MinLen is the shortest well-formed ESP packet: an empty payload
	// still has its trailer and ICV.
	MinLen = PrefixLen + TrailerLen + ICVLen

	// MaxSeq is the last sequence number an SA without ESN may send
	// (RFC 4303 §3.3.3: the counter must not cycle).
	MaxSeq = 1<<32 - 1

	saltLen  = 4
	nonceLen = saltLen + IVLen
)

// Overhead is the exact number of bytes ESP adds to a payload of n bytes:
// the prefix, the padding that 4-byte aligns the trailer, the trailer and
// the ICV.
func Overhead(n int) int {
	return PrefixLen + padLen(n) + TrailerLen + ICVLen
}

// padLen is how much padding Seal adds so that payload, padding and
// trailer end on a 4-byte boundary (RFC 4303 §2.4; GCM itself needs none).
func padLen(n int) int {
	return -(n + TrailerLen) & 3
}

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

// IV is the explicit IV; Seal makes it the 64-bit sequence counter.
func (h Header) IV() uint64 { return binary.BigEndian.Uint64(h[ivOffset:]) }

func (h Header) put(spi, seq uint32, iv uint64) {
	binary.BigEndian.PutUint32(h[spiOffset:], spi)
	binary.BigEndian.PutUint32(h[seqOffset:], seq)
	binary.BigEndian.PutUint64(h[ivOffset:], iv)
}

// SPIOf returns the SPI of an ESP packet; ok is false when pkt is too short
// to hold an SPI and a sequence number.
func SPIOf(pkt []byte) (spi uint32, ok bool) {
	if len(pkt) < HeaderLen {
		return 0, false
	}
	return Header(pkt).SPI(), true
}
