package tunnel

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/gre"
	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
	"github.com/gresec/gresec/rawip"
)

// ciscoKeepalive is the inner packet IOS puts in the GRE keepalive it
// sends from 198.18.0.1 to 198.18.0.2, as `debug tunnel keepalive` shows
// it ("len=24 ttl=255"): IPv4 from the receiver to the sender, protocol
// 47, and a bare GRE header of protocol type 0. Written out by hand, with
// its checksum, so that the test does not build it with the code under
// test.
var ciscoKeepalive = mustHex("4500001800000000ff2f" + "0000" + "c6120002" + "c6120001" + "00000000")

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	// Fill in the IPv4 header checksum (RFC 1071) when left at 0.
	if len(b) >= 20 && b[0]>>4 == 4 && b[10] == 0 && b[11] == 0 {
		binary.BigEndian.PutUint16(b[10:], ^ipv4Sum(b[:20]))
	}
	return b
}

// sealGRE is what the peer a sends: inner as GRE protocol type proto,
// sealed with a's outbound SA; the underlay payload.
func sealGRE(t *testing.T, a *Tunnel, proto uint16, inner []byte) []byte {
	t.Helper()
	buf := make([]byte, 64+len(inner)+64)
	copy(buf[64:], inner)
	start := gre.Encap(buf, 64, len(inner), proto, a.greOpt, 0)
	if a.sadb == nil {
		return bytes.Clone(buf[start : 64+len(inner)])
	}
	out, err := a.sadb.Outbound().Seal(buf, start, 64+len(inner)-start, esp.NextHeaderGRE)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(out)
}

// receiveBatch hands b one underlay packet as the receive pump would and
// returns what goes to the TUN and the underlay packets b sends back.
func receiveBatch(b *Tunnel, wire []byte) (toTUN [][]byte, back [][]byte) {
	base := make([]byte, tunWriteOffset+recvBufSize)
	rm := rawip.Message{Buf: base[tunWriteOffset:], Addr: b.remote}
	rm.N = copy(rm.Buf, wire)
	toTUN = b.decapsulateBatch(nil, []rawip.Message{rm}, [][]byte{base})
	b.sendMu.Lock()
	n := b.sealReflections()
	b.sendMu.Unlock()
	for _, m := range b.reflect[:n] {
		if m.Addr != b.remote {
			panic("a keepalive sent back to " + m.Addr.String())
		}
		back = append(back, bytes.Clone(m.Buf[m.Off:m.Off+m.N]))
	}
	return toTUN, back
}

// TestKeepaliveReflectedThroughESP: IOS's keepalive, ESP-sealed by the
// peer, is not delivered but sent back, sealed with our outbound SA: its
// GRE header alone (protocol type 0), next header 47, exactly what a
// kernel routing the inner packet through the crypto map would send. The
// peer, given that packet, counts its keepalive as answered.
func TestKeepaliveReflectedThroughESP(t *testing.T) {
	a, b := newPipe(t, 1024)
	toTUN, back := receiveBatch(b, sealGRE(t, a, gre.ProtoIPv4, ciscoKeepalive))
	if len(toTUN) != 0 || len(back) != 1 {
		t.Fatalf("%d packets to the TUN, %d sent back; want 0 and 1 (drops %v)", len(toTUN), len(back), b.Status().Drops)
	}
	// Open it as the peer would, with a copy of the peer's inbound SA.
	in, err := esp.NewSA(0x1002, keyOf(100), 0)
	if err != nil {
		t.Fatal(err)
	}
	payload, next, reason := in.Open(bytes.Clone(back[0]))
	if reason != esp.DropNone || next != esp.NextHeaderGRE || !bytes.Equal(payload, ciscoKeepalive[20:]) {
		t.Fatalf("sent back: drop %v, next header %d, payload %x; want GRE %x", reason, next, payload, ciscoKeepalive[20:])
	}
	if st := b.Status(); st.Keepalive.State != "off" || st.Inner.RxPackets != 0 || st.Outbound.Packets != 1 {
		t.Errorf("keepalive %+v, rx %d, outbound SA packets %d", st.Keepalive, st.Inner.RxPackets, st.Outbound.Packets)
	}

	// The peer's side: its keepalive came back.
	toTUN, back = receiveBatch(a, back[0])
	if len(toTUN) != 0 || len(back) != 0 {
		t.Fatalf("a keepalive coming back was delivered (%d) or sent back again (%d)", len(toTUN), len(back))
	}
	st := a.Status()
	if st.Keepalive.Replied != 1 || st.Drops["gre_protocol"] != 0 {
		t.Errorf("the answer: replied %d, gre_protocol drops %d; want 1 and 0", st.Keepalive.Replied, st.Drops["gre_protocol"])
	}
}

