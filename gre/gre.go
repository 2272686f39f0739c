// Package gre encapsulates and decapsulates GRE (RFC 2784) with the key
// and sequence number extensions of RFC 2890.
//
// The header, bit 0 first:
//
//	|C|R|K|S|s|Rec|  reserved0  | Ver |        protocol type          |
//	|      checksum (if C)      |       reserved1 (if C)              |
//	|                          key (if K)                               |
//	|                     sequence number (if S)                        |
//
// R, s and the first recursion bit are RFC 1701 leftovers that RFC 2784
// §2.3 says a receiver must discard; bits 6-12 it must ignore.
package gre

import (
	"encoding/binary"
	"errors"
	"math/bits"
)

// HeaderLen is the basic header: flags/version and protocol type.
const HeaderLen = 4

// MaxHeaderLen is the longest header Encap writes or Decap accepts.
const MaxHeaderLen = HeaderLen + 12

// Protocol types carried (EtherType values).
const (
	ProtoIPv4 = 0x0800
	ProtoIPv6 = 0x86DD
)

// Flag bits of the first 16-bit word (as Header.Flags returns them).
const (
	FlagChecksum = 0x8000 // C: checksum and reserved1 present
	FlagRouting  = 0x4000 // R: RFC 1701 routing; receivers discard
	FlagKey      = 0x2000 // K: key present (RFC 2890)
	FlagSequence = 0x1000 // S: sequence number present (RFC 2890)

	// flagsDiscard are the other RFC 1701 bits RFC 2784 receivers must
	// discard: strict source route and the top recursion control bit.
	flagsDiscard = 0x0c00
	versionMask  = 0x0007
)

// Errors are values so that a failed Decap allocates nothing.
var (
	ErrShort    = errors.New("gre: packet shorter than its header")
	ErrVersion  = errors.New("gre: version is not 0")
	ErrRouting  = errors.New("gre: routing present (RFC 1701)")
	ErrReserved = errors.New("gre: RFC 1701 source route or recursion bits set")
	ErrChecksum = errors.New("gre: checksum mismatch")
)

// Header is a view of a GRE header. Its getters never panic: on a view too
// short for a field they return zero, so only a Decap'ed header (or one
// Encap wrote) gives meaningful answers.
type Header []byte

func (h Header) word0() uint16 {
	if len(h) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(h)
}

// Flags is the first 16 bits without the version: the Flag* bits and the
// reserved ones.
func (h Header) Flags() uint16 { return h.word0() &^ versionMask }

// Version is the 3-bit version field (0 for GRE; 1 is PPTP's).
func (h Header) Version() int { return int(h.word0() & versionMask) }

// Protocol is the payload's EtherType.
func (h Header) Protocol() uint16 {
	if len(h) < HeaderLen {
		return 0
	}
	return binary.BigEndian.Uint16(h[2:])
}

// HasChecksum, HasKey and HasSequence report the optional fields.
func (h Header) HasChecksum() bool { return h.word0()&FlagChecksum != 0 }
func (h Header) HasKey() bool      { return h.word0()&FlagKey != 0 }
func (h Header) HasSequence() bool { return h.word0()&FlagSequence != 0 }

// Len is the header length its flags announce.
func (h Header) Len() int {
	n := HeaderLen
	if h.HasChecksum() {
		n += 4
	}
	if h.HasKey() {
		n += 4
	}
	if h.HasSequence() {
		n += 4
	}
	return n
}

// Checksum is the checksum field, 0 if absent.
func (h Header) Checksum() uint16 {
	if !h.HasChecksum() || len(h) < HeaderLen+4 {
		return 0
	}
	return binary.BigEndian.Uint16(h[HeaderLen:])
}

// Key is the key field (RFC 2890), 0 if absent.
func (h Header) Key() uint32 {
	p := HeaderLen
	if h.HasChecksum() {
		p += 4
	}
	if !h.HasKey() || len(h) < p+4 {
		return 0
	}
	return binary.BigEndian.Uint32(h[p:])
}

// Sequence is the sequence number field (RFC 2890), 0 if absent.
func (h Header) Sequence() uint32 {
	p := h.Len() - 4
	if !h.HasSequence() || len(h) < p+4 {
		return 0
	}
	return binary.BigEndian.Uint32(h[p:])
}

