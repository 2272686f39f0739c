package config

import (
	"github.com/gresec/gresec/ikev1"
)

// KeyingIKEv1 negotiates the ESP keys with IKEv1 (package ikev1).
const KeyingIKEv1 Keying = "ikev1"

// IKE reports whether k negotiates keys with IKE (either version), and so
// takes the [ike] section and UDP port 500.
func (k Keying) IKE() bool { return k == KeyingIKEv2 || k == KeyingIKEv1 }

// ikev1 checks what IKEv1 (keying = "ikev1") cannot do: its proposals
// need AES-CBC and a SHA hash in phase 1 (no AEAD there), one PSK proves
// both sides (Main Mode has one SKEYID), and its Quick Mode IDs are GRE
// host to host, so only GRE in transport mode.
func (v *validator) ikev1(c *Config) {
	k := &c.IKE
	if len(k.Proposals) > 0 {
		if _, err := ikev1.Phase1Suites(k.Proposals, k.Lifetime); err != nil {
			v.fail("ike.proposals", "keying = \"ikev1\" needs a proposal with AES-CBC, a SHA integrity algorithm and a DH group, like \"aes128-sha1-modp2048\" (IKEv1 phase 1 has no AEAD)")
		}
	}
	if len(k.ESPProposals) > 0 && len(ikev1.Phase2Suites(k.ESPProposals)) == 0 {
		v.fail("ike.esp_proposals", "keying = \"ikev1\" needs an ESP proposal with AES-CBC and HMAC-SHA, or AES-GCM, like \"aes128-sha1-modp2048\"")
	}
	if k.LocalPSKFile != k.RemotePSKFile {
		v.fail("ike.local_psk_file", "keying = \"ikev1\" proves both sides with one key (RFC 2409 SKEYID); expected psk_file, not local_psk_file + remote_psk_file")
	}
	if c.Shape() != ShapeGRE {
		v.fail("ipsec.keying", "keying = \"ikev1\" negotiates GRE in transport mode only; expected encap = \"gre\" and mode = \"transport\"")
	}
}
