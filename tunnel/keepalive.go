package tunnel

// GRE keepalives as Cisco IOS sends and answers them (`keepalive 10 3`).
//
// IOS has no keepalive message type. A router that wants to know whether
// its peer still passes traffic builds the packet the peer would send
// back to it: an IPv4 header from the peer's tunnel endpoint to its own,
// protocol 47, and a bare GRE header of protocol type 0 (24 bytes, TTL
// 255). It sends that through the tunnel like any inner packet. The peer
// decapsulates it and, like any inner packet, routes it: the destination
// is the sender's underlay address, so it leaves through the underlay as
// a GRE packet of type 0, encrypted by the crypto map that protects GRE
// between the two addresses. The sender recognises its own keepalive
// coming back by the protocol type 0, which carries no traffic.
//
// gresec does the peer's part in decapsulate: a decapsulated IPv4 or IPv6
// packet of protocol 47 from our underlay address to the peer's, whose
// GRE header has protocol type 0, would be routed back to the peer by a
// kernel (its source is ours, its destination the peer's), and through
// the SA that carries our GRE. Handing it to the TUN instead makes the
// kernel drop it as a martian (a packet arriving with one of its own
// addresses as source), and IOS then marks the tunnel down. So the inner
// GRE header and whatever follows become the payload of our next ESP
// packet (or of a raw GRE packet for keying = "none"), sealed in place in
// the receive buffer.
//
// With [tunnel] keepalive set, gresec also sends its own and keeps IOS's
// count: each keepalive sent adds one to the unanswered count, each one
// that comes back resets it to 0. When a keepalive is due and retries of
// them are unanswered, the interface loses carrier (tun.SetCarrier):
// routing daemons see the link go down and routes through it are flagged
// linkdown. Keepalives go on being sent, and the first one that comes
// back restores carrier. The interface is thus down between retries ×
// interval and (retries + 1) × interval after the peer stops answering,
// depending on where in the interval that happened.

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/gre"
	"github.com/gresec/gresec/rawip"
)

// greProtoKeepalive is the GRE protocol type of a keepalive (and of its
// answer): 0, reserved, never carrying traffic.
const greProtoKeepalive = 0

// keepaliveTTL is the inner packet's TTL (hop limit), as IOS sets it.
const keepaliveTTL = 255

// keepalive is the keepalive state of a tunnel. The counters are written
// by the pumps and the keepalive goroutine; the carrier only by the
// keepalive goroutine.
type keepalive struct {
	mu       sync.Mutex // guards interval and retries (Reload changes them)
	interval time.Duration
	retries  int

	changed chan struct{} // 1-buffered: the settings changed
	replied chan struct{} // 1-buffered: a keepalive came back while down

	down       atomic.Bool  // the interface has no carrier
	unanswered atomic.Int64 // keepalives sent since the last one came back

	sent      atomic.Uint64 // our keepalives sent
	replies   atomic.Uint64 // our keepalives that came back
	reflected atomic.Uint64 // the peer's keepalives sent back to it
	downs     atomic.Uint64 // times the interface went down
	lastReply atomic.Int64  // when the last one came back (Unix ns), 0: never
}

// init sets the first settings and makes the channels. The zero value,
// as tests build tunnels, works: keepalives off, nothing signalled.
func (k *keepalive) init(interval time.Duration, retries int) {
	k.interval, k.retries = interval, retries
	k.changed, k.replied = make(chan struct{}, 1), make(chan struct{}, 1)
}

func (k *keepalive) settings() (time.Duration, int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.interval, k.retries
}

// set takes new settings; the keepalive goroutine restarts its count.
func (k *keepalive) set(interval time.Duration, retries int) {
	k.mu.Lock()
	k.interval, k.retries = interval, retries
	k.mu.Unlock()
	signal(k.changed)
}

// cameBack records one of our keepalives coming back (from the receive
// pump). The count is reset before down is read, and the keepalive
// goroutine sets down before it reads the count again, so a reply racing
// with the decision to go down is never lost.
func (k *keepalive) cameBack() {
	k.replies.Add(1)
	k.lastReply.Store(time.Now().UnixNano())
	k.unanswered.Store(0)
	if k.down.Load() {
		signal(k.replied)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// keepaliveLoop sends keepalives and switches the carrier until ctx ends.
// While keepalives are off it only waits for new settings.
func (t *Tunnel) keepaliveLoop(ctx context.Context) {
	k := &t.ka
	buf := make([]byte, keepaliveBufLen)
	var ticker *time.Ticker
	var tick <-chan time.Time
	stop := func() {
		if ticker != nil {
			ticker.Stop()
			ticker, tick = nil, nil
		}
	}
	defer stop()
	start := func() {
		stop()
		k.unanswered.Store(0)
		interval, _ := k.settings()
		if interval == 0 {
			t.setCarrier(true, "keepalives turned off")
			return
		}
		ticker = time.NewTicker(interval)
		tick = ticker.C
		t.keepaliveDue(buf)
	}
	start()
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.changed:
			start()
		case <-k.replied:
			if interval, _ := k.settings(); interval > 0 {
				t.setCarrier(true, "a keepalive came back")
			}
		case <-tick:
			t.keepaliveDue(buf)
		}
	}
}

