package ike

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// --- COOKIE (RFC 7296 §2.6) ---

// ghostInit has b answer an IKE_SA_INIT from a's address that never goes
// further (a flood, or initiators that gave up).
func ghostInit(t *testing.T, b *testPeer, from netip.AddrPort, seed uint64, now time.Time) []byte {
	t.Helper()
	g, _ := newPeers(t, func(a, _ *Config) { a.Rand = rand.NewChaCha8([32]byte{byte(seed), 0xee}) })
	g.e.initiate(now)
	b.e.handle(drop(t, g), from, now)
	return drop(t, b)
}

func notifies(t *testing.T, raw []byte) []NotifyType {
	t.Helper()
	m, err := DecodeMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	var out []NotifyType
	for _, p := range m.Payloads {
		if n, ok := p.(*Notify); ok {
			out = append(out, n.Kind)
		}
	}
	return out
}

func TestCookieDemandedOverThreshold(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) { b.CookieThreshold = 2 })
	for i := uint64(0); i < 2; i++ {
		if resp := ghostInit(t, b, a.addr, i, t0); len(notifies(t, resp)) == 1 {
			t.Fatalf("cookie demanded below the threshold: %v", notifies(t, resp))
		}
	}
	if b.e.half.len() != 2 {
		t.Fatalf("b keeps %d half-open SAs", len(b.e.sas))
	}
	a.e.initiate(t0)
	first := deliver(t, a, b, t0)
	resp := drop(t, b)
	m, _ := DecodeMessage(resp)
	n, _ := m.Payloads.Get(PayloadNotify).(*Notify)
	if len(m.Payloads) != 1 || n == nil || n.Kind != COOKIE || len(n.Data) != cookieLen || m.SPIr != 0 {
		t.Fatalf("want only N(COOKIE): %+v", m.Payloads)
	}
	if b.e.half.len() != 2 {
		t.Error("b kept state for a request without a cookie")
	}
	a.e.handle(resp, b.addr, t0)
	retry := drop(t, a)
	rm, _ := DecodeMessage(retry)
	if c, ok := rm.Payloads[0].(*Notify); !ok || c.Kind != COOKIE || !bytes.Equal(c.Data, n.Data) {
		t.Fatal("retry does not start with the cookie")
	}
	fm, _ := DecodeMessage(first)
	if rm.SPIi != fm.SPIi || !bytes.Equal(rm.Payloads.Get(PayloadNonce).(*Nonce).Data, fm.Payloads.Get(PayloadNonce).(*Nonce).Data) {
		t.Error("retry changed SPIi or nonce, which the cookie covers")
	}
	b.e.handle(retry, a.addr, t0)
	deliver(t, b, a, t0) // IKE_SA_INIT response
	deliver(t, a, b, t0) // IKE_AUTH
	deliver(t, b, a, t0)
	quiet(t, a, b)
	if a.e.Status().State != "established" || b.e.Status().State != "established" {
		t.Fatalf("a %+v\nb %+v", a.e.Status(), b.e.Status())
	}
	checkCrosswise(t, a.dp.installed[0], b.dp.installed[0])
	if got := b.e.Status().Counters.Exchanges[ExchangeKey{"IKE_SA_INIT", false, "COOKIE"}]; got != 1 {
		t.Errorf("b counted %d cookie demands", got)
	}
	if got := a.e.Status().Counters.Exchanges[ExchangeKey{"IKE_SA_INIT", true, "COOKIE"}]; got != 1 {
		t.Errorf("a counted %d cookie demands", got)
	}
	// The authenticated SA no longer counts: a third attempt within the
	// minute is below the threshold again (2 ghosts, but one slot freed
	// would need 3; here the ghosts still count, so cookies stay on).
	if resp := ghostInit(t, b, a.addr, 9, t0); notifies(t, resp)[0] != COOKIE {
		t.Error("cookies off while two half-open requests are pending")
	}
	// After the window the ghosts are forgotten.
	if resp := ghostInit(t, b, a.addr, 10, t0.Add(pendingWindow)); len(notifies(t, resp)) == 1 {
		t.Error("cookies still demanded after the window")
	}
}

