package swan

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// vectorDir holds a real strongSwan exchange (make_vector.py): two charon
// logs and the values make_vector.py took from the wire and recomputed.
const vectorDir = "../../ike/testdata/strongswan"

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

type vectorChild struct {
	SPIi   hexBytes `json:"spi_i"`
	SPIr   hexBytes `json:"spi_r"`
	KeyI2R hexBytes `json:"key_i2r"`
	KeyR2I hexBytes `json:"key_r2i"`
	GIR    hexBytes `json:"g_ir"`
	Ni     hexBytes `json:"ni"`
	Nr     hexBytes `json:"nr"`
}

type vector struct {
	PSKText  string      `json:"psk_text"`
	SPIi     hexBytes    `json:"spi_i"`
	SPIr     hexBytes    `json:"spi_r"`
	Ni       hexBytes    `json:"ni"`
	Nr       hexBytes    `json:"nr"`
	GIR      hexBytes    `json:"g_ir"`
	SKEYSEED hexBytes    `json:"skeyseed"`
	SKd      hexBytes    `json:"sk_d"`
	SKei     hexBytes    `json:"sk_ei"`
	SKer     hexBytes    `json:"sk_er"`
	SKpi     hexBytes    `json:"sk_pi"`
	SKpr     hexBytes    `json:"sk_pr"`
	Child    vectorChild `json:"child"`
	Rekey    vectorChild `json:"rekey"`
}

func loadVector(t *testing.T) (vector, string, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir, "vector.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v vector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	ilog, err := os.ReadFile(filepath.Join(vectorDir, "initiator.log"))
	if err != nil {
		t.Fatal(err)
	}
	rlog, err := os.ReadFile(filepath.Join(vectorDir, "responder.log"))
	if err != nil {
		t.Fatal(err)
	}
	return v, string(ilog), string(rlog)
}

func spi32(b []byte) uint32 {
	n, _ := strconv.ParseUint(hex.EncodeToString(b), 16, 32)
	return uint32(n)
}

func spi64(b []byte) uint64 {
	n, _ := strconv.ParseUint(hex.EncodeToString(b), 16, 64)
	return n
}

func eq(t *testing.T, what string, got Key, want []byte) {
	t.Helper()
	if len(want) == 0 || !bytes.Equal(got, want) {
		// Lengths only: the values are keys.
		t.Errorf("%s: got %d bytes, want %d bytes (different)", what, len(got), len(want))
	}
}

// The parser reads the logs of the committed vector and finds exactly what
// make_vector.py took from the wire and verified independently.
func TestParseKeyLogMatchesVector(t *testing.T) {
	v, ilog, rlog := loadVector(t)
	for _, side := range []struct {
		name      string
		log       string
		initiator bool
	}{{"initiator", ilog, true}, {"responder", rlog, false}} {
		t.Run(side.name, func(t *testing.T) {
			ikes, children := ParseKeyLog(side.log)
			if len(ikes) != 1 {
				t.Fatalf("%d IKE key sets, want 1", len(ikes))
			}
			ike := ikes[0]
			if ike.SPIi != spi64(v.SPIi) || ike.SPIr != spi64(v.SPIr) {
				t.Errorf("IKE SPIs %016x %016x, want %x %x", ike.SPIi, ike.SPIr, []byte(v.SPIi), []byte(v.SPIr))
			}
			if ike.IKEID != 1 {
				t.Errorf("IKE unique id %d, want 1", ike.IKEID)
			}
			eq(t, "g^ir", ike.GIR, v.GIR)
			eq(t, "SKEYSEED", ike.SKEYSEED, v.SKEYSEED)
			eq(t, "SK_d", ike.SKd, v.SKd)
			eq(t, "SK_ei", ike.SKei, v.SKei)
			eq(t, "SK_er", ike.SKer, v.SKer)
			eq(t, "SK_pi", ike.SKpi, v.SKpi)
			eq(t, "SK_pr", ike.SKpr, v.SKpr)
			if len(ike.SKai) != 0 || len(ike.SKar) != 0 {
				t.Error("SK_a* logged with AEAD")
			}

			if len(children) != 2 {
				t.Fatalf("%d CHILD_SAs, want 2 (IKE_AUTH and rekey)", len(children))
			}
			for i, want := range []vectorChild{v.Child, v.Rekey} {
				c := children[i]
				if c.Child != "gre" || c.ChildID != i+1 || c.IKEID != 1 {
					t.Errorf("child %d: name %q id %d ike %d", i, c.Child, c.ChildID, c.IKEID)
				}
				if c.Initiator != side.initiator {
					t.Errorf("child %d: Initiator %v", i, c.Initiator)
				}
				in, out := spi32(want.SPIi), spi32(want.SPIr)
				keyIn, keyOut := want.KeyR2I, want.KeyI2R
				if !side.initiator {
					in, out = out, in
					keyIn, keyOut = keyOut, keyIn
				}
				if c.SPIIn != in || c.SPIOut != out {
					t.Errorf("child %d: SPIs in %08x out %08x, want %08x %08x", i, c.SPIIn, c.SPIOut, in, out)
				}
				eq(t, "EncrInitiator", c.EncrInitiator, want.KeyI2R)
				eq(t, "EncrResponder", c.EncrResponder, want.KeyR2I)
				eq(t, "KeyIn", c.KeyIn, keyIn)
				eq(t, "KeyOut", c.KeyOut, keyOut)
				eq(t, "child's IKE SK_d", c.IKE.SKd, v.SKd)
				if i == 0 {
					if c.DHSecret != nil {
						t.Error("IKE_AUTH child has a PFS secret")
					}
					eq(t, "seed", c.Seed, append(append([]byte{}, v.Ni...), v.Nr...))
				} else {
					eq(t, "PFS g^ir", c.DHSecret, want.GIR)
					eq(t, "seed", c.Seed, append(append(append([]byte{}, want.GIR...), want.Ni...), want.Nr...))
				}
			}
		})
	}
}

