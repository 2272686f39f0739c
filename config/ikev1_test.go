package config

import (
	"strings"
	"testing"
)

const ikev1Base = `[tunnel]
local = "198.18.0.1"
remote = "198.18.0.2"
[ipsec]
keying = "ikev1"
[ike]
psk_file = "PSK"
proposals = ["aes128-sha1-modp2048"]
esp_proposals = ["aes128-sha1-modp2048"]
`

func TestIKEv1Config(t *testing.T) {
	c, err := Parse("g.toml", []byte(ikev1Base))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("g.toml", []byte(strings.Replace(ikev1Base, `psk_file = "PSK"`, "psk_file = \"PSK\"\nfragmentation = \"no\"", 1))); err != nil {
		t.Errorf("fragmentation = \"no\" with IKEv1: %v", err)
	}
	if _, err := Parse("g.toml", []byte(ikev1Base[:strings.Index(ikev1Base, "[ike]")])); err == nil ||
		!strings.Contains(err.Error(), `ike: missing; ipsec.keying = "ikev1" needs an [ike] section`) {
		t.Errorf("no [ike] with IKEv1: %v", err)
	}
	if c.Keying != KeyingIKEv1 || !c.Keying.IKE() || c.IKE.ProposalText[0] != "aes128-sha1-modp2048" {
		t.Errorf("keying %q proposals %v", c.Keying, c.IKE.ProposalText)
	}
	for _, tc := range []struct{ from, to, want string }{
		// The IKEv2 defaults are AEAD, which IKEv1 phase 1 cannot carry.
		{`proposals = ["aes128-sha1-modp2048"]`, ``, `ike.proposals: keying = "ikev1" needs a proposal with AES-CBC`},
		{`psk_file = "PSK"`, "local_psk_file = \"A\"\nremote_psk_file = \"B\"", `ike.local_psk_file: keying = "ikev1" proves both sides with one key`},
		{`keying = "ikev1"`, "keying = \"ikev1\"\nmode = \"tunnel\"", `ipsec.keying: keying = "ikev1" negotiates GRE in transport mode only`},
		// IKEv1 has no RFC 7383 fragmentation: asking for it is an error, not ignored.
		{`psk_file = "PSK"`, "psk_file = \"PSK\"\nfragment_size = 576", `ike.fragment_size: keying = "ikev1" has no IKE fragmentation`},
		{`psk_file = "PSK"`, "psk_file = \"PSK\"\nfragmentation = \"yes\"", `ike.fragmentation: keying = "ikev1" has no IKE fragmentation`},
	} {
		_, err := Parse("g.toml", []byte(strings.Replace(ikev1Base, tc.from, tc.to, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q -> %q: got %v, want %q", tc.from, tc.to, err, tc.want)
		}
	}
}

// IKEv1 has NAT traversal (RFC 3947): the UDP 4500 socket opens unless
// udp_encap = "never", and "always" is taken.
func TestIKEv1UDPEncap(t *testing.T) {
	for _, tc := range []struct {
		encap  string
		socket bool
	}{{"auto", true}, {"always", true}, {"never", false}} {
		c, err := Parse("g.toml", []byte(strings.Replace(ikev1Base, `keying = "ikev1"`, "keying = \"ikev1\"\nudp_encap = \""+tc.encap+"\"", 1)))
		if err != nil {
			t.Fatalf("%s: %v", tc.encap, err)
		}
		if c.NATTSocket() != tc.socket {
			t.Errorf("%s: NATTSocket %v", tc.encap, c.NATTSocket())
		}
	}
}