// withCookie rebuilds init (an IKE_SA_INIT request) with cookie first.
func withCookie(t *testing.T, init, cookie []byte) []byte {
	t.Helper()
	m, _ := DecodeMessage(init)
	ps := m.Payloads
	if n, ok := ps[0].(*Notify); ok && n.Kind == COOKIE {
		ps = ps[1:]
	}
	m.Payloads = append(Payloads{&Notify{Kind: COOKIE, Data: cookie}}, ps...)
	raw, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestCookieWrongOrStale(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) { b.CookieThreshold = 1 })
	a.e.initiate(t0)
	req := drop(t, a)
	// flood makes sure cookies are on at now and returns the cookie b
	// demands from a's request.
	flood := func(now time.Time) []byte {
		ghostInit(t, b, a.addr, uint64(now.Unix()), now)
		b.e.handle(req, a.addr, now)
		resp := drop(t, b)
		m, _ := DecodeMessage(resp)
		n := m.Payloads.Notify(COOKIE)
		if n == nil {
			t.Fatalf("no cookie demanded at %v", now.Sub(t0))
		}
		return n.Data
	}
	cookie := flood(t0)
	sas := len(b.e.sas)
	try := func(now time.Time, c []byte) (accepted bool) {
		t.Helper()
		dropped := b.e.Status().Counters.Dropped
		b.e.handle(withCookie(t, req, c), a.addr, now)
		resp := drop(t, b)
		m, _ := DecodeMessage(resp)
		if m.Payloads.Notify(COOKIE) != nil {
			if len(b.e.sas) != sas {
				t.Error("state kept for a refused cookie")
			}
			if b.e.Status().Counters.Dropped != dropped+1 {
				t.Error("bad cookie not counted")
			}
			return false
		}
		return true
	}
	for _, bad := range [][]byte{
		append(bytes.Clone(cookie[:len(cookie)-1]), cookie[len(cookie)-1]^1), // forged
		cookie[:len(cookie)-1],           // truncated
		append(bytes.Clone(cookie), 0),   // extended
		append([]byte{1}, cookie[1:]...), // other version
		bytes.Repeat([]byte{0xff}, 64),   // longest allowed
		make([]byte, 1000),               // hostile
		{},                               // empty
	} {
		if try(t0, bad) {
			t.Errorf("cookie %x accepted", bad)
		}
	}
	// A cookie for another SPI is no good either.
	m, _ := DecodeMessage(req)
	other := computeCookie(&b.e.cookies.cur, m.Payloads.Get(PayloadNonce).(*Nonce).Data, a.addr.Addr(), m.SPIi+1)
	if try(t0, other) {
		t.Error("cookie for another SPIi accepted")
	}
	// Two secret periods later the cookie is stale.
	flood(t0.Add(2 * cookieSecretLife))
	sas = len(b.e.sas)
	if try(t0.Add(2*cookieSecretLife), cookie) {
		t.Error("stale cookie accepted")
	}
	// One period later (the previous secret) it is still good.
	c2 := flood(t0.Add(3 * cookieSecretLife))
	flood(t0.Add(4 * cookieSecretLife))
	sas = len(b.e.sas)
	if !try(t0.Add(4*cookieSecretLife), c2) {
		t.Error("cookie from the previous period refused")
	}
}

func TestCookieInitiatorBounds(t *testing.T) {
	a, b := newPair(t, nil)
	a.e.initiate(t0)
	req := drop(t, a)
	m, _ := DecodeMessage(req)
	respond := func(data []byte) {
		out := &Message{SPIi: m.SPIi, Exchange: IKE_SA_INIT, Flags: FlagResponse, Payloads: Payloads{&Notify{Kind: COOKIE, Data: data}}}
		raw, err := out.Encode()
		if err != nil {
			t.Fatal(err)
		}
		a.e.handle(raw, b.addr, t0)
	}
	for _, bad := range [][]byte{{}, make([]byte, 65), make([]byte, 4000)} {
		dropped := a.e.Status().Counters.Dropped
		respond(bad)
		if len(a.conn.out) != 0 || a.e.Status().Counters.Dropped != dropped+1 || len(a.e.sas) != 1 || a.e.sas[0].req == nil {
			t.Errorf("cookie of %d bytes not dropped while waiting", len(bad))
		}
	}
	// A responder that asks for a cookie forever is given up on.
	for i := 0; i < maxInitRetries; i++ {
		respond(bytes.Repeat([]byte{byte(i)}, 64))
		if c := notifies(t, drop(t, a)); c[0] != COOKIE {
			t.Fatalf("retry %d without cookie", i)
		}
	}
	respond([]byte{1})
	if len(a.e.sas) != 0 || !strings.Contains(a.e.Status().LastError, "COOKIE") {
		t.Errorf("still trying: %+v", a.e.Status())
	}
}