// keepaliveDue takes the interface down when retries keepalives in a row
// went unanswered, then sends the next one.
func (t *Tunnel) keepaliveDue(buf []byte) {
	k := &t.ka
	_, retries := k.settings()
	if n := k.unanswered.Load(); n >= int64(retries) && !k.down.Load() {
		t.setCarrier(false, fmt.Sprintf("%d keepalives in a row unanswered", n))
		if k.unanswered.Load() == 0 { // one came back meanwhile
			t.setCarrier(true, "a keepalive came back")
		}
	}
	k.unanswered.Add(1) // before sending: the answer may beat the increment
	t.sendKeepalive(buf)
}

// setCarrier switches the interface's carrier and logs why; a failure to
// switch is logged and the state kept, so that status still tells.
func (t *Tunnel) setCarrier(on bool, why string) {
	k := &t.ka
	if k.down.Load() == !on {
		return
	}
	k.down.Store(!on)
	if !on {
		k.downs.Add(1)
	}
	state := "up"
	if !on {
		state = "down"
	}
	if t.dev != nil {
		if err := t.dev.SetCarrier(on); err != nil {
			t.log.Warn("keepalive: cannot switch the interface's carrier", zap.String("state", state), zap.Error(err))
		}
	}
	t.log.Info("keepalive: tunnel "+state, zap.String("interface", t.cfg.Interface), zap.String("reason", why))
}

// keepaliveBufLen holds a keepalive: room for the ESP header in front, two
// GRE headers with keys, an IPv6 header, and the ESP trailer behind.
const keepaliveBufLen = keepaliveOff + 2*gre.MaxHeaderLen + 40 + 64

// keepaliveOff is where a keepalive's inner IP header starts: room in
// front for the outer GRE header, tunnel mode's IP header and ESP's.
const keepaliveOff = 64 + 40 + gre.MaxHeaderLen

// buildKeepalive writes into buf the GRE packet that asks the peer to send
// back an inner packet (from the peer to us, protocol 47, carrying a GRE
// header of protocol type 0 with our key, if any) and returns where it is.
func (t *Tunnel) buildKeepalive(buf []byte) (start, end int) {
	opt := gre.Options{Key: t.greOpt.Key, UseKey: t.greOpt.UseKey}
	greLen := gre.HeaderLenFor(opt)
	const off = keepaliveOff
	ipLen, proto := 20, uint16(gre.ProtoIPv4)
	if t.remote.Is6() {
		ipLen, proto = 40, gre.ProtoIPv6
	}
	end = off + ipLen + greLen
	gre.Encap(buf, end, 0, greProtoKeepalive, opt, 0)
	ip := buf[off : off+ipLen]
	clear(ip)
	if ipLen == 20 {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(ipLen+greLen))
		ip[8], ip[9] = keepaliveTTL, protoGRE
		src, dst := t.remote.As4(), t.cfg.Local.As4()
		copy(ip[12:], src[:])
		copy(ip[16:], dst[:])
		binary.BigEndian.PutUint16(ip[10:], ^ipv4Sum(ip))
	} else {
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(greLen))
		ip[6], ip[7] = protoGRE, keepaliveTTL
		src, dst := t.remote.As16(), t.cfg.Local.As16()
		copy(ip[8:], src[:])
		copy(ip[24:], dst[:])
	}
	// The outer GRE header: what the tunnel puts on every inner packet.
	start = gre.Encap(buf, off, end-off, proto, t.greOpt, 0)
	return start, end
}

// sendKeepalive builds, seals and sends one keepalive; one that cannot go
// (no SA yet, the socket refused) stays unanswered and is counted as a
// drop.
func (t *Tunnel) sendKeepalive(buf []byte) {
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	if !t.remote.IsValid() {
		t.stats.drop(dropNoSA) // a dynamic peer not heard from yet
		return
	}
	start, end := t.buildKeepalive(buf) // reads t.remote: under sendMu
	msg := &t.kaMsg[0]
	*msg = rawip.Message{Buf: buf, Off: start, N: end - start, Addr: t.remote}
	if t.sadb != nil {
		sa := t.sadb.Outbound()
		if sa == nil {
			t.stats.drop(dropNoSA)
			return
		}
		out, err := t.sealGRE(sa, buf, start, end)
		if err != nil {
			t.stats.drop(dropSeal)
			return
		}
		msg.Off, msg.N = offsetIn(buf, out), len(out)
	}
	if sent, _ := t.writeBatch(t.kaMsg[:]); sent != 1 {
		t.stats.drop(dropSendError)
		return
	}
	t.ka.sent.Add(1)
}

