package ikeattack

import (
	"bytes"
	"crypto/ecdh"
	"encoding/binary"
	"math/big"

	"github.com/gresec/gresec/ike"
)

// BadKE is a KE payload that a responder must refuse before any secret
// work (RFC 7296 §1.2 and RFC 6989: check the length and that the value
// is a valid group element, before generating a key of its own).
type BadKE struct {
	Name string
	KE   *ike.KE
}

// BadKEs is the catalogue of invalid KE payloads for group g: wrong
// lengths for every group; for the ECP groups a right-length value that
// is not a point on the curve (random, all zero, coordinates not below p,
// a valid point with y changed); for Curve25519 the low-order points that
// give an all-zero secret; for MODP 0, 1, p-1, p and more (RFC 6989
// §2.1 wants 1 < y < p-1). The last entry names a group the responder
// did not propose, with data of that group's length.
func (f *Forger) BadKEs() []BadKE {
	g := f.Group
	n := g.PublicLen()
	ke := func(data []byte) *ike.KE { return &ike.KE{Group: uint16(g), Data: data} }
	out := []BadKE{
		{"empty", ke(nil)},
		{"one byte short", ke(f.random(n - 1))},
		{"one byte long", ke(append(bytes.Clone(f.public), 0))},
		{"twice the length", ke(append(bytes.Clone(f.public), f.public...))},
	}
	switch {
	case g == ike.MODP2048:
		p := modp2048P()
		one := big.NewInt(1)
		for _, c := range []struct {
			name string
			v    *big.Int
		}{
			{"MODP 0", big.NewInt(0)},
			{"MODP 1", one},
			{"MODP p-1", new(big.Int).Sub(p, one)},
			{"MODP p", p},
			{"MODP p+1", new(big.Int).Add(p, one)},
		} {
			out = append(out, BadKE{c.name, ke(c.v.FillBytes(make([]byte, n)))})
		}
		out = append(out, BadKE{"MODP 2^2048-1", ke(bytes.Repeat([]byte{0xff}, n))})
	case g == ike.Curve25519:
		one := make([]byte, n)
		one[0] = 1         // little-endian u = 1
		pu := []byte{0xed} // u = p = 2^255-19, which is 0
		pu = append(pu, bytes.Repeat([]byte{0xff}, n-2)...)
		pu = append(pu, 0x7f)
		out = append(out,
			BadKE{"X25519 u=0 (low order)", ke(make([]byte, n))},
			BadKE{"X25519 u=1 (low order)", ke(one)},
			BadKE{"X25519 u=p (0, not canonical)", ke(pu)})
	default: // the NIST curves
		out = append(out,
			BadKE{"point (0, 0)", ke(make([]byte, n))},
			BadKE{"coordinates not below p", ke(bytes.Repeat([]byte{0xff}, n))},
			BadKE{"random point off the curve", ke(f.offCurve(g))},
			BadKE{"valid x, wrong y", ke(flipLast(f.public))})
	}
	other := ike.ECP256
	if g == ike.ECP256 {
		other = ike.ECP384
	}
	return append(out, BadKE{"group " + other.String() + ", not proposed", &ike.KE{Group: uint16(other), Data: f.random(other.PublicLen())}})
}

func (f *Forger) random(n int) []byte {
	b := make([]byte, max(n, 0))
	f.rnd.Read(b)
	return b
}

// offCurve draws x || y until it is not a point of g's curve (the first
// draw almost surely is not).
func (f *Forger) offCurve(g ike.DHGroup) []byte {
	c := map[ike.DHGroup]ecdh.Curve{ike.ECP256: ecdh.P256(), ike.ECP384: ecdh.P384(), ike.ECP521: ecdh.P521()}[g]
	for {
		b := f.random(g.PublicLen())
		if c == nil {
			return b
		}
		if _, err := c.NewPublicKey(append([]byte{4}, b...)); err != nil {
			return b
		}
	}
}

func flipLast(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)-1] ^= 1
	return b
}

