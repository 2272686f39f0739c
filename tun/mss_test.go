package tun

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// synPacket builds a TCP SYN with gopacket (an independent encoder, which
// also computes the checksum) carrying the given options.
func synPacket(t testing.TB, v6, syn bool, opts []layers.TCPOption, fragOffset uint16) []byte {
	t.Helper()
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 179, Seq: 1, SYN: syn, ACK: !syn, Window: 65535, Options: opts}
	var ip gopacket.SerializableLayer
	if v6 {
		ip6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, HopLimit: 64,
			SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
		tcp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	} else {
		ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, FragOffset: fragOffset,
			SrcIP: net.ParseIP("198.19.0.0"), DstIP: net.ParseIP("198.19.0.1")}
		tcp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, ip, tcp, gopacket.Payload([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mssOpt(v uint16) layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{byte(v >> 8), byte(v)}}
}

var nop = layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}

// decode parses pkt with gopacket and returns its MSS (0 if none), and
// whether the TCP checksum verifies over the pseudo-header (RFC 1071 sum).
func decode(t testing.TB, pkt []byte, v6 bool) (mss uint16, csumOK bool) {
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
			mss = uint16(o.OptionData[0])<<8 | uint16(o.OptionData[1])
		}
	}
	return mss, tcpChecksumOK(pkt, v6)
}

func tcpChecksumOK(pkt []byte, v6 bool) bool {
	var pseudo, seg []byte
	if v6 {
		if len(pkt) < 40 {
			return false
		}
		seg = pkt[40:]
		n := len(seg)
		pseudo = append(append([]byte{}, pkt[8:40]...), 0, 0, byte(n>>8), byte(n), 0, 0, 0, 6)
	} else {
		ihl := int(pkt[0]&0x0f) * 4
		if len(pkt) < ihl {
			return false
		}
		seg = pkt[ihl:]
		n := len(seg)
		pseudo = append(append([]byte{}, pkt[12:20]...), 0, 6, byte(n>>8), byte(n))
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
		v6, syn    bool
		opts       []layers.TCPOption
		frag       uint16
		wantChange bool
		wantMSS    uint16
	}{
		{"v4 syn 1460", false, true, []layers.TCPOption{mssOpt(1460)}, 0, true, 1402},
		{"v4 syn odd offset", false, true, []layers.TCPOption{nop, mssOpt(1460), nop, nop, nop}, 0, true, 1402},
		{"v4 syn already small", false, true, []layers.TCPOption{mssOpt(536)}, 0, false, 536},
		{"v4 syn exactly max", false, true, []layers.TCPOption{mssOpt(1402)}, 0, false, 1402},
		{"v4 not syn", false, false, []layers.TCPOption{mssOpt(1460)}, 0, false, 1460},
		{"v4 no mss", false, true, []layers.TCPOption{nop, nop, nop, nop}, 0, false, 0},
		{"v4 fragment", false, true, []layers.TCPOption{mssOpt(1460)}, 100, false, 1460},
		{"v4 mss after sack-perm and wscale", false, true, []layers.TCPOption{
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
			mssOpt(8960)}, 0, true, 1402},
		{"v6 syn 1440", true, true, []layers.TCPOption{mssOpt(1440)}, 0, true, 1382},
		{"v6 syn odd offset", true, true, []layers.TCPOption{nop, mssOpt(65000), nop, nop, nop}, 0, true, 1382},
		{"v6 syn small", true, true, []layers.TCPOption{mssOpt(1220)}, 0, false, 1220},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := synPacket(t, tc.v6, tc.syn, tc.opts, tc.frag)
			if tc.frag != 0 {
				// gopacket will not parse TCP in a non-first fragment; just
				// check we leave it alone.
				before := string(pkt)
				if ClampMSS(pkt, 1402, 1382) || string(pkt) != before {
					t.Fatal("changed a non-first fragment")
				}
				return
			}
			if changed := ClampMSS(pkt, 1402, 1382); changed != tc.wantChange {
				t.Errorf("changed = %v, want %v", changed, tc.wantChange)
			}
			mss, ok := decode(t, pkt, tc.v6)
			if mss != tc.wantMSS {
				t.Errorf("MSS %d, want %d", mss, tc.wantMSS)
			}
			if !ok {
				t.Error("TCP checksum no longer verifies")
			}
		})
	}
}

func TestClampMSSMalformed(t *testing.T) {
	good := synPacket(t, false, true, []layers.TCPOption{mssOpt(1460)}, 0)
	for i := range good {
		// Every truncation is either left alone or still parses.
		p := append([]byte(nil), good[:i]...)
		ClampMSS(p, 1402, 1382)
	}
	bad := append([]byte(nil), good...)
	bad[20+20+1] = 0 // option length 0 would loop forever if trusted
	if ClampMSS(bad, 1402, 1382) {
		t.Error("clamped through a zero-length option")
	}
}

func FuzzClampMSS(f *testing.F) {
	f.Add(synPacket(f, false, true, []layers.TCPOption{mssOpt(1460)}, 0))
	f.Add(synPacket(f, true, true, []layers.TCPOption{nop, mssOpt(9000), nop, nop, nop}, 0))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		before := append([]byte(nil), pkt...)
		if !ClampMSS(pkt, 1402, 1382) {
			if string(before) != string(pkt) {
				t.Fatal("changed the packet but said it did not")
			}
			return
		}
		// A change keeps a valid checksum valid.
		v6 := pkt[0]>>4 == 6
		if tcpChecksumOK(before, v6) && !tcpChecksumOK(pkt, v6) {
			t.Fatalf("checksum broken by clamping: %x -> %x", before, pkt)
		}
	})
}

func BenchmarkClampMSS(b *testing.B) {
	pkt := synPacket(b, false, true, []layers.TCPOption{mssOpt(1460)}, 0)
	b.ReportAllocs()
	for b.Loop() {
		pkt[42], pkt[43] = 0x05, 0xb4 // 1460 again; checksum drifts, which the clamp ignores
		ClampMSS(pkt, 1402, 1382)
	}
}
