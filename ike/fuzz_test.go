package ike

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// fuzzSeeds are whole messages: the python-built vectors and our own.
func fuzzSeeds(f *testing.F) [][]byte {
	var out [][]byte
	if raw, err := os.ReadFile("testdata/vectors.json"); err == nil {
		for _, k := range []string{"init_req", "init_resp", "auth_msg"} {
			for _, line := range bytes.Split(raw, []byte("\n")) {
				pre := []byte(`"` + k + `": "`)
				if i := bytes.Index(line, pre); i >= 0 {
					h := line[i+len(pre):]
					h = h[:bytes.IndexByte(h, '"')]
					if b, err := hex.DecodeString(string(h)); err == nil {
						out = append(out, b)
					}
				}
			}
		}
	}
	// Real strongSwan datagrams, when recorded.
	if raw, err := os.ReadFile("testdata/strongswan/vector.json"); err == nil {
		var v struct{ Messages []struct{ Bytes string } }
		if json.Unmarshal(raw, &v) == nil {
			for _, m := range v.Messages {
				if b, err := hex.DecodeString(m.Bytes); err == nil {
					out = append(out, b)
				}
			}
		}
	}
	m := &Message{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, Flags: FlagResponse, MessageID: 1, Payloads: everyPayload()}
	raw, err := m.Encode()
	if err != nil {
		f.Fatal(err)
	}
	// An Encrypted Fragment (RFC 7383).
	frag := &Message{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, MessageID: 1,
		Payloads: Payloads{&EncryptedFragment{First: PayloadIDi, Number: 1, Total: 2, Data: bytes.Repeat([]byte{3}, 40)}}}
	rawFrag, err := frag.Encode()
	if err != nil {
		f.Fatal(err)
	}
	return append(out, raw, rawFrag)
}

func FuzzDecodeMessage(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Add(make([]byte, HeaderLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
		}
		_ = m.Payloads.UnsupportedCritical()
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		if len(enc) != len(b) {
			t.Fatalf("re-encoded %d bytes from %d", len(enc), len(b))
		}
		m2, err := DecodeMessage(enc)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip differs:\n%#v\n%#v", m, m2)
		}
		enc2, _ := m2.Encode()
		if !bytes.Equal(enc, enc2) {
			t.Fatal("encoding is not canonical")
		}
	})
}

// FuzzOpen feeds hostile ciphertext to the SK opener: it must fail cleanly.
// Seeds include correctly sealed messages, so the fuzzer also explores the
// inner-payload decoder behind a valid ICV.
func FuzzOpen(f *testing.F) {
	key := Secret(bytes.Repeat([]byte{7}, 36))
	c, _ := NewSKCipher(key)
	for _, inner := range []Payloads{nil, everyPayload()[:len(everyPayload())-1], {&Notify{Kind: AUTHENTICATION_FAILED}}} {
		raw, err := c.Seal(&Message{SPIi: 1, SPIr: 2, Exchange: INFORMATIONAL}, inner)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
		}
		c, _ := NewSKCipher(key)
		inner, err := c.Open(b, m)
		if err != nil {
			return
		}
		// What opened must seal again and open to the same payloads.
		raw, err := c.Seal(&Message{SPIi: m.SPIi, SPIr: m.SPIr, Exchange: m.Exchange}, inner)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := DecodeMessage(raw)
		if err != nil {
			t.Fatal(err)
		}
		inner2, err := c.Open(raw, m2)
		if err != nil || !reflect.DeepEqual(inner, inner2) {
			t.Fatalf("re-sealed payloads differ: %v", err)
		}
	})
}

// fuzzPayload is the per-payload round trip: decode, encode, decode equal.
func fuzzPayload(f *testing.F, typ PayloadType, seeds ...[]byte) {
	for _, p := range everyPayload() {
		if p.Type() == typ {
			f.Add(EncodePayload(p))
		}
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := DecodePayload(typ, body)
		if err != nil {
			return
		}
		if p.Type() != typ {
			t.Fatalf("decoded %v as %v", typ, p.Type())
		}
		enc := EncodePayload(p)
		p2, err := DecodePayload(typ, enc)
		if err != nil {
			t.Fatalf("re-encoded payload does not decode: %v", err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip differs:\n%#v\n%#v", p, p2)
		}
		if !bytes.Equal(enc, EncodePayload(p2)) {
			t.Fatal("encoding is not canonical")
		}
	})
}

