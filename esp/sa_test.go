package esp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

var (
	testKey256 = bytes.Repeat([]byte{0xa5, 0x5a, 0x3c}, 12) // 36 bytes
	testKey128 = bytes.Repeat([]byte{0x17, 0x71}, 10)       // 20 bytes
)

const testSPI = 0xC0DE0001

func mustSA(t testing.TB, keymat []byte, window int) *SA {
	t.Helper()
	sa, err := NewSA(testSPI, keymat, window)
	if err != nil {
		t.Fatal(err)
	}
	return sa
}

// rawPacket builds an ESP packet around an arbitrary plaintext (trailer
// included) with crypto/cipher directly, not through SA: the way to make
// authentic packets with padding Seal would never write.
func rawPacket(t testing.TB, keymat []byte, spi, seq uint32, iv uint64, plain []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(keymat[:len(keymat)-4])
	if err != nil {
		t.Fatal(err)
	}
	aead, _ := cipher.NewGCM(block)
	pkt := binary.BigEndian.AppendUint32(nil, spi)
	pkt = binary.BigEndian.AppendUint32(pkt, seq)
	pkt = binary.BigEndian.AppendUint64(pkt, iv)
	nonce := append(bytes.Clone(keymat[len(keymat)-4:]), pkt[8:16]...)
	return aead.Seal(pkt, nonce, plain, pkt[:8])
}

func TestSealOpenRoundTrip(t *testing.T) {
	for _, keymat := range [][]byte{testKey128, testKey256} {
		out, in := mustSA(t, keymat, 0), mustSA(t, keymat, DefaultReplayWindow)
		for n := range 300 {
			payload := bytes.Repeat([]byte{byte(n)}, n)
			buf := make([]byte, 40+n+MaxSuffixLen)
			copy(buf[40:], payload)
			pkt, err := out.Seal(buf, 40, n, byte(n))
			if err != nil {
				t.Fatal(err)
			}
			if len(pkt) != n+Overhead(n) || (len(pkt)-PrefixLen-ICVLen)%4 != 0 {
				t.Fatalf("n=%d: packet %d bytes, Overhead %d, ciphertext not 4-aligned?", n, len(pkt), Overhead(n))
			}
			h := Header(pkt)
			if h.SPI() != testSPI || h.Seq() != uint32(n+1) || h.IV() != uint64(n+1) {
				t.Fatalf("n=%d: header spi %x seq %d iv %d", n, h.SPI(), h.Seq(), h.IV())
			}
			got, nh, r := in.Open(pkt)
			if r != DropNone || nh != byte(n) || !bytes.Equal(got, payload) {
				t.Fatalf("n=%d: Open = %x %d %v", n, got, nh, r)
			}
			if &got[0:1][0] != &buf[40:41][0] && n > 0 {
				t.Fatalf("n=%d: payload is not in place", n)
			}
		}
		st := in.Stats()
		if st.Packets != 300 || st.Bytes != 299*300/2 || st.Sequence != 300 || st.ReplayWindow != DefaultReplayWindow {
			t.Errorf("inbound stats %+v", st)
		}
		st = out.Stats()
		if st.Packets != 300 || st.Sequence != 300 || st.Remaining != MaxSeq-300 || out.SeqUsed() != 300 {
			t.Errorf("outbound stats %+v", st)
		}
	}
}

func TestOverhead(t *testing.T) {
	// The seed's MTU: 1442 inner + 4 GRE, no padding, 20-byte IPv4 header.
	if got := 20 + 4 + 1442 + Overhead(4+1442); got != 1500 {
		t.Errorf("1442-byte inner packet makes a %d-byte underlay packet, want 1500", got)
	}
	want := []int{36, 35, 34, 37} // n%4 = 0,1,2,3 -> pad 2,1,0,3
	for n := range 16 {
		if got := Overhead(n); got != want[n%4] {
			t.Errorf("Overhead(%d) = %d, want %d", n, got, want[n%4])
		}
		if Overhead(n) > PrefixLen+MaxSuffixLen {
			t.Errorf("Overhead(%d) exceeds PrefixLen+MaxSuffixLen", n)
		}
	}
}

