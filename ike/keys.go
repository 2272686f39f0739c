package ike

import (
	"encoding/binary"
	"errors"
)

// IKEKeys are the keys of one IKE SA (RFC 7296 §2.14). With an AEAD
// cipher there are no integrity keys, and SK_ei/SK_er are key || salt.
//
// The same type serves two uses: DeriveIKEKeys fills the seven SK_* keys;
// Engine.ExportKeys (for Wireshark's ikev2_decryption_table) fills the
// SPIs, the algorithm names and only the four keys that decryption needs,
// leaving SK_d, SK_pi and SK_pr empty.
type IKEKeys struct {
	SPIi, SPIr uint64
	Encr       string // e.g. "aes256gcm16"
	Integ      string // "" for AEAD

	SKd, SKai, SKar, SKei, SKer, SKpi, SKpr Secret
}

// ExportedKeys is a copy of every live IKE SA's and CHILD_SA's keys.
type ExportedKeys struct {
	IKE      []IKEKeys
	Children []ChildKeys
}

// Wipe clears every key of the export.
func (x *ExportedKeys) Wipe() {
	for i := range x.IKE {
		x.IKE[i].Wipe()
	}
	for _, c := range x.Children {
		c.KeyIn.Wipe()
		c.KeyOut.Wipe()
	}
}

// Wipe clears every key.
func (k *IKEKeys) Wipe() {
	for _, s := range []Secret{k.SKd, k.SKai, k.SKar, k.SKei, k.SKer, k.SKpi, k.SKpr} {
		s.Wipe()
	}
}

// SKEYSEED computes prf(Ni | Nr, g^ir) for a new IKE SA (§2.14).
func SKEYSEED(prf PRF, ni, nr []byte, shared Secret) (Secret, error) {
	if !prf.Supported() {
		return nil, errors.New("ike: unsupported PRF " + prf.String())
	}
	key := make([]byte, 0, len(ni)+len(nr))
	key = append(append(key, ni...), nr...)
	return Secret(prf.Sum(key, shared)), nil
}

// RekeySKEYSEED computes prf(SK_d (old), g^ir (new) | Ni | Nr) for an IKE
// SA that replaces one whose SK_d is oldSKd (§2.18). prf is the new SA's
// PRF; Ni and Nr are the nonces of the CREATE_CHILD_SA exchange.
func RekeySKEYSEED(prf PRF, oldSKd, shared Secret, ni, nr []byte) (Secret, error) {
	if !prf.Supported() {
		return nil, errors.New("ike: unsupported PRF " + prf.String())
	}
	return Secret(prf.Sum(oldSKd, shared, ni, nr)), nil
}

// DeriveIKEKeys expands SKEYSEED into the seven SK_* keys (§2.14):
//
//	{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
//
// encLen is the length of SK_e including the AEAD salt; integLen is 0 for
// AEAD ciphers. SK_d, SK_pi and SK_pr are as long as the PRF output.
func DeriveIKEKeys(prf PRF, skeyseed Secret, encLen, integLen int, ni, nr []byte, spii, spir uint64) (IKEKeys, error) {
	seed := make([]byte, 0, len(ni)+len(nr)+16)
	seed = append(append(seed, ni...), nr...)
	seed = binary.BigEndian.AppendUint64(seed, spii)
	seed = binary.BigEndian.AppendUint64(seed, spir)
	ps := prf.Size()
	km, err := prf.Plus(skeyseed, seed, 3*ps+2*integLen+2*encLen)
	if err != nil {
		return IKEKeys{}, err
	}
	var k IKEKeys
	take := func(n int) Secret {
		s := km[:n:n]
		km = km[n:]
		return s
	}
	k.SKd = take(ps)
	k.SKai = take(integLen)
	k.SKar = take(integLen)
	k.SKei = take(encLen)
	k.SKer = take(encLen)
	k.SKpi = take(ps)
	k.SKpr = take(ps)
	return k, nil
}

// ChildKeymat derives a CHILD_SA's keys (§2.17):
//
//	KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr)
//
// taking the initiator-to-responder key first, then the other direction,
// each keyLen bytes (key || salt for AES-GCM: 36 for AES-256). shared is
// nil without PFS. Ni and Nr are the nonces of the exchange creating the
// child (IKE_SA_INIT's for the first one).
func ChildKeymat(prf PRF, skd, shared Secret, ni, nr []byte, keyLen int) (i2r, r2i Secret, err error) {
	seed := make([]byte, 0, len(shared)+len(ni)+len(nr))
	seed = append(append(append(seed, shared...), ni...), nr...)
	km, err := prf.Plus(skd, seed, 2*keyLen)
	if err != nil {
		return nil, nil, err
	}
	return km[:keyLen:keyLen], km[keyLen:], nil
}

// keyPad is the constant of §2.15 for shared-key authentication.
var keyPad = []byte("Key Pad for IKEv2")

// PSKAuth computes the AUTH data for PSK authentication (§2.15):
//
//	AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
//	SignedOctets = RealMessage | Nonce | prf(SK_p, IDType | RESERVED | IDData)
//
// For the initiator: its IKE_SA_INIT request, Nr, SK_pi and IDi; for the
// responder: its IKE_SA_INIT response, Ni, SK_pr and IDr.
func PSKAuth(prf PRF, psk Secret, realMessage, nonce []byte, skp Secret, id ID) []byte {
	macedID := prf.Sum(skp, id.appendBody(nil))
	return prf.Sum(prf.Sum(psk, keyPad), realMessage, nonce, macedID)
}
