package peerconf

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gresec/gresec/ike"
)

// TestProposalTranslation is the translation table: one of our proposals
// (strongSwan syntax, as in the gresec config) and what each peer writes,
// or the error it gets ("!" prefix: the error must contain the rest).
func TestProposalTranslation(t *testing.T) {
	for _, tc := range []struct {
		proto                ike.ProtocolID
		ours                 string
		swan, iked, iosProps string // IOS: IKE encryption/integrity/prf/group, ESP transform sets/pfs group
	}{
		// The iked + IOS pair.
		{ike.ProtoIKE, "aes256gcm16-prfsha384-ecp384",
			"aes256gcm16-prfsha384-ecp384", "ikesa enc aes-256-gcm prf hmac-sha2-384 group ecp384", "aes-gcm-256//sha384/20"},
		{ike.ProtoESP, "aes256gcm16-ecp384",
			"aes256gcm16-ecp384", "childsa enc aes-256-gcm group ecp384 noesn", "esp-gcm 256/pfs 20"},
		// Aliases normalise: "sha256" is strongSwan's PRF spelling too.
		{ike.ProtoIKE, "aes128gcm128-sha256-x25519",
			"aes128gcm16-prfsha256-curve25519", "ikesa enc aes-128-gcm prf hmac-sha2-256 group curve25519", "!DH group curve25519"},
		{ike.ProtoIKE, "aes256gcm16-aes128gcm16-prfsha512-prfsha256-ecp521-modp2048",
			"aes256gcm16-aes128gcm16-prfsha512-prfsha256-ecp521-modp2048",
			"ikesa enc aes-256-gcm enc aes-128-gcm prf hmac-sha2-512 prf hmac-sha2-256 group ecp521 group modp2048",
			"aes-gcm-256 aes-gcm-128//sha512 sha256/21 14"},
		{ike.ProtoIKE, "aes192gcm16-prfsha384-ecp256",
			"aes192gcm16-prfsha384-ecp256", "!aes192gcm16 for the IKE SA", "!aes192gcm16 (IOS has aes-cbc-128/192/256, aes-gcm-128 and aes-gcm-256)"},
		{ike.ProtoIKE, "aes128gcm16-prfsha1-ecp256",
			"aes128gcm16-prfsha1-ecp256", "ikesa enc aes-128-gcm prf hmac-sha1 group ecp256", "aes-gcm-128//sha1/19"},
		{ike.ProtoESP, "aes192gcm16",
			"aes192gcm16", "childsa enc aes-192-gcm noesn", "!aes192gcm16 (IOS has esp-aes 128/192/256"},
		{ike.ProtoESP, "aes128gcm16-esn",
			"aes128gcm16-esn", "childsa enc aes-128-gcm esn", "!extended sequence numbers"},
		{ike.ProtoESP, "aes128gcm16-esn-noesn",
			"aes128gcm16-esn-noesn", "childsa enc aes-128-gcm esn noesn", "esp-gcm 128/pfs 0"},
		{ike.ProtoESP, "aes256gcm16-aes128gcm16-modp2048-ecp256",
			"aes256gcm16-aes128gcm16-modp2048-ecp256", "childsa enc aes-256-gcm enc aes-128-gcm group modp2048 group ecp256 noesn", "esp-gcm 256,esp-gcm 128/pfs 14"},

		// AES-CBC with HMAC: the appliance's `AES SHA 14` (IKE and ESP).
		// strongSwan's spelling names the PRF the integrity algorithm implied.
		{ike.ProtoIKE, "aes128-sha1-modp2048",
			"aes128-sha1-prfsha1-modp2048", "ikesa enc aes-128 auth hmac-sha1 prf hmac-sha1 group modp2048", "aes-cbc-128/sha1/sha1/14"},
		{ike.ProtoESP, "aes128-sha1-modp2048",
			"aes128-sha1-modp2048", "childsa enc aes-128 auth hmac-sha1 group modp2048 noesn", "esp-aes esp-sha-hmac/pfs 14"},
		// iked's child on Linux (the iked + IOS pair's line, child transform changed).
		{ike.ProtoESP, "aes256-sha256-ecp384",
			"aes256-sha256-ecp384", "childsa enc aes-256 auth hmac-sha2-256 group ecp384 noesn", "esp-aes 256 esp-sha256-hmac/pfs 20"},
		{ike.ProtoIKE, "aes256-sha256-ecp384",
			"aes256-sha256-prfsha256-ecp384", "ikesa enc aes-256 auth hmac-sha2-256 prf hmac-sha2-256 group ecp384", "aes-cbc-256/sha256/sha256/20"},
		{ike.ProtoIKE, "aes256-sha512-prfsha384-modp4096",
			"aes256-sha512-prfsha384-modp4096", "ikesa enc aes-256 auth hmac-sha2-512 prf hmac-sha2-384 group modp4096", "aes-cbc-256/sha512/sha384/16"},
		{ike.ProtoIKE, "aes192-sha384-modp3072",
			"aes192-sha384-prfsha384-modp3072", "ikesa enc aes-192 auth hmac-sha2-384 prf hmac-sha2-384 group modp3072", "aes-cbc-192/sha384/sha384/15"},
		{ike.ProtoESP, "aes192-sha384-modp3072",
			"aes192-sha384-modp3072", "childsa enc aes-192 auth hmac-sha2-384 group modp3072 noesn", "esp-aes 192 esp-sha384-hmac/pfs 15"},
		{ike.ProtoIKE, "aes256-aes128-sha256-sha1-modp2048",
			"aes256-aes128-sha256-sha1-prfsha256-prfsha1-modp2048",
			"ikesa enc aes-256 enc aes-128 auth hmac-sha2-256 auth hmac-sha1 prf hmac-sha2-256 prf hmac-sha1 group modp2048",
			"aes-cbc-256 aes-cbc-128/sha256 sha1/sha256 sha1/14"},
		// Every cipher with every integrity algorithm: one transform set each.
		{ike.ProtoESP, "aes256-aes128-sha256-sha1-modp4096",
			"aes256-aes128-sha256-sha1-modp4096", "childsa enc aes-256 enc aes-128 auth hmac-sha2-256 auth hmac-sha1 group modp4096 noesn",
			"esp-aes 256 esp-sha256-hmac,esp-aes 256 esp-sha-hmac,esp-aes esp-sha256-hmac,esp-aes esp-sha-hmac/pfs 16"},
		{ike.ProtoESP, "aes256-aes192-aes128-sha512-sha256-sha1",
			"aes256-aes192-aes128-sha512-sha256-sha1", "childsa enc aes-256 enc aes-192 enc aes-128 auth hmac-sha2-512 auth hmac-sha2-256 auth hmac-sha1 noesn",
			"!9 IOS transform sets; an IPsec profile takes at most 6"},
		{ike.ProtoESP, "aes256-sha512-esn",
			"aes256-sha512-esn", "childsa enc aes-256 auth hmac-sha2-512 esn", "!extended sequence numbers"},

		// ChaCha20-Poly1305: an AEAD with a fixed 256-bit key.
		{ike.ProtoIKE, "chacha20poly1305-prfsha256-x25519",
			"chacha20poly1305-prfsha256-curve25519", "!chacha20poly1305 for the IKE SA", "!chacha20poly1305 (IOS has"},
		{ike.ProtoESP, "chacha20poly1305-x25519",
			"chacha20poly1305-curve25519", "childsa enc chacha20-poly1305 group curve25519 noesn", "!chacha20poly1305 (IOS has"},
		{ike.ProtoESP, "chacha20poly1305-esn",
			"chacha20poly1305-esn", "childsa enc chacha20-poly1305 esn", "!extended sequence numbers"},
	} {
		t.Run(tc.ours, func(t *testing.T) {
			ps := ike.MustParseProposals(tc.proto, tc.ours)
			check := func(peer, want string, got string, err error) {
				t.Helper()
				if strings.HasPrefix(want, "!") {
					if err == nil || !strings.Contains(err.Error(), want[1:]) || !strings.Contains(err.Error(), tc.ours[:5]) {
						t.Errorf("%s: got %q, %v; want an error naming the proposal and %q", peer, got, err, want[1:])
					}
					return
				}
				if err != nil || got != want {
					t.Errorf("%s: got %q, %v; want %q", peer, got, err, want)
				}
			}
			s, err := swanProposals(ps)
			check("strongSwan", tc.swan, s, err)
			// Round trip: strongSwan's spelling is ours; it must parse back the same.
			if back, err := ike.ParseProposals(tc.proto, s); err != nil || swanProposal(back[0]) != s {
				t.Errorf("strongSwan spelling %q does not parse back (%v)", s, err)
			}
			ik, err := ikedTransforms(ps)
			check("iked", tc.iked, strings.Join(ik, " "), err)
			var ios string
			if tc.proto == ike.ProtoIKE {
				var props []iosIKEProposal
				props, err = iosIKEProposals(ps)
				for _, p := range props {
					ios = p.encryption + "/" + p.integrity + "/" + p.prf + "/" + p.group
				}
			} else {
				var e iosESP
				e, err = iosESPProposals(ps)
				var sets []string
				for _, s := range e.sets {
					sets = append(sets, s.transform)
				}
				ios = fmt.Sprintf("%s/pfs %d", strings.Join(sets, ","), e.pfs)
			}
			check("IOS", tc.iosProps, ios, err)
		})
	}
}

func TestIkedBytes(t *testing.T) {
	for n, want := range map[uint64]string{500 << 20: "500M", 1 << 30: "1G", 4 << 30: "4G", 3 << 10: "3K", 1000000: "1000000", 1048577: "1048577"} {
		if got := ikedBytes(n); got != want {
			t.Errorf("ikedBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestIOSReplay(t *testing.T) {
	for w, want := range map[int]string{0: "disable", 1: "window-size 64", 64: "window-size 64", 100: "window-size 128", 1024: "window-size 1024", 4096: "window-size 1024"} {
		if got := iosReplay(w); got != want {
			t.Errorf("iosReplay(%d) = %q, want %q", w, got, want)
		}
	}
}