// --- INVALID_SYNTAX for authentic requests that do not parse (§2.21.2) ---

// rawPayload is a payload with arbitrary (malformed) bytes.
type rawPayload struct {
	t    PayloadType
	body []byte
}

func (p rawPayload) Type() PayloadType             { return p.t }
func (p rawPayload) appendBody(b []byte) []byte    { return append(b, p.body...) }
func (p rawPayload) String() string                { return "raw" }
func (p rawPayload) GoString() string              { return "raw" }
func (p rawPayload) Format(f fmt.State, verb rune) { f.Write([]byte("raw")) }

func TestInvalidSyntaxAnswered(t *testing.T) {
	a, b := newPair(t, noDPD)
	establish(t, a, b)
	sa := a.e.primary()
	// A Notify body of 2 bytes is shorter than the 4 any Notify needs.
	m := &Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: INFORMATIONAL, Flags: FlagInitiator, MessageID: sa.nextReqID}
	raw, err := sa.out.Seal(m, Payloads{rawPayload{PayloadNotify, []byte{0, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	b.e.handle(raw, a.addr, t0)
	resp := drop(t, b)
	rm, err := DecodeMessage(resp)
	if err != nil || !rm.IsResponse() || rm.MessageID != m.MessageID || rm.Exchange != INFORMATIONAL {
		t.Fatalf("response %+v %v", rm, err)
	}
	inner, err := sa.in.Open(resp, rm)
	if err != nil {
		t.Fatal("response not encrypted with the SA's keys:", err)
	}
	if n := inner.Notify(INVALID_SYNTAX); n == nil || len(inner) != 1 {
		t.Fatalf("response %v", inner)
	}
	st := b.e.Status()
	if st.Counters.InvalidSyntax != 1 || st.Counters.Exchanges[ExchangeKey{"INFORMATIONAL", false, "INVALID_SYNTAX"}] != 1 {
		t.Errorf("counters %+v", st.Counters)
	}
	logs := b.logs.FilterMessageSnippet("do not parse").All()
	if len(logs) != 1 || logs[0].Level != zap.WarnLevel || !strings.Contains(fmt.Sprint(logs[0].ContextMap()["reason"]), "malformed N payload") {
		t.Errorf("warn log: %+v", logs)
	}
	if b.logs.FilterMessageSnippet("integrity").Len() != 0 {
		t.Error("a parse error logged as an integrity failure")
	}
	// The retransmission gets the same answer; the SA carries on.
	b.e.handle(raw, a.addr, t0)
	if !bytes.Equal(drop(t, b), resp) {
		t.Error("retransmission not answered from the cache")
	}
	sa.nextReqID++
	a.e.tick(t0.Add(time.Hour)) // the child is due: a rekey on the next message ID
	deliver(t, a, b, t0.Add(time.Hour))
	deliver(t, b, a, t0.Add(time.Hour))
	if len(a.dp.installed) != 2 {
		t.Error("SA unusable after INVALID_SYNTAX")
	}

	// An integrity failure is dropped without an answer, and counted.
	a2, b2 := newPair(t, noDPD)
	establish(t, a2, b2)
	sa2 := a2.e.primary()
	m2 := &Message{SPIi: sa2.spiI, SPIr: sa2.spiR, Exchange: INFORMATIONAL, Flags: FlagInitiator, MessageID: sa2.nextReqID}
	raw2, _ := sa2.out.Seal(m2, nil)
	raw2[len(raw2)-1] ^= 1
	b2.e.handle(raw2, a2.addr, t0)
	quiet(t, b2)
	if c := b2.e.Status().Counters; c.Dropped != 1 || c.InvalidSyntax != 0 {
		t.Errorf("counters %+v", c)
	}
	if b2.logs.FilterMessageSnippet("integrity").Len() != 1 || b2.logs.FilterLevelExact(zap.WarnLevel).Len() != 0 {
		t.Error("integrity failure should be a debug log only")
	}
}

// An IKE_AUTH that decrypts but does not parse fails the half-open SA.
func TestInvalidSyntaxInIKEAuth(t *testing.T) {
	a, b := newPair(t, nil)
	a.e.initiate(t0)
	deliver(t, a, b, t0)
	deliver(t, b, a, t0)
	a.conn.out = nil
	sa := a.e.sas[0]
	m := &Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: IKE_AUTH, Flags: FlagInitiator, MessageID: 1}
	raw, _ := sa.out.Seal(m, Payloads{rawPayload{PayloadIDi, []byte{1}}})
	b.e.handle(raw, a.addr, t0)
	resp := drop(t, b)
	rm, _ := DecodeMessage(resp)
	inner, err := sa.in.Open(resp, rm)
	if err != nil || inner.Notify(INVALID_SYNTAX) == nil {
		t.Fatalf("%v %v", inner, err)
	}
	if len(b.e.sas) != 0 {
		t.Error("half-open SA kept after a broken IKE_AUTH")
	}
}

// --- status and accounting ---

func TestStatusAccounting(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) { a.ReplayWindow, b.ReplayWindow = 1024, 1024 })
	establish(t, a, b)
	for _, p := range []*testPeer{a, b} {
		st := p.e.Status()
		lo, hi := 85, 88
		if p == b {
			lo, hi = 92, 95
		}
		within := func(what string, at, from time.Time, d time.Duration) {
			t.Helper()
			if at.Before(from.Add(d*time.Duration(lo)/100)) || at.After(from.Add(d*time.Duration(hi)/100)) {
				t.Errorf("%s: %s at %v of %v, want %d-%d %%", p.name, what, at.Sub(from), d, lo, hi)
			}
		}
		within("IKE rekey", st.RekeyAt, st.Established, 86400*time.Second)
		c := st.Children[0]
		within("CHILD_SA rekey", c.RekeyAt, c.Installed, time.Hour)
		if !c.ExpiresAt.Equal(c.Installed.Add(time.Hour)) || c.LifetimeBytes != 500<<20 {
			t.Errorf("%s: child %+v", p.name, c)
		}
		k := p.dp.installed[0]
		if k.ReplayWindow != 1024 || k.ESN {
			t.Errorf("%s: ChildKeys replay window %d ESN %v", p.name, k.ReplayWindow, k.ESN)
		}
	}
	if a.e.Status().RekeyAt.Equal(b.e.Status().RekeyAt) {
		t.Error("both sides rekey at the same moment")
	}
	want := map[*testPeer]map[ExchangeKey]uint64{
		a: {{"IKE_SA_INIT", true, "ok"}: 1, {"IKE_AUTH", true, "ok"}: 1},
		b: {{"IKE_SA_INIT", false, "ok"}: 1, {"IKE_AUTH", false, "ok"}: 1},
	}
	for p, w := range want {
		got := p.e.Status().Counters.Exchanges
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s exchanges %v, want %v", p.name, got, w)
		}
		// The map is the caller's.
		got[ExchangeKey{"IKE_AUTH", true, "ok"}] = 99
		delete(got, ExchangeKey{"IKE_SA_INIT", true, "ok"})
		if fmt.Sprint(p.e.Status().Counters.Exchanges) != fmt.Sprint(w) {
			t.Errorf("%s: Status shares its map", p.name)
		}
	}
	// A liveness check nobody answers: a DPD failure and a timeout.
	now := t0.Add(time.Minute)
	a.e.tick(now)
	for i := 0; i < 10 && len(a.e.sas) > 0; i++ {
		a.conn.out = nil
		now = now.Add(time.Minute)
		a.e.tick(now)
	}
	st := a.e.Status()
	if st.Counters.DPDFailures != 1 || st.Counters.Exchanges[ExchangeKey{"INFORMATIONAL", true, "timeout"}] != 1 || !st.RekeyAt.IsZero() {
		t.Errorf("after DPD failure: %+v", st)
	}
}

