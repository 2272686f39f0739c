package ike

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
)

// ChildKeys is one negotiated CHILD_SA handed to the data plane. KeyIn and
// KeyOut are key || salt (36 bytes for AES-256-GCM), the layout of
// esp.NewSA and of `ip xfrm ... rfc4106(gcm(aes))`.
type ChildKeys struct {
	SPIIn, SPIOut uint32
	KeyIn, KeyOut Secret
	Transform     string // e.g. "aes256gcm16"
	Lifetime      time.Duration
	LifetimeBytes uint64
}

// DataPlane is what the engine needs from the ESP side.
type DataPlane interface {
	// InstallChild installs inbound first; the data plane switches its
	// outbound SA to the new one (make-before-break).
	InstallChild(ChildKeys) error
	RemoveChild(spiIn uint32) error
	// ChildBytes reports traffic, for byte lifetimes and liveness.
	ChildBytes(spiIn uint32) (in, out uint64)
}

// PacketConn is the UDP socket (port 500). *net.UDPConn implements it.
type PacketConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// Config is one host-to-host GRE-over-IPsec peering.
type Config struct {
	Local, Remote       netip.Addr
	Initiate            bool
	LocalPSK, RemotePSK Secret // the key we prove with / the peer proves with (often equal)
	LocalID, RemoteID   ID     // RemoteID zero: any identity is accepted
	Proposals           []Proposal
	ESPProposals        []Proposal // with DH groups: PFS on rekey
	Lifetime            time.Duration
	ChildLifetime       time.Duration
	ChildLifetimeBytes  uint64
	DPD                 time.Duration // 0: no liveness checks
	ReplayWindow        int           // passed through for the data plane's benefit
	RemotePort          uint16        // 0: 500

	// Rand supplies SPIs, nonces and DH keys; nil is crypto/rand. Tests
	// inject a deterministic reader.
	Rand io.Reader
	// Retransmit is the first retransmission timeout (0: 2 s), doubled on
	// each try up to RetransmitTries (0: 5) tries.
	Retransmit      time.Duration
	RetransmitTries int
}

// Status is a snapshot for `gresec status`.
type Status struct {
	State       string // "idle", "connecting", "established"
	SPIi, SPIr  uint64
	Suite       string
	ESPSuite    string
	Established time.Time
	Children    []ChildStatus
	LastError   string
	Counters    Counters
}

// ChildStatus describes one installed CHILD_SA.
type ChildStatus struct {
	SPIIn, SPIOut uint32
	Transform     string
	Installed     time.Time
}

// Counters count what happened, bad input included.
type Counters struct {
	Received, Sent, Retransmits, Dropped, AuthFailures, Rekeys uint64
}

const (
	defaultRetransmit = 2 * time.Second
	defaultTries      = 5
	reconnectDelay    = 10 * time.Second
	maxPacket         = 65535
)

// Engine runs IKEv2 for one peer. All protocol state is owned by the Run
// goroutine (or a test driving handle/tick); Status may be called from any
// goroutine.
type Engine struct {
	cfg  Config
	dp   DataPlane
	log  *zap.Logger
	rand io.Reader
	conn PacketConn
	peer netip.AddrPort

	sa       *ikeSA // current IKE SA (we initiate: from the start; responder: once authenticated)
	half     *ikeSA // responder: an IKE SA between IKE_SA_INIT and IKE_AUTH
	old      *ikeSA // an IKE SA being replaced by a rekey, kept to answer its Delete
	req      *request
	queue    []func(now time.Time)
	retryAt  time.Time // initiator: reconnect after a failure
	lastErr  string
	counters Counters

	mu     sync.Mutex
	status Status
}

// request is our one outstanding request (window size 1, §2.3).
type request struct {
	sa       *ikeSA
	exchange ExchangeType
	id       uint32
	raw      []byte
	deadline time.Time
	timeout  time.Duration
	tries    int
	onResp   func(now time.Time, m *Message, raw []byte, inner Payloads)
	onFail   func(now time.Time)
}

