package tunnel

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"go.uber.org/zap"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/rawip"
)

// shapeCase is one tunnel shape over one underlay family.
type shapeCase struct {
	mode          config.Mode
	encap         config.Encap
	local, remote string
}

func (c shapeCase) String() string {
	fam := "v4"
	if netip.MustParseAddr(c.local).Is6() {
		fam = "v6"
	}
	return fmt.Sprintf("%s+%s/%s", c.mode, c.encap, fam)
}

var shapeCases = func() []shapeCase {
	var cs []shapeCase
	for _, me := range [][2]string{{"transport", "gre"}, {"tunnel", "gre"}, {"tunnel", "none"}, {"transport", "ipip"}} {
		for _, ul := range [][2]string{{"198.18.0.1", "198.18.0.2"}, {"2001:db8::1", "2001:db8::2"}} {
			cs = append(cs, shapeCase{config.Mode(me[0]), config.Encap(me[1]), ul[0], ul[1]})
		}
	}
	return cs
}()

// newShapePipe returns two tunnels of shape c whose SAs match crosswise,
// with no devices, their MTU computed as the config does.
func newShapePipe(tb testing.TB, c shapeCase) (a, b *Tunnel) {
	tb.Helper()
	keyAB, keyBA := make([]byte, 36), make([]byte, 36)
	for i := range keyAB {
		keyAB[i], keyBA[i] = byte(i), byte(100+i)
	}
	mk := func(local, remote string, spiOut, spiIn uint32, out, in []byte) *Tunnel {
		cfg := &config.Config{
			Local: netip.MustParseAddr(local), Remote: netip.MustParseAddr(remote), UnderlayMTU: 1500,
			MSSClamp: true, Keying: config.KeyingStatic, ReplayWindow: 1024, Mode: c.mode, Encap: c.encap,
			Static: config.Static{Transform: esp.DefaultTransform},
		}
		cfg.MTU = cfg.ComputedMTU()
		t := &Tunnel{cfg: cfg, log: zap.NewNop(), remote: cfg.Remote, sadb: &esp.DB{},
			mss4: uint16(cfg.MSS4()), mss6: uint16(cfg.MSS6())}
		t.setUnderlay()
		t.setShape()
		saOut, err := esp.NewSA(spiOut, out, 0)
		if err != nil {
			tb.Fatal(err)
		}
		saIn, err := esp.NewSA(spiIn, in, 1024)
		if err != nil {
			tb.Fatal(err)
		}
		t.sadb.SetOutbound(saOut)
		t.sadb.AddInbound(saIn)
		return t
	}
	a = mk(c.local, c.remote, 0x1001, 0x1002, keyAB, keyBA)
	b = mk(c.remote, c.local, 0x1002, 0x1001, keyBA, keyAB)
	return a, b
}

// ipv6UDP builds an IPv6/UDP packet of the given total size.
func ipv6UDP(size int) []byte {
	p := make([]byte, size)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(size-40))
	p[6], p[7] = 17, 64
	copy(p[8:], netip.MustParseAddr("2001:db8:1::1").AsSlice())
	copy(p[24:], netip.MustParseAddr("2001:db8:1::2").AsSlice())
	binary.BigEndian.PutUint16(p[44:], uint16(size-40))
	for i := 48; i < size; i++ {
		p[i] = byte(i)
	}
	return p
}

// sealOne encapsulates inner on a and returns a copy of the ESP packet.
func sealOne(tb testing.TB, a *Tunnel, inner []byte) []byte {
	tb.Helper()
	buf := make([]byte, sendHeadroom+a.cfg.MTU+sendTailroom)
	copy(buf[sendHeadroom:], inner)
	var m rawip.Message
	if !a.encapsulate(&m, buf, len(inner), a.sadb.Outbound()) {
		tb.Fatalf("dropped on send: %v", a.Status().Drops)
	}
	if m.Addr != a.remote {
		tb.Fatalf("sent to %s, want %s", m.Addr, a.remote)
	}
	return append([]byte(nil), m.Buf[m.Off:m.Off+m.N]...)
}

