package ike

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// forgedInit is an IKE_SA_INIT request as a stranger would forge it: SPIi
// spi, a fresh nonce from r, and ke as the KE data (nil: a valid one).
func forgedInit(t *testing.T, spi uint64, r *rand.ChaCha8, ke []byte) []byte {
	t.Helper()
	nonce := make([]byte, nonceLen)
	r.Read(nonce)
	if ke == nil {
		k, err := GenerateDH(ECP384, r)
		if err != nil {
			t.Fatal(err)
		}
		ke = k.Public()
	}
	m := &Message{SPIi: spi, Exchange: IKE_SA_INIT, Flags: FlagInitiator, Payloads: Payloads{
		&SA{Proposals: MustParseProposals(ProtoIKE, "aes256gcm16-prfsha384-ecp384")},
		&KE{Group: uint16(ECP384), Data: ke}, &Nonce{Data: nonce}}}
	raw, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// The remote crash: IKE_SA_INIT with SPIi S, then T, then S again with
// another nonce. The responder used to remove an SA from the list it was
// ranging over and die on a nil pointer.
func TestThreeForgedInitsDoNotCrash(t *testing.T) {
	a, b := newPair(t, nil)
	r := rand.NewChaCha8([32]byte{3})
	for _, spi := range []uint64{0x5555, 0x7777, 0x5555} {
		b.e.handle(forgedInit(t, spi, r, nil), a.addr, t0)
	}
	if got := b.e.half.len(); got != 3 {
		t.Errorf("%d half-open SAs, want 3 (a second SA with the same SPIi does not evict the first)", got)
	}
	b.conn.out = nil
	establish(t, a, b) // the real peer still gets in
}

// A KE that is no point on the curve is refused before any DH work, and
// counts towards the cookie threshold like any other request.
func TestBadKERefusedAndCountedTowardsCookies(t *testing.T) {
	a, b := newPair(t, func(_, b *Config) { b.CookieThreshold = 5 })
	r := rand.NewChaCha8([32]byte{4})
	offCurve := bytes.Repeat([]byte{0x42}, ECP384.PublicLen())
	for i := range 5 {
		b.e.handle(forgedInit(t, uint64(0x100+i), r, offCurve), a.addr, t0)
		if n := notifies(t, drop(t, b)); len(n) != 1 || n[0] != INVALID_SYNTAX {
			t.Fatalf("answer %v, want INVALID_SYNTAX", n)
		}
	}
	if st := b.e.Status(); st.Counters.Drops["bad_ke"] != 5 || st.HalfOpen != 0 {
		t.Errorf("bad_ke %d, half-open %d", st.Counters.Drops["bad_ke"], st.HalfOpen)
	}
	b.e.handle(forgedInit(t, 0x200, r, offCurve), a.addr, t0)
	if n := notifies(t, drop(t, b)); len(n) != 1 || n[0] != COOKIE {
		t.Fatalf("after 5 failed requests: %v, want a COOKIE demand", n)
	}
	if ValidatePublic(ECP384, offCurve) == nil || ValidatePublic(ECP384, offCurve[1:]) == nil {
		t.Error("ValidatePublic accepts a point off the curve or of the wrong length")
	}
	for _, y := range [][]byte{make([]byte, 256), append(make([]byte, 255), 1), modpGroups[MODP2048].pm1.FillBytes(make([]byte, 256))} {
		if ValidatePublic(MODP2048, y) == nil {
			t.Errorf("MODP value %x... accepted", y[250:])
		}
	}
}

// Half-open SAs are bounded; the oldest go first, and a real peer that
// starts after a flood still gets in.
func TestHalfOpenBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("2000 DH computations")
	}
	a, b := newPair(t, func(_, b *Config) { b.CookieThreshold = -1 })
	r := rand.NewChaCha8([32]byte{5})
	ke, _ := GenerateDH(ECP384, r)
	for i := range maxHalfOpen + 100 {
		b.e.handle(forgedInit(t, uint64(0x1000+i), r, ke.Public()), a.addr, t0)
	}
	if got := b.e.half.len(); got != maxHalfOpen {
		t.Errorf("%d half-open SAs, want the bound %d", got, maxHalfOpen)
	}
	if b.e.half.get(0x1000, 0) != nil || len(b.e.half.order) > 2*maxHalfOpen+16 {
		t.Error("the oldest was not evicted, or the order list grows")
	}
	b.conn.out = nil
	establish(t, a, b)
	b.e.tick(t0.Add(halfOpenTimeout))
	if got := b.e.half.len(); got != 0 {
		t.Errorf("%d half-open SAs after the timeout", got)
	}
}

