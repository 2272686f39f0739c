package esp

import (
	"bytes"
	"testing"
)

// FuzzOpen feeds Open of a fixed SA two kinds of input:
//
//   - pkt, raw bytes as they would arrive (seeded with valid packets, so
//     mutations reach every length and header check);
//   - plain, an arbitrary plaintext (trailer included) that the fuzz target
//     encrypts with crypto/cipher itself, so that the parts after the ICV
//     check (pad length, pad bytes, next header) see arbitrary input too.
//
// Open must not panic; an authentic packet is never DropAuth; and whatever
// Open accepts, Seal with the same sequence number, IV and pad length
// rebuilds byte for byte.
func FuzzOpen(f *testing.F) {
	f.Add([]byte{}, []byte{0, 47}, uint32(1))
	f.Add(make([]byte, MinLen), []byte{1, 2, 3, 3, 4}, uint32(0))
	f.Add([]byte{0xC0, 0xDE, 0, 1, 0, 0, 0, 1}, []byte{9, 9, 2, 1, 2, 47}, uint32(7))
	for n, seq := range []uint32{1, 2, 0xFFFFFFFF, 1 << 31} {
		sa := mustSA(f, testKey256, 0)
		sa.seq.Store(uint64(seq) - 1)
		buf := make([]byte, PrefixLen+n+MaxSuffixLen)
		pkt, _ := sa.Seal(buf, PrefixLen, n, 47)
		f.Add(bytes.Clone(pkt), append(make([]byte, n), 0, 4), seq)
	}
	f.Fuzz(func(t *testing.T, pkt, plain []byte, seq uint32) {
		sa := mustSA(t, testKey256, DefaultReplayWindow)
		orig := bytes.Clone(pkt)
		payload, nh, r := sa.Open(pkt)
		checkOpened(t, sa, orig, payload, nh, r)

		if len(plain) == 0 {
			return
		}
		sa = mustSA(t, testKey256, DefaultReplayWindow)
		iv := uint64(seq)*0x9E3779B97F4A7C15 + 1 // any IV, not just Seal's
		pkt = rawPacket(t, testKey256, testSPI, seq, iv, plain)
		orig = bytes.Clone(pkt)
		payload, nh, r = sa.Open(pkt)
		want := DropMalformed
		switch {
		case len(plain) < TrailerLen: // too short to be ESP: checked first
		case seq == 0:
			want = DropReplay
		case len(plain) >= TrailerLen && validTrailer(plain):
			want = DropNone
		}
		if r != want {
			t.Fatalf("authentic packet with plaintext %x: %v, want %v", plain, r, want)
		}
		checkOpened(t, sa, orig, payload, nh, r)
	})
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
	h := Header(orig)
	pad := len(orig) - PrefixLen - len(payload) - TrailerLen - ICVLen
	if pad < 0 || pad > 255 {
		t.Fatalf("accepted %d-byte packet with %d-byte payload", len(orig), len(payload))
	}
	buf := make([]byte, len(orig))
	copy(buf[PrefixLen:], payload)
	re := sa.seal(buf, PrefixLen, len(payload), nh, uint64(h.Seq()), h.IV(), pad)
	if !bytes.Equal(re, orig) {
		t.Fatalf("accepted packet does not re-seal to itself\n got %x\nwant %x", re, orig)
	}
}
