package tun

import (
	"encoding/binary"
	"math/bits"
)

// ClampMSS lowers the MSS option of a TCP SYN (or SYN-ACK) in the IPv4 or
// IPv6 packet pkt to maxMSS4 or maxMSS6, as `ip tcp adjust-mss` or pf's
// `max-mss` do, so that TCP segments fit the tunnel without fragmenting.
// It updates the TCP checksum incrementally (RFC 1624) and reports
// whether it changed the packet. Anything it cannot parse with certainty it
// leaves alone: fragments, IPv6 extension headers (TCP must follow the
// fixed header directly), options after End of Option List, malformed
// option lengths, an MSS option not 4 bytes long.
//
// Lengths come from the IP header, not len(pkt): trailing bytes are not
// part of the segment. A limit of 0 leaves that family alone.
func ClampMSS(pkt []byte, maxMSS4, maxMSS6 uint16) bool {
	if len(pkt) < 20 {
		return false
	}
	var tcp []byte
	var limit uint16
	switch pkt[0] >> 4 {
	case 4:
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:]))
		frag := binary.BigEndian.Uint16(pkt[6:]) & 0x3fff // MF and offset
		if pkt[9] != 6 || frag != 0 || ihl < 20 || total > len(pkt) || total < ihl {
			return false
		}
		tcp, limit = pkt[ihl:total], maxMSS4
	case 6:
		if len(pkt) < 40 || pkt[6] != 6 {
			return false
		}
		end := 40 + int(binary.BigEndian.Uint16(pkt[4:]))
		if end > len(pkt) {
			return false
		}
		tcp, limit = pkt[40:end], maxMSS6
	default:
		return false
	}
	if limit == 0 || len(tcp) < 20 || tcp[13]&0x02 == 0 { // not a SYN
		return false
	}
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || doff > len(tcp) {
		return false
	}
	for i := 20; i < doff; {
		kind := tcp[i]
		switch kind {
		case 0: // end of options
			return false
		case 1: // no-op
			i++
			continue
		}
		if i+1 >= doff {
			return false
		}
		l := int(tcp[i+1])
		if l < 2 || i+l > doff {
			return false
		}
		if kind == 2 {
			if l != 4 || binary.BigEndian.Uint16(tcp[i+2:]) <= limit {
				return false
			}
			put16(tcp, i+2, limit)
			return true
		}
		i += l
	}
	return false
}

// put16 writes v at tcp[off:off+2] and adjusts the TCP checksum (at 16)
// for the change: HC' = ~(~HC + ~m + m'), RFC 1624 eqn. 3. At an odd
// offset the two bytes are the low half of one checksum word and the high
// half of the next, so they add to the sum byte-swapped (RFC 1071's byte
// order independence): adjust with swapped values.
func put16(tcp []byte, off int, v uint16) {
	old := binary.BigEndian.Uint16(tcp[off:])
	binary.BigEndian.PutUint16(tcp[off:], v)
	if off&1 != 0 {
		old, v = bits.ReverseBytes16(old), bits.ReverseBytes16(v)
	}
	sum := uint32(^binary.BigEndian.Uint16(tcp[16:])) + uint32(^old) + uint32(v)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(tcp[16:], ^uint16(sum))
}
