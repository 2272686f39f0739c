package tunnel

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"go.uber.org/zap"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/rawip"
)

// Inner addresses of the VTI tests: a's and b's, per family.
var (
	vtiA4, vtiB4 = netip.MustParseAddr("198.19.0.0"), netip.MustParseAddr("198.19.0.1")
	vtiA6, vtiB6 = netip.MustParseAddr("2001:db8:19::"), netip.MustParseAddr("2001:db8:19::1")
)

// vtiPipe is two VTI tunnels keyed by IKE with one CHILD_SA per family,
// as strongSwan negotiates with two children: IPv4 first (SPIs 0x41/0x42),
// then IPv6 (0x61/0x62), each narrowed to the host addresses.
func vtiPipe(tb testing.TB) (a, b *Tunnel) {
	tb.Helper()
	mk := func(local, remote string) *Tunnel {
		cfg := &config.Config{Local: netip.MustParseAddr(local), Remote: netip.MustParseAddr(remote), UnderlayMTU: 1500,
			Keying: config.KeyingIKEv2, ReplayWindow: 1024, Mode: config.ModeTunnel, Encap: config.EncapNone}
		cfg.MTU = cfg.ComputedMTU()
		t := &Tunnel{cfg: cfg, log: zap.NewNop(), remote: cfg.Remote, sadb: &esp.DB{}}
		t.setUnderlay()
		t.setShape()
		return t
	}
	a, b = mk("198.18.0.1", "198.18.0.2"), mk("198.18.0.2", "198.18.0.1")
	host := func(x netip.Addr) []ike.TrafficSelector {
		return []ike.TrafficSelector{ike.RangeSelector(netip.PrefixFrom(x, x.BitLen()))}
	}
	for _, c := range []struct {
		spiA, spiB uint32
		a, b       netip.Addr
	}{{0x41, 0x42, vtiA4, vtiB4}, {0x61, 0x62, vtiA6, vtiB6}} {
		kAB, kBA := bytes.Repeat([]byte{byte(c.spiA)}, 36), bytes.Repeat([]byte{byte(c.spiB)}, 36)
		if err := b.InstallChild(ike.ChildKeys{Suite: gcm256, SPIIn: c.spiB, SPIOut: c.spiA, KeyIn: kAB, KeyOut: kBA, ReplayWindow: 1024,
			KeepOutbound: true, LocalTS: host(c.b), RemoteTS: host(c.a)}); err != nil {
			tb.Fatal(err)
		}
		if err := a.InstallChild(ike.ChildKeys{Suite: gcm256, SPIIn: c.spiA, SPIOut: c.spiB, KeyIn: kBA, KeyOut: kAB, ReplayWindow: 1024,
			LocalTS: host(c.a), RemoteTS: host(c.b)}); err != nil {
			tb.Fatal(err)
		}
	}
	return a, b
}

// innerUDP is a UDP packet of size bytes from src to dst.
func innerUDP(src, dst netip.Addr, size int) []byte {
	p := make([]byte, size)
	if src.Is4() {
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:], uint16(size))
		p[8], p[9] = 64, 17
		copy(p[12:16], src.AsSlice())
		copy(p[16:20], dst.AsSlice())
		return p
	}
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(size-40))
	p[6], p[7] = 17, 64
	copy(p[8:24], src.AsSlice())
	copy(p[24:40], dst.AsSlice())
	return p
}

// sendBatch runs a's send path over the packets and returns the ESP
// packets it would write.
func sendBatch(a *Tunnel, pkts ...[]byte) [][]byte {
	bufs, sizes := make([][]byte, len(pkts)), make([]int, len(pkts))
	for i, p := range pkts {
		bufs[i] = make([]byte, sendHeadroom+a.cfg.MTU+sendTailroom)
		sizes[i] = copy(bufs[i][sendHeadroom:], p)
	}
	msgs := make([]rawip.Message, len(pkts))
	n := a.encapsulateBatch(msgs, bufs, sizes)
	var out [][]byte
	for _, m := range msgs[:n] {
		out = append(out, bytes.Clone(m.Buf[m.Off:m.Off+m.N]))
	}
	return out
}

