package config

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/gresec/gresec/esp"
)

// staticConf is good with its [static] section replaced by body.
func staticConf(body string) string {
	return good[:strings.Index(good, "[static]")] + "[static]\nspi_out = 0x1001\nspi_in = 0x1002\n" + body
}

func hexOf(n int, b byte) string { return "0x" + hex.EncodeToString(bytes.Repeat([]byte{b}, n)) }

func TestStaticTransforms(t *testing.T) {
	tests := []struct {
		esp        string // "" = no esp key
		extra      string
		enc, integ int
		want       string // Transform.String()
		mtu        int
	}{
		{"", "", 36, 0, "aes256gcm16", 1442},
		{"", "", 20, 0, "aes128gcm16", 1442},
		{"", "esn = true\n", 36, 0, "aes256gcm16-esn", 1442},
		{"aes192gcm16", "", 28, 0, "aes192gcm16", 1442},
		{"chacha20poly1305", "", 36, 0, "chacha20poly1305", 1442},
		{"aes128-sha1", "", 16, 20, "aes128-sha1", 1434},
		{"aes256-sha256", "", 32, 32, "aes256-sha256", 1434},
		{"aes256-sha256", "esn = true\n", 32, 32, "aes256-sha256-esn", 1434},
		{"aes256-sha256-esn", "esn = true\n", 32, 32, "aes256-sha256-esn", 1434},
		{"aes256-sha384", "", 32, 48, "aes256-sha384", 1418},
		{"aes256-sha512", "", 32, 64, "aes256-sha512", 1418},
	}
	for _, tt := range tests {
		body := ""
		if tt.esp != "" {
			body += fmt.Sprintf("esp = %q\n", tt.esp)
		}
		body += tt.extra
		body += fmt.Sprintf("key_out = %q\nkey_in = %q\n", hexOf(tt.enc, 0x11), hexOf(tt.enc, 0x22))
		if tt.integ > 0 {
			body += fmt.Sprintf("auth_key_out = %q\nauth_key_in = %q\n", hexOf(tt.integ, 0x33), hexOf(tt.integ, 0x44))
		}
		c, err := Parse("t.toml", []byte(staticConf(body)))
		if err != nil {
			t.Errorf("%s: %v", tt.want, err)
			continue
		}
		s := c.Static
		if s.Transform.String() != tt.want || c.ESPTransform() != s.Transform {
			t.Errorf("%s: transform %v", tt.want, s.Transform)
		}
		// One Key per direction: encryption key, then integrity key.
		wantOut := append(bytes.Repeat([]byte{0x11}, tt.enc), bytes.Repeat([]byte{0x33}, tt.integ)...)
		wantIn := append(bytes.Repeat([]byte{0x22}, tt.enc), bytes.Repeat([]byte{0x44}, tt.integ)...)
		if !bytes.Equal(s.KeyOut, wantOut) || !bytes.Equal(s.KeyIn, wantIn) || len(s.KeyOut) != s.Transform.KeymatLen() {
			t.Errorf("%s: keys not enc || integ", tt.want)
		}
		if c.MTU != tt.mtu {
			t.Errorf("%s: MTU %d, want %d", tt.want, c.MTU, tt.mtu)
		}
		if got := c.Overhead() + c.MTU; got > 1500 || got < 1500-s.Transform.BlockSize() {
			t.Errorf("%s: MTU %d + overhead %d = %d, want the 1500-byte underlay filled to the block", tt.want, c.MTU, c.Overhead(), got)
		}
		// The keys make working SAs.
		for _, k := range []Key{s.KeyOut, s.KeyIn} {
			if _, err := s.Transform.NewSA(0x1001, k, 64); err != nil {
				t.Errorf("%s: %v", tt.want, err)
			}
		}
	}
}

