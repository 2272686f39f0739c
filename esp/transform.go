package esp

import (
	"errors"
	"fmt"
	"strings"
)

// Cipher is an ESP encryption algorithm.
type Cipher uint8

const (
	// CipherAESGCM16 is AES-GCM with a 16-byte ICV (RFC 4106): an AEAD,
	// 8-byte explicit IV, key || 4-byte salt.
	CipherAESGCM16 Cipher = iota + 1
	// CipherChaCha20Poly1305 is RFC 7634: an AEAD, 8-byte explicit IV,
	// 32-byte key || 4-byte salt, 16-byte ICV.
	CipherChaCha20Poly1305
	// CipherAESCBC is RFC 3602: a 16-byte random IV, padding to the
	// 16-byte block, and a separate integrity algorithm.
	CipherAESCBC
)

// Integrity is the integrity algorithm paired with a non-AEAD cipher.
type Integrity uint8

const (
	IntegNone           Integrity = iota // the cipher is an AEAD
	IntegHMACSHA1_96                     // RFC 2404: 20-byte key, 12-byte ICV
	IntegHMACSHA256_128                  // RFC 4868: 32-byte key, 16-byte ICV
	IntegHMACSHA384_192                  // RFC 4868: 48-byte key, 24-byte ICV
	IntegHMACSHA512_256                  // RFC 4868: 64-byte key, 32-byte ICV
)

// Transform is one ESP transform: cipher, key size, integrity algorithm
// and whether the SA uses extended sequence numbers. It is a comparable
// value; the zero Transform is invalid.
type Transform struct {
	Cipher  Cipher
	KeyBits int       // 128, 192 or 256 for AES; 256 for ChaCha20
	Integ   Integrity // IntegNone for the AEAD ciphers
	ESN     bool      // 64-bit sequence numbers, RFC 4303 §2.2.1
}

// DefaultTransform is AES-256-GCM-16 without ESN: what NewSA builds for
// 36-byte key material, and the seed configuration's transform.
var DefaultTransform = Transform{Cipher: CipherAESGCM16, KeyBits: 256}

const (
	saltLen     = 4 // AEAD key material ends in a 4-byte salt
	aesBlockLen = 16
	cbcIVLen    = aesBlockLen
	aeadAlign   = 4 // RFC 4303 §2.4: the trailer ends on a 4-byte boundary
	maxICVLen   = 32
	maxBlockLen = aesBlockLen
	maxIVLen    = cbcIVLen
)

// MaxPrefixLen is the most bytes Seal writes in front of the payload, for
// any transform: SPI, sequence number and AES-CBC's 16-byte IV.
const MaxPrefixLen = HeaderLen + maxIVLen

// integs are the integrity algorithms by strongSwan keyword.
var integNames = []struct {
	name  string
	integ Integrity
}{
	{"sha1", IntegHMACSHA1_96},
	{"sha256", IntegHMACSHA256_128},
	{"sha384", IntegHMACSHA384_192},
	{"sha512", IntegHMACSHA512_256},
	{"sha2_256", IntegHMACSHA256_128},
	{"sha2_384", IntegHMACSHA384_192},
	{"sha2_512", IntegHMACSHA512_256},
}