func FuzzDecodeSA(f *testing.F) {
	fuzzPayload(f, PayloadSA, EncodePayload(&SA{Proposals: MustParseProposals(ProtoESP, "aes256gcm16-aes128gcm16-ecp384-esn-noesn")}))
}
func FuzzDecodeKE(f *testing.F)      { fuzzPayload(f, PayloadKE, []byte{0, 31, 0, 0}) }
func FuzzDecodeNonce(f *testing.F)   { fuzzPayload(f, PayloadNonce) }
func FuzzDecodeIDi(f *testing.F)     { fuzzPayload(f, PayloadIDi, []byte{5, 0, 0, 0}) }
func FuzzDecodeIDr(f *testing.F)     { fuzzPayload(f, PayloadIDr, []byte{1, 0, 0, 0, 198, 18, 0, 1}) }
func FuzzDecodeAuth(f *testing.F)    { fuzzPayload(f, PayloadAUTH) }
func FuzzDecodeNotify(f *testing.F)  { fuzzPayload(f, PayloadNotify, []byte{0, 0, 0x40, 7}) }
func FuzzDecodeDelete(f *testing.F)  { fuzzPayload(f, PayloadDelete, []byte{3, 4, 0, 0}) }
func FuzzDecodeVendor(f *testing.F)  { fuzzPayload(f, PayloadVendor) }
func FuzzDecodeTSi(f *testing.F)     { fuzzPayload(f, PayloadTSi) }
func FuzzDecodeTSr(f *testing.F)     { fuzzPayload(f, PayloadTSr) }
func FuzzDecodeCP(f *testing.F)      { fuzzPayload(f, PayloadCP) }
func FuzzDecodeUnknown(f *testing.F) { fuzzPayload(f, PayloadCERTREQ, []byte{4, 1, 2}) }

// FuzzEngineRequest sends an established responder authenticated requests
// with fuzzed inner payloads: whatever they say, the engine must not panic
// and must answer (one response per request, §2.1).
func FuzzEngineRequest(f *testing.F) {
	for _, p := range everyPayload()[:len(everyPayload())-1] {
		b, _ := appendChain(nil, Payloads{p})
		f.Add(uint8(CREATE_CHILD_SA), uint8(p.Type()), b)
		f.Add(uint8(INFORMATIONAL), uint8(p.Type()), b)
	}
	f.Fuzz(func(t *testing.T, exch, first uint8, chain []byte) {
		n := 0
		inner, err := decodeChain(PayloadType(first), chain, false, &n)
		if err != nil {
			return
		}
		a, b := newPair(t, nil)
		establish(t, a, b)
		sa := a.e.primary()
		m := &Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: ExchangeType(exch), Flags: FlagInitiator, MessageID: sa.nextReqID}
		raw, err := sa.out.Seal(m, inner)
		if err != nil {
			return
		}
		b.e.handle(raw, a.addr, t0)
		switch ExchangeType(exch) {
		case IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL:
			if len(b.conn.out) != 1 {
				t.Fatalf("%d responses", len(b.conn.out))
			}
		}
	})
}

// FuzzEngineInit sends a responder IKE_SA_INIT requests built from fuzzed
// payloads, with and without cookies demanded: whatever they say it must
// not panic, answer at most once, and keep a bounded number of half-open
// SAs.
func FuzzEngineInit(f *testing.F) {
	a, _ := newPeers(&testing.T{}, nil)
	a.e.initiate(t0)
	init, _ := DecodeMessage(a.conn.out[0])
	body, _ := appendChain(nil, init.Payloads)
	f.Add(uint8(init.Payloads[0].Type()), body, false)
	f.Add(uint8(init.Payloads[0].Type()), body, true)
	withCookie := append(Payloads{&Notify{Kind: COOKIE, Data: make([]byte, cookieLen)}}, init.Payloads...)
	cbody, _ := appendChain(nil, withCookie)
	f.Add(uint8(PayloadNotify), cbody, true)
	f.Fuzz(func(t *testing.T, first uint8, chain []byte, cookies bool) {
		n := 0
		ps, err := decodeChain(PayloadType(first), chain, false, &n)
		if err != nil || len(ps) == 0 {
			return
		}
		a, b := newPeers(t, func(a, b *Config) { b.CookieThreshold = -1 })
		if cookies {
			b.e.cfg.CookieThreshold = 1
			b.e.notePending(t0, 1) // one answered request: cookies from now on
		}
		for i := uint64(0); i < 3; i++ {
			m := &Message{SPIi: 0x1000 + i, Exchange: IKE_SA_INIT, Flags: FlagInitiator, Payloads: ps}
			raw, err := m.Encode()
			if err != nil {
				return
			}
			b.e.handle(raw, a.addr, t0)
			if len(b.conn.out) > 1 {
				t.Fatalf("%d answers", len(b.conn.out))
			}
			b.conn.out = nil
		}
		if b.e.half.len() > maxHalfOpen {
			t.Fatalf("%d half-open SAs", b.e.half.len())
		}
	})
}
