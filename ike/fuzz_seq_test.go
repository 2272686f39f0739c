package ike

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzEngineSequence drives an initiator a and a responder b (the test
// pair of engine_test.go, with fast suites) through a sequence of events
// that the fuzz input chooses: genuine messages delivered, lost, reordered
// or replayed; forged ones injected from a's address (IKE_SA_INIT floods,
// the three-packet crash, bad KE values, bare headers with the live SPIs,
// mutated and truncated copies of genuine messages, a cookie-answering
// attacker); clock advances; a restart of a. The decoders have their own
// fuzz targets; this one looks for what only a sequence can break:
// state kept across messages.
//
// Invariants: no panic; b never holds more half-open IKE SAs than
// maxHalfOpen, nor either engine more other IKE SAs than seqMaxIKESAs; a
// bare header or a changed copy of an authenticated message gets no
// answer (a hint at most); and once
// the input is over and every genuine message is let through in order
// (with the clock moving on while nothing is in flight), the two engines
// establish one IKE SA with a CHILD_SA whose halves match.
//
// The input is a program of one-byte instructions, the high nibble the
// operation, the low nibble its argument; some read one or two more
// bytes. seqSeeds below writes programs readably; the seed corpus is in
// testdata/fuzz/FuzzEngineSequence.
func FuzzEngineSequence(f *testing.F) {
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) > 512 {
			return // long programs find nothing short ones do not, slower
		}
		runSequence(t, prog)
	})
}

// seqMaxIKESAs bounds the IKE SAs past IKE_SA_INIT (or initiated by us)
// one engine may hold with one peer: an established one, one being
// replaced by a rekey, one redundant after a collision, one being set up
// beside them after a peer restart, and one more for any two of these
// overlapping. Half-open ones have their own bound, maxHalfOpen.
const seqMaxIKESAs = 5

// Operations (high nibble of an instruction).
const (
	opDeliverAB    = iota // a's oldest message reaches b
	opDeliverBA           // b's oldest message reaches a
	opLoseA               // a's oldest message is lost
	opLoseB               // b's oldest message is lost
	opTick                // the clock advances 250 ms << arg; both engines tick
	opReplay              // genuine message #arg (mod history) is delivered again
	opMutate              // ... with byte [next] xor [next+1] (0 read as 0x80)
	opTruncate            // ... cut to [next] bytes (mod its length)
	opForgeInit           // IKE_SA_INIT from a's address: SPI arg&3 of four, nonce arg>>2
	opForgeGenuine        // IKE_SA_INIT with the SPIi of a's last one, nonce arg
	opForgeBadKE          // IKE_SA_INIT with a bad KE, kind arg
	opBareHeader          // 28-byte header with live SPIs, message ID arg; [next]: exchange, R flag
	opReorder             // the second-oldest message of a (arg even) or b goes first
	opStranger            // genuine message #arg, from a stranger's address
	opCookieAnswer        // answer b's latest COOKIE demand to a forged request
	opRestartA            // a dies and starts afresh (new SPIs, no state)
)

// seqForgedSPIs are the forged initiator SPIs opForgeInit picks from.
var seqForgedSPIs = [4]uint64{0x5555000000000001, 0x7777000000000002, 0x5555000000000003, 0x7777000000000004}

type seqMsg struct {
	raw []byte
	toB bool // sent by a to b
}

type seqRun struct {
	t       *testing.T
	a, b    *testPeer
	now     time.Time
	history []seqMsg          // genuine messages as they were sent, for replays
	forged  map[uint64][]byte // forged IKE_SA_INIT requests by SPIi, for the cookie answerer
	lastSPI uint64            // SPIi of a's last IKE_SA_INIT
	restart byte
	pub     []byte // a valid curve25519 public value for forged requests
}

func runSequence(t *testing.T, prog []byte) {
	a, b := newPeers(t, fastSuites)
	r := &seqRun{t: t, a: a, b: b, now: t0, forged: map[uint64][]byte{}}
	dh, err := GenerateDH(Curve25519, rand.NewChaCha8([32]byte{0xf0}))
	if err != nil {
		t.Fatal(err)
	}
	r.pub = dh.Public()
	a.e.initiate(r.now)
	for i := 0; i < len(prog); i++ {
		op, arg := prog[i]>>4, prog[i]&15
		next := func() byte {
			if i+1 < len(prog) {
				i++
				return prog[i]
			}
			return 0
		}
		r.step(op, arg, next)
		r.checkBounds(fmt.Sprintf("after instruction %d (%#02x)", i, prog[i]))
	}
	r.settle()
}

