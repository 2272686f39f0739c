package ike

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The collision tests step two engines through every interleaving of
// their messages. Each direction is a FIFO link (one network path); what
// varies is when each side's messages arrive relative to the other's, and
// when each side's trigger (starting a rekey, a delete, a connection)
// fires. Every run is replayed from scratch with the same seeds, so a run
// is named by its schedule and any failure can be reproduced.

// fastSuites keeps thousands of handshakes cheap.
func fastSuites(a, b *Config) {
	for _, c := range []*Config{a, b} {
		c.Proposals = MustParseProposals(ProtoIKE, "aes256gcm16-prfsha256-curve25519")
		c.ESPProposals = MustParseProposals(ProtoESP, "aes256gcm16-curve25519")
		c.DPD = 0
	}
}

type trigger struct {
	name string
	run  func(t *testing.T, a, b *testPeer, now time.Time)
}

type scenario struct {
	mutate func(a, b *Config)
	// setup brings the peers to the starting point and returns the time
	// the collision happens at.
	setup    func(t *testing.T, a, b *testPeer) time.Time
	triggers []trigger
	// check inspects the end state; schedule names the run.
	check func(t *testing.T, a, b *testPeer, schedule string)
	// wire, if set, gets every delivered message, in order.
	wire *[]wireMsg
	// idleTicks: after the first moment with nothing in flight, the
	// clock advances 1 s at a time this often (for retries after
	// TEMPORARY_FAILURE); messages then go in a fixed order.
	idleTicks int
	maxRuns   int
	// reorder lets any queued datagram of a side go next (UDP may
	// reorder), not only the oldest.
	reorder bool
}

// explore runs sc once per interleaving and returns the number of runs.
func explore(t *testing.T, sc scenario) int {
	t.Helper()
	var forced []int
	runs := 0
	for {
		trace, widths, names := runSchedule(t, sc, forced)
		runs++
		if t.Failed() {
			t.Fatalf("failed in run %d, schedule: %s", runs, strings.Join(names, " "))
		}
		i := len(trace) - 1
		for i >= 0 && trace[i]+1 >= widths[i] {
			i--
		}
		if i < 0 {
			return runs
		}
		forced = append(slices.Clone(trace[:i]), trace[i]+1)
		if sc.maxRuns > 0 && runs >= sc.maxRuns {
			t.Fatalf("more than %d interleavings", sc.maxRuns)
		}
	}
}

func runSchedule(t *testing.T, sc scenario, forced []int) (trace, widths []int, names []string) {
	t.Helper()
	a, b := newPeers(t, sc.mutate)
	now := sc.setup(t, a, b)
	if sc.wire != nil {
		*sc.wire = nil
	}
	pending := slices.Clone(sc.triggers)
	idle := 0
	for step := 0; step < 400; step++ {
		type option struct {
			name string
			do   func()
		}
		var opts []option
		for _, pair := range [][2]*testPeer{{a, b}, {b, a}} {
			from, to := pair[0], pair[1]
			for i := range from.conn.out {
				if i > 0 && (!sc.reorder || idle > 0) {
					break
				}
				opts = append(opts, option{from.name + ">" + describe(from.conn.out[i]), func() {
					from.conn.out[0], from.conn.out[i] = from.conn.out[i], from.conn.out[0]
					record(sc.wire, from.name, deliver(t, from, to, now))
				}})
			}
		}
		if idle == 0 {
			for i, tr := range pending {
				opts = append(opts, option{"[" + tr.name + "]", func() {
					pending = slices.Delete(pending, i, i+1)
					tr.run(t, a, b, now)
					harvest(a)
					harvest(b)
				}})
			}
		}
		if len(opts) == 0 {
			if idle >= sc.idleTicks {
				break
			}
			idle++
			now = now.Add(time.Second)
			a.e.tick(now)
			b.e.tick(now)
			continue
		}
		pick := 0
		if idle == 0 {
			if len(trace) < len(forced) {
				pick = forced[len(trace)]
			}
			trace = append(trace, pick)
			widths = append(widths, len(opts))
		}
		names = append(names, opts[pick].name)
		prevA, prevB := a.dp.out, b.dp.out
		opts[pick].do()
		sendsOnlyInstalled(t, a, b, prevA, prevB, names)
		if t.Failed() {
			return trace, widths, names
		}
	}
	schedule := strings.Join(names, " ")
	quiet(t, a, b)
	sc.check(t, a, b, schedule)
	checkLogsHoldNoSecrets(t, a, b)
	checkTransitions(t, a, b)
	return trace, widths, names
}

