package ike

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// ChildKeys is one negotiated CHILD_SA handed to the data plane. KeyIn and
// KeyOut are each direction's KEYMAT (RFC 7296 §2.17): the encryption key
// (with its 4-byte salt for AES-GCM and ChaCha20-Poly1305: the layout of
// `ip xfrm ... rfc4106(gcm(aes))`), then the integrity key, if any.
type ChildKeys struct {
	SPIIn, SPIOut uint32
	KeyIn, KeyOut Secret
	Suite         Suite  // the negotiated ESP algorithms
	Transform     string // e.g. "aes256gcm16", "aes128-sha1" (Suite.Transform)
	Lifetime      time.Duration
	LifetimeBytes uint64
	ESN           bool // extended sequence numbers
	// LocalTS and RemoteTS are the negotiated traffic selectors, ours
	// and the peer's, after narrowing: what a tunnel-mode data plane
	// checks inner packets against (RFC 4301 §5.2).
	LocalTS, RemoteTS []TrafficSelector
	// UDPPeer: the CHILD_SA carries ESP in UDP (RFC 3948) from our port
	// 4500 to this address and port of the peer (zero: raw ESP). See
	// ESPPeerMover for later moves.
	UDPPeer netip.AddrPort
	// KeepOutbound: install both halves but keep sending on the current
	// outbound SA. Set when we answer a rekey: the initiator installs its
	// inbound half only once our answer arrives, so packets on the new SA
	// before then are lost; we switch when it deletes the old SA.
	KeepOutbound bool
	ReplayWindow int // Config.ReplayWindow, passed through
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

// OutboundSwitcher is an optional DataPlane method. After a collision
// (both peers rekeying one CHILD_SA, or both creating an IKE SA) the
// CHILD_SA installed last may be the redundant one; before removing it the
// engine moves sending back to the survivor with SetOutbound, so that the
// data plane never lacks an outbound SA. A DataPlane without it loses its
// outbound SA until the next install in those (rare) cases.
type OutboundSwitcher interface {
	// SetOutbound makes the outbound half of the installed CHILD_SA whose
	// inbound SPI is spiIn the one that sends.
	SetOutbound(spiIn uint32) error
}

// ESPSupporter is an optional DataPlane method: whether the data plane
// implements an ESP suite (cipher, key size, integrity, ESN). The engine
// proposes and accepts only those: never negotiate what the data plane
// does not do. Without it every suite the engine knows is taken.
type ESPSupporter interface {
	SupportsESP(Suite) bool
}

// SequenceReporter is an optional DataPlane method: the last sequence
// number sent on a CHILD_SA's outbound half, so the engine rekeys before
// the 32-bit counter runs out.
type SequenceReporter interface {
	ChildSequence(spiIn uint32) uint64
}

// seqRekeyAt is 90 % of the 32-bit sequence space.
const seqRekeyAt = uint64(1<<32-1) / 10 * 9

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
	Child               ChildPolicy   // mode and selectors of the CHILD_SAs (child_policy.go)
	// UDPEncap says when the CHILD_SAs carry ESP in UDP; NATKeepalive is
	// how often the side behind a NAT sends a keepalive when nothing else
	// went out (0: never). nat.go.
	UDPEncap     EncapMode
	NATKeepalive time.Duration

	// CookieThreshold is how many answered IKE_SA_INIT requests that have
	// not (yet) led to an authenticated IKE SA, within the last minute,
	// make us demand a COOKIE (RFC 7296 §2.6) before keeping any state.
	// 0: 10; negative: never.
	CookieThreshold int

	// Rand supplies SPIs, nonces, DH keys and timer jitter; nil is
	// crypto/rand. Tests inject a deterministic reader.
	Rand io.Reader
	// ESPSPI, when set, allocates our inbound ESP SPIs instead of Rand: a
	// daemon running many engines over one ESP socket keeps them unique
	// among its tunnels (package demux).
	ESPSPI func() uint32
	// Retransmit is the first retransmission timeout (0: 2 s), multiplied
	// by RetransmitBase (0: 2) on each try up to RetransmitTries (0: 5)
	// tries, like strongSwan's retransmit_timeout/_base/_tries.
	Retransmit      time.Duration
	RetransmitTries int
	RetransmitBase  float64

	// IKE fragmentation (RFC 7383, fragment.go). NoFragmentation neither
	// announces nor uses it. FragmentSize is the largest IP datagram that
	// carries one fragment, IP and UDP headers included (0: 1280).
	NoFragmentation bool
	FragmentSize    int

	// AnyRemote: the peer's address is not known in advance (remote =
	// "any"; dynamic.go). The engine only responds, to any address, and
	// binds to the one its peer authenticates from; Remote is that
	// address once known. ChildFor, when set, gives the CHILD_SA policy
	// for the bound address (shapes whose selectors name it). Handoff
	// finds the engine of another dynamic tunnel on the same sockets by
	// the identity its peer claims (nil: none), and route moves our IKE
	// SPI's datagrams to it.
	AnyRemote bool
	ChildFor  func(remote netip.Addr) ChildPolicy
	Handoff   func(id ID) (to *Engine, route func(spi uint64))
}

