package ike

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func everyPayload() Payloads {
	v4a, v4b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	v6 := netip.MustParseAddr("2001:db8::1")
	sa := &SA{Proposals: append(MustParseProposals(ProtoIKE, "aes256gcm16-aes128gcm16-prfsha384-prfsha256-ecp384-curve25519,aes128gcm16-prfsha512-modp2048"),
		Proposal{Num: 3, Protocol: ProtoESP, SPI: []byte{1, 2, 3, 4}, Transforms: []Transform{
			{Type: TransformENCR, ID: 20, Attributes: []Attribute{{Type: AttrKeyLength, TV: true, Value: 256}, {Type: 99, Data: []byte{7, 7}}, {Type: 98}}},
			{Type: TransformESN, ID: 0},
		}})}
	return Payloads{
		sa,
		&KE{Group: 20, Data: append([]byte{0, 0}, bytes.Repeat([]byte{9}, 94)...)},
		&Nonce{Data: bytes.Repeat([]byte{1}, 32)},
		&Notify{Kind: NAT_DETECTION_SOURCE_IP, Data: make([]byte, 20)},
		&Notify{Protocol: ProtoESP, SPI: []byte{0, 0, 0, 9}, Kind: REKEY_SA},
		&Notify{Protocol: ProtoIKE, SPI: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Kind: INVALID_KE_PAYLOAD, Data: []byte{0, 20}},
		&IDi{AddrID(v4a)}, &IDr{AddrID(v6)}, &IDi{FQDNID("gw.example")}, &IDr{EmailID("a@example")}, &IDi{KeyID([]byte{0xde, 0xad})},
		&Auth{Method: AuthPSK, Data: bytes.Repeat([]byte{2}, 48)},
		&Delete{Protocol: ProtoESP, SPIs: []uint32{1, 0xffffffff}}, &Delete{Protocol: ProtoIKE},
		&Vendor{Data: []byte("strongSwan")},
		&TSi{TrafficSelectors{[]TrafficSelector{HostSelector(v4a, 47), HostSelector(v6, 0),
			{TSType: TS_IPV4_ADDR_RANGE, Protocol: 6, StartPort: 80, EndPort: 79, Start: v4a, End: v4b},
			{TSType: 13, Protocol: 5, Raw: []byte{1, 2, 3}}}}},
		&TSr{TrafficSelectors{[]TrafficSelector{HostSelector(v4b, 47)}}},
		&CP{CfgType: 2, Attributes: []CPAttribute{{Type: 1, Value: []byte{198, 19, 0, 1}}, {Type: 3}}},
		&Unknown{PayloadType: PayloadCERTREQ, Critical: true, Data: []byte{4}},
		&Unknown{PayloadType: 200, Data: []byte("private")},
		&Encrypted{First: PayloadIDi, Data: bytes.Repeat([]byte{3}, 40)},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	m := &Message{SPIi: 0x0102030405060708, SPIr: 0x1112131415161718, Exchange: IKE_AUTH,
		Flags: FlagInitiator | FlagResponse, MessageID: 0xfffffffe, Payloads: everyPayload()}
	raw, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if Header(raw).Length() != uint32(len(raw)) || Header(raw).Version() != 0x20 || Header(raw).NextPayload() != PayloadSA {
		t.Errorf("header %x", raw[:28])
	}
	got, err := DecodeMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip:\n got %#v\nwant %#v", got, m)
	}
	// The decoded message must not alias the buffer.
	clear(raw)
	if !reflect.DeepEqual(got, m) {
		t.Error("decoded message aliases its input")
	}
	if u := got.Payloads.UnsupportedCritical(); u != nil {
		t.Errorf("CERTREQ is understood, got %v", u.PayloadType)
	}
	if n := got.Payloads.Notify(INVALID_KE_PAYLOAD); n == nil || binary.BigEndian.Uint16(n.Data) != 20 {
		t.Error("Notify lookup")
	}
	if got.Payloads.FirstError().Kind != INVALID_KE_PAYLOAD {
		t.Error("FirstError")
	}
}

