package ikev1

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gresec/gresec/ike"
)

const (
	defaultRetransmit = 2 * time.Second
	defaultTries      = 5
	// maxHalfOpen caps the responder phase 1 SAs that have not
	// authenticated: each holds a few hundred bytes until its peer's
	// third message, and the DH work waits for that message, which must
	// bring our cookie.
	maxHalfOpen = 16
	// halfOpenTimeout is how long such an SA waits for the peer.
	halfOpenTimeout = 30 * time.Second
	// maxPhase1 caps the established phase 1 SAs kept with the peer.
	maxPhase1 = 4
	// maxQuick caps the Quick Modes under way on one phase 1 SA.
	maxQuick = 8
	// quickLinger keeps a finished Quick Mode to answer a retransmission
	// of the message before its last.
	quickLinger    = 30 * time.Second
	reconnectDelay = 10 * time.Second
	nonceLen       = 32
	inboxLen       = 64
	// rekeyMargin: a phase 2 SA is rekeyed when this part of its life is
	// left, and the old one deleted once the new one is installed.
	rekeyMargin = 10
)

// Sender is the UDP socket the engine answers on.
type Sender interface {
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

type datagram struct {
	b    []byte
	from netip.AddrPort
	natt bool // came on port 4500
}

// Engine runs IKEv1 with one peer. Protocol state is owned by the Serve
// goroutine; Offer and Status may be called from any goroutine.
type Engine struct {
	cfg    ike.Config
	dp     ike.DataPlane
	log    *zap.Logger
	rand   io.Reader
	conn   Sender
	peer   netip.AddrPort
	inbox  chan datagram
	secret [32]byte // keys the responder cookies

	suites1 []Phase1Suite
	suites2 []Phase2Suite

	p1s      []*phase1
	children []*child
	// nextStart is when an initiator (re)starts Main Mode; zero: not due.
	nextStart time.Time
	dpd       dpdState

	nat natState // NAT traversal (nat.go)

	drops      [16]atomic.Uint64 // by ike.DropReason
	received   atomic.Uint64
	aggrLogged atomic.Uint64
	counts     counters      // exchanges, retransmissions, DPD (counters.go)
	keepalives atomic.Uint64 // NAT keepalives sent
	rebinds    atomic.Uint64 // the peer's NAT mappings followed
	// unprotLogged and noPropLogged count unauthenticated messages that
	// are logged only now and then: anyone can send them.
	unprotLogged atomic.Uint64
	noPropLogged atomic.Uint64

	mu     sync.Mutex
	status Status
	// keys shares the live SAs' key slices (not copies) with ExportKeys,
	// which copies them under mu. The engine wipes a key when its SA
	// goes, after publish has dropped it from here.
	keys ExportedKeys
}

// New makes an engine for cfg (ike's configuration: addresses, PSKs,
// identities, proposals, lifetimes, retransmissions, child policy).
func New(cfg ike.Config, dp ike.DataPlane, log *zap.Logger) (*Engine, error) {
	if log == nil {
		log = zap.NewNop()
	}
	e := &Engine{cfg: cfg, dp: dp, log: log.With(zap.String("ike", "v1")), rand: cfg.Rand, inbox: make(chan datagram, inboxLen)}
	e.nat.espFrom = make(chan netip.AddrPort, 1)
	if e.rand == nil {
		e.rand = rand.Reader
	}
	if e.cfg.Retransmit == 0 {
		e.cfg.Retransmit = defaultRetransmit
	}
	if e.cfg.RetransmitTries == 0 {
		e.cfg.RetransmitTries = defaultTries
	}
	if e.cfg.RetransmitBase == 0 {
		e.cfg.RetransmitBase = 2
	}
	if e.cfg.Lifetime == 0 {
		e.cfg.Lifetime = 24 * time.Hour
	}
	if e.cfg.ChildLifetime == 0 {
		e.cfg.ChildLifetime = time.Hour
	}
	port := cfg.RemotePort
	if port == 0 {
		port = 500
	}
	e.peer = netip.AddrPortFrom(cfg.Remote, port)
	var err error
	if e.suites1, err = Phase1Suites(cfg.Proposals, e.cfg.Lifetime); err != nil {
		return nil, err
	}
	esp := cfg.ESPProposals
	if s, ok := dp.(ike.ESPSupporter); ok {
		esp, _ = ike.DataPlaneESP(esp, s.SupportsESP)
	}
	e.suites2 = Phase2Suites(esp)
	if len(e.suites2) == 0 {
		return nil, errors.New("ikev1: no ESP proposal has an IKEv1 form (AES-CBC with HMAC-SHA or AES-GCM)")
	}
	if _, err := io.ReadFull(e.rand, e.secret[:]); err != nil {
		return nil, err
	}
	return e, nil
}

// Offer queues a datagram from the socket without blocking: one from
// another address than the peer's, not IKEv1, or beyond a full queue is
// counted and dropped.
func (e *Engine) Offer(b []byte, from netip.AddrPort) { e.offer(b, from, false) }

func (e *Engine) offer(b []byte, from netip.AddrPort, natt bool) {
	e.received.Add(1)
	switch {
	case from.Addr().Unmap() != e.cfg.Remote.Unmap():
		e.drop(ike.DropUnknownSource)
		return
	case !IsV1(b) || len(b) > MaxMessage:
		e.drop(ike.DropMalformed)
		return
	}
	select {
	case e.inbox <- datagram{b: clone(b), from: from, natt: natt}:
	default:
		e.drop(ike.DropQueueFull)
	}
}

func (e *Engine) drop(r ike.DropReason) {
	if int(r) < len(e.drops) {
		e.drops[r].Add(1)
	}
}

// Serve runs the engine until ctx ends, then deletes its SAs (telling the
// peer) and returns.
func (e *Engine) Serve(ctx context.Context, w Sender) error {
	e.conn = w
	now := time.Now()
	if e.cfg.Initiate {
		e.startMain(now)
	}
	e.publish(now)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			e.shutdown()
			e.publish(time.Now())
			return nil
		case d := <-e.inbox:
			e.nat.cur.from, e.nat.cur.natt = d.from, d.natt
			e.handle(time.Now(), d.b)
			e.nat.cur.from, e.nat.cur.natt = netip.AddrPort{}, false
		case from := <-e.nat.espFrom:
			e.espPeer(from)
		case <-tick.C:
			e.tick(time.Now())
		}
		e.publish(time.Now())
	}
}