// TestSealPadding: the pad bytes Seal writes are 1, 2, 3 (decrypted with
// crypto/cipher, not Open).
func TestSealPadding(t *testing.T) {
	sa := mustSA(t, testKey256, 0)
	block, _ := aes.NewCipher(testKey256[:32])
	aead, _ := cipher.NewGCM(block)
	for n, pad := range []int{2, 1, 0, 3} {
		buf := make([]byte, PrefixLen+n+MaxSuffixLen)
		pkt, err := sa.Seal(buf, PrefixLen, n, 47)
		if err != nil {
			t.Fatal(err)
		}
		nonce := append(bytes.Clone(testKey256[32:]), pkt[8:16]...)
		plain, err := aead.Open(nil, nonce, pkt[16:], pkt[:8])
		if err != nil {
			t.Fatal(err)
		}
		want := append(make([]byte, n), []byte{1, 2, 3}[:pad]...)
		want = append(want, byte(pad), 47)
		if !bytes.Equal(plain, want) {
			t.Errorf("n=%d: plaintext %x, want %x", n, plain, want)
		}
	}
}

// TestOpenPadding feeds Open authentic packets with every kind of trailer.
func TestOpenPadding(t *testing.T) {
	payload := []byte("0123456789abcdef")
	trail := func(pad []byte, padlen byte) []byte {
		p := append(bytes.Clone(payload), pad...)
		return append(p, padlen, 47)
	}
	seq255 := make([]byte, 255)
	for i := range seq255 {
		seq255[i] = byte(i + 1)
	}
	tests := []struct {
		name  string
		plain []byte
		want  DropReason
		n     int // payload length when accepted
	}{
		{"minimal pad 2", trail([]byte{1, 2}, 2), DropNone, 16},
		{"no pad, unaligned", trail(nil, 0), DropNone, 16},
		{"extra pad 6", trail([]byte{1, 2, 3, 4, 5, 6}, 6), DropNone, 16},
		{"pad 255", trail(seq255, 255), DropNone, 16},
		{"pad bytes zero", trail([]byte{0, 0}, 2), DropMalformed, 0},
		{"pad bytes reversed", trail([]byte{2, 1}, 2), DropMalformed, 0},
		{"last pad byte wrong", trail([]byte{1, 2, 3, 5}, 4), DropMalformed, 0},
		{"pad length beyond the plaintext", trail(nil, 17), DropMalformed, 0},
		{"pad length 255 with 16 bytes", trail(nil, 255), DropMalformed, 0},
		{"pad length exactly all", append([]byte{1, 2, 3}, 3, 4), DropNone, 0},
		{"trailer only", []byte{0, 59}, DropNone, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sa := mustSA(t, testKey128, DefaultReplayWindow)
			seq := uint32(10 + i)
			pkt := rawPacket(t, testKey128, testSPI, seq, 0xfeedface00000000+uint64(i), tt.plain)
			got, nh, r := sa.Open(pkt)
			if r != tt.want {
				t.Fatalf("Open: %v, want %v", r, tt.want)
			}
			if r == DropNone && (len(got) != tt.n || nh != tt.plain[len(tt.plain)-1]) {
				t.Fatalf("payload %d bytes next %d", len(got), nh)
			}
			// Authentic but malformed still used the number: a copy is a replay.
			if h := sa.replay.Highest(); h != uint64(seq) {
				t.Errorf("window highest %d, want %d", h, seq)
			}
			if sa.Stats().Drops[tt.want.String()] != 1 && tt.want != DropNone {
				t.Errorf("drop not counted: %v", sa.Stats().Drops)
			}
		})
	}
}

func TestSealBufferBounds(t *testing.T) {
	sa := mustSA(t, testKey256, 0)
	const n = 13 // pad 1: needs off+n+1+2+16
	need := PrefixLen + n + 1 + TrailerLen + ICVLen
	bad := []struct {
		buf    []byte
		off, n int
	}{
		{make([]byte, need), PrefixLen - 1, n},
		{make([]byte, need-1), PrefixLen, n},
		{make([]byte, need), PrefixLen, -1},
		{make([]byte, need), PrefixLen, need},
		{make([]byte, need), need + 1, 0},
		{make([]byte, need), PrefixLen, int(^uint(0) >> 1)},
		{nil, 0, 0},
	}
	for _, b := range bad {
		if _, err := sa.Seal(b.buf, b.off, b.n, 47); !errors.Is(err, ErrBufferTooSmall) {
			t.Errorf("Seal(len %d, off %d, n %d): %v, want ErrBufferTooSmall", len(b.buf), b.off, b.n, err)
		}
	}
	if sa.SeqUsed() != 0 {
		t.Errorf("refused Seals used %d sequence numbers", sa.SeqUsed())
	}

	// Exactly enough room; nothing outside the packet may change, even
	// with spare capacity behind len(buf).
	backing := bytes.Repeat([]byte{0xEE}, 10+need+8)
	buf := backing[10 : 10+need]
	for i := range n {
		buf[PrefixLen+i] = byte(i)
	}
	pkt, err := sa.Seal(buf, PrefixLen, n, 47)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkt) != need || &pkt[0] != &buf[0] {
		t.Fatalf("packet %d bytes at the wrong place", len(pkt))
	}
	if !bytes.Equal(backing[:10], bytes.Repeat([]byte{0xEE}, 10)) || !bytes.Equal(backing[10+need:], bytes.Repeat([]byte{0xEE}, 8)) {
		t.Errorf("Seal wrote outside its packet: %x", backing)
	}
}