type wireMsg struct {
	from string
	raw  []byte
}

func record(w *[]wireMsg, from string, raw []byte) {
	if w != nil {
		*w = append(*w, wireMsg{from, raw})
	}
}

// rekeyExchange is one successful CREATE_CHILD_SA seen on the wire: its
// nonces and the SPIs of the SA it created (the initiator's, then the
// responder's).
type rekeyExchange struct {
	initiator  string
	ni, nr     []byte
	spiI, spiR []byte
}

// rekeysOnWire decrypts the CREATE_CHILD_SA exchanges on sa (a's view of
// the IKE SA they ran on) and returns the successful ones.
func rekeysOnWire(t *testing.T, sa *ikeSA, wire []wireMsg) []rekeyExchange {
	t.Helper()
	type key struct {
		from string
		id   uint32
	}
	reqs := map[key]Payloads{}
	var out []rekeyExchange
	for _, w := range wire {
		m, err := DecodeMessage(w.raw)
		if err != nil || m.Exchange != CREATE_CHILD_SA || m.SPIi != sa.spiI || m.SPIr != sa.spiR {
			continue
		}
		c := sa.in
		if w.from == "a" {
			c = sa.out
		}
		inner, err := c.Open(w.raw, m)
		if err != nil {
			t.Fatalf("cannot open %s's %v: %v", w.from, m.Exchange, err)
		}
		if !m.IsResponse() {
			reqs[key{w.from, m.MessageID}] = inner
			continue
		}
		other := "a"
		if w.from == "a" {
			other = "b"
		}
		req := reqs[key{other, m.MessageID}]
		rsa, _ := inner.Get(PayloadSA).(*SA)
		qsa, _ := req.Get(PayloadSA).(*SA)
		rn, _ := inner.Get(PayloadNonce).(*Nonce)
		qn, _ := req.Get(PayloadNonce).(*Nonce)
		if rsa == nil || qsa == nil || rn == nil || qn == nil {
			continue // refused
		}
		var qspi []byte
		for _, p := range qsa.Proposals {
			qspi = p.SPI
		}
		out = append(out, rekeyExchange{initiator: other, ni: qn.Data, nr: rn.Data, spiI: qspi, spiR: rsa.Proposals[0].SPI})
	}
	return out
}

// survivorByRule applies §2.8.1/§2.8.2 to what the wire shows: of two
// colliding rekeys the one without the lowest nonce survives.
func survivorByRule(t *testing.T, xs []rekeyExchange, schedule string) (rekeyExchange, bool) {
	t.Helper()
	switch len(xs) {
	case 1:
		return xs[0], true
	case 2:
		if ruleLoses(xs[0].ni, xs[0].nr, xs[1].ni, xs[1].nr) {
			return xs[1], true
		}
		return xs[0], true
	}
	t.Errorf("%d successful rekeys on the wire\nschedule: %s", len(xs), schedule)
	return rekeyExchange{}, false
}

// ruleLoses is RFC 7296 §2.8.1 written out independently of the engine:
// of two exchanges, the one whose nonces include the lowest of all four
// made the redundant SA.
func ruleLoses(ni, nr, oi, or []byte) bool {
	low := func(x, y []byte) []byte {
		if bytes.Compare(x, y) < 0 {
			return x
		}
		return y
	}
	return bytes.Compare(low(ni, nr), low(oi, or)) < 0
}

// describe names a message for a schedule: "CREATE_CHILD_SA.req#2".
func describe(raw []byte) string {
	m, err := DecodeMessage(raw)
	if err != nil {
		return "junk"
	}
	kind := "req"
	if m.IsResponse() {
		kind = "resp"
	}
	return fmt.Sprintf("%v.%s#%d", m.Exchange, kind, m.MessageID)
}