func TestStaticTransformErrors(t *testing.T) {
	k := func(out, in string) string { return fmt.Sprintf("key_out = %q\nkey_in = %q\n", out, in) }
	a := func(out, in string) string { return fmt.Sprintf("auth_key_out = %q\nauth_key_in = %q\n", out, in) }
	tests := []struct{ body, want string }{
		{`esp = "aes256-md5"` + "\n" + k(hexOf(32, 1), hexOf(32, 2)), `static.esp: expected an ESP transform like`},
		{`esp = "aes256-sha256"` + "\n" + k(hexOf(32, 1), hexOf(32, 2)), `static.auth_key_out: missing; expected "0x" and 32 bytes (the HMAC key of aes256-sha256) in hex`},
		{`esp = "aes256-sha256"` + "\n" + k(hexOf(36, 1), hexOf(32, 2)) + a(hexOf(32, 3), hexOf(32, 4)), `static.key_out: expected 32 bytes (the AES-256 key of aes256-sha256; the HMAC key goes in auth_key_in/auth_key_out), got 36 bytes`},
		{`esp = "aes128-sha1"` + "\n" + k(hexOf(16, 1), hexOf(16, 2)) + a(hexOf(20, 3), hexOf(32, 4)), `static.auth_key_in: expected 20 bytes (the HMAC key of aes128-sha1), got 32 bytes`},
		{`esp = "aes256gcm16"` + "\n" + k(hexOf(36, 1), hexOf(36, 2)) + a(hexOf(32, 3), hexOf(32, 4)), `static.auth_key_out: aes256gcm16 is an AEAD`},
		{`esp = "chacha20poly1305"` + "\n" + k(hexOf(32, 1), hexOf(32, 2)), `static.key_out: expected 36 bytes (32-byte key + 4-byte salt) for chacha20poly1305, got 32 bytes`},
		{`esp = "aes128gcm16"` + "\n" + k(hexOf(36, 1), hexOf(36, 2)), `static.key_out: expected 20 bytes (16-byte key + 4-byte salt) for aes128gcm16, got 36`},
		{k(hexOf(20, 1), hexOf(36, 2)), `static.key_in: expected an AES-128-GCM key like key_out`},
		{`esp = "aes256gcm16-esn"` + "\nesn = false\n" + k(hexOf(36, 1), hexOf(36, 2)), `static.esn: esn = false contradicts`},
		{"seq_out = 4294967295\n" + k(hexOf(36, 1), hexOf(36, 2)), `static.seq_out: expected an integer 0..4294967294`},
		{"seq_out = -1\nesn = true\n" + k(hexOf(36, 1), hexOf(36, 2)), `static.seq_out: expected an integer 0..`},
		{`esp = "aes256-sha256"` + "\n" + k(hexOf(32, 1), hexOf(32, 2)) + a("0xzz", hexOf(32, 4)), `static.auth_key_out: expected hex digits`},
	}
	for _, tt := range tests {
		_, err := Parse("bad.toml", []byte(staticConf(tt.body)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q:\n got  %v\n want %q", tt.body, err, tt.want)
			continue
		}
		for _, b := range []string{"0101", "0202", "0303", "0404"} {
			if strings.Contains(err.Error(), b) {
				t.Errorf("error leaks key material: %v", err)
			}
		}
	}
}

func TestStaticSeqOut(t *testing.T) {
	keys := fmt.Sprintf("key_out = %q\nkey_in = %q\n", hexOf(36, 1), hexOf(36, 2))
	for _, tt := range []struct {
		body string
		want uint64
	}{
		{keys, 0},
		{"seq_out = 4294967280\n" + keys, 4294967280},
		{"esn = true\nseq_out = 4294967300\n" + keys, 4294967300},
	} {
		c, err := Parse("t.toml", []byte(staticConf(tt.body)))
		if err != nil || c.Static.SeqOut != tt.want {
			t.Errorf("%q: seq_out %v, %v; want %d", tt.body, c, err, tt.want)
		}
	}
	// Changing the transform or seq_out is a change of the static SAs.
	a, _ := Parse("a.toml", []byte(staticConf(keys)))
	b, _ := Parse("b.toml", []byte(staticConf("esn = true\nseq_out = 7\n"+keys)))
	var keysChanged []string
	for _, ch := range Diff(a, a.Digests(), b) {
		keysChanged = append(keysChanged, ch.Key())
	}
	if got := strings.Join(keysChanged, " "); !strings.Contains(got, "static.esp") || !strings.Contains(got, "static.seq_out") {
		t.Errorf("Diff lists %q, want static.esp and static.seq_out", got)
	}
}

func TestESPTransformUnderIKE(t *testing.T) {
	c := &Config{Keying: KeyingIKEv2}
	if c.ESPTransform() != esp.DefaultTransform {
		t.Errorf("IKE tunnel MTU transform %v", c.ESPTransform())
	}
}
