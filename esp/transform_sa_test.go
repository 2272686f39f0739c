package esp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestAllTransformsRoundTrip seals payloads of every length up to 300 and
// opens them, checking the layout each transform's RFC fixes.
func TestAllTransformsRoundTrip(t *testing.T) {
	for _, name := range testTransforms {
		t.Run(name, func(t *testing.T) {
			tr := mustTransform(t, name)
			keymat := testKeymat(tr, 1)
			out, in := mustTSA(t, tr, keymat, 0), mustTSA(t, tr, keymat, DefaultReplayWindow)
			if out.PrefixLen() != HeaderLen+tr.IVLen() || out.Algorithms() != tr || out.Transform() != tr.Description() {
				t.Fatalf("SA prefix %d, transform %v %q", out.PrefixLen(), out.Algorithms(), out.Transform())
			}
			const off = MaxPrefixLen + 8
			for n := range 300 {
				payload := bytes.Repeat([]byte{byte(n)}, n)
				buf := make([]byte, off+n+MaxSuffixLen)
				copy(buf[off:], payload)
				pkt, err := out.Seal(buf, off, n, byte(n))
				if err != nil {
					t.Fatal(err)
				}
				enc := len(pkt) - out.PrefixLen() - tr.ICVLen()
				if len(pkt) != n+tr.Overhead(n) || len(pkt) != n+out.Overhead(n) || enc%tr.BlockSize() != 0 || enc-n-TrailerLen >= tr.BlockSize() {
					t.Fatalf("n=%d: packet %d bytes, Overhead %d, encrypted part %d", n, len(pkt), tr.Overhead(n), enc)
				}
				if &pkt[0] != &buf[off-out.PrefixLen()] {
					t.Fatalf("n=%d: packet does not start PrefixLen before the payload", n)
				}
				h := Header(pkt)
				if h.SPI() != testSPI || h.Seq() != uint32(n+1) {
					t.Fatalf("n=%d: header spi %x seq %d", n, h.SPI(), h.Seq())
				}
				if tr.AEAD() && h.IV() != uint64(n+1) {
					t.Fatalf("n=%d: AEAD IV %d, want the counter", n, h.IV())
				}
				// An implementation built from the primitives agrees.
				plain := rawOpen(t, tr, keymat, uint64(n+1), pkt)
				if want := trailer(payload, enc-n-TrailerLen, byte(n)); !bytes.Equal(plain, want) {
					t.Fatalf("n=%d: primitives decrypt %x, want %x", n, plain, want)
				}
				got, nh, r := in.Open(pkt)
				if r != DropNone || nh != byte(n) || !bytes.Equal(got, payload) {
					t.Fatalf("n=%d: Open = %x %d %v", n, got, nh, r)
				}
				if n > 0 && &got[0] != &buf[off] {
					t.Fatalf("n=%d: payload is not in place", n)
				}
			}
			if st := in.Stats(); st.Packets != 300 || st.Bytes != 299*300/2 || st.Sequence != 300 {
				t.Errorf("inbound stats %+v", st)
			}
			if st := out.Stats(); st.Packets != 300 || st.Sequence != 300 || st.Remaining != out.limit-300 {
				t.Errorf("outbound stats %+v", st)
			}
		})
	}
}

