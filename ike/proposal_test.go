package ike

import (
	"reflect"
	"testing"
)

func TestParseProposalsIkedIOS(t *testing.T) {
	ike := MustParseProposals(ProtoIKE, "aes256gcm16-prfsha384-ecp384")
	want := []Proposal{{Num: 1, Protocol: ProtoIKE, Transforms: []Transform{
		{Type: TransformENCR, ID: ENCR_AES_GCM_16, Attributes: []Attribute{{Type: AttrKeyLength, TV: true, Value: 256}}},
		{Type: TransformPRF, ID: PRF_HMAC_SHA2_384},
		{Type: TransformDH, ID: 20},
	}}}
	if !reflect.DeepEqual(ike, want) {
		t.Errorf("IKE proposal %#v", ike)
	}
	s, err := SuiteOf(ike[0])
	if err != nil || s != (Suite{Encr: 20, KeyBits: 256, PRF: PRFSHA384, DH: ECP384}) || s.KeyLen() != 36 {
		t.Errorf("suite %+v %v", s, err)
	}
	if s.String() != "aes256gcm16-prfsha384-ecp384" {
		t.Errorf("suite string %q", s)
	}
	esp := MustParseProposals(ProtoESP, "aes256gcm16-ecp384")
	if got := DHGroups(esp); !reflect.DeepEqual(got, []DHGroup{ECP384}) {
		t.Errorf("PFS group %v", got)
	}
	// In IKE_AUTH the child proposal carries no DH (strongSwan sends
	// ESP:AES_GCM_16_256/NO_EXT_SEQ), with ESN "no" by default.
	auth := WithoutDH(esp)
	want = []Proposal{{Num: 1, Protocol: ProtoESP, Transforms: []Transform{
		{Type: TransformENCR, ID: ENCR_AES_GCM_16, Attributes: []Attribute{{Type: AttrKeyLength, TV: true, Value: 256}}},
		{Type: TransformESN, ID: ESN_NONE},
	}}}
	if !reflect.DeepEqual(auth, want) {
		t.Errorf("IKE_AUTH child proposal %#v", auth)
	}
	if len(esp[0].Transforms) != 3 {
		t.Error("WithoutDH modified its argument")
	}
}

func TestParseProposalsVariants(t *testing.T) {
	for _, s := range []string{
		"aes128gcm16-prfsha256-ecp256", "aes256gcm16-prfsha512-ecp521", "aes256gcm16-prfsha256-curve25519",
		"aes256gcm16-prfsha256-x25519", "aes256gcm16-prfsha384-modp2048", "aes256gcm16-sha384-ecp384",
		"aes256gcm16-aes128gcm16-prfsha384-prfsha256-ecp384-ecp256, aes128gcm16-prfsha256-modp2048",
	} {
		ps, err := ParseProposals(ProtoIKE, s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
			continue
		}
		for i, p := range ps {
			if p.Num != uint8(i+1) {
				t.Errorf("%q: proposal %d numbered %d", s, i, p.Num)
			}
		}
	}
	for _, s := range []string{"aes128gcm16", "aes256gcm16-esn", "aes128gcm16-noesn-ecp256", "aes256gcm16-esn-noesn"} {
		if _, err := ParseProposals(ProtoESP, s); err != nil {
			t.Errorf("esp %q: %v", s, err)
		}
	}
	for _, s := range []string{"", "aes256gcm16", "aes256gcm16-prfsha384", "aes256-ecp384", "aes256-aes256gcm16-sha256-ecp384", "aes256gcm16-prfmd5-ecp384", "aes256gcm16-prfsha384-modp1024", "aes256gcm16-prfsha384-ecp384-esn"} {
		if _, err := ParseProposals(ProtoIKE, s); err == nil {
			t.Errorf("ike %q accepted", s)
		}
	}
	for _, s := range []string{"aes256gcm16-sha256", "3des", "ecp384"} {
		if _, err := ParseProposals(ProtoESP, s); err == nil {
			t.Errorf("esp %q accepted", s)
		}
	}
}