// receiveOne hands wire to b's decapsulate as from its peer and returns
// what it would write to the TUN (without the headroom), or nil.
func receiveOne(b *Tunnel, wire []byte) []byte {
	base := make([]byte, tunWriteOffset+recvBufSize)
	rm := rawip.Message{Buf: base[tunWriteOffset:], Addr: b.remote}
	rm.N = copy(rm.Buf, wire)
	out := b.decapsulate(&rm, base)
	if out == nil {
		return nil
	}
	return out[tunWriteOffset:]
}

// openPlain decrypts wire with a fresh copy of the receiver's key, for
// looking at the payload as the peer's kernel would see it.
func openPlain(tb testing.TB, wire []byte) (payload []byte, next byte) {
	tb.Helper()
	key := make([]byte, 36)
	for i := range key {
		key[i] = byte(i)
	}
	sa, err := esp.NewSA(0x1001, key, 0)
	if err != nil {
		tb.Fatal(err)
	}
	payload, next, reason := sa.Open(append([]byte(nil), wire...))
	if reason != esp.DropNone {
		tb.Fatalf("ESP packet does not open: %v", reason)
	}
	return payload, next
}

// TestShapesOnTheWire: every shape carries IPv4 and IPv6 inner packets
// of the smallest and the largest size its MTU allows, with the ESP next
// header and payload layout the peer's kernel expects: GRE (47) in
// transport mode; in tunnel mode an IP header between the underlay
// addresses, protocol 47, in front of the GRE header (next header 4 or
// 41 by the underlay); the bare inner packet for a VTI and IP-in-IP (4
// or 41 by the inner packet). The full-MTU packet makes exactly a
// 1500-byte underlay packet, so the MTU is the largest that fits.
func TestShapesOnTheWire(t *testing.T) {
	for _, c := range shapeCases {
		t.Run(c.String(), func(t *testing.T) {
			a, b := newShapePipe(t, c)
			outer := 20
			if a.cfg.Local.Is6() {
				outer = 40
			}
			wantMTU := map[config.Encap]int{config.EncapGRE: 1442, config.EncapNone: 1446, config.EncapIPIP: 1446}[c.encap]
			wantMTU -= outer - 20
			if c.mode == config.ModeTunnel && c.encap == config.EncapGRE {
				wantMTU -= outer // tunnel mode's own header, as big as the outer one
			}
			if a.cfg.MTU != wantMTU {
				t.Errorf("MTU %d, want %d", a.cfg.MTU, wantMTU)
			}
			for _, inner := range [][]byte{udpPacket(28), udpPacket(a.cfg.MTU), ipv6UDP(48), ipv6UDP(a.cfg.MTU)} {
				wire := sealOne(t, a, inner)
				if len(inner) == a.cfg.MTU && len(wire)+outer != 1500 {
					t.Errorf("a full-MTU packet makes a %d-byte underlay packet, want 1500", len(wire)+outer)
				}
				if want := len(inner) + a.cfg.EncapLen() + esp.Overhead(len(inner)+a.cfg.EncapLen()); len(wire) != want {
					t.Errorf("inner %d: ESP packet %d bytes, want %d", len(inner), len(wire), want)
				}
				payload, next := openPlain(t, wire)
				v6inner := inner[0]>>4 == 6
				switch {
				case c.encap != config.EncapGRE:
					if want := map[bool]byte{false: 4, true: 41}[v6inner]; next != want {
						t.Errorf("next header %d, want %d", next, want)
					}
					if string(payload) != string(inner) {
						t.Error("ESP payload is not the inner packet")
					}
				case c.mode == config.ModeTunnel:
					if want := map[int]byte{20: 4, 40: 41}[outer]; next != want {
						t.Errorf("next header %d, want %d", next, want)
					}
					h := payload[:outer]
					src, dst, proto := h[12:16], h[16:20], h[9]
					if outer == 40 {
						src, dst, proto = h[8:24], h[24:40], h[6]
					} else if ipv4Sum(h) != 0xffff {
						t.Error("tunnel IPv4 header checksum is wrong")
					}
					if string(src) != string(a.cfg.Local.AsSlice()) || string(dst) != string(a.cfg.Remote.AsSlice()) || proto != 47 {
						t.Errorf("tunnel header %x: want %s -> %s, protocol 47", h, a.cfg.Local, a.cfg.Remote)
					}
					if string(payload[outer+4:]) != string(inner) {
						t.Error("GRE does not carry the inner packet behind the tunnel header")
					}
				default:
					if next != 47 || string(payload[4:]) != string(inner) {
						t.Errorf("next header %d, want GRE carrying the inner packet", next)
					}
				}
				if got := receiveOne(b, wire); string(got) != string(inner) {
					t.Fatalf("inner %d: not delivered unchanged; drops %v, SA %+v", len(inner), b.Status().Drops, b.Status().Inbound)
				}
			}
			if big := udpPacket(a.cfg.MTU + 1); true {
				buf := make([]byte, sendHeadroom+a.cfg.MTU+1+sendTailroom)
				copy(buf[sendHeadroom:], big)
				var m rawip.Message
				if a.encapsulate(&m, buf, len(big), a.sadb.Outbound()) || a.Status().Drops["too_big"] != 1 {
					t.Error("a packet one byte over the MTU was not dropped as too_big")
				}
			}
		})
	}
}

