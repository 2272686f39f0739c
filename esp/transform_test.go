package esp

import (
	"strings"
	"testing"
)

func TestParseTransform(t *testing.T) {
	tests := []struct {
		in   string
		want Transform
		name string // canonical String()
	}{
		{"aes256gcm16", Transform{Cipher: CipherAESGCM16, KeyBits: 256}, "aes256gcm16"},
		{"aes128gcm16", Transform{Cipher: CipherAESGCM16, KeyBits: 128}, "aes128gcm16"},
		{"AES192GCM16", Transform{Cipher: CipherAESGCM16, KeyBits: 192}, "aes192gcm16"},
		{"aes256gcm128", Transform{Cipher: CipherAESGCM16, KeyBits: 256}, "aes256gcm16"},
		{"chacha20poly1305", Transform{Cipher: CipherChaCha20Poly1305, KeyBits: 256}, "chacha20poly1305"},
		{"aes128-sha1", Transform{Cipher: CipherAESCBC, KeyBits: 128, Integ: IntegHMACSHA1_96}, "aes128-sha1"},
		{"aes-sha1", Transform{Cipher: CipherAESCBC, KeyBits: 128, Integ: IntegHMACSHA1_96}, "aes128-sha1"},
		{"aes256-sha256", Transform{Cipher: CipherAESCBC, KeyBits: 256, Integ: IntegHMACSHA256_128}, "aes256-sha256"},
		{"aes256-sha2_256", Transform{Cipher: CipherAESCBC, KeyBits: 256, Integ: IntegHMACSHA256_128}, "aes256-sha256"},
		{"aes192-sha384", Transform{Cipher: CipherAESCBC, KeyBits: 192, Integ: IntegHMACSHA384_192}, "aes192-sha384"},
		{"aes256-sha512", Transform{Cipher: CipherAESCBC, KeyBits: 256, Integ: IntegHMACSHA512_256}, "aes256-sha512"},
		{"aes256-sha512-esn", Transform{Cipher: CipherAESCBC, KeyBits: 256, Integ: IntegHMACSHA512_256, ESN: true}, "aes256-sha512-esn"},
		{"aes256gcm16-esn", Transform{Cipher: CipherAESGCM16, KeyBits: 256, ESN: true}, "aes256gcm16-esn"},
		{"chacha20poly1305-noesn", Transform{Cipher: CipherChaCha20Poly1305, KeyBits: 256}, "chacha20poly1305"},
	}
	for _, tt := range tests {
		got, err := ParseTransform(tt.in)
		if err != nil || got != tt.want || got.String() != tt.name {
			t.Errorf("ParseTransform(%q) = %+v (%q), %v; want %+v (%q)", tt.in, got, got, err, tt.want, tt.name)
		}
		if again, err := ParseTransform(got.String()); err != nil || again != got {
			t.Errorf("%q does not parse back: %+v %v", got, again, err)
		}
	}
	for _, bad := range []string{"", "aes256", "aes512-sha256", "aes256-md5", "aes256gcm16-sha256",
		"chacha20poly1305-sha1", "aes256gcm8", "3des-sha1", "aes256-sha256-modp2048", "-esn", "aes256-sha256-esn-esn"} {
		if tr, err := ParseTransform(bad); err == nil {
			t.Errorf("ParseTransform(%q) accepted: %+v", bad, tr)
		} else if !strings.Contains(err.Error(), "esp:") {
			t.Errorf("ParseTransform(%q): error %q does not say where it comes from", bad, err)
		}
	}
	if err := (Transform{}).Validate(); err == nil {
		t.Error("zero Transform is valid")
	}
	if err := (Transform{Cipher: CipherAESGCM16, KeyBits: 256, Integ: IntegHMACSHA1_96}).Validate(); err == nil {
		t.Error("GCM with HMAC is valid")
	}
	if err := (Transform{Cipher: CipherAESCBC, KeyBits: 256}).Validate(); err == nil {
		t.Error("CBC without HMAC is valid")
	}
}

