package tunnel

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"go.uber.org/zap"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/gre"
	"github.com/gresec/gresec/rawip"
)

// ipv4 is an IPv4 header with IHL ihl words and total length total,
// followed by body zero bytes (the packet's real length is 20+body).
func ipv4(ihl byte, total uint16, body int) []byte {
	p := make([]byte, 20+body)
	p[0] = 0x40 | ihl
	binary.BigEndian.PutUint16(p[2:], total)
	p[8], p[9] = 64, 17
	copy(p[12:], []byte{198, 19, 0, 0, 198, 19, 0, 1})
	return p
}

// ipv6 is an IPv6 header with payload length payload, followed by body
// zero bytes.
func ipv6(payload uint16, body int) []byte {
	p := make([]byte, 40+body)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], payload)
	p[6], p[7] = 17, 64
	return p
}

// plainGRE is a tunnel with keying = "none": decapsulate sees the GRE
// payload as it came.
func plainGRE() *Tunnel {
	cfg := &config.Config{Local: netip.MustParseAddr("198.18.0.2"), Remote: netip.MustParseAddr("198.18.0.1"), MTU: 1476, Keying: config.KeyingNone}
	return &Tunnel{cfg: cfg, log: zap.NewNop(), remote: cfg.Remote}
}

// receiveGRE hands decapsulate one GRE packet carrying inner as proto and
// returns what would be written to the TUN (without the headroom), or nil.
func receiveGRE(t *Tunnel, proto uint16, inner []byte) []byte {
	base := make([]byte, tunWriteOffset+recvBufSize)
	m := rawip.Message{Buf: base[tunWriteOffset:], Addr: t.remote}
	binary.BigEndian.PutUint16(m.Buf[2:], proto)
	m.N = gre.HeaderLen + copy(m.Buf[gre.HeaderLen:], inner)
	out := t.decapsulate(&m, base)
	if out == nil {
		return nil
	}
	return out[tunWriteOffset:]
}

// TestInnerPacketLengths: inner packets whose IP header lengths do not
// fit the bytes that came are dropped as inner_malformed, never written
// to the TUN; bytes beyond the stated length are cut off, as the kernel
// does.
func TestInnerPacketLengths(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto uint16
		pkt   []byte
		want  int // bytes delivered; -1: dropped
	}{
		{"ipv4 ok", gre.ProtoIPv4, ipv4(5, 48, 28), 48},
		{"ipv4 header only", gre.ProtoIPv4, ipv4(5, 20, 0), 20},
		{"ipv4 with options", gre.ProtoIPv4, ipv4(6, 48, 28), 48},
		{"ipv4 IHL 15, 60-byte header", gre.ProtoIPv4, ipv4(15, 60, 40), 60},
		{"ipv4 trailing bytes cut", gre.ProtoIPv4, ipv4(5, 40, 60), 40},
		{"ipv4 IHL 0", gre.ProtoIPv4, ipv4(0, 48, 28), -1},
		{"ipv4 IHL 4", gre.ProtoIPv4, ipv4(4, 48, 28), -1},
		{"ipv4 IHL 15 beyond the packet", gre.ProtoIPv4, ipv4(15, 48, 28), -1},
		{"ipv4 IHL 6 beyond a header-only packet", gre.ProtoIPv4, ipv4(6, 24, 0), -1},
		{"ipv4 total under the header", gre.ProtoIPv4, ipv4(5, 19, 28), -1},
		{"ipv4 total 0", gre.ProtoIPv4, ipv4(5, 0, 28), -1},
		{"ipv4 total under IHL*4", gre.ProtoIPv4, ipv4(8, 28, 28), -1},
		{"ipv4 total one beyond", gre.ProtoIPv4, ipv4(5, 49, 28), -1},
		{"ipv4 total 65535", gre.ProtoIPv4, ipv4(5, 65535, 28), -1},
		{"ipv4 truncated header", gre.ProtoIPv4, ipv4(5, 20, 0)[:19], -1},
		{"ipv4 empty", gre.ProtoIPv4, nil, -1},
		{"ipv4 as ipv6", gre.ProtoIPv6, ipv4(5, 48, 28), -1},
		{"ipv6 ok", gre.ProtoIPv6, ipv6(8, 8), 48},
		{"ipv6 trailing bytes cut", gre.ProtoIPv6, ipv6(8, 30), 48},
		{"ipv6 payload 0 (jumbogram)", gre.ProtoIPv6, ipv6(0, 8), -1},
		{"ipv6 payload 0, header only", gre.ProtoIPv6, ipv6(0, 0), -1},
		{"ipv6 payload one beyond", gre.ProtoIPv6, ipv6(9, 8), -1},
		{"ipv6 payload 65535", gre.ProtoIPv6, ipv6(65535, 8), -1},
		{"ipv6 truncated header", gre.ProtoIPv6, ipv6(8, 8)[:39], -1},
		{"ipv6 as ipv4", gre.ProtoIPv4, ipv6(8, 8), -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := plainGRE()
			got := receiveGRE(tn, tc.proto, tc.pkt)
			drops := tn.Status().Drops["inner_malformed"]
			switch {
			case tc.want < 0 && got != nil:
				t.Errorf("delivered %d bytes, want a drop", len(got))
			case tc.want < 0 && drops != 1:
				t.Errorf("inner_malformed = %d, want 1", drops)
			case tc.want >= 0 && (got == nil || len(got) != tc.want):
				t.Errorf("delivered %d bytes (dropped %v, drops %v), want %d", len(got), got == nil, tn.Status().Drops, tc.want)
			case tc.want >= 0 && (drops != 0 || string(got) != string(tc.pkt[:tc.want])):
				t.Errorf("delivered the wrong bytes or counted a drop (%d)", drops)
			}
		})
	}
}