// resealed returns wire (from a) decrypted, payload changed by edit and
// next header replaced, sealed again under the same SA with the next
// sequence number: what a peer sending that payload would put on the wire.
func resealed(tb testing.TB, a *Tunnel, wire []byte, next byte, edit func([]byte) []byte) []byte {
	tb.Helper()
	payload, _ := openPlain(tb, wire)
	payload = edit(append([]byte(nil), payload...))
	buf := make([]byte, sendHeadroom+len(payload)+sendTailroom)
	copy(buf[sendHeadroom:], payload)
	out, err := a.sadb.Outbound().Seal(buf, sendHeadroom, len(payload), next)
	if err != nil {
		tb.Fatal(err)
	}
	return append([]byte(nil), out...)
}

// TestShapesDropWhatAKernelWould: a received ESP payload that is not what
// the shape carries is counted and never reaches the TUN: the wrong next
// header for the shape, a malformed inner packet behind a VTI, a tunnel
// mode header that is malformed, a fragment, not GRE, not from the peer
// to us, or has a bad checksum.
func TestShapesDropWhatAKernelWould(t *testing.T) {
	type bad struct {
		name string
		next byte
		edit func([]byte) []byte
		drop string
	}
	same := func(p []byte) []byte { return p }
	cases := map[string][]bad{
		"tunnel+gre/v4": {
			{"next header 47", 47, same, "esp_next_header_not_gre"},
			{"next header 41", 41, same, "esp_next_header_not_gre"},
			{"source not the peer", 4, func(p []byte) []byte { p[15]++; p[11]--; return p }, "tunnel_header"},
			{"destination not us", 4, func(p []byte) []byte { p[19]++; p[11]--; return p }, "tunnel_header"},
			{"bad checksum", 4, func(p []byte) []byte { p[11]++; return p }, "tunnel_header"},
			{"protocol 4", 4, func(p []byte) []byte { p[9] = 4; p[11] += 43; return p }, "tunnel_header"},
			{"fragment", 4, func(p []byte) []byte { p[6] |= 0x20; p[10] -= 0x20; return p }, "tunnel_header"},
			{"total length beyond", 4, func(p []byte) []byte { p[2]++; p[10]--; return p }, "tunnel_header"},
			{"truncated", 4, func(p []byte) []byte { return p[:19] }, "tunnel_header"},
			{"inner malformed", 4, func(p []byte) []byte { p[24] = 0x44; return p }, "inner_malformed"},
		},
		"tunnel+gre/v6": {
			{"next header 4", 4, same, "esp_next_header_not_gre"},
			{"source not the peer", 41, func(p []byte) []byte { p[23]++; return p }, "tunnel_header"},
			{"extension header", 41, func(p []byte) []byte { p[6] = 0; return p }, "tunnel_header"},
			{"payload length 0", 41, func(p []byte) []byte { p[4], p[5] = 0, 0; return p }, "tunnel_header"},
		},
		"tunnel+none/v4": {
			{"next header 47", 47, same, "esp_next_header_not_gre"},
			{"IPv4 as 41", 41, same, "inner_malformed"},
			{"IHL under 20", 4, func(p []byte) []byte { p[0] = 0x44; return p }, "inner_malformed"},
			{"total length beyond", 4, func(p []byte) []byte { p[3]++; return p }, "inner_malformed"},
		},
		"transport+ipip/v6": {
			{"next header 59", 59, same, "esp_next_header_not_gre"},
			{"IPv4 as 41", 41, same, "inner_malformed"},
		},
	}
	for _, c := range shapeCases {
		bads, ok := cases[c.String()]
		if !ok {
			continue
		}
		t.Run(c.String(), func(t *testing.T) {
			a, b := newShapePipe(t, c)
			for _, x := range bads {
				wire := resealed(t, a, sealOne(t, a, udpPacket(200)), x.next, x.edit)
				before := b.Status().Drops[x.drop]
				if got := receiveOne(b, wire); got != nil {
					t.Errorf("%s: delivered", x.name)
				}
				if after := b.Status().Drops[x.drop]; after != before+1 {
					t.Errorf("%s: %s went %d -> %d, want one more (all %v)", x.name, x.drop, before, after, b.Status().Drops)
				}
			}
			// The tunnel still works after all that.
			if got := receiveOne(b, sealOne(t, a, udpPacket(300))); got == nil {
				t.Errorf("a good packet after the bad ones was dropped: %v", b.Status().Drops)
			}
		})
	}
}

