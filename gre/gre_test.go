package gre

import (
	"bytes"
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
		})
	}
}

func TestEncapDecodedByGopacket(t *testing.T) {
	for _, o := range []Options{{}, {UseKey: true, Key: 42}, {Sequence: true}, {Checksum: true}, {Checksum: true, UseKey: true, Key: 1, Sequence: true}} {
		buf := make([]byte, 16+len(payload))
		copy(buf[16:], payload)
		start := Encap(buf, 16, len(payload), ProtoIPv6, o, 1234)
		if start != 16-HeaderLenFor(o) {
			t.Fatalf("%+v: start %d", o, start)
		}
		pkt := gopacket.NewPacket(buf[start:], layers.LayerTypeGRE, gopacket.Default)
		g, ok := pkt.Layer(layers.LayerTypeGRE).(*layers.GRE)
		if !ok {
			t.Fatalf("%+v: gopacket found no GRE: %v", o, pkt.ErrorLayer())
		}
		if g.Protocol != layers.EthernetTypeIPv6 || g.KeyPresent != o.UseKey || g.Key != o.Key ||
			g.SeqPresent != o.Sequence || (o.Sequence && g.Seq != 1234) || g.ChecksumPresent != o.Checksum {
			t.Errorf("%+v: gopacket decoded %+v", o, g)
		}
		if !bytes.Equal(g.Payload, payload) {
			t.Errorf("%+v: payload %q", o, g.Payload)
		}
		if o.Checksum {
			// gopacket re-serialising with checksums must agree with ours.
			want := encodeGopacket(t, &layers.GRE{ChecksumPresent: true, KeyPresent: o.UseKey, Key: o.Key, SeqPresent: o.Sequence, Seq: 1234, Protocol: layers.EthernetTypeIPv6}, payload)
			if !bytes.Equal(buf[start:], want) {
				t.Errorf("%+v: ours %x, gopacket %x", o, buf[start:], want)
			}
		}
		if _, _, _, err := Decap(buf[start:]); err != nil {
			t.Errorf("%+v: own packet refused: %v", o, err)
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
		{"bad checksum", []byte{0x80, 0x00, 0x08, 0x00, 0x12, 0x34, 0, 0, 1, 2}, ErrChecksum},
	} {
		if _, _, _, err := Decap(tc.pkt); err != tc.err {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
}

func FuzzDecap(f *testing.F) {
	f.Add([]byte{0, 0, 8, 0, 0x45})
	f.Add([]byte{0xb0, 0, 0x86, 0xdd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Add([]byte{0x20, 0, 8, 0, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		proto, inner, info, err := Decap(pkt)
		if err != nil {
			return
		}
		// Re-encapsulating what we accepted gives back the same bytes.
		o := Options{UseKey: info.HasKey, Key: info.Key, Sequence: info.HasSequence, Checksum: info.HasChecksum}
		hl := HeaderLenFor(o)
		if hl+len(inner) != len(pkt) {
			t.Fatalf("header %d + payload %d != packet %d", hl, len(inner), len(pkt))
		}
		buf := make([]byte, len(pkt))
		copy(buf[hl:], inner)
		Encap(buf, hl, len(inner), proto, o, info.Sequence)
		if o.Checksum {
			// The checksum field is recomputed; the rest must match.
			if _, _, _, err := Decap(buf); err != nil {
				t.Fatalf("re-encapsulated packet refused: %v", err)
			}
			return
		}
		if !bytes.Equal(buf, pkt) {
			t.Fatalf("round trip %x -> %x", pkt, buf)
		}
	})
}

func BenchmarkEncap(b *testing.B) {
	buf := make([]byte, 1500)
	b.ReportAllocs()
	for b.Loop() {
		Encap(buf, 16, 1400, ProtoIPv4, Options{}, 0)
	}
}

func BenchmarkDecap(b *testing.B) {
	buf := make([]byte, 1404)
	Encap(buf, 4, 1400, ProtoIPv4, Options{UseKey: true, Key: 1}, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := Decap(buf[:1404]); err != nil {
			b.Fatal(err)
		}
	}
}