// TestVTIPerFamilyChildren: with one CHILD_SA per family, each packet
// leaves on its family's SA whatever SA the engine made current, and
// arrives; a packet no SA's selectors cover is dropped and counted.
func TestVTIPerFamilyChildren(t *testing.T) {
	a, b := vtiPipe(t)
	for _, current := range []uint32{0x61, 0x41} { // the engine's sending choice does not matter
		if err := a.SetOutbound(current); err != nil {
			t.Fatal(err)
		}
		out := sendBatch(a, innerUDP(vtiA4, vtiB4, 100), innerUDP(vtiA6, vtiB6, 100),
			innerUDP(vtiA4, netip.MustParseAddr("198.19.7.7"), 100), innerUDP(vtiA6, netip.MustParseAddr("2001:db8:77::7"), 100))
		if len(out) != 2 {
			t.Fatalf("current 0x%x: sent %d packets, want the two covered ones", current, len(out))
		}
		for i, want := range []uint32{0x42, 0x62} {
			if spi := binary.BigEndian.Uint32(out[i]); spi != want {
				t.Errorf("current 0x%x: packet %d on SPI 0x%x, want 0x%x", current, i, spi, want)
			}
			if !deliver(b, out[i]) {
				t.Errorf("current 0x%x: packet %d not delivered: %v", current, i, b.Status().Drops)
			}
		}
	}
	if got := a.Status().Drops["no_sa_for_selectors"]; got != 4 {
		t.Errorf("no_sa_for_selectors = %d, want 4", got)
	}
	// Removing the IPv4 child leaves IPv6 sending and IPv4 dropped.
	if err := a.RemoveChild(0x41); err != nil {
		t.Fatal(err)
	}
	if out := sendBatch(a, innerUDP(vtiA4, vtiB4, 100), innerUDP(vtiA6, vtiB6, 100)); len(out) != 1 || binary.BigEndian.Uint32(out[0]) != 0x62 {
		t.Errorf("after removing the IPv4 child: sent %d packets", len(out))
	}
}

// TestVTIInboundSelectorCheck: an inner packet the peer sealed on an SA
// whose selectors do not cover it (another source, another destination,
// the other family's SA) is dropped after decryption and counted (RFC
// 4301 §5.2); one they cover is delivered.
func TestVTIInboundSelectorCheck(t *testing.T) {
	a, b := vtiPipe(t)
	sa4 := a.childOut(0x41)
	for _, c := range []struct {
		name string
		pkt  []byte
		ok   bool
	}{
		{"covered", innerUDP(vtiA4, vtiB4, 100), true},
		{"other source", innerUDP(netip.MustParseAddr("198.19.5.5"), vtiB4, 100), false},
		{"other destination", innerUDP(vtiA4, netip.MustParseAddr("198.19.0.9"), 100), false},
		{"IPv6 on the IPv4 SA", innerUDP(vtiA6, vtiB6, 100), false},
	} {
		buf := make([]byte, sendHeadroom+a.cfg.MTU+sendTailroom)
		n := copy(buf[sendHeadroom:], c.pkt)
		var m rawip.Message
		if !a.encapsulate(&m, buf, n, sa4) { // sealed as a peer that ignores its selectors would
			t.Fatalf("%s: seal failed", c.name)
		}
		if got := deliver(b, m.Buf[m.Off:m.Off+m.N]); got != c.ok {
			t.Errorf("%s: delivered %v, want %v", c.name, got, c.ok)
		}
	}
	if got := b.Status().Drops["inbound_selector_mismatch"]; got != 3 {
		t.Errorf("inbound_selector_mismatch = %d, want 3", got)
	}
}

// BenchmarkVTIPolicy: a 1400-byte IPv6 packet through a's send path
// (the policy lookup passes the IPv4 SA first) and b's receive path with
// its selector check; no allocation.
func BenchmarkVTIPolicy(b *testing.B) {
	x, y := vtiPipe(b)
	inner := innerUDP(vtiA6, vtiB6, 1400)
	bufs := [][]byte{make([]byte, sendHeadroom+x.cfg.MTU+sendTailroom)}
	sizes := []int{len(inner)}
	msgs := make([]rawip.Message, 1)
	base := make([]byte, tunWriteOffset+recvBufSize)
	b.SetBytes(int64(len(inner)))
	b.ReportAllocs()
	for b.Loop() {
		copy(bufs[0][sendHeadroom:], inner)
		if x.encapsulateBatch(msgs, bufs, sizes) != 1 {
			b.Fatal("dropped on send")
		}
		m := &msgs[0]
		rm := rawip.Message{Buf: base[tunWriteOffset:], Addr: y.remote}
		rm.N = copy(rm.Buf, m.Buf[m.Off:m.Off+m.N])
		if y.decapsulate(&rm, base) == nil {
			b.Fatal("dropped on receive")
		}
	}
}
