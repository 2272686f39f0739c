package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"strconv"
	"testing"
)

var benchSizes = []int{64, 1400}

// benchTransforms: every transform, and ESN for an AEAD and a CBC one.
var benchTransforms = []string{
	"aes128gcm16", "aes192gcm16", "aes256gcm16", "chacha20poly1305",
	"aes128-sha1", "aes256-sha256", "aes256-sha384", "aes256-sha512",
	"aes256gcm16-esn", "aes256-sha256-esn",
}

// BenchmarkSeal: one packet of 64 or 1400 bytes per operation, for each
// transform (sub-benchmark transform/size).
func BenchmarkSeal(b *testing.B) {
	for _, name := range benchTransforms {
		tr := mustTransform(b, name)
		for _, n := range benchSizes {
			b.Run(name+"/"+strconv.Itoa(n), func(b *testing.B) {
				sa := mustTSA(b, tr, testKeymat(tr, 1), 0)
				buf := make([]byte, MaxPrefixLen+n+MaxSuffixLen)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					if sa.seq.Load() >= MaxSeq-1 {
						sa.seq.Store(0)
					}
					if _, err := sa.Seal(buf, MaxPrefixLen, n, NextHeaderGRE); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSealParallel: every core sealing on one SA (the shared
// sequence counter and the nonce pool under contention).
func BenchmarkSealParallel(b *testing.B) {
	const n = 1400
	sa := mustSA(b, testKey256, 0)
	b.SetBytes(n)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, PrefixLen+n+MaxSuffixLen)
		for pb.Next() {
			if _, err := sa.Seal(buf, PrefixLen, n, NextHeaderGRE); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOpen opens distinct packets in sequence, for each transform.
// Open decrypts in place, so each iteration first copies a sealed packet
// into the work buffer: the numbers include that memmove
// (BenchmarkOpenCopyOnly measures it alone).
func BenchmarkOpen(b *testing.B) {
	for _, name := range benchTransforms {
		tr := mustTransform(b, name)
		for _, n := range benchSizes {
			b.Run(name+"/"+strconv.Itoa(n), func(b *testing.B) {
				keymat := testKeymat(tr, 1)
				out, in := mustTSA(b, tr, keymat, 0), mustTSA(b, tr, keymat, DefaultReplayWindow)
				pkts := sealedBatch(b, out, n)
				work := make([]byte, len(pkts[0]))
				b.SetBytes(int64(n))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if i == len(pkts) {
						i = 0
						in.replay.Reset() // the batch's numbers come round again
					}
					copy(work, pkts[i])
					if _, _, r := in.Open(work); r != DropNone {
						b.Fatal(r)
					}
					i++
				}
			})
		}
	}
}

func BenchmarkOpenCopyOnly(b *testing.B) {
	pkts := sealedBatch(b, mustSA(b, testKey256, 0), 1400)
	work := make([]byte, len(pkts[0]))
	b.SetBytes(1400)
	i := 0
	for b.Loop() {
		copy(work, pkts[i%len(pkts)])
		i++
	}
}

// BenchmarkOpenReplay is the cheap reject: a replayed packet never reaches
// the cipher.
func BenchmarkOpenReplay(b *testing.B) {
	out, in := mustSA(b, testKey256, 0), mustSA(b, testKey256, DefaultReplayWindow)
	pkt := sealedBatch(b, out, 1400)[0]
	if _, _, r := in.Open(append([]byte(nil), pkt...)); r != DropNone {
		b.Fatal(r)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, r := in.Open(pkt); r != DropReplay {
			b.Fatal(r)
		}
	}
}

func sealedBatch(b *testing.B, sa *SA, n int) [][]byte {
	pkts := make([][]byte, 256)
	for i := range pkts {
		buf := make([]byte, MaxPrefixLen+n+MaxSuffixLen)
		p, err := sa.Seal(buf, MaxPrefixLen, n, NextHeaderGRE)
		if err != nil {
			b.Fatal(err)
		}
		pkts[i] = p
	}
	return pkts
}

// BenchmarkAESGCMBaseline is the bare cipher on the same buffer Seal and
// Open use, so their overhead can be quoted as a ratio.
func BenchmarkAESGCMBaseline(b *testing.B) {
	const n = 1400
	block, _ := aes.NewCipher(testKey256[:32])
	aead, _ := cipher.NewGCM(block)
	buf := make([]byte, PrefixLen+n+MaxSuffixLen)
	nonce := make([]byte, 12)
	b.Run("seal-1400", func(b *testing.B) {
		b.SetBytes(n)
		b.ReportAllocs()
		for b.Loop() {
			aead.Seal(buf[PrefixLen:PrefixLen], nonce, buf[PrefixLen:PrefixLen+n], buf[:HeaderLen])
		}
	})
	b.Run("open-1400", func(b *testing.B) {
		sealed := aead.Seal(nil, nonce, buf[PrefixLen:PrefixLen+n], buf[:HeaderLen])
		work := make([]byte, len(sealed))
		b.SetBytes(n)
		b.ReportAllocs()
		for b.Loop() {
			copy(work, sealed)
			if _, err := aead.Open(work[:0], nonce, work, buf[:HeaderLen]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReplay is Check+Update as Open does them, on a mostly in-order
// stream with some reordering and a few replays.
func BenchmarkReplay(b *testing.B) {
	w, _ := NewWindow(DefaultReplayWindow)
	seqs := make([]uint64, 4096)
	for i := range seqs {
		seqs[i] = uint64(i + 1)
		if i%16 == 5 { // swap neighbours: reordering
			seqs[i], seqs[i-1] = seqs[i-1], seqs[i]
		}
		if i%100 == 99 { // a replay
			seqs[i] = seqs[i-50]
		}
	}
	b.ReportAllocs()
	var base uint64
	i := 0
	for b.Loop() {
		if i == len(seqs) {
			i = 0
			base += uint64(len(seqs))
		}
		s := base + seqs[i]
		if w.Check(s) {
			w.Update(s)
		}
		i++
	}
}

// BenchmarkCBCHMACBaseline is AES-256-CBC encryption plus HMAC-SHA-256 of
// the same 1400-byte packet with the bare primitives (no IV generation,
// no pooling): what Seal of aes256-sha256 cannot go below.
func BenchmarkCBCHMACBaseline(b *testing.B) {
	const n = 1408 // 1400 + trailer, padded to the block
	block, _ := aes.NewCipher(make([]byte, 32))
	enc := cipher.NewCBCEncrypter(block, make([]byte, 16))
	mac := hmac.New(sha256.New, make([]byte, 32))
	buf := make([]byte, MaxPrefixLen+n+32)
	sum := make([]byte, 0, 32)
	b.SetBytes(1400)
	b.ReportAllocs()
	for b.Loop() {
		enc.CryptBlocks(buf[MaxPrefixLen:MaxPrefixLen+n], buf[MaxPrefixLen:MaxPrefixLen+n])
		mac.Reset()
		mac.Write(buf[:MaxPrefixLen+n])
		sum = mac.Sum(sum[:0])
	}
}