// TestInnerMalformedThroughESP: the same check on the ESP path, where
// the inner packet is what an authenticated peer sealed.
func TestInnerMalformedThroughESP(t *testing.T) {
	a, b := newPipe(t, 1024)
	for i, inner := range [][]byte{ipv4(5, 200, 28), ipv4(3, 48, 28), ipv6(0, 20), udpPacket(100)} {
		buf := make([]byte, sendHeadroom+a.cfg.MTU+sendTailroom)
		copy(buf[sendHeadroom:], inner)
		var m rawip.Message
		if !a.encapsulate(&m, buf, len(inner), a.sadb.Outbound()) {
			t.Fatalf("packet %d: dropped on send", i)
		}
		base := make([]byte, tunWriteOffset+recvBufSize)
		rm := rawip.Message{Buf: base[tunWriteOffset:], Addr: b.remote}
		rm.N = copy(rm.Buf, m.Buf[m.Off:m.Off+m.N])
		got := b.decapsulate(&rm, base)
		if want := i == 3; (got != nil) != want {
			t.Errorf("packet %d: delivered %v, want %v", i, got != nil, want)
		}
	}
	if st := b.Status(); st.Drops["inner_malformed"] != 3 || st.Inbound[0].Packets != 4 {
		t.Errorf("inner_malformed %d (want 3), SA packets %d (want 4)", st.Drops["inner_malformed"], st.Inbound[0].Packets)
	}
}

// TestEncapsulateShortPackets: whatever the TUN hands the send pump,
// short or with a lying header, it is sent or counted, never a panic.
func TestEncapsulateShortPackets(t *testing.T) {
	a, _ := newPipe(t, 1024)
	sa := a.sadb.Outbound()
	sent := 0
	for size := 0; size <= 64; size++ {
		for _, first := range []byte{0x00, 0x40, 0x45, 0x4f, 0x60, 0x6f, 0xff} {
			buf := make([]byte, sendHeadroom+a.cfg.MTU+sendTailroom)
			pkt := buf[sendHeadroom : sendHeadroom+size]
			for i := range pkt {
				pkt[i] = 0xff // lengths, IHL and TCP data offset all at their largest
			}
			if size > 0 {
				pkt[0] = first
			}
			if size > 9 {
				pkt[6], pkt[9] = 6, 6 // TCP for both versions: the MSS clamp looks inside
			}
			var m rawip.Message
			if a.encapsulate(&m, buf, size, sa) {
				sent++
				if m.N < size {
					t.Fatalf("size %d: an ESP packet of %d bytes", size, m.N)
				}
			}
		}
	}
	st := a.Status()
	if uint64(sent) != st.Outbound.Packets || st.Drops["not_ip"] == 0 || sent == 0 {
		t.Errorf("sent %d, SA counted %d, not_ip %d", sent, st.Outbound.Packets, st.Drops["not_ip"])
	}
}

// BenchmarkDecapsulateMalformed is the cost of refusing a malformed inner
// packet on the plain GRE path: no allocation.
func BenchmarkDecapsulateMalformed(b *testing.B) {
	for _, c := range []struct {
		name  string
		proto uint16
		pkt   []byte
	}{{"ipv4-total", gre.ProtoIPv4, ipv4(5, 1400, 28)}, {"ipv6-payload0", gre.ProtoIPv6, ipv6(0, 28)}} {
		b.Run(c.name, func(b *testing.B) {
			tn := plainGRE()
			base := make([]byte, tunWriteOffset+recvBufSize)
			m := rawip.Message{Buf: base[tunWriteOffset:], Addr: tn.remote}
			binary.BigEndian.PutUint16(m.Buf[2:], c.proto)
			m.N = gre.HeaderLen + copy(m.Buf[gre.HeaderLen:], c.pkt)
			b.ReportAllocs()
			for b.Loop() {
				if tn.decapsulate(&m, base) != nil {
					b.Fatal("delivered")
				}
			}
			if got := tn.Status().Drops["inner_malformed"]; got == 0 {
				b.Fatalf("no drop counted: %v", tn.Status().Drops)
			}
		})
	}
}