// TestAllTransformsOpenPeerPackets: packets built from the primitives, with
// IVs and padding a peer may choose, open; the trailer rules hold for every
// transform.
func TestAllTransformsOpenPeerPackets(t *testing.T) {
	for _, name := range testTransforms {
		t.Run(name, func(t *testing.T) {
			tr := mustTransform(t, name)
			keymat := testKeymat(tr, 9)
			iv := bytes.Repeat([]byte{0x5c}, tr.IVLen())
			payload := []byte("0123456789abcdefXYZ")
			tests := []struct {
				pad    []byte
				padlen byte
				want   DropReason
			}{
				{nil, 0, DropNone},
				{[]byte{1, 2, 3}, 3, DropNone},
				{[]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, 19, DropNone},
				{[]byte{1, 2, 4}, 3, DropMalformed},
				{[]byte{0, 0, 0}, 3, DropMalformed},
				{nil, 30, DropMalformed},
			}
			for i, tt := range tests {
				plain := append(append(bytes.Clone(payload), tt.pad...), tt.padlen, 47)
				if !tr.AEAD() {
					// Whole blocks: move the extra bytes into the payload.
					extra := -len(plain) & 15
					plain = append(bytes.Repeat([]byte{0xEE}, extra), plain...)
				}
				sa := mustTSA(t, tr, keymat, DefaultReplayWindow)
				seq := uint64(100 + i)
				got, nh, r := sa.Open(rawSeal(t, tr, keymat, testSPI, seq, iv, plain))
				if r != tt.want {
					t.Fatalf("case %d: %v, want %v", i, r, tt.want)
				}
				if r == DropNone && (nh != 47 || !bytes.HasSuffix(got, payload)) {
					t.Fatalf("case %d: payload %x next %d", i, got, nh)
				}
				if sa.replay.Highest() != seq {
					t.Errorf("case %d: authentic packet did not use its number", i)
				}
			}
		})
	}
}

// TestAllTransformsTamper flips bits at every position, truncates and
// extends: everything is dropped for the right reason, nothing moves the
// window, and AES-CBC decrypts nothing it has not authenticated.
func TestAllTransformsTamper(t *testing.T) {
	for _, name := range testTransforms {
		t.Run(name, func(t *testing.T) {
			tr := mustTransform(t, name)
			keymat := testKeymat(tr, 3)
			out, in := mustTSA(t, tr, keymat, 0), mustTSA(t, tr, keymat, DefaultReplayWindow)
			buf := make([]byte, MaxPrefixLen+45+MaxSuffixLen)
			orig, err := out.Seal(buf, MaxPrefixLen, 45, 47)
			if err != nil {
				t.Fatal(err)
			}
			orig = bytes.Clone(orig)
			try := func(pkt []byte, what string) {
				t.Helper()
				want := DropAuth
				switch {
				case len(pkt) < tr.minLen():
					want = DropMalformed
				case Header(pkt).SPI() != testSPI:
					want = DropBadSPI
				case !tr.AEAD() && (len(pkt)-HeaderLen-tr.IVLen()-tr.ICVLen())%16 != 0:
					want = DropMalformed
				case Header(pkt).Seq() == 0:
					want = DropReplay // zero is never valid, nor inferred 0 in subspace 0
				}
				before := bytes.Clone(pkt)
				if _, _, r := in.Open(pkt); r != want {
					t.Fatalf("%s: %v, want %v", what, r, want)
				}
				if !tr.AEAD() && !bytes.Equal(before, pkt) {
					t.Fatalf("%s: AES-CBC changed a packet that failed", what)
				}
			}
			for i := range orig {
				for _, bit := range []byte{0x01, 0x80} {
					pkt := bytes.Clone(orig)
					pkt[i] ^= bit
					try(pkt, fmt.Sprintf("bit %#x flipped at %d", bit, i))
				}
			}
			for _, n := range []int{0, 1, HeaderLen, tr.PrefixLen(), tr.minLen() - 1, tr.minLen(), len(orig) - 16, len(orig) - 1} {
				try(bytes.Clone(orig[:n]), fmt.Sprintf("truncated to %d", n))
			}
			try(append(bytes.Clone(orig), 0), "one byte appended")
			try(append(bytes.Clone(orig), make([]byte, 16)...), "a block appended")
			if h := in.replay.Highest(); h != 0 {
				t.Fatalf("damaged packets moved the window to %d", h)
			}
			if _, _, r := in.Open(orig); r != DropNone {
				t.Fatalf("intact packet after the damaged ones: %v", r)
			}
		})
	}
}

