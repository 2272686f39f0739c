package ike

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"hash"
	"strconv"
)

// PRF is a pseudorandom function transform (RFC 7296 §3.3.2, RFC 4868).
type PRF uint16

const (
	PRFSHA1   = PRF(PRF_HMAC_SHA1)
	PRFSHA256 = PRF(PRF_HMAC_SHA2_256)
	PRFSHA384 = PRF(PRF_HMAC_SHA2_384)
	PRFSHA512 = PRF(PRF_HMAC_SHA2_512)
)

func (p PRF) String() string {
	switch p {
	case PRFSHA1:
		return "PRF_HMAC_SHA1"
	case PRFSHA256:
		return "PRF_HMAC_SHA2_256"
	case PRFSHA384:
		return "PRF_HMAC_SHA2_384"
	case PRFSHA512:
		return "PRF_HMAC_SHA2_512"
	}
	return "PRF(" + strconv.Itoa(int(p)) + ")"
}

func (p PRF) hash() func() hash.Hash {
	switch p {
	case PRFSHA1:
		return sha1.New
	case PRFSHA256:
		return sha256.New
	case PRFSHA384:
		return sha512.New384
	case PRFSHA512:
		return sha512.New
	}
	return nil
}

// Supported reports whether we implement p.
func (p PRF) Supported() bool { return p.hash() != nil }

// Size is the PRF's output length, which for HMAC is also the preferred key
// length of SK_d, SK_pi and SK_pr (§2.13, RFC 4868 §2.3).
func (p PRF) Size() int {
	switch p {
	case PRFSHA1:
		return 20
	case PRFSHA256:
		return 32
	case PRFSHA384:
		return 48
	case PRFSHA512:
		return 64
	}
	return 0
}

// Sum computes prf(key, data[0] | data[1] | ...).
func (p PRF) Sum(key []byte, data ...[]byte) []byte {
	h := p.hash()
	if h == nil {
		panic("ike: PRF " + p.String() + " used without a support check") // programming error
	}
	m := hmac.New(h, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// errPRFPlusTooLong: prf+ stops after 255 blocks (§2.13).
var errPRFPlusTooLong = errors.New("ike: prf+ asked for more than 255 blocks")

// Plus computes n bytes of prf+(key, seed) (§2.13):
//
//	T1 = prf(K, S | 0x01), Tn = prf(K, T(n-1) | S | n), prf+ = T1 | T2 | ...
func (p PRF) Plus(key, seed []byte, n int) (Secret, error) {
	if !p.Supported() {
		return nil, errors.New("ike: unsupported PRF " + p.String())
	}
	size := p.Size()
	if n < 0 || n > 255*size {
		return nil, errPRFPlusTooLong
	}
	out := make(Secret, 0, n+size)
	m := hmac.New(p.hash(), key)
	var t []byte
	for i := byte(1); len(out) < n; i++ {
		m.Reset()
		m.Write(t)
		m.Write(seed)
		m.Write([]byte{i})
		t = m.Sum(t[:0])
		out = append(out, t...)
	}
	return out[:n], nil
}
