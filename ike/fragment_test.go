package ike

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
	"time"
)

// smallFragments makes both peers fragment anything over 200-byte
// datagrams (IKE_AUTH then takes several).
func smallFragments(a, b *Config) { a.FragmentSize, b.FragmentSize = 200, 200 }

// pump delivers every datagram either peer sends until both are quiet,
// and returns them all in order.
func pump(t *testing.T, a, b *testPeer, now time.Time) [][]byte {
	t.Helper()
	var all [][]byte
	for i := 0; len(a.conn.out)+len(b.conn.out) > 0; i++ {
		if i > 1000 {
			t.Fatal("the peers do not settle")
		}
		from, to := a, b
		if len(a.conn.out) == 0 {
			from, to = b, a
		}
		all = append(all, deliver(t, from, to, now))
	}
	return all
}

func drops(p *testPeer, r DropReason) uint64 { return p.e.drops[r].Load() }

func TestFragmentCiphersRoundTrip(t *testing.T) {
	inner := everyPayload()
	inner = inner[:len(inner)-1] // no SK inside
	for _, s := range []string{"aes256gcm16-prfsha384-ecp384", "chacha20poly1305-prfsha256-x25519", "aes128-sha256-prfsha256-ecp256", "aes256-sha1-prfsha1-modp2048"} {
		suite, err := SuiteOf(MustParseProposals(ProtoIKE, s)[0])
		if err != nil {
			t.Fatal(s, err)
		}
		enc, integ := make(Secret, suite.KeyLen()), make(Secret, suite.IntegKeyLen())
		for i := range enc {
			enc[i] = byte(i)
		}
		seal, _ := NewSK(suite, enc, integ, nil)
		open, _ := NewSK(suite, enc, integ, nil)
		m := &Message{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, Flags: FlagInitiator, MessageID: 1}
		for _, limit := range []int{120, 333, 1000} {
			frags, err := fragment(seal.(fragCipher), m, inner, limit)
			if err != nil {
				t.Fatalf("%s/%d: %v", s, limit, err)
			}
			var r reassembly
			var whole []byte
			for i, raw := range frags {
				if len(raw) > limit {
					t.Errorf("%s: fragment of %d bytes over %d", s, len(raw), limit)
				}
				got, err := DecodeMessage(raw)
				if err != nil {
					t.Fatalf("%s: fragment %d: %v", s, i+1, err)
				}
				if enc, _ := got.Encode(); !bytes.Equal(enc, raw) {
					t.Errorf("%s: fragment %d does not re-encode", s, i+1)
				}
				f := fragmentOf(got)
				if f == nil || int(f.Number) != i+1 || int(f.Total) != len(frags) || (i > 0) != (f.First == PayloadNone) {
					t.Fatalf("%s: fragment %d: %+v", s, i+1, f)
				}
				content, err := open.(fragCipher).openBody(raw, len(raw)-len(f.Data))
				if err != nil {
					t.Fatalf("%s: fragment %d: %v", s, i+1, err)
				}
				// Any changed byte, header included, fails the check.
				bad := bytes.Clone(raw)
				bad[HeaderLen+5] ^= 1 // Fragment Number
				if _, err := open.(fragCipher).openBody(bad, len(raw)-len(f.Data)); err != ErrIntegrity {
					t.Errorf("%s: tampered Fragment Number: %v", s, err)
				}
				var reason DropReason
				var dropped bool
				whole, reason, dropped = r.add(1, f, content, raw, maxReassembled)
				if dropped {
					t.Fatalf("%s: dropped: %v", s, reason)
				}
			}
			got, err := innerFromFragments(fragmentOf(mustDecode(t, frags[0])).First, whole)
			if err != nil || !reflect.DeepEqual(got, inner) {
				t.Fatalf("%s/%d: reassembled payloads differ (%d fragments): %v", s, limit, len(frags), err)
			}
		}
	}
}

