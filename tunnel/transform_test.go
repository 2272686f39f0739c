package tunnel

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"go.uber.org/zap"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/gre"
	"github.com/gresec/gresec/rawip"
)

// TestPipelineTransforms sends packets up to the transform's MTU through
// the send and receive paths of two in-process tunnels keyed with static
// SAs of every transform, with the longest GRE header too: the send
// buffers' head- and tailroom fit every transform, and a full-MTU packet
// fills the underlay.
func TestPipelineTransforms(t *testing.T) {
	for _, name := range []string{"aes128gcm16", "chacha20poly1305", "aes128-sha1", "aes256-sha256", "aes256-sha384", "aes256-sha512-esn"} {
		for _, opt := range []gre.Options{{}, {UseKey: true, Key: 7, Sequence: true, Checksum: true}} {
			t.Run(fmt.Sprintf("%s/gre%d", name, gre.HeaderLenFor(opt)), func(t *testing.T) {
				tr, err := esp.ParseTransform(name)
				if err != nil {
					t.Fatal(err)
				}
				greLen := gre.HeaderLenFor(opt)
				mtu := tr.TunnelMTU(1500, 20, greLen)
				keyAB, keyBA := make([]byte, tr.KeymatLen()), make([]byte, tr.KeymatLen())
				for i := range keyAB {
					keyAB[i], keyBA[i] = byte(i), byte(99+i)
				}
				mk := func(local, remote string, spiOut, spiIn uint32, out, in []byte) *Tunnel {
					cfg := &config.Config{Path: "t.toml", Local: netip.MustParseAddr(local), Remote: netip.MustParseAddr(remote),
						MTU: mtu, Keying: config.KeyingStatic, ReplayWindow: 1024,
						Static: config.Static{SPIOut: spiOut, SPIIn: spiIn, KeyOut: out, KeyIn: in, Transform: tr}}
					tun := &Tunnel{cfg: cfg, log: zap.NewNop(), remote: cfg.Remote, sadb: &esp.DB{}, greOpt: opt}
					saIn, saOut, err := newStaticSAs(cfg.Path, cfg.Static, cfg.ReplayWindow)
					if err != nil {
						t.Fatal(err)
					}
					tun.sadb.SetOutbound(saOut)
					tun.sadb.AddInbound(saIn)
					tun.static = newStaticKeys(cfg)
					return tun
				}
				a := mk("198.18.0.1", "198.18.0.2", 0x1001, 0x1002, keyAB, keyBA)
				b := mk("198.18.0.2", "198.18.0.1", 0x1002, 0x1001, keyBA, keyAB)
				for _, size := range []int{28, 29, 100, mtu - 15, mtu - 1, mtu} {
					inner := udpPacket(size)
					buf := make([]byte, sendHeadroom+mtu+sendTailroom)
					copy(buf[sendHeadroom:], inner)
					msgs := make([]rawip.Message, 1)
					if a.encapsulateBatch(msgs, [][]byte{buf}, []int{size}) != 1 {
						t.Fatalf("size %d: dropped on send: %v", size, a.Status().Drops)
					}
					m := msgs[0]
					wire := m.Buf[m.Off : m.Off+m.N]
					if want := size + greLen + tr.Overhead(size+greLen); len(wire) != want {
						t.Errorf("size %d: ESP packet %d bytes, want %d", size, len(wire), want)
					}
					if esp.Header(wire).SPI() != 0x1001 {
						t.Fatalf("size %d: the message does not start at the SPI", size)
					}
					// Block rounding may leave less than a block unused
					// (HMAC-SHA1-96's and -384-192's ICVs are not whole blocks).
					if n := len(wire) + 20; size == mtu && (n > 1500 || n <= 1500-tr.BlockSize()) {
						t.Errorf("a full-MTU packet makes a %d-byte IPv4 packet, want 1500 less under one block", n)
					}
					base := make([]byte, tunWriteOffset+recvBufSize)
					rm := rawip.Message{Buf: base[tunWriteOffset:], Addr: b.remote}
					rm.N = copy(rm.Buf, wire)
					out := b.decapsulateBatch(nil, []rawip.Message{rm}, [][]byte{base})
					if len(out) != 1 || !bytes.Equal(out[0][tunWriteOffset:], inner) {
						t.Fatalf("size %d: not delivered intact: tunnel %v, SA %+v", size, b.Status().Drops, b.Status().Inbound)
					}
				}
				if st := b.Status(); st.Inbound[0].Transform != tr.Description() {
					t.Errorf("status transform %q, want %q", st.Inbound[0].Transform, tr.Description())
				}
				// `gresec keys`: both SAs, the key material split as
				// Wireshark's ESP SA table wants it.
				k := a.Keys()
				if len(k.ESP) != 2 || k.ESP[0].Transform != tr.Name() || len(k.ESP[0].Key) != 2*tr.EncKeyLen() || len(k.ESP[1].AuthKey) != 2*tr.IntegKeyLen() {
					t.Errorf("key export %+v", k.ESP)
				}
			})
		}
	}
}

// TestStaticKeyExport: `gresec keys` splits CBC key material into the
// AES key and the HMAC key, as Wireshark's ESP SA table wants them.
func TestStaticKeyExport(t *testing.T) {
	tr, _ := esp.ParseTransform("aes256-sha256-esn")
	km := bytes.Repeat([]byte{0xAA}, 32)
	km = append(km, bytes.Repeat([]byte{0xBB}, 32)...)
	k := espKey("198.18.0.1", "198.18.0.2", 0x1001, tr, km)
	if k.Transform != "aes256-sha256" || k.Key != fmt.Sprintf("%x", km[:32]) || k.AuthKey != fmt.Sprintf("%x", km[32:]) || k.SPI != "0x00001001" {
		t.Errorf("export %+v", k)
	}
	gcm, _ := esp.ParseTransform("aes128gcm16")
	if k := espKey("a", "b", 1, gcm, make([]byte, 20)); k.Key != fmt.Sprintf("%x", make([]byte, 20)) || k.AuthKey != "" {
		t.Errorf("GCM export %+v", k)
	}
}
