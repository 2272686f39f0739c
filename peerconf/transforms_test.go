package peerconf

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/ike"
)

// withESP sets c's ESP proposals past config's check, which refuses the
// transforms the ESP data plane does not implement yet (ike.DataPlaneESP):
// peer-config must still translate them.
func withESP(t testing.TB, c *config.Config, proposals ...string) *config.Config {
	t.Helper()
	var all []ike.Proposal
	for _, s := range proposals {
		ps, err := ike.ParseProposals(ike.ProtoESP, s)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ps...)
	}
	c.IKE.ESPProposals, c.IKE.ESPProposalText = ike.Numbered(all), proposals
	if c.MTUComputed {
		c.MTU = c.ComputedMTU() // as Parse would have with these proposals
	}
	return c
}

// TestXfrmAlgorithm: the ip xfrm algorithm for each ESP transform, with
// the key material split in KEYMAT order (cipher key and salt, then the
// integrity key): the Linux kernel's names and ICV lengths in bits.
func TestXfrmAlgorithm(t *testing.T) {
	hexKey := func(from, to int) string {
		b := make([]byte, to-from)
		for i := range b {
			b[i] = byte(from + i)
		}
		return fmt.Sprintf("0x%x", b)
	}
	for _, tc := range []struct {
		s    ike.Suite
		want string
	}{
		{ike.Suite{Encr: ike.ENCR_AES_GCM_16, KeyBits: 128}, "aead 'rfc4106(gcm(aes))' " + hexKey(0, 20) + " 128"},
		{ike.Suite{Encr: ike.ENCR_AES_GCM_16, KeyBits: 256}, "aead 'rfc4106(gcm(aes))' " + hexKey(0, 36) + " 128"},
		{ike.Suite{Encr: ike.ENCR_CHACHA20_POLY1305, KeyBits: 256}, "aead 'rfc7539esp(chacha20,poly1305)' " + hexKey(0, 36) + " 128"},
		{ike.Suite{Encr: ike.ENCR_AES_CBC, KeyBits: 128, Integ: ike.AUTH_HMAC_SHA1_96},
			"enc 'cbc(aes)' " + hexKey(0, 16) + " auth-trunc 'hmac(sha1)' " + hexKey(16, 36) + " 96"},
		{ike.Suite{Encr: ike.ENCR_AES_CBC, KeyBits: 256, Integ: ike.AUTH_HMAC_SHA2_256_128},
			"enc 'cbc(aes)' " + hexKey(0, 32) + " auth-trunc 'hmac(sha256)' " + hexKey(32, 64) + " 128"},
		{ike.Suite{Encr: ike.ENCR_AES_CBC, KeyBits: 192, Integ: ike.AUTH_HMAC_SHA2_384_192},
			"enc 'cbc(aes)' " + hexKey(0, 24) + " auth-trunc 'hmac(sha384)' " + hexKey(24, 72) + " 192"},
		{ike.Suite{Encr: ike.ENCR_AES_CBC, KeyBits: 256, Integ: ike.AUTH_HMAC_SHA2_512_256},
			"enc 'cbc(aes)' " + hexKey(0, 32) + " auth-trunc 'hmac(sha512)' " + hexKey(32, 96) + " 256"},
	} {
		got, err := xfrmAlgorithm(tc.s, hexKey)
		if err != nil || got != tc.want {
			t.Errorf("%s:\n got  %q, %v\n want %q", tc.s.Transform(), got, err, tc.want)
		}
	}
	if _, err := xfrmAlgorithm(ike.Suite{Encr: ike.ENCR_AES_CBC, KeyBits: 128}, hexKey); err == nil {
		t.Error("AES-CBC without integrity accepted")
	}
}

// TestTransformErrors: what a peer cannot express is an error naming the
// proposal and what is missing, never a configuration that fails later.
func TestTransformErrors(t *testing.T) {
	chacha := parseTestdata(t, "chacha")
	for _, tc := range []struct {
		name string
		c    *config.Config
		peer Peer
		want string
	}{
		{"iked chacha20 IKE SA", chacha, OpenBSD, `IKE proposal "chacha20poly1305-prfsha256-curve25519": OpenBSD iked cannot express chacha20poly1305 for the IKE SA`},
		{"ios chacha20 IKE SA", chacha, CiscoIOS, `IKE proposal "chacha20poly1305-prfsha256-curve25519": Cisco IOS cannot express chacha20poly1305`},
		{"ios chacha20 ESP", withESP(t, parseTestdata(t, "iked-ios"), "chacha20poly1305-ecp384"), CiscoIOS,
			`ESP proposal "chacha20poly1305-ecp384": Cisco IOS cannot express chacha20poly1305`},
		{"ios esn", withESP(t, parseTestdata(t, "appliance"), "aes128-sha1-modp2048-esn"), CiscoIOS,
			`ESP proposal "aes128-sha1-modp2048-esn": Cisco IOS cannot express extended sequence numbers`},
		{"ios too many transform sets", withESP(t, parseTestdata(t, "appliance"), "aes256-aes192-aes128-sha512-sha384-sha256-sha1"), CiscoIOS,
			`make 12 IOS transform sets; an IPsec profile takes at most 6`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Generate(tc.c, Options{Peer: tc.peer})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// TestIOSKeepalive: gresec's keepalives become IOS's `keepalive 10 3` on
// a plain GRE tunnel; under tunnel protection, where IOS's answers would
// leave unencrypted, a warning instead of a line that cannot work.
func TestIOSKeepalive(t *testing.T) {
	none := parseTestdata(t, "iked-ios-none")
	none.Keepalive, none.KeepaliveRetries = 10*time.Second, 3
	if out := render(t, none, Options{Peer: CiscoIOS}); !strings.Contains(out, " tunnel path-mtu-discovery\n keepalive 10 3\n") {
		t.Errorf("plain GRE: no keepalive 10 3 on Tunnel0:\n%s", out)
	}
	ikev2 := parseTestdata(t, "iked-ios")
	ikev2.Keepalive, ikev2.KeepaliveRetries = 5*time.Second, 4
	out := render(t, ikev2, Options{Peer: CiscoIOS})
	if strings.Contains(out, " keepalive 5") || !strings.Contains(out, "under tunnel protection IOS\n ! answers them unencrypted") {
		t.Errorf("tunnel protection: want a warning, not a keepalive line:\n%s", out)
	}
	if out := render(t, parseTestdata(t, "iked-ios-none"), Options{Peer: CiscoIOS}); strings.Contains(out, "keepalive") {
		t.Errorf("keepalive written although gresec sends none")
	}
}