// TestTransformFigures pins each transform's sizes to its RFC and the
// MTUs docs/configuration.md quotes.
func TestTransformFigures(t *testing.T) {
	tests := []struct {
		name                          string
		enc, integ, iv, icv, block    int
		mtu4, mtu6                    int // GRE 4 over a 1500-byte underlay
		desc                          string
		ikeEncr, ikeBits, ikeIntegrty int
	}{
		{"aes128gcm16", 20, 0, 8, 16, 4, 1442, 1422, "esp-aes-128-gcm-16", 20, 128, 0},
		{"aes192gcm16", 28, 0, 8, 16, 4, 1442, 1422, "esp-aes-192-gcm-16", 20, 192, 0},
		{"aes256gcm16", 36, 0, 8, 16, 4, 1442, 1422, "esp-aes-256-gcm-16", 20, 256, 0},
		{"chacha20poly1305", 36, 0, 8, 16, 4, 1442, 1422, "esp-chacha20-poly1305", 28, 0, 0},
		{"aes128-sha1", 16, 20, 16, 12, 16, 1434, 1418, "esp-aes-128-cbc-hmac-sha1-96", 12, 128, 2},
		{"aes256-sha256", 32, 32, 16, 16, 16, 1434, 1402, "esp-aes-256-cbc-hmac-sha2-256-128", 12, 256, 12},
		{"aes256-sha384", 32, 48, 16, 24, 16, 1418, 1402, "esp-aes-256-cbc-hmac-sha2-384-192", 12, 256, 13},
		{"aes256-sha512", 32, 64, 16, 32, 16, 1418, 1386, "esp-aes-256-cbc-hmac-sha2-512-256", 12, 256, 14},
	}
	for _, tt := range tests {
		tr := mustTransform(t, tt.name)
		if tr.EncKeyLen() != tt.enc || tr.IntegKeyLen() != tt.integ || tr.KeymatLen() != tt.enc+tt.integ ||
			tr.IVLen() != tt.iv || tr.ICVLen() != tt.icv || tr.BlockSize() != tt.block {
			t.Errorf("%s: keys %d+%d, IV %d, ICV %d, block %d", tt.name, tr.EncKeyLen(), tr.IntegKeyLen(), tr.IVLen(), tr.ICVLen(), tr.BlockSize())
		}
		if m := tr.TunnelMTU(1500, 20, 4); m != tt.mtu4 {
			t.Errorf("%s: IPv4 MTU %d, want %d", tt.name, m, tt.mtu4)
		}
		if m := tr.TunnelMTU(1500, 40, 4); m != tt.mtu6 {
			t.Errorf("%s: IPv6 MTU %d, want %d", tt.name, m, tt.mtu6)
		}
		if tr.Description() != tt.desc {
			t.Errorf("%s: description %q", tt.name, tr.Description())
		}
		esn := tr
		esn.ESN = true
		if esn.Description() != tt.desc+"-esn" || esn.TunnelMTU(1500, 20, 4) != tt.mtu4 {
			t.Errorf("%s: ESN changes the MTU or is not in the description %q", tt.name, esn.Description())
		}
		// The MTU is exact: the largest inner packet fills the underlay,
		// one byte more does not fit.
		for _, outer := range []int{20, 40} {
			for _, gre := range []int{4, 8, 12} {
				for _, under := range []int{576, 1280, 1500, 9000} {
					m := tr.TunnelMTU(under, outer, gre)
					if got := outer + gre + m + tr.Overhead(gre+m); got > under {
						t.Errorf("%s: MTU %d over %d makes %d-byte packets", tt.name, m, under, got)
					}
					if got := outer + gre + m + 1 + tr.Overhead(gre+m+1); got <= under {
						t.Errorf("%s: MTU %d over %d is not the largest (%d fits)", tt.name, m, under, m+1)
					}
				}
			}
		}
		encr, bits, integ := tr.IKE()
		if int(encr) != tt.ikeEncr || bits != tt.ikeBits || int(integ) != tt.ikeIntegrty {
			t.Errorf("%s: IKE IDs %d/%d/%d", tt.name, encr, bits, integ)
		}
		for _, e := range []bool{false, true} {
			back, err := TransformFromIKE(encr, bits, integ, e)
			want := tr
			want.ESN = e
			if err != nil || back != want {
				t.Errorf("%s: TransformFromIKE = %+v, %v", tt.name, back, err)
			}
		}
	}
	if tr, err := TransformFromIKE(IKEEncrAESGCM16, 256, IKEIntegHMACSHA256_128, false); err == nil {
		t.Errorf("GCM with an INTEG transform accepted: %v", tr)
	}
	if tr, err := TransformFromIKE(IKEEncrAESCBC, 256, IKEIntegNone, false); err == nil {
		t.Errorf("CBC without INTEG accepted: %v", tr)
	}
	for _, bad := range [][3]int{{3, 0, 2}, {12, 64, 2}, {12, 256, 5}, {20, 100, 0}} {
		if tr, err := TransformFromIKE(uint16(bad[0]), bad[1], uint16(bad[2]), false); err == nil {
			t.Errorf("TransformFromIKE%v accepted: %v", bad, tr)
		}
	}
	if DefaultTransform.Name() != "aes256gcm16" || DefaultTransform.TunnelMTU(1500, 20, 4) != 1442 {
		t.Error("DefaultTransform is not the seed's AES-256-GCM")
	}
	if got := (Transform{Cipher: CipherAESCBC, KeyBits: 256, Integ: IntegHMACSHA512_256}).TunnelMTU(60, 40, 4); got != 0 {
		t.Errorf("MTU with no room: %d", got)
	}
}
