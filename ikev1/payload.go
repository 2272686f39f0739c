package ikev1

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/gresec/gresec/ike"
)

// DOI is the IPsec domain of interpretation (RFC 2407 §4.2).
const DOI = 1

// sitIdentityOnly is the only situation we speak (RFC 2407 §4.2).
const sitIdentityOnly = 1

// Protocol IDs (RFC 2407 §4.4.1).
const (
	ProtoISAKMP = 1
	ProtoESP    = 3
)

// Transform IDs: KEY_IKE for phase 1 (RFC 2407 §4.4.2), ESP ciphers for
// phase 2 (§4.4.4, RFC 4106 §8.1).
const (
	KeyIKE        = 1
	ESPAESCBC     = 12
	ESPAESGCM16   = 20
	maxProposals  = 32
	maxTransforms = 64
	maxAttributes = 32
)

// Phase 1 attributes (RFC 2409 Appendix A).
const (
	AttrEncryption  = 1
	AttrHash        = 2
	AttrAuthMethod  = 3
	AttrGroup       = 4
	AttrLifeType    = 11
	AttrLifeDur     = 12
	AttrKeyLength   = 14
	EncrAESCBC      = 7
	HashSHA1        = 2
	HashSHA256      = 4
	HashSHA384      = 5
	HashSHA512      = 6
	AuthPSK         = 1
	LifeSeconds     = 1
	LifeKilobytes   = 2
	authMethodXAuth = 65001 // XAUTHInitPreShared: refused
)

// Phase 2 (IPsec DOI) attributes (RFC 2407 §4.5, RFC 3947 §5).
const (
	AttrSALifeType   = 1
	AttrSALifeDur    = 2
	AttrSAGroup      = 3
	AttrEncapMode    = 4
	AttrAuthAlg      = 5
	AttrSAKeyLength  = 6
	EncapTunnel      = 1
	EncapTransport   = 2
	EncapUDPTunnel   = 3
	EncapUDPTranspor = 4
	AuthHMACSHA1     = 2
	AuthHMACSHA256   = 5
	AuthHMACSHA384   = 6
	AuthHMACSHA512   = 7
)

// Attribute is a data attribute. TV ones (AF bit) hold 16 bits; TLV
// ones up to 8 bytes are read into Value (life durations), longer ones
// are refused: no attribute we negotiate has one.
type Attribute struct {
	Type  uint16
	Value uint64
}

// Transform is a transform payload's body.
type Transform struct {
	Num, ID    uint8
	Attributes []Attribute
}

// Attr is the value of attribute t, and whether it is present.
func (t Transform) Attr(typ uint16) (uint64, bool) {
	for _, a := range t.Attributes {
		if a.Type == typ {
			return a.Value, true
		}
	}
	return 0, false
}

// Proposal is a proposal payload's body with its transforms: alternatives
// the responder picks one of.
type Proposal struct {
	Num, Protocol uint8
	SPI           []byte
	Transforms    []Transform
}

// SA is an SA payload's body (RFC 2408 §3.4, RFC 2407 §4.6.1).
type SA struct {
	Proposals []Proposal
}

func appendAttributes(b []byte, as []Attribute) []byte {
	for _, a := range as {
		if a.Value <= 0xffff {
			b = binary.BigEndian.AppendUint16(b, 0x8000|a.Type)
			b = binary.BigEndian.AppendUint16(b, uint16(a.Value))
			continue
		}
		b = binary.BigEndian.AppendUint16(b, a.Type)
		if a.Value <= 0xffffffff {
			b = binary.BigEndian.AppendUint16(b, 4)
			b = binary.BigEndian.AppendUint32(b, uint32(a.Value))
		} else {
			b = binary.BigEndian.AppendUint16(b, 8)
			b = binary.BigEndian.AppendUint64(b, a.Value)
		}
	}
	return b
}

func decodeAttributes(b []byte) ([]Attribute, error) {
	var out []Attribute
	for len(b) > 0 {
		if len(out) == maxAttributes {
			return nil, malformed("more than %d attributes", maxAttributes)
		}
		if len(b) < 4 {
			return nil, malformed("attribute truncated")
		}
		t := binary.BigEndian.Uint16(b)
		v := binary.BigEndian.Uint16(b[2:])
		if t&0x8000 != 0 {
			out = append(out, Attribute{Type: t &^ 0x8000, Value: uint64(v)})
			b = b[4:]
			continue
		}
		n := int(v)
		if n > 8 || 4+n > len(b) {
			return nil, malformed("attribute %d of %d bytes", t, n)
		}
		var x uint64
		for _, c := range b[4 : 4+n] {
			x = x<<8 | uint64(c)
		}
		out = append(out, Attribute{Type: t, Value: x})
		b = b[4+n:]
	}
	return out, nil
}

