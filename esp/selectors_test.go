package esp

import (
	"net/netip"
	"testing"
)

func ipv4(src, dst string, proto byte) []byte {
	p := make([]byte, 20)
	p[0], p[9] = 0x45, proto
	copy(p[12:16], netip.MustParseAddr(src).AsSlice())
	copy(p[16:20], netip.MustParseAddr(dst).AsSlice())
	return p
}

func ipv6(src, dst string, next byte) []byte {
	p := make([]byte, 40)
	p[0], p[6] = 0x60, next
	copy(p[8:24], netip.MustParseAddr(src).AsSlice())
	copy(p[24:40], netip.MustParseAddr(dst).AsSlice())
	return p
}

func rng(first, last string, proto uint8) AddrRange {
	return AddrRange{First: netip.MustParseAddr(first), Last: netip.MustParseAddr(last), Proto: proto}
}

// TestSelectors: source and destination each in their side's ranges, by
// family, by protocol when a range names one; malformed packets match
// nothing.
func TestSelectors(t *testing.T) {
	s := &Selectors{
		Local:  []AddrRange{rng("198.19.0.0", "198.19.0.255", 0), rng("2001:db8:19::", "2001:db8:19::ffff", 0)},
		Remote: []AddrRange{rng("198.19.1.1", "198.19.1.1", 0), rng("2001:db8:1::1", "2001:db8:1::1", 17)},
	}
	for _, c := range []struct {
		name    string
		pkt     []byte
		out, in bool
	}{
		{"v4 out", ipv4("198.19.0.7", "198.19.1.1", 6), true, false},
		{"v4 in", ipv4("198.19.1.1", "198.19.0.255", 1), false, true},
		{"v4 source outside", ipv4("198.19.2.1", "198.19.1.1", 6), false, false},
		{"v4 destination outside", ipv4("198.19.0.7", "198.19.1.2", 6), false, false},
		{"v6 udp out", ipv6("2001:db8:19::5", "2001:db8:1::1", 17), true, false},
		{"v6 tcp out: the range names UDP", ipv6("2001:db8:19::5", "2001:db8:1::1", 6), false, false},
		{"v6 udp in", ipv6("2001:db8:1::1", "2001:db8:19::ffff", 17), false, true},
		{"v4-mapped is not v4", ipv6("::ffff:198.19.0.7", "::ffff:198.19.1.1", 17), false, false},
		{"truncated v4", ipv4("198.19.0.7", "198.19.1.1", 6)[:19], false, false},
		{"truncated v6", ipv6("2001:db8:19::5", "2001:db8:1::1", 17)[:39], false, false},
		{"not IP", []byte{0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, false, false},
		{"empty", nil, false, false},
	} {
		if got := s.Outbound(c.pkt); got != c.out {
			t.Errorf("%s: Outbound = %v", c.name, got)
		}
		if got := s.Inbound(c.pkt); got != c.in {
			t.Errorf("%s: Inbound = %v", c.name, got)
		}
	}
}

// BenchmarkSelectorsInbound: the receive path's check of an IPv6 packet
// against two ranges a side, the IPv4 one first.
func BenchmarkSelectorsInbound(b *testing.B) {
	s := &Selectors{
		Local:  []AddrRange{rng("198.19.0.0", "198.19.0.255", 0), rng("2001:db8:19::", "2001:db8:19::ffff", 0)},
		Remote: []AddrRange{rng("198.19.1.1", "198.19.1.1", 0), rng("2001:db8:1::1", "2001:db8:1::1", 0)},
	}
	pkt := ipv6("2001:db8:1::1", "2001:db8:19::5", 17)
	b.ReportAllocs()
	for b.Loop() {
		if !s.Inbound(pkt) {
			b.Fatal("not covered")
		}
	}
}
