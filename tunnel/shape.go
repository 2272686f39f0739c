package tunnel

import (
	"encoding/binary"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/gre"
)

// IP protocol numbers an ESP trailer's next header names for IP inside:
// IPv4 (RFC 2003) and IPv6 (RFC 2473).
const (
	protoIPv4 = 4
	protoIPv6 = 41

	tunnelTTL = 64 // of tunnel mode's own IP header, as the kernel's GRE default
)

// shape is what the pumps need to know of the tunnel's shape, decided
// once in setShape so that the per-packet work is one test of a field.
// The zero value is GRE in transport-mode ESP.
type shape struct {
	// bare: no GRE, the inner packet itself is ESP's payload (a VTI,
	// IP-in-IP).
	bare bool
	// tunnelHeader: tunnel-mode ESP around GRE, whose own IP header
	// (between the underlay addresses, protocol 47) goes in front of the
	// GRE header; tunnelNext is then ESP's next header, 4 or 41 by the
	// underlay's family, instead of 47.
	tunnelHeader bool
	tunnelNext   byte
	underlay4    bool   // the underlay is IPv4
	ipID         uint16 // of tunnel mode's IPv4 header, under sendMu
}

func (t *Tunnel) setShape() {
	s := t.cfg.Shape()
	t.shape = shape{
		bare:         s == config.ShapeVTI || s == config.ShapeIPIP,
		tunnelHeader: s == config.ShapeGRETunnel,
		tunnelNext:   protoIPv4,
		underlay4:    t.cfg.Local.Is4(),
	}
	if !t.shape.underlay4 {
		t.shape.tunnelNext = protoIPv6
	}
}

// nextHeaderOf is the ESP next header of an inner packet of IP version v
// carried without GRE.
func nextHeaderOf(v int) byte {
	if v == 6 {
		return protoIPv6
	}
	return protoIPv4
}

// sealGRE seals the GRE packet at buf[start:end] with sa as the shape
// wants it: in tunnel mode behind an IP header written in front of it.
// The caller holds sendMu.
func (t *Tunnel) sealGRE(sa *esp.SA, buf []byte, start, end int) ([]byte, error) {
	if !t.shape.tunnelHeader {
		return sa.Seal(buf, start, end-start, esp.NextHeaderGRE)
	}
	start = t.putTunnelHeader(buf, start, end)
	return sa.Seal(buf, start, end-start, t.shape.tunnelNext)
}

// putTunnelHeader writes tunnel mode's IP header for the GRE packet at
// buf[start:end] into the bytes before it and returns where it starts.
// Its addresses are the underlay's, as an IOS crypto map or xfrm state
// in tunnel mode between the GRE endpoints builds it. DF is left clear:
// the inner packet was already checked against the tunnel MTU, and the
// underlay header is the one that meets the path (RFC 4459 §3).
func (t *Tunnel) putTunnelHeader(buf []byte, start, end int) int {
	if t.shape.underlay4 {
		start -= 20
		h := buf[start : start+20]
		h[0], h[1] = 0x45, 0
		binary.BigEndian.PutUint16(h[2:], uint16(end-start))
		t.shape.ipID++
		binary.BigEndian.PutUint16(h[4:], t.shape.ipID)
		h[6], h[7], h[8], h[9] = 0, 0, tunnelTTL, protoGRE
		h[10], h[11] = 0, 0
		copy(h[12:16], t.local4[:])
		copy(h[16:20], t.remote4[:])
		binary.BigEndian.PutUint16(h[10:], ^ipv4Sum(h))
		return start
	}
	start -= 40
	h := buf[start : start+40]
	h[0], h[1], h[2], h[3] = 0x60, 0, 0, 0
	binary.BigEndian.PutUint16(h[4:], uint16(end-start-40))
	h[6], h[7] = protoGRE, tunnelTTL
	copy(h[8:24], t.local16[:])
	copy(h[24:40], t.remote16[:])
	return start
}

// tunnelPayload checks tunnel mode's IP header at the front of p, the
// payload of an ESP packet whose next header said IP, and returns the
// GRE packet behind it, or nil when a kernel would not hand the packet to
// its GRE tunnel: a wrong version, length or IPv4 checksum, a fragment,
// another protocol than GRE (IPv6 extension headers included), or
// addresses other than the peer's to ours (the selectors of RFC 4301
// §5.2, which the xfrm policy check does for the kernel).
func (t *Tunnel) tunnelPayload(p []byte) []byte {
	if t.shape.underlay4 {
		if len(p) < 20 || p[0] != 0x45 {
			return nil // options (IHL > 5) are not something a GRE peer sends
		}
		total := int(binary.BigEndian.Uint16(p[2:4]))
		if total < 20 || total > len(p) || binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 ||
			p[9] != protoGRE || [4]byte(p[12:16]) != t.remote4 || [4]byte(p[16:20]) != t.local4 ||
			ipv4Sum(p[:20]) != 0xffff {
			return nil
		}
		return p[20:total]
	}
	if len(p) < 40 || p[0]>>4 != 6 {
		return nil
	}
	payload := int(binary.BigEndian.Uint16(p[4:6]))
	if payload == 0 || 40+payload > len(p) || p[6] != protoGRE ||
		[16]byte(p[8:24]) != t.remote16 || [16]byte(p[24:40]) != t.local16 {
		return nil
	}
	return p[40 : 40+payload]
}

// ipPayload returns the inner packet of an ESP payload that carries one
// without GRE (a VTI, IP-in-IP), by its next header, checked and cut as
// innerPacket does; nil when it is not IP (dropNextHeader) or malformed
// (dropInnerMalformed), counted here.
func (t *Tunnel) ipPayload(next byte, p []byte) []byte {
	var proto uint16
	switch next {
	case protoIPv4:
		proto = gre.ProtoIPv4
	case protoIPv6:
		proto = gre.ProtoIPv6
	default:
		t.stats.drop(dropNextHeader)
		return nil
	}
	inner := innerPacket(proto, p)
	if inner == nil {
		t.stats.drop(dropInnerMalformed)
	}
	return inner
}