// Only an identical copy of the last request is answered again: a bare
// header with the live SPIs and message ID gets nothing (no reflection).
func TestRetransmitOnlyForTheSameRequest(t *testing.T) {
	a, b := newPair(t, nil)
	establish(t, a, b)
	sa := a.e.primary()
	a.e.sendLivenessCheck(t0, sa)
	req := deliver(t, a, b, t0)
	deliver(t, b, a, t0)
	sent, dropped := b.e.Status().Counters.Sent, b.e.Status().Counters.Dropped

	bare := append([]byte(nil), req[:HeaderLen]...)
	Header(bare).SetNextPayload(PayloadNone)
	Header(bare).SetLength(HeaderLen)
	b.e.handle(bare, a.addr, t0)
	tampered := bytes.Clone(req)
	tampered[len(tampered)-1] ^= 1
	b.e.handle(tampered, a.addr, t0)
	if st := b.e.Status(); st.Counters.Sent != sent || st.Counters.Dropped != dropped+2 || st.Counters.Drops["retransmit_mismatch"] != 1 {
		t.Fatalf("sent %d (was %d), drops %v", st.Counters.Sent, sent, st.Counters.Drops)
	}
	b.e.handle(req, a.addr, t0)
	if len(b.conn.out) != 1 {
		t.Fatal("a true retransmission is not answered")
	}
}

// Offer drops strangers and non-IKEv2 bytes before queueing and sorts the
// rest: datagrams for our SAs ahead of new IKE_SA_INIT requests.
func TestOfferFiltersAndCounts(t *testing.T) {
	_, b := newPair(t, nil)
	peer := netip.MustParseAddrPort("198.18.0.1:500")
	r := rand.NewChaCha8([32]byte{6})
	b.e.Offer(forgedInit(t, 1, r, nil), netip.MustParseAddrPort("198.18.0.9:500"))
	b.e.Offer([]byte("short"), peer)
	init := forgedInit(t, 2, r, nil)
	for range queueLen + 10 {
		b.e.Offer(init, peer)
	}
	known := bytes.Clone(init)
	Header(known).SetSPIr(9)
	b.e.Offer(known, peer)
	st := b.e.Status()
	want := map[string]uint64{"unknown_source": 1, "malformed": 1, "queue_full": 10}
	for k, v := range want {
		if st.Counters.Drops[k] != v {
			t.Errorf("%s: %d, want %d", k, st.Counters.Drops[k], v)
		}
	}
	if st.Counters.Received != queueLen+13 || st.Counters.Dropped != 12 {
		t.Errorf("received %d, dropped %d", st.Counters.Received, st.Counters.Dropped)
	}
	if len(b.e.in.known) != 1 || len(b.e.in.fresh) != queueLen {
		t.Errorf("queues: known %d, fresh %d", len(b.e.in.known), len(b.e.in.fresh))
	}
}

