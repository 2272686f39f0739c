package ike

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"strconv"
	"testing"
)

// vectorCase is one case of testdata/vectors.json, written by
// testdata/gen_vectors.py with python-cryptography and struct: an
// implementation independent of this package.
type vectorCase map[string]any

func (c vectorCase) hex(t *testing.T, k string) []byte {
	t.Helper()
	s, ok := c[k].(string)
	if !ok {
		t.Fatalf("vector %q has no %q", c["name"], k)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("vector %q field %q: %v", c["name"], k, err)
	}
	return b
}

func (c vectorCase) u64(t *testing.T, k string) uint64 {
	v, err := strconv.ParseUint(c[k].(string), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (c vectorCase) int(k string) int { return int(c[k].(float64)) }

func loadVectors(t *testing.T) []vectorCase {
	t.Helper()
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Cases []vectorCase }
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Cases) < 5 {
		t.Fatalf("only %d vector cases", len(v.Cases))
	}
	return v.Cases
}

func eq(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
}

func TestVectors(t *testing.T) {
	for _, c := range loadVectors(t) {
		t.Run(c["name"].(string), func(t *testing.T) { checkVector(t, c) })
	}
}

func checkVector(t *testing.T, c vectorCase) {
	group, prf, bits := DHGroup(c.int("group")), PRF(c.int("prf")), c.int("key_bits")
	ni, nr := c.hex(t, "ni"), c.hex(t, "nr")
	spii, spir := c.u64(t, "spi_i"), c.u64(t, "spi_r")

	// DH: fixed-length public values (x||y for ECP) and g^ir.
	ki, err := GenerateDH(group, bytes.NewReader(c.hex(t, "priv_i")))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := GenerateDH(group, bytes.NewReader(c.hex(t, "priv_r")))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "pub_i", ki.Public(), c.hex(t, "pub_i"))
	eq(t, "pub_r", kr.Public(), c.hex(t, "pub_r"))
	zi, err := ki.Shared(kr.Public())
	if err != nil {
		t.Fatal(err)
	}
	zr, err := kr.Shared(ki.Public())
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "shared (initiator)", zi, c.hex(t, "shared"))
	eq(t, "shared (responder)", zr, c.hex(t, "shared"))

	// SKEYSEED and SK_*.
	skeyseed, err := SKEYSEED(prf, ni, nr, zi)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "SKEYSEED", skeyseed, c.hex(t, "skeyseed"))
	suite := Suite{Encr: ENCR_AES_GCM_16, KeyBits: bits, PRF: prf, DH: group}
	keys, err := DeriveIKEKeys(prf, skeyseed, suite.KeyLen(), 0, ni, nr, spii, spir)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "SK_d", keys.SKd, c.hex(t, "sk_d"))
	eq(t, "SK_ei", keys.SKei, c.hex(t, "sk_ei"))
	eq(t, "SK_er", keys.SKer, c.hex(t, "sk_er"))
	eq(t, "SK_pi", keys.SKpi, c.hex(t, "sk_pi"))
	eq(t, "SK_pr", keys.SKpr, c.hex(t, "sk_pr"))
	if len(keys.SKai) != 0 || len(keys.SKar) != 0 {
		t.Errorf("AEAD suite got integrity keys of %d/%d bytes", len(keys.SKai), len(keys.SKar))
	}

	// IKE_SA_INIT as our encoder writes it, from the strongSwan spelling.
	props, err := ParseProposals(ProtoIKE, suite.String())
	if err != nil {
		t.Fatal(err)
	}
	local := netip.MustParseAddr("198.18.0.1")
	req := &Message{SPIi: spii, Exchange: IKE_SA_INIT, Flags: FlagInitiator, Payloads: Payloads{
		&SA{Proposals: props}, &KE{Group: uint16(group), Data: ki.Public()}, &Nonce{Data: ni},
		&Notify{Kind: NAT_DETECTION_SOURCE_IP, Data: NATHash(spii, 0, netip.AddrPortFrom(local, 500))},
	}}
	reqRaw, err := req.Encode()
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "IKE_SA_INIT request", reqRaw, c.hex(t, "init_req"))
	resp := &Message{SPIi: spii, SPIr: spir, Exchange: IKE_SA_INIT, Flags: FlagResponse, Payloads: Payloads{
		&SA{Proposals: props}, &KE{Group: uint16(group), Data: kr.Public()}, &Nonce{Data: nr},
	}}
	respRaw, err := resp.Encode()
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "IKE_SA_INIT response", respRaw, c.hex(t, "init_resp"))

	// AUTH, both directions.
	psk := Secret(c.hex(t, "psk"))
	idi, idr := AddrID(local), AddrID(netip.MustParseAddr("198.18.0.2"))
	authI := PSKAuth(prf, psk, reqRaw, nr, keys.SKpi, idi)
	authR := PSKAuth(prf, psk, respRaw, ni, keys.SKpr, idr)
	eq(t, "AUTH initiator", authI, c.hex(t, "auth_i"))
	eq(t, "AUTH responder", authR, c.hex(t, "auth_r"))

	// KEYMAT of the IKE_AUTH child (no PFS) and of a PFS rekey.
	i2r, r2i, err := ChildKeymat(prf, keys.SKd, nil, ni, nr, 36)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "KEYMAT i->r", i2r, c.hex(t, "child_i2r"))
	eq(t, "KEYMAT r->i", r2i, c.hex(t, "child_r2i"))
	ki2, _ := GenerateDH(group, bytes.NewReader(c.hex(t, "priv_i2")))
	kr2, _ := GenerateDH(group, bytes.NewReader(c.hex(t, "priv_r2")))
	z2, err := ki2.Shared(kr2.Public())
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "shared2", z2, c.hex(t, "shared2"))
	ni2, nr2 := c.hex(t, "ni2"), c.hex(t, "nr2")
	i2r, r2i, err = ChildKeymat(prf, keys.SKd, z2, ni2, nr2, 36)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "PFS KEYMAT i->r", i2r, c.hex(t, "pfs_i2r"))
	eq(t, "PFS KEYMAT r->i", r2i, c.hex(t, "pfs_r2i"))

	// IKE SA rekey.
	sk2, err := RekeySKEYSEED(prf, keys.SKd, z2, ni2, nr2)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "rekeyed SKEYSEED", sk2, c.hex(t, "skeyseed_rekey"))
	keys2, err := DeriveIKEKeys(prf, sk2, suite.KeyLen(), 0, ni2, nr2, c.u64(t, "spi_i2"), c.u64(t, "spi_r2"))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "rekeyed SK_d", keys2.SKd, c.hex(t, "rekey_sk_d"))
	eq(t, "rekeyed SK_ei", keys2.SKei, c.hex(t, "rekey_sk_ei"))

	// The IKE_AUTH request sealed into SK (IV 1), and opened again.
	espSA := &SA{Proposals: MustParseProposals(ProtoESP, "aes256gcm16")}
	espSA.Proposals[0].SPI = []byte{0xc0, 0xff, 0xee, 0x01}
	inner := Payloads{
		&IDi{idi}, &Auth{Method: AuthPSK, Data: authI}, &Notify{Kind: USE_TRANSPORT_MODE}, espSA,
		&TSi{TrafficSelectors{[]TrafficSelector{HostSelector(local, 47)}}},
		&TSr{TrafficSelectors{[]TrafficSelector{HostSelector(netip.MustParseAddr("198.18.0.2"), 47)}}},
	}
	sealer, err := NewSKCipher(keys.SKei)
	if err != nil {
		t.Fatal(err)
	}
	authMsg := &Message{SPIi: spii, SPIr: spir, Exchange: IKE_AUTH, Flags: FlagInitiator, MessageID: 1}
	sealed, err := sealer.Seal(authMsg, inner)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "sealed IKE_AUTH", sealed, c.hex(t, "auth_msg"))
	opener, _ := NewSKCipher(keys.SKei)
	m, err := DecodeMessage(sealed)
	if err != nil {
		t.Fatal(err)
	}
	got, err := opener.Open(sealed, m)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := appendChain(nil, got)
	b, _ := appendChain(nil, inner)
	eq(t, "opened IKE_AUTH payloads", a, b)
}