func TestUnsupportedCritical(t *testing.T) {
	m := &Message{Exchange: INFORMATIONAL, Payloads: Payloads{&Unknown{PayloadType: 201, Critical: true}}}
	raw, _ := m.Encode()
	if raw[HeaderLen+1] != 0x80 {
		t.Fatalf("critical bit not written: %x", raw[HeaderLen:])
	}
	got, err := DecodeMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	if u := got.Payloads.UnsupportedCritical(); u == nil || u.PayloadType != 201 {
		t.Errorf("critical unknown payload not reported: %v", u)
	}
	// Known payloads ignore the critical bit (§3.2).
	m = &Message{Exchange: INFORMATIONAL, Payloads: Payloads{&Vendor{Data: []byte{1}}}}
	raw, _ = m.Encode()
	raw[HeaderLen+1] = 0x80
	got, err = DecodeMessage(raw)
	if err != nil || got.Payloads.UnsupportedCritical() != nil {
		t.Errorf("critical vendor id: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := func() []byte {
		m := &Message{SPIi: 1, Exchange: IKE_SA_INIT, Flags: FlagInitiator, Payloads: Payloads{
			&SA{Proposals: MustParseProposals(ProtoIKE, "aes256gcm16-prfsha384-ecp384")},
			&Nonce{Data: make([]byte, 32)},
		}}
		raw, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	if _, err := DecodeMessage(good()); err != nil {
		t.Fatal(err)
	}
	const sa = HeaderLen // SA generic header
	cases := map[string]func(b []byte) []byte{
		"short":              func(b []byte) []byte { return b[:27] },
		"length mismatch":    func(b []byte) []byte { return b[:len(b)-1] },
		"trailing byte":      func(b []byte) []byte { b = append(b, 0); Header(b).SetLength(uint32(len(b))); return b },
		"payload overrun":    func(b []byte) []byte { binary.BigEndian.PutUint16(b[sa+2:], 0xff00); return b },
		"payload under 4":    func(b []byte) []byte { binary.BigEndian.PutUint16(b[sa+2:], 3); return b },
		"proposal last flag": func(b []byte) []byte { b[sa+4] = 2; return b },
		"transform count":    func(b []byte) []byte { b[sa+4+7]++; return b },
		"transform last":     func(b []byte) []byte { b[sa+4+8] = 0; return b },
		"nonce too short": func(b []byte) []byte {
			b = b[:len(b)-17]
			binary.BigEndian.PutUint16(b[len(b)-15-4+2:], 15+4)
			Header(b).SetLength(uint32(len(b)))
			return b
		},
		"chain runs past end": func(b []byte) []byte { b[len(b)-36] = byte(PayloadVendor); return b },
	}
	for name, mutate := range cases {
		if _, err := DecodeMessage(mutate(good())); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
	b := good()
	b[offVersion] = 0x30
	if _, err := DecodeMessage(b); !errors.Is(err, ErrVersion) {
		t.Errorf("version 3: %v", err)
	}
}

func TestDecodeLimits(t *testing.T) {
	ps := make(Payloads, maxPayloads+1)
	for i := range ps {
		ps[i] = &Vendor{}
	}
	raw, _ := (&Message{Payloads: ps}).Encode()
	if _, err := DecodeMessage(raw); !errors.Is(err, ErrMalformed) {
		t.Errorf("%d payloads accepted", len(ps))
	}
	raw, _ = (&Message{Payloads: ps[:maxPayloads]}).Encode()
	if _, err := DecodeMessage(raw); err != nil {
		t.Errorf("%d payloads refused: %v", maxPayloads, err)
	}
	// SK must be last, and a nested SK is refused.
	raw, _ = (&Message{Payloads: Payloads{&Encrypted{First: PayloadNone, Data: make([]byte, 30)}}}).Encode()
	raw = append(raw, 0, 0, 0, 4)
	Header(raw).SetLength(uint32(len(raw)))
	if _, err := DecodeMessage(raw); !errors.Is(err, ErrMalformed) {
		t.Errorf("payload after SK accepted: %v", err)
	}
	if _, err := (&Message{Payloads: Payloads{&Encrypted{}, &Vendor{}}}).Encode(); err == nil {
		t.Error("encoded SK before another payload")
	}
}

func TestPayloadRejects(t *testing.T) {
	for _, c := range []struct {
		t    PayloadType
		body []byte
	}{
		{PayloadKE, []byte{0, 20, 0}},
		{PayloadKE, make([]byte, 4+maxKEDataLen+1)},
		{PayloadNonce, make([]byte, 15)},
		{PayloadNonce, make([]byte, 257)},
		{PayloadIDi, []byte{1, 0, 0, 0, 1, 2, 3}},
		{PayloadIDr, []byte{5, 0, 0, 0, 1, 2, 3, 4}},
		{PayloadAUTH, []byte{2, 0, 0}},
		{PayloadNotify, []byte{3, 4, 0, 1, 0, 0}},
		{PayloadNotify, []byte{3, 9, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{PayloadDelete, []byte{1, 0, 0, 1}},
		{PayloadDelete, []byte{3, 4, 0, 2, 0, 0, 0, 1}},
		{PayloadDelete, []byte{3, 8, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1}},
		{PayloadDelete, []byte{9, 4, 0, 0}},
		{PayloadTSi, []byte{0, 0, 0, 0}},
		{PayloadTSi, []byte{1, 0, 0, 0, 7, 47, 0, 16, 0, 0, 255, 255, 198, 18, 0, 2, 198, 18, 0, 1}},
		{PayloadTSr, []byte{1, 0, 0, 0, 7, 47, 0, 17, 0, 0, 255, 255, 198, 18, 0, 2, 198, 18, 0, 2, 0}},
		{PayloadTSr, []byte{2, 0, 0, 0, 7, 47, 0, 16, 0, 0, 255, 255, 198, 18, 0, 2, 198, 18, 0, 2}},
		{PayloadCP, []byte{1, 0, 0, 0, 0, 1, 0, 5, 1}},
		{PayloadSA, nil},
		{PayloadSA, []byte{0, 0, 0, 8, 1, 1, 0, 0}},
		{PayloadSK, make([]byte, 40)},
	} {
		if _, err := DecodePayload(c.t, c.body); !errors.Is(err, ErrMalformed) {
			t.Errorf("%v %x: got %v", c.t, c.body, err)
		}
	}
}

func TestParseID(t *testing.T) {
	for s, want := range map[string]ID{
		"198.18.0.1":    AddrID(netip.MustParseAddr("198.18.0.1")),
		"2001:db8::2":   {Type: ID_IPV6_ADDR, Data: netip.MustParseAddr("2001:db8::2").AsSlice()},
		"@gw.example":   FQDNID("gw.example"),
		"gw.example":    FQDNID("gw.example"),
		"me@gw.example": EmailID("me@gw.example"),
		"@#c0ffee":      KeyID([]byte{0xc0, 0xff, 0xee}),
	} {
		got, err := ParseID(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseID(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "@#c0f", "@#zz"} {
		if _, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) accepted", s)
		}
	}
}