// ParseTransform reads an ESP transform in strongSwan's proposal syntax:
// "aes128gcm16", "aes192gcm16", "aes256gcm16" (also "...gcm128"),
// "chacha20poly1305", or AES-CBC with HMAC as "aes128-sha1",
// "aes256-sha256", "aes256-sha384", "aes256-sha512" (any of aes128, aes192,
// aes256, "aes" being aes128, with sha1, sha256/sha2_256, sha384/sha2_384,
// sha512/sha2_512), each optionally followed by "-esn" (or "-noesn").
// Case does not matter.
func ParseTransform(s string) (Transform, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	var t Transform
	switch {
	case strings.HasSuffix(in, "-noesn"):
		in = strings.TrimSuffix(in, "-noesn")
	case strings.HasSuffix(in, "-esn"):
		in, t.ESN = strings.TrimSuffix(in, "-esn"), true
	}
	enc, integ, hasInteg := strings.Cut(in, "-")
	switch {
	case enc == "chacha20poly1305":
		t.Cipher, t.KeyBits = CipherChaCha20Poly1305, 256
	case strings.HasSuffix(enc, "gcm16") || strings.HasSuffix(enc, "gcm128"):
		t.Cipher = CipherAESGCM16
		t.KeyBits = aesBits(strings.TrimSuffix(strings.TrimSuffix(enc, "gcm16"), "gcm128"))
	default:
		t.Cipher = CipherAESCBC
		if t.KeyBits = aesBits(enc); t.KeyBits == 0 {
			break // unknown cipher, below
		}
		if !hasInteg {
			return Transform{}, fmt.Errorf("esp: transform %q: AES-CBC needs an integrity algorithm, e.g. %q", s, enc+"-sha256")
		}
		for _, n := range integNames {
			if integ == n.name {
				t.Integ = n.integ
			}
		}
		if t.Integ == IntegNone {
			return Transform{}, fmt.Errorf("esp: transform %q: unknown integrity algorithm %q; expected sha1, sha256, sha384 or sha512", s, integ)
		}
		hasInteg = false
	}
	if t.KeyBits == 0 {
		return Transform{}, fmt.Errorf("esp: transform %q: unknown cipher %q; expected aes128gcm16, aes192gcm16, aes256gcm16, chacha20poly1305 or aes128/aes192/aes256 with -sha1, -sha256, -sha384 or -sha512", s, enc)
	}
	if hasInteg {
		return Transform{}, fmt.Errorf("esp: transform %q: %s is an AEAD and takes no integrity algorithm", s, enc)
	}
	return t, t.Validate()
}

// aesBits reads "aes128", "aes192", "aes256" or "aes" (128); 0 otherwise.
func aesBits(s string) int {
	switch s {
	case "aes", "aes128":
		return 128
	case "aes192":
		return 192
	case "aes256":
		return 256
	}
	return 0
}

// Validate reports whether t is a transform this package implements.
func (t Transform) Validate() error {
	switch t.Cipher {
	case CipherAESGCM16, CipherAESCBC:
		if t.KeyBits != 128 && t.KeyBits != 192 && t.KeyBits != 256 {
			return fmt.Errorf("esp: AES key of %d bits; expected 128, 192 or 256", t.KeyBits)
		}
	case CipherChaCha20Poly1305:
		if t.KeyBits != 256 {
			return fmt.Errorf("esp: ChaCha20 key of %d bits; expected 256", t.KeyBits)
		}
	default:
		return errors.New("esp: no cipher in transform")
	}
	aead := t.Cipher != CipherAESCBC
	switch {
	case aead && t.Integ != IntegNone:
		return errors.New("esp: an AEAD cipher takes no integrity algorithm")
	case !aead && (t.Integ == IntegNone || t.Integ > IntegHMACSHA512_256):
		return errors.New("esp: AES-CBC needs an HMAC integrity algorithm")
	}
	return nil
}

// AEAD reports whether the cipher authenticates by itself (GCM, ChaCha20).
func (t Transform) AEAD() bool { return t.Cipher != CipherAESCBC }

// Name is the strongSwan name without the ESN flag: "aes256gcm16",
// "chacha20poly1305", "aes256-sha256".
func (t Transform) Name() string {
	switch t.Cipher {
	case CipherAESGCM16:
		return fmt.Sprintf("aes%dgcm16", t.KeyBits)
	case CipherChaCha20Poly1305:
		return "chacha20poly1305"
	case CipherAESCBC:
		for _, n := range integNames[:4] {
			if n.integ == t.Integ {
				return fmt.Sprintf("aes%d-%s", t.KeyBits, n.name)
			}
		}
	}
	return "invalid"
}

// String is Name with "-esn" when the transform uses ESN: the form
// ParseTransform reads.
func (t Transform) String() string {
	if t.ESN {
		return t.Name() + "-esn"
	}
	return t.Name()
}

