package ikev1

import (
	"bytes"
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gresec/gresec/ike"
)

// plane is a data plane that records what the engine installs.
type plane struct {
	mu       sync.Mutex
	live     map[uint32]ike.ChildKeys
	removed  []uint32
	outbound uint32 // the inbound SPI of the SA that sends
}

func (p *plane) SetOutbound(spi uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.outbound = spi
	return nil
}

func (p *plane) sending() uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.outbound
}

func (p *plane) InstallChild(k ike.ChildKeys) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live == nil {
		p.live = map[uint32]ike.ChildKeys{}
	}
	k.KeyIn, k.KeyOut = bytes.Clone(k.KeyIn), bytes.Clone(k.KeyOut)
	p.live[k.SPIIn] = k
	if !k.KeepOutbound || p.outbound == 0 {
		p.outbound = k.SPIIn
	}
	return nil
}

func (p *plane) RemoveChild(spi uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.live, spi)
	if p.outbound == spi {
		p.outbound = 0
	}
	p.removed = append(p.removed, spi)
	return nil
}

func (p *plane) ChildBytes(uint32) (uint64, uint64) { return 0, 0 }

func (p *plane) children() []ike.ChildKeys {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []ike.ChildKeys
	for _, k := range p.live {
		out = append(out, k)
	}
	return out
}

// wire delivers one engine's datagrams to the other, dropping those that
// lose says to.
type wire struct {
	to   func() *Engine
	from netip.AddrPort
	mu   sync.Mutex
	n    int
	lose func(n int, b []byte) bool
}

func (w *wire) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	w.mu.Lock()
	w.n++
	drop := w.lose != nil && w.lose(w.n, b)
	to := w.to
	w.mu.Unlock()
	if !drop {
		to().Offer(b, w.from)
	}
	return len(b), nil
}

var (
	addrA = netip.MustParseAddr("198.18.0.1")
	addrB = netip.MustParseAddr("198.18.0.2")
)

func testConfig(local, remote netip.Addr, initiate bool) ike.Config {
	return ike.Config{Local: local, Remote: remote, Initiate: initiate,
		LocalPSK: ike.Secret("correct horse battery staple"), RemotePSK: ike.Secret("correct horse battery staple"),
		LocalID: ike.AddrID(local), RemoteID: ike.AddrID(remote),
		Proposals:    ike.MustParseProposals(ike.ProtoIKE, "aes128-sha1-modp2048"),
		ESPProposals: ike.MustParseProposals(ike.ProtoESP, "aes128-sha1-modp2048"),
		Lifetime:     time.Hour, ChildLifetime: 20 * time.Minute,
		Retransmit: 100 * time.Millisecond, RetransmitTries: 6}
}

type testPair struct {
	a, b   *Engine
	pa, pb *plane
	wa, wb *wire
}

func newPair(t *testing.T, ca, cb ike.Config) *testPair {
	t.Helper()
	tp := &testPair{pa: &plane{}, pb: &plane{}}
	var err error
	if tp.a, err = New(ca, tp.pa, zaptest.NewLogger(t).Named("a")); err != nil {
		t.Fatal(err)
	}
	if tp.b, err = New(cb, tp.pb, zaptest.NewLogger(t).Named("b")); err != nil {
		t.Fatal(err)
	}
	tp.wa = &wire{to: func() *Engine { return tp.b }, from: netip.AddrPortFrom(addrA, 500)}
	tp.wb = &wire{to: func() *Engine { return tp.a }, from: netip.AddrPortFrom(addrB, 500)}
	return tp
}

