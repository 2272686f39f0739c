package ike

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// RFC 4868 §2.7.1 uses the RFC 4231 HMAC-SHA-2 cases as PRF test vectors.
func TestPRFRFC4231(t *testing.T) {
	key, data := []byte("Jefe"), []byte("what do ya want for nothing?")
	for _, c := range []struct {
		prf  PRF
		want string
	}{
		{PRFSHA256, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{PRFSHA384, "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"},
		{PRFSHA512, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
	} {
		// Split the data to check Sum concatenates its arguments.
		if got := c.prf.Sum(key, data[:7], data[7:]); !bytes.Equal(got, unhex(c.want)) {
			t.Errorf("%v: got %x", c.prf, got)
		}
		if c.prf.Size() != len(unhex(c.want)) {
			t.Errorf("%v: Size %d", c.prf, c.prf.Size())
		}
	}
}

func TestPRFPlusStructure(t *testing.T) {
	key, seed := []byte("k"), []byte("seed")
	out, err := PRFSHA256.Plus(key, seed, 90)
	if err != nil {
		t.Fatal(err)
	}
	t1 := PRFSHA256.Sum(key, seed, []byte{1})
	t2 := PRFSHA256.Sum(key, t1, seed, []byte{2})
	t3 := PRFSHA256.Sum(key, t2, seed, []byte{3})
	want := append(append(append([]byte{}, t1...), t2...), t3...)[:90]
	if !bytes.Equal(out, want) {
		t.Errorf("prf+ is not T1|T2|T3")
	}
	if _, err := PRFSHA256.Plus(key, seed, 255*32); err != nil {
		t.Errorf("255 blocks refused: %v", err)
	}
	if _, err := PRFSHA256.Plus(key, seed, 255*32+1); err == nil {
		t.Error("more than 255 blocks accepted")
	}
	if _, err := PRF(99).Plus(key, seed, 1); err == nil {
		t.Error("unknown PRF accepted")
	}
}

// RFC 7748 §6.1, which RFC 8031 uses for IKEv2 group 31.
func TestX25519RFC7748(t *testing.T) {
	a, err := GenerateDH(Curve25519, bytes.NewReader(unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")))
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"); !bytes.Equal(a.Public(), want) {
		t.Errorf("public %x", a.Public())
	}
	z, err := a.Shared(unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"))
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"); !bytes.Equal(z, want) {
		t.Errorf("shared %x", z)
	}
	// A low-order point gives the all-zero secret, which must be refused.
	if _, err := a.Shared(make([]byte, 32)); !errors.Is(err, ErrBadPublic) {
		t.Errorf("zero point: %v", err)
	}
}

func TestDHRejectsBadPublic(t *testing.T) {
	for _, g := range []DHGroup{MODP2048, ECP256, ECP384, ECP521, Curve25519} {
		k, err := GenerateDH(g, nil)
		if err != nil {
			t.Fatal(g, err)
		}
		if len(k.Public()) != g.PublicLen() {
			t.Errorf("%v: public of %d bytes", g, len(k.Public()))
		}
		peer, _ := GenerateDH(g, nil)
		z1, err1 := k.Shared(peer.Public())
		z2, err2 := peer.Shared(k.Public())
		if err1 != nil || err2 != nil || !bytes.Equal(z1, z2) {
			t.Errorf("%v: shared secrets differ (%v, %v)", g, err1, err2)
		}
		if _, err := k.Shared(peer.Public()[1:]); !errors.Is(err, ErrBadPublic) {
			t.Errorf("%v: short public accepted", g)
		}
		if g != Curve25519 {
			bad := bytes.Clone(peer.Public())
			bad[len(bad)-1] ^= 1 // off the curve / not the peer's value
			if g != MODP2048 {
				if _, err := k.Shared(bad); !errors.Is(err, ErrBadPublic) {
					t.Errorf("%v: point off the curve accepted", g)
				}
			}
		}
	}
	k, _ := GenerateDH(MODP2048, nil)
	for _, y := range []*big.Int{big.NewInt(0), big.NewInt(1), modpGroups[MODP2048].pm1, modpGroups[MODP2048].p} {
		if _, err := k.Shared(y.FillBytes(make([]byte, 256))); !errors.Is(err, ErrBadPublic) {
			t.Errorf("MODP public %v accepted", y)
		}
	}
	if _, err := GenerateDH(DHGroup(2), nil); err == nil {
		t.Error("unsupported group generated a key")
	}
}

// Leading zero bytes must survive: a big.Int round trip would drop them.
func TestDHFixedLength(t *testing.T) {
	for i := 0; i < 200; i++ {
		k, _ := GenerateDH(ECP256, nil)
		p, _ := GenerateDH(ECP256, nil)
		z, err := k.Shared(p.Public())
		if err != nil || len(z) != 32 || len(k.Public()) != 64 {
			t.Fatalf("lengths %d/%d (%v)", len(z), len(k.Public()), err)
		}
	}
}

func TestSecretRedacted(t *testing.T) {
	s := Secret("ThisShouldBeAStrongPassword")
	type holder struct {
		PSK  Secret
		Keys IKEKeys
	}
	h := holder{PSK: s, Keys: IKEKeys{SKd: s, SKei: s}}
	k, _ := GenerateDH(ECP256, nil)
	c, _ := NewSKCipher(make(Secret, 36))
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "psk", s, "h", h)
	core, obs := observer.New(zapcore.DebugLevel)
	zap.New(core).Info("x", zap.Any("psk", s), zap.Stringer("s", s), zap.Any("h", h))
	var zapOut strings.Builder
	for _, e := range obs.All() {
		for _, f := range e.Context {
			fmt.Fprintf(&zapOut, "%v %v %v|", f.String, f.Interface, f.Integer)
		}
	}
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %x %X %s %q %d", s, h, h, s, s, s, s, s),
		fmt.Sprintf("%v %+v %#v", k, k, c), logs.String(), zapOut.String(),
	} {
		if strings.Contains(out, "Strong") || strings.Contains(out, hex.EncodeToString(s)) ||
			strings.Contains(strings.ToLower(out), hex.EncodeToString(s[:4])) {
			t.Errorf("secret leaked: %s", out)
		}
		if !strings.Contains(out, "redacted") {
			t.Errorf("no redaction marker in %q", out)
		}
	}
}

func TestSKCipherRejectsTampering(t *testing.T) {
	key := make(Secret, 36)
	key[0] = 1
	c, _ := NewSKCipher(key)
	m := &Message{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL, MessageID: 7}
	raw, err := c.Seal(m, Payloads{&Delete{Protocol: ProtoESP, SPIs: []uint32{0xc0ffee}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		if i >= 16 && i < 18 || i >= 24 && i < 28 || i == 28 || i >= 30 && i < 32 {
			continue // next payload, version, lengths: decoding catches those first
		}
		bad := bytes.Clone(raw)
		bad[i] ^= 0x40
		dm, err := DecodeMessage(bad)
		if err != nil {
			continue
		}
		if _, err := c.Open(bad, dm); err == nil {
			t.Errorf("flipping byte %d went unnoticed", i)
		}
	}
	dm, _ := DecodeMessage(raw)
	inner, err := c.Open(raw, dm)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := inner.Get(PayloadDelete).(*Delete); !ok || d.SPIs[0] != 0xc0ffee {
		t.Errorf("opened %#v", inner)
	}
	other, _ := NewSKCipher(make(Secret, 36))
	if _, err := other.Open(raw, dm); !errors.Is(err, ErrIntegrity) {
		t.Errorf("wrong key: %v", err)
	}
	// An empty INFORMATIONAL (DPD) seals and opens to no payloads.
	raw, _ = c.Seal(m, nil)
	dm, err = DecodeMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	if inner, err := c.Open(raw, dm); err != nil || len(inner) != 0 {
		t.Errorf("empty informational: %v %v", inner, err)
	}
	// IVs never repeat under one key.
	r1, _ := c.Seal(m, nil)
	r2, _ := c.Seal(m, nil)
	if bytes.Equal(r1[32:40], r2[32:40]) {
		t.Error("IV reused")
	}
	if _, err := NewSKCipher(make(Secret, 32)); err == nil {
		t.Error("key without salt accepted")
	}
}