// onePair checks the end state every collision must reach: one IKE SA
// per side, the same on both; one CHILD_SA pair installed in each data
// plane, the same on both and the sending one; the data plane never
// without an outbound SA once it had one; nothing stale left.
func onePair(t *testing.T, a, b *testPeer, schedule string) (ka, kb ChildKeys) {
	t.Helper()
	return onePairGaps(t, a, b, schedule, false)
}

func onePairGaps(t *testing.T, a, b *testPeer, schedule string, allowGaps bool) (ka, kb ChildKeys) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s\nschedule: %s", fmt.Sprintf(format, args...), schedule)
	}
	if len(a.e.sas) != 1 || len(b.e.sas) != 1 {
		fail("IKE SAs: a %d, b %d", len(a.e.sas), len(b.e.sas))
		return
	}
	sa, sb := a.e.sas[0], b.e.sas[0]
	if sa.spiI != sb.spiI || sa.spiR != sb.spiR || !sa.usable() || !sb.usable() {
		fail("IKE SAs differ: a %x/%x, b %x/%x", sa.spiI, sa.spiR, sb.spiI, sb.spiR)
	}
	if sa.initiator == sb.initiator {
		fail("both sides think they initiated the IKE SA")
	}
	if len(a.dp.live) != 1 || len(b.dp.live) != 1 {
		fail("installed CHILD_SAs: a %d, b %d", len(a.dp.live), len(b.dp.live))
		return
	}
	if len(sa.children) != 1 || len(sb.children) != 1 {
		fail("engine CHILD_SAs: a %d, b %d", len(sa.children), len(sb.children))
	}
	for _, k := range a.dp.live {
		ka = k
	}
	for _, k := range b.dp.live {
		kb = k
	}
	if ka.SPIIn != kb.SPIOut || ka.SPIOut != kb.SPIIn || !ka.KeyIn.Equal(kb.KeyOut) || !ka.KeyOut.Equal(kb.KeyIn) {
		fail("CHILD_SAs do not match: a in %#x out %#x, b in %#x out %#x", ka.SPIIn, ka.SPIOut, kb.SPIIn, kb.SPIOut)
	}
	if (a.dp.out != ka.SPIIn || b.dp.out != kb.SPIIn) && !allowGaps {
		fail("sending SA: a %#x (want %#x), b %#x (want %#x)", a.dp.out, ka.SPIIn, b.dp.out, kb.SPIIn)
	}
	for _, p := range []*testPeer{a, b} {
		if len(p.dp.gaps) > 0 && !allowGaps {
			fail("%s's data plane lost its outbound SA: %v", p.name, p.dp.gaps)
		}
		for _, sa := range p.e.sas {
			if sa.req != nil || len(sa.queue) > 0 {
				fail("%s has a request outstanding", p.name)
			}
		}
		if st := p.e.Status(); st.State != "established" || len(st.Children) != 1 {
			fail("%s status %+v", p.name, st)
		}
	}
	return ka, kb
}

// TestSimultaneousInitiation: both peers initiate (Initiate on both, their
// IKE_SA_INIT requests crossing), in every interleaving. Each ends with
// one IKE SA and one CHILD_SA pair, the same on both sides; the redundant
// IKE SA is deleted by its initiator; sending never stops.
func TestSimultaneousInitiation(t *testing.T) {
	var wire []wireMsg
	sc := scenario{
		wire:   &wire,
		mutate: func(a, b *Config) { fastSuites(a, b); b.Initiate = true },
		setup: func(t *testing.T, a, b *testPeer) time.Time {
			a.e.initiate(t0)
			b.e.initiate(t0)
			return t0
		},
		check: func(t *testing.T, a, b *testPeer, schedule string) {
			onePair(t, a, b, schedule)
			initRule(t, a, wire, schedule)
			if a.e.Status().Counters.Exchanges[ExchangeKey{"IKE_AUTH", true, "ok"}] != 1 ||
				b.e.Status().Counters.Exchanges[ExchangeKey{"IKE_AUTH", true, "ok"}] != 1 {
				t.Errorf("each side should have authenticated its own IKE SA\nschedule: %s", schedule)
			}
		},
		maxRuns: 20000,
	}
	runs := explore(t, sc)
	t.Logf("%d interleavings", runs)
	if runs < 10 {
		t.Errorf("only %d interleavings: the harness is not exploring", runs)
	}
}