// New makes an engine; it does nothing until Run.
func New(cfg Config, dp DataPlane, log *zap.Logger) *Engine {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Retransmit == 0 {
		cfg.Retransmit = defaultRetransmit
	}
	if cfg.RetransmitTries == 0 {
		cfg.RetransmitTries = defaultTries
	}
	port := cfg.RemotePort
	if port == 0 {
		port = 500
	}
	e := &Engine{cfg: cfg, dp: dp, rand: cfg.Rand, log: log.With(zap.Stringer("peer", cfg.Remote))}
	e.peer = netip.AddrPortFrom(cfg.Remote, port)
	e.status.State = "idle"
	return e
}

// Status returns a snapshot of the engine's state.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.status
	s.Children = append([]ChildStatus(nil), s.Children...)
	return s
}

func (e *Engine) publish() {
	s := Status{State: "idle", LastError: e.lastErr, Counters: e.counters}
	if sa := e.sa; sa != nil {
		s.State = "connecting"
		s.SPIi, s.SPIr = sa.spiI, sa.spiR
		if sa.established {
			s.State = "established"
			s.Established = sa.establishedAt
			s.Suite = sa.suite.String()
		}
		for _, c := range sa.children {
			s.ESPSuite = c.keys.Transform
			s.Children = append(s.Children, ChildStatus{SPIIn: c.keys.SPIIn, SPIOut: c.keys.SPIOut, Transform: c.keys.Transform, Installed: c.installed})
		}
	}
	e.mu.Lock()
	e.status = s
	e.mu.Unlock()
}

type packet struct {
	b    []byte
	from netip.AddrPort
}

// Run serves IKE on conn until ctx is done or conn fails. When ctx ends it
// deletes the IKE SA (best effort) and, if conn is an io.Closer, closes it
// to stop the reader.
func (e *Engine) Run(ctx context.Context, conn PacketConn) error {
	e.conn = conn
	pkts := make(chan packet, 16)
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, maxPacket)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				readErr <- err
				return
			}
			select {
			case pkts <- packet{append([]byte(nil), buf[:n]...), from}:
			case <-ctx.Done():
				return
			}
		}
	}()
	if e.cfg.Initiate {
		e.initiate(time.Now())
		e.publish()
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			e.shutdown(time.Now())
			if c, ok := conn.(io.Closer); ok {
				c.Close()
			}
			return ctx.Err()
		case err := <-readErr:
			return err
		case p := <-pkts:
			e.handle(p.b, p.from, time.Now())
		case now := <-tick.C:
			e.tick(now)
		}
	}
}

func (e *Engine) saFields(sa *ikeSA, m *Message) []zap.Field {
	f := make([]zap.Field, 0, 4)
	if sa != nil {
		f = append(f, zap.String("spi_i", hex64(sa.spiI)), zap.String("spi_r", hex64(sa.spiR)))
	}
	if m != nil {
		f = append(f, zap.Uint32("msgid", m.MessageID), zap.Stringer("exchange", m.Exchange))
	}
	return f
}

func hex64(v uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

func (e *Engine) write(raw []byte) {
	if e.conn == nil {
		return
	}
	if _, err := e.conn.WriteToUDPAddrPort(raw, e.peer); err != nil {
		e.log.Warn("send failed", zap.Error(err))
		return
	}
	e.counters.Sent++
}

func (e *Engine) randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(e.rand, b); err != nil {
		panic("ike: random source failed: " + err.Error()) // crypto/rand does not fail
	}
	return b
}

func (e *Engine) newIKESPI() uint64 {
	for {
		if v := binary.BigEndian.Uint64(e.randBytes(8)); v != 0 {
			return v
		}
	}
}

func (e *Engine) newESPSPI() uint32 {
	for {
		// 1..255 are reserved by IANA (RFC 4303 §2.1).
		if v := binary.BigEndian.Uint32(e.randBytes(4)); v > 255 {
			return v
		}
	}
}

