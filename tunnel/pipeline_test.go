package tunnel

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"go.uber.org/zap"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/rawip"
)

// newPipe returns two tunnels whose SAs match crosswise, with no devices:
// enough to drive encapsulate and decapsulate in-process.
func newPipe(tb testing.TB, replayWindow int) (a, b *Tunnel) {
	tb.Helper()
	keyAB := make([]byte, 36)
	keyBA := make([]byte, 36)
	for i := range keyAB {
		keyAB[i], keyBA[i] = byte(i), byte(100+i)
	}
	mk := func(local, remote string, spiOut, spiIn uint32, out, in []byte) *Tunnel {
		cfg := &config.Config{
			Local: netip.MustParseAddr(local), Remote: netip.MustParseAddr(remote),
			MTU: 1442, MSSClamp: true, Keying: config.KeyingStatic, ReplayWindow: replayWindow,
		}
		t := &Tunnel{cfg: cfg, log: zap.NewNop(), remote: cfg.Remote, sadb: &esp.DB{},
			mss4: uint16(cfg.MSS4()), mss6: uint16(cfg.MSS6())}
		t.setUnderlay()
		saOut, err := esp.NewSA(spiOut, out, 0)
		if err != nil {
			tb.Fatal(err)
		}
		saIn, err := esp.NewSA(spiIn, in, replayWindow)
		if err != nil {
			tb.Fatal(err)
		}
		t.sadb.SetOutbound(saOut)
		t.sadb.AddInbound(saIn)
		return t
	}
	a = mk("198.18.0.1", "198.18.0.2", 0x1001, 0x1002, keyAB, keyBA)
	b = mk("198.18.0.2", "198.18.0.1", 0x1002, 0x1001, keyBA, keyAB)
	return a, b
}

// udpPacket builds an IPv4/UDP packet of the given total size.
func udpPacket(size int) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(size))
	p[8], p[9] = 64, 17
	copy(p[12:], []byte{198, 19, 0, 0, 198, 19, 0, 1})
	binary.BigEndian.PutUint16(p[20:], 9)
	binary.BigEndian.PutUint16(p[22:], 9)
	binary.BigEndian.PutUint16(p[24:], uint16(size-20))
	for i := 28; i < size; i++ {
		p[i] = byte(i)
	}
	return p
}

// TestPipelineRoundTrip sends packets of every interesting size from a to b
// in-process and checks they arrive unchanged with 4 bytes of free space in
// front for the TUN writer.
func TestPipelineRoundTrip(t *testing.T) {
	a, b := newPipe(t, 1024)
	for _, size := range []int{28, 29, 30, 31, 100, 1000, 1441, 1442} {
		inner := udpPacket(size)
		buf := make([]byte, sendHeadroom+a.cfg.MTU+sendTailroom)
		copy(buf[sendHeadroom:], inner)
		msgs := make([]rawip.Message, 1)
		if a.encapsulateBatch(msgs, [][]byte{buf}, []int{size}) != 1 {
			t.Fatalf("size %d: dropped on send: %v", size, a.Status().Drops)
		}
		m := msgs[0]
		wire := m.Buf[m.Off : m.Off+m.N]
		if want := size + 4 + esp.Overhead(size+4); len(wire) != want {
			t.Errorf("size %d: ESP packet %d bytes, want %d", size, len(wire), want)
		}
		if size == 1442 && len(wire)+20 != 1500 {
			t.Errorf("a full-MTU packet makes a %d-byte IPv4 packet, want 1500", len(wire)+20)
		}

		base := make([]byte, tunWriteOffset+recvBufSize)
		rm := rawip.Message{Buf: base[tunWriteOffset:], Addr: b.remote}
		rm.N = copy(rm.Buf, wire)
		out := b.decapsulateBatch(nil, []rawip.Message{rm}, [][]byte{base})
		if len(out) != 1 {
			t.Fatalf("size %d: dropped on receive: tunnel %v, SA %+v", size, b.Status().Drops, b.Status().Inbound)
		}
		if string(out[0][tunWriteOffset:]) != string(inner) {
			t.Fatalf("size %d: inner packet changed in transit", size)
		}
	}
	if st := b.Status(); st.Inner.RxPackets != 8 || st.Inbound[0].Packets != 8 {
		t.Errorf("receiver counted %d inner / %d SA packets, want 8", st.Inner.RxPackets, st.Inbound[0].Packets)
	}
	if st := a.Status(); st.Inner.TxPackets != 8 || st.Outbound.Packets != 8 {
		t.Errorf("sender counted %d inner / %d SA packets, want 8", st.Inner.TxPackets, st.Outbound.Packets)
	}
}

func TestDecapsulateCountsDrops(t *testing.T) {
	a, b := newPipe(t, 1024)
	seal := func() []byte {
		buf := make([]byte, sendHeadroom+a.cfg.MTU+sendTailroom)
		copy(buf[sendHeadroom:], udpPacket(200))
		var m rawip.Message
		a.encapsulate(&m, buf, 200, a.sadb.Outbound())
		return append([]byte(nil), m.Buf[m.Off:m.Off+m.N]...)
	}
	recv := func(wire []byte, from netip.Addr) bool {
		base := make([]byte, tunWriteOffset+recvBufSize)
		rm := rawip.Message{Buf: base[tunWriteOffset:], Addr: from}
		rm.N = copy(rm.Buf, wire)
		return b.decapsulate(&rm, base) != nil
	}
	good := seal()
	if recv(good, netip.MustParseAddr("198.18.0.9")) {
		t.Error("accepted a packet from a stranger")
	}
	if !recv(good, b.remote) {
		t.Fatal("refused a good packet")
	}
	if recv(good, b.remote) {
		t.Error("accepted a replay")
	}
	bad := seal()
	binary.BigEndian.PutUint32(bad, 0xdead)
	if recv(bad, b.remote) {
		t.Error("accepted an unknown SPI")
	}
	if recv(good[:10], b.remote) {
		t.Error("accepted a truncated packet")
	}
	st := b.Status()
	for k, want := range map[string]uint64{"unknown_peer": 1, "esp_bad_spi": 1} {
		if st.Drops[k] != want {
			t.Errorf("drop %s = %d, want %d (all %v)", k, st.Drops[k], want, st.Drops)
		}
	}
	if st.Inbound[0].Drops["replay"] != 1 {
		t.Errorf("SA drops %v, want one replay", st.Inbound[0].Drops)
	}
}

