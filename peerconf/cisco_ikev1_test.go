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
