package ike

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
)

// DHGroup is a Diffie-Hellman group transform ID (IANA "Transform Type 4").
type DHGroup uint16

const (
	DHNone       DHGroup = 0
	MODP2048     DHGroup = 14 // RFC 3526
	MODP3072     DHGroup = 15
	MODP4096     DHGroup = 16
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
	case MODP3072:
		return "MODP_3072"
	case MODP4096:
		return "MODP_4096"
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
func (g DHGroup) Supported() bool { return modpGroups[g] != nil || g.curve() != nil }

// PublicLen is the fixed length of the KE data for g: x || y for the ECP
// groups (RFC 5903 §7, no 0x04 prefix), the u coordinate for Curve25519,
// and the modulus length for MODP.
func (g DHGroup) PublicLen() int {
	if m := modpGroups[g]; m != nil {
		return m.bytes
	}
	switch g {
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
	if m := modpGroups[g]; m != nil {
		// A short exponent, over twice the group's strength in bits (112
		// for 2048, 128 and ~150 for 3072 and 4096: RFC 3526 §8, NIST SP
		// 800-57), and far cheaper than a full-size one.
		buf := make([]byte, m.expBits/8)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		k.x = new(big.Int).SetBytes(buf)
		k.x.SetBit(k.x, m.expBits-1, 1)
		y := new(big.Int).Exp(big.NewInt(2), k.x, m.p)
		k.pub = y.FillBytes(make([]byte, m.bytes))
		clear(buf)
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
	if m := modpGroups[k.group]; m != nil {
		if err := ValidatePublic(k.group, peer); err != nil {
			return nil, err
		}
		z := new(big.Int).Exp(new(big.Int).SetBytes(peer), k.x, m.p)
		return Secret(z.FillBytes(make([]byte, m.bytes))), nil
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

// modpGroup is one of RFC 3526's groups (generator 2, safe primes).
type modpGroup struct {
	p, pm1  *big.Int
	bytes   int // public values are this long, left-padded
	expBits int // private exponent size
}

func newMODP(hex string, expBits int) *modpGroup {
	p, ok := new(big.Int).SetString(strings.Join(strings.Fields(hex), ""), 16)
	if !ok {
		panic("ike: bad MODP prime")
	}
	return &modpGroup{p: p, pm1: new(big.Int).Sub(p, big.NewInt(1)), bytes: (p.BitLen() + 7) / 8, expBits: expBits}
}

// The primes of RFC 3526 §3, §4 and §5; each extends the one before.
const (
	modp2048Hex = `FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1
	29024E08 8A67CC74 020BBEA6 3B139B22 514A0879 8E3404DD EF9519B3 CD3A431B
	302B0A6D F25F1437 4FE1356D 6D51C245 E485B576 625E7EC6 F44C42E9 A637ED6B
	0BFF5CB6 F406B7ED EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D
	C2007CB8 A163BF05 98DA4836 1C55D39A 69163FA8 FD24CF5F 83655D23 DCA3AD96
	1C62F356 208552BB 9ED52907 7096966D 670C354E 4ABC9804 F1746C08 CA18217C
	32905E46 2E36CE3B E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9
	DE2BCBF6 95581718 3995497C EA956AE5 15D22618 98FA0510 15728E5A 8AA`
	modp3072Mid = `AC42D AD33170D 04507A33 A85521AB DF1CBA64 ECFB8504 58DBEF0A
	8AEA7157 5D060C7D B3970F85 A6E1E4C7 ABF5AE8C DB0933D7 1E8C94E0 4A25619D
	CEE3D226 1AD2EE6B F12FFA06 D98A0864 D8760273 3EC86A64 521F2B18 177B200C
	BBE11757 7A615D6C 770988C0 BAD946E2 08E24FA0 74E5AB31 43DB5BFC E0FD108E
	4B82D120 A9`
	modp4096Tail = `210801 1A723C12 A787E6D7 88719A10 BDBA5B26 99C32718 6AF4E23C
	1A946834 B6150BDA 2583E9CA 2AD44CE8 DBBBC2DB 04DE8EF9 2E8EFC14 1FBECAA6
	287C5947 4E6BC05D 99B2964F A090C3A2 233BA186 515BE7ED 1F612970 CEE2D7AF
	B81BDD76 2170481C D0069127 D5B05AA9 93B4EA98 8D8FDDC1 86FFB7DC 90A6C08F
	4DF435C9 34063199 FFFFFFFF FFFFFFFF`
)

var modpGroups = map[DHGroup]*modpGroup{
	MODP2048: newMODP(modp2048Hex+"CAA68 FFFFFFFF FFFFFFFF", 384),
	MODP3072: newMODP(modp2048Hex+modp3072Mid+"3AD2CA FFFFFFFF FFFFFFFF", 512),
	MODP4096: newMODP(modp2048Hex+modp3072Mid+modp4096Tail, 512),
}

// ValidatePublic checks the peer's KE data for g without any secret work:
// its length, and that it is a group element (RFC 6989: 1 < y < p-1 for
// MODP, a point on the curve for ECP). X25519 accepts any 32 bytes; its
// low-order points are refused when the shared secret comes out zero.
func ValidatePublic(g DHGroup, peer []byte) error {
	if len(peer) != g.PublicLen() {
		return ErrBadPublic
	}
	if m := modpGroups[g]; m != nil {
		// RFC 6989 §2.1: 1 < y < p-1.
		y := new(big.Int).SetBytes(peer)
		if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(m.pm1) >= 0 {
			return ErrBadPublic
		}
		return nil
	}
	if g == Curve25519 {
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