// TestShapesDoNotAllocate: the per-packet path of every shape, send and
// receive, allocates nothing.
func TestShapesDoNotAllocate(t *testing.T) {
	for _, c := range shapeCases {
		t.Run(c.String(), func(t *testing.T) {
			a, b := newShapePipe(t, c)
			inner := udpPacket(1000)
			buf := make([]byte, sendHeadroom+a.cfg.MTU+sendTailroom)
			base := make([]byte, tunWriteOffset+recvBufSize)
			var m rawip.Message
			sa := a.sadb.Outbound()
			allocs := testing.AllocsPerRun(200, func() {
				copy(buf[sendHeadroom:], inner)
				if !a.encapsulate(&m, buf, len(inner), sa) {
					t.Fatal("dropped on send")
				}
				rm := rawip.Message{Buf: base[tunWriteOffset:], Addr: b.remote}
				rm.N = copy(rm.Buf, m.Buf[m.Off:m.Off+m.N])
				if b.decapsulate(&rm, base) == nil {
					t.Fatal("dropped on receive")
				}
			})
			if allocs != 0 {
				t.Errorf("%.1f allocations per packet, want 0", allocs)
			}
		})
	}
}

// TestKeepaliveInTunnelMode: GRE keepalives work in tunnel mode too (IOS
// keeps `keepalive` on a GRE tunnel under a tunnel-mode crypto map): the
// one a builds goes out behind tunnel mode's IP header, b sends it back
// the same way (next header 4 or 41, the header from b to a), and a
// counts it as answered.
func TestKeepaliveInTunnelMode(t *testing.T) {
	for _, c := range shapeCases {
		if c.mode != config.ModeTunnel || c.encap != config.EncapGRE {
			continue
		}
		t.Run(c.String(), func(t *testing.T) {
			a, b := newShapePipe(t, c)
			buf := make([]byte, keepaliveBufLen)
			start, end := a.buildKeepalive(buf)
			out, err := a.sealGRE(a.sadb.Outbound(), buf, start, end)
			if err != nil {
				t.Fatal(err)
			}
			toTUN, back := receiveBatch(b, out)
			if len(toTUN) != 0 || len(back) != 1 {
				t.Fatalf("%d to the TUN, %d sent back (drops %v)", len(toTUN), len(back), b.Status().Drops)
			}
			in, err := esp.NewSA(0x1002, keyOf(100), 0)
			if err != nil {
				t.Fatal(err)
			}
			payload, next, reason := in.Open(append([]byte(nil), back[0]...))
			outer := 20
			if b.cfg.Local.Is6() {
				outer = 40
			}
			if reason != esp.DropNone || next != b.shape.tunnelNext || len(payload) < outer+4 || b.tunnelPayloadFrom(payload) == nil {
				t.Fatalf("sent back: drop %v, next header %d, payload %x", reason, next, payload)
			}
			receiveBatch(a, back[0])
			if a.Status().Keepalive.Replied != 1 {
				t.Errorf("a's keepalive not answered: drops %v", a.Status().Drops)
			}
		})
	}
}