// keyOf is newPipe's key material starting at first.
func keyOf(first byte) []byte {
	k := make([]byte, 36)
	for i := range k {
		k[i] = first + byte(i)
	}
	return k
}

// TestKeepaliveOwnBuiltAndAnswered: the keepalive a builds, decapsulated
// by b, is sent back; a counts it as answered. Over IPv4 and IPv6
// underlays, with and without a GRE key, plain GRE and ESP.
func TestKeepaliveOwnBuiltAndAnswered(t *testing.T) {
	for _, tc := range []struct {
		name      string
		v6, esp   bool
		key       bool
		wantInner int // inner packet length
	}{
		{name: "esp ipv4", esp: true, wantInner: 24},
		{name: "esp ipv4 key", esp: true, key: true, wantInner: 28},
		{name: "gre ipv4", wantInner: 24},
		{name: "gre ipv6 key", v6: true, key: true, wantInner: 48},
		{name: "esp ipv6", v6: true, esp: true, wantInner: 44},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := keepalivePair(t, tc.v6, tc.esp, tc.key)
			buf := make([]byte, keepaliveBufLen)
			start, end := a.buildKeepalive(buf)
			pkt := buf[start:end]
			proto, inner, info, err := gre.Decap(pkt)
			if err != nil || info.HasKey != tc.key || len(inner) != tc.wantInner {
				t.Fatalf("outer GRE: %v, key %v, inner %d bytes (want %d)", err, info.HasKey, len(inner), tc.wantInner)
			}
			if tc.v6 {
				if proto != gre.ProtoIPv6 || inner[6] != 47 || inner[7] != 255 ||
					[16]byte(inner[8:24]) != b.local16 || [16]byte(inner[24:40]) != b.remote16 {
					t.Fatalf("inner IPv6 header %x", inner[:40])
				}
			} else if proto != gre.ProtoIPv4 || inner[9] != 47 || inner[8] != 255 || ipv4Sum(inner[:20]) != 0xffff ||
				[4]byte(inner[12:16]) != b.local4 || [4]byte(inner[16:20]) != b.remote4 {
				t.Fatalf("inner IPv4 header %x", inner[:20])
			}
			wire := bytes.Clone(pkt)
			if tc.esp {
				wire = sealGRE(t, a, proto, inner)
			}
			toTUN, back := receiveBatch(b, wire)
			if len(toTUN) != 0 || len(back) != 1 {
				t.Fatalf("%d to the TUN, %d sent back (drops %v)", len(toTUN), len(back), b.Status().Drops)
			}
			receiveBatch(a, back[0])
			if a.Status().Keepalive.Replied != 1 || b.Status().Keepalive.Replied != 0 {
				t.Errorf("replied: a %d (want 1), b %d (want 0); a drops %v", a.Status().Keepalive.Replied,
					b.Status().Keepalive.Replied, a.Status().Drops)
			}
		})
	}
}

// keepalivePair is newPipe with a choice of underlay family, ESP or plain
// GRE, and a GRE key.
func keepalivePair(t *testing.T, v6, withESP, key bool) (a, b *Tunnel) {
	t.Helper()
	a, b = newPipe(t, 1024)
	for _, tn := range []*Tunnel{a, b} {
		if v6 {
			l, r := tn.cfg.Local.As4(), tn.cfg.Remote.As4()
			tn.cfg.Local = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x18, 15: l[3]})
			tn.cfg.Remote = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x18, 15: r[3]})
			tn.remote = tn.cfg.Remote
			tn.setUnderlay()
		}
		if !withESP {
			tn.sadb = nil
			tn.cfg.Keying = config.KeyingNone
		}
		if key {
			tn.greOpt = gre.Options{Key: 77, UseKey: true}
		}
	}
	return a, b
}