// TestLateSecondInitiation: a connects; b starts its own connection at any
// point of a's (before, during, after it completes).
func TestLateSecondInitiation(t *testing.T) {
	var wire []wireMsg
	sc := scenario{
		wire:   &wire,
		mutate: func(a, b *Config) { fastSuites(a, b); b.Initiate = true },
		setup: func(t *testing.T, a, b *testPeer) time.Time {
			a.e.initiate(t0)
			return t0
		},
		triggers: []trigger{{"b initiates", func(t *testing.T, a, b *testPeer, now time.Time) { b.e.initiate(now) }}},
		check: func(t *testing.T, a, b *testPeer, schedule string) {
			onePair(t, a, b, schedule)
			initRule(t, a, wire, schedule)
		},
		maxRuns: 20000,
	}
	t.Logf("%d interleavings", explore(t, sc))
}

// initRule checks the wire against the rule for two IKE SAs made by
// IKE_SA_INIT: the one whose exchange had the lowest nonce is redundant,
// and only its initiator sends requests on it after it is established
// (its Delete).
func initRule(t *testing.T, a *testPeer, wire []wireMsg, schedule string) {
	t.Helper()
	type sa struct {
		initiator  string
		spiI, spiR uint64
		ni, nr     []byte
	}
	var sas []*sa
	for _, w := range wire {
		m, err := DecodeMessage(w.raw)
		if err != nil || m.Exchange != IKE_SA_INIT {
			continue
		}
		n, _ := m.Payloads.Get(PayloadNonce).(*Nonce)
		if n == nil {
			continue
		}
		if !m.IsResponse() {
			sas = append(sas, &sa{initiator: w.from, spiI: m.SPIi, ni: n.Data})
			continue
		}
		for _, x := range sas {
			if x.spiI == m.SPIi {
				x.spiR, x.nr = m.SPIr, n.Data
			}
		}
	}
	if len(sas) == 1 {
		return
	}
	if len(sas) != 2 || sas[0].nr == nil || sas[1].nr == nil {
		t.Errorf("%d IKE_SA_INIT exchanges on the wire\nschedule: %s", len(sas), schedule)
		return
	}
	red, surv := sas[0], sas[1]
	if ruleLoses(surv.ni, surv.nr, red.ni, red.nr) {
		red, surv = surv, red
	}
	if s := a.e.sas[0]; s.spiI != surv.spiI || s.spiR != surv.spiR {
		t.Errorf("survivor %x/%x, want %x/%x (the redundant SA is the one with the lowest nonce)\nschedule: %s",
			s.spiI, s.spiR, surv.spiI, surv.spiR, schedule)
	}
	deleted := false
	for _, w := range wire {
		m, _ := DecodeMessage(w.raw)
		if m.Exchange == INFORMATIONAL && !m.IsResponse() && m.SPIi == red.spiI && m.SPIr == red.spiR {
			if w.from != red.initiator {
				t.Errorf("%s, not the initiator %s, sent a request on the redundant IKE SA\nschedule: %s", w.from, red.initiator, schedule)
			}
			deleted = true
		}
	}
	if !deleted {
		t.Errorf("the redundant IKE SA was not deleted by an INFORMATIONAL exchange\nschedule: %s", schedule)
	}
}

// rekeyBoth makes both sides' CHILD_SA (or IKE SA) due for a rekey at the
// returned time.
func established(t *testing.T, a, b *testPeer) time.Time {
	establish(t, a, b)
	a.mark, b.mark = a.e.seq, b.e.seq
	return t0.Add(time.Hour)
}

// childDue and ikeDue make the SAs that existed when the test started due
// for rekeying (not those made since: a side decides to rekey before it
// hears of the other's rekey, or not at all).
func childDue(t *testing.T, p *testPeer, now time.Time) {
	for _, sa := range p.e.sas {
		for _, c := range sa.children {
			if c.seq <= p.mark && c.rekeyAt.After(now) {
				c.rekeyAt = now
			}
		}
	}
	p.e.tick(now)
}