// A restarted responder-only peer that sees our ESP tells us (INVALID_SPI,
// unprotected); we set up a new IKE SA at once and drop the old one.
func TestInvalidSPIHintReconnects(t *testing.T) {
	a, b := newPair(t, nil)
	establish(t, a, b)
	oldOut := a.dp.installed[0].SPIOut
	_, b2 := newPeers(t, func(_, b *Config) { b.Rand = rand.NewChaCha8([32]byte{7}) })
	now := t0.Add(time.Minute)

	b2.e.hintInvalidSPI(now, oldOut)
	hint := drop(t, b2)
	b2.e.hintInvalidSPI(now, oldOut)
	quiet(t, b2) // rate-limited
	a.e.handle(hint, b2.addr, now)
	if x, _ := exchangeOf(t, a.conn.out[0]); x != IKE_SA_INIT {
		t.Fatalf("after the hint a sends %v, want a new IKE_SA_INIT", x)
	}
	for range 4 {
		from, to := a, b2
		if len(a.conn.out) == 0 {
			from, to = b2, a
		}
		deliver(t, from, to, now)
	}
	// a tells the old SA's peer once (b2 does not know it: dropped).
	deliver(t, a, b2, now)
	quiet(t, a)
	if n := len(a.e.sas); n != 1 || a.e.Status().State != "established" || b2.e.Status().State != "established" {
		t.Fatalf("a has %d IKE SAs, a %s, b2 %s", n, a.e.Status().State, b2.e.Status().State)
	}
	if _, live := a.dp.live[a.dp.installed[0].SPIIn]; live {
		t.Error("the old CHILD_SA is still installed")
	}
	checkCrosswise(t, a.dp.installed[1], b2.dp.installed[0])

	// A hint naming no SA of ours is dropped, and so is one too soon.
	a.e.handle(hint, b2.addr, now.Add(time.Minute))
	if st := a.e.Status(); st.Counters.Drops["unexpected"] == 0 {
		t.Error("a hint for an unknown SPI was not counted as dropped")
	}
}

// Proposals given as several strings are numbered 1, 2, ... on the wire
// (each string alone starts at 1, and strongSwan then sees one proposal);
// ESP transforms the data plane does not do are never proposed.
func TestProposalsNumberedAndLimitedToTheDataPlane(t *testing.T) {
	two := append(MustParseProposals(ProtoIKE, "aes256gcm16-prfsha384-ecp384"), MustParseProposals(ProtoIKE, "aes128gcm16-prfsha256-ecp256")...)
	a, b := newPair(t, func(a, b *Config) { a.Proposals = two })
	a.e.initiate(t0)
	m, err := DecodeMessage(a.conn.out[0])
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range m.Payloads.Get(PayloadSA).(*SA).Proposals {
		if int(p.Num) != i+1 {
			t.Errorf("IKE proposal %d numbered %d", i, p.Num)
		}
	}
	handshakeUntilQuiet(t, a, b)
	if a.e.Status().State != "established" {
		t.Error("not established")
	}

	// A data plane without ESN or AES-192:
	esp := append(MustParseProposals(ProtoESP, "aes256gcm16-esn"), MustParseProposals(ProtoESP, "aes192gcm16-aes128gcm16-esn-noesn")...)
	kept, removed := DataPlaneESP(esp, func(s Suite) bool { return !s.ESN && s.KeyBits != 192 })
	if got := FormatProposals(kept); got != "aes128gcm16-noesn" || len(removed) != 4 {
		t.Errorf("kept %q, removed %v", got, removed)
	}
	if kept[0].Num != 1 {
		t.Error("kept proposals not renumbered")
	}
}

// While cookies are demanded, Offer answers IKE_SA_INIT requests without a
// valid cookie itself and queues only those with one: a flood cannot fill
// the queue in front of a real initiator's retry.
func TestOfferDemandsCookiesBeforeTheQueue(t *testing.T) {
	a, b := newPair(t, func(_, b *Config) { b.CookieThreshold = 1 })
	var w Sender = b.conn
	b.e.in.sender.Store(&w)
	b.e.in.clock = func() time.Time { return t0 }
	r := rand.NewChaCha8([32]byte{8})
	peer := netip.MustParseAddrPort("198.18.0.1:500")
	b.e.handle(forgedInit(t, 0x900, r, nil), a.addr, t0) // one pending: cookies on
	b.conn.out = nil
	if !b.e.cookiesRequired(t0) || !b.e.in.cookieMode.Load() {
		t.Fatal("cookie mode not on")
	}
	for i := range 3 * queueLen {
		b.e.Offer(forgedInit(t, uint64(0x1000+i), r, nil), peer)
	}
	if len(b.e.in.fresh) != 0 || len(b.conn.out) != 3*queueLen {
		t.Fatalf("queued %d, answered %d: want 0 queued, all answered", len(b.e.in.fresh), len(b.conn.out))
	}
	// The real initiator retries with its cookie: queued, and it gets in.
	b.conn.out = nil
	a.e.initiate(t0)
	first := drop(t, a)
	b.e.Offer(first, peer)
	a.e.handle(drop(t, b), b.addr, t0) // the COOKIE demand
	retry := drop(t, a)
	b.e.Offer(retry, peer)
	if len(b.e.in.fresh) != 1 {
		t.Fatalf("the retry with a valid cookie was not queued (%d)", len(b.e.in.fresh))
	}
	p := <-b.e.in.fresh
	b.e.handle(p.b, p.from, t0)
	// Under load the answer costs no DH: g^ir waits for IKE_AUTH.
	if b.e.half.len() != 2 || b.e.half.order[1].keyed() || b.e.half.order[1].peerKE == nil {
		t.Fatal("the half-open SA made under load computed its keys already")
	}
	if !bytes.Equal(b.e.half.order[1].dh.Public(), b.e.loadKeys[ECP384].key.Public()) {
		t.Error("not answered with the shared DH key of the load")
	}
	deliver(t, b, a, t0)
	deliver(t, a, b, t0)
	deliver(t, b, a, t0)
	if a.e.Status().State != "established" {
		t.Fatalf("not established: %+v", a.e.Status())
	}
	if got := b.e.Status().Counters.Exchanges[ExchangeKey{"IKE_SA_INIT", false, "COOKIE"}]; got < 3*queueLen {
		t.Errorf("cookie demands counted: %d", got)
	}
}