// Description is the long name status output shows:
// "esp-aes-256-gcm-16", "esp-chacha20-poly1305",
// "esp-aes-256-cbc-hmac-sha2-256-128", with "-esn" appended under ESN.
func (t Transform) Description() string {
	var s string
	switch t.Cipher {
	case CipherAESGCM16:
		s = fmt.Sprintf("esp-aes-%d-gcm-16", t.KeyBits)
	case CipherChaCha20Poly1305:
		s = "esp-chacha20-poly1305"
	case CipherAESCBC:
		s = fmt.Sprintf("esp-aes-%d-cbc-%s", t.KeyBits, t.Integ.description())
	default:
		return "invalid"
	}
	if t.ESN {
		s += "-esn"
	}
	return s
}

func (i Integrity) description() string {
	switch i {
	case IntegHMACSHA1_96:
		return "hmac-sha1-96"
	case IntegHMACSHA256_128:
		return "hmac-sha2-256-128"
	case IntegHMACSHA384_192:
		return "hmac-sha2-384-192"
	case IntegHMACSHA512_256:
		return "hmac-sha2-512-256"
	}
	return "none"
}

// EncKeyLen is the length of the encryption key material: the AES or
// ChaCha20 key, plus the 4-byte salt for the AEADs (the layout of `ip xfrm
// ... aead` and of IKEv2 KEYMAT).
func (t Transform) EncKeyLen() int {
	if t.AEAD() {
		return t.KeyBits/8 + saltLen
	}
	return t.KeyBits / 8
}

// IntegKeyLen is the length of the HMAC key (0 for an AEAD): the hash's
// output size, as RFC 2404 and RFC 4868 fix it.
func (t Transform) IntegKeyLen() int {
	switch t.Integ {
	case IntegHMACSHA1_96:
		return 20
	case IntegHMACSHA256_128:
		return 32
	case IntegHMACSHA384_192:
		return 48
	case IntegHMACSHA512_256:
		return 64
	}
	return 0
}

// KeymatLen is the key material of one direction: the encryption key
// then the integrity key, the order of IKEv2 KEYMAT (RFC 7296 §2.17).
func (t Transform) KeymatLen() int { return t.EncKeyLen() + t.IntegKeyLen() }

// IVLen is the explicit IV on the wire: 8 for the AEADs, 16 for AES-CBC.
func (t Transform) IVLen() int {
	if t.AEAD() {
		return IVLen
	}
	return cbcIVLen
}

// ICVLen is the integrity check value's length: 16 for the AEADs, the
// truncated HMAC (12, 16, 24, 32 bytes) for AES-CBC.
func (t Transform) ICVLen() int {
	if t.AEAD() {
		return ICVLen
	}
	if t.Integ == IntegHMACSHA1_96 {
		return 12 // RFC 2404: 96 of SHA-1's 160 bits
	}
	return t.IntegKeyLen() / 2 // RFC 4868: half the hash output
}

// BlockSize is what payload, padding and the 2-byte trailer are padded
// to: the cipher block (16) for AES-CBC, 4 for the AEADs (RFC 4303 §2.4).
func (t Transform) BlockSize() int {
	if t.AEAD() {
		return aeadAlign
	}
	return aesBlockLen
}

// PrefixLen is what Seal writes in front of the payload: SPI, sequence
// number and IV.
func (t Transform) PrefixLen() int { return HeaderLen + t.IVLen() }

// padLen is how much padding Seal adds to a payload of n bytes so that
// payload, padding and trailer fill whole blocks.
func (t Transform) padLen(n int) int { return -(n + TrailerLen) & (t.BlockSize() - 1) }

// Overhead is the exact number of bytes ESP adds to a payload of n bytes
// under this transform: prefix, padding, trailer and ICV.
func (t Transform) Overhead(n int) int {
	return t.PrefixLen() + t.padLen(n) + TrailerLen + t.ICVLen()
}

// MaxOverhead is Overhead for the worst padding.
func (t Transform) MaxOverhead() int {
	return t.PrefixLen() + t.BlockSize() - 1 + TrailerLen + t.ICVLen()
}

// minLen is the shortest packet Open can accept: an empty payload still
// has its trailer (in one cipher block for CBC) and its ICV.
func (t Transform) minLen() int {
	if t.AEAD() {
		return t.PrefixLen() + TrailerLen + t.ICVLen()
	}
	return t.PrefixLen() + aesBlockLen + t.ICVLen()
}