func ikeDue(t *testing.T, p *testPeer, now time.Time) {
	for _, sa := range p.e.sas {
		if sa.estSeq <= p.mark && sa.rekeyAt.After(now) {
			sa.rekeyAt = now
		}
	}
	p.e.tick(now)
}

var (
	aChild = trigger{"a rekeys CHILD_SA", func(t *testing.T, a, b *testPeer, now time.Time) { childDue(t, a, now) }}
	bChild = trigger{"b rekeys CHILD_SA", func(t *testing.T, a, b *testPeer, now time.Time) { childDue(t, b, now) }}
	aIKE   = trigger{"a rekeys IKE SA", func(t *testing.T, a, b *testPeer, now time.Time) { ikeDue(t, a, now) }}
	bIKE   = trigger{"b rekeys IKE SA", func(t *testing.T, a, b *testPeer, now time.Time) { ikeDue(t, b, now) }}
)

// rekeyConfig: no timers fire by themselves during the test; triggers
// make rekeys due.
func rekeyConfig(a, b *Config) {
	fastSuites(a, b)
	for _, c := range []*Config{a, b} {
		c.Lifetime, c.ChildLifetime, c.ChildLifetimeBytes = 200*time.Hour, 100*time.Hour, 0
	}
}

// rekeyCheck is onePair plus: the original CHILD_SA is gone from both data
// planes and every redundant one too.
func rekeyCheck(origA, origB *ChildKeys) func(t *testing.T, a, b *testPeer, schedule string) {
	return func(t *testing.T, a, b *testPeer, schedule string) {
		ka, _ := onePair(t, a, b, schedule)
		if ka.SPIIn == origA.SPIIn {
			t.Errorf("the CHILD_SA was not rekeyed\nschedule: %s", schedule)
		}
		if len(a.dp.installed) != len(a.dp.removed)+1 || len(b.dp.installed) != len(b.dp.removed)+1 {
			t.Errorf("stale CHILD_SAs: a installed %d removed %d, b installed %d removed %d\nschedule: %s",
				len(a.dp.installed), len(a.dp.removed), len(b.dp.installed), len(b.dp.removed), schedule)
		}
	}
}

func recordOriginal(orig *ChildKeys, a *testPeer) {
	*orig = a.dp.installed[0]
}

// TestChildRekeyCollision: both sides rekey the CHILD_SA (§2.8.1), in
// every interleaving of the two CREATE_CHILD_SA exchanges, the Deletes,
// and the moments each side decides to rekey.
func TestChildRekeyCollision(t *testing.T) {
	var origA, origB ChildKeys
	var wire []wireMsg
	var ikeA *ikeSA
	collided := 0
	check := rekeyCheck(&origA, &origB)
	sc := scenario{
		mutate: rekeyConfig,
		setup: func(t *testing.T, a, b *testPeer) time.Time {
			now := established(t, a, b)
			recordOriginal(&origA, a)
			recordOriginal(&origB, b)
			ikeA = a.e.sas[0]
			return now
		},
		triggers: []trigger{aChild, bChild},
		wire:     &wire,
		check: func(t *testing.T, a, b *testPeer, schedule string) {
			check(t, a, b, schedule)
			xs := rekeysOnWire(t, ikeA, wire)
			if len(xs) == 2 {
				collided++
			}
			surv, ok := survivorByRule(t, xs, schedule)
			if !ok || len(a.dp.live) != 1 {
				return
			}
			for _, k := range a.dp.live {
				in, out := be32(surv.spiI), be32(surv.spiR) // a initiated the survivor
				if surv.initiator == "b" {
					in, out = out, in
				}
				if k.SPIIn != in || k.SPIOut != out {
					t.Errorf("surviving CHILD_SA %#x/%#x is not the one §2.8.1 keeps (%s's, %#x/%#x)\nschedule: %s",
						k.SPIIn, k.SPIOut, surv.initiator, in, out, schedule)
				}
			}
		},
		maxRuns: 20000,
	}
	runs := explore(t, sc)
	t.Logf("%d interleavings, %d with a collision", runs, collided)
	if collided == 0 {
		t.Error("no interleaving collided")
	}
}