const (
	defaultRetransmit = 2 * time.Second
	defaultTries      = 5
	reconnectDelay    = 10 * time.Second
	maxPacket         = 65535
	// redundantGrace is how long we wait for the peer to delete an IKE SA
	// that lost a collision and that the peer is to delete, before we do.
	redundantGrace = 30 * time.Second
)

// Engine runs IKEv2 for one peer. All protocol state is owned by the Run
// goroutine (or a test driving handle/tick); Status and ExportKeys may be
// called from any goroutine.
type Engine struct {
	cfg  Config
	dp   DataPlane
	log  *zap.Logger
	rand io.Reader
	conn Sender
	peer netip.AddrPort // where requests go: the peer's IKE port, or its NAT mapping (nat.go)
	nat  natState
	in   inbox
	// drops are counted by Offer (socket reader) and the engine goroutine.
	drops dropCounts

	// sas are the IKE SAs with the peer that we initiated or that have
	// authenticated: normally one; more while one is being set up,
	// rekeyed, or found redundant after a collision.
	sas []*ikeSA
	// half are responder SAs awaiting IKE_AUTH (halfopen.go).
	half halfOpenTable
	// loadKeys are the DH keys answered with under load (ike_init.go).
	loadKeys map[DHGroup]loadKeyEntry
	// seq numbers events (SA creation, installs) so that "before" and
	// "newest" do not depend on the clock, which tests hold still.
	seq uint64
	// outSPI is the inbound SPI of the CHILD_SA whose outbound half the
	// data plane sends on (0: none).
	outSPI   uint32
	warnedSw bool
	// pendingOut waits to send until the peer has it (switchOutbound).
	pendingOut *childSA

	retryAt time.Time // initiator: reconnect after a failure
	// unknownSPI carries NoteUnknownSPI to the engine goroutine.
	unknownSPI              chan uint32
	hintSentAt, hintTakenAt time.Time
	lastErr                 string
	counters                Counters
	cookies                 cookieJar
	pending                 []pendingInit // answered IKE_SA_INIT requests, for CookieThreshold
	keyGen                  uint64        // bumped when keys come or go

	// adopted are half-open SAs other engines hand over (dynamic.go);
	// moved are the SPIs of those this engine handed over.
	adopted   chan adoption
	moved     [movedSAs]spiPair
	movedNext int

	mu      sync.Mutex
	status  Status
	keys    ExportedKeys
	keysGen uint64
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
	if cfg.RetransmitBase < 1 {
		cfg.RetransmitBase = 2
	}
	if cfg.CookieThreshold == 0 {
		cfg.CookieThreshold = 10
	}
	cfg.Proposals = Numbered(cfg.Proposals)
	var removed []string
	if s, ok := dp.(ESPSupporter); ok {
		cfg.ESPProposals, removed = DataPlaneESP(cfg.ESPProposals, s.SupportsESP)
	}
	if len(removed) > 0 {
		// config refuses these; a caller that did not check gets a warning.
		log.Warn("ESP transforms the data plane does not implement are not proposed", zap.Strings("removed", removed))
	}
	port := cfg.RemotePort
	if port == 0 {
		port = 500
	}
	peerField := zap.Stringer("peer", cfg.Remote)
	if cfg.AnyRemote {
		cfg.Initiate = false // nowhere to send to
		peerField = zap.String("peer", "any")
	}
	e := &Engine{cfg: cfg, dp: dp, rand: cfg.Rand, log: log.With(peerField)}
	e.peer = netip.AddrPortFrom(cfg.Remote, port)
	e.adopted = make(chan adoption, 8)
	e.in = newInbox()
	e.unknownSPI = make(chan uint32, 1)
	e.nat.espFrom = make(chan netip.AddrPort, 1)
	e.status.State = StateIdle
	e.counters.Exchanges = map[ExchangeKey]uint64{}
	return e
}

