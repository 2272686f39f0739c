package ike

import (
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"testing"
)

// TestStrongSwanVector checks the codec and the crypto suite against one
// real exchange between two strongSwan 5.9.8 charons (testdata/strongswan,
// recorded by interop/strongswan/make_vector.py): every datagram must
// decode and re-encode byte for byte, and every key, AUTH and KEYMAT we
// compute must be the one strongSwan used.
func TestStrongSwanVector(t *testing.T) {
	raw, err := os.ReadFile("testdata/strongswan/vector.json")
	if os.IsNotExist(err) {
		t.Skip("no strongSwan vector recorded")
	}
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	h := func(m map[string]any, k string) []byte {
		t.Helper()
		s, ok := m[k].(string)
		if !ok {
			t.Fatalf("vector lacks %q", k)
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return b
	}
	be64 := func(b []byte) uint64 {
		var x uint64
		for _, c := range b {
			x = x<<8 | uint64(c)
		}
		return x
	}

	// Every datagram: decode, re-encode identically.
	msgs, _ := v["messages"].([]any)
	if len(msgs) < 8 {
		t.Fatalf("%d messages", len(msgs))
	}
	for i, x := range msgs {
		b := h(x.(map[string]any), "bytes")
		m, err := DecodeMessage(b)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		enc, err := m.Encode()
		if err != nil || string(enc) != string(b) {
			t.Errorf("message %d (%v) does not re-encode byte for byte", i, m.Exchange)
		}
		if u := m.Payloads.UnsupportedCritical(); u != nil {
			t.Errorf("message %d: critical %v", i, u.PayloadType)
		}
	}

	prf := PRFSHA384
	ni, nr := h(v, "ni"), h(v, "nr")
	spii, spir := be64(h(v, "spi_i")), be64(h(v, "spi_r"))
	initReq, initResp := h(v, "ike_sa_init_request"), h(v, "ike_sa_init_response")

	// Our responder would accept strongSwan's IKE_SA_INIT as from the iked + IOS pair's iked.
	req, err := DecodeMessage(initReq)
	if err != nil {
		t.Fatal(err)
	}
	ours := MustParseProposals(ProtoIKE, "aes256gcm16-prfsha384-ecp384")
	sel, ok := SelectProposal(ours, req.Payloads.Get(PayloadSA).(*SA).Proposals, true)
	if s, _ := SuiteOf(sel); !ok || s.String() != "aes256gcm16-prfsha384-ecp384" {
		t.Errorf("strongSwan's IKE proposal not accepted: %v", s)
	}
	ke := req.Payloads.Get(PayloadKE).(*KE)
	if ke.Group != 20 || string(ke.Data) != string(h(v, "ke_i")) || len(ke.Data) != ECP384.PublicLen() {
		t.Error("KE payload")
	}
	// NAT detection hashes as strongSwan computes them.
	if n := req.Payloads.Notify(NAT_DETECTION_SOURCE_IP); n == nil ||
		string(n.Data) != string(NATHash(spii, 0, netip.MustParseAddrPort("198.18.0.1:500"))) {
		t.Error("NAT_DETECTION_SOURCE_IP differs from ours")
	}
	if n := req.Payloads.Notify(NAT_DETECTION_DESTINATION_IP); n == nil ||
		string(n.Data) != string(NATHash(spii, 0, netip.MustParseAddrPort("198.18.0.2:500"))) {
		t.Error("NAT_DETECTION_DESTINATION_IP differs from ours")
	}

	// Keys.
	skeyseed, _ := SKEYSEED(prf, ni, nr, h(v, "g_ir"))
	eq(t, "SKEYSEED", skeyseed, h(v, "skeyseed"))
	keys, err := DeriveIKEKeys(prf, skeyseed, 36, 0, ni, nr, spii, spir)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "SK_d", keys.SKd, h(v, "sk_d"))
	eq(t, "SK_ei", keys.SKei, h(v, "sk_ei"))
	eq(t, "SK_er", keys.SKer, h(v, "sk_er"))
	eq(t, "SK_pi", keys.SKpi, h(v, "sk_pi"))
	eq(t, "SK_pr", keys.SKpr, h(v, "sk_pr"))

	// IKE_AUTH both ways: open, compare the plaintext, check AUTH.
	open := func(name string, key Secret, rawMsg, plain []byte, first float64) Payloads {
		t.Helper()
		c, _ := NewSKCipher(key)
		m, err := DecodeMessage(rawMsg)
		if err != nil {
			t.Fatal(name, err)
		}
		if e := m.Payloads[len(m.Payloads)-1].(*Encrypted); e.First != PayloadType(first) {
			t.Errorf("%s: first inner payload %v", name, e.First)
		}
		inner, err := c.Open(rawMsg, m)
		if err != nil {
			t.Fatal(name, err)
		}
		enc, _ := appendChain(nil, inner)
		eq(t, name+" plaintext", enc, plain)
		return inner
	}
	authReq := open("IKE_AUTH request", keys.SKei, h(v, "ike_auth_request"), h(v, "ike_auth_request_plaintext"), v["ike_auth_request_first_payload"].(float64))
	authResp := open("IKE_AUTH response", keys.SKer, h(v, "ike_auth_response"), h(v, "ike_auth_response_plaintext"), v["ike_auth_response_first_payload"].(float64))
	psk := Secret(h(v, "psk"))
	idi, idr := authReq.Get(PayloadIDi).(*IDi).ID, authResp.Get(PayloadIDr).(*IDr).ID
	eq(t, "IDi'", idi.appendBody(nil), h(v, "id_i"))
	eq(t, "AUTH initiator", PSKAuth(prf, psk, initReq, nr, keys.SKpi, idi), h(v, "auth_i"))
	eq(t, "AUTH responder", PSKAuth(prf, psk, initResp, ni, keys.SKpr, idr), h(v, "auth_r"))
	eq(t, "AUTH payload", authReq.Get(PayloadAUTH).(*Auth).Data, h(v, "auth_i"))

	// strongSwan's CHILD_SA request is one we accept: transport mode, the
	// seed's ESP proposal without DH, GRE host-to-host selectors.
	esp := MustParseProposals(ProtoESP, "aes256gcm16-ecp384")
	if authReq.Notify(USE_TRANSPORT_MODE) == nil || authResp.Notify(USE_TRANSPORT_MODE) == nil {
		t.Error("no USE_TRANSPORT_MODE")
	}
	if _, ok := SelectProposal(WithoutDH(esp), authReq.Get(PayloadSA).(*SA).Proposals, false); !ok {
		t.Error("strongSwan's IKE_AUTH child proposal not accepted")
	}
	i, r := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	if !anyContains(authReq.Get(PayloadTSi).(*TSi).Selectors, HostSelector(i, gre)) ||
		!anyContains(authReq.Get(PayloadTSr).(*TSr).Selectors, HostSelector(r, gre)) ||
		!allEquivalent(authResp.Get(PayloadTSi).(*TSi).Selectors, HostSelector(i, gre)) ||
		!allEquivalent(authResp.Get(PayloadTSr).(*TSr).Selectors, HostSelector(r, gre)) {
		t.Error("strongSwan's selectors are not GRE host to host as we build them")
	}

	child := v["child"].(map[string]any)
	i2r, r2i, _ := ChildKeymat(prf, keys.SKd, nil, ni, nr, 36)
	eq(t, "KEYMAT i->r", i2r, h(child, "key_i2r"))
	eq(t, "KEYMAT r->i", r2i, h(child, "key_r2i"))

	// CHILD_SA rekey with PFS.
	rk := v["rekey"].(map[string]any)
	rkReq := open("CREATE_CHILD_SA request", keys.SKei, h(rk, "request"), h(rk, "request_plaintext"), rk["request_first_payload"].(float64))
	open("CREATE_CHILD_SA response", keys.SKer, h(rk, "response"), h(rk, "response_plaintext"), rk["response_first_payload"].(float64))
	if n := rkReq.Notify(REKEY_SA); n == nil || n.Protocol != ProtoESP || hex.EncodeToString(n.SPI) != child["spi_i"] {
		t.Error("REKEY_SA does not name the initiator's inbound SPI")
	}
	if ke, _ := rkReq.Get(PayloadKE).(*KE); ke == nil || ke.Group != 20 || string(ke.Data) != string(h(rk, "ke_i")) {
		t.Error("rekey KE")
	}
	if _, ok := SelectProposal(esp, rkReq.Get(PayloadSA).(*SA).Proposals, true); !ok {
		t.Error("strongSwan's PFS rekey proposal not accepted")
	}
	i2r, r2i, _ = ChildKeymat(prf, keys.SKd, h(rk, "g_ir"), h(rk, "ni"), h(rk, "nr"), 36)
	eq(t, "PFS KEYMAT i->r", i2r, h(rk, "key_i2r"))
	eq(t, "PFS KEYMAT r->i", r2i, h(rk, "key_r2i"))
}