// TunnelMTU is the largest inner packet that fits an underlay of
// underlayMTU bytes in transport mode, once wrapped in a GRE header of
// greLen bytes, this transform's ESP (padding included) and an outer IP
// header of outerHeaderLen bytes (20 for IPv4, 40 for IPv6). For IPv4 over
// 1500 with a 4-byte GRE header: 1442 for the AEADs, 1434 for AES-CBC with
// HMAC-SHA1-96 or HMAC-SHA2-256-128, 1418 with -384-192 or -512-256.
// It is 0 when nothing fits.
func (t Transform) TunnelMTU(underlayMTU, outerHeaderLen, greLen int) int {
	// The encrypted part (GRE + inner + padding + trailer) must be whole
	// blocks: take the room left for it and round down to the block.
	room := underlayMTU - outerHeaderLen - t.PrefixLen() - t.ICVLen()
	room -= room % t.BlockSize()
	return max(room-TrailerLen-greLen, 0)
}

// IANA IKEv2 transform IDs (RFC 7296 §3.3.2 and the IANA registry) of the
// ESP transforms this package implements.
const (
	IKEEncrAESCBC           = 12
	IKEEncrAESGCM16         = 20
	IKEEncrChaCha20Poly1305 = 28
	IKEIntegNone            = 0
	IKEIntegHMACSHA1_96     = 2
	IKEIntegHMACSHA256_128  = 12
	IKEIntegHMACSHA384_192  = 13
	IKEIntegHMACSHA512_256  = 14
)

// TransformFromIKE maps a negotiated ESP proposal onto a Transform: the
// ENCR transform ID with its key length attribute in bits (keyBits; 0 for
// ChaCha20, which has none), the INTEG transform ID (IKEIntegNone for an
// AEAD) and the ESN transform (true for ESN 1).
func TransformFromIKE(encr uint16, keyBits int, integ uint16, esn bool) (Transform, error) {
	t := Transform{KeyBits: keyBits, ESN: esn}
	switch encr {
	case IKEEncrAESCBC:
		t.Cipher = CipherAESCBC
	case IKEEncrAESGCM16:
		t.Cipher = CipherAESGCM16
	case IKEEncrChaCha20Poly1305:
		t.Cipher = CipherChaCha20Poly1305
		if keyBits == 0 {
			t.KeyBits = 256
		}
	default:
		return Transform{}, fmt.Errorf("esp: IKEv2 encryption transform %d not supported", encr)
	}
	switch integ {
	case IKEIntegNone:
	case IKEIntegHMACSHA1_96:
		t.Integ = IntegHMACSHA1_96
	case IKEIntegHMACSHA256_128:
		t.Integ = IntegHMACSHA256_128
	case IKEIntegHMACSHA384_192:
		t.Integ = IntegHMACSHA384_192
	case IKEIntegHMACSHA512_256:
		t.Integ = IntegHMACSHA512_256
	default:
		return Transform{}, fmt.Errorf("esp: IKEv2 integrity transform %d not supported", integ)
	}
	return t, t.Validate()
}

// IKE returns the IKEv2 transform IDs of t: ENCR ID, key length attribute
// in bits (0: send none, as for ChaCha20) and INTEG ID (0 for an AEAD).
func (t Transform) IKE() (encr uint16, keyBits int, integ uint16) {
	switch t.Cipher {
	case CipherAESGCM16:
		encr, keyBits = IKEEncrAESGCM16, t.KeyBits
	case CipherChaCha20Poly1305:
		encr = IKEEncrChaCha20Poly1305
	case CipherAESCBC:
		encr, keyBits = IKEEncrAESCBC, t.KeyBits
	}
	switch t.Integ {
	case IntegHMACSHA1_96:
		integ = IKEIntegHMACSHA1_96
	case IntegHMACSHA256_128:
		integ = IKEIntegHMACSHA256_128
	case IntegHMACSHA384_192:
		integ = IKEIntegHMACSHA384_192
	case IntegHMACSHA512_256:
		integ = IKEIntegHMACSHA512_256
	}
	return encr, keyBits, integ
}