// TestIKERekeyCollision: both sides rekey the IKE SA (§2.8.2).
func TestIKERekeyCollision(t *testing.T) {
	var origA ChildKeys
	var oldI uint64
	var wire []wireMsg
	var ikeA *ikeSA
	collided := 0
	sc := scenario{
		mutate: rekeyConfig,
		setup: func(t *testing.T, a, b *testPeer) time.Time {
			now := established(t, a, b)
			recordOriginal(&origA, a)
			oldI = a.e.sas[0].spiI
			ikeA = a.e.sas[0]
			return now
		},
		triggers: []trigger{aIKE, bIKE},
		wire:     &wire,
		check: func(t *testing.T, a, b *testPeer, schedule string) {
			if surv, ok := survivorByRule(t, rekeysOnWire(t, ikeA, wire), schedule); ok && len(a.e.sas) == 1 {
				if sa := a.e.sas[0]; binary.BigEndian.Uint64(surv.spiI) != sa.spiI || binary.BigEndian.Uint64(surv.spiR) != sa.spiR {
					t.Errorf("surviving IKE SA %x/%x is not the one §2.8.2 keeps (%x/%x)\nschedule: %s", sa.spiI, sa.spiR, surv.spiI, surv.spiR, schedule)
				}
			}
			ka, _ := onePair(t, a, b, schedule)
			if ka.SPIIn != origA.SPIIn || len(a.dp.installed) != 1 || len(b.dp.installed) != 1 {
				t.Errorf("an IKE rekey touched the CHILD_SA\nschedule: %s", schedule)
			}
			if len(a.e.sas) == 1 && a.e.sas[0].spiI == oldI {
				t.Errorf("IKE SA not rekeyed\nschedule: %s", schedule)
			}
			if a.logs.FilterMessageSnippet("IKE SA rekey collision").Len() > 0 {
				collided++
			}
		},
		maxRuns: 20000,
	}
	runs := explore(t, sc)
	t.Logf("%d interleavings, %d with a collision", runs, collided)
	if collided == 0 {
		t.Error("no interleaving collided")
	}
}

// TestIKERekeyVersusChildRekey: one side rekeys the IKE SA while the other
// rekeys the CHILD_SA. The colliding requests get TEMPORARY_FAILURE
// (§2.25.2) and are retried after a random delay; in the end both rekeys
// are done.
func TestIKERekeyVersusChildRekey(t *testing.T) {
	for _, c := range []struct {
		name string
		ike  trigger
		chld trigger
	}{{"a IKE, b CHILD", aIKE, bChild}, {"a CHILD, b IKE", aChild, bIKE}} {
		t.Run(c.name, func(t *testing.T) {
			var origA, origB ChildKeys
			var oldI uint64
			tempFail := 0
			check := rekeyCheck(&origA, &origB)
			sc := scenario{
				mutate: rekeyConfig,
				setup: func(t *testing.T, a, b *testPeer) time.Time {
					now := established(t, a, b)
					recordOriginal(&origA, a)
					oldI = a.e.sas[0].spiI
					return now
				},
				triggers: []trigger{c.ike, c.chld},
				check: func(t *testing.T, a, b *testPeer, schedule string) {
					check(t, a, b, schedule)
					if len(a.e.sas) == 1 && a.e.sas[0].spiI == oldI {
						t.Errorf("IKE SA not rekeyed\nschedule: %s", schedule)
					}
					for _, p := range []*testPeer{a, b} {
						tempFail += int(p.e.Status().Counters.Exchanges[ExchangeKey{"CREATE_CHILD_SA", true, "TEMPORARY_FAILURE"}])
					}
				},
				idleTicks: 60,
				maxRuns:   20000,
			}
			runs := explore(t, sc)
			t.Logf("%d interleavings, %d TEMPORARY_FAILUREs", runs, tempFail)
			if tempFail == 0 {
				t.Error("no interleaving collided")
			}
		})
	}
}