// send hands raw to `to` as if it came from from's address.
func (r *seqRun) send(from, to *testPeer, raw []byte) {
	to.e.handle(raw, from.addr, r.now)
}

// take removes p's message #i from its queue and records it.
func (r *seqRun) take(p *testPeer, i int) ([]byte, bool) {
	if i >= len(p.conn.out) {
		return nil, false
	}
	raw := p.conn.out[i]
	p.conn.out = append(p.conn.out[:i:i], p.conn.out[i+1:]...)
	r.history = append(r.history, seqMsg{raw: raw, toB: p == r.a})
	if p == r.a {
		if m, err := DecodeMessage(raw); err == nil && m.Exchange == IKE_SA_INIT && !m.IsResponse() {
			r.lastSPI = m.SPIi
		}
	}
	return raw, true
}

func (r *seqRun) deliver(p *testPeer, i int) {
	raw, ok := r.take(p, i)
	if !ok {
		return
	}
	if p == r.a {
		r.send(r.a, r.b, raw)
	} else {
		r.send(r.b, r.a, raw)
	}
}

func (r *seqRun) tick(d time.Duration) {
	r.now = r.now.Add(d)
	r.a.e.tick(r.now)
	r.b.e.tick(r.now)
}

func (r *seqRun) step(op, arg byte, next func() byte) {
	a, b := r.a, r.b
	switch op {
	case opDeliverAB:
		r.deliver(a, 0)
	case opDeliverBA:
		r.deliver(b, 0)
	case opLoseA:
		r.take(a, 0)
	case opLoseB:
		r.take(b, 0)
	case opTick:
		r.tick(250 * time.Millisecond << arg)
	case opReplay, opMutate, opTruncate, opStranger:
		if len(r.history) == 0 {
			return
		}
		h := r.history[int(arg)%len(r.history)]
		raw := bytes.Clone(h.raw)
		switch op {
		case opMutate:
			pos, x := int(next()), next()
			if x == 0 {
				x = 0x80
			}
			raw[pos%len(raw)] ^= x
		case opTruncate:
			raw = raw[:int(next())%len(raw)]
		}
		to, from := a, b
		if h.toB {
			to, from = b, a
		}
		before := len(to.conn.out)
		if op == opStranger {
			to.e.handle(raw, netip.MustParseAddrPort("198.18.0.77:500"), r.now)
		} else {
			r.send(from, to, raw)
		}
		if op != opReplay && mustBeSilent(raw) {
			r.silent(to, before, "a forged copy of a genuine message ("+describe(raw)+")")
		}
	case opForgeInit:
		spi := seqForgedSPIs[arg&3]
		raw := r.forgeInit(spi, seqNonce(arg>>2), &KE{Group: uint16(Curve25519), Data: r.pub}, nil)
		r.forged[spi] = raw
		r.send(a, b, raw)
	case opForgeGenuine:
		if r.lastSPI != 0 {
			r.send(a, b, r.forgeInit(r.lastSPI, seqNonce(arg+8), &KE{Group: uint16(Curve25519), Data: r.pub}, nil))
		}
	case opForgeBadKE:
		r.send(a, b, r.forgeInit(0x6666000000000000|uint64(arg), seqNonce(arg), seqBadKE(arg), nil))
	case opBareHeader:
		spiI, spiR := r.liveSPIs()
		x := next()
		h := Header(make([]byte, HeaderLen))
		h.SetSPIi(spiI)
		h.SetSPIr(spiR)
		h.SetVersion(Version2)
		h.SetExchange(IKE_SA_INIT + ExchangeType(x&3))
		h.SetMessageID(uint32(arg))
		h.SetLength(HeaderLen)
		from, to := a, b
		h.SetFlags(FlagInitiator)
		if x&4 != 0 {
			from, to = b, a
			h.SetFlags(FlagResponse)
		}
		before := len(to.conn.out)
		r.send(from, to, h)
		r.silent(to, before, fmt.Sprintf("a bare %s header (SPIs %x/%x, message ID %d)", h.Exchange(), spiI, spiR, arg))
	case opReorder:
		p := a
		if arg&1 != 0 {
			p = b
		}
		r.deliver(p, 1)
	case opCookieAnswer:
		for i := len(b.conn.out) - 1; i >= 0; i-- {
			m, err := DecodeMessage(b.conn.out[i])
			if err != nil || m.Exchange != IKE_SA_INIT {
				continue
			}
			n := m.Payloads.Notify(COOKIE)
			req := r.forged[m.SPIi]
			if n == nil || req == nil {
				continue
			}
			orig, err := DecodeMessage(req)
			if err != nil {
				r.t.Fatal(err)
			}
			nonce := orig.Payloads.Get(PayloadNonce).(*Nonce)
			ke := orig.Payloads.Get(PayloadKE).(*KE)
			r.send(a, b, r.forgeInit(m.SPIi, nonce.Data, ke, n.Data))
			return
		}
	case opRestartA:
		r.restart++
		a2, _ := newPeers(r.t, func(c, d *Config) {
			fastSuites(c, d)
			c.Rand = rand.NewChaCha8([32]byte{1, r.restart})
		})
		r.a = a2
		a2.e.initiate(r.now)
	}
}