// Encode is the SA payload body.
func (sa SA) Encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, DOI)
	b = binary.BigEndian.AppendUint32(b, sitIdentityOnly)
	for i, p := range sa.Proposals {
		var body []byte
		body = append(body, p.Num, p.Protocol, byte(len(p.SPI)), byte(len(p.Transforms)))
		body = append(body, p.SPI...)
		for j, t := range p.Transforms {
			tb := []byte{t.Num, t.ID, 0, 0}
			tb = appendAttributes(tb, t.Attributes)
			next := PayloadNone
			if j+1 < len(p.Transforms) {
				next = PayloadTrans
			}
			body = AppendPayloads(body, []Payload{{Type: PayloadTrans, Body: tb}})
			body[len(body)-len(tb)-4] = byte(next)
		}
		next := PayloadNone
		if i+1 < len(sa.Proposals) {
			next = PayloadProposal
		}
		b = append(b, byte(next), 0)
		b = binary.BigEndian.AppendUint16(b, uint16(4+len(body)))
		b = append(b, body...)
	}
	return b
}

// DecodeSA reads an SA payload body of the IPsec DOI.
func DecodeSA(b []byte) (SA, error) {
	if len(b) < 8 {
		return SA{}, malformed("SA of %d bytes", len(b))
	}
	if doi := binary.BigEndian.Uint32(b); doi != DOI {
		return SA{}, malformed("SA with DOI %d", doi)
	}
	if sit := binary.BigEndian.Uint32(b[4:]); sit != sitIdentityOnly {
		return SA{}, malformed("SA with situation %d", sit)
	}
	props, err := DecodePayloads(PayloadProposal, b[8:])
	if err != nil {
		return SA{}, err
	}
	var sa SA
	for _, pp := range props {
		if pp.Type != PayloadProposal {
			return SA{}, malformed("payload %d inside an SA", pp.Type)
		}
		if len(sa.Proposals) == maxProposals {
			return SA{}, malformed("more than %d proposals", maxProposals)
		}
		pb := pp.Body
		if len(pb) < 4 || len(pb) < 4+int(pb[2]) {
			return SA{}, malformed("proposal truncated")
		}
		p := Proposal{Num: pb[0], Protocol: pb[1], SPI: clone(pb[4 : 4+int(pb[2])])}
		want := int(pb[3])
		if want > maxTransforms {
			return SA{}, malformed("%d transforms", want)
		}
		ts, err := DecodePayloads(PayloadTrans, pb[4+int(pb[2]):])
		if err != nil {
			return SA{}, err
		}
		if len(ts) != want {
			return SA{}, malformed("proposal says %d transforms, has %d", want, len(ts))
		}
		for _, tp := range ts {
			if tp.Type != PayloadTrans || len(tp.Body) < 4 {
				return SA{}, malformed("bad transform in a proposal")
			}
			as, err := decodeAttributes(tp.Body[4:])
			if err != nil {
				return SA{}, err
			}
			p.Transforms = append(p.Transforms, Transform{Num: tp.Body[0], ID: tp.Body[1], Attributes: as})
		}
		sa.Proposals = append(sa.Proposals, p)
	}
	if len(sa.Proposals) == 0 {
		return SA{}, malformed("SA without proposals")
	}
	return sa, nil
}

// ID is an identification payload body (RFC 2407 §4.6.2): phase 1
// identities (protocol and port 0 or UDP/500) and Quick Mode client IDs,
// which are host addresses with a protocol (47 for GRE).
type ID struct {
	Type     ike.IDType
	Protocol uint8
	Port     uint16
	Data     []byte
}

// ID types of phase 2 beyond those ike knows.
const (
	IDIPv4Subnet = 4
	IDIPv6Subnet = 6
)

// PhaseOneID is our identity as a phase 1 ID payload.
func PhaseOneID(id ike.ID) ID { return ID{Type: id.Type, Data: id.Data} }

// HostID is a Quick Mode client ID: one address, one protocol, any port.
func HostID(a netip.Addr, proto uint8) ID {
	a = a.Unmap()
	t := ike.ID_IPV4_ADDR
	if a.Is6() {
		t = ike.ID_IPV6_ADDR
	}
	return ID{Type: t, Protocol: proto, Data: a.AsSlice()}
}

// Encode is the payload body.
func (id ID) Encode() []byte {
	b := []byte{byte(id.Type), id.Protocol}
	b = binary.BigEndian.AppendUint16(b, id.Port)
	return append(b, id.Data...)
}

