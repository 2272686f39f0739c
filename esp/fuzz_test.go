package esp

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzOpen feeds Open of a fixed SA of each transform (which selects it
// from testTransforms) two kinds of input:
//
//   - pkt, raw bytes as they would arrive (seeded with valid packets, so
//     mutations reach every length and header check);
//   - plain, an arbitrary plaintext (trailer included; cut to whole blocks
//     for AES-CBC) that the fuzz target encrypts with the primitives
//     itself, so that the parts after the ICV check (pad length, pad
//     bytes, next header) see arbitrary input too.
//
// Open must not panic; an authentic packet is never DropAuth; and whatever
// Open accepts, Seal with the same sequence number, IV and pad length
// rebuilds byte for byte.
func FuzzOpen(f *testing.F) {
	f.Add([]byte{}, []byte{0, 47}, uint32(1), uint8(2))
	f.Add(make([]byte, MinLen), []byte{1, 2, 3, 3, 4}, uint32(0), uint8(2))
	f.Add([]byte{0xC0, 0xDE, 0, 1, 0, 0, 0, 1}, []byte{9, 9, 2, 1, 2, 47}, uint32(7), uint8(2))
	for which := range len(testTransforms) {
		tr := fuzzTransform(uint8(which))
		for n, seq := range []uint32{1, 2, 0xFFFFFFFF, 1 << 31, 17} {
			sa := mustTSA(f, tr, fuzzKeymat(tr), 0)
			sa.seq.Store(uint64(seq) - 1)
			buf := make([]byte, MaxPrefixLen+n+MaxSuffixLen)
			pkt, _ := sa.Seal(buf, MaxPrefixLen, n, 47)
			plain := append(make([]byte, n), 0, 4)
			if !tr.AEAD() {
				plain = append(make([]byte, 14), 0, 4)
			}
			f.Add(bytes.Clone(pkt), plain, seq, uint8(which))
		}
	}
	f.Fuzz(func(t *testing.T, pkt, plain []byte, seq uint32, which uint8) {
		tr := fuzzTransform(which)
		keymat := fuzzKeymat(tr)
		sa := mustTSA(t, tr, keymat, DefaultReplayWindow)
		orig := bytes.Clone(pkt)
		payload, nh, r := sa.Open(pkt)
		checkOpened(t, sa, orig, payload, nh, r)

		if !tr.AEAD() {
			plain = plain[:len(plain)-len(plain)%aesBlockLen]
		}
		if len(plain) == 0 {
			return
		}
		sa = mustTSA(t, tr, keymat, DefaultReplayWindow)
		iv := binary.BigEndian.AppendUint64(nil, uint64(seq)*0x9E3779B97F4A7C15+1) // any IV, not just Seal's
		if !tr.AEAD() {
			iv = binary.BigEndian.AppendUint64(iv, uint64(seq)^0xC0FFEE)
		}
		pkt = rawSeal(t, tr, keymat, testSPI, uint64(seq), iv, plain)
		orig = bytes.Clone(pkt)
		payload, nh, r = sa.Open(pkt)
		want := DropMalformed
		switch {
		case len(plain) < TrailerLen: // too short to be ESP: checked first
		case seq == 0:
			want = DropReplay
		case validTrailer(plain):
			want = DropNone
		}
		if r != want {
			t.Fatalf("%s: authentic packet with plaintext %x: %v, want %v", tr, plain, r, want)
		}
		checkOpened(t, sa, orig, payload, nh, r)
	})
}

func fuzzTransform(which uint8) Transform {
	tr, _ := ParseTransform(testTransforms[int(which)%len(testTransforms)])
	return tr
}

// fuzzKeymat keeps AES-256-GCM on testKey256, the key of the corpus
// entries written before the other transforms existed.
func fuzzKeymat(tr Transform) []byte {
	if tr == DefaultTransform {
		return testKey256
	}
	return testKeymat(tr, 1)
}

// validTrailer is RFC 4303 §2.4 restated independently of Open.
func validTrailer(plain []byte) bool {
	padlen := int(plain[len(plain)-2])
	if padlen+2 > len(plain) {
		return false
	}
	pad := plain[len(plain)-2-padlen : len(plain)-2]
	for i := range pad {
		if pad[i] != byte(i+1) {
			return false
		}
	}
	return true
}

// checkOpened re-seals what Open accepted and compares with the original.
func checkOpened(t *testing.T, sa *SA, orig, payload []byte, nh byte, r DropReason) {
	t.Helper()
	if r != DropNone {
		if payload != nil {
			t.Fatalf("dropped (%v) but returned a payload", r)
		}
		return
	}
	prefix, icv := sa.PrefixLen(), sa.tr.ICVLen()
	pad := len(orig) - prefix - len(payload) - TrailerLen - icv
	if pad < 0 || pad > 255 {
		t.Fatalf("accepted %d-byte packet with %d-byte payload", len(orig), len(payload))
	}
	buf := make([]byte, len(orig))
	copy(buf[prefix:], payload)
	// The SA accepted one packet: its number is the window's highest,
	// high half included.
	re := sa.seal(buf, prefix, len(payload), nh, sa.replay.Highest(), orig[HeaderLen:prefix], pad)
	if !bytes.Equal(re, orig) {
		t.Fatalf("accepted packet does not re-seal to itself\n got %x\nwant %x", re, orig)
	}
}