// mustBeSilent: a copy of a genuine message that is not byte for byte the
// original (truncated, or one byte changed), and is not an IKE_SA_INIT
// request (which is unauthenticated: a changed one can be a new valid
// request), nor of another major version (which earns an unauthenticated
// INVALID_MAJOR_VERSION, §2.5): nothing may answer it. Above all not a
// cached response (§2.1 retransmits only for the same request).
func mustBeSilent(raw []byte) bool {
	if len(raw) < HeaderLen {
		return true
	}
	h := Header(raw)
	return h.Exchange() != IKE_SA_INIT && h.Version()>>4 == 2
}

// silent fails unless everything p sent since its queue had before
// messages is a hint (an unprotected INFORMATIONAL with INVALID_IKE_SPI or
// INVALID_SPI, RFC 7296 §1.5, which the engine rate-limits): a cached
// response, or any answer of ours, would make p a reflector.
func (r *seqRun) silent(p *testPeer, before int, what string) {
	r.t.Helper()
	for _, raw := range p.conn.out[before:] {
		m, err := DecodeMessage(raw)
		hint := err == nil && m.Exchange == INFORMATIONAL && m.IsResponse() && len(m.Payloads) == 1 &&
			(m.Payloads.Notify(INVALID_IKE_SPI) != nil || m.Payloads.Notify(INVALID_SPI) != nil)
		if !hint {
			r.t.Fatalf("%s answered %s with %s: a reflector", p.name, what, describe(raw))
		}
	}
}

// seqNonce is one of a few distinct 32-byte nonces.
func seqNonce(v byte) []byte { return bytes.Repeat([]byte{v + 1}, 32) }

// seqBadKE is a KE payload b must refuse without keeping state.
func seqBadKE(kind byte) *KE {
	g := uint16(Curve25519)
	switch kind % 8 {
	case 0:
		return &KE{Group: g} // empty
	case 1:
		return &KE{Group: g, Data: make([]byte, 31)}
	case 2:
		return &KE{Group: g, Data: make([]byte, 33)}
	case 3:
		return &KE{Group: g, Data: make([]byte, 32)} // low order: all-zero shared secret
	case 4:
		return &KE{Group: g, Data: append([]byte{1}, make([]byte, 31)...)} // u = 1, low order
	case 5:
		return &KE{Group: uint16(ECP256), Data: make([]byte, 64)} // a group b does not take
	case 6:
		return &KE{Group: g, Data: make([]byte, maxKEDataLen)}
	}
	return &KE{Group: 0xffff, Data: []byte{1}}
}

// forgeInit builds an IKE_SA_INIT request for b, with cookie first if
// given.
func (r *seqRun) forgeInit(spi uint64, nonce []byte, ke *KE, cookie []byte) []byte {
	var ps Payloads
	if cookie != nil {
		ps = append(ps, &Notify{Kind: COOKIE, Data: cookie})
	}
	ps = append(ps, &SA{Proposals: MustParseProposals(ProtoIKE, "aes256gcm16-prfsha256-curve25519")}, ke, &Nonce{Data: nonce},
		&Notify{Kind: NAT_DETECTION_SOURCE_IP, Data: NATHash(spi, 0, r.a.addr)},
		&Notify{Kind: NAT_DETECTION_DESTINATION_IP, Data: NATHash(spi, 0, r.b.addr)})
	raw, err := (&Message{SPIi: spi, Exchange: IKE_SA_INIT, Flags: FlagInitiator, Payloads: ps}).Encode()
	if err != nil {
		r.t.Fatal(err)
	}
	return raw
}