func TestExchangeResultsOnFailure(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) { a.Proposals = MustParseProposals(ProtoIKE, "aes128gcm16-prfsha256-ecp256") })
	handshakeUntilQuiet(t, a, b)
	a.e.tick(t0.Add(defaultRetransmit)) // an IKE_SA_INIT error is believed when no better answer came
	if a.e.Status().Counters.Exchanges[ExchangeKey{"IKE_SA_INIT", true, "NO_PROPOSAL_CHOSEN"}] != 1 ||
		b.e.Status().Counters.Exchanges[ExchangeKey{"IKE_SA_INIT", false, "NO_PROPOSAL_CHOSEN"}] != 1 {
		t.Errorf("a %v b %v", a.e.Status().Counters.Exchanges, b.e.Status().Counters.Exchanges)
	}
	a, b = newPair(t, func(a, b *Config) { b.RemotePSK = Secret("not the one a uses") })
	handshakeUntilQuiet(t, a, b)
	if a.e.Status().Counters.Exchanges[ExchangeKey{"IKE_AUTH", true, "AUTHENTICATION_FAILED"}] != 1 ||
		b.e.Status().Counters.Exchanges[ExchangeKey{"IKE_AUTH", false, "AUTHENTICATION_FAILED"}] != 1 {
		t.Errorf("a %v b %v", a.e.Status().Counters.Exchanges, b.e.Status().Counters.Exchanges)
	}
	// a rejects b's AUTH: counted on a's side as AUTHENTICATION_FAILED.
	a, b = newPair(t, func(a, b *Config) { a.RemotePSK = Secret("not the one b uses") })
	handshakeUntilQuiet(t, a, b)
	if a.e.Status().Counters.Exchanges[ExchangeKey{"IKE_AUTH", true, "AUTHENTICATION_FAILED"}] != 1 {
		t.Errorf("a %v", a.e.Status().Counters.Exchanges)
	}
}

