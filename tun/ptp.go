package tun

import "net/netip"

// peerOf is the destination address for a point-to-point IPv4 address.
func peerOf(p netip.Prefix) netip.Addr {
	a := p.Addr()
	if p.Bits() == 31 {
		b := a.As4()
		b[3] ^= 1
		return netip.AddrFrom4(b)
	}
	first := p.Masked().Addr().Next()
	if first == a || !p.Contains(first) {
		return a
	}
	return first
}
