package gre

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// encodeGopacket builds a GRE packet with gopacket, an independent encoder.
func encodeGopacket(t testing.TB, g *layers.GRE, payload []byte) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, g, gopacket.Payload(payload))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// payload is odd-length so that the checksum's trailing byte is exercised.
var payload = []byte("\x45\x00\x00\x1cinner packet bytes!")

func TestDecapGopacketPackets(t *testing.T) {
	for _, tc := range []struct {
		name string
		g    layers.GRE
	}{
		{"plain", layers.GRE{Protocol: layers.EthernetTypeIPv4}},
		{"ipv6", layers.GRE{Protocol: layers.EthernetTypeIPv6}},
		{"key", layers.GRE{KeyPresent: true, Key: 0xdeadbeef, Protocol: layers.EthernetTypeIPv4}},
		{"seq", layers.GRE{SeqPresent: true, Seq: 77, Protocol: layers.EthernetTypeIPv4}},
		{"key+seq", layers.GRE{KeyPresent: true, Key: 9, SeqPresent: true, Seq: 1 << 31, Protocol: layers.EthernetTypeIPv6}},
		{"checksum", layers.GRE{ChecksumPresent: true, Protocol: layers.EthernetTypeIPv4}},
		{"all", layers.GRE{ChecksumPresent: true, KeyPresent: true, Key: 5, SeqPresent: true, Seq: 6, Protocol: layers.EthernetTypeIPv4}},
		{"all max", layers.GRE{ChecksumPresent: true, KeyPresent: true, Key: ^uint32(0), SeqPresent: true, Seq: ^uint32(0), Protocol: 0xffff}},
		// RFC 2784 §2.3: bits 6-12 are ignored on receipt.
		{"reserved bits 6-12", layers.GRE{RecursionControl: 3, Flags: 0x1f, Protocol: layers.EthernetTypeIPv4}},
		{"reserved bits with key", layers.GRE{RecursionControl: 1, Flags: 0x01, KeyPresent: true, Key: 3, Protocol: layers.EthernetTypeIPv6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := encodeGopacket(t, &tc.g, payload)
			proto, got, info, err := Decap(pkt)
			if err != nil {
				t.Fatal(err)
			}
			if proto != uint16(tc.g.Protocol) || !bytes.Equal(got, payload) {
				t.Errorf("proto %#x payload %q", proto, got)
			}
			if info.HasKey != tc.g.KeyPresent || info.Key != tc.g.Key || info.HasSequence != tc.g.SeqPresent ||
				info.Sequence != tc.g.Seq || info.HasChecksum != tc.g.ChecksumPresent {
				t.Errorf("info %+v, want %+v", info, tc.g)
			}
			h := Header(pkt)
			if h.Len() != len(pkt)-len(payload) || h.Key() != tc.g.Key || h.Sequence() != tc.g.Seq ||
				h.Protocol() != uint16(tc.g.Protocol) || h.Version() != 0 ||
				h.HasKey() != tc.g.KeyPresent || h.HasSequence() != tc.g.SeqPresent || h.HasChecksum() != tc.g.ChecksumPresent {
				t.Errorf("header getters disagree with gopacket %+v: len %d key %d seq %d", tc.g, h.Len(), h.Key(), h.Sequence())
			}
			if tc.g.ChecksumPresent && h.Checksum() != tc.g.Checksum {
				t.Errorf("checksum %#x, gopacket %#x", h.Checksum(), tc.g.Checksum)
			}
			// Every truncation of the header is short, never a panic.
			for i := range h.Len() {
				if _, _, _, err := Decap(pkt[:i]); err != ErrShort {
					t.Errorf("truncated to %d: %v", i, err)
				}
			}
		})
	}
}