// handshakeUntilQuiet is handshake that goes on until nothing is in flight
// (failures add a Delete or an error answer).
func handshakeUntilQuiet(t *testing.T, a, b *testPeer) {
	t.Helper()
	a.e.initiate(t0)
	for i := 0; i < 10 && len(a.conn.out)+len(b.conn.out) > 0; i++ {
		if len(a.conn.out) > 0 {
			deliver(t, a, b, t0)
		} else {
			deliver(t, b, a, t0)
		}
	}
}

// --- key export ---

func TestExportKeys(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) { noDPD(a, b); a.ReplayWindow = 64 })
	establish(t, a, b)
	x := a.e.ExportKeys()
	sa := a.e.primary()
	if len(x.IKE) != 1 || len(x.Children) != 1 {
		t.Fatalf("%d IKE, %d children", len(x.IKE), len(x.Children))
	}
	k := x.IKE[0]
	if k.SPIi != sa.spiI || k.SPIr != sa.spiR || k.Encr != "aes256gcm16" || k.Integ != "" || len(k.SKai)+len(k.SKar) != 0 {
		t.Errorf("IKE keys %+v", k)
	}
	if !k.SKei.Equal(sa.keys.SKei) || !k.SKer.Equal(sa.keys.SKer) || len(k.SKei) != 36 {
		t.Error("SK_ei/SK_er differ from the SA's")
	}
	if len(k.SKd)+len(k.SKpi)+len(k.SKpr) != 0 {
		t.Error("export carries keys Wireshark does not need")
	}
	c, inst := x.Children[0], a.dp.installed[0]
	if c.SPIIn != inst.SPIIn || !c.KeyIn.Equal(inst.KeyIn) || !c.KeyOut.Equal(inst.KeyOut) || c.ReplayWindow != 64 {
		t.Error("child keys differ from the installed ones")
	}
	// Secrets print redacted.
	if s := fmt.Sprintf("%v %+v %#v", x, x, x); strings.Contains(s, hex.EncodeToString(k.SKei)) || strings.Contains(s, string(k.SKei)) {
		t.Error("export prints key material")
	}
	// The export is a copy: wiping it leaves the engine's keys alone.
	x.Wipe()
	if !bytes.Equal(k.SKei, make([]byte, 36)) {
		t.Error("Wipe did not clear the export")
	}
	y := a.e.ExportKeys()
	if !y.IKE[0].SKei.Equal(sa.keys.SKei) || !y.Children[0].KeyIn.Equal(a.dp.installed[0].KeyIn) || bytes.Equal(sa.keys.SKei, make([]byte, 36)) {
		t.Error("wiping an export wiped the engine's keys")
	}
	// After an IKE rekey the export follows, from another goroutine too.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				x := a.e.ExportKeys()
				_ = a.e.Status()
				x.Wipe()
			}
		}
	}()
	at := a.e.Status().RekeyAt
	a.e.tick(at)
	for i := 0; i < 4; i++ {
		if len(a.conn.out) > 0 {
			deliver(t, a, b, at)
		} else {
			deliver(t, b, a, at)
		}
	}
	close(stop)
	wg.Wait()
	z := a.e.ExportKeys()
	if len(z.IKE) != 1 || z.IKE[0].SPIi != a.e.primary().spiI || z.IKE[0].SPIi == sa.spiI {
		t.Errorf("export after rekey: %+v", z.IKE)
	}
}

