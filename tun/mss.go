package tun

import "encoding/binary"

// ClampMSS lowers the MSS option of a TCP SYN (or SYN-ACK) in the IPv4 or
// IPv6 packet pkt to maxMSS4 or maxMSS6, as `ip tcp adjust-mss` or pf's
// `max-mss` do, so that TCP segments fit the tunnel without fragmenting.
// It updates the TCP checksum incrementally (RFC 1624) and reports
// whether it changed the packet. Anything it cannot parse with certainty
// (fragments, IPv6 extension headers, malformed options) it leaves alone.
func ClampMSS(pkt []byte, maxMSS4, maxMSS6 uint16) bool {
	if len(pkt) < 20 {
		return false
	}
	var tcp []byte
	var max uint16
	switch pkt[0] >> 4 {
	case 4:
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:]))
		fragOff := binary.BigEndian.Uint16(pkt[6:]) & 0x1fff
		if pkt[9] != 6 || fragOff != 0 || ihl < 20 || total > len(pkt) || total < ihl {
			return false
		}
		tcp, max = pkt[ihl:total], maxMSS4
	case 6:
		if len(pkt) < 40 || pkt[6] != 6 {
			return false
		}
		end := 40 + int(binary.BigEndian.Uint16(pkt[4:]))
		if end > len(pkt) {
			return false
		}
		tcp, max = pkt[40:end], maxMSS6
	default:
		return false
	}
	if len(tcp) < 20 || tcp[13]&0x02 == 0 { // not a SYN
		return false
	}
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || doff > len(tcp) {
		return false
	}
	for i := 20; i < doff; {
		switch kind := tcp[i]; kind {
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
		if tcp[i] == 2 && l == 4 {
			if binary.BigEndian.Uint16(tcp[i+2:]) <= max {
				return false
			}
			put16(tcp, i+2, max)
			return true
		}
		i += l
	}
	return false
}

// put16 writes v at tcp[off:off+2] and adjusts the TCP checksum (at 16)
// for the change. The field may sit at an odd offset, so the adjustment
// covers every 16-bit word the two bytes touch.
func put16(tcp []byte, off int, v uint16) {
	first := off &^ 1
	last := (off + 1) &^ 1
	var old [2]uint16
	for i, w := range [2]int{first, last} {
		old[i] = word(tcp, w)
	}
	binary.BigEndian.PutUint16(tcp[off:], v)
	sum := uint32(^binary.BigEndian.Uint16(tcp[16:]))
	for i, w := range [2]int{first, last} {
		if i == 1 && last == first {
			break
		}
		sum += uint32(^old[i]) + uint32(word(tcp, w))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(tcp[16:], ^uint16(sum))
}

// word reads the checksum word at even offset w (a lone last byte is
// padded with zero, as the checksum does).
func word(b []byte, w int) uint16 {
	if w+1 < len(b) {
		return binary.BigEndian.Uint16(b[w:])
	}
	return uint16(b[w]) << 8
}