func mustDecode(t *testing.T, raw []byte) *Message {
	t.Helper()
	m, err := DecodeMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFragmentedHandshake(t *testing.T) {
	a, b := newPair(t, smallFragments)
	a.e.initiate(t0)
	all := pump(t, a, b, t0)
	for _, p := range []*testPeer{a, b} {
		st := p.e.Status()
		if st.State != StateEstablished || len(st.Children) != 1 {
			t.Fatalf("%s: %+v", p.name, st)
		}
		c := st.Counters
		if c.FragmentsSent < 2 || c.FragmentsReceived < 2 || c.FragmentsReassembled != 1 || c.Dropped != 0 {
			t.Errorf("%s: sent %d received %d reassembled %d dropped %d", p.name, c.FragmentsSent, c.FragmentsReceived, c.FragmentsReassembled, c.Dropped)
		}
	}
	checkCrosswise(t, a.dp.installed[0], b.dp.installed[0])
	if n := a.e.Status().Counters.FragmentsSent; n != b.e.Status().Counters.FragmentsReceived {
		t.Errorf("a sent %d fragments, b received %d", n, b.e.Status().Counters.FragmentsReceived)
	}
	for i, raw := range all {
		m := mustDecode(t, raw)
		switch {
		case m.Exchange == IKE_SA_INIT:
			if m.Payloads.Notify(IKEV2_FRAGMENTATION_SUPPORTED) == nil {
				t.Errorf("datagram %d: IKE_SA_INIT without IKEV2_FRAGMENTATION_SUPPORTED", i)
			}
		case fragmentOf(m) == nil:
			t.Errorf("datagram %d: %v not fragmented", i, m.Exchange)
		case len(raw) > 200-20-udpMarker:
			t.Errorf("datagram %d: %d bytes", i, len(raw))
		}
	}
}

func TestFragmentationNeedsBoth(t *testing.T) {
	for _, off := range []string{"initiator", "responder"} {
		a, b := newPair(t, func(ca, cb *Config) {
			smallFragments(ca, cb)
			if off == "initiator" {
				ca.NoFragmentation = true
			} else {
				cb.NoFragmentation = true
			}
		})
		a.e.initiate(t0)
		all := pump(t, a, b, t0)
		if len(all) != 4 {
			t.Fatalf("%s off: %d datagrams", off, len(all))
		}
		if n := mustDecode(t, all[1]).Payloads.Notify(IKEV2_FRAGMENTATION_SUPPORTED); n != nil {
			t.Errorf("%s off: the responder announced fragmentation", off)
		}
		if n := mustDecode(t, all[0]).Payloads.Notify(IKEV2_FRAGMENTATION_SUPPORTED); (n == nil) != (off == "initiator") {
			t.Errorf("%s off: initiator's notify %v", off, n)
		}
		if len(all[2]) <= 200-20-udpMarker {
			t.Errorf("%s off: IKE_AUTH of %d bytes: the test does not exercise the limit", off, len(all[2]))
		}
		for _, p := range []*testPeer{a, b} {
			if st := p.e.Status(); st.State != StateEstablished || st.Counters.FragmentsSent != 0 {
				t.Errorf("%s off: %s: %v, %d fragments sent", off, p.name, st.State, st.Counters.FragmentsSent)
			}
		}
	}
}

// A lost fragment costs a retransmission of every fragment (§2.6); the
// responder answers a retransmitted request once, on its fragment 1.
func TestFragmentLossRetransmits(t *testing.T) {
	a, b := newPair(t, smallFragments)
	a.e.initiate(t0)
	deliver(t, a, b, t0) // IKE_SA_INIT
	deliver(t, b, a, t0)
	n := len(a.conn.out)
	if n < 2 {
		t.Fatalf("IKE_AUTH request in %d datagrams", n)
	}
	a.conn.out = a.conn.out[1:] // fragment 1 lost
	for len(a.conn.out) > 0 {
		deliver(t, a, b, t0)
	}
	if len(b.conn.out) != 0 || len(b.e.sas) != 0 {
		t.Fatal("the responder answered an incomplete request")
	}
	now := t0.Add(3 * time.Second)
	a.e.tick(now)
	if len(a.conn.out) != n {
		t.Fatalf("retransmitted %d datagrams, want all %d", len(a.conn.out), n)
	}
	for len(a.conn.out) > 0 {
		deliver(t, a, b, now)
	}
	if got := drops(b, DropFragment); got != uint64(n-1) {
		t.Errorf("responder dropped %d duplicate fragments, want %d", got, n-1)
	}
	m := len(b.conn.out)
	if m < 2 {
		t.Fatalf("IKE_AUTH response in %d datagrams", m)
	}
	b.conn.out = b.conn.out[:m-1] // the response's last fragment lost
	for len(b.conn.out) > 0 {
		deliver(t, b, a, now)
	}
	if a.e.Status().State == StateEstablished {
		t.Fatal("established on an incomplete response")
	}
	now = now.Add(5 * time.Second)
	a.e.tick(now)
	for len(a.conn.out) > 0 {
		deliver(t, a, b, now)
	}
	if len(b.conn.out) != m {
		t.Fatalf("responder resent %d datagrams, want its %d fragments", len(b.conn.out), m)
	}
	pump(t, a, b, now)
	for _, p := range []*testPeer{a, b} {
		if st := p.e.Status(); st.State != StateEstablished || len(st.Children) != 1 {
			t.Fatalf("%s: %+v", p.name, st)
		}
	}
	if got := drops(b, DropFragment); got != uint64(2*(n-1)) {
		t.Errorf("responder dropped %d fragments, want %d (non-first fragments of the retransmission too)", got, 2*(n-1))
	}
	if got := drops(a, DropFragment); got != uint64(m-1) {
		t.Errorf("initiator dropped %d duplicate fragments, want %d", got, m-1)
	}
}

// forger seals fragments of a's next request to b with a's real keys:
// authentic, but as hostile as a peer that holds the keys can make them.
type forger struct {
	t    *testing.T
	a, b *testPeer
	m    Message
}

func newForger(t *testing.T, a, b *testPeer, exch ExchangeType) *forger {
	sa := a.e.sas[0]
	return &forger{t: t, a: a, b: b, m: Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: exch, Flags: sa.flags(false), MessageID: sa.nextReqID}}
}