func TestSequenceExhausted(t *testing.T) {
	out, in := mustSA(t, testKey256, 0), mustSA(t, testKey256, DefaultReplayWindow)
	out.seq.Store(MaxSeq - 2)
	buf := make([]byte, 64)
	for _, want := range []uint32{MaxSeq - 1, MaxSeq} {
		pkt, err := out.Seal(buf, PrefixLen, 8, 47)
		if err != nil || Header(pkt).Seq() != want {
			t.Fatalf("Seal: %v, seq %d, want %d", err, Header(pkt).Seq(), want)
		}
		if _, _, r := in.Open(pkt); r != DropNone {
			t.Fatalf("Open seq %d: %v", want, r)
		}
	}
	for range 3 {
		if _, err := out.Seal(buf, PrefixLen, 8, 47); !errors.Is(err, ErrSequenceExhausted) {
			t.Fatalf("Seal after MaxSeq: %v", err)
		}
	}
	if st := out.Stats(); st.Sequence != MaxSeq || st.Remaining != 0 || out.SeqUsed() != MaxSeq {
		t.Errorf("stats after exhaustion: %+v", st)
	}
}

// TestSealConcurrent: goroutines sealing at once get distinct sequence
// numbers 1..N with no gaps, and every packet opens (run with -race).
func TestSealConcurrent(t *testing.T) {
	const G, per = 8, 500
	out, in := mustSA(t, testKey256, 0), mustSA(t, testKey256, G*per)
	pkts := make([][]byte, G*per)
	var wg sync.WaitGroup
	for g := range G {
		wg.Go(func() {
			for i := range per {
				buf := make([]byte, 100)
				pkt, err := out.Seal(buf, PrefixLen, 40, 47)
				if err != nil {
					t.Error(err)
					return
				}
				pkts[g*per+i] = pkt
			}
		})
	}
	wg.Wait()
	seen := make([]bool, G*per+1)
	for _, p := range pkts {
		s := Header(p).Seq()
		if s == 0 || int(s) > G*per || seen[s] {
			t.Fatalf("sequence number %d duplicated or out of range", s)
		}
		seen[s] = true
	}
	// Open concurrently too: each packet is accepted exactly once.
	var accepted sync.Map
	for g := range G {
		wg.Go(func() {
			for i := range per {
				p := pkts[(g*per+i*7)%len(pkts)] // interleave
				cp := bytes.Clone(p)
				if _, _, r := in.Open(cp); r == DropNone {
					if _, dup := accepted.LoadOrStore(Header(p).Seq(), true); dup {
						t.Errorf("seq %d accepted twice", Header(p).Seq())
					}
				}
			}
		})
	}
	wg.Wait()
	if st := in.Stats(); st.Packets != G*per {
		t.Errorf("opened %d of %d (drops %v)", st.Packets, G*per, st.Drops)
	}
}

func TestOpenWrongSPIAndKey(t *testing.T) {
	out := mustSA(t, testKey256, 0)
	buf := make([]byte, 64)
	pkt, _ := out.Seal(buf, PrefixLen, 8, 47)
	other, _ := NewSA(testSPI+1, testKey256, 64)
	if _, _, r := other.Open(bytes.Clone(pkt)); r != DropBadSPI {
		t.Errorf("other SPI: %v", r)
	}
	wrongKey := mustSA(t, testKey128, 64)
	if _, _, r := wrongKey.Open(bytes.Clone(pkt)); r != DropAuth {
		t.Errorf("wrong key: %v", r)
	}
	wrongSalt := bytes.Clone(testKey256)
	wrongSalt[35] ^= 1
	if _, _, r := mustSA(t, wrongSalt, 64).Open(bytes.Clone(pkt)); r != DropAuth {
		t.Errorf("wrong salt: %v", r)
	}
	if d := wrongKey.Stats().Drops; d["auth"] != 1 || d["replay"] != 0 || d["malformed"] != 0 {
		t.Errorf("drops %v", d)
	}
}