// shutdown deletes every SA, telling the peer while a phase 1 SA lets us.
func (e *Engine) shutdown() {
	p := e.established()
	for _, c := range e.children {
		if p != nil {
			e.sendInfo(p, PayloadDelete, Delete{Protocol: ProtoESP, SPIs: [][]byte{be32(c.spiIn)}}.Encode())
		}
		_ = e.dp.RemoveChild(c.spiIn)
		e.wipeChild(c)
	}
	e.children = nil
	for _, p := range e.p1s {
		if p.state == stateEstablished {
			e.sendInfo(p, PayloadDelete, Delete{Protocol: ProtoISAKMP, SPIs: [][]byte{p.cookies()}}.Encode())
		}
		e.mu.Lock()
		p.wipe()
		e.mu.Unlock()
	}
	e.p1s = nil
}

func (e *Engine) write(b []byte) {
	e.sendTo(b, e.peer, e.nat.floated)
}

// retry is one outstanding message that we resend until answered.
type retry struct {
	msg   []byte
	tries int
	next  time.Time
}

func (e *Engine) arm(r *retry, now time.Time, msg []byte) {
	r.msg, r.tries, r.next = msg, 0, now.Add(e.cfg.Retransmit)
	e.write(msg)
}

// due resends r's message when its timer is up; false when the tries
// are spent.
func (e *Engine) due(r *retry, now time.Time) bool {
	if r.msg == nil || now.Before(r.next) {
		return true
	}
	r.tries++
	if r.tries >= e.cfg.RetransmitTries {
		return false
	}
	d := float64(e.cfg.Retransmit)
	for range r.tries {
		d *= e.cfg.RetransmitBase
	}
	r.next = now.Add(time.Duration(d))
	e.counts.retransmits.Add(1)
	e.write(r.msg)
	return true
}

func (e *Engine) handle(now time.Time, b []byte) {
	m, err := Decode(b)
	if err != nil {
		e.drop(ike.DropMalformed)
		return
	}
	if m.Exchange == ExchangeAggressive {
		// Refused: the responder's first answer would carry HASH_R, a
		// PSK-keyed hash anyone can then brute-force offline.
		e.drop(ike.DropUnexpected)
		if n := e.aggrLogged.Add(1); n == 1 || n%100 == 0 {
			e.log.Warn("Aggressive Mode refused (it exposes a PSK-keyed hash to offline cracking); configure the peer for Main Mode",
				zap.String("peer", e.peer.String()), zap.Uint64("refused", n))
		}
		return
	}
	if m.Exchange == ExchangeMain && m.RCookie == 0 && m.MsgID == 0 && m.Encrypted == nil {
		e.mainResponder1(now, m, b)
		return
	}
	p := e.find(m.ICookie, m.RCookie)
	if p == nil {
		// The initiator's first answer carries the responder cookie we do
		// not know yet.
		for _, q := range e.p1s {
			if q.initiator && q.ic == m.ICookie && q.rc == 0 && m.Exchange == ExchangeMain {
				p = q
			}
		}
	}
	if p == nil {
		if m.Exchange == ExchangeInfo && m.Encrypted == nil {
			e.unprotectedInfo(m)
			return
		}
		e.drop(ike.DropUnknownSA)
		return
	}
	switch m.Exchange {
	case ExchangeMain:
		e.main(now, p, m, b)
	case ExchangeQuick:
		e.quick(now, p, m, b)
	case ExchangeInfo:
		e.info(now, p, m)
	default:
		e.drop(ike.DropUnexpected)
	}
}