// TestCBCIV: AES-CBC IVs are distinct, are not the counter, and differ
// between two SAs with the same key (each has its own IV key).
func TestCBCIV(t *testing.T) {
	tr := mustTransform(t, "aes256-sha256")
	keymat := testKeymat(tr, 5)
	a, b := mustTSA(t, tr, keymat, 0), mustTSA(t, tr, keymat, 0)
	seen := map[string]bool{}
	for range 1000 {
		for _, sa := range []*SA{a, b} {
			buf := make([]byte, MaxPrefixLen+16+MaxSuffixLen)
			pkt, err := sa.Seal(buf, MaxPrefixLen, 16, 47)
			if err != nil {
				t.Fatal(err)
			}
			iv := string(pkt[HeaderLen:MaxPrefixLen])
			if seen[iv] {
				t.Fatalf("IV %x repeated", iv)
			}
			seen[iv] = true
			if Header(pkt).IV() == uint64(Header(pkt).Seq()) || strings.Count(iv, "\x00") > 8 {
				t.Fatalf("IV %x looks like the counter", iv)
			}
		}
	}
}

// TestESNAcrossBoundary: an ESN sender crosses 2^32, the receiver infers
// the high half (packets reordered across the boundary included), rejects
// replays on both sides of it, and a receiver without ESN cannot open
// what crossed (the high bits are authenticated).
func TestESNAcrossBoundary(t *testing.T) {
	for _, name := range []string{"aes256gcm16-esn", "chacha20poly1305-esn", "aes128-sha1-esn", "aes256-sha256-esn"} {
		t.Run(name, func(t *testing.T) {
			tr := mustTransform(t, name)
			keymat := testKeymat(tr, 7)
			out, in := mustTSA(t, tr, keymat, 0), mustTSA(t, tr, keymat, DefaultReplayWindow)
			start := uint64(1<<32 - 40)
			if err := out.SetSequence(start); err != nil {
				t.Fatal(err)
			}
			var pkts [][]byte
			for range 80 {
				buf := make([]byte, MaxPrefixLen+30+MaxSuffixLen)
				pkt, err := out.Seal(buf, MaxPrefixLen, 30, 47)
				if err != nil {
					t.Fatal(err)
				}
				pkts = append(pkts, bytes.Clone(pkt))
			}
			if Header(pkts[39]).Seq() != 0 || Header(pkts[40]).Seq() != 1 {
				t.Fatalf("low halves around 2^32: %d %d", Header(pkts[39]).Seq(), Header(pkts[40]).Seq())
			}
			// The first packets open in order; then the boundary arrives
			// out of order: 2^32+5 before 2^32-3 .. 2^32+4.
			for i := range 20 {
				if _, _, r := in.Open(bytes.Clone(pkts[i])); r != DropNone {
					t.Fatalf("packet %d: %v", i, r)
				}
			}
			order := []int{45, 37, 39, 38, 41, 40, 36, 44, 43, 42, 20}
			for i := 21; i < 36; i++ {
				order = append(order, i)
			}
			for i := 46; i < 80; i++ {
				order = append(order, i)
			}
			for _, i := range order {
				if _, _, r := in.Open(bytes.Clone(pkts[i])); r != DropNone {
					t.Fatalf("packet %d (seq %#x): %v (highest %#x)", i, start+uint64(i)+1, r, in.replay.Highest())
				}
			}
			if h := in.replay.Highest(); h != start+80 {
				t.Fatalf("highest %#x, want %#x", h, start+80)
			}
			for _, i := range []int{0, 38, 39, 40, 79} {
				if _, _, r := in.Open(bytes.Clone(pkts[i])); r != DropReplay {
					t.Errorf("replay of packet %d: %v", i, r)
				}
			}
			if st := in.Stats(); st.Packets != 80 || st.Drops["auth"] != 0 {
				t.Errorf("inbound stats %+v", st)
			}
			// ESN is part of what is authenticated (a 12-byte AAD, or
			// seq-high after the HMAC input): a receiver without it opens
			// none of these, below 2^32 or above.
			noESN := tr
			noESN.ESN = false
			plain := mustTSA(t, noESN, keymat, DefaultReplayWindow)
			for _, i := range []int{10, 50} {
				if _, _, r := plain.Open(bytes.Clone(pkts[i])); r != DropAuth {
					t.Errorf("packet %d on a receiver without ESN: %v, want auth", i, r)
				}
			}
		})
	}
}