// TestNotAKeepalive: inner GRE packets that are not a keepalive for us
// (another source or destination, a fragment, GRE carrying traffic) go to
// the TUN as before, where the kernel judges them; one addressed like a
// keepalive whose IPv4 checksum is wrong is dropped as inner_malformed,
// as a kernel would drop it.
func TestNotAKeepalive(t *testing.T) {
	mutate := func(f func(p []byte), fixSum bool) []byte {
		p := bytes.Clone(ciscoKeepalive)
		f(p)
		if fixSum {
			p[10], p[11] = 0, 0
			binary.BigEndian.PutUint16(p[10:], ^ipv4Sum(p[:20]))
		}
		return p
	}
	for _, tc := range []struct {
		name      string
		inner     []byte
		malformed bool
	}{
		{"source not ours", mutate(func(p []byte) { p[15] = 9 }, true), false},
		{"destination not the peer", mutate(func(p []byte) { p[19] = 9 }, true), false},
		{"source and destination swapped", mutate(func(p []byte) { p[15], p[19] = 1, 2 }, true), false},
		{"first fragment", mutate(func(p []byte) { p[6] = 0x20 }, true), false},
		{"later fragment", mutate(func(p []byte) { p[7] = 1 }, true), false},
		{"GRE carrying IPv4", mutate(func(p []byte) { p[22] = 0x08 }, true), false},
		{"GRE version 1", mutate(func(p []byte) { p[21] = 1 }, true), false},
		{"protocol UDP", mutate(func(p []byte) { p[9] = 17 }, true), false},
		{"bad checksum", mutate(func(p []byte) { p[11] ^= 0xff }, false), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newPipe(t, 1024)
			toTUN, back := receiveBatch(b, sealGRE(t, a, gre.ProtoIPv4, tc.inner))
			st := b.Status()
			if len(back) != 0 || st.Keepalive.Reflected != 0 {
				t.Fatalf("sent back")
			}
			if tc.malformed {
				if len(toTUN) != 0 || st.Drops["inner_malformed"] != 1 {
					t.Errorf("delivered %d, inner_malformed %d; want a drop", len(toTUN), st.Drops["inner_malformed"])
				}
				return
			}
			if len(toTUN) != 1 || !bytes.Equal(toTUN[0][tunWriteOffset:], tc.inner) {
				t.Errorf("not delivered unchanged to the TUN (drops %v)", st.Drops)
			}
		})
	}
}

// TestKeepaliveNoOutboundSA: a keepalive that cannot be sent back for
// want of an outbound SA (IKE not done yet) is counted as no_outbound_sa.
func TestKeepaliveNoOutboundSA(t *testing.T) {
	a, b := newPipe(t, 1024)
	b.sadb.SetOutbound(nil)
	if toTUN, back := receiveBatch(b, sealGRE(t, a, gre.ProtoIPv4, ciscoKeepalive)); len(toTUN)+len(back) != 0 {
		t.Fatalf("%d delivered, %d sent back", len(toTUN), len(back))
	}
	if d := b.Status().Drops["no_outbound_sa"]; d != 1 {
		t.Errorf("no_outbound_sa = %d, want 1", d)
	}
}

