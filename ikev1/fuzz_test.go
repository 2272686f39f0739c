package ikev1

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// FuzzDecode: any datagram decodes or fails cleanly, bounded; what
// decodes re-encodes to a message that decodes to the same payloads, and
// the typed views of each payload never panic.
func FuzzDecode(f *testing.F) {
	sa := phase1SA([]Phase1Suite{{KeyBits: 128, PRF: 2, DH: 14, Lifetime: 3600e9}}).Encode()
	f.Add(Encode(Header{ICookie: 1, Exchange: ExchangeMain}, []Payload{{PayloadSA, sa}, {PayloadVendor, VendorDPD}}))
	f.Add(Encode(Header{ICookie: 1, RCookie: 2, Exchange: ExchangeInfo}, []Payload{
		{PayloadNotify, Notify{Protocol: 1, Type: NotifyInitialContact, SPI: make([]byte, 16)}.Encode()},
		{PayloadDelete, Delete{Protocol: 3, SPIs: [][]byte{{1, 2, 3, 4}}}.Encode()},
		{PayloadID, HostID(addrA, 47).Encode()}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		for _, p := range m.Payloads {
			switch p.Type {
			case PayloadSA:
				if sa, err := DecodeSA(p.Body); err == nil {
					again, err := DecodeSA(sa.Encode())
					if err != nil || len(again.Proposals) != len(sa.Proposals) {
						t.Fatalf("SA re-encoding does not decode alike: %v", err)
					}
					for _, pr := range sa.Proposals {
						for _, tr := range pr.Transforms {
							phase1Of(tr)
							phase2Of(tr)
						}
					}
				}
			case PayloadID:
				if id, err := DecodeID(p.Body); err == nil && !bytes.Equal(id.Encode()[4:], p.Body[4:]) {
					t.Fatal("ID round trip differs")
				}
			case PayloadNotify:
				// The DOI may be 0 or 1; we always send 1.
				if n, err := DecodeNotify(p.Body); err == nil && !bytes.Equal(n.Encode()[4:], p.Body[4:]) {
					t.Fatal("notify round trip differs")
				}
			case PayloadDelete:
				if d, err := DecodeDelete(p.Body); err == nil && !bytes.Equal(d.Encode()[4:], p.Body[4:]) {
					t.Fatal("delete round trip differs")
				}
			}
		}
		if m.Encrypted != nil {
			return
		}
		again, err := Decode(Encode(m.Header, m.Payloads))
		if err != nil || len(again.Payloads) != len(m.Payloads) {
			t.Fatalf("re-encoded message: %v", err)
		}
		for i := range m.Payloads {
			if again.Payloads[i].Type != m.Payloads[i].Type || !bytes.Equal(again.Payloads[i].Body, m.Payloads[i].Body) {
				t.Fatalf("payload %d differs after a round trip", i)
			}
		}
	})
}

// FuzzResponder feeds datagrams to a responder engine: whatever comes, it
// must not panic, and its state stays within its caps.
func FuzzResponder(f *testing.F) {
	cfg := testConfig(addrB, addrA, false)
	sa := phase1SA([]Phase1Suite{{KeyBits: 128, PRF: 2, DH: 14, Lifetime: 3600e9}}).Encode()
	f.Add(Encode(Header{ICookie: 7, Exchange: ExchangeMain}, []Payload{{PayloadSA, sa}, {PayloadVendor, VendorDPD}}), []byte{})
	f.Add(Encode(Header{ICookie: 7, Exchange: ExchangeMain}, []Payload{{PayloadSA, sa}}),
		Encode(Header{ICookie: 7, RCookie: 1, Exchange: ExchangeMain}, []Payload{{PayloadKE, make([]byte, 256)}, {PayloadNonce, make([]byte, 32)}}))
	f.Add(Encode(Header{ICookie: 7, RCookie: 1, Exchange: ExchangeQuick, MsgID: 5, Flags: FlagEncryption}, nil), []byte{})
	f.Fuzz(func(t *testing.T, m1, m2 []byte) {
		e, err := New(cfg, &plane{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		for _, m := range [][]byte{m1, m2, m1} {
			if !IsV1(m) {
				continue
			}
			e.handle(now, m)
			// The second message answers our cookie when it can.
			if len(e.p1s) == 1 && len(m2) >= 16 {
				binary.BigEndian.PutUint64(m2[8:], e.p1s[0].rc)
			}
		}
		e.tick(now.Add(time.Minute))
		if len(e.p1s) > maxPhase1+maxHalfOpen {
			t.Fatalf("%d phase 1 SAs", len(e.p1s))
		}
	})
}

// FuzzInitiator feeds answers to an initiator engine that has sent its
// first Main Mode message: each datagram gets our initiator cookie, so it
// reaches the state machine (messages 2, 4 and 6, informational, Quick
// Mode). Whatever comes, no panic, and the state stays within its caps.
func FuzzInitiator(f *testing.F) {
	cfg := testConfig(addrA, addrB, true)
	sa := phase1SA([]Phase1Suite{{KeyBits: 128, PRF: 2, DH: 14, Lifetime: 3600e9}}).Encode()
	f.Add(Encode(Header{RCookie: 9, Exchange: ExchangeMain}, []Payload{{PayloadSA, sa}, {PayloadVendor, VendorDPD}}),
		Encode(Header{RCookie: 9, Exchange: ExchangeMain}, []Payload{{PayloadKE, make([]byte, 256)}, {PayloadNonce, make([]byte, 32)}}))
	f.Add(Encode(Header{RCookie: 9, Exchange: ExchangeMain}, []Payload{{PayloadSA, sa}}),
		Encode(Header{RCookie: 9, Exchange: ExchangeMain, Flags: FlagEncryption}, []Payload{{PayloadID, make([]byte, 8)}, {PayloadHash, make([]byte, 20)}}))
	f.Add(Encode(Header{RCookie: 9, Exchange: ExchangeInfo}, []Payload{{PayloadNotify, Notify{Protocol: ProtoISAKMP, Type: NotifyNoProposalChosen}.Encode()}}), []byte{})
	f.Add(Encode(Header{RCookie: 9, Exchange: ExchangeQuick, MsgID: 5, Flags: FlagEncryption}, nil), []byte{})
	f.Fuzz(func(t *testing.T, m1, m2 []byte) {
		e, err := New(cfg, &plane{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		e.startMain(now)
		ic := e.p1s[0].ic
		for _, m := range [][]byte{m1, m2, m1, m2} {
			if !IsV1(m) {
				continue
			}
			m = bytes.Clone(m)
			binary.BigEndian.PutUint64(m, ic)
			e.handle(now, m)
		}
		for range 3 {
			now = now.Add(time.Minute)
			e.tick(now)
		}
		if len(e.p1s) > maxPhase1+maxHalfOpen {
			t.Fatalf("%d phase 1 SAs", len(e.p1s))
		}
		for _, p := range e.p1s {
			if len(p.quicks) > maxQuick {
				t.Fatalf("%d Quick Modes on one phase 1 SA", len(p.quicks))
			}
		}
	})
}