// sendRequest sends a request on sa now, or queues it behind the one in
// flight. build returns the message to send (without message ID).
func (e *Engine) sendRequest(now time.Time, sa *ikeSA, exch ExchangeType, inner Payloads,
	onResp func(time.Time, *Message, []byte, Payloads), onFail func(time.Time)) {
	if e.req != nil {
		e.queue = append(e.queue, func(now time.Time) { e.sendRequest(now, sa, exch, inner, onResp, onFail) })
		return
	}
	m := &Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: exch, Flags: sa.flags(false), MessageID: sa.nextReqID}
	raw, err := sa.protect(m, inner)
	if err != nil {
		e.log.Error("cannot build request", append(e.saFields(sa, m), zap.Error(err))...)
		return
	}
	sa.nextReqID++
	e.req = &request{sa: sa, exchange: exch, id: m.MessageID, raw: raw, timeout: e.cfg.Retransmit,
		deadline: now.Add(e.cfg.Retransmit), onResp: onResp, onFail: onFail}
	e.log.Debug("request", e.saFields(sa, m)...)
	e.write(raw)
}

// sendRaw puts a ready-made request in flight (IKE_SA_INIT, which is not
// encrypted and whose bytes the AUTH payload covers).
func (e *Engine) sendRaw(now time.Time, sa *ikeSA, exch ExchangeType, id uint32, raw []byte,
	onResp func(time.Time, *Message, []byte, Payloads), onFail func(time.Time)) {
	e.req = &request{sa: sa, exchange: exch, id: id, raw: raw, timeout: e.cfg.Retransmit,
		deadline: now.Add(e.cfg.Retransmit), onResp: onResp, onFail: onFail}
	e.write(raw)
}

func (e *Engine) finishRequest(now time.Time) {
	e.req = nil
	if len(e.queue) > 0 {
		next := e.queue[0]
		e.queue = e.queue[1:]
		next(now)
	}
}

// tick runs timers: retransmission, DPD, rekeying, reconnecting.
func (e *Engine) tick(now time.Time) {
	defer e.publish()
	if r := e.req; r != nil && !now.Before(r.deadline) {
		if r.tries+1 >= e.cfg.RetransmitTries {
			e.log.Warn("peer does not answer, giving up", e.saFields(r.sa, &Message{MessageID: r.id, Exchange: r.exchange})...)
			e.req = nil
			e.queue = nil
			if r.onFail != nil {
				r.onFail(now)
			}
			return
		}
		r.tries++
		r.timeout *= 2
		r.deadline = now.Add(r.timeout)
		e.counters.Retransmits++
		e.log.Debug("retransmit", append(e.saFields(r.sa, &Message{MessageID: r.id, Exchange: r.exchange}), zap.Int("try", r.tries))...)
		e.write(r.raw)
	}
	if e.sa == nil {
		if e.cfg.Initiate && !e.retryAt.IsZero() && !now.Before(e.retryAt) {
			e.initiate(now)
		}
		return
	}
	if e.sa.established {
		e.timers(now)
	}
}

// fail tears the IKE SA down locally (its children too) and, if we
// initiate, schedules a reconnect.
func (e *Engine) fail(now time.Time, reason string) {
	e.lastErr = reason
	if e.sa != nil {
		e.log.Warn("IKE SA down", append(e.saFields(e.sa, nil), zap.String("reason", reason))...)
		e.removeChildren(e.sa)
		e.sa.keys.Wipe()
	}
	e.sa = nil
	e.req = nil
	e.queue = nil
	if e.cfg.Initiate {
		e.retryAt = now.Add(reconnectDelay)
	}
	e.publish()
}

func (e *Engine) removeChildren(sa *ikeSA) {
	for _, c := range sa.children {
		if err := e.dp.RemoveChild(c.keys.SPIIn); err != nil {
			e.log.Warn("remove child failed", zap.Uint32("spi_in", c.keys.SPIIn), zap.Error(err))
		}
	}
	sa.children = nil
}

// shutdown sends a Delete for the IKE SA (one try: we are leaving).
func (e *Engine) shutdown(now time.Time) {
	if sa := e.sa; sa != nil && sa.established {
		m := &Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: INFORMATIONAL, Flags: sa.flags(false), MessageID: sa.nextReqID}
		if raw, err := sa.protect(m, Payloads{&Delete{Protocol: ProtoIKE}}); err == nil {
			e.write(raw)
		}
	}
	e.cfg.Initiate = false
	e.fail(now, "shut down")
}