func (tp *testPair) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); tp.a.Serve(ctx, tp.wa) }()
	go func() { defer wg.Done(); tp.b.Serve(ctx, tp.wb) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// agreed waits for one child on each side whose keys mirror the other's.
func (tp *testPair) agreed(t *testing.T) (ike.ChildKeys, ike.ChildKeys) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ca, cb := tp.pa.children(), tp.pb.children()
		if len(ca) == 1 && len(cb) == 1 {
			return ca[0], cb[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no phase 2 SA on both sides: a %d, b %d", len(tp.pa.children()), len(tp.pb.children()))
	return ike.ChildKeys{}, ike.ChildKeys{}
}

func checkMirror(t *testing.T, ka, kb ike.ChildKeys) {
	t.Helper()
	if ka.SPIIn != kb.SPIOut || ka.SPIOut != kb.SPIIn {
		t.Fatalf("SPIs a in %08x out %08x, b in %08x out %08x", ka.SPIIn, ka.SPIOut, kb.SPIIn, kb.SPIOut)
	}
	if !bytes.Equal(ka.KeyIn, kb.KeyOut) || !bytes.Equal(ka.KeyOut, kb.KeyIn) {
		t.Fatal("keys do not mirror")
	}
	if bytes.Equal(ka.KeyIn, ka.KeyOut) {
		t.Fatal("both directions have the same key")
	}
	if ka.Transform != "aes128-sha1" || len(ka.KeyIn) != 16+20 {
		t.Fatalf("transform %s with %d key bytes, want aes128-sha1 with 36", ka.Transform, len(ka.KeyIn))
	}
}

func TestMainAndQuickMode(t *testing.T) {
	tp := newPair(t, testConfig(addrA, addrB, true), testConfig(addrB, addrA, false))
	tp.run(t)
	ka, kb := tp.agreed(t)
	checkMirror(t, ka, kb)
	if ka.Lifetime != 20*time.Minute {
		t.Errorf("lifetime %v, want 20m", ka.Lifetime)
	}
	st := tp.a.Status()
	if len(st.Phase1) != 1 || st.Phase1[0].State != "QM_IDLE" || st.Phase1[0].Suite != "aes128-sha1-modp2048" {
		t.Errorf("status %+v", st.Phase1)
	}
	// One Main Mode and one Quick Mode each, by role, all ok.
	for _, c := range []struct {
		e         *Engine
		initiated bool
	}{{tp.a, true}, {tp.b, false}} {
		want := []ExchangeCount{{"main_mode", c.initiated, ResultOK, 1}, {"quick_mode", c.initiated, ResultOK, 1}}
		var got []ExchangeCount
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if got = c.e.Status().Exchanges; len(got) == 2 && got[0] == want[0] && got[1] == want[1] {
				break
			}
		}
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("exchanges %+v, want %+v", got, want)
		}
	}
}

// TestResponderLifetime: the responder's shorter lifetime wins on both sides.
func TestResponderLifetime(t *testing.T) {
	cb := testConfig(addrB, addrA, false)
	cb.ChildLifetime = 10 * time.Minute
	tp := newPair(t, testConfig(addrA, addrB, true), cb)
	tp.run(t)
	ka, kb := tp.agreed(t)
	if ka.Lifetime != 10*time.Minute || kb.Lifetime != 10*time.Minute {
		t.Errorf("lifetimes %v and %v, want 10m (RESPONDER-LIFETIME)", ka.Lifetime, kb.Lifetime)
	}
}

// TestRetransmission loses each side's first copy of every message: every
// step of Main Mode and Quick Mode must be recovered by a retransmission
// (the initiator's timer, or the responder resending its answer).
func TestRetransmission(t *testing.T) {
	tp := newPair(t, testConfig(addrA, addrB, true), testConfig(addrB, addrA, false))
	seen := map[string]bool{}
	var mu sync.Mutex
	lose := func(_ int, b []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		k := string(b)
		if seen[k] {
			return false
		}
		seen[k] = true
		return true
	}
	tp.wa.lose, tp.wb.lose = lose, lose
	tp.run(t)
	ka, kb := tp.agreed(t)
	checkMirror(t, ka, kb)
	if n := tp.a.Status().Retransmits; n < 3 {
		t.Errorf("a counted %d retransmissions, want one per lost request (at least 3)", n)
	}
}

// TestWrongPSK: no SA, and the failure names the key.
func TestWrongPSK(t *testing.T) {
	cb := testConfig(addrB, addrA, false)
	cb.LocalPSK, cb.RemotePSK = ike.Secret("another key"), ike.Secret("another key")
	tp := newPair(t, testConfig(addrA, addrB, true), cb)
	tp.run(t)
	time.Sleep(time.Second)
	if n := len(tp.pa.children()) + len(tp.pb.children()); n != 0 {
		t.Fatalf("%d SAs installed with different PSKs", n)
	}
	if d := tp.b.Status().Drops["integrity"] + tp.b.Status().Drops["malformed"]; d == 0 {
		t.Errorf("the responder counted no failed decryption: %v", tp.b.Status().Drops)
	}
	failed := false
	for _, x := range tp.b.Status().Exchanges {
		failed = failed || x == ExchangeCount{"main_mode", false, ResultFailed, x.Count} && x.Count > 0
	}
	if !failed {
		t.Errorf("the responder counted no failed Main Mode: %+v", tp.b.Status().Exchanges)
	}
}