// liveSPIs are the SPIs of the newest genuine message that carries both:
// what an observer on the path would read off the wire.
func (r *seqRun) liveSPIs() (uint64, uint64) {
	for i := len(r.history) - 1; i >= 0; i-- {
		if len(r.history[i].raw) >= HeaderLen {
			h := Header(r.history[i].raw)
			if h.SPIr() != 0 {
				return h.SPIi(), h.SPIr()
			}
		}
	}
	return 1, 2
}

func (r *seqRun) checkBounds(when string) {
	r.t.Helper()
	for _, p := range []*testPeer{r.a, r.b} {
		for _, sa := range p.e.sas {
			if sa == nil {
				r.t.Fatalf("%s: %s holds a nil IKE SA", when, p.name)
			}
		}
		if half := p.e.Status().HalfOpen; half > maxHalfOpen {
			r.t.Fatalf("%s: %s holds %d half-open IKE SAs, more than %d", when, p.name, half, maxHalfOpen)
		}
		if len(p.e.sas) > seqMaxIKESAs {
			r.t.Fatalf("%s: %s holds %d IKE SAs besides the half-open ones, more than %d", when, p.name, len(p.e.sas), seqMaxIKESAs)
		}
	}
}

// settle lets every genuine message through in order, ticking the clock a
// second at a time while nothing is in flight, until the engines agree on
// an IKE SA and a CHILD_SA, or a deadline generous enough for every
// retransmission, give-up and reconnect in the engine has passed.
func (r *seqRun) settle() {
	deadline := r.now.Add(10 * time.Minute)
	for steps := 0; r.now.Before(deadline); steps++ {
		if steps == 20000 {
			r.t.Fatalf("20000 messages while settling, the clock still at +%v: a message storm\na: %+v\nb: %+v", r.now.Sub(t0), r.a.e.Status(), r.b.e.Status())
		}
		switch {
		case len(r.a.conn.out) > 0:
			r.deliver(r.a, 0)
		case len(r.b.conn.out) > 0:
			r.deliver(r.b, 0)
		case r.agreed() == "":
			return
		default:
			r.tick(time.Second)
		}
		r.checkBounds("while settling")
	}
	r.t.Fatalf("not established 10 minutes after the attack ended: %s\na: %+v\nb: %+v", r.agreed(), r.a.e.Status(), r.b.e.Status())
}

// agreed says what keeps a and b from having one IKE SA and one CHILD_SA
// in common ("" if nothing does).
func (r *seqRun) agreed() string {
	sa, sb := r.a.e.Status(), r.b.e.Status()
	if sa.State != "established" || sb.State != "established" {
		return fmt.Sprintf("states %q and %q", sa.State, sb.State)
	}
	if sa.SPIi != sb.SPIi || sa.SPIr != sb.SPIr {
		return fmt.Sprintf("IKE SPIs %x/%x and %x/%x", sa.SPIi, sa.SPIr, sb.SPIi, sb.SPIr)
	}
	for _, ca := range sa.Children {
		for _, cb := range sb.Children {
			if ca.SPIOut == cb.SPIIn && ca.SPIIn == cb.SPIOut {
				return ""
			}
		}
	}
	return "no CHILD_SA in common"
}

// seqOp is one instruction: an operation and its argument.
func seqOp(op, arg byte) byte { return op<<4 | arg&15 }

