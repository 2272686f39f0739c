package peerconf

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/ike"
)

// FuzzGenerate feeds arbitrary gresec configs (those config.Parse
// accepts) to every peer writer: no panic, and without IncludeSecret no
// key in the output.
func FuzzGenerate(f *testing.F) {
	names, _ := filepath.Glob(filepath.Join("testdata", "*.toml"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		for p := range Peers {
			f.Add(b, uint8(p), false)
		}
		f.Add(b, uint8(0), true)
	}
	f.Add([]byte("[tunnel]\nlocal = \"2001:db8::1\"\nremote = \"2001:db8::2\"\naddresses = [\"198.19.0.1/32\", \"2001:db8::/64\"]\nmtu = 1280\n[ipsec]\nkeying = \"ikev2\"\n[ike]\npsk_file = \"x\"\nlocal_id = \"@#00ff\"\nremote_id = \"a@b\"\nproposals = [\"aes128gcm16-sha512-x25519,aes192gcm16-prfsha256-modp2048\"]\nesp_proposals = [\"aes192gcm16-esn\"]\ndpd = \"1s\"\nlifetime = \"100000h\"\n"), uint8(2), false)
	const psk = "fuzz-pre-shared-key-value"
	f.Fuzz(func(t *testing.T, data []byte, peer uint8, secret bool) {
		c, err := config.Parse("fuzz.toml", data)
		if err != nil {
			return
		}
		if c.Keying == config.KeyingIKEv2 {
			c.IKE.LocalPSK, c.IKE.RemotePSK = ike.Secret(psk), ike.Secret(psk)
		}
		p := Peers[int(peer)%len(Peers)]
		out, err := Generate(c, Options{Peer: p, IncludeSecret: secret})
		if err != nil {
			if strings.Contains(err.Error(), psk) {
				t.Fatalf("error shows the PSK: %v", err)
			}
			return
		}
		var b bytes.Buffer
		if _, err := out.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		if secret {
			return
		}
		text := b.String()
		leaks := []string{psk, hex.EncodeToString([]byte(psk))}
		for _, k := range []config.Key{c.Static.KeyOut, c.Static.KeyIn} {
			if len(k) > 0 {
				leaks = append(leaks, hex.EncodeToString(k))
			}
		}
		for _, l := range leaks {
			if strings.Contains(text, l) {
				t.Fatalf("%s output without IncludeSecret contains a key:\n%s", p, text)
			}
		}
	})
}

func BenchmarkGenerate(b *testing.B) {
	c := parseTestdata(b, "iked-ios")
	for _, p := range []Peer{StrongSwan, OpenBSD, CiscoIOS} {
		b.Run(string(p), func(b *testing.B) {
			b.ReportAllocs()
			var buf bytes.Buffer
			for i := 0; i < b.N; i++ {
				out, err := Generate(c, Options{Peer: p})
				if err != nil {
					b.Fatal(err)
				}
				buf.Reset()
				out.WriteTo(&buf)
			}
		})
	}
}