// Sender sends IKE datagrams; *net.UDPConn implements it.
type Sender interface {
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// Run serves IKE on conn until ctx is done or conn fails: a goroutine of
// its own reads conn and Offers each datagram, and Serve does the rest.
func (e *Engine) Run(ctx context.Context, conn PacketConn) error {
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, maxPacket)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				readErr <- err
				return
			}
			e.Offer(buf[:n], from)
		}
	}()
	return e.Serve(ctx, conn, readErr)
}

// Serve runs the engine on the datagrams handed to Offer, sending with w,
// until ctx is done (then it deletes the IKE SA, best effort, and closes w
// if it is an io.Closer) or failed delivers an error.
func (e *Engine) Serve(ctx context.Context, w Sender, failed <-chan error) error {
	e.conn = w
	e.in.sender.Store(&w)
	if e.cfg.Initiate {
		e.initiate(time.Now())
		e.publish()
	}
	every := e.tickEvery()
	tick := time.NewTimer(every)
	defer tick.Stop()
	for {
		if want := e.tickEvery(); want != every {
			every = want
			tick.Reset(every)
		}
		// SAs handed over first, then datagrams for our SAs (see
		// inbox.go): a retransmission of an adopted SA's IKE_AUTH may
		// already wait behind it.
		select {
		case a := <-e.adopted:
			e.adopt(time.Now(), a)
			e.publish()
			continue
		default:
		}
		select {
		case p := <-e.in.known:
			e.handleOn(p.b, p.from, p.natt, time.Now())
			continue
		default:
		}
		select {
		case <-ctx.Done():
			e.shutdown(time.Now())
			if c, ok := w.(io.Closer); ok {
				c.Close()
			}
			return ctx.Err()
		case err := <-failed:
			return err
		case p := <-e.in.known:
			e.handleOn(p.b, p.from, p.natt, time.Now())
		case p := <-e.in.fresh:
			e.handleOn(p.b, p.from, p.natt, time.Now())
		case from := <-e.nat.espFrom:
			e.espPeer(from)
			e.publish()
		case spi := <-e.unknownSPI:
			e.hintInvalidSPI(time.Now(), spi)
			e.publish()
		case now := <-tick.C:
			e.tick(now)
			tick.Reset(every)
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

// write sends a request (or a retransmission) to the peer, on port 4500
// once IKE has floated there (nat.go).
func (e *Engine) write(raw []byte) { e.sendTo(raw, e.peer, e.nat.floated) }

func (e *Engine) randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(e.rand, b); err != nil {
		panic("ike: random source failed: " + err.Error()) // crypto/rand does not fail
	}
	return b
}

// randDuration is uniform in [lo, hi).
func (e *Engine) randDuration(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(binary.BigEndian.Uint64(e.randBytes(8))%uint64(hi-lo))
}

// SPIClaimer is an optional Sender method. Sockets shared by many engines
// route IKE by our SPI, learnt from what each engine sends (package
// demux); an IKE SA that a rekey creates may hear from the peer before we
// send anything on it, so its SPI is announced when it is chosen.
type SPIClaimer interface {
	Claim(spi uint64)
}

func (e *Engine) claimSPI(spi uint64) {
	if c, ok := e.conn.(SPIClaimer); ok {
		c.Claim(spi)
	}
}

func (e *Engine) newIKESPI() uint64 {
	for {
		if v := binary.BigEndian.Uint64(e.randBytes(8)); v != 0 {
			return v
		}
	}
}

func (e *Engine) newESPSPI() uint32 {
	if e.cfg.ESPSPI != nil {
		return e.cfg.ESPSPI()
	}
	for {
		// 1..255 are reserved by IANA (RFC 4303 §2.1).
		if v := binary.BigEndian.Uint32(e.randBytes(4)); v > 255 {
			return v
		}
	}
}

func (e *Engine) nextSeq() uint64 {
	e.seq++
	return e.seq
}

func (e *Engine) countExchange(exch ExchangeType, initiated bool, result string) {
	e.counters.Exchanges[ExchangeKey{Exchange: exch.String(), Initiated: initiated, Result: result}]++
}

// resultOf is how an exchange ended, read off its response.
func resultOf(ps Payloads) string {
	if n := ps.FirstError(); n != nil {
		return n.Kind.String()
	}
	if ps.Notify(COOKIE) != nil {
		return "COOKIE"
	}
	return "ok"
}

// fail tears sa down locally (its children too) and, if it was our last
// IKE SA and we initiate, schedules a reconnect.
func (e *Engine) fail(now time.Time, sa *ikeSA, reason string) {
	e.lastErr = reason
	if sa != nil && !sa.gone() {
		e.log.Warn("IKE SA down", append(e.saFields(sa, nil), zap.String("reason", reason))...)
		e.removeSA(sa)
	}
	if len(e.sas) == 0 && e.cfg.Initiate {
		e.retryAt = now.Add(reconnectDelay)
	}
}

// removeSA forgets sa and removes its children from the data plane.
func (e *Engine) removeSA(sa *ikeSA) {
	if sa.gone() {
		return
	}
	e.setState(sa, saGone)
	e.half.remove(sa)
	e.sas = slices.DeleteFunc(e.sas, func(x *ikeSA) bool { return x == sa })
	for _, x := range slices.Clone(e.sas) { // removeSA below edits e.sas
		// An SA that lost to sa is no longer redundant.
		if x.survivor == sa {
			x.survivor = nil
			if x.state == saRedundant {
				e.setState(x, saEstablished)
			}
		}
		if x.pendingOn == sa {
			x.pendingOn = nil
			if x.state == saPending {
				e.removeSA(x)
			}
		}
	}
	for _, c := range slices.Clone(sa.children) {
		e.retireChild(sa, c)
	}
	sa.req, sa.queue = nil, nil
	sa.keys.Wipe()
	e.keyGen++
}

// shutdown sends a Delete for each IKE SA (one try: we are leaving).
func (e *Engine) shutdown(now time.Time) {
	e.cfg.Initiate = false
	for _, sa := range slices.Clone(e.sas) {
		if sa.keyed() && sa.state != saConnecting {
			e.deleteIKEOnce(sa)
		}
		e.fail(now, sa, "shut down")
	}
	e.publish()
}

// handle processes one datagram from the peer that came on port 500.
func (e *Engine) handle(raw []byte, from netip.AddrPort, now time.Time) {
	e.handleOn(raw, from, false, now)
}

// handleOn processes one datagram from the peer; natt: it came on port
// 4500.
func (e *Engine) handleOn(raw []byte, from netip.AddrPort, natt bool, now time.Time) {
	defer e.publish()
	e.nat.cur.from, e.nat.cur.natt = from, natt
	if !e.cfg.AnyRemote && from.Addr().Unmap() != e.cfg.Remote.Unmap() {
		e.drop(DropUnknownSource)
		return
	}
	m, err := DecodeMessage(raw)
	if err != nil {
		e.drop(DropMalformed)
		e.log.Debug("undecodable message dropped", zap.Error(err))
		return
	}
	if f := fragmentOf(m); f != nil {
		e.handleFragment(now, m, raw, f) // fragment.go
		return
	}
	if m.Exchange == INFORMATIONAL && !m.Payloads.Encrypted() {
		e.handleHint(now, m)
		return
	}
	if m.IsResponse() {
		e.handleResponse(now, m, raw)
		return
	}
	if m.Exchange == IKE_SA_INIT {
		e.respondInit(now, m, raw, from)
		return
	}
	sa := e.findSA(m.SPIi, m.SPIr)
	if sa != nil && !sa.keyed() && e.keyHalfOpen(sa) != nil {
		e.removeSA(sa)
		sa = nil
	}
	if sa == nil && e.wasMoved(m.SPIi, m.SPIr) {
		e.drop(DropUnknownSA) // its new owner answers (dynamic.go)
		return
	}
	if sa == nil || !sa.keyed() {
		e.drop(DropUnknownSA)
		e.log.Debug("request for an unknown IKE SA", e.saFields(nil, m)...)
		e.hintInvalidIKESPI(now, m)
		return
	}
	e.handleRequest(now, sa, m, raw)
}

// handleRequest answers the peer's request m on sa: a retransmission with
// our cached answer, a new one by its exchange (§2.1, §2.2).
func (e *Engine) handleRequest(now time.Time, sa *ikeSA, m *Message, raw []byte) {
	if !e.admitRequest(sa, m, raw, true) {
		return
	}
	inner, err := sa.unprotect(m, raw)
	e.answerRequest(now, sa, m, inner, err, requestDigest(raw))
}

// answerRequest answers the peer's request m, whose SK payload (or
// reassembled fragments) opened to inner or failed with err; digest
// identifies its retransmissions.
func (e *Engine) answerRequest(now time.Time, sa *ikeSA, m *Message, inner Payloads, err error, digest [sha256.Size]byte) {
	var resp Payloads
	established := false // IKE_AUTH: sa authenticated (respondAuth)
	switch {
	case errors.Is(err, ErrInnerSyntax):
		// Authentic (the ICV verified) but unparseable: the peer is owed
		// an answer, or it retransmits until it gives up (§2.21.2).
		e.counters.InvalidSyntax++
		e.log.Warn("request decrypted but its payloads do not parse; answering INVALID_SYNTAX",
			append(e.saFields(sa, m), zap.String("reason", err.Error()))...)
		resp = Payloads{&Notify{Kind: INVALID_SYNTAX}}
		if m.Exchange == IKE_AUTH && sa.state == saConnecting {
			sa.deleteAfterResponse = true
		}
	case err != nil:
		e.drop(DropIntegrity)
		e.log.Debug("request failed integrity", append(e.saFields(sa, m), zap.Error(err))...)
		return
	default:
		if m.Exchange == IKE_AUTH && e.handOff(sa, m, inner, digest) {
			return
		}
		sa.lastRecv = now
		// An IKE_AUTH request is protected with keys anyone can get
		// from an IKE_SA_INIT: where it came from counts only once its
		// AUTH verifies (respondAuth), or another host behind the
		// peer's NAT could move the peer's IKE and ESP to itself.
		if sa.state != saConnecting {
			e.notePeer(sa, e.nat.cur.from, e.nat.cur.natt)
		}
		e.proven(sa) // its request follows our answers: it has their CHILD_SAs
		if u := inner.UnsupportedCritical(); u != nil {
			resp = Payloads{&Notify{Kind: UNSUPPORTED_CRITICAL_PAYLOAD, Data: []byte{byte(u.PayloadType)}}}
			break
		}
		switch m.Exchange {
		case IKE_AUTH:
			resp, established = e.respondAuth(now, sa, m, inner)
		case CREATE_CHILD_SA:
			resp = e.respondCreateChild(now, sa, inner)
		case INFORMATIONAL:
			resp = e.respondInformational(now, sa, inner)
		}
	}
	out := &Message{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: m.Exchange, Flags: sa.flags(true), MessageID: m.MessageID}
	rawResp, err := e.seal(sa, out, resp)
	if err != nil {
		e.log.Error("cannot build response", append(e.saFields(sa, out), zap.Error(err))...)
		return
	}
	sa.expectReqID++
	sa.lastResp, sa.lastReqDigest = rawResp, digest
	e.replyAll(rawResp)
	e.countExchange(m.Exchange, false, resultOf(resp))
	if sa.deleteAfterResponse {
		reason := "deleted by peer"
		if sa.state == saConnecting {
			reason = "IKE_AUTH failed"
		}
		e.dropSA(now, sa, reason)
	}
	if established {
		// Now that the peer has sa (our answer is out), it may hear of a
		// collision.
		e.checkDuplicates(now, sa)
	}
}

// requestDigest identifies a request for retransmission checks, as
// strongSwan does with a hash of the whole message.
func requestDigest(raw []byte) [sha256.Size]byte { return sha256.Sum256(raw) }

func (e *Engine) findSA(spiI, spiR uint64) *ikeSA {
	for _, sa := range e.sas {
		if sa.spiI == spiI && sa.spiR == spiR {
			return sa
		}
	}
	return e.half.get(spiI, spiR)
}

// dropSA forgets sa. The last established one fails (and reconnects if we
// initiate); others go quietly.
func (e *Engine) dropSA(now time.Time, sa *ikeSA, reason string) {
	if sa.gone() {
		return
	}
	last := true
	for _, x := range e.sas {
		if x != sa && x.state != saConnecting {
			last = false
		}
	}
	if last && sa.state != saConnecting {
		e.fail(now, sa, reason)
		return
	}
	e.log.Info("IKE SA removed", append(e.saFields(sa, nil), zap.String("reason", reason))...)
	e.removeSA(sa)
	if len(e.sas) == 0 && e.cfg.Initiate {
		e.retryAt = now.Add(reconnectDelay)
	}
}

// The timers (retransmissions, rekeys, liveness, NAT keepalives, half-open
// expiry) run every busyTick while anything waits on a short clock, else
// every idleTick: a daemon of many idle tunnels wakes each engine once a
// second, not four times. Nothing idle needs a finer clock: rekey times
// and DPD intervals are seconds at least, and the byte and sequence
// limits leave far more than a second of traffic as margin.
const (
	busyTick = 250 * time.Millisecond
	idleTick = time.Second
)

// tickEvery is the timer period for the engine's present state.
func (e *Engine) tickEvery() time.Duration {
	if e.pendingOut != nil || e.half.len() > 0 || e.in.cookieMode.Load() || (len(e.sas) == 0 && e.cfg.Initiate) {
		return busyTick
	}
	for _, sa := range e.sas {
		if !sa.usable() || sa.req != nil || len(sa.queue) > 0 {
			return busyTick
		}
	}
	return idleTick
}

// admitRequest checks a protected request (or one fragment of it) against
// sa's request window. A retransmission of the last request is answered
// with the same bytes and not processed again (§2.1), but only if it is
// the same request: anything else reusing the ID (a bare header with the
// live SPIs) would make us a reflector; of a fragmented request only
// fragment 1 brings the answer again (RFC 7383 §2.6.1), so first says
// whether raw may. It reports whether the caller goes on with m; every
// other outcome is answered or counted here.
func (e *Engine) admitRequest(sa *ikeSA, m *Message, raw []byte, first bool) bool {
	switch {
	case m.MessageID+1 == sa.expectReqID && sa.lastResp != nil:
		switch {
		case !first:
			e.drop(DropFragment)
		case requestDigest(raw) != sa.lastReqDigest:
			e.drop(DropRetransmitMismatch)
		default:
			e.replyAll(sa.lastResp)
		}
		return false
	case m.MessageID != sa.expectReqID:
		e.drop(DropMessageID)
		return false
	}
	switch m.Exchange {
	case IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL:
		return true
	}
	e.drop(DropUnexpected)
	return false
}
