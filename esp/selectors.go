package esp

import "net/netip"

// Selectors are the traffic selectors a tunnel-mode SA was negotiated
// for (RFC 4301 §4.4.2): the inner packets it may carry. An inbound SA
// drops, after decryption, an inner packet they do not cover (RFC 4301
// §5.2, the inbound selector check: a peer must not smuggle other
// addresses through an SA keyed for some); an outbound one tells the
// sender which SA a packet belongs on when there are several, such as
// one per address family.
type Selectors struct {
	Local, Remote []AddrRange // our side's and the peer's
}

// AddrRange is one traffic selector: the addresses First..Last (one
// family) and an IP protocol, 0 for any. Ports are not checked.
type AddrRange struct {
	First, Last netip.Addr
	Proto       uint8
}

// Outbound reports whether the inner packet pkt (an IP header first) may
// leave on the SA: its source in Local, its destination in Remote.
func (s *Selectors) Outbound(pkt []byte) bool { return s.covers(pkt, s.Local, s.Remote) }

// Inbound reports whether the inner packet pkt, decrypted on the SA, is
// one the SA may carry: its source in Remote, its destination in Local.
func (s *Selectors) Inbound(pkt []byte) bool { return s.covers(pkt, s.Remote, s.Local) }

// covers parses the addresses in place (netip.Addr from fixed arrays
// does not allocate) and checks both against the ranges. The protocol of
// an IPv6 packet is its first next header: a selector naming a protocol
// does not see past extension headers.
func (s *Selectors) covers(pkt []byte, src, dst []AddrRange) bool {
	var from, to netip.Addr
	var proto uint8
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		from, to, proto = netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20])), pkt[9]
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		from, to, proto = netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40])), pkt[6]
	default:
		return false
	}
	return inRanges(src, from, proto) && inRanges(dst, to, proto)
}

func inRanges(rs []AddrRange, a netip.Addr, proto uint8) bool {
	for i := range rs {
		r := &rs[i]
		if (r.Proto == 0 || r.Proto == proto) && r.First.BitLen() == a.BitLen() &&
			r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0 {
			return true
		}
	}
	return false
}

// SetSelectors gives the SA its traffic selectors; nil: none checked.
// Call it before the SA is installed (it is read without a lock).
func (sa *SA) SetSelectors(s *Selectors) { sa.sel = s }

// Selectors are the SA's traffic selectors, or nil.
func (sa *SA) Selectors() *Selectors { return sa.sel }