// DecodeID reads an ID payload body.
func DecodeID(b []byte) (ID, error) {
	if len(b) < 4 {
		return ID{}, malformed("ID of %d bytes", len(b))
	}
	id := ID{Type: ike.IDType(b[0]), Protocol: b[1], Port: binary.BigEndian.Uint16(b[2:]), Data: clone(b[4:])}
	switch id.Type {
	case ike.ID_IPV4_ADDR:
		if len(id.Data) != 4 {
			return ID{}, malformed("ID_IPV4_ADDR of %d bytes", len(id.Data))
		}
	case ike.ID_IPV6_ADDR:
		if len(id.Data) != 16 {
			return ID{}, malformed("ID_IPV6_ADDR of %d bytes", len(id.Data))
		}
	}
	return id, nil
}

// Identity is the phase 1 identity the ID carries.
func (id ID) Identity() ike.ID { return ike.ID{Type: id.Type, Data: id.Data} }

// Addr is the address of a host client ID.
func (id ID) Addr() (netip.Addr, bool) {
	if id.Type != ike.ID_IPV4_ADDR && id.Type != ike.ID_IPV6_ADDR {
		return netip.Addr{}, false
	}
	return netip.AddrFromSlice(id.Data)
}

func (id ID) String() string {
	if a, ok := id.Addr(); ok {
		return fmt.Sprintf("%s[%d/%d]", a, id.Protocol, id.Port)
	}
	return id.Identity().String()
}

// Notify types (RFC 2408 §3.14.1, RFC 2407 §4.6.3, RFC 3706).
const (
	NotifyInvalidPayloadType = 1
	NotifyInvalidExchange    = 7
	NotifyInvalidMajorVer    = 5
	NotifyPayloadMalformed   = 16
	NotifyInvalidKey         = 17
	NotifyInvalidCookie      = 4
	NotifyNoProposalChosen   = 14
	NotifyInvalidHashInfo    = 23
	NotifyAuthFailed         = 24
	NotifyInvalidID          = 18
	NotifyResponderLifetime  = 24576
	NotifyReplayStatus       = 24577
	NotifyInitialContact     = 24578
	NotifyRUThere            = 36136
	NotifyRUThereAck         = 36137
)

// Notify is a notification payload body (RFC 2408 §3.14).
type Notify struct {
	Protocol uint8
	Type     uint16
	SPI      []byte
	Data     []byte
}

// Encode is the payload body.
func (n Notify) Encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, DOI)
	b = append(b, n.Protocol, byte(len(n.SPI)))
	b = binary.BigEndian.AppendUint16(b, n.Type)
	b = append(b, n.SPI...)
	return append(b, n.Data...)
}

// DecodeNotify reads a notification body.
func DecodeNotify(b []byte) (Notify, error) {
	if len(b) < 8 || len(b) < 8+int(b[5]) {
		return Notify{}, malformed("notification of %d bytes", len(b))
	}
	if doi := binary.BigEndian.Uint32(b); doi > DOI {
		return Notify{}, malformed("notification with DOI %d", doi) // 0 (ISAKMP) or 1 (IPsec)
	}
	n := Notify{Protocol: b[4], Type: binary.BigEndian.Uint16(b[6:])}
	n.SPI = clone(b[8 : 8+int(b[5])])
	n.Data = clone(b[8+int(b[5]):])
	return n, nil
}

// Delete is a delete payload body (RFC 2408 §3.15).
type Delete struct {
	Protocol uint8
	SPIs     [][]byte // all of one size: 16 (two cookies) or 4 (ESP)
}

// Encode is the payload body.
func (d Delete) Encode() []byte {
	size := 0
	if len(d.SPIs) > 0 {
		size = len(d.SPIs[0])
	}
	b := binary.BigEndian.AppendUint32(nil, DOI)
	b = append(b, d.Protocol, byte(size))
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.SPIs)))
	for _, s := range d.SPIs {
		b = append(b, s...)
	}
	return b
}

// DecodeDelete reads a delete body.
func DecodeDelete(b []byte) (Delete, error) {
	if len(b) < 8 {
		return Delete{}, malformed("delete of %d bytes", len(b))
	}
	if doi := binary.BigEndian.Uint32(b); doi > DOI {
		return Delete{}, malformed("delete with DOI %d", doi)
	}
	d := Delete{Protocol: b[4]}
	size, n := int(b[5]), int(binary.BigEndian.Uint16(b[6:]))
	if size == 0 || len(b)-8 != size*n {
		return Delete{}, malformed("delete of %d SPIs of %d bytes in %d bytes", n, size, len(b)-8)
	}
	for i := range n {
		d.SPIs = append(d.SPIs, clone(b[8+i*size:8+(i+1)*size]))
	}
	return d, nil
}

// Vendor IDs we send and recognise.
var (
	// VendorDPD is RFC 3706's (its §3, "afcad713...").
	VendorDPD = []byte{0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00}
	// VendorNATT is RFC 3947's: MD5("RFC 3947").
	VendorNATT = []byte{0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45, 0x2f}
)

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