// seqSeeds are the seed corpus's programs, kept here too so that the
// corpus files can be checked against them (TestSequenceSeedCorpus).
func seqSeeds() map[string][]byte {
	deliverAll := []byte{seqOp(opDeliverAB, 0), seqOp(opDeliverBA, 0), seqOp(opDeliverAB, 0), seqOp(opDeliverBA, 0)}
	return map[string][]byte{
		// Nothing hostile: the plain handshake.
		"handshake": deliverAll,
		// Two half-open IKE SAs from forged requests, S then T, then S
		// again with another nonce: b used to range over its SAs while
		// removing S from them and die on the hole that left.
		"three-packet-crash": []byte{seqOp(opForgeInit, 0), seqOp(opForgeInit, 1), seqOp(opForgeInit, 0|1<<2)},
		// The same after the genuine handshake, the forged SPIs then the
		// genuine one reused.
		"three-packet-crash-established": append(append([]byte{}, deliverAll...),
			seqOp(opForgeInit, 2), seqOp(opForgeInit, 3), seqOp(opForgeInit, 2|2<<2), seqOp(opForgeGenuine, 1)),
		// A forged restart of a's genuine half-open SA between b's answer
		// and a's IKE_AUTH.
		"forged-restart-mid-handshake": []byte{seqOp(opDeliverAB, 0), seqOp(opForgeGenuine, 0),
			seqOp(opDeliverBA, 0), seqOp(opDeliverAB, 0), seqOp(opDeliverBA, 0)},
		// Bad KE values, then the handshake.
		"bad-ke": append([]byte{seqOp(opForgeBadKE, 0), seqOp(opForgeBadKE, 1), seqOp(opForgeBadKE, 2),
			seqOp(opForgeBadKE, 3), seqOp(opForgeBadKE, 4), seqOp(opForgeBadKE, 5), seqOp(opForgeBadKE, 6), seqOp(opForgeBadKE, 7)}, deliverAll...),
		// Enough forged requests to turn cookies on, answered by an
		// attacker that sees b's replies; a's handshake in the middle.
		"cookie-answering-flood": []byte{
			seqOp(opForgeInit, 0), seqOp(opForgeInit, 1), seqOp(opForgeInit, 2), seqOp(opForgeInit, 3),
			seqOp(opForgeInit, 4), seqOp(opForgeInit, 5), seqOp(opForgeInit, 6), seqOp(opForgeInit, 7),
			seqOp(opForgeInit, 8), seqOp(opForgeInit, 9), seqOp(opForgeInit, 10), seqOp(opForgeInit, 11),
			seqOp(opDeliverAB, 0), seqOp(opCookieAnswer, 0), seqOp(opCookieAnswer, 0),
			seqOp(opDeliverBA, 0), seqOp(opDeliverAB, 0), seqOp(opCookieAnswer, 0), seqOp(opDeliverBA, 0),
			seqOp(opDeliverAB, 0), seqOp(opDeliverBA, 0)},
		// Replays, bare headers with the live SPIs and every message ID,
		// mutations and truncations of the genuine messages.
		"replay-and-reflection": append(append([]byte{}, deliverAll...),
			seqOp(opReplay, 0), seqOp(opReplay, 1), seqOp(opReplay, 2), seqOp(opReplay, 3),
			seqOp(opBareHeader, 0), 1, seqOp(opBareHeader, 1), 1, seqOp(opBareHeader, 1), 0, seqOp(opBareHeader, 2), 3,
			seqOp(opBareHeader, 0), 4|1, seqOp(opMutate, 2), 40, 1, seqOp(opTruncate, 2), 27, seqOp(opTruncate, 3), 60,
			seqOp(opStranger, 2), seqOp(opDeliverBA, 0), seqOp(opDeliverBA, 0)),
		// Loss, reordering, time passing and a restart of a mid-way.
		"loss-and-restart": []byte{seqOp(opDeliverAB, 0), seqOp(opLoseB, 0), seqOp(opTick, 3),
			seqOp(opDeliverAB, 0), seqOp(opDeliverBA, 0), seqOp(opDeliverAB, 0), seqOp(opRestartA, 0),
			seqOp(opDeliverBA, 0), seqOp(opReorder, 0), seqOp(opTick, 13), seqOp(opDeliverAB, 0)},
	}
}

// TestSequenceSeedCorpus keeps testdata/fuzz/FuzzEngineSequence in step
// with seqSeeds: `go test ./ike` runs the corpus files, so they must hold
// the programs documented here.
func TestSequenceSeedCorpus(t *testing.T) {
	for name, prog := range seqSeeds() {
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", prog)
		got, err := readSeed(name)
		if err != nil || got != want {
			t.Errorf("testdata/fuzz/FuzzEngineSequence/%s: want\n%s(regenerate with GRESEC_WRITE_SEEDS=1 go test -run TestSequenceSeedCorpus ./ike)", name, want)
			if writeSeeds() {
				if err := writeSeed(name, want); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func seedPath(name string) string {
	return filepath.Join("testdata", "fuzz", "FuzzEngineSequence", name)
}

func readSeed(name string) (string, error) {
	b, err := os.ReadFile(seedPath(name))
	return string(b), err
}

func writeSeeds() bool { return os.Getenv("GRESEC_WRITE_SEEDS") == "1" }

func writeSeed(name, content string) error {
	if err := os.MkdirAll(filepath.Dir(seedPath(name)), 0o755); err != nil {
		return err
	}
	return os.WriteFile(seedPath(name), []byte(content), 0o644)
}