func TestSelectProposal(t *testing.T) {
	ours := MustParseProposals(ProtoIKE, "aes256gcm16-prfsha384-ecp384,aes128gcm16-prfsha256-ecp256")
	// They prefer AES-128 but offer ours too: our order wins (strongSwan's
	// prefer_configured_proposals default).
	theirs := MustParseProposals(ProtoIKE, "aes128gcm16-prfsha256-ecp256,aes128gcm16-aes256gcm16-prfsha256-prfsha384-ecp256-ecp384")
	p, ok := SelectProposal(ours, theirs, true)
	if !ok {
		t.Fatal("no match")
	}
	s, _ := SuiteOf(p)
	if s.String() != "aes256gcm16-prfsha384-ecp384" || p.Num != 2 {
		t.Errorf("selected %v from their proposal %d", s, p.Num)
	}
	// Only their first is acceptable.
	p, ok = SelectProposal(ours, theirs[:1], true)
	if s, _ := SuiteOf(p); !ok || s.String() != "aes128gcm16-prfsha256-ecp256" || p.Num != 1 {
		t.Errorf("selected %v %v", s, ok)
	}
	// Key length is part of the algorithm.
	if _, ok := SelectProposal(MustParseProposals(ProtoIKE, "aes256gcm16-prfsha384-ecp384"), MustParseProposals(ProtoIKE, "aes128gcm16-prfsha384-ecp384"), true); ok {
		t.Error("AES-128 matched AES-256")
	}
	if _, ok := SelectProposal(MustParseProposals(ProtoIKE, "aes256gcm16-prfsha384-ecp384"), MustParseProposals(ProtoIKE, "aes256gcm16-prfsha384-ecp256"), true); ok {
		t.Error("DH mismatch matched")
	}

	// ESP in IKE_AUTH: their DH transforms are ignored; the SPI is theirs.
	espOurs := MustParseProposals(ProtoESP, "aes256gcm16-ecp384")
	espTheirs := MustParseProposals(ProtoESP, "aes256gcm16-ecp256")
	espTheirs[0].SPI = []byte{1, 2, 3, 4}
	p, ok = SelectProposal(WithoutDH(espOurs), espTheirs, false)
	if !ok || !reflect.DeepEqual(p.SPI, []byte{1, 2, 3, 4}) {
		t.Fatalf("ESP selection %v %v", p, ok)
	}
	if s, err := SuiteOf(p); err != nil || s.DH != DHNone || s.ESN {
		t.Errorf("ESP suite %+v %v", s, err)
	}
	// With PFS the group must match.
	if _, ok = SelectProposal(espOurs, espTheirs, true); ok {
		t.Error("PFS group mismatch matched")
	}
	// A peer (libreswan) offering ESN on and off: we take off.
	lib := MustParseProposals(ProtoESP, "aes256gcm16-esn-noesn")
	p, ok = SelectProposal(WithoutDH(espOurs), lib, false)
	if s, _ := SuiteOf(p); !ok || s.ESN {
		t.Errorf("ESN choice %+v %v", s, ok)
	}
	if _, ok = SelectProposal(WithoutDH(espOurs), MustParseProposals(ProtoESP, "aes256gcm16-esn"), false); ok {
		t.Error("ESN-only matched our no-ESN")
	}
	// A transform type we do not know makes the proposal unacceptable.
	odd := MustParseProposals(ProtoESP, "aes256gcm16")
	odd[0].Transforms = append(odd[0].Transforms, Transform{Type: 9, ID: 1})
	if _, ok = SelectProposal(espOurs, odd, false); ok {
		t.Error("unknown transform type matched")
	}
	// IKE vs ESP never match.
	if _, ok = SelectProposal(ours, espTheirs, false); ok {
		t.Error("protocol mismatch matched")
	}
}