// TestChildRekeyVersusDelete: a rekeys the CHILD_SA while b deletes it
// (§2.25.1). Whatever the order, both sides agree on what is left: no
// CHILD_SA, or the one a's rekey made, installed on both.
func TestChildRekeyVersusDelete(t *testing.T) {
	bDeletes := trigger{"b deletes CHILD_SA", func(t *testing.T, a, b *testPeer, now time.Time) {
		// b closes the CHILD_SA that a rekeys (not one made since).
		sa := b.e.sas[0]
		for _, c := range sa.children {
			if c.seq <= b.mark && c.state != childDeleting {
				b.e.deleteChild(now, sa, c)
				return
			}
		}
	}}
	sc := scenario{
		mutate: rekeyConfig,
		setup: func(t *testing.T, a, b *testPeer) time.Time {
			return established(t, a, b)
		},
		triggers: []trigger{aChild, bDeletes},
		check: func(t *testing.T, a, b *testPeer, schedule string) {
			if len(a.e.sas) != 1 || len(b.e.sas) != 1 {
				t.Fatalf("IKE SAs: a %d b %d\nschedule: %s", len(a.e.sas), len(b.e.sas), schedule)
			}
			if len(a.dp.live) != len(b.dp.live) || len(a.dp.live) > 1 {
				t.Errorf("children: a %d b %d\nschedule: %s", len(a.dp.live), len(b.dp.live), schedule)
			}
			for spi, k := range a.dp.live {
				if kb, ok := b.dp.live[k.SPIOut]; !ok || kb.SPIOut != spi {
					t.Errorf("a's CHILD_SA %#x is not b's\nschedule: %s", spi, schedule)
				}
			}
		},
		maxRuns: 20000,
	}
	t.Logf("%d interleavings", explore(t, sc))
}

// TestRekeyVersusIKEDelete: a rekeys (the IKE SA, or the CHILD_SA) while b
// deletes the IKE SA: the delete wins; nothing is left on either side.
func TestRekeyVersusIKEDelete(t *testing.T) {
	bDeletes := trigger{"b deletes IKE SA", func(t *testing.T, a, b *testPeer, now time.Time) {
		for _, sa := range b.e.sas {
			if sa.usable() {
				b.e.deleteIKESA(now, sa)
			}
		}
	}}
	for _, aRekeys := range []trigger{aIKE, aChild} {
		t.Run(aRekeys.name, func(t *testing.T) {
			sc := scenario{
				mutate: func(a, b *Config) { rekeyConfig(a, b); a.Initiate = false },
				setup: func(t *testing.T, a, b *testPeer) time.Time {
					handshake(t, a, b)
					return t0.Add(time.Hour)
				},
				triggers: []trigger{aRekeys, bDeletes},
				check: func(t *testing.T, a, b *testPeer, schedule string) {
					for _, p := range []*testPeer{a, b} {
						if len(p.e.sas) != 0 || len(p.dp.live) != 0 {
							t.Errorf("%s kept %d IKE SAs, %d CHILD_SAs\nschedule: %s", p.name, len(p.e.sas), len(p.dp.live), schedule)
						}
					}
				},
				maxRuns: 20000,
			}
			t.Logf("%d interleavings", explore(t, sc))
		})
	}
}

