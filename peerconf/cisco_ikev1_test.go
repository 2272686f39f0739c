package peerconf

import (
	"strings"
	"testing"

	"github.com/gresec/gresec/ike"
)

// TestIKEv1Pairing: keying = "ikev1" is written for IOS's IKEv1 only, and
// --for cisco-ios-ikev1 only from keying = "ikev1": never an IKEv2 peer
// configuration for an IKEv1 tunnel, or the reverse.
func TestIKEv1Pairing(t *testing.T) {
	v1 := parseTestdata(t, "ikev1")
	for _, p := range []Peer{StrongSwan, OpenBSD, CiscoIOS, Linux, FreeBSD} {
		if _, err := Generate(v1, Options{Peer: p}); err == nil || !strings.Contains(err.Error(), `ipsec.keying = "ikev1"`) {
			t.Errorf("--for %s with keying ikev1: %v, want a refusal naming the keying", p, err)
		}
	}
	v2 := parseTestdata(t, "iked-ios")
	if _, err := Generate(v2, Options{Peer: CiscoIOSIKEv1}); err == nil || !strings.Contains(err.Error(), `needs keying = "ikev1"`) {
		t.Errorf("--for cisco-ios-ikev1 with keying ikev2: %v", err)
	}
	// With the key: written once, for the address of gresec.
	v1.IKE.LocalPSK, v1.IKE.RemotePSK = ike.Secret("Tr0ub4dor-and-3"), ike.Secret("Tr0ub4dor-and-3")
	out := render(t, v1, Options{Peer: CiscoIOSIKEv1, IncludeSecret: true})
	if strings.Count(out, "Tr0ub4dor-and-3") != 1 || !strings.Contains(out, "crypto isakmp key Tr0ub4dor-and-3 address 198.18.0.1 no-xauth\n") {
		t.Errorf("the key line:\n%s", out)
	}
}

// TestRacoon: --for freebsd-racoon only from keying = "ikev1"; the key
// appears once, in psk.txt, for gresec's address; what racoon cannot do
// (elliptic curves, AES-GCM in phase 2) is refused with the reason.
func TestRacoon(t *testing.T) {
	if _, err := Generate(parseTestdata(t, "iked-ios"), Options{Peer: FreeBSDRacoon}); err == nil || !strings.Contains(err.Error(), `needs keying = "ikev1"`) {
		t.Errorf("--for freebsd-racoon with keying ikev2: %v", err)
	}
	v1 := parseTestdata(t, "ikev1")
	v1.IKE.LocalPSK, v1.IKE.RemotePSK = ike.Secret("Tr0ub4dor-and-3"), ike.Secret("Tr0ub4dor-and-3")
	out, err := Generate(v1, Options{Peer: FreeBSDRacoon, IncludeSecret: true})
	if err != nil {
		t.Fatal(err)
	}
	s, ok := out.Section(RacoonPSK)
	if !ok || s.Mode != 0o600 || s.Text != "198.18.0.1 Tr0ub4dor-and-3\n" {
		t.Errorf("psk.txt %+v", s)
	}
	if all := render(t, v1, Options{Peer: FreeBSDRacoon, IncludeSecret: true}); strings.Count(all, "Tr0ub4dor-and-3") != 1 {
		t.Errorf("the key appears %d times", strings.Count(all, "Tr0ub4dor-and-3"))
	}
	for _, tc := range []struct {
		field string
		prop  string
		want  string
	}{
		{"ike", "aes128-sha256-ecp256", "MODP groups only"},
		{"esp", "aes128gcm16-modp2048", "AES-CBC with HMAC-SHA"},
		{"esp", "aes128-sha1-ecp256", "MODP groups only"},
	} {
		c := parseTestdata(t, "ikev1")
		if tc.field == "ike" {
			c.IKE.Proposals = ike.MustParseProposals(ike.ProtoIKE, tc.prop)
		} else {
			c.IKE.ESPProposals = ike.MustParseProposals(ike.ProtoESP, tc.prop)
		}
		if _, err := Generate(c, Options{Peer: FreeBSDRacoon}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: %v, want %q", tc.field, tc.prop, err, tc.want)
		}
	}
}