// keepaliveToReflect returns the GRE packet inside inner (a checked IPv4
// or IPv6 packet of GRE protocol type proto) when inner is a keepalive the
// peer asks us to send back: protocol 47 from our underlay address to the
// peer's, not a fragment, carrying GRE of protocol type 0. Otherwise it
// returns nil, and malformed is set when inner was addressed like a
// keepalive but its IPv4 header checksum is wrong (a kernel would drop
// it). The common case, an inner packet of another protocol, costs one
// comparison.
func (t *Tunnel) keepaliveToReflect(proto uint16, inner []byte) (pkt []byte, malformed bool) {
	var hlen int
	if proto == gre.ProtoIPv4 {
		if inner[9] != protoGRE || !t.remote.Is4() {
			return nil, false
		}
		hlen = int(inner[0]&0x0f) * 4
		if [4]byte(inner[12:16]) != t.local4 || [4]byte(inner[16:20]) != t.remote4 ||
			binary.BigEndian.Uint16(inner[6:8])&0x3fff != 0 { // MF or an offset: a fragment
			return nil, false
		}
		if ipv4Sum(inner[:hlen]) != 0xffff {
			return nil, true
		}
	} else {
		if inner[6] != protoGRE || !t.remote.Is6() || [16]byte(inner[8:24]) != t.local16 || [16]byte(inner[24:40]) != t.remote16 {
			return nil, false
		}
		hlen = 40
	}
	pkt = inner[hlen:]
	if p, _, _, err := gre.Decap(pkt); err != nil || p != greProtoKeepalive {
		return nil, false
	}
	return pkt, false
}

// sealReflections turns the keepalives decapsulate queued in t.reflect
// (each Buf[Off:Off+N] a GRE packet in its receive buffer) into underlay
// packets, in place: ESP-sealed with the outbound SA, or as they are for
// plain GRE. It returns how many of t.reflect are ready to send, from the
// front; the others are counted as drops. The caller holds sendMu.
func (t *Tunnel) sealReflections() int {
	var sa *esp.SA
	if t.sadb != nil {
		if sa = t.sadb.Outbound(); sa == nil {
			t.stats.drops[dropNoSA].Add(uint64(len(t.reflect)))
			return 0
		}
	}
	n := 0
	for _, m := range t.reflect {
		if sa != nil {
			out, err := t.sealGRE(sa, m.Buf, m.Off, m.Off+m.N)
			if err != nil {
				t.stats.drop(dropSeal)
				continue
			}
			m.Off, m.N = offsetIn(m.Buf, out), len(out)
		}
		t.reflect[n] = m
		n++
	}
	return n
}

// sendReflections sends back the keepalives of one received batch.
func (t *Tunnel) sendReflections() {
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	n := t.sealReflections()
	if n == 0 {
		return
	}
	sent, _ := t.writeBatch(t.reflect[:n])
	t.ka.reflected.Add(uint64(sent))
	if sent < n {
		t.stats.drops[dropSendError].Add(uint64(n - sent))
	}
}

// offsetIn is where sub, a slice of buf, starts in buf.
func offsetIn(buf, sub []byte) int { return cap(buf) - cap(sub) }

// ipv4Sum is the one's complement sum (RFC 1071) of an IPv4 header, not
// complemented: 0xffff for a header whose checksum is right.
func ipv4Sum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// KeepaliveStatus is the keepalive state for `gresec status`.
type KeepaliveStatus struct {
	// State is "up" or "down" (the interface's carrier), or "off" when
	// no keepalives are sent (received ones are still sent back).
	State               string `json:"state"`
	IntervalSeconds     int64  `json:"interval_seconds,omitempty"`
	Retries             int    `json:"retries,omitempty"`
	Unanswered          int64  `json:"unanswered"`
	Sent                uint64 `json:"keepalives_sent"`
	Replied             uint64 `json:"keepalives_replied"`
	Reflected           uint64 `json:"keepalives_reflected"`
	Downs               uint64 `json:"downs"`
	LastReplySecondsAgo int64  `json:"last_reply_seconds_ago,omitempty"`
}

func (k *keepalive) status(now time.Time) *KeepaliveStatus {
	interval, retries := k.settings()
	s := &KeepaliveStatus{State: "off", Sent: k.sent.Load(), Replied: k.replies.Load(),
		Reflected: k.reflected.Load(), Downs: k.downs.Load()}
	if interval > 0 {
		s.State = "up"
		if k.down.Load() {
			s.State = "down"
		}
		s.IntervalSeconds, s.Retries = int64(interval/time.Second), retries
		s.Unanswered = k.unanswered.Load()
	}
	if ns := k.lastReply.Load(); ns != 0 {
		s.LastReplySecondsAgo = max(1, int64(now.Sub(time.Unix(0, ns)).Seconds()))
	}
	return s
}