func TestDecapRefusesGopacketPackets(t *testing.T) {
	for _, tc := range []struct {
		name string
		g    layers.GRE
		err  error
	}{
		{"version 1 (PPTP)", layers.GRE{Version: 1, KeyPresent: true, Protocol: 0x880b}, ErrVersion},
		{"version 7", layers.GRE{Version: 7, Protocol: layers.EthernetTypeIPv4}, ErrVersion},
		{"routing", layers.GRE{RoutingPresent: true, Protocol: layers.EthernetTypeIPv4,
			GRERouting: &layers.GRERouting{AddressFamily: 0x0800, SRELength: 4, RoutingInformation: []byte{198, 18, 0, 1}}}, ErrRouting},
		{"strict source route", layers.GRE{StrictSourceRoute: true, Protocol: layers.EthernetTypeIPv4}, ErrReserved},
		{"recursion bit 5", layers.GRE{RecursionControl: 4, Protocol: layers.EthernetTypeIPv4}, ErrReserved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := encodeGopacket(t, &tc.g, payload)
			if _, got, _, err := Decap(pkt); err != tc.err || got != nil {
				t.Errorf("Decap: %v (payload %q), want %v", err, got, tc.err)
			}
		})
	}
}

func TestEncapDecodedByGopacket(t *testing.T) {
	for _, o := range []Options{
		{}, {UseKey: true, Key: 42}, {Sequence: true}, {Checksum: true},
		{Checksum: true, UseKey: true, Key: 1, Sequence: true},
		{UseKey: true, Key: 0xffffffff, Sequence: true},
	} {
		for _, proto := range []uint16{ProtoIPv4, ProtoIPv6} {
			const off = MaxHeaderLen + 3 // any headroom will do, even odd
			buf := bytes.Repeat([]byte{0xee}, off+len(payload)+5)
			copy(buf[off:], payload)
			start := Encap(buf, off, len(payload), proto, o, 1234)
			if start != off-HeaderLenFor(o) {
				t.Fatalf("%+v: start %d", o, start)
			}
			if !bytes.Equal(buf[:start], bytes.Repeat([]byte{0xee}, start)) ||
				!bytes.Equal(buf[off+len(payload):], bytes.Repeat([]byte{0xee}, 5)) {
				t.Fatalf("%+v: wrote outside the header: %x", o, buf)
			}
			pkt := buf[start : off+len(payload)]
			p := gopacket.NewPacket(pkt, layers.LayerTypeGRE, gopacket.Default)
			g, ok := p.Layer(layers.LayerTypeGRE).(*layers.GRE)
			if !ok {
				t.Fatalf("%+v: gopacket found no GRE: %v", o, p.ErrorLayer())
			}
			if uint16(g.Protocol) != proto || g.KeyPresent != o.UseKey || g.Key != o.Key ||
				g.SeqPresent != o.Sequence || (o.Sequence && g.Seq != 1234) || g.ChecksumPresent != o.Checksum ||
				g.Version != 0 || g.RoutingPresent || g.Flags != 0 || g.RecursionControl != 0 || g.Offset != 0 {
				t.Errorf("%+v: gopacket decoded %+v", o, g)
			}
			if !bytes.Equal(g.Payload, payload) {
				t.Errorf("%+v: payload %q", o, g.Payload)
			}
			// gopacket encoding the same header must give the same bytes
			// (checksum included, computed by gopacket).
			want := encodeGopacket(t, &layers.GRE{ChecksumPresent: o.Checksum, KeyPresent: o.UseKey, Key: o.Key,
				SeqPresent: o.Sequence, Seq: 1234, Protocol: layers.EthernetType(proto)}, payload)
			if !bytes.Equal(pkt, want) {
				t.Errorf("%+v: ours %x, gopacket %x", o, pkt, want)
			}
			gotProto, inner, info, err := Decap(pkt)
			if err != nil || gotProto != proto || !bytes.Equal(inner, payload) || info.HasKey != o.UseKey ||
				info.Key != o.Key || info.HasSequence != o.Sequence || info.HasChecksum != o.Checksum {
				t.Errorf("%+v: own packet decapsulated as %#x %q %+v %v", o, gotProto, inner, info, err)
			}
		}
	}
}

func TestChecksumDetectsCorruption(t *testing.T) {
	pkt := encodeGopacket(t, &layers.GRE{ChecksumPresent: true, KeyPresent: true, Key: 7, Protocol: layers.EthernetTypeIPv4}, payload)
	for i := range pkt {
		for _, flip := range []byte{0x01, 0x80} {
			if i < 2 {
				continue // flag bits change the packet's shape, not just its sum
			}
			bad := bytes.Clone(pkt)
			bad[i] ^= flip
			if _, _, _, err := Decap(bad); err != ErrChecksum {
				t.Errorf("byte %d ^ %#x: %v, want ErrChecksum", i, flip, err)
			}
		}
	}
}

func TestDecapRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkt  []byte
		err  error
	}{
		{"empty", nil, ErrShort},
		{"3 bytes", []byte{0, 0, 8}, ErrShort},
		{"version 1 (PPTP)", []byte{0x00, 0x01, 0x08, 0x00}, ErrVersion},
		{"routing", []byte{0x40, 0x00, 0x08, 0x00, 0, 0, 0, 0}, ErrRouting},
		{"strict source route", []byte{0x08, 0x00, 0x08, 0x00}, ErrReserved},
		{"key flag, no key", []byte{0x20, 0x00, 0x08, 0x00, 0, 0}, ErrShort},
		{"seq flag, short seq", []byte{0x10, 0x00, 0x08, 0x00, 0, 0, 0}, ErrShort},
		{"bad checksum", []byte{0x80, 0x00, 0x08, 0x00, 0x12, 0x34, 0, 0, 1, 2}, ErrChecksum},
	} {
		if _, _, _, err := Decap(tc.pkt); err != tc.err {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
}

func TestHeaderGettersShortViews(t *testing.T) {
	// Getters on views too short for what the flags announce return zero
	// for the missing fields instead of panicking.
	for _, tc := range []struct {
		h             Header
		proto, csum   uint16
		key, seq      uint32
		flags, hdrLen int
	}{
		{nil, 0, 0, 0, 0, 0, 4},
		{Header{0xb0}, 0, 0, 0, 0, 0, 4}, // too short even for the flags
		{Header{0xb0, 0, 8, 0}, 0x800, 0, 0, 0, 0xb000, 16},
		{Header{0xb0, 0, 8, 0, 1, 2, 3}, 0x800, 0, 0, 0, 0xb000, 16},
		{Header{0x30, 0, 8, 0, 1, 2, 3, 4, 5}, 0x800, 0, 0x01020304, 0, 0x3000, 12},
		{Header{0x30, 0, 8, 0, 0, 0, 0, 9, 0, 0, 1, 0}, 0x800, 0, 9, 256, 0x3000, 12},
		{Header{0x90, 0, 8, 0, 0xab, 0xcd, 0, 0, 0, 0, 0, 5}, 0x800, 0xabcd, 0, 5, 0x9000, 12},
	} {
		h := tc.h
		if h.Protocol() != tc.proto || h.Checksum() != tc.csum || h.Key() != tc.key || h.Sequence() != tc.seq ||
			int(h.Flags()) != tc.flags || h.Len() != tc.hdrLen || h.Version() != 0 {
			t.Errorf("%x: proto %#x csum %#x key %#x seq %d flags %#x len %d", []byte(h),
				h.Protocol(), h.Checksum(), h.Key(), h.Sequence(), h.Flags(), h.Len())
		}
	}
}

func TestErrorsDistinct(t *testing.T) {
	errs := []error{ErrShort, ErrVersion, ErrRouting, ErrReserved, ErrChecksum}
	for i, a := range errs {
		for j, b := range errs {
			if (i == j) != errors.Is(a, b) {
				t.Errorf("%v vs %v", a, b)
			}
		}
	}
}

func TestChecksumMatchesRFC1071(t *testing.T) {
	// Reference: 16-bit words, the textbook way.
	ref := func(b []byte) uint16 {
		var s uint32
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			s += uint32(b[len(b)-1]) << 8
		}
		for s > 0xffff {
			s = s>>16 + s&0xffff
		}
		return uint16(s)
	}
	b := make([]byte, 0, 300)
	for n := range 300 {
		if got, want := checksum(b), ref(b); got != want {
			t.Fatalf("len %d: %#x, want %#x", n, got, want)
		}
		b = append(b, byte(n*37+11)|0x80)
	}
	// All ones: every addition carries.
	ones := bytes.Repeat([]byte{0xff}, 1001)
	for n := range len(ones) {
		if got, want := checksum(ones[:n]), ref(ones[:n]); got != want {
			t.Fatalf("%d x 0xff: %#x, want %#x", n, got, want)
		}
	}
}