// TestKeepaliveCount: the interface goes down when a keepalive is due and
// retries of them went unanswered, not before; one coming back brings it
// up. Real raw socket (in a namespace of its own), no TUN.
func TestKeepaliveCount(t *testing.T) {
	nstest.RequireRoot(t, "a raw socket in a network namespace")
	ns, err := netns.Create(netns.Unique("gresec-ka"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Delete() })
	if out, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	cfg := &config.Config{Interface: "gre0", Local: netip.MustParseAddr("127.0.0.1"), Remote: netip.MustParseAddr("127.0.0.2"),
		MTU: 1476, Keying: config.KeyingNone, Keepalive: time.Hour, KeepaliveRetries: 3}
	tn := &Tunnel{cfg: cfg, log: zap.NewNop(), remote: cfg.Remote}
	tn.setUnderlay()
	tn.ka.init(cfg.Keepalive, cfg.KeepaliveRetries)
	if err := ns.Do(func() (err error) { tn.conn, err = rawip.Listen(protoGRE, cfg.Local, 4); return err }); err != nil {
		t.Fatal(err)
	}
	defer tn.conn.Close()

	buf := make([]byte, keepaliveBufLen)
	state := func() string { return tn.Status().Keepalive.State }
	for i := range 3 {
		tn.keepaliveDue(buf)
		if state() != "up" {
			t.Fatalf("down after %d keepalives", i+1)
		}
	}
	tn.keepaliveDue(buf) // the 4th is due: 3 unanswered
	st := tn.Status().Keepalive
	if st.State != "down" || st.Downs != 1 || st.Sent != 4 || st.Unanswered != 4 {
		t.Fatalf("after 3 unanswered: %+v", st)
	}
	tn.keepaliveDue(buf) // still sending while down, counted once
	if st := tn.Status().Keepalive; st.Downs != 1 || st.Sent != 5 {
		t.Fatalf("%+v", st)
	}
	tn.ka.cameBack()
	select {
	case <-tn.ka.replied:
	default:
		t.Fatal("an answer while down did not signal the keepalive goroutine")
	}
	tn.setCarrier(true, "test")
	if st := tn.Status().Keepalive; st.State != "up" || st.Unanswered != 0 || st.Replied != 1 || st.LastReplySecondsAgo == 0 {
		t.Fatalf("after an answer: %+v", st)
	}
}

// BenchmarkKeepaliveReflect is the cost of sending a keepalive back:
// decapsulate, recognise, seal in place. No allocation.
func BenchmarkKeepaliveReflect(b *testing.B) {
	a, r := newPipe(b, 0)
	buf := make([]byte, 64+len(ciscoKeepalive)+64)
	copy(buf[64:], ciscoKeepalive)
	start := gre.Encap(buf, 64, len(ciscoKeepalive), gre.ProtoIPv4, a.greOpt, 0)
	out, _ := a.sadb.Outbound().Seal(buf, start, 64+len(ciscoKeepalive)-start, esp.NextHeaderGRE)
	wire := bytes.Clone(out)
	base := make([]byte, tunWriteOffset+recvBufSize)
	msgs := []rawip.Message{{Buf: base[tunWriteOffset:], Addr: r.remote}}
	bases := [][]byte{base}
	r.reflect = make([]rawip.Message, 0, 1)
	toTUN := make([][]byte, 0, 1)
	b.ReportAllocs()
	for b.Loop() {
		msgs[0].Off, msgs[0].N = 0, copy(msgs[0].Buf, wire)
		if len(r.decapsulateBatch(toTUN[:0], msgs, bases)) != 0 || r.sealReflections() != 1 {
			b.Fatal("not reflected")
		}
	}
}

// TestReloadKeepalive: new keepalive settings are taken at once (not
// refused as restart-only) and wake the keepalive goroutine.
func TestReloadKeepalive(t *testing.T) {
	old := mustParse(t, reloadBase)
	tn := staticTunnel(t, old)
	tn.ka.init(old.Keepalive, old.KeepaliveRetries)
	next := mustParse(t, strings.Replace(reloadBase, "[tunnel]", "[tunnel]\nkeepalive = \"7s\"\nkeepalive_retries = 2", 1))
	if err := tn.Reload(next, config.Diff(old, old.Digests(), next)); err != nil {
		t.Fatal(err)
	}
	if i, r := tn.ka.settings(); i != 7*time.Second || r != 2 {
		t.Errorf("settings %s %d after reload, want 7s 2", i, r)
	}
	select {
	case <-tn.ka.changed:
	default:
		t.Error("the keepalive goroutine was not told")
	}
	if st := tn.Status().Keepalive; st.State != "up" || st.IntervalSeconds != 7 || st.Retries != 2 {
		t.Errorf("status %+v", st)
	}
}