func (e *Engine) find(ic, rc uint64) *phase1 {
	for _, p := range e.p1s {
		if p.ic == ic && p.rc == rc && rc != 0 {
			return p
		}
	}
	return nil
}

// established is the newest established phase 1 SA, or nil.
func (e *Engine) established() *phase1 {
	var best *phase1
	for _, p := range e.p1s {
		if p.state == stateEstablished && (best == nil || p.since.After(best.since)) {
			best = p
		}
	}
	return best
}

func (e *Engine) remove(p *phase1) {
	for i, q := range e.p1s {
		if q == p {
			e.p1s = append(e.p1s[:i], e.p1s[i+1:]...)
			e.mu.Lock() // ExportKeys may be copying the key
			p.wipe()
			e.mu.Unlock()
			return
		}
	}
}

// responderCookie is a keyed hash of the peer and its cookie: the same
// answer to a retransmitted first message, unguessable to others.
func (e *Engine) responderCookie(ic uint64) uint64 {
	m := hmac.New(sha256.New, e.secret[:])
	m.Write(be64(ic))
	a := e.peer.Addr().As16()
	m.Write(a[:])
	c := binary.BigEndian.Uint64(m.Sum(nil))
	if c == 0 {
		c = 1
	}
	return c
}

func (e *Engine) random(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(e.rand, b); err != nil {
		panic(fmt.Sprintf("ikev1: random source failed: %v", err)) // crypto/rand does not fail
	}
	return b
}

func (e *Engine) tick(now time.Time) {
	if !e.nextStart.IsZero() && !now.Before(e.nextStart) {
		e.nextStart = time.Time{}
		e.startMain(now)
	}
	for _, p := range append([]*phase1(nil), e.p1s...) {
		if !e.due(&p.retry, now) {
			e.log.Warn("phase 1 gave up: no answer from the peer", zap.String("state", p.state.String()), zap.Int("tries", p.retry.tries))
			e.counts.exchange("main_mode", p.initiator, ResultTimeout)
			e.remove(p)
			e.reconnect(now)
			continue
		}
		if !p.initiator && p.state != stateEstablished && now.Sub(p.since) > halfOpenTimeout {
			e.remove(p)
			continue
		}
		if p.state == stateEstablished && !p.expires.IsZero() && !now.Before(p.expires) {
			e.log.Info("phase 1 SA expired", zap.String("spi", p.spis()))
			e.sendInfo(p, PayloadDelete, Delete{Protocol: ProtoISAKMP, SPIs: [][]byte{p.cookies()}}.Encode())
			e.remove(p)
			continue
		}
		if p.state == stateEstablished && p.initiator && !p.rekeyed && !p.rekeyAt.IsZero() && !now.Before(p.rekeyAt) {
			p.rekeyed = true
			e.startMain(now)
		}
		for mid, q := range p.quicks {
			if q.done {
				if now.Sub(q.doneAt) > quickLinger {
					delete(p.quicks, mid)
				}
				continue
			}
			if !e.due(&q.retry, now) {
				e.log.Warn("Quick Mode gave up: no answer from the peer", zap.Uint32("msgid", mid))
				e.counts.exchange("quick_mode", q.initiator, ResultTimeout)
				delete(p.quicks, mid)
				if q.initiator {
					e.reconnect(now)
				}
			}
		}
	}
	e.childTimers(now)
	e.dpdTick(now)
	e.natKeepalive(now)
}

// reconnect schedules a new Main Mode when we initiate and have nothing
// under way.
func (e *Engine) reconnect(now time.Time) {
	if !e.cfg.Initiate || !e.nextStart.IsZero() {
		return
	}
	for _, p := range e.p1s {
		if p.initiator && p.state != stateEstablished {
			return
		}
	}
	if e.established() == nil {
		e.resetPath() // a new Main Mode finds the NAT again
	}
	e.nextStart = now.Add(reconnectDelay)
}

// wipeChild clears a phase 2 SA's keys, under mu: ExportKeys may be
// copying them.
func (e *Engine) wipeChild(c *child) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c.keys.KeyIn.Wipe()
	c.keys.KeyOut.Wipe()
}