var benchSizes = []int{64, 1400}

// BenchmarkEncapSeal is the per-packet send path: MSS check, GRE, ESP seal.
// Compare with BenchmarkBaselineAESGCMSeal on the same buffer size.
func BenchmarkEncapSeal(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			a, _ := newPipe(b, 1024)
			sa := a.sadb.Outbound()
			inner := udpPacket(size)
			buf := make([]byte, sendHeadroom+a.cfg.MTU+sendTailroom)
			copy(buf[sendHeadroom:], inner)
			var m rawip.Message
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				// Seal encrypted the header in place: restore it.
				copy(buf[sendHeadroom:sendHeadroom+28], inner)
				if !a.encapsulate(&m, buf, size, sa) {
					b.Fatal("dropped")
				}
			}
		})
	}
}

// BenchmarkOpenDecap is the per-packet receive path: SA lookup, ESP open
// with replay check, GRE decap, MSS check. Each iteration restores the
// sealed packet (Open decrypts in place), as the baseline does.
func BenchmarkOpenDecap(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			a, r := newPipe(b, 0) // no replay window: the same packet is opened again and again
			buf := make([]byte, sendHeadroom+a.cfg.MTU+sendTailroom)
			copy(buf[sendHeadroom:], udpPacket(size))
			var m rawip.Message
			a.encapsulate(&m, buf, size, a.sadb.Outbound())
			wire := m.Buf[m.Off : m.Off+m.N]
			base := make([]byte, tunWriteOffset+recvBufSize)
			rm := rawip.Message{Buf: base[tunWriteOffset:], Addr: r.remote, N: len(wire)}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				copy(rm.Buf, wire)
				if r.decapsulate(&rm, base) == nil {
					b.Fatal("dropped")
				}
			}
		})
	}
}

func baselineAEAD(b *testing.B) (cipher.AEAD, []byte) {
	key := make([]byte, 32)
	block, _ := aes.NewCipher(key)
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	return aead, make([]byte, 12)
}

// BenchmarkBaselineAESGCMSeal is bare AES-256-GCM sealing the same number
// of bytes in place (GRE + inner + ESP trailer), with ESP's 8-byte AAD.
func BenchmarkBaselineAESGCMSeal(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			aead, nonce := baselineAEAD(b)
			n := size + 4 + 2
			buf := make([]byte, n+16)
			aad := make([]byte, 8)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				aead.Seal(buf[:0], nonce, buf[:n], aad)
			}
		})
	}
}

// BenchmarkBaselineAESGCMOpen restores and opens a sealed buffer of the
// same size, as BenchmarkOpenDecap does.
func BenchmarkBaselineAESGCMOpen(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			aead, nonce := baselineAEAD(b)
			n := size + 4 + 2
			aad := make([]byte, 8)
			sealed := aead.Seal(nil, nonce, make([]byte, n), aad)
			buf := make([]byte, len(sealed))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, sealed)
				if _, err := aead.Open(buf[:0], nonce, buf, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBatchRoundTrip is one TUN read's worth of a TCP stream (44
// full-size packets, what a 64 KiB super-packet splits into) sealed as
// the send pump does and opened as the receive pump does, counters
// included: 0 allocs/op means none per packet or per batch.
func BenchmarkBatchRoundTrip(b *testing.B) {
	const n = 44
	a, r := newPipe(b, 0) // no replay window: the same batch is opened again and again
	inner := udpPacket(a.cfg.MTU)
	bufs, sizes := make([][]byte, n), make([]int, n)
	msgs := make([]rawip.Message, n)
	rmsgs, bases := make([]rawip.Message, n), make([][]byte, n)
	for i := range n {
		bufs[i], sizes[i] = make([]byte, sendHeadroom+a.cfg.MTU+sendTailroom), len(inner)
		bases[i] = make([]byte, tunWriteOffset+recvBufSize)
		rmsgs[i] = rawip.Message{Buf: bases[i][tunWriteOffset:], Addr: r.remote}
	}
	out := make([][]byte, 0, n)
	b.SetBytes(int64(n * len(inner)))
	b.ReportAllocs()
	for b.Loop() {
		for i := range n {
			copy(bufs[i][sendHeadroom:], inner)
		}
		if a.encapsulateBatch(msgs, bufs, sizes) != n {
			b.Fatal("dropped on send")
		}
		for i := range n {
			rmsgs[i].Off, rmsgs[i].N = 0, copy(rmsgs[i].Buf, msgs[i].Buf[msgs[i].Off:msgs[i].Off+msgs[i].N])
		}
		if out = r.decapsulateBatch(out[:0], rmsgs, bases); len(out) != n {
			b.Fatal("dropped on receive")
		}
	}
}