// TestCollisionsReordered repeats the collisions over links that reorder
// datagrams. The end state must be the same. One gap is unavoidable: when
// the Delete of the redundant IKE SA overtakes the IKE_AUTH response that
// establishes the survivor, the peer has nothing to send on until that
// response (or its retransmission) arrives.
func TestCollisionsReordered(t *testing.T) {
	bDeletes := trigger{"b deletes CHILD_SA", func(t *testing.T, a, b *testPeer, now time.Time) {
		// b closes the CHILD_SA that a rekeys (not one made since).
		sa := b.e.sas[0]
		for _, c := range sa.children {
			if c.seq <= b.mark && c.state != childDeleting {
				b.e.deleteChild(now, sa, c)
				return
			}
		}
	}}
	for _, c := range []struct {
		name      string
		triggers  []trigger
		setup     func(t *testing.T, a, b *testPeer) time.Time
		mutate    func(a, b *Config)
		allowGaps bool
		check     func(t *testing.T, a, b *testPeer, schedule string)
	}{
		{name: "simultaneous initiation", allowGaps: true,
			setup:  func(t *testing.T, a, b *testPeer) time.Time { a.e.initiate(t0); b.e.initiate(t0); return t0 },
			mutate: func(a, b *Config) { fastSuites(a, b); b.Initiate = true }},
		{name: "CHILD_SA rekeys", triggers: []trigger{aChild, bChild}, setup: established, mutate: rekeyConfig},
		{name: "IKE SA rekeys", triggers: []trigger{aIKE, bIKE}, setup: established, mutate: rekeyConfig},
		{name: "IKE rekey vs CHILD rekey", triggers: []trigger{aIKE, bChild}, setup: established, mutate: rekeyConfig},
		{name: "CHILD rekey vs CHILD delete", triggers: []trigger{aChild, bDeletes}, setup: established, mutate: rekeyConfig,
			check: func(t *testing.T, a, b *testPeer, schedule string) {
				if len(a.dp.live) != len(b.dp.live) || len(a.e.sas) != 1 || len(b.e.sas) != 1 {
					t.Errorf("a: %d IKE SAs, %d CHILD_SAs; b: %d, %d\nschedule: %s", len(a.e.sas), len(a.dp.live), len(b.e.sas), len(b.dp.live), schedule)
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			check := c.check
			if check == nil {
				check = func(t *testing.T, a, b *testPeer, schedule string) { onePairGaps(t, a, b, schedule, c.allowGaps) }
			}
			sc := scenario{mutate: c.mutate, setup: c.setup, triggers: c.triggers, reorder: true,
				idleTicks: 150, check: check, maxRuns: 50000}
			t.Logf("%d interleavings", explore(t, sc))
		})
	}
}

// TestCollisionWithoutOutboundSwitcher: with a DataPlane that cannot
// switch its outbound SA back, collisions still end consistently (the
// cost is a pause in sending, which the engine warns about).
func TestCollisionWithoutOutboundSwitcher(t *testing.T) {
	noSwitch = true
	defer func() { noSwitch = false }()
	warned := 0
	sc := scenario{
		mutate:   rekeyConfig,
		setup:    established,
		triggers: []trigger{aChild, bChild},
		check: func(t *testing.T, a, b *testPeer, schedule string) {
			onePairGaps(t, a, b, schedule, true)
			for _, p := range []*testPeer{a, b} {
				warned += p.logs.FilterMessageSnippet("cannot switch its outbound SA").Len()
			}
		},
		maxRuns: 20000,
	}
	t.Logf("%d interleavings", explore(t, sc))
	if warned == 0 {
		t.Error("no warning about the missing SetOutbound")
	}
}

// sendsOnlyInstalled: a side that has an SA the peer has installed sends
// only on such an SA (or on one the peer has retired and drains):
// otherwise its packets are esp_bad_spi at the peer.
func sendsOnlyInstalled(t *testing.T, a, b *testPeer, prevA, prevB uint32, names []string) {
	t.Helper()
	if noSwitch {
		return // without SetOutbound the data plane switches on install
	}
	for _, pr := range [][2]*testPeer{{a, b}, {b, a}} {
		from, to := pr[0], pr[1]
		prev := prevA
		if from == b {
			prev = prevB
		}
		if from.dp.out == 0 || prev == 0 {
			continue // the first CHILD_SA: no SA to keep sending on
		}
		k, ok := from.dp.live[from.dp.out]
		if !ok {
			continue
		}
		if _, ok := to.dp.live[k.SPIOut]; ok || slices.Contains(to.dp.removed, k.SPIOut) {
			continue
		}
		// Unavoidable when no other SA of ours is on both sides.
		alt := false
		for _, o := range from.dp.live {
			if _, ok := to.dp.live[o.SPIOut]; ok && o.SPIOut != k.SPIOut {
				alt = true
			}
		}
		if alt {
			t.Errorf("%s sends on %#x, which %s has not installed, while it has another; schedule: %s", from.name, k.SPIOut, to.name, strings.Join(names, " "))
		}
	}
}
