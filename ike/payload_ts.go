package ike

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/crypto/cryptobyte"
)

// TrafficSelector is one selector of a TSi/TSr payload (§3.13.1): an
// address range, an IP protocol (0 = any) and a port range. Selectors of
// types other than IPv4/IPv6 ranges keep their bytes in Raw.
type TrafficSelector struct {
	TSType    TSType
	Protocol  uint8
	StartPort uint16
	EndPort   uint16
	Start     netip.Addr
	End       netip.Addr
	Raw       []byte
}

// HostSelector is a selector for exactly one address and one IP protocol,
// all ports: what a GRE-in-transport-mode CHILD_SA negotiates.
func HostSelector(a netip.Addr, proto uint8) TrafficSelector {
	a = a.Unmap()
	t := TS_IPV4_ADDR_RANGE
	if a.Is6() {
		t = TS_IPV6_ADDR_RANGE
	}
	return TrafficSelector{TSType: t, Protocol: proto, StartPort: 0, EndPort: 0xffff, Start: a, End: a}
}

// Contains reports whether o is a subset of ts (same family).
func (ts TrafficSelector) Contains(o TrafficSelector) bool {
	if ts.TSType != o.TSType || ts.Raw != nil || o.Raw != nil {
		return false
	}
	if ts.Protocol != 0 && ts.Protocol != o.Protocol {
		return false
	}
	return ts.StartPort <= o.StartPort && o.EndPort <= ts.EndPort &&
		ts.Start.Compare(o.Start) <= 0 && o.End.Compare(ts.End) <= 0
}

// TrafficSelectors is the body of TSi and TSr.
type TrafficSelectors struct{ Selectors []TrafficSelector }

// TSi is the initiator's traffic selector payload.
type TSi struct{ TrafficSelectors }

// TSr is the responder's traffic selector payload.
type TSr struct{ TrafficSelectors }

func (*TSi) Type() PayloadType { return PayloadTSi }
func (*TSr) Type() PayloadType { return PayloadTSr }

func (t TrafficSelectors) appendBody(b []byte) []byte {
	b = append(b, byte(len(t.Selectors)), 0, 0, 0)
	for _, s := range t.Selectors {
		if s.Raw != nil {
			b = append(b, byte(s.TSType), s.Protocol)
			b = binary.BigEndian.AppendUint16(b, uint16(4+len(s.Raw)))
			b = append(b, s.Raw...)
			continue
		}
		n := 16
		if s.TSType == TS_IPV6_ADDR_RANGE {
			n = 40
		}
		b = append(b, byte(s.TSType), s.Protocol)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		b = binary.BigEndian.AppendUint16(b, s.StartPort)
		b = binary.BigEndian.AppendUint16(b, s.EndPort)
		b = append(b, s.Start.AsSlice()...)
		b = append(b, s.End.AsSlice()...)
	}
	return b
}

func decodeTS(pt PayloadType, body []byte) (TrafficSelectors, error) {
	var out TrafficSelectors
	s := cryptobyte.String(body)
	var n uint8
	if !s.ReadUint8(&n) || !s.Skip(3) {
		return out, malformed(pt, "%d bytes, want at least 4", len(body))
	}
	if n == 0 || n > maxSelectors {
		return out, malformed(pt, "%d selectors", n)
	}
	out.Selectors = make([]TrafficSelector, 0, n)
	for i := 0; i < int(n); i++ {
		var typ, proto uint8
		var length uint16
		if !s.ReadUint8(&typ) || !s.ReadUint8(&proto) || !s.ReadUint16(&length) {
			return out, malformed(pt, "truncated selector header")
		}
		var sel cryptobyte.String
		if length < 4 || !s.ReadBytes((*[]byte)(&sel), int(length)-4) {
			return out, malformed(pt, "selector length %d", length)
		}
		ts := TrafficSelector{TSType: TSType(typ), Protocol: proto}
		var alen int
		switch ts.TSType {
		case TS_IPV4_ADDR_RANGE:
			alen = 4
		case TS_IPV6_ADDR_RANGE:
			alen = 16
		default:
			// Keep the bytes after the 4-byte header; an empty body must
			// still be non-nil to mark the selector as raw.
			ts.Raw = append(make([]byte, 0, len(sel)), sel...)
			out.Selectors = append(out.Selectors, ts)
			continue
		}
		if len(sel) != 4+2*alen {
			return out, malformed(pt, "type %d selector of %d bytes", typ, length)
		}
		sel.ReadUint16(&ts.StartPort)
		sel.ReadUint16(&ts.EndPort)
		ts.Start, _ = netip.AddrFromSlice(sel[:alen])
		ts.End, _ = netip.AddrFromSlice(sel[alen:])
		// Start port > end port is legal (§3.13.1, OPAQUE ports); an
		// inverted address range is not.
		if ts.Start.Compare(ts.End) > 0 {
			return out, malformed(pt, "selector start address after end address")
		}
		out.Selectors = append(out.Selectors, ts)
	}
	if !s.Empty() {
		return out, malformed(pt, "%d bytes after the last selector", len(s))
	}
	return out, nil
}
