// Package gre encapsulates and decapsulates GRE (RFC 2784) with the key
// and sequence number extensions of RFC 2890.
package gre

import (
	"encoding/binary"
	"errors"
)

// HeaderLen is the basic header: flags/version and protocol type.
const HeaderLen = 4

// Protocol types carried (EtherType values).
const (
	ProtoIPv4 = 0x0800
	ProtoIPv6 = 0x86DD
)

const (
	flagChecksum = 0x8000
	flagRouting  = 0x4000 // RFC 1701 only; RFC 2784 receivers must discard
	flagKey      = 0x2000
	flagSequence = 0x1000
	// Strict source route and recursion control (RFC 1701) and the reserved
	// bits; RFC 2784 §2.3 says a receiver may discard packets with any set.
	flagsReserved0 = 0x0ff8
	versionMask    = 0x0007
)

// Errors are values so that a failed Decap allocates nothing.
var (
	ErrShort    = errors.New("gre: packet shorter than its header")
	ErrVersion  = errors.New("gre: version is not 0")
	ErrRouting  = errors.New("gre: routing present (RFC 1701)")
	ErrReserved = errors.New("gre: reserved flags set")
	ErrChecksum = errors.New("gre: checksum mismatch")
)

// Header is a view of a GRE header.
type Header []byte

func (h Header) flags() uint16 { return binary.BigEndian.Uint16(h[0:]) }

// Version is the 3-bit version field.
func (h Header) Version() int { return int(h.flags() & versionMask) }

// Protocol is the payload's EtherType.
func (h Header) Protocol() uint16 { return binary.BigEndian.Uint16(h[2:]) }

// HasChecksum, HasKey and HasSequence report the optional fields.
func (h Header) HasChecksum() bool { return h.flags()&flagChecksum != 0 }
func (h Header) HasKey() bool      { return h.flags()&flagKey != 0 }
func (h Header) HasSequence() bool { return h.flags()&flagSequence != 0 }

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

// Encap writes the GRE header in front of the payload buf[off:off+n] and
// returns where the header starts. The caller leaves HeaderLenFor(o)
// bytes of room before off.
func Encap(buf []byte, off, n int, proto uint16, o Options, seq uint32) (start int) {
	var f uint16
	if o.Checksum {
		f |= flagChecksum
	}
	if o.UseKey {
		f |= flagKey
	}
	if o.Sequence {
		f |= flagSequence
	}
	start = off - HeaderLenFor(o)
	h := buf[start:off]
	binary.BigEndian.PutUint16(h[0:], f)
	binary.BigEndian.PutUint16(h[2:], proto)
	p := HeaderLen
	if o.Checksum {
		clear(h[p : p+4])
		p += 4
	}
	if o.UseKey {
		binary.BigEndian.PutUint32(h[p:], o.Key)
		p += 4
	}
	if o.Sequence {
		binary.BigEndian.PutUint32(h[p:], seq)
	}
	if o.Checksum {
		binary.BigEndian.PutUint16(h[HeaderLen:], ^checksum(buf[start:off+n]))
	}
	return start
}

// Info holds the optional fields of a decapsulated header.
type Info struct {
	HasKey      bool
	Key         uint32
	HasSequence bool
	Sequence    uint32
	HasChecksum bool
}

// Decap parses the GRE header at the start of pkt and returns the payload
// protocol type and the payload (a sub-slice of pkt).
func Decap(pkt []byte) (proto uint16, payload []byte, info Info, err error) {
	if len(pkt) < HeaderLen {
		return 0, nil, info, ErrShort
	}
	h := Header(pkt)
	f := h.flags()
	switch {
	case f&versionMask != 0:
		return 0, nil, info, ErrVersion
	case f&flagRouting != 0:
		return 0, nil, info, ErrRouting
	case f&flagsReserved0 != 0:
		return 0, nil, info, ErrReserved
	}
	hlen := h.Len()
	if len(pkt) < hlen {
		return 0, nil, info, ErrShort
	}
	p := HeaderLen
	if h.HasChecksum() {
		info.HasChecksum = true
		if checksum(pkt) != 0xffff {
			return 0, nil, info, ErrChecksum
		}
		p += 4
	}
	if h.HasKey() {
		info.HasKey, info.Key = true, binary.BigEndian.Uint32(pkt[p:])
		p += 4
	}
	if h.HasSequence() {
		info.HasSequence, info.Sequence = true, binary.BigEndian.Uint32(pkt[p:])
	}
	return h.Protocol(), pkt[hlen:], info, nil
}

// checksum is the one's complement sum (RFC 1071) of b, not complemented.
func checksum(b []byte) uint16 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
