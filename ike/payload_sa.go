package ike

import (
	"encoding/binary"

	"golang.org/x/crypto/cryptobyte"
)

// SA is the Security Association payload: an ordered list of proposals
// (§3.3). In a response it carries exactly one proposal.
type SA struct{ Proposals []Proposal }

// Proposal is one proposal substructure. Num is the proposal number (a
// responder echoes the number of the proposal it accepted); SPI is empty in
// IKE_SA_INIT, 8 bytes for an IKE rekey and 4 for ESP.
type Proposal struct {
	Num        uint8
	Protocol   ProtocolID
	SPI        []byte
	Transforms []Transform
}

// Transform is one transform substructure.
type Transform struct {
	Type       TransformType
	ID         uint16
	Attributes []Attribute
}

// Attribute is a transform attribute. TV attributes (AF bit set) carry a
// 16-bit Value; TLV ones carry Data.
type Attribute struct {
	Type  uint16
	TV    bool
	Value uint16
	Data  []byte
}

const (
	lastProposal  = 0
	moreProposals = 2
	lastTransform = 0
	moreTransform = 3
)

// KeyLength returns the Key Length attribute, if present.
func (t Transform) KeyLength() (uint16, bool) {
	for _, a := range t.Attributes {
		if a.Type == AttrKeyLength && a.TV {
			return a.Value, true
		}
	}
	return 0, false
}

func (*SA) Type() PayloadType { return PayloadSA }

func (sa *SA) appendBody(b []byte) []byte {
	for i, p := range sa.Proposals {
		start := len(b)
		last := byte(moreProposals)
		if i == len(sa.Proposals)-1 {
			last = lastProposal
		}
		b = append(b, last, 0, 0, 0, p.Num, byte(p.Protocol), byte(len(p.SPI)), byte(len(p.Transforms)))
		b = append(b, p.SPI...)
		for j, t := range p.Transforms {
			tstart := len(b)
			last := byte(moreTransform)
			if j == len(p.Transforms)-1 {
				last = lastTransform
			}
			b = append(b, last, 0, 0, 0, byte(t.Type), 0)
			b = binary.BigEndian.AppendUint16(b, t.ID)
			for _, a := range t.Attributes {
				if a.TV {
					b = binary.BigEndian.AppendUint16(b, 0x8000|a.Type)
					b = binary.BigEndian.AppendUint16(b, a.Value)
				} else {
					b = binary.BigEndian.AppendUint16(b, a.Type&0x7fff)
					b = binary.BigEndian.AppendUint16(b, uint16(len(a.Data)))
					b = append(b, a.Data...)
				}
			}
			binary.BigEndian.PutUint16(b[tstart+2:], uint16(len(b)-tstart))
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b
}

func decodeSA(body []byte) (*SA, error) {
	sa := &SA{}
	s := cryptobyte.String(body)
	if s.Empty() {
		return nil, malformed(PayloadSA, "no proposals")
	}
	for !s.Empty() {
		if len(sa.Proposals) == maxProposals {
			return nil, malformed(PayloadSA, "more than %d proposals", maxProposals)
		}
		var last, reserved, num, proto, spiLen, nt uint8
		var length uint16
		if !s.ReadUint8(&last) || !s.ReadUint8(&reserved) || !s.ReadUint16(&length) {
			return nil, malformed(PayloadSA, "truncated proposal header")
		}
		var ps cryptobyte.String
		if length < 8 || !s.ReadBytes((*[]byte)(&ps), int(length)-4) {
			return nil, malformed(PayloadSA, "proposal length %d with %d bytes left", length, len(s)+4)
		}
		wantLast := byte(moreProposals)
		if s.Empty() {
			wantLast = lastProposal
		}
		if last != wantLast {
			return nil, malformed(PayloadSA, "proposal last-substructure %d, want %d", last, wantLast)
		}
		ps.ReadUint8(&num)
		ps.ReadUint8(&proto)
		ps.ReadUint8(&spiLen)
		ps.ReadUint8(&nt)
		p := Proposal{Num: num, Protocol: ProtocolID(proto)}
		var spi []byte
		if spiLen > maxSPILen || !ps.ReadBytes(&spi, int(spiLen)) {
			return nil, malformed(PayloadSA, "SPI size %d", spiLen)
		}
		p.SPI = clone(spi)
		if nt == 0 || nt > maxTransforms {
			return nil, malformed(PayloadSA, "%d transforms", nt)
		}
		p.Transforms = make([]Transform, 0, nt)
		for i := 0; i < int(nt); i++ {
			t, err := decodeTransform(&ps, i == int(nt)-1)
			if err != nil {
				return nil, err
			}
			p.Transforms = append(p.Transforms, t)
		}
		if !ps.Empty() {
			return nil, malformed(PayloadSA, "%d bytes after the last transform", len(ps))
		}
		sa.Proposals = append(sa.Proposals, p)
	}
	return sa, nil
}

func decodeTransform(s *cryptobyte.String, isLast bool) (Transform, error) {
	var last, reserved, typ, reserved2 uint8
	var length, id uint16
	if !s.ReadUint8(&last) || !s.ReadUint8(&reserved) || !s.ReadUint16(&length) {
		return Transform{}, malformed(PayloadSA, "truncated transform header")
	}
	var ts cryptobyte.String
	if length < 8 || !s.ReadBytes((*[]byte)(&ts), int(length)-4) {
		return Transform{}, malformed(PayloadSA, "transform length %d", length)
	}
	wantLast := byte(moreTransform)
	if isLast {
		wantLast = lastTransform
	}
	if last != wantLast {
		return Transform{}, malformed(PayloadSA, "transform last-substructure %d, want %d", last, wantLast)
	}
	ts.ReadUint8(&typ)
	ts.ReadUint8(&reserved2)
	ts.ReadUint16(&id)
	t := Transform{Type: TransformType(typ), ID: id}
	for !ts.Empty() {
		if len(t.Attributes) == maxAttributes {
			return Transform{}, malformed(PayloadSA, "more than %d attributes", maxAttributes)
		}
		var at, v uint16
		if !ts.ReadUint16(&at) || !ts.ReadUint16(&v) {
			return Transform{}, malformed(PayloadSA, "truncated attribute")
		}
		if at&0x8000 != 0 {
			t.Attributes = append(t.Attributes, Attribute{Type: at & 0x7fff, TV: true, Value: v})
			continue
		}
		var data []byte
		if !ts.ReadBytes(&data, int(v)) {
			return Transform{}, malformed(PayloadSA, "attribute of %d bytes overruns the transform", v)
		}
		t.Attributes = append(t.Attributes, Attribute{Type: at, Data: clone(data)})
	}
	return t, nil
}
