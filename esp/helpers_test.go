package esp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"hash"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// testTransforms is every cipher/integrity pair, every AES key size, and
// ESN for each kind of transform.
var testTransforms = []string{
	"aes128gcm16", "aes192gcm16", "aes256gcm16", "chacha20poly1305",
	"aes128-sha1", "aes192-sha256", "aes256-sha256", "aes256-sha384", "aes256-sha512",
	"aes256gcm16-esn", "chacha20poly1305-esn", "aes128-sha1-esn", "aes256-sha512-esn",
}

func mustTransform(t testing.TB, s string) Transform {
	t.Helper()
	tr, err := ParseTransform(s)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// testKeymat is deterministic key material of the right length for tr.
func testKeymat(tr Transform, seed byte) []byte {
	k := make([]byte, tr.KeymatLen())
	for i := range k {
		k[i] = seed + byte(i*7)
	}
	return k
}

func mustTSA(t testing.TB, tr Transform, keymat []byte, window int) *SA {
	t.Helper()
	sa, err := tr.NewSA(testSPI, keymat, window)
	if err != nil {
		t.Fatal(err)
	}
	return sa
}

// rawSeal builds an ESP packet around an arbitrary plaintext (trailer
// included; whole blocks for AES-CBC) with the primitives directly, not
// through SA: the independent construction the tests compare SA with, and
// the way to make authentic packets with padding or IVs Seal never writes.
func rawSeal(t testing.TB, tr Transform, keymat []byte, spi uint32, seq uint64, iv, plain []byte) []byte {
	t.Helper()
	if len(iv) != tr.IVLen() {
		t.Fatalf("IV of %d bytes for %s", len(iv), tr)
	}
	pkt := binary.BigEndian.AppendUint32(nil, spi)
	pkt = binary.BigEndian.AppendUint32(pkt, uint32(seq))
	pkt = append(pkt, iv...)
	enc, integ := keymat[:tr.EncKeyLen()], keymat[tr.EncKeyLen():]
	if tr.AEAD() {
		key, salt := enc[:len(enc)-4], enc[len(enc)-4:]
		var aead cipher.AEAD
		var err error
		if tr.Cipher == CipherChaCha20Poly1305 {
			aead, err = chacha20poly1305.New(key)
		} else {
			var block cipher.Block
			block, err = aes.NewCipher(key)
			if err == nil {
				aead, err = cipher.NewGCM(block)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		aad := pkt[:8]
		if tr.ESN {
			aad = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(bytes.Clone(pkt[:4]), uint32(seq>>32)), uint32(seq))
		}
		return aead.Seal(pkt, append(bytes.Clone(salt), iv...), plain, aad)
	}
	block, err := aes.NewCipher(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain)%16 != 0 {
		t.Fatalf("CBC plaintext of %d bytes", len(plain))
	}
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, plain)
	pkt = append(pkt, ct...)
	mac := hmac.New(testHash(tr), integ)
	mac.Write(pkt)
	if tr.ESN {
		mac.Write(binary.BigEndian.AppendUint32(nil, uint32(seq>>32)))
	}
	return append(pkt, mac.Sum(nil)[:tr.ICVLen()]...)
}

// rawOpen is rawSeal's inverse: it checks the ICV and returns the
// plaintext (trailer included), or nil.
func rawOpen(t testing.TB, tr Transform, keymat []byte, seq uint64, pkt []byte) []byte {
	t.Helper()
	ivEnd := HeaderLen + tr.IVLen()
	iv := pkt[HeaderLen:ivEnd]
	enc, integ := keymat[:tr.EncKeyLen()], keymat[tr.EncKeyLen():]
	if tr.AEAD() {
		key, salt := enc[:len(enc)-4], enc[len(enc)-4:]
		var aead cipher.AEAD
		if tr.Cipher == CipherChaCha20Poly1305 {
			aead, _ = chacha20poly1305.New(key)
		} else {
			block, _ := aes.NewCipher(key)
			aead, _ = cipher.NewGCM(block)
		}
		aad := pkt[:8]
		if tr.ESN {
			aad = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(bytes.Clone(pkt[:4]), uint32(seq>>32)), uint32(seq))
		}
		plain, err := aead.Open(nil, append(bytes.Clone(salt), iv...), pkt[ivEnd:], aad)
		if err != nil {
			return nil
		}
		return plain
	}
	end := len(pkt) - tr.ICVLen()
	mac := hmac.New(testHash(tr), integ)
	mac.Write(pkt[:end])
	if tr.ESN {
		mac.Write(binary.BigEndian.AppendUint32(nil, uint32(seq>>32)))
	}
	if !hmac.Equal(mac.Sum(nil)[:tr.ICVLen()], pkt[end:]) {
		return nil
	}
	block, _ := aes.NewCipher(enc)
	plain := make([]byte, end-ivEnd)
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, pkt[ivEnd:end])
	return plain
}

func testHash(tr Transform) func() hash.Hash {
	switch tr.Integ {
	case IntegHMACSHA1_96:
		return sha1.New
	case IntegHMACSHA256_128:
		return sha256.New
	case IntegHMACSHA384_192:
		return sha512.New384
	}
	return sha512.New
}

// trailer is payload || 1, 2, .., pad || pad || nh.
func trailer(payload []byte, pad int, nh byte) []byte {
	p := bytes.Clone(payload)
	for i := range pad {
		p = append(p, byte(i+1))
	}
	return append(p, byte(pad), nh)
}
