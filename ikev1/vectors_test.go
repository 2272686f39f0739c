package ikev1

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/gresec/gresec/ike"
)

// TestStrongSwanVectors recomputes, with our functions, the phase 1 and
// phase 2 keys that strongSwan logged (ike/chd level 4) when it answered
// gresec's Main Mode and Quick Mode (testdata/strongswan_mm_qm.json):
// SKEYID_d/a/e, Ka, the first IV, HASH_I, HASH_R and both KEYMATs.
func TestStrongSwanVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/strongswan_mm_qm.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Dumps map[string]string }
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	d := func(label string) []byte {
		b, err := hex.DecodeString(f.Dumps[label])
		if err != nil || len(b) == 0 {
			t.Fatalf("vector %q: %v", label, err)
		}
		return b
	}
	prf := ike.PRFSHA1
	msg3, err := Decode(d("msg3"))
	if err != nil {
		t.Fatal(err)
	}
	ci, cr := msg3.ICookie, msg3.RCookie
	gxi := Find(msg3.Payloads, PayloadKE).Body
	hashIData := d("HASH_I data")
	gxr := hashIData[256:512]
	if !bytes.Equal(hashIData[:256], gxi) || binary.BigEndian.Uint64(hashIData[512:]) != ci || binary.BigEndian.Uint64(hashIData[520:]) != cr {
		t.Fatal("HASH_I data is not g^xi | g^xr | CKY-I | CKY-R | ...")
	}
	skeyid := ike.Secret(d("SKEYID"))
	k := DerivePhase1(prf, skeyid, d("shared Diffie Hellman secret"), ci, cr, 16)
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"SKEYID_d", k.D, d("SKEYID_d")},
		{"SKEYID_a", k.A, d("SKEYID_a")},
		{"SKEYID_e", k.E, d("SKEYID_e")},
		{"Ka", k.Enc, d("encryption key Ka")},
		{"initial IV", Phase1IV(prf, gxi, gxr), d("initial IV")},
		{"HASH_I", HashI(prf, skeyid, gxi, gxr, ci, cr, hashIData[528:len(hashIData)-8], hashIData[len(hashIData)-8:]), d("HASH_I")},
		{"HASH_R", prf.Sum(skeyid, d("HASH_R data")), d("HASH_R")},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s: got %x, strongSwan %x", c.name, c.got, c.want)
		}
	}
	hr := d("HASH_R data")
	if got := HashR(prf, skeyid, gxi, gxr, ci, cr, hashIData[528:len(hashIData)-8], hr[len(hr)-8:]); !bytes.Equal(got, d("HASH_R")) {
		t.Errorf("HashR: got %x, strongSwan %x", got, d("HASH_R"))
	}

	// Phase 2: each seed is g^xy | protocol | SPI | Ni_b | Nr_b.
	for _, dir := range []string{"initiator", "responder"} {
		seed := d(dir + " SA seed")
		gxy, proto, spi := seed[:256], seed[256], binary.BigEndian.Uint32(seed[257:])
		ni, nr := seed[261:293], seed[293:]
		if !bytes.Equal(gxy, d("DH secret")) || proto != ProtoESP {
			t.Fatalf("%s seed does not start with the PFS secret and ESP", dir)
		}
		got := QuickKeymat(prf, k.D, gxy, proto, spi, ni, nr, 16+20)
		want := append(d("encryption "+dir+" key"), d("integrity "+dir+" key")...)
		if !bytes.Equal(got, want) {
			t.Errorf("KEYMAT of the %s's SA 0x%08x: got %x, strongSwan %x", dir, spi, got, want)
		}
	}
}
