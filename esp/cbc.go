package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
)

// cbcCrypter is AES-CBC (RFC 3602) with a truncated HMAC (RFC 2404,
// RFC 4868), encrypt-then-MAC: the ICV covers SPI || seq || IV ||
// ciphertext, followed under ESN by the high 32 bits of the sequence
// number, which are never sent (RFC 4303 §3.3.2.1, §2.2.1). Open verifies
// the ICV, in constant time, before it decrypts anything.
//
// The IV must be unpredictable (RFC 3602 §2.4, a chosen-plaintext attack on
// predictable CBC IVs). It is the sequence number encrypted under a second
// AES key drawn from crypto/rand when the SA is made and never used for
// anything else: unique because the sequence number is, unpredictable
// without that key, and one block operation per packet.
type cbcCrypter struct {
	block  cipher.Block // the SA's AES key
	ivGen  cipher.Block // the IV key
	icvLen int
	esn    bool
	// work holds per-call state (the CBC modes carry an IV, a hash
	// carries its running state): one per concurrent Seal or Open.
	work sync.Pool
}

// cbcWork is one caller's CBC modes, HMAC and sum buffer.
type cbcWork struct {
	enc, dec cipher.BlockMode
	encIV    ivSetter
	decIV    ivSetter
	mac      hash.Hash
	sum      [64]byte
	seqHi    [4]byte
}

// ivSetter is implemented by crypto/cipher's CBC modes: it re-arms a mode
// with a new IV, so one mode serves many packets without allocating.
type ivSetter interface{ SetIV([]byte) }

// Format redacts under every verb (the pool's constructor holds the HMAC
// key).
func (c *cbcCrypter) Format(f fmt.State, verb rune) { io.WriteString(f, "[redacted]") }

func newCBCCrypter(t Transform, keymat []byte) (*cbcCrypter, error) {
	encKey := keymat[:t.EncKeyLen()]
	integKey := append([]byte(nil), keymat[t.EncKeyLen():t.KeymatLen()]...)
	var newHash func() hash.Hash
	switch t.Integ {
	case IntegHMACSHA1_96:
		newHash = sha1.New
	case IntegHMACSHA256_128:
		newHash = sha256.New
	case IntegHMACSHA384_192:
		newHash = sha512.New384
	case IntegHMACSHA512_256:
		newHash = sha512.New
	default:
		return nil, errors.New("esp: AES-CBC needs an HMAC integrity algorithm")
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, errors.New("esp: AES key rejected") // never echo the key
	}
	var ivKey [16]byte
	if _, err := rand.Read(ivKey[:]); err != nil {
		return nil, fmt.Errorf("esp: IV key: %w", err)
	}
	ivGen, err := aes.NewCipher(ivKey[:])
	clear(ivKey[:])
	if err != nil {
		return nil, errors.New("esp: AES IV key rejected")
	}
	c := &cbcCrypter{block: block, ivGen: ivGen, icvLen: t.ICVLen(), esn: t.ESN}
	var zeroIV [aesBlockLen]byte
	c.work.New = func() any {
		w := &cbcWork{
			enc: cipher.NewCBCEncrypter(block, zeroIV[:]),
			dec: cipher.NewCBCDecrypter(block, zeroIV[:]),
			mac: hmac.New(newHash, integKey),
		}
		w.encIV, _ = w.enc.(ivSetter)
		w.decIV, _ = w.dec.(ivSetter)
		return w
	}
	// crypto/cipher's CBC modes have SetIV; fail here, not per packet, if
	// a Go release ever drops it.
	w := c.work.Get().(*cbcWork)
	if w.encIV == nil || w.decIV == nil {
		return nil, errors.New("esp: crypto/cipher's CBC modes cannot be re-armed with a new IV")
	}
	c.work.Put(w)
	return c, nil
}

func (c *cbcCrypter) writeIV(iv []byte, seq uint64) {
	binary.BigEndian.PutUint64(iv, seq)
	clear(iv[8:aesBlockLen])
	c.ivGen.Encrypt(iv, iv)
}

// icv computes the ICV of pkt[:end] into w.sum and returns it.
func (c *cbcCrypter) icv(w *cbcWork, pkt []byte, seqHi uint32) []byte {
	w.mac.Reset()
	w.mac.Write(pkt)
	if c.esn {
		binary.BigEndian.PutUint32(w.seqHi[:], seqHi)
		w.mac.Write(w.seqHi[:])
	}
	return w.mac.Sum(w.sum[:0])[:c.icvLen]
}

func (c *cbcCrypter) seal(pkt []byte, n int, seqHi uint32) {
	const prefix = HeaderLen + cbcIVLen
	w := c.work.Get().(*cbcWork)
	ct := pkt[prefix : prefix+n]
	w.encIV.SetIV(pkt[HeaderLen:prefix])
	w.enc.CryptBlocks(ct, ct)
	copy(pkt[prefix+n:], c.icv(w, pkt[:prefix+n], seqHi))
	c.work.Put(w)
}

func (c *cbcCrypter) open(pkt []byte, seqHi uint32) ([]byte, bool) {
	const prefix = HeaderLen + cbcIVLen
	end := len(pkt) - c.icvLen
	w := c.work.Get().(*cbcWork)
	ok := hmac.Equal(c.icv(w, pkt[:end], seqHi), pkt[end:])
	if ok {
		ct := pkt[prefix:end]
		w.decIV.SetIV(pkt[HeaderLen:prefix])
		w.dec.CryptBlocks(ct, ct)
	}
	c.work.Put(w)
	return pkt[prefix:end], ok
}
