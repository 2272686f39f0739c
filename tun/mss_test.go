package tun

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// segment describes a TCP segment for gopacket to build.
type segment struct {
	v6       bool
	syn, ack bool
	opts     []layers.TCPOption
	frag     uint16 // IPv4 fragment offset (8-byte units)
	mf       bool   // IPv4 more fragments
	ipOpts   []layers.IPv4Option
}

// build encodes s with gopacket (an independent encoder, which also
// computes the checksum), with one byte of payload.
func (s segment) build(t testing.TB) []byte {
	t.Helper()
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 179, Seq: 1, SYN: s.syn, ACK: s.ack, Window: 65535, Options: s.opts}
	var ip gopacket.SerializableLayer
	if s.v6 {
		ip6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, HopLimit: 64,
			SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
		tcp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	} else {
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, FragOffset: s.frag, Options: s.ipOpts,
			SrcIP: net.ParseIP("198.19.0.0"), DstIP: net.ParseIP("198.19.0.1")}
		if s.mf {
			ip4.Flags = layers.IPv4MoreFragments
		}
		tcp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, ip, tcp, gopacket.Payload([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// synPacket is a SYN (v4 or v6) with the given TCP options.
func synPacket(t testing.TB, v6 bool, opts ...layers.TCPOption) []byte {
	return segment{v6: v6, syn: true, opts: opts}.build(t)
}

func mssOpt(v uint16) layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{byte(v >> 8), byte(v)}}
}

var (
	nop    = layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}
	eol    = layers.TCPOption{OptionType: layers.TCPOptionKindEndList, OptionLength: 1}
	sackOK = layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2}
	wscale = layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}}
	tstamp = layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)}
	// IPv4 Router Alert (RFC 2113): makes the IP header 24 bytes.
	routerAlert = layers.IPv4Option{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}
)

// decodeMSS parses pkt with gopacket and returns its MSS option (0 if none).
func decodeMSS(t testing.TB, pkt []byte, v6 bool) uint16 {
	t.Helper()
	first := layers.LayerTypeIPv4
	if v6 {
		first = layers.LayerTypeIPv6
	}
	p := gopacket.NewPacket(pkt, first, gopacket.Default)
	tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok {
		t.Fatalf("gopacket: no TCP in %x", pkt)
	}
	for _, o := range tcp.Options {
		if o.OptionType == layers.TCPOptionKindMSS && len(o.OptionData) == 2 {
			return binary.BigEndian.Uint16(o.OptionData)
		}
	}
	return 0
}

func tcpChecksumOK(pkt []byte, v6 bool) bool {
	if v6 {
		return len(pkt) >= 40 && pkt[6] == 6 && transportChecksumOK(pkt)
	}
	return len(pkt) >= 20 && pkt[9] == 6 && transportChecksumOK(pkt)
}

// transportChecksumOK verifies the checksum of the TCP, UDP, ICMP or ICMPv6
// message after a plain IPv4 or IPv6 header (no extension headers): the
// RFC 1071 sum over pseudo-header (all but ICMPv4) and message is 0xffff.
// The IP header's length field says where the message ends.
func transportChecksumOK(pkt []byte) bool {
	var pseudo, seg []byte
	switch {
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		end := 40 + int(binary.BigEndian.Uint16(pkt[4:]))
		if end > len(pkt) {
			return false
		}
		seg = pkt[40:end]
		n := len(seg)
		pseudo = append(append([]byte{}, pkt[8:40]...), 0, 0, byte(n>>8), byte(n), 0, 0, 0, pkt[6])
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:]))
		if ihl < 20 || total < ihl || total > len(pkt) {
			return false
		}
		seg = pkt[ihl:total]
		if pkt[9] != 1 { // ICMPv4 has no pseudo-header
			n := len(seg)
			pseudo = append(append([]byte{}, pkt[12:20]...), 0, pkt[9], byte(n>>8), byte(n))
		}
	default:
		return false
	}
	return sum16(append(pseudo, seg...)) == 0xffff
}