// TestESNFarBehindFailsAuth: a packet from before the window whose low
// half looks ahead is inferred into the next subspace (RFC 4303 A2.2) and
// fails the ICV; it neither passes nor moves the window.
func TestESNFarBehindFailsAuth(t *testing.T) {
	tr := mustTransform(t, "aes256gcm16-esn")
	keymat := testKeymat(tr, 11)
	in := mustTSA(t, tr, keymat, DefaultReplayWindow)
	iv := make([]byte, 8)
	plain := trailer([]byte("x"), 1, 47)
	for _, seq := range []uint64{5000, 1<<32 - 100, 1<<32 + 5000} {
		if _, _, r := in.Open(rawSeal(t, tr, keymat, testSPI, seq, iv, plain)); r != DropNone {
			t.Fatalf("seq %#x: %v", seq, r)
		}
	}
	// 2^32+5000 is highest; the low half 3000 is below the window's
	// bottom (2^32+3977) and is taken for 2^33+3000, whether the packet
	// really was 3000 or 2^32+3000.
	if got := in.replay.Infer(3000); got != 2<<32+3000 {
		t.Fatalf("Infer(3000) = %#x", got)
	}
	for _, seq := range []uint64{3000, 1<<32 + 3000} {
		if _, _, r := in.Open(rawSeal(t, tr, keymat, testSPI, seq, iv, plain)); r != DropAuth {
			t.Fatalf("old packet %#x: %v, want auth", seq, r)
		}
	}
	if h := in.replay.Highest(); h != 1<<32+5000 {
		t.Fatalf("window moved to %#x", h)
	}
}

func TestSequenceLimits(t *testing.T) {
	for _, name := range []string{"aes128-sha1", "chacha20poly1305", "aes256-sha512-esn", "aes128gcm16-esn"} {
		t.Run(name, func(t *testing.T) {
			tr := mustTransform(t, name)
			sa := mustTSA(t, tr, testKeymat(tr, 2), 0)
			if err := sa.SetSequence(MaxSeq - 1); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, MaxPrefixLen+8+MaxSuffixLen)
			for i := range 4 {
				pkt, err := sa.Seal(buf, MaxPrefixLen, 8, 47)
				switch {
				case i == 0 && (err != nil || Header(pkt).Seq() != MaxSeq):
					t.Fatalf("last number: %v", err)
				case i > 0 && !tr.ESN && !errors.Is(err, ErrSequenceExhausted):
					t.Fatalf("Seal %d past MaxSeq: %v", i, err)
				case i > 0 && tr.ESN && (err != nil || Header(pkt).Seq() != uint32(i-1)):
					t.Fatalf("ESN Seal %d past 2^32-1: %v, low half %d", i, err, Header(pkt).Seq())
				}
			}
			st := sa.Stats()
			if tr.ESN {
				if st.SealRefused != 0 || st.Sequence != MaxSeq+3 || st.Remaining != MaxSeqESN-MaxSeq-3 {
					t.Errorf("ESN stats %+v", st)
				}
			} else if st.SealRefused != 3 || st.Sequence != MaxSeq || st.Remaining != 0 {
				t.Errorf("stats %+v, want 3 refusals", st)
			}
			if err := sa.SetSequence(sa.limit); err == nil {
				t.Error("SetSequence(limit) accepted")
			}
		})
	}
}