// FuzzDecap: no input panics, and what Decap accepts re-encapsulates to
// the same bytes (apart from the reserved bits it ignores).
func FuzzDecap(f *testing.F) {
	f.Add([]byte{0, 0, 8, 0, 0x45})
	f.Add([]byte{0xb0, 0, 0x86, 0xdd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Add([]byte{0x20, 0, 8, 0, 1, 2, 3, 4})
	f.Add([]byte{0x03, 0xf8, 8, 0, 9})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		proto, inner, info, err := Decap(pkt)
		if err != nil {
			if inner != nil || proto != 0 {
				t.Fatalf("error %v with proto %#x payload %x", err, proto, inner)
			}
			return
		}
		o := Options{UseKey: info.HasKey, Key: info.Key, Sequence: info.HasSequence, Checksum: info.HasChecksum}
		hl := HeaderLenFor(o)
		if hl+len(inner) != len(pkt) || hl != Header(pkt).Len() {
			t.Fatalf("header %d + payload %d != packet %d", hl, len(inner), len(pkt))
		}
		buf := make([]byte, len(pkt))
		copy(buf[hl:], inner)
		if Encap(buf, hl, len(inner), proto, o, info.Sequence) != 0 {
			t.Fatal("Encap did not start at 0")
		}
		want := bytes.Clone(pkt)
		want[0] &^= 0x03 // bits 6-7
		want[1] = 0      // bits 8-12 and version
		if o.Checksum {
			want[6], want[7] = 0, 0 // reserved1
			// The checksum field is recomputed over the cleaned header.
			copy(want[4:6], buf[4:6])
			if _, _, _, err := Decap(buf); err != nil {
				t.Fatalf("re-encapsulated packet refused: %v", err)
			}
		}
		if !bytes.Equal(buf, want) {
			t.Fatalf("round trip %x -> %x", pkt, buf)
		}
	})
}

var sink int

func benchmarkEncap(b *testing.B, o Options) {
	buf := make([]byte, MaxHeaderLen+1400)
	b.SetBytes(1400)
	b.ReportAllocs()
	for b.Loop() {
		sink += Encap(buf, MaxHeaderLen, 1400, ProtoIPv4, o, 7)
	}
}

func BenchmarkEncap(b *testing.B) { benchmarkEncap(b, Options{}) }
func BenchmarkEncapKeySeq(b *testing.B) {
	benchmarkEncap(b, Options{UseKey: true, Key: 1, Sequence: true})
}
func BenchmarkEncapChecksum(b *testing.B) { benchmarkEncap(b, Options{Checksum: true}) }

func benchmarkDecap(b *testing.B, o Options) {
	buf := make([]byte, MaxHeaderLen+1400)
	start := Encap(buf, MaxHeaderLen, 1400, ProtoIPv4, o, 7)
	pkt := buf[start:]
	b.SetBytes(1400)
	b.ReportAllocs()
	for b.Loop() {
		_, inner, _, err := Decap(pkt)
		if err != nil {
			b.Fatal(err)
		}
		sink += len(inner)
	}
}

func BenchmarkDecap(b *testing.B) { benchmarkDecap(b, Options{}) }
func BenchmarkDecapKeySeq(b *testing.B) {
	benchmarkDecap(b, Options{UseKey: true, Key: 1, Sequence: true})
}
func BenchmarkDecapChecksum(b *testing.B) { benchmarkDecap(b, Options{Checksum: true}) }

// TestNoAllocs: the data path allocates nothing, refusals included.
func TestNoAllocs(t *testing.T) {
	buf := make([]byte, MaxHeaderLen+1400)
	bad := []byte{0x80, 0, 8, 0, 1, 2, 3, 4, 5}
	allocs := testing.AllocsPerRun(100, func() {
		for _, o := range []Options{{}, {UseKey: true, Key: 1, Sequence: true, Checksum: true}} {
			start := Encap(buf, MaxHeaderLen, 1400, ProtoIPv6, o, 9)
			if _, _, _, err := Decap(buf[start:]); err != nil {
				panic(err)
			}
		}
		if _, _, _, err := Decap(bad); err != ErrChecksum {
			panic(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}