func sum16(b []byte) uint16 {
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

func TestClampMSS(t *testing.T) {
	for _, tc := range []struct {
		name       string
		seg        segment
		wantChange bool
		wantMSS    uint16
	}{
		{"v4 syn 1460", segment{syn: true, opts: []layers.TCPOption{mssOpt(1460)}}, true, 1402},
		{"v4 syn odd offset", segment{syn: true, opts: []layers.TCPOption{nop, mssOpt(1460), nop, nop, nop}}, true, 1402},
		{"v4 syn-ack", segment{syn: true, ack: true, opts: []layers.TCPOption{mssOpt(65495), sackOK, tstamp, nop, wscale}}, true, 1402},
		{"v4 syn already small", segment{syn: true, opts: []layers.TCPOption{mssOpt(536)}}, false, 536},
		{"v4 syn exactly max", segment{syn: true, opts: []layers.TCPOption{mssOpt(1402)}}, false, 1402},
		{"v4 not syn", segment{ack: true, opts: []layers.TCPOption{mssOpt(1460)}}, false, 1460},
		{"v4 no mss", segment{syn: true, opts: []layers.TCPOption{nop, nop, nop, nop}}, false, 0},
		{"v4 mss after sack-perm, wscale, timestamps", segment{syn: true, opts: []layers.TCPOption{sackOK, wscale, tstamp, mssOpt(8960)}}, true, 1402},
		{"v4 with IP options", segment{syn: true, ipOpts: []layers.IPv4Option{routerAlert}, opts: []layers.TCPOption{nop, mssOpt(1460)}}, true, 1402},
		{"v4 mss after end of options", segment{syn: true, opts: []layers.TCPOption{eol, nop, nop, nop, mssOpt(1460)}}, false, 1460},
		{"v6 syn 1440", segment{v6: true, syn: true, opts: []layers.TCPOption{mssOpt(1440)}}, true, 1382},
		{"v6 syn odd offset", segment{v6: true, syn: true, opts: []layers.TCPOption{nop, mssOpt(65000), nop, nop, nop}}, true, 1382},
		{"v6 syn-ack", segment{v6: true, syn: true, ack: true, opts: []layers.TCPOption{wscale, mssOpt(9000)}}, true, 1382},
		{"v6 syn small", segment{v6: true, syn: true, opts: []layers.TCPOption{mssOpt(1220)}}, false, 1220},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := tc.seg.build(t)
			before := bytes.Clone(pkt)
			if changed := ClampMSS(pkt, 1402, 1382); changed != tc.wantChange {
				t.Errorf("changed = %v, want %v", changed, tc.wantChange)
			}
			if !tc.wantChange && !bytes.Equal(pkt, before) {
				t.Errorf("said unchanged, but changed %x -> %x", before, pkt)
			}
			if tc.seg.opts[0].OptionType != layers.TCPOptionKindEndList {
				if mss := decodeMSS(t, pkt, tc.seg.v6); mss != tc.wantMSS {
					t.Errorf("MSS %d, want %d", mss, tc.wantMSS)
				}
			}
			if !tcpChecksumOK(pkt, tc.seg.v6) {
				t.Error("TCP checksum no longer verifies")
			}
			if d := diff(before, pkt); tc.wantChange && d > 4 {
				t.Errorf("%d bytes changed; only MSS and checksum may", d)
			}
		})
	}
}

func diff(a, b []byte) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// TestClampMSSLeavesAlone covers what ClampMSS must not touch: packets it
// cannot parse with certainty. None may change.
func TestClampMSSLeavesAlone(t *testing.T) {
	v4 := func() []byte { return synPacket(t, false, mssOpt(1460)) } // MSS option at 40
	v6 := func() []byte { return synPacket(t, true, mssOpt(1460)) }  // at 60
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{
		{"v4 fragment", segment{syn: true, frag: 100, opts: []layers.TCPOption{mssOpt(1460)}}.build(t)},
		{"v4 first fragment (MF)", segment{syn: true, mf: true, opts: []layers.TCPOption{mssOpt(1460)}}.build(t)},
		{"v4 option length 0", patch(v4(), 41, 0)},
		{"v4 option length 1", patch(v4(), 41, 1)},
		{"v4 option past data offset", patch(v4(), 41, 5)},
		{"v4 MSS length 3", patch(synPacket(t, false, layers.TCPOption{OptionType: 2, OptionLength: 3, OptionData: []byte{0xff}}, nop), 41, 3)},
		{"v4 unknown option swallowing the rest", patch(synPacket(t, false, nop, mssOpt(1460), nop, nop, nop), 40, 99, 8)},
		{"v4 data offset beyond segment", patch(v4(), 32, 0xf0)},
		{"v4 data offset 4", patch(v4(), 32, 0x40)},
		{"v4 IHL 4", patch(v4(), 0, 0x44)},
		{"v4 total length beyond packet", patch(v4(), 2, 0x01, 0x00)},
		{"v4 total length cuts options", patch(v4(), 2, 0, 42)},
		{"v4 not TCP", patch(v4(), 9, 17)},
		{"v6 payload length beyond packet", patch(v6(), 4, 0x01, 0x00)},
		{"v6 not TCP", patch(v6(), 6, 17)},
		{"v6 hop-by-hop header before TCP", hopByHop(t, v6())},
		{"version 5", patch(v4(), 0, 0x55)},
		{"short", v4()[:19]},
		{"v6 truncated header", v6()[:39]},
	} {
		before := bytes.Clone(tc.pkt)
		if ClampMSS(tc.pkt, 1402, 1382) || !bytes.Equal(before, tc.pkt) {
			t.Errorf("%s: clamped %x -> %x", tc.name, before, tc.pkt)
		}
	}
	// A zero limit switches a family off.
	for _, v6 := range []bool{false, true} {
		pkt := synPacket(t, v6, mssOpt(1460))
		if ClampMSS(pkt, map[bool]uint16{false: 0, true: 1402}[v6], map[bool]uint16{false: 1382, true: 0}[v6]) {
			t.Errorf("v6=%v: clamped with limit 0", v6)
		}
	}
	// Every truncation of a good packet is left alone or parses.
	good := v4()
	for i := range good {
		p := bytes.Clone(good[:i])
		if ClampMSS(p, 1402, 1382) {
			t.Errorf("clamped a packet truncated to %d bytes", i)
		}
	}
}