// tunnelPayloadFrom checks payload's tunnel header as the peer (which
// sees b's addresses swapped) would.
func (t *Tunnel) tunnelPayloadFrom(payload []byte) []byte {
	peer := &Tunnel{shape: t.shape, local4: t.remote4, remote4: t.local4, local16: t.remote16, remote16: t.local16}
	return peer.tunnelPayload(payload)
}

// TestChildPolicyPerShape: what IKEv2 negotiates for each shape: GRE in
// transport mode by default, GRE in tunnel mode, IP-in-IP (4 and 41) in
// transport mode, and a VTI's prefixes in tunnel mode, narrowable.
func TestChildPolicyPerShape(t *testing.T) {
	l, r := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	k := &config.IKE{LocalTS: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16")}, RemoteTS: []netip.Prefix{netip.MustParsePrefix("::/0")}}
	for _, tc := range []struct {
		mode  config.Mode
		encap config.Encap
		want  string
	}{
		{config.ModeTransport, config.EncapGRE, "transport narrow=false [] []"},
		{config.ModeTunnel, config.EncapGRE, "tunnel narrow=false [198.18.0.1/32[gre]] [198.18.0.2/32[gre]]"},
		{config.ModeTransport, config.EncapIPIP, "transport narrow=false [198.18.0.1/32[4] 198.18.0.1/32[41]] [198.18.0.2/32[4] 198.18.0.2/32[41]]"},
		{config.ModeTunnel, config.EncapNone, "tunnel narrow=true [198.19.0.0/16] [::/0]"},
	} {
		c := &config.Config{Local: l, Remote: r, Mode: tc.mode, Encap: tc.encap}
		p := childPolicy(c, k)
		mode := "transport"
		if p.TunnelMode {
			mode = "tunnel"
		}
		got := fmt.Sprintf("%s narrow=%v %v %v", mode, p.Narrow, p.LocalTS, p.RemoteTS)
		if got != tc.want {
			t.Errorf("%s+%s:\n got  %s\n want %s", tc.mode, tc.encap, got, tc.want)
		}
	}
}

// BenchmarkShapes is one 1400-byte packet sealed by a and opened by b,
// per shape: what tunnel mode's header and a VTI's missing GRE header
// cost beside GRE in transport mode.
func BenchmarkShapes(b *testing.B) {
	for _, c := range shapeCases {
		if netip.MustParseAddr(c.local).Is6() {
			continue
		}
		b.Run(c.String(), func(b *testing.B) {
			x, y := newShapePipe(b, c)
			inner := udpPacket(1400)
			buf := make([]byte, sendHeadroom+x.cfg.MTU+sendTailroom)
			base := make([]byte, tunWriteOffset+recvBufSize)
			var m rawip.Message
			sa := x.sadb.Outbound()
			b.SetBytes(int64(len(inner)))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf[sendHeadroom:], inner)
				if !x.encapsulate(&m, buf, len(inner), sa) {
					b.Fatal("dropped on send")
				}
				rm := rawip.Message{Buf: base[tunWriteOffset:], Addr: y.remote}
				rm.N = copy(rm.Buf, m.Buf[m.Off:m.Off+m.N])
				if y.decapsulate(&rm, base) == nil {
					b.Fatal("dropped on receive")
				}
			}
		})
	}
}
