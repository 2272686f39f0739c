package esp

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"strconv"
	"testing"
)

// vector is one packet of testdata/vectors.json, made by gen_vectors.py
// with pyca/cryptography and cross-checked with scapy.
type vector struct {
	Name       string `json:"name"`
	Transform  string `json:"transform"`
	Keymat     string `json:"keymat"`
	SPI        uint32 `json:"spi"`
	Seq        uint64 `json:"seq"`
	IV         string `json:"iv"`
	NextHeader byte   `json:"next_header"`
	PadLen     int    `json:"pad_len"`
	Sealable   bool   `json:"sealable"`
	Payload    string `json:"payload"`
	Packet     string `json:"packet"`
	Scapy      bool   `json:"scapy_checked"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Vectors []vector }
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) < 20 {
		t.Fatalf("only %d vectors", len(f.Vectors))
	}
	return f.Vectors
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// opener is the receiving SA for v. Under ESN its window has seen the
// number just before v's, as a receiver that followed the traffic would
// have: the high half is inferred from the window.
func opener(t testing.TB, v vector) *SA {
	t.Helper()
	sa, err := mustTransform(t, v.Transform).NewSA(v.SPI, unhex(t, v.Keymat), DefaultReplayWindow)
	if err != nil {
		t.Fatal(err)
	}
	if sa.tr.ESN && v.Seq > 1 {
		sa.replay.Update(v.Seq - 1)
	}
	return sa
}

// TestVectorsCoverage keeps the generated file honest about what the brief
// asks it to cover.
func TestVectorsCoverage(t *testing.T) {
	pads, nhs, transforms, scapy, highESN := map[int]bool{}, map[byte]bool{}, map[string]int{}, map[string]int{}, 0
	for _, v := range loadVectors(t) {
		tr := mustTransform(t, v.Transform)
		if v.Sealable && tr.Cipher == CipherAESGCM16 {
			pads[v.PadLen] = true
		}
		nhs[v.NextHeader] = true
		transforms[v.Transform]++
		if v.Scapy {
			scapy[v.Transform]++
		}
		if tr.ESN && v.Seq > MaxSeq {
			highESN++
		}
	}
	for _, name := range testTransforms {
		if transforms[name] == 0 || scapy[name] == 0 {
			t.Errorf("transform %s: %d vectors, %d scapy-checked", name, transforms[name], scapy[name])
		}
	}
	if len(pads) != 4 || !nhs[47] || !nhs[4] || highESN < 4 {
		t.Errorf("vectors cover GCM pads %v, next headers %v, %d ESN numbers above 2^32", pads, nhs, highESN)
	}
}

func TestVectorSeal(t *testing.T) {
	for _, v := range loadVectors(t) {
		if !v.Sealable {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			tr := mustTransform(t, v.Transform)
			sa, err := tr.NewSA(v.SPI, unhex(t, v.Keymat), DefaultReplayWindow)
			if err != nil {
				t.Fatal(err)
			}
			payload := unhex(t, v.Payload)
			buf := make([]byte, MaxPrefixLen+len(payload)+MaxSuffixLen)
			copy(buf[MaxPrefixLen:], payload)
			var out []byte
			if tr.AEAD() {
				sa.seq.Store(v.Seq - 1) // the next Seal takes v.Seq
				if out, err = sa.Seal(buf, MaxPrefixLen, len(payload), v.NextHeader); err != nil {
					t.Fatal(err)
				}
			} else {
				// Seal's IVs are random: build with the vector's.
				out = sa.seal(buf, MaxPrefixLen, len(payload), v.NextHeader, v.Seq, unhex(t, v.IV), tr.padLen(len(payload)))
			}
			if want := unhex(t, v.Packet); !bytes.Equal(out, want) {
				t.Errorf("Seal\n got %x\nwant %x", out, want)
			}
			if len(out) != len(payload)+tr.Overhead(len(payload)) {
				t.Errorf("len %d, Overhead says %d", len(out), len(payload)+tr.Overhead(len(payload)))
			}
		})
	}
}

func TestVectorOpen(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			sa := opener(t, v)
			pkt := unhex(t, v.Packet)
			payload, nh, reason := sa.Open(pkt)
			if reason != DropNone || nh != v.NextHeader || !bytes.Equal(payload, unhex(t, v.Payload)) {
				t.Fatalf("Open = %x, %d, %v; want %s, %d", payload, nh, reason, v.Payload, v.NextHeader)
			}
			if got := sa.replay.Highest(); got != v.Seq {
				t.Errorf("window highest %d, want %d", got, v.Seq)
			}
			if _, _, reason := sa.Open(unhex(t, v.Packet)); reason != DropReplay {
				t.Errorf("second Open: %v, want replay", reason)
			}
		})
	}
}

// TestVectorTamper flips one bit at every position of every vector (and
// truncates and extends it): each is dropped, as DropBadSPI for the SPI,
// DropMalformed when too short to be ESP (or, for AES-CBC, not whole
// blocks), DropReplay for sequence number zero, DropAuth otherwise, and
// none moves the window: the intact packet is still accepted afterwards.
func TestVectorTamper(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			sa := opener(t, v)
			tr := sa.tr
			before := sa.replay.Highest()
			orig := unhex(t, v.Packet)
			want := map[DropReason]uint64{}
			expect := func(pkt []byte) DropReason {
				switch {
				case len(pkt) < tr.minLen():
					return DropMalformed
				case Header(pkt).SPI() != v.SPI:
					return DropBadSPI
				case !tr.AEAD() && (len(pkt)-tr.PrefixLen()-tr.ICVLen())%16 != 0:
					return DropMalformed
				case !tr.ESN && Header(pkt).Seq() == 0:
					return DropReplay // zero is never a valid sequence number
				case tr.ESN && sa.replay.Infer(Header(pkt).Seq()) == 0:
					return DropReplay
				case tr.ESN && !sa.replay.Check(sa.replay.Infer(Header(pkt).Seq())):
					return DropReplay // a flipped low half may land on a number seen
				}
				return DropAuth
			}
			try := func(pkt []byte, what string) {
				t.Helper()
				wantReason := expect(pkt)
				if _, _, r := sa.Open(pkt); r != wantReason {
					t.Fatalf("%s: %v, want %v", what, r, wantReason)
				}
				want[wantReason]++
			}
			for i := range orig {
				for _, bit := range []byte{0x01, 0x80} {
					pkt := bytes.Clone(orig)
					pkt[i] ^= bit
					try(pkt, "bit flipped at "+strconv.Itoa(i))
				}
			}
			for _, n := range []int{0, 1, HeaderLen, tr.PrefixLen(), tr.minLen() - 1, tr.minLen(), len(orig) - 1} {
				if n < len(orig) {
					try(bytes.Clone(orig[:n]), "truncated to "+strconv.Itoa(n))
				}
			}
			try(append(bytes.Clone(orig), 0), "one byte appended")
			if h := sa.replay.Highest(); h != before {
				t.Fatalf("damaged packets moved the window to %d", h)
			}
			st := sa.Stats()
			for r, n := range want {
				if st.Drops[r.String()] != n {
					t.Errorf("drops[%v] = %d, want %d", r, st.Drops[r.String()], n)
				}
			}
			if _, _, r := sa.Open(orig); r != DropNone {
				t.Fatalf("intact packet after the damaged ones: %v", r)
			}
		})
	}
}