// TestBothInitiate: both sides start at once; both Main Modes complete,
// and the data planes end up with the same, mirrored SAs (one or two
// pairs, depending on whether a Quick Mode had already arrived when a
// side's own Main Mode finished).
func TestBothInitiate(t *testing.T) {
	tp := newPair(t, testConfig(addrA, addrB, true), testConfig(addrB, addrA, true))
	tp.run(t)
	mirrored := func() bool {
		ca, cb := tp.pa.children(), tp.pb.children()
		if len(ca) == 0 || len(ca) != len(cb) {
			return false
		}
		for _, ka := range ca {
			found := false
			for _, kb := range cb {
				found = found || (kb.SPIIn == ka.SPIOut && kb.SPIOut == ka.SPIIn && bytes.Equal(ka.KeyIn, kb.KeyOut))
			}
			if !found {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && !mirrored() {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // nothing more comes
	if !mirrored() {
		t.Fatalf("a has %d SAs, b %d, not mirrored", len(tp.pa.children()), len(tp.pb.children()))
	}
	if n := len(tp.pa.children()); n > 2 {
		t.Fatalf("%d SA pairs for two initiations", n)
	}
}

// TestDeleteOnStop: stopping one engine deletes its SAs on the other.
func TestDeleteOnStop(t *testing.T) {
	tp := newPair(t, testConfig(addrA, addrB, true), testConfig(addrB, addrA, false))
	ctx, cancel := context.WithCancel(context.Background())
	ctxB, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	done := make(chan struct{})
	go func() { tp.a.Serve(ctx, tp.wa); close(done) }()
	go tp.b.Serve(ctxB, tp.wb)
	tp.agreed(t)
	cancel()
	<-done
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (len(tp.pb.children()) > 0 || len(tp.b.Status().Phase1) > 0) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(tp.pb.children()); n != 0 {
		t.Fatalf("b still has %d SAs after a stopped (DELETE not honoured)", n)
	}
	if n := len(tp.b.Status().Phase1); n != 0 {
		t.Fatalf("b still has %d phase 1 SAs after a's DELETE", n)
	}
}

// TestAggressiveRefused: an Aggressive Mode request gets no answer.
func TestAggressiveRefused(t *testing.T) {
	tp := newPair(t, testConfig(addrA, addrB, false), testConfig(addrB, addrA, false))
	var sent atomic.Int64
	tp.wb.lose = func(int, []byte) bool { sent.Add(1); return true }
	tp.run(t)
	sa := phase1SA(tp.a.suites1).Encode()
	msg := Encode(Header{ICookie: 1, Exchange: ExchangeAggressive}, []Payload{{PayloadSA, sa}, {PayloadKE, make([]byte, 256)}, {PayloadNonce, make([]byte, 32)}, {PayloadID, PhaseOneID(ike.AddrID(addrA)).Encode()}})
	tp.b.Offer(msg, netip.AddrPortFrom(addrA, 500))
	time.Sleep(300 * time.Millisecond)
	if n := sent.Load(); n != 0 {
		t.Fatalf("answered Aggressive Mode with %d messages", n)
	}
	if tp.b.Status().Drops["unexpected"] != 1 {
		t.Fatalf("drops %v, want one unexpected", tp.b.Status().Drops)
	}
}

// TestRekey: the initiator rekeys before the lifetime ends; the new SAs
// are installed on both sides before the old ones go (make-before-break),
// the initiator moves its sending to the new SA only after a moment, and
// the old SA is deleted on both sides.
func TestRekey(t *testing.T) {
	ca, cb := testConfig(addrA, addrB, true), testConfig(addrB, addrA, false)
	ca.ChildLifetime, cb.ChildLifetime = 3*time.Second, 3*time.Second
	tp := newPair(t, ca, cb)
	tp.run(t)
	ka, _ := tp.agreed(t)
	// Both SAs live on a for a moment while it still sends on the old.
	sawBoth := false
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		ca := tp.pa.children()
		if len(ca) == 2 && tp.pa.sending() == ka.SPIIn {
			sawBoth = true
		}
		if len(ca) == 1 && ca[0].SPIIn != ka.SPIIn && tp.pa.sending() == ca[0].SPIIn {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !sawBoth {
		t.Error("never saw the new SA installed while the old one still sent")
	}
	ka2, kb2 := tp.agreed(t)
	if ka2.SPIIn == ka.SPIIn {
		t.Fatal("no rekey within 8 s")
	}
	checkMirror(t, ka2, kb2)
	if tp.pa.sending() != ka2.SPIIn || tp.pb.sending() != kb2.SPIIn {
		t.Errorf("sending on 0x%08x / 0x%08x, want the new SAs 0x%08x / 0x%08x", tp.pa.sending(), tp.pb.sending(), ka2.SPIIn, kb2.SPIIn)
	}
	if bytes.Equal(ka2.KeyIn, ka.KeyIn) {
		t.Error("the rekeyed SA has the old key")
	}
}

// TestDPD: with dpd set, an idle but live peer answers R-U-THERE and
// keeps its SAs; a peer that goes silent is declared dead after the
// retransmissions, and its SAs are removed.
func TestDPD(t *testing.T) {
	ca, cb := testConfig(addrA, addrB, true), testConfig(addrB, addrA, false)
	ca.DPD, ca.RetransmitTries = 300*time.Millisecond, 3
	tp := newPair(t, ca, cb)
	var silent atomic.Bool
	var infoA, infoB atomic.Int64 // informational exchanges each side sent
	tp.wa.lose = func(_ int, b []byte) bool {
		if Exchange(b[18]) == ExchangeInfo {
			infoA.Add(1)
		}
		return false
	}
	tp.wb.lose = func(_ int, b []byte) bool {
		if Exchange(b[18]) == ExchangeInfo && !silent.Load() {
			infoB.Add(1)
		}
		return silent.Load()
	}
	tp.run(t)
	tp.agreed(t)
	time.Sleep(1500 * time.Millisecond) // several DPD rounds, all answered
	if n := len(tp.pa.children()); n != 1 {
		t.Fatalf("a has %d SAs after idle DPD rounds with a live peer, want 1", n)
	}
	if a, b := infoA.Load(), infoB.Load(); a < 3 || b < 3 {
		t.Fatalf("%d R-U-THERE sent and %d acknowledged in 1.5 s of idle with dpd 300ms, want at least 3 each", a, b)
	}
	silent.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && len(tp.pa.children()) > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(tp.pa.children()); n != 0 {
		t.Fatalf("a still has %d SAs 5 s after the peer went silent", n)
	}
	if n := len(tp.a.Status().Phase1); n > 1 {
		t.Errorf("a has %d phase 1 SAs after declaring the peer dead", n)
	}
	if n := tp.a.Status().DPDFailures; n != 1 {
		t.Errorf("a counted %d DPD failures, want 1", n)
	}
}

// TestInitialContact: a restarts without deleting anything (a crash); its
// new Main Mode carries INITIAL-CONTACT, and b drops the SAs of a's
// previous life, keeping only the new one.
func TestInitialContact(t *testing.T) {
	ca, cb := testConfig(addrA, addrB, true), testConfig(addrB, addrA, false)
	tp := newPair(t, ca, cb)
	var crashed atomic.Bool
	tp.wa.lose = func(int, []byte) bool { return crashed.Load() }
	ctxA, cancelA := context.WithCancel(context.Background())
	ctxB, cancelB := context.WithCancel(context.Background())
	doneA, doneB := make(chan struct{}), make(chan struct{})
	go func() { tp.a.Serve(ctxA, tp.wa); close(doneA) }()
	go func() { tp.b.Serve(ctxB, tp.wb); close(doneB) }()
	defer func() { cancelB(); <-doneB }()
	old, _ := tp.agreed(t)
	crashed.Store(true) // a's DELETEs on the way out are lost
	cancelA()
	<-doneA

	pa2 := &plane{}
	a2, err := New(ca, pa2, nil)
	if err != nil {
		t.Fatal(err)
	}
	var cur atomic.Pointer[Engine]
	cur.Store(a2)
	tp.wb.mu.Lock()
	tp.wb.to = func() *Engine { return cur.Load() }
	tp.wb.mu.Unlock()
	wa2 := &wire{to: func() *Engine { return tp.b }, from: netip.AddrPortFrom(addrA, 500)}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	go func() { a2.Serve(ctx2, wa2); close(done2) }()
	defer func() { cancel2(); <-done2 }()

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		cb := tp.pb.children()
		if len(pa2.children()) == 1 && len(cb) == 1 && cb[0].SPIOut != old.SPIIn {
			checkMirror(t, pa2.children()[0], cb[0])
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("after a's restart: a has %d SAs, b %d (want 1 each, the old one gone)", len(pa2.children()), len(tp.pb.children()))
}

// TestPhase1Rekey: before the phase 1 SA ends the initiator sets up a new
// one (no INITIAL-CONTACT: the phase 2 SAs stay), and the old one is
// deleted on both sides when it expires; the phase 2 SA lives on.
func TestPhase1Rekey(t *testing.T) {
	ca, cb := testConfig(addrA, addrB, true), testConfig(addrB, addrA, false)
	ca.Lifetime, cb.Lifetime = 3*time.Second, 3*time.Second
	tp := newPair(t, ca, cb)
	tp.run(t)
	ka, _ := tp.agreed(t)
	first := tp.a.Status().Phase1[0].Cookies
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		sa, sb := tp.a.Status(), tp.b.Status()
		gone, idle := true, false
		for _, p := range append(sa.Phase1, sb.Phase1...) {
			gone = gone && p.Cookies != first
			idle = idle || p.State == "QM_IDLE"
		}
		if gone && idle {
			ka2, kb2 := tp.agreed(t)
			if ka2.SPIIn != ka.SPIIn {
				t.Fatalf("the phase 2 SA changed with the phase 1 rekey: 0x%08x -> 0x%08x", ka.SPIIn, ka2.SPIIn)
			}
			checkMirror(t, ka2, kb2)
			// The new phase 1 SA carries Quick Mode and informational exchanges.
			tp.pa.mu.Lock()
			removed := len(tp.pa.removed)
			tp.pa.mu.Unlock()
			if removed != 0 {
				t.Fatalf("a removed %d phase 2 SAs", removed)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no phase 1 rekey: a %+v, b %+v", tp.a.Status().Phase1, tp.b.Status().Phase1)
}

// TestHalfOpenCap: first messages with fresh cookies from the peer's
// address, as a spoofer on its path could send, hold at most maxHalfOpen
// responder SAs; the rest are counted and dropped.
func TestHalfOpenCap(t *testing.T) {
	b, err := New(testConfig(addrB, addrA, false), &plane{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sa := phase1SA(b.suites1).Encode()
	now := time.Now()
	for i := range 100 {
		b.handle(now, Encode(Header{ICookie: uint64(1000 + i), Exchange: ExchangeMain}, []Payload{{PayloadSA, sa}}))
	}
	if n := len(b.p1s); n != maxHalfOpen {
		t.Fatalf("%d half-open SAs after 100 first messages, want the cap %d", n, maxHalfOpen)
	}
	if d := b.drops[ike.DropCookie].Load(); d != 100-maxHalfOpen {
		t.Fatalf("%d counted drops, want %d", d, 100-maxHalfOpen)
	}
	b.tick(now.Add(halfOpenTimeout + time.Second))
	if n := len(b.p1s); n != 0 {
		t.Fatalf("%d half-open SAs left after their timeout", n)
	}
}

// TestHalfOpenFloodDoesNotLockOutPeer: anyone who can spoof the peer's
// address fills the half-open slots with first messages it never follows
// up (it cannot see our cookie). The real peer must still get in at once,
// not after the forged SAs time out.
func TestHalfOpenFloodDoesNotLockOutPeer(t *testing.T) {
	tp := newPair(t, testConfig(addrA, addrB, true), testConfig(addrB, addrA, false))
	sa := phase1SA(tp.b.suites1).Encode()
	now := time.Now()
	for i := range 4 * maxHalfOpen {
		tp.b.handle(now, Encode(Header{ICookie: uint64(1000 + i), Exchange: ExchangeMain}, []Payload{{PayloadSA, sa}}))
	}
	tp.run(t)
	ka, kb := tp.agreed(t)
	checkMirror(t, ka, kb)
}

// TestUnauthenticatedLogFlood: a flood of unprotected notifications and of
// first messages with no acceptable proposal, spoofed from the peer's
// address, is counted, and logged only now and then.
func TestUnauthenticatedLogFlood(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	b, err := New(testConfig(addrB, addrA, false), &plane{}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	var notes []Payload
	for range maxPayloads {
		notes = append(notes, Payload{PayloadNotify, Notify{Protocol: ProtoISAKMP, Type: NotifyInvalidCookie}.Encode()})
	}
	other := ike.MustParseProposals(ike.ProtoIKE, "aes256-sha256-modp4096")
	bad := phase1SA(mustSuites1(t, other)).Encode()
	now := time.Now()
	const n = 1000
	for i := range n {
		b.handle(now, Encode(Header{ICookie: uint64(1 + i), Exchange: ExchangeInfo}, notes))
		b.handle(now, Encode(Header{ICookie: uint64(1 + i), Exchange: ExchangeMain}, []Payload{{PayloadSA, bad}}))
	}
	if got := logs.Len(); got > 2*(n/100+1) {
		t.Errorf("%d log entries for %d forged messages", got, 2*n)
	}
	if d := b.drops[ike.DropUnexpected].Load(); d != 2*n {
		t.Errorf("%d counted drops, want %d", d, 2*n)
	}
}

func mustSuites1(t *testing.T, ps []ike.Proposal) []Phase1Suite {
	t.Helper()
	s, err := Phase1Suites(ps, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDPDReplayedAck: the peer is gone, and someone who recorded one of
// its R-U-THERE-ACKs replays it whenever we probe. The replay is
// authentic (IKEv1 informational exchanges have no replay protection), but
// it acknowledges an old sequence number: it must not keep the dead peer
// alive.
func TestDPDReplayedAck(t *testing.T) {
	ca, cb := testConfig(addrA, addrB, true), testConfig(addrB, addrA, false)
	ca.DPD, ca.RetransmitTries = 300*time.Millisecond, 3
	tp := newPair(t, ca, cb)
	var silent atomic.Bool
	var recorded atomic.Pointer[[]byte]
	var replayed atomic.Int64
	tp.wb.lose = func(_ int, b []byte) bool {
		if Exchange(b[18]) != ExchangeInfo {
			return silent.Load()
		}
		if !silent.Load() {
			c := bytes.Clone(b)
			recorded.Store(&c)
			return false
		}
		if old := recorded.Load(); old != nil {
			replayed.Add(1)
			tp.a.Offer(*old, tp.wb.from)
		}
		return true
	}
	tp.run(t)
	tp.agreed(t)
	deadline := time.Now().Add(5 * time.Second)
	for recorded.Load() == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if recorded.Load() == nil {
		t.Fatal("b sent no R-U-THERE-ACK to record")
	}
	silent.Store(true)
	deadline = time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) && len(tp.pa.children()) > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(tp.pa.children()); n != 0 {
		t.Fatalf("a still has %d SAs 8 s after the peer went silent (%d replayed acknowledgements)", n, replayed.Load())
	}
	if replayed.Load() == 0 {
		t.Error("nothing was replayed: the test did not exercise the replay")
	}
}

// TestPeerCannotLengthenLifetime: whatever lifetime the answer to our
// Quick Mode names (its transform, RESPONDER-LIFETIME), the phase 2 SA
// lives no longer than ours, and a kilobyte count too large for a byte
// count does not wrap.
func TestPeerCannotLengthenLifetime(t *testing.T) {
	cfg := testConfig(addrA, addrB, true)
	cfg.ChildLifetimeBytes = 1 << 30
	e, err := New(cfg, &plane{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, want Phase2Life }{
		{Phase2Life{Time: 100 * 365 * 24 * time.Hour, KB: 1 << 62}, Phase2Life{Time: 20 * time.Minute, KB: 1 << 20}},
		{Phase2Life{}, Phase2Life{Time: 20 * time.Minute, KB: 1 << 20}},
		{Phase2Life{Time: time.Minute, KB: 1000}, Phase2Life{Time: time.Minute, KB: 1000}},
	} {
		if got := e.boundLife(tc.in); got != tc.want {
			t.Errorf("boundLife(%+v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	cfg.ChildLifetimeBytes = 0
	if e, err = New(cfg, &plane{}, nil); err != nil {
		t.Fatal(err)
	}
	if got := e.boundLife(Phase2Life{Time: time.Minute, KB: 1<<64 - 1}); got.KB*1024 < got.KB {
		t.Errorf("a kilobyte lifetime of %d wraps as bytes", got.KB)
	}
	// Through the engines: a responder whose own lifetime is longer
	// cannot give the initiator's SA more than it proposed.
	cb := testConfig(addrB, addrA, false)
	cb.ChildLifetime = 10 * time.Hour
	tp := newPair(t, testConfig(addrA, addrB, true), cb)
	tp.run(t)
	ka, kb := tp.agreed(t)
	if ka.Lifetime != 20*time.Minute || kb.Lifetime != 20*time.Minute {
		t.Errorf("lifetimes %v and %v, want the initiator's 20m", ka.Lifetime, kb.Lifetime)
	}
}
