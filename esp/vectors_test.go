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
	if len(f.Vectors) < 8 {
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

// TestVectorsCoverage keeps the generated file honest about what the brief
// asks it to cover.
func TestVectorsCoverage(t *testing.T) {
	pads, nhs, keys, scapy := map[int]bool{}, map[byte]bool{}, map[int]bool{}, 0
	for _, v := range loadVectors(t) {
		if v.Sealable {
			pads[v.PadLen] = true
		}
		nhs[v.NextHeader] = true
		keys[len(v.Keymat)/2] = true
		if v.Scapy {
			scapy++
		}
	}
	if len(pads) != 4 || !nhs[47] || !nhs[4] || !keys[20] || !keys[36] || scapy == 0 {
		t.Errorf("vectors cover pads %v, next headers %v, key sizes %v, %d scapy-checked", pads, nhs, keys, scapy)
	}
}

func TestVectorSeal(t *testing.T) {
	for _, v := range loadVectors(t) {
		if !v.Sealable {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			sa, err := NewSA(v.SPI, unhex(t, v.Keymat), DefaultReplayWindow)
			if err != nil {
				t.Fatal(err)
			}
			sa.seq.Store(v.Seq - 1) // the next Seal takes v.Seq
			payload := unhex(t, v.Payload)
			buf := make([]byte, PrefixLen+len(payload)+MaxSuffixLen)
			copy(buf[PrefixLen:], payload)
			out, err := sa.Seal(buf, PrefixLen, len(payload), v.NextHeader)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, v.Packet); !bytes.Equal(out, want) {
				t.Errorf("Seal\n got %x\nwant %x", out, want)
			}
			if len(out) != len(payload)+Overhead(len(payload)) {
				t.Errorf("len %d, Overhead says %d", len(out), len(payload)+Overhead(len(payload)))
			}
		})
	}
}

func TestVectorOpen(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			sa, err := NewSA(v.SPI, unhex(t, v.Keymat), DefaultReplayWindow)
			if err != nil {
				t.Fatal(err)
			}
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
// DropMalformed when too short to be ESP, DropReplay for sequence number
// zero, DropAuth otherwise, and none
// moves the window: the intact packet is still accepted afterwards.
func TestVectorTamper(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			sa, err := NewSA(v.SPI, unhex(t, v.Keymat), DefaultReplayWindow)
			if err != nil {
				t.Fatal(err)
			}
			orig := unhex(t, v.Packet)
			want := map[DropReason]uint64{}
			try := func(pkt []byte, wantReason DropReason, what string) {
				t.Helper()
				if _, _, r := sa.Open(pkt); r != wantReason {
					t.Fatalf("%s: %v, want %v", what, r, wantReason)
				}
				want[wantReason]++
			}
			for i := range orig {
				for _, bit := range []byte{0x01, 0x80} {
					pkt := bytes.Clone(orig)
					pkt[i] ^= bit
					r := DropAuth
					switch {
					case i < 4:
						r = DropBadSPI
					case Header(pkt).Seq() == 0:
						r = DropReplay // zero is never a valid sequence number
					}
					try(pkt, r, "bit flipped at "+strconv.Itoa(i))
				}
			}
			for _, n := range []int{0, 1, HeaderLen, PrefixLen, MinLen - 1} {
				try(bytes.Clone(orig[:n]), DropMalformed, "truncated to "+strconv.Itoa(n))
			}
			for _, n := range []int{MinLen, len(orig) - 1} {
				if n < len(orig) {
					try(bytes.Clone(orig[:n]), DropAuth, "truncated to "+strconv.Itoa(n))
				}
			}
			try(append(bytes.Clone(orig), 0), DropAuth, "one byte appended")
			if h := sa.replay.Highest(); h != 0 {
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