// An error answer to IKE_SA_INIT is unauthenticated: one forged by an
// on-path attacker must not end the exchange while the real answer is on
// its way (RFC 7296 §2.21.1). A real one is believed when the request is
// due again.
func TestForgedInitErrorDoesNotEndTheExchange(t *testing.T) {
	a, b := newPair(t, nil)
	a.e.initiate(t0)
	req := a.conn.out[0]
	m, _ := DecodeMessage(req)
	forged := &Message{SPIi: m.SPIi, SPIr: 0x6666, Exchange: IKE_SA_INIT, Flags: FlagResponse,
		Payloads: Payloads{&Notify{Kind: NO_PROPOSAL_CHOSEN}}}
	raw, _ := forged.Encode()
	a.e.handle(raw, b.addr, t0)
	if len(a.e.sas) != 1 || a.e.Status().LastError != "" {
		t.Fatalf("a forged NO_PROPOSAL_CHOSEN ended the exchange: %q", a.e.Status().LastError)
	}
	for range 4 {
		from, to := a, b
		if len(a.conn.out) == 0 {
			from, to = b, a
		}
		deliver(t, from, to, t0)
	}
	if a.e.Status().State != "established" {
		t.Fatalf("a: %+v", a.e.Status())
	}
	// Without a real answer, the error is believed at the retransmission.
	c, d := newPair(t, func(c, _ *Config) { c.Proposals = MustParseProposals(ProtoIKE, "aes128gcm16-prfsha256-ecp256") })
	handshakeUntilQuiet(t, c, d)
	if c.e.Status().LastError != "" {
		t.Fatal("believed before the retransmission was due")
	}
	c.e.tick(t0.Add(defaultRetransmit))
	if got := c.e.Status().LastError; got != "IKE_SA_INIT: peer sent NO_PROPOSAL_CHOSEN" {
		t.Errorf("last error %q", got)
	}
}

// IKE_SA_INIT answers to requests we did not send (a responder answering
// requests forged with our address) are dropped before the queue, so ours
// is not lost among them.
func TestOfferDropsForeignInitAnswers(t *testing.T) {
	a, b := newPair(t, nil)
	a.e.initiate(t0)

	peer := netip.MustParseAddrPort("198.18.0.2:500")
	for i := range 2 * queueLen {
		m := &Message{SPIi: uint64(0x100 + i), Exchange: IKE_SA_INIT, Flags: FlagResponse,
			Payloads: Payloads{&Notify{Kind: COOKIE, Data: bytes.Repeat([]byte{1}, 33)}}}
		raw, _ := m.Encode()
		a.e.Offer(raw, peer)
	}
	deliver(t, a, b, t0)
	a.e.Offer(b.conn.out[0], peer)
	if len(a.e.in.fresh)+len(a.e.in.known) != 1 || a.e.Status().Counters.Drops["unexpected"] != 2*queueLen {
		t.Fatalf("queued %d+%d, dropped %v", len(a.e.in.fresh), len(a.e.in.known), a.e.Status().Counters.Drops)
	}
}