func (f *forger) frag(first PayloadType, number, total uint16, content []byte) []byte {
	f.t.Helper()
	raw, err := sealFragment(f.a.e.sas[0].out.(fragCipher), &f.m, first, number, total, content)
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

// send hands raw to b and checks what it counted.
func (f *forger) send(raw []byte, want DropReason, what string) {
	f.t.Helper()
	before := drops(f.b, want)
	total := f.b.e.Status().Counters.Dropped
	f.b.e.handle(raw, f.a.addr, t0)
	if got := drops(f.b, want); got != before+1 {
		f.t.Errorf("%s: %v drops %d -> %d", what, want, before, got)
	}
	if got := f.b.e.Status().Counters.Dropped; got != total+1 {
		f.t.Errorf("%s: %d drops in all, want one more than %d", what, got, total)
	}
	if len(f.b.conn.out) != 0 {
		f.t.Errorf("%s: b answered", what)
	}
}

// kept hands raw to b and checks that it was taken in, not dropped.
func (f *forger) kept(raw []byte, what string) {
	f.t.Helper()
	total := f.b.e.Status().Counters.Dropped
	f.b.e.handle(raw, f.a.addr, t0)
	if got := f.b.e.Status().Counters.Dropped; got != total {
		f.t.Errorf("%s: dropped", what)
	}
}

func TestFragmentHostile(t *testing.T) {
	a, b := newPair(t, smallFragments)
	a.e.initiate(t0)
	pump(t, a, b, t0)
	f := newForger(t, a, b, INFORMATIONAL)
	r := &b.e.sas[0].frag.req
	// The real message the hostile fragments interleave with: a Delete
	// of nothing (an empty one would fit in one datagram).
	content, _ := appendChain(nil, Payloads{&Notify{Kind: NotifyType(40000), Data: bytes.Repeat([]byte{5}, 150)}})

	forged := f.frag(PayloadNotify, 1, 3, content[:50])
	forged[len(forged)-1] ^= 1
	f.send(forged, DropIntegrity, "forged ICV")
	if r.total != 0 {
		t.Fatal("a forged fragment was kept")
	}
	f.kept(f.frag(PayloadNotify, 1, 3, content[:50]), "fragment 1 of 3")
	f.send(f.frag(PayloadNotify, 1, 3, content[:50]), DropFragment, "duplicate")
	f.send(f.frag(PayloadNone, 2, 2, content[50:]), DropFragment, "fewer Total Fragments")
	f.kept(f.frag(PayloadNone, 2, 4, content[50:100]), "more Total Fragments")
	if r.total != 4 || r.have != 1 {
		t.Fatalf("more Total Fragments did not restart: total %d, have %d", r.total, r.have)
	}
	f.send(f.frag(PayloadNone, 1, maxFragments+1, nil), DropFragmentLimit, "too many fragments")
	big := bytes.Repeat([]byte{1}, 40000)
	f.kept(f.frag(PayloadNone, 3, 4, big), "a large fragment")
	f.send(f.frag(PayloadNone, 4, 4, big), DropFragmentLimit, "over the reassembly bound")
	if r.total != 0 || r.bytes != 0 {
		t.Fatal("the message over the bound was kept")
	}
	mid := f.m.MessageID
	f.m.MessageID = mid + 1
	f.send(f.frag(PayloadNotify, 1, 1, content), DropMessageID, "next message ID")
	f.m.MessageID = mid
	f.m.Exchange = IKE_SA_INIT
	f.send(f.frag(PayloadNotify, 1, 1, content), DropMalformed, "fragmented IKE_SA_INIT")
	f.m.Exchange = INFORMATIONAL
	f.m.Flags |= FlagResponse
	f.send(f.frag(PayloadNotify, 1, 1, content), DropUnexpected, "response to no request")
	f.m.Flags &^= FlagResponse
	// A pad length beyond the plaintext, behind a valid ICV.
	f.send(f.badPadding(), DropMalformed, "bad pad length")
	if r.total != 0 {
		t.Fatal("a fragment with a bad pad length was kept")
	}

	// After all that, the real message still goes through.
	f.kept(f.frag(PayloadNotify, 1, 3, content[:50]), "real 1/3")
	f.kept(f.frag(PayloadNone, 3, 3, content[100:]), "real 3/3")
	f.b.e.handle(f.frag(PayloadNone, 2, 3, content[50:100]), a.addr, t0)
	if len(b.conn.out) != 1 || b.e.Status().Counters.FragmentsReassembled != 2 {
		t.Fatalf("the real message was not answered: %d datagrams, %d reassembled", len(b.conn.out), b.e.Status().Counters.FragmentsReassembled)
	}
	if n := b.e.Status().Counters.Exchanges[ExchangeKey{Exchange: "INFORMATIONAL", Result: "UNSUPPORTED_CRITICAL_PAYLOAD"}]; n != 0 {
		t.Errorf("unexpected answer %d", n)
	}
}

// badPadding is an authentic fragment 1 of 3 whose pad length byte
// claims more than the plaintext holds.
func (f *forger) badPadding() []byte {
	c := f.a.e.sas[0].out.(*aeadSK)
	plain := []byte{1, 2, 3, 200}
	b := f.m.appendHeader(nil)
	skfLen := skfHeaderLen + gcmIVLen + len(plain) + c.aead.Overhead()
	Header(b).SetNextPayload(PayloadSKF)
	Header(b).SetLength(uint32(HeaderLen + skfLen))
	b = append(b, byte(PayloadNotify), 0, byte(skfLen>>8), byte(skfLen), 0, 1, 0, 3)
	c.iv++
	var nonce [gcmSaltLen + gcmIVLen]byte
	copy(nonce[:], c.salt[:])
	binary.BigEndian.PutUint64(nonce[gcmSaltLen:], c.iv)
	aad := len(b)
	b = append(b, nonce[gcmSaltLen:]...)
	return c.aead.Seal(b, nonce[:], plain, b[:aad])
}

// Before IKE_AUTH has authenticated the peer, anyone who completed
// IKE_SA_INIT holds the keys: a half-open SA keeps far less.
func TestFragmentUnauthenticatedBound(t *testing.T) {
	a, b := newPair(t, smallFragments)
	a.e.initiate(t0)
	deliver(t, a, b, t0)
	deliver(t, b, a, t0)
	a.conn.out = nil // the real IKE_AUTH is not sent
	f := newForger(t, a, b, IKE_AUTH)
	f.m.MessageID = 1 // that of the IKE_AUTH request a holds back
	part := bytes.Repeat([]byte{1}, maxUnauthReassembled/2+1)
	f.kept(f.frag(PayloadIDi, 1, 2, part), "half the bound")
	if b.e.half.len() != 1 || b.e.half.order[0].frag.req.have != 1 {
		t.Fatal("the first fragment was not kept on the half-open SA")
	}
	f.send(f.frag(PayloadNone, 2, 2, part), DropFragmentLimit, "over the unauthenticated bound")
}

// FuzzFragments feeds authentic fragments with fuzzed numbers, totals and
// contents, and the raw bytes themselves, to an established responder: no
// panic, the reassembly stays within its bounds, and every datagram is
// either processed or counted.
func FuzzFragments(f *testing.F) {
	content, _ := appendChain(nil, Payloads{&Notify{Kind: NotifyType(40000), Data: bytes.Repeat([]byte{5}, 40)}})
	rec := func(n, total uint16, first PayloadType, c []byte) []byte {
		return append([]byte{byte(n >> 8), byte(n), byte(total >> 8), byte(total), byte(first), byte(len(c))}, c...)
	}
	f.Add(append(rec(1, 2, PayloadNotify, content[:20]), rec(2, 2, PayloadNone, content[20:])...))
	f.Add(append(rec(2, 3, PayloadNone, content[:20]), rec(1, 2, PayloadNotify, content[20:])...))
	f.Add(append(rec(1, 1, PayloadNotify, content), rec(1, 1, PayloadNotify, content)...))
	f.Add(rec(0, 0, 0, nil))
	f.Fuzz(func(t *testing.T, prog []byte) {
		a, b := newPeers(t, smallFragments)
		a.e.initiate(t0)
		pump(t, a, b, t0)
		fo := newForger(t, a, b, INFORMATIONAL)
		for i := 0; len(prog) >= 6 && i < 16; i++ {
			n, total := uint16(prog[0])<<8|uint16(prog[1]), uint16(prog[2])<<8|uint16(prog[3])
			first, l := PayloadType(prog[4]), int(prog[5])
			prog = prog[6:]
			c := prog[:min(l, len(prog))]
			prog = prog[len(c):]
			raw, err := sealFragment(a.e.sas[0].out.(fragCipher), &fo.m, first, n, total, c)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range [][]byte{raw, c} {
				before := b.e.Status().Counters
				b.e.handle(x, a.addr, t0)
				after := b.e.Status().Counters
				r := b.e.sas[0].frag.req
				if r.bytes > maxReassembled || r.have > int(r.total) || len(r.parts) != int(r.total) {
					t.Fatalf("reassembly out of bounds: %d bytes, %d of %d", r.bytes, r.have, r.total)
				}
				processed := after.FragmentsReceived > before.FragmentsReceived || after.Dropped > before.Dropped ||
					len(b.conn.out) > 0
				if !processed && len(x) >= HeaderLen {
					if _, err := DecodeMessage(x); err == nil {
						t.Fatalf("datagram neither kept nor counted: %x", x)
					}
				}
			}
			b.conn.out = nil
		}
	})
}

// BenchmarkFragment seals a 4 KiB message into 1280-byte fragments and
// opens and reassembles them: the cost of a fragmented IKE message.
func BenchmarkFragment(b *testing.B) {
	key := Secret(bytes.Repeat([]byte{7}, 36))
	seal, _ := NewSKCipher(key)
	open, _ := NewSKCipher(key)
	inner := Payloads{&Vendor{Data: bytes.Repeat([]byte{1}, 4096)}}
	m := &Message{SPIi: 1, SPIr: 2, Exchange: IKE_AUTH, MessageID: 1}
	b.ReportAllocs()
	b.SetBytes(4096)
	for b.Loop() {
		frags, err := fragment(seal.(fragCipher), m, inner, 1280-20-udpMarker)
		if err != nil {
			b.Fatal(err)
		}
		var r reassembly
		for _, raw := range frags {
			f := &EncryptedFragment{Number: binary.BigEndian.Uint16(raw[HeaderLen+4:]), Total: binary.BigEndian.Uint16(raw[HeaderLen+6:]),
				Data: raw[HeaderLen+skfHeaderLen:]}
			content, err := open.(fragCipher).openBody(raw, HeaderLen+skfHeaderLen)
			if err != nil {
				b.Fatal(err)
			}
			if whole, _, dropped := r.add(1, f, content, raw, maxReassembled); dropped || (int(f.Number) == len(frags)) != (whole != nil) {
				b.Fatal("reassembly")
			}
		}
	}
}

// Rekeys of both kinds, their CREATE_CHILD_SA messages fragmented both
// ways, by either peer.
func TestFragmentedRekeys(t *testing.T) {
	a, b := newPair(t, smallFragments)
	a.e.initiate(t0)
	pump(t, a, b, t0)
	now := t0.Add(time.Minute)
	b.e.rekeyChild(now, b.e.sas[0], b.e.sas[0].children[0], DHNone, 0)
	if len(b.conn.out) < 2 {
		t.Fatalf("CREATE_CHILD_SA in %d datagrams", len(b.conn.out))
	}
	pump(t, a, b, now)
	a.e.rekeyIKE(now, a.e.sas[0])
	pump(t, a, b, now)
	for _, p := range []*testPeer{a, b} {
		st := p.e.Status()
		if st.State != StateEstablished || len(st.Children) != 1 || st.Counters.Rekeys != 2 || st.Counters.Dropped != 0 {
			t.Fatalf("%s: %v, %d children, %d rekeys, drops %v", p.name, st.State, len(st.Children), st.Counters.Rekeys, st.Counters.Drops)
		}
		// IKE_AUTH, two CREATE_CHILD_SA and the Deletes that may fit.
		if st.Counters.FragmentsReassembled < 3 {
			t.Errorf("%s: %d messages reassembled", p.name, st.Counters.FragmentsReassembled)
		}
	}
	if len(a.e.sas) != 1 || len(b.e.sas) != 1 || a.e.sas[0].spiI != b.e.sas[0].spiI {
		t.Fatal("the peers do not share one new IKE SA")
	}
	checkCrosswise(t, a.dp.live[a.e.sas[0].children[0].keys.SPIIn], b.dp.live[b.e.sas[0].children[0].keys.SPIIn])
}