// Options are what an encapsulator puts in its headers.
type Options struct {
	Key      uint32
	UseKey   bool
	Sequence bool
	Checksum bool
}

// HeaderLenFor is the header length Encap writes for o.
func HeaderLenFor(o Options) int {
	n := HeaderLen
	if o.Checksum {
		n += 4
	}
	if o.UseKey {
		n += 4
	}
	if o.Sequence {
		n += 4
	}
	return n
}

// Encap writes the GRE header into buf[off-HeaderLenFor(o):off], in front
// of the payload buf[off:off+n], and returns where the header starts. seq
// is written when o.Sequence. The caller owns the layout: Encap panics if
// off leaves less than HeaderLenFor(o) bytes of room or off+n passes the
// end of buf, as a slice expression would.
func Encap(buf []byte, off, n int, proto uint16, o Options, seq uint32) (start int) {
	var f uint16
	if o.Checksum {
		f |= FlagChecksum
	}
	if o.UseKey {
		f |= FlagKey
	}
	if o.Sequence {
		f |= FlagSequence
	}
	start = off - HeaderLenFor(o)
	pkt := buf[start : off+n]
	binary.BigEndian.PutUint16(pkt[0:], f)
	binary.BigEndian.PutUint16(pkt[2:], proto)
	p := HeaderLen
	if o.Checksum {
		// Zero while summing; reserved1 stays zero (RFC 2784 §2.5).
		binary.BigEndian.PutUint32(pkt[p:], 0)
		p += 4
	}
	if o.UseKey {
		binary.BigEndian.PutUint32(pkt[p:], o.Key)
		p += 4
	}
	if o.Sequence {
		binary.BigEndian.PutUint32(pkt[p:], seq)
	}
	if o.Checksum {
		binary.BigEndian.PutUint16(pkt[HeaderLen:], ^checksum(pkt))
	}
	return start
}

// Info holds the optional fields of a decapsulated header.
type Info struct {
	HasKey      bool
	Key         uint32
	HasSequence bool
	Sequence    uint32
	HasChecksum bool // and it verified
}

// Decap parses the GRE header at the start of pkt and returns the payload
// protocol type and the payload (a sub-slice of pkt). It discards what RFC
// 2784 §2.3 tells a receiver to discard (version other than 0, RFC 1701
// routing, strict source route, recursion) and packets whose checksum, when
// present, does not verify. Reserved bits 6-12 are ignored, as required.
func Decap(pkt []byte) (proto uint16, payload []byte, info Info, err error) {
	if len(pkt) < HeaderLen {
		return 0, nil, info, ErrShort
	}
	h := Header(pkt)
	f := h.word0()
	switch {
	case f&versionMask != 0:
		return 0, nil, info, ErrVersion
	case f&FlagRouting != 0:
		return 0, nil, info, ErrRouting
	case f&flagsDiscard != 0:
		return 0, nil, info, ErrReserved
	}
	hlen := h.Len()
	if len(pkt) < hlen {
		return 0, nil, info, ErrShort
	}
	p := HeaderLen
	if f&FlagChecksum != 0 {
		// The checksum covers header and payload; summing its own field in
		// makes a correct packet total 0xffff.
		if checksum(pkt) != 0xffff {
			return 0, nil, info, ErrChecksum
		}
		info.HasChecksum = true
		p += 4
	}
	if f&FlagKey != 0 {
		info.HasKey, info.Key = true, binary.BigEndian.Uint32(pkt[p:])
		p += 4
	}
	if f&FlagSequence != 0 {
		info.HasSequence, info.Sequence = true, binary.BigEndian.Uint32(pkt[p:])
	}
	return h.Protocol(), pkt[hlen:], info, nil
}

// checksum is the one's complement sum (RFC 1071) of b, not complemented.
// It adds big-endian 64-bit words with end-around carry: since
// 2^16 ≡ 1 modulo 2^16-1, folding that sum gives the same result as adding
// 16-bit words, in a quarter of the steps.
func checksum(b []byte) uint16 {
	var s, c uint64
	for len(b) >= 8 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) > 0 {
		// Zero padding on the right, as RFC 1071 pads an odd last byte.
		var last [8]byte
		copy(last[:], b)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(last[:]), c)
	}
	s, c = bits.Add64(s, 0, c)
	s += c
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