func TestTransformNewSAErrors(t *testing.T) {
	for _, name := range testTransforms {
		tr := mustTransform(t, name)
		for _, n := range []int{0, tr.KeymatLen() - 1, tr.KeymatLen() + 1, tr.EncKeyLen()} {
			if n == tr.KeymatLen() {
				continue
			}
			key := bytes.Repeat([]byte{0xAB}, n)
			_, err := tr.NewSA(testSPI, key, 64)
			if err == nil {
				t.Errorf("%s: %d-byte key accepted", name, n)
				continue
			}
			if strings.Contains(strings.ToLower(err.Error()), "abab") || !strings.Contains(err.Error(), tr.Name()) {
				t.Errorf("%s: error %q leaks the key or does not name the transform", name, err)
			}
		}
		if _, err := tr.NewSA(0, testKeymat(tr, 1), 0); err == nil {
			t.Errorf("%s: SPI 0 accepted", name)
		}
	}
	if _, err := (Transform{}).NewSA(testSPI, nil, 0); err == nil {
		t.Error("zero Transform made an SA")
	}
	if sa, err := NewSA(testSPI, make([]byte, 28), 0); err != nil || sa.Transform() != "esp-aes-192-gcm-16" {
		t.Errorf("NewSA with 28 bytes: %v %v", sa, err)
	}
}

// TestAllTransformsNotPrinted: no fmt verb shows any transform's keys.
func TestAllTransformsNotPrinted(t *testing.T) {
	for _, name := range testTransforms {
		tr := mustTransform(t, name)
		keymat := bytes.Repeat([]byte("SECRETKEY"), 20)[:tr.KeymatLen()]
		sa := mustTSA(t, tr, keymat, 64)
		clear(keymat)
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q", "%d"} {
			for _, v := range []any{sa, sa.crypt, struct{ S *SA }{sa}, []*SA{sa}} {
				s := fmt.Sprintf(verb, v)
				if strings.Contains(s, "SECRET") || strings.Contains(strings.ToLower(s), hex.EncodeToString([]byte("SECRET"))) {
					t.Errorf("%s: fmt %s shows key material: %.200s", name, verb, s)
				}
			}
		}
	}
}

// TestNoAllocsAllTransforms: Seal and Open of every transform allocate
// nothing.
func TestNoAllocsAllTransforms(t *testing.T) {
	if raceEnabled {
		t.Skip("SKIPPED under -race: sync.Pool drops pooled CBC/HMAC state on purpose, so every run allocates")
	}
	for _, name := range testTransforms {
		tr := mustTransform(t, name)
		out, in := mustTSA(t, tr, testKeymat(tr, 1), 0), mustTSA(t, tr, testKeymat(tr, 1), DefaultReplayWindow)
		buf := make([]byte, 1600)
		if n := testing.AllocsPerRun(200, func() {
			pkt, err := out.Seal(buf, MaxPrefixLen, 1400, 47)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, r := in.Open(pkt); r != DropNone {
				t.Fatal(r)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per Seal+Open", name, n)
		}
	}
}

// TestAllTransformsConcurrent: concurrent Seals on one SA of each kind
// get distinct numbers and all open (the pooled CBC and HMAC state is not
// shared between callers; run with -race).
func TestAllTransformsConcurrent(t *testing.T) {
	for _, name := range []string{"aes256-sha256", "chacha20poly1305-esn"} {
		tr := mustTransform(t, name)
		const G, per = 4, 300
		out, in := mustTSA(t, tr, testKeymat(tr, 4), 0), mustTSA(t, tr, testKeymat(tr, 4), G*per)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var pkts [][]byte
		for range G {
			wg.Go(func() {
				for i := range per {
					buf := make([]byte, MaxPrefixLen+100+MaxSuffixLen)
					pkt, err := out.Seal(buf, MaxPrefixLen, 40+i%50, 47)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					pkts = append(pkts, pkt)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for g := range G {
			wg.Go(func() {
				for i := g; i < len(pkts); i += G {
					if _, _, r := in.Open(pkts[i]); r != DropNone {
						t.Errorf("%s: packet %d: %v", name, i, r)
					}
				}
			})
		}
		wg.Wait()
		if st := in.Stats(); st.Packets != G*per {
			t.Errorf("%s: opened %d of %d", name, st.Packets, G*per)
		}
	}
}