// --- logs ---

func TestLogsNoProposalChosen(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) {
		a.Proposals = MustParseProposals(ProtoIKE, "aes128gcm16-prfsha256-ecp256,aes256gcm16-prfsha512-curve25519")
	})
	handshakeUntilQuiet(t, a, b)
	a.e.tick(t0.Add(defaultRetransmit))
	e := b.logs.FilterMessage("no acceptable proposal").All()
	if len(e) != 1 {
		t.Fatalf("b logged %d", len(e))
	}
	f := e[0].ContextMap()
	if f["ours"] != "aes256gcm16-prfsha384-ecp384" || f["theirs"] != "aes128gcm16-prfsha256-ecp256, aes256gcm16-prfsha512-curve25519" {
		t.Errorf("fields %v", f)
	}
	e = a.logs.FilterMessageSnippet("accepts none of our IKE proposals").All()
	if len(e) != 1 || e[0].ContextMap()["ours"] != "aes128gcm16-prfsha256-ecp256, aes256gcm16-prfsha512-curve25519" {
		t.Errorf("a: %v", e)
	}
	// The CHILD_SA of IKE_AUTH: ESP syntax.
	a, b = newPair(t, func(a, b *Config) { a.ESPProposals = MustParseProposals(ProtoESP, "aes128gcm16") })
	handshakeUntilQuiet(t, a, b)
	e = b.logs.FilterMessage("no acceptable proposal").All()
	if len(e) != 1 || e[0].ContextMap()["ours"] != "aes256gcm16-noesn" || e[0].ContextMap()["theirs"] != "aes128gcm16-noesn" {
		t.Errorf("b: %v", e)
	}
	if a.logs.FilterMessageSnippet("accepts none of our ESP proposals").Len() != 1 {
		t.Error("a did not log its ESP proposals")
	}
}

func TestLogsTSUnacceptable(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) { b.Local = netip.MustParseAddr("198.18.0.3") })
	b.addr = netip.AddrPortFrom(a.e.cfg.Remote, 500)
	handshakeUntilQuiet(t, a, b)
	e := b.logs.FilterMessage("traffic selectors unacceptable").All()
	if len(e) != 1 {
		t.Fatalf("b logged %d", len(e))
	}
	f := e[0].ContextMap()
	if f["ours_local"] != "198.18.0.3/32[gre]" || f["ours_remote"] != "198.18.0.1/32[gre]" ||
		f["their_tsi"] != "198.18.0.1/32[gre]" || f["their_tsr"] != "198.18.0.2/32[gre]" {
		t.Errorf("fields %v", f)
	}
	e = a.logs.FilterMessage("peer does not accept our traffic selectors").All()
	if len(e) != 1 || e[0].ContextMap()["ours_local"] != "198.18.0.1/32[gre]" {
		t.Errorf("a: %v", e)
	}
}

func TestLogsAuthenticationFailed(t *testing.T) {
	a, b := newPair(t, func(a, b *Config) { b.RemotePSK = Secret("something else"); a.LocalID = FQDNID("a.example") })
	handshakeUntilQuiet(t, a, b)
	e := b.logs.FilterMessage("peer authentication failed").All()
	if len(e) != 1 {
		t.Fatalf("b logged %d", len(e))
	}
	f := e[0].ContextMap()
	if f["id"] != `"a.example"` || f["want"] != "any" || f["local_id"] != "198.18.0.2" {
		t.Errorf("fields %v", f)
	}
	e = a.logs.FilterMessage("peer rejects our authentication").All()
	if len(e) != 1 || e[0].ContextMap()["local_id"] != `"a.example"` || e[0].ContextMap()["remote_id"] != "any" {
		t.Errorf("a: %v", e)
	}
}

