package ikev1

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"hash"

	"github.com/gresec/gresec/ike"
)

// blockSize is AES's: the only phase 1 cipher we offer is AES-CBC.
const blockSize = aes.BlockSize

// newHash is the plain hash behind a PRF, used for IVs (RFC 2409
// Appendix B), where the RFC hashes instead of keying.
func newHash(p ike.PRF) func() hash.Hash {
	switch p {
	case ike.PRFSHA1:
		return sha1.New
	case ike.PRFSHA256:
		return sha256.New
	case ike.PRFSHA384:
		return sha512.New384
	case ike.PRFSHA512:
		return sha512.New
	}
	return nil
}

// SKEYIDPSK is SKEYID for pre-shared keys (RFC 2409 §5):
// prf(pre-shared-key, Ni_b | Nr_b).
func SKEYIDPSK(prf ike.PRF, psk ike.Secret, ni, nr []byte) ike.Secret {
	return ike.Secret(prf.Sum(psk, ni, nr))
}

// Phase1Keys are the keys of an ISAKMP SA (RFC 2409 §5).
type Phase1Keys struct {
	SKEYID, D, A, E ike.Secret
	// Enc is the AES key Ka taken from SKEYID_e (Appendix B).
	Enc ike.Secret
}

// Wipe clears every key.
func (k *Phase1Keys) Wipe() {
	for _, s := range []ike.Secret{k.SKEYID, k.D, k.A, k.E, k.Enc} {
		s.Wipe()
	}
}

// DerivePhase1 computes, from SKEYID and g^xy:
//
//	SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
//	SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
//	SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
//
// and the cipher key of keyLen bytes from SKEYID_e, expanded by
// Appendix B's K1 = prf(SKEYID_e, 0), Kn = prf(SKEYID_e, Kn-1) when
// SKEYID_e is too short.
func DerivePhase1(prf ike.PRF, skeyid, gxy ike.Secret, ci, cr uint64, keyLen int) Phase1Keys {
	cky := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, ci), cr)
	k := Phase1Keys{SKEYID: skeyid}
	k.D = prf.Sum(skeyid, gxy, cky, []byte{0})
	k.A = prf.Sum(skeyid, k.D, gxy, cky, []byte{1})
	k.E = prf.Sum(skeyid, k.A, gxy, cky, []byte{2})
	if len(k.E) >= keyLen {
		k.Enc = append(ike.Secret{}, k.E[:keyLen]...)
		return k
	}
	var ka []byte
	block := []byte{0}
	for len(ka) < keyLen {
		block = prf.Sum(k.E, block)
		ka = append(ka, block...)
	}
	k.Enc = ike.Secret(ka[:keyLen])
	return k
}

// Phase1IV is the first IV of Main Mode: hash(g^xi | g^xr) cut to the
// block size (Appendix B).
func Phase1IV(prf ike.PRF, gxi, gxr []byte) []byte {
	h := newHash(prf)()
	h.Write(gxi)
	h.Write(gxr)
	return h.Sum(nil)[:blockSize]
}

// Phase2IV is the first IV of a Quick Mode or informational exchange:
// hash(last phase 1 CBC block | M-ID).
func Phase2IV(prf ike.PRF, lastBlock []byte, msgID uint32) []byte {
	h := newHash(prf)()
	h.Write(lastBlock)
	h.Write(binary.BigEndian.AppendUint32(nil, msgID))
	return h.Sum(nil)[:blockSize]
}

// Encrypt pads plain with zeros to the block size and encrypts it in CBC
// mode; it returns the ciphertext and the next IV (its last block).
func Encrypt(key, iv, plain []byte) (ct, next []byte, err error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil, err
	}
	n := (len(plain) + blockSize - 1) / blockSize * blockSize
	if n == 0 {
		n = blockSize
	}
	ct = make([]byte, n)
	copy(ct, plain)
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, ct)
	return ct, clone(ct[n-blockSize:]), nil
}

var errCiphertext = errors.New("ikev1: encrypted body is not a whole number of blocks")

// Decrypt reverses Encrypt; the padding stays (the payload chain ends
// before it). It returns the next IV, the ciphertext's last block.
func Decrypt(key, iv, ct []byte) (plain, next []byte, err error) {
	if len(ct) == 0 || len(ct)%blockSize != 0 {
		return nil, nil, errCiphertext
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil, err
	}
	plain = make([]byte, len(ct))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(plain, ct)
	return plain, clone(ct[len(ct)-blockSize:]), nil
}

// QuickKeymat derives n bytes of KEYMAT for the SA of one direction
// (RFC 2409 §5.5):
//
//	KEYMAT = K1 | K2 | ...,  K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)
//	                         Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b)
//
// spi is the SA's own SPI, the one its receiver chose; gxy is nil
// without PFS.
func QuickKeymat(prf ike.PRF, skeyidD, gxy ike.Secret, protocol uint8, spi uint32, ni, nr []byte, n int) ike.Secret {
	seed := make([]byte, 0, len(gxy)+5+len(ni)+len(nr))
	seed = append(seed, gxy...)
	seed = append(seed, protocol)
	seed = binary.BigEndian.AppendUint32(seed, spi)
	seed = append(append(seed, ni...), nr...)
	var out, k []byte
	for len(out) < n {
		k = prf.Sum(skeyidD, k, seed)
		out = append(out, k...)
	}
	clear(seed)
	return ike.Secret(out[:n])
}

// HashI and HashR authenticate Main Mode (RFC 2409 §5):
//
//	HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)
//	HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)
//
// saiB is the body of the initiator's SA payload, idB the body of the
// sender's ID payload.
func HashI(prf ike.PRF, skeyid ike.Secret, gxi, gxr []byte, ci, cr uint64, saiB, idB []byte) []byte {
	return prf.Sum(skeyid, gxi, gxr, be64(ci), be64(cr), saiB, idB)
}

// HashR is HASH_R; see HashI.
func HashR(prf ike.PRF, skeyid ike.Secret, gxi, gxr []byte, ci, cr uint64, saiB, idB []byte) []byte {
	return prf.Sum(skeyid, gxr, gxi, be64(cr), be64(ci), saiB, idB)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
