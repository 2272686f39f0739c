package ike

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
)

// DHGroup is a Diffie-Hellman group transform ID (IANA "Transform Type 4").
type DHGroup uint16

const (
	DHNone       DHGroup = 0
	MODP2048     DHGroup = 14 // RFC 3526
	ECP256       DHGroup = 19 // RFC 5903
	ECP384       DHGroup = 20
	ECP521       DHGroup = 21
	Curve25519   DHGroup = 31 // RFC 8031
	maxGenerates         = 64
)

func (g DHGroup) String() string {
	switch g {
	case DHNone:
		return "NONE"
	case MODP2048:
		return "MODP_2048"
	case ECP256:
		return "ECP_256"
	case ECP384:
		return "ECP_384"
	case ECP521:
		return "ECP_521"
	case Curve25519:
		return "CURVE_25519"
	}
	return "DH(" + strconv.Itoa(int(g)) + ")"
}

func (g DHGroup) curve() ecdh.Curve {
	switch g {
	case ECP256:
		return ecdh.P256()
	case ECP384:
		return ecdh.P384()
	case ECP521:
		return ecdh.P521()
	case Curve25519:
		return ecdh.X25519()
	}
	return nil
}

// Supported reports whether we implement g.
func (g DHGroup) Supported() bool { return g == MODP2048 || g.curve() != nil }

// PublicLen is the fixed length of the KE data for g: x || y for the ECP
// groups (RFC 5903 §7, no 0x04 prefix), the u coordinate for Curve25519,
// and the modulus length for MODP.
func (g DHGroup) PublicLen() int {
	switch g {
	case MODP2048:
		return 256
	case ECP256:
		return 64
	case ECP384:
		return 96
	case ECP521:
		return 132
	case Curve25519:
		return 32
	}
	return 0
}

// DHKey is one side's ephemeral Diffie-Hellman key.
type DHKey struct {
	group DHGroup
	ec    *ecdh.PrivateKey
	x     *big.Int // MODP exponent
	pub   []byte
}

// Format keeps the private key out of logs.
func (k *DHKey) Format(f fmt.State, verb rune) {
	io.WriteString(f, "DHKey("+k.group.String()+")"+redacted)
}

// Group is the key's group.
func (k *DHKey) Group() DHGroup { return k.group }

// Public is the KE payload data, fixed length PublicLen.
func (k *DHKey) Public() []byte { return k.pub }

// GenerateDH makes an ephemeral key for g from r (crypto/rand.Reader when
// nil). The key is derived from bytes read from r, not by crypto/ecdh's own
// generator, which ignores its reader since Go 1.26: tests need determinism.
func GenerateDH(g DHGroup, r io.Reader) (*DHKey, error) {
	if r == nil {
		r = rand.Reader
	}
	k := &DHKey{group: g}
	switch g {
	case MODP2048:
		// A 384-bit exponent: twice the ~112-bit strength of the group with
		// a wide margin, and far cheaper than a full-size one.
		buf := make([]byte, 48)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		k.x = new(big.Int).SetBytes(buf)
		k.x.SetBit(k.x, 383, 1)
		y := new(big.Int).Exp(big.NewInt(2), k.x, modp2048P)
		k.pub = y.FillBytes(make([]byte, 256))
		return k, nil
	}
	c := g.curve()
	if c == nil {
		return nil, fmt.Errorf("ike: unsupported DH group %v", g)
	}
	n := map[DHGroup]int{ECP256: 32, ECP384: 48, ECP521: 66, Curve25519: 32}[g]
	buf := make([]byte, n)
	for range maxGenerates {
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if g == ECP521 {
			buf[0] &= 1 // the order is just over 2^520
		}
		// NIST scalars outside [1, n-1] are refused: draw again.
		priv, err := c.NewPrivateKey(buf)
		if err != nil {
			continue
		}
		k.ec = priv
		pub := priv.PublicKey().Bytes()
		if g != Curve25519 {
			pub = pub[1:] // drop the uncompressed-point 0x04
		}
		k.pub = pub
		clear(buf)
		return k, nil
	}
	return nil, errors.New("ike: could not draw a DH private key")
}

// ErrBadPublic: the peer's KE data is the wrong length or not a valid group
// element. RFC 5903 / RFC 6989 checks are done here.
var ErrBadPublic = errors.New("ike: invalid Diffie-Hellman public value")

// Shared computes g^ir from the peer's KE data: the x coordinate for ECP
// (RFC 5903 §7), the X25519 output, or the MODP value left-padded to the
// modulus length. All are fixed length.
func (k *DHKey) Shared(peer []byte) (Secret, error) {
	if len(peer) != k.group.PublicLen() {
		return nil, ErrBadPublic
	}
	if k.group == MODP2048 {
		y := new(big.Int).SetBytes(peer)
		// RFC 6989 §2.1: 1 < y < p-1.
		if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(modp2048Pm1) >= 0 {
			return nil, ErrBadPublic
		}
		z := new(big.Int).Exp(y, k.x, modp2048P)
		return Secret(z.FillBytes(make([]byte, 256))), nil
	}
	pb := peer
	if k.group != Curve25519 {
		pb = append([]byte{4}, peer...)
	}
	pub, err := k.ec.Curve().NewPublicKey(pb) // checks the point is on the curve
	if err != nil {
		return nil, ErrBadPublic
	}
	z, err := k.ec.ECDH(pub) // X25519: refuses the all-zero output of low-order points
	if err != nil {
		return nil, ErrBadPublic
	}
	return Secret(z), nil
}

var (
	modp2048P, _ = new(big.Int).SetString(
		"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1"+
			"29024E088A67CC74020BBEA63B139B22514A08798E3404DD"+
			"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245"+
			"E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"+
			"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D"+
			"C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"+
			"83655D23DCA3AD961C62F356208552BB9ED529077096966D"+
			"670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"+
			"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9"+
			"DE2BCBF6955817183995497CEA956AE515D2261898FA0510"+
			"15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)
	modp2048Pm1 = new(big.Int).Sub(modp2048P, big.NewInt(1))
)

// ValidatePublic checks the peer's KE data for g without any secret work:
// its length, and that it is a group element (RFC 6989: 1 < y < p-1 for
// MODP, a point on the curve for ECP). X25519 accepts any 32 bytes; its
// low-order points are refused when the shared secret comes out zero.
func ValidatePublic(g DHGroup, peer []byte) error {
	if len(peer) != g.PublicLen() {
		return ErrBadPublic
	}
	switch g {
	case MODP2048:
		y := new(big.Int).SetBytes(peer)
		if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(modp2048Pm1) >= 0 {
			return ErrBadPublic
		}
		return nil
	case Curve25519:
		return nil
	}
	c := g.curve()
	if c == nil {
		return ErrBadPublic
	}
	if _, err := c.NewPublicKey(append([]byte{4}, peer...)); err != nil {
		return ErrBadPublic
	}
	return nil
}