func TestKeyNeverPrints(t *testing.T) {
	k := Key{0xde, 0xad, 0xbe, 0xef}
	c := ChildKeyLog{KeyIn: k, IKE: IKEKeyLog{SKei: k}}
	for _, s := range []string{
		fmt.Sprint(k), fmt.Sprintf("%x", k), fmt.Sprintf("%X", k), fmt.Sprintf("%s", k),
		fmt.Sprintf("%#v", k), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c),
		fmt.Sprintf("%d", k), fmt.Sprintf("%q", k),
	} {
		if strings.Contains(strings.ToLower(s), "dead") || strings.Contains(s, "222") || strings.Contains(s, "\\xde") {
			t.Errorf("key bytes printed: %s", s)
		}
		if !strings.Contains(s, "redacted") {
			t.Errorf("no redaction marker in %q", s)
		}
	}
}

func TestRedactDropsSecrets(t *testing.T) {
	v, ilog, _ := loadVector(t)
	r := Redact(ilog)
	if !strings.Contains(r, "Sk_ei secret => 36 bytes") {
		t.Error("Redact dropped the announcing line")
	}
	up := strings.ToUpper(r)
	for name, b := range map[string][]byte{"SK_ei": v.SKei[:8], "SK_d": v.SKd[:8], "g^ir": v.GIR[:8]} {
		// charon's hexdump form of the first 8 bytes: "0E B6 0B 38 ..."
		spaced := strings.ToUpper(fmt.Sprintf("% x", b))
		if strings.Contains(up, spaced) {
			t.Errorf("%s still in redacted log", name)
		}
		if !strings.Contains(ilog, spaced) {
			t.Errorf("%s not in the raw log either: the test checks nothing", name)
		}
	}
	if strings.Contains(r, v.PSKText[:12]) {
		t.Error("PSK text in redacted log")
	}
}