func TestNewSAErrors(t *testing.T) {
	for _, n := range []int{0, 4, 16, 19, 21, 24, 32, 35, 37, 40} {
		key := bytes.Repeat([]byte{0xAB}, n)
		_, err := NewSA(testSPI, key, 64)
		if err == nil {
			t.Errorf("%d-byte key accepted", n)
			continue
		}
		if n >= 2 && (strings.Contains(strings.ToLower(err.Error()), "abab") || strings.Contains(err.Error(), "\xab")) {
			t.Errorf("error leaks key bytes: %v", err)
		}
	}
	if _, err := NewSA(0, testKey256, 64); err == nil {
		t.Error("SPI 0 accepted")
	}
	for _, w := range []int{-1, MaxReplayWindow + 1} {
		if _, err := NewSA(testSPI, testKey256, w); err == nil {
			t.Errorf("window %d accepted", w)
		}
	}
	if sa := mustSA(t, testKey128, 0); sa.Transform() != "esp-aes-128-gcm-16" || sa.SPI() != testSPI {
		t.Errorf("transform %q spi %x", sa.Transform(), sa.SPI())
	}
	if sa := mustSA(t, testKey256, 0); sa.Transform() != "esp-aes-256-gcm-16" {
		t.Errorf("transform %q", sa.Transform())
	}
}

// TestKeyNotCopiedOrPrinted: NewSA keeps no reference to the caller's
// slice, and no fmt verb on an SA shows key or salt.
func TestKeyNotCopiedOrPrinted(t *testing.T) {
	keymat := []byte("0123456789abcdefghijklmnopqrstuvSALT")
	sa := mustSA(t, keymat, 64)
	out := mustSA(t, bytes.Clone(keymat), 0)
	clear(keymat) // the caller wipes its copy: the SA must still work
	buf := make([]byte, 64)
	pkt, _ := out.Seal(buf, PrefixLen, 8, 47)
	if _, _, r := sa.Open(pkt); r != DropNone {
		t.Fatalf("SA depends on the caller's key slice: %v", r)
	}
	secrets := []string{"0123456789", "SALT", hex.EncodeToString([]byte("SALT")), "53 41 4c 54", "83 65 76 84", "[83 65 76 84]"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		for _, v := range []any{sa, sa.crypt, []*SA{sa}, struct{ S *SA }{sa}, sa.Stats()} {
			s := fmt.Sprintf(verb, v)
			for _, secret := range secrets {
				if strings.Contains(s, secret) {
					t.Errorf("fmt %s of %T shows key material: %s", verb, v, s)
				}
			}
		}
	}
}

func TestSPIOf(t *testing.T) {
	if _, ok := SPIOf(make([]byte, HeaderLen-1)); ok {
		t.Error("7 bytes have an SPI")
	}
	if spi, ok := SPIOf([]byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1}); !ok || spi != 0xdeadbeef {
		t.Errorf("SPIOf = %x, %v", spi, ok)
	}
	if DropAuth.String() != "auth" || DropBadSPI.String() != "bad_spi" || DropReason(200).String() != "drop(200)" {
		t.Error("DropReason names")
	}
}

// TestNoAllocs: the hot path allocates nothing (AllocsPerRun averages, so
// a sync.Pool refill after a GC does not make this flaky).
func TestNoAllocs(t *testing.T) {
	out, in := mustSA(t, testKey256, 0), mustSA(t, testKey256, 0)
	buf := make([]byte, 1500)
	var db DB
	db.AddInbound(in)
	db.SetOutbound(out)
	if n := testing.AllocsPerRun(200, func() {
		pkt, err := db.Outbound().Seal(buf, PrefixLen, 1400, 47)
		if err != nil {
			t.Fatal(err)
		}
		spi, _ := SPIOf(pkt)
		if _, _, r := db.Lookup(spi).Open(pkt); r != DropNone {
			t.Fatal(r)
		}
		db.CountDrop(DropBadSPI)
	}); n != 0 {
		t.Errorf("%v allocations per Seal+Lookup+Open", n)
	}
}