// handle processes one datagram from the peer.
func (e *Engine) handle(raw []byte, from netip.AddrPort, now time.Time) {
	defer e.publish()
	e.counters.Received++
	if from.Addr().Unmap() != e.cfg.Remote.Unmap() {
		e.counters.Dropped++
		return
	}
	m, err := DecodeMessage(raw)
	if err != nil {
		e.counters.Dropped++
		e.log.Debug("undecodable message dropped", zap.Error(err))
		return
	}
	if m.IsResponse() {
		e.handleResponse(now, m, raw)
		return
	}
	if m.Exchange == IKE_SA_INIT {
		e.respondInit(now, m, raw)
		return
	}
	sa := e.findSA(m.SPIi, m.SPIr)
	if sa == nil || !sa.keyed() {
		e.counters.Dropped++
		e.log.Debug("request for an unknown IKE SA", e.saFields(nil, m)...)
		return
	}
	switch {
	case m.MessageID+1 == sa.expectReqID && sa.lastResp != nil:
		// A retransmitted request: answer with the same bytes, do not
		// process it again (§2.1).
		e.write(sa.lastResp)
		return
	case m.MessageID != sa.expectReqID:
		e.counters.Dropped++
		return
	}
	inner, err := sa.unprotect(m, raw)
	if err != nil {
		e.counters.Dropped++
		e.log.Debug("request failed integrity", append(e.saFields(sa, m), zap.Error(err))...)
		return
	}
	sa.lastRecv = now
	var resp Payloads
	if u := inner.UnsupportedCritical(); u != nil {
		resp = Payloads{&Notify{Kind: UNSUPPORTED_CRITICAL_PAYLOAD, Data: []byte{byte(u.PayloadType)}}}
	} else {
		switch m.Exchange {
		case IKE_AUTH:
			resp = e.respondAuth(now, sa, m, inner)
		case CREATE_CHILD_SA:
			resp = e.respondCreateChild(now, sa, inner)
		case INFORMATIONAL:
			resp = e.respondInformational(now, sa, inner)
		default:
			e.counters.Dropped++
			return
		}
	}
	out := &Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: m.Exchange, Flags: sa.flags(true), MessageID: m.MessageID}
	rawResp, err := sa.protect(out, resp)
	if err != nil {
		e.log.Error("cannot build response", append(e.saFields(sa, out), zap.Error(err))...)
		return
	}
	sa.expectReqID++
	sa.lastResp = rawResp
	e.write(rawResp)
	if sa.deleteAfterResponse {
		e.dropSA(now, sa, "deleted by peer")
	}
}

func (e *Engine) findSA(spiI, spiR uint64) *ikeSA {
	for _, sa := range []*ikeSA{e.sa, e.half, e.old} {
		if sa != nil && sa.spiI == spiI && sa.spiR == spiR {
			return sa
		}
	}
	return nil
}

// dropSA forgets sa: the current one through fail, others quietly.
func (e *Engine) dropSA(now time.Time, sa *ikeSA, reason string) {
	switch sa {
	case e.sa:
		e.fail(now, reason)
	case e.half:
		e.half = nil
		sa.keys.Wipe()
	case e.old:
		e.old = nil
		e.removeChildren(sa)
		sa.keys.Wipe()
	}
}

func (e *Engine) handleResponse(now time.Time, m *Message, raw []byte) {
	r := e.req
	if r == nil || r.id != m.MessageID || r.exchange != m.Exchange || r.sa.spiI != m.SPIi {
		e.counters.Dropped++
		return
	}
	sa := r.sa
	if m.Exchange == IKE_SA_INIT {
		e.finishRequestWith(now, r, m, raw, m.Payloads)
		return
	}
	if sa.spiR != m.SPIr {
		e.counters.Dropped++
		return
	}
	inner, err := sa.unprotect(m, raw)
	if err != nil {
		e.counters.Dropped++
		return
	}
	sa.lastRecv = now
	e.finishRequestWith(now, r, m, raw, inner)
}

func (e *Engine) finishRequestWith(now time.Time, r *request, m *Message, raw []byte, inner Payloads) {
	e.req = nil
	r.onResp(now, m, raw, inner)
	if e.req == nil {
		e.finishRequest(now)
	}
}