func TestParseSAs(t *testing.T) {
	b, err := os.ReadFile("testdata/list-sas.pretty")
	if err != nil {
		t.Fatal(err)
	}
	sas, err := ParseSAs(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 1 {
		t.Fatalf("%d IKE SAs, want 1", len(sas))
	}
	s := sas[0]
	if s.Name != "gre" || s.UniqueID != 1 || s.Version != 2 || s.State != "ESTABLISHED" || !s.Initiator ||
		s.SPIi != 0xa721df4559b2abf3 || s.SPIr != 0x5c3e90eed6af89b1 || s.LocalHost != "198.18.0.1" ||
		s.RemotePort != 500 || s.EncrAlg != "AES_GCM_16" || s.EncrKey != 256 || s.PRF != "PRF_HMAC_SHA2_384" ||
		s.DHGroup != "ECP_384" {
		t.Errorf("IKE SA %+v", s)
	}
	if len(s.Children) != 2 {
		t.Fatalf("%d children, want 2", len(s.Children))
	}
	old, cur := s.Children[0], s.Children[1]
	if old.State != "DELETED" || old.DHGroup != "" || old.SPIIn != 0xc3a6147e || old.SPIOut != 0xc07a11c6 {
		t.Errorf("old child %+v", old)
	}
	if cur.State != "INSTALLED" || cur.Mode != "TRANSPORT" || cur.Protocol != "ESP" || cur.DHGroup != "ECP_384" ||
		cur.UniqueID != 2 || cur.ReqID != 1 || cur.SPIIn != 0xcfbf2bd4 || cur.SPIOut != 0xced9150e ||
		len(cur.LocalTS) != 1 || cur.LocalTS[0] != "198.18.0.1/32[gre]" || len(cur.RemoteTS) != 1 || cur.RemoteTS[0] != "198.18.0.2/32[gre]" {
		t.Errorf("new child %+v", cur)
	}
	if got := s.Installed(); len(got) != 1 || got[0].UniqueID != 2 {
		t.Errorf("Installed() = %+v", got)
	}
}

func TestParseSAsRejectsBroken(t *testing.T) {
	for _, in := range []string{
		"list-sa event {\n  gre {\n",         // unterminated
		"}\n",                                // unbalanced
		"list-sa event {\n  what is this\n}", // garbage
		"a {\n  l = [\n  x\n}\n",             // unterminated list
		strings.Repeat("a {\n", maxDepth+2),  // too deep
	} {
		if _, err := ParseSAs(in); err == nil {
			t.Errorf("ParseSAs(%q) accepted", in)
		}
	}
	if sas, err := ParseSAs("list-sas reply {\n}\n"); err != nil || len(sas) != 0 {
		t.Errorf("empty listing: %v, %v", sas, err)
	}
}

func FuzzParseKeyLog(f *testing.F) {
	_, ilog, rlog := loadVectorF(f)
	// Small seeds, pieces of the real logs: the fuzzer minimizes every new
	// interesting input, and with multi-KiB inputs it does little else.
	f.Add(section(ilog, "Sk_ei secret", "Sk_er secret"))
	f.Add(section(rlog, "gre{2} state change: CREATED => INSTALLING", "DH secret"))
	f.Add(section(rlog, "adding inbound ESP SA", "gre{2} state change: INSTALLING => INSTALLED"))
	f.Add("00:00:00 05[CHD] <gre|1> CHILD_SA gre{1} state change: CREATED => INSTALLING\n" +
		"00:00:00 05[CHD] <gre|1> seed => 2 bytes @ 0x1\n00:00:00 05[CHD] <gre|1>    0: AB CD  ..\n" +
		"00:00:00 05[CHD] <gre|1> CHILD_SA gre{1} state change: INSTALLING => INSTALLED\n")
	f.Fuzz(func(t *testing.T, log string) {
		ikes, children := ParseKeyLog(log)
		// Every key came out of a hexdump line, so there cannot be more
		// key bytes than input bytes.
		n := 0
		for _, c := range children {
			n += len(c.EncrInitiator) + len(c.EncrResponder) + len(c.Seed) + len(c.DHSecret)
		}
		for _, k := range ikes {
			n += len(k.SKd) + len(k.SKei) + len(k.SKer) + len(k.GIR)
		}
		if n > len(log) {
			t.Fatalf("%d key bytes from %d input bytes", n, len(log))
		}
	})
}

func FuzzParseSAs(f *testing.F) {
	if b, err := os.ReadFile("testdata/list-sas.pretty"); err == nil {
		f.Add(string(b))
	}
	f.Add("list-sa event {\n  x {\n    child-sas {\n      c {\n        local-ts = [\n        ]\n      }\n    }\n  }\n}\n")
	f.Fuzz(func(t *testing.T, in string) {
		sas, err := ParseSAs(in)
		if err != nil && sas != nil {
			t.Fatal("result with error")
		}
	})
}

// section is log from the line containing from through the line
// containing to.
func section(log, from, to string) string {
	i := strings.Index(log, from)
	if i < 0 {
		return ""
	}
	i = strings.LastIndexByte(log[:i], '\n') + 1
	j := strings.Index(log[i:], to)
	if j < 0 {
		return log[i:]
	}
	j += i
	if k := strings.IndexByte(log[j:], '\n'); k >= 0 {
		j += k + 1
	}
	return log[i:j]
}

func loadVectorF(f *testing.F) (vector, string, string) {
	ilog, err1 := os.ReadFile(filepath.Join(vectorDir, "initiator.log"))
	rlog, err2 := os.ReadFile(filepath.Join(vectorDir, "responder.log"))
	if err1 != nil || err2 != nil {
		f.Fatal(err1, err2)
	}
	return vector{}, string(ilog), string(rlog)
}