// The log check of every test can fail.
func TestLogLeakDetector(t *testing.T) {
	a, b := newPeers(t, nil)
	key := Secret(bytes.Repeat([]byte{0x5a, 0xa5, 0x17}, 12))
	a.secrets.add(key)
	for _, f := range []zap.Field{zap.Binary("k", key), zap.String("k", hex.EncodeToString(key)), zap.ByteString("k", key), zap.Any("k", []byte(key))} {
		core, logs := observer.New(zap.DebugLevel)
		a.logs = logs
		zap.New(core).Info("x", f)
		if len(leaks(a, b)) == 0 {
			t.Errorf("leak through %v not detected", f.Type)
		}
	}
	core, logs := observer.New(zap.DebugLevel)
	a.logs = logs
	zap.New(core).Info("x", zap.Any("k", key), zap.Stringer("k2", key))
	if l := leaks(a, b); len(l) != 0 {
		t.Errorf("redacted Secret reported: %v", l)
	}
}

// --- peer restart ---

// b loses its state and connects again: its INITIAL_CONTACT makes a drop
// the dead IKE SA at once, without a gap in sending.
func TestPeerRestartInitialContact(t *testing.T) {
	a, b := newPair(t, noDPD)
	establish(t, a, b)
	old := a.dp.installed[0]
	_, b2 := newPair(t, func(_, b *Config) { b.DPD = 0; b.Initiate = true; b.Rand = rand.NewChaCha8([32]byte{7}) })
	now := t0.Add(time.Minute)
	b2.e.initiate(now)
	for i := 0; i < 4; i++ {
		if len(b2.conn.out) > 0 {
			deliver(t, b2, a, now)
		} else {
			deliver(t, a, b2, now)
		}
	}
	quiet(t, a, b2)
	if len(a.e.sas) != 1 || a.e.sas[0].spiI != b2.e.sas[0].spiI || len(a.dp.live) != 1 {
		t.Fatalf("a has %d IKE SAs, %d CHILD_SAs", len(a.e.sas), len(a.dp.live))
	}
	if _, ok := a.dp.live[old.SPIIn]; ok || len(a.dp.gaps) != 0 {
		t.Errorf("old child still installed or a gap: %v", a.dp.gaps)
	}
	checkCrosswise(t, b2.dp.installed[0], a.dp.installed[1])
}

// --- formatting ---

func TestFormatProposalsAndSelectors(t *testing.T) {
	for _, c := range []struct {
		proto ProtocolID
		in    string
	}{
		{ProtoIKE, "aes256gcm16-prfsha384-ecp384"},
		{ProtoIKE, "aes128gcm16-aes256gcm16-prfsha256-prfsha512-curve25519-modp2048"},
		{ProtoESP, "aes256gcm16-ecp384-noesn"},
		{ProtoESP, "aes128gcm16-esn-noesn"},
	} {
		if got := FormatProposals(MustParseProposals(c.proto, c.in)); got != c.in {
			t.Errorf("%q formats as %q", c.in, got)
		}
	}
	foreign := Proposal{Protocol: ProtoIKE, Transforms: []Transform{
		{Type: TransformENCR, ID: 12, Attributes: []Attribute{{Type: AttrKeyLength, TV: true, Value: 256}}},
		{Type: TransformINTEG, ID: 12}, {Type: TransformPRF, ID: 2}, {Type: TransformDH, ID: 2}, {Type: TransformDH, ID: 99},
	}}
	if got := foreign.String(); got != "aes256-sha256-prfsha1-modp1024-dh99" {
		t.Errorf("foreign proposal %q", got)
	}
	for _, c := range []struct {
		ts   TrafficSelector
		want string
	}{
		{HostSelector(netip.MustParseAddr("198.18.0.1"), 47), "198.18.0.1/32[gre]"},
		{HostSelector(netip.MustParseAddr("2001:db8::1"), 0), "2001:db8::1/128"},
		{TrafficSelector{TSType: TS_IPV4_ADDR_RANGE, Protocol: 6, StartPort: 80, EndPort: 80,
			Start: netip.MustParseAddr("198.18.0.0"), End: netip.MustParseAddr("198.18.0.255")}, "198.18.0.0/24[tcp/80]"},
		{TrafficSelector{TSType: TS_IPV4_ADDR_RANGE, Protocol: 17, StartPort: 1, EndPort: 9,
			Start: netip.MustParseAddr("198.18.0.1"), End: netip.MustParseAddr("198.18.0.9")}, "198.18.0.1..198.18.0.9[udp/1-9]"},
		{TrafficSelector{TSType: 9, Raw: []byte{}}, "TS(type 9)"},
	} {
		if got := c.ts.String(); got != c.want {
			t.Errorf("%q, want %q", got, c.want)
		}
	}
}