func modp2048P() *big.Int {
	p, _ := new(big.Int).SetString(
		"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"+
			"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"+
			"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"+
			"83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"+
			"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"+
			"15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)
	return p
}

// Malformed is one datagram of the malformed catalogue and what is wrong
// with it.
type Malformed struct {
	Name string
	Data []byte
}

// rawPayload is a payload as bytes, with its generic header's fields
// (next type, length) free to be wrong.
type rawPayload struct {
	typ  ike.PayloadType
	body []byte
}

// chain lays payloads out with correct generic headers.
func chain(ps ...rawPayload) (first ike.PayloadType, b []byte) {
	for i, p := range ps {
		next := ike.PayloadNone
		if i+1 < len(ps) {
			next = ps[i+1].typ
		}
		b = append(b, byte(next), 0)
		b = binary.BigEndian.AppendUint16(b, uint16(4+len(p.body)))
		b = append(b, p.body...)
	}
	if len(ps) > 0 {
		first = ps[0].typ
	}
	return first, b
}

// message is a header for body with a correct length field.
func message(spiI, spiR uint64, exch ike.ExchangeType, flags ike.Flags, msgID uint32, first ike.PayloadType, body []byte) []byte {
	h := ike.Header(BareHeader(spiI, spiR, exch, flags, msgID))
	h.SetNextPayload(first)
	b := append([]byte(h), body...)
	ike.Header(b).SetLength(uint32(len(b)))
	return b
}

// MalformedCatalogue is datagrams that no responder may act on, from
// the Forger's address: truncated headers, length fields that disagree
// with the datagram, other IKE versions, generic payload headers with
// impossible lengths, garbage nested inside SA, TS, notify and SK
// payloads, values out of range, too many payloads, requests whose header
// cannot start an IKE SA, and random bytes behind a valid header. Each is
// built from a valid IKE_SA_INIT request, so it gets past every check but
// the one it breaks.
func (f *Forger) MalformedCatalogue() []Malformed {
	spi := f.SPI()
	nonce := f.Nonce()
	valid := f.Init(spi, nonce, f.ValidKE(), nil)
	saBody := ike.EncodePayload(&ike.SA{Proposals: f.Proposals})
	keBody := ike.EncodePayload(f.ValidKE())
	good := []rawPayload{{ike.PayloadSA, saBody}, {ike.PayloadKE, keBody}, {ike.PayloadNonce, nonce}}
	init := func(ps ...rawPayload) []byte {
		first, body := chain(ps...)
		return message(spi, 0, ike.IKE_SA_INIT, ike.FlagInitiator, 0, first, body)
	}
	withLength := func(b []byte, v uint32) []byte {
		b = bytes.Clone(b)
		ike.Header(b).SetLength(v)
		return b
	}
	// setPayloadLength rewrites the first payload's generic length.
	setPayloadLength := func(v uint16) []byte {
		b := bytes.Clone(valid)
		binary.BigEndian.PutUint16(b[ike.HeaderLen+2:], v)
		return b
	}
	version := func(v byte) []byte {
		b := bytes.Clone(valid)
		ike.Header(b).SetVersion(v)
		return b
	}
	// An SA payload whose one proposal says 255 transforms follow and
	// none do, and one whose proposal length runs past the payload.
	saTransforms := []byte{0, 0, 0, 8, 1, byte(ike.ProtoIKE), 0, 255}
	saLength := []byte{0, 0, 0xff, 0xff, 1, byte(ike.ProtoIKE), 0, 1}
	// A transform whose TLV attribute claims 0x7fff bytes.
	saAttr := []byte{0, 0, 0, 20, 1, byte(ike.ProtoIKE), 0, 1,
		0, 0, 0, 12, byte(ike.TransformENCR), 0, 0, 20, 0x00, 0x0e, 0x7f, 0xff}
	tsCount := []byte{255, 0, 0, 0, 7, 0, 0, 16} // 255 selectors, one truncated
	notifySPI := []byte{0, 200, 0x40, 0x04}      // SPI size 200
	manyVendors := make([]rawPayload, 80)
	for i := range manyVendors {
		manyVendors[i] = rawPayload{ike.PayloadVendor, []byte{byte(i)}}
	}
	skGarbage := f.random(64)
	garbage := f.random(400)

	out := []Malformed{
		{"empty datagram", nil},
		{"one byte", []byte{0x20}},
		{"27 bytes: header cut short", valid[:ike.HeaderLen-1]},
		{"IKE_SA_INIT cut in the SA payload", withLength(valid[:ike.HeaderLen+10], ike.HeaderLen+10)},
		{"header length one more than the datagram", withLength(valid, uint32(len(valid)+1))},
		{"header length one less than the datagram", withLength(valid, uint32(len(valid)-1))},
		{"header length 0xffffffff", withLength(valid, 0xffffffff)},
		{"header length 0", withLength(valid, 0)},
		{"major version 1 (IKEv1)", version(0x10)},
		{"major version 3", version(0x30)},
		{"payload length 0", setPayloadLength(0)},
		{"payload length 3", setPayloadLength(3)},
		{"payload length past the datagram", setPayloadLength(uint16(len(valid)))},
		{"payload length 0xffff", setPayloadLength(0xffff)},
		{"bytes after the last payload", withLength(append(bytes.Clone(valid), 1, 2, 3, 4), uint32(len(valid)+4))},
		{"next payload names a type that is not there", message(spi, 0, ike.IKE_SA_INIT, ike.FlagInitiator, 0, ike.PayloadSA, nil)},
		{"SA: 255 transforms announced, none present", init(rawPayload{ike.PayloadSA, saTransforms}, good[1], good[2])},
		{"SA: proposal length 0xffff", init(rawPayload{ike.PayloadSA, saLength}, good[1], good[2])},
		{"SA: attribute length 0x7fff", init(rawPayload{ike.PayloadSA, saAttr}, good[1], good[2])},
		{"SA: empty", init(rawPayload{ike.PayloadSA, nil}, good[1], good[2])},
		{"KE: 3 bytes", init(good[0], rawPayload{ike.PayloadKE, []byte{0, 20, 0}}, good[2])},
		{"KE: 1025 bytes of data", init(good[0], rawPayload{ike.PayloadKE, append([]byte{0, byte(f.Group), 0, 0}, f.random(1025)...)}, good[2])},
		{"nonce of 15 bytes", init(good[0], good[1], rawPayload{ike.PayloadNonce, nonce[:15]})},
		{"nonce of 257 bytes", init(good[0], good[1], rawPayload{ike.PayloadNonce, bytes.Repeat(nonce, 9)[:257]})},
		{"notify with an SPI size of 200", init(append(good, rawPayload{ike.PayloadNotify, notifySPI})...)},
		{"TSi with 255 selectors in 8 bytes", init(append(good, rawPayload{ike.PayloadTSi, tsCount})...)},
		{"80 payloads", init(append(good, manyVendors...)...)},
		{"unsupported critical payload", criticalPayload(init(append(good, rawPayload{ike.PayloadType(200), []byte{1, 2, 3}})...), len(good))},
		{"SK payload not last", init(append([]rawPayload{{ike.PayloadSK, skGarbage}}, good...)...)},
		{"no SA payload", init(good[1], good[2])},
		{"no KE payload", init(good[0], good[2])},
		{"no nonce", init(good[0], good[1])},
		{"IKE_SA_INIT with SPIr set", message(spi, 0x1234, ike.IKE_SA_INIT, ike.FlagInitiator, 0, ike.PayloadNone, nil)},
		{"IKE_SA_INIT with message ID 1", func() []byte { b := bytes.Clone(valid); ike.Header(b).SetMessageID(1); return b }()},
		{"IKE_SA_INIT with SPIi 0", func() []byte { b := bytes.Clone(valid); ike.Header(b).SetSPIi(0); return b }()},
		{"IKE_SA_INIT without the I flag", func() []byte { b := bytes.Clone(valid); ike.Header(b).SetFlags(0); return b }()},
		{"IKE_SA_INIT response to no request", func() []byte {
			b := bytes.Clone(valid)
			ike.Header(b).SetFlags(ike.FlagResponse)
			ike.Header(b).SetSPIr(0x4242)
			return b
		}()},
		{"exchange type 99", func() []byte { b := bytes.Clone(valid); ike.Header(b).SetExchange(99); return b }()},
		{"IKE_AUTH with garbage in SK for an unknown SA", message(spi, 0x4242, ike.IKE_AUTH, ike.FlagInitiator, 1, ike.PayloadSK, append([]byte{byte(ike.PayloadIDi), 0, 0, 68}, skGarbage...))},
		{"random bytes behind a valid header", message(spi, 0, ike.IKE_SA_INIT, ike.FlagInitiator, 0, ike.PayloadSA, garbage)},
	}
	return out
}

// criticalPayload sets the critical bit of payload i's generic header.
func criticalPayload(b []byte, i int) []byte {
	off := ike.HeaderLen
	for ; i > 0; i-- {
		off += int(binary.BigEndian.Uint16(b[off+2:]))
	}
	b[off+1] |= 0x80
	return b
}