// TestClampMSSTrailingBytes: bytes after the IP datagram (link padding)
// are neither parsed nor summed.
func TestClampMSSTrailingBytes(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		pkt := append(synPacket(t, v6, nop, mssOpt(1460)), 2, 4, 0xff, 0xff)
		if !ClampMSS(pkt, 1402, 1382) || decodeMSS(t, pkt, v6) != map[bool]uint16{false: 1402, true: 1382}[v6] {
			t.Errorf("v6=%v: not clamped", v6)
		}
		if !tcpChecksumOK(pkt, v6) {
			t.Errorf("v6=%v: checksum broken", v6)
		}
	}
}

// patch overwrites bytes of pkt from at.
func patch(pkt []byte, at int, b ...byte) []byte {
	copy(pkt[at:], b)
	return pkt
}

// hopByHop inserts an empty Hop-by-Hop Options header (PadN) in front of
// the TCP header of an IPv6 packet.
func hopByHop(t testing.TB, pkt []byte) []byte {
	t.Helper()
	hbh := []byte{6, 0, 1, 4, 0, 0, 0, 0}
	out := append(append(append([]byte{}, pkt[:40]...), hbh...), pkt[40:]...)
	out[6] = 0
	binary.BigEndian.PutUint16(out[4:], binary.BigEndian.Uint16(pkt[4:])+8)
	return out
}

func FuzzClampMSS(f *testing.F) {
	f.Add(synPacket(f, false, mssOpt(1460)))
	f.Add(synPacket(f, true, nop, mssOpt(9000), nop, nop, nop))
	f.Add(segment{syn: true, ack: true, ipOpts: []layers.IPv4Option{routerAlert}, opts: []layers.TCPOption{sackOK, tstamp, nop, mssOpt(1460)}}.build(f))
	f.Add(hopByHop(f, synPacket(f, true, mssOpt(1460))))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		before := bytes.Clone(pkt)
		if !ClampMSS(pkt, 1402, 1382) {
			if !bytes.Equal(before, pkt) {
				t.Fatal("changed the packet but said it did not")
			}
			return
		}
		// Only the MSS value and the checksum change, and a checksum that
		// was valid stays valid.
		if d := diff(before, pkt); d > 4 {
			t.Fatalf("%d bytes changed: %x -> %x", d, before, pkt)
		}
		v6 := pkt[0]>>4 == 6
		if tcpChecksumOK(before, v6) && !tcpChecksumOK(pkt, v6) {
			t.Fatalf("checksum broken by clamping: %x -> %x", before, pkt)
		}
	})
}

func BenchmarkClampMSS(b *testing.B) {
	pkt := synPacket(b, false, nop, mssOpt(1460))
	sum := binary.BigEndian.Uint16(pkt[36:])
	b.ReportAllocs()
	for b.Loop() {
		pkt[43], pkt[44] = 0x05, 0xb4 // 1460 again, at an odd offset
		pkt[36], pkt[37] = byte(sum>>8), byte(sum)
		if !ClampMSS(pkt, 1402, 1382) {
			b.Fatal("not clamped")
		}
	}
}

func BenchmarkClampMSSNotSYN(b *testing.B) {
	// The common case: every data packet passes through and is left alone.
	pkt := segment{ack: true, opts: []layers.TCPOption{nop, nop, tstamp}}.build(b)
	b.ReportAllocs()
	for b.Loop() {
		if ClampMSS(pkt, 1402, 1382) {
			b.Fatal("clamped")
		}
	}
}

func TestClampMSSNoAllocs(t *testing.T) {
	v4 := synPacket(t, false, nop, mssOpt(1460))
	v6 := synPacket(t, true, mssOpt(1460))
	allocs := testing.AllocsPerRun(100, func() {
		ClampMSS(v4, 1402, 1382)
		ClampMSS(v6, 1402, 1382)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}
