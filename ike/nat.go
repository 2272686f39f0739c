package ike

import (
	"crypto/sha1"
	"encoding/binary"
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// NAT traversal (RFC 7296 §2.23, RFC 3948). Both peers hash the addresses
// and ports they see into NAT_DETECTION payloads in IKE_SA_INIT; a hash
// that does not match shows a NAT on that side. Then the initiator moves
// IKE to UDP port 4500 from IKE_AUTH on (behind the four-byte zero
// non-ESP marker, on the socket that also carries ESP in UDP), the
// CHILD_SAs carry ESP in UDP, the side behind the NAT sends keepalives,
// and the responder follows the peer's mapping when it changes.
//
// The engine talks to one peer, so the path to it is the engine's: the
// peer's current address and port (e.peer) and whether IKE runs on port
// 4500 (floated). What each IKE SA found in its IKE_SA_INIT is its own
// (ikeSA.nat); a rekeyed IKE SA inherits it.

// NATTPort is the IKE NAT-T and ESP-in-UDP port (RFC 3948 §2).
const NATTPort = 4500

// EncapMode is Config.UDPEncap: when CHILD_SAs carry ESP in UDP.
type EncapMode uint8

const (
	// EncapAuto floats to port 4500 and encapsulates when NAT detection
	// finds a NAT on either side.
	EncapAuto EncapMode = iota
	// EncapAlways fakes our NAT_DETECTION_SOURCE_IP hash, as strongSwan
	// does with encap = yes, so that both ends float and encapsulate
	// even without a NAT.
	EncapAlways
	// EncapNever keeps raw ESP (IP protocol 50): an initiator that finds a
	// NAT refuses to go on; a responder that finds one warns and sends no
	// NAT_DETECTION payloads, so the peer does not encapsulate either.
	EncapNever
)

func (m EncapMode) String() string {
	switch m {
	case EncapAlways:
		return "always"
	case EncapNever:
		return "never"
	}
	return "auto"
}

// NATSocket is the UDP 4500 socket shared with ESP in UDP;
// *udpencap.Conn implements it. Datagrams it receives behind the non-ESP
// marker go to Engine.OfferNATT.
type NATSocket interface {
	SendIKE(msg []byte, to netip.AddrPort) error
	SendKeepalive(to netip.AddrPort) error
}

// ESPPeerMover is an optional DataPlane method: the peer's UDP address
// changed (its NAT made a new mapping, or it moved IKE to port 4500), and
// ESP in UDP must go there from now on. CHILD_SAs installed later carry
// the new address in ChildKeys.UDPPeer.
type ESPPeerMover interface {
	MoveESPPeer(to netip.AddrPort)
}

// DefaultNATKeepalive is RFC 3948 §2.3's suggestion and strongSwan's
// keep_alive default.
const DefaultNATKeepalive = 20 * time.Second

// natFlags is what one IKE SA's IKE_SA_INIT found.
type natFlags struct {
	here  bool // a NAT in front of us (the peer's hash of our address did not match)
	there bool // a NAT in front of the peer
	faked bool // we faked our hash (udp_encap = "always")
}

// encap reports whether the CHILD_SAs of the IKE SA carry ESP in UDP.
func (f natFlags) encap() bool { return f.here || f.there || f.faked }

// natState is the engine's NAT-T state (engine goroutine only, but for
// sock, which is set before Serve).
type natState struct {
	sock NATSocket
	// floated: IKE with the peer runs on port 4500, to e.peer.
	floated bool
	// cur is the datagram being handled: its source and whether it came
	// on port 4500. Answers go back the way the request came.
	cur struct {
		from netip.AddrPort
		natt bool
	}
	// lastOut is when (by the engine's clock) something last went out to
	// the peer: IKE, as the sent counter shows, a keepalive, or ESP, as
	// the outbound CHILD_SA's byte count shows. sentSeen and outBytes are
	// those counts when last looked at.
	lastOut            time.Time
	sentSeen, outBytes uint64
	// espFrom carries NoteESPPeer to the engine goroutine.
	espFrom chan netip.AddrPort
}

// UseNATSocket gives the engine the UDP 4500 socket; call it before
// Serve. Without one the engine cannot float: a NAT is then reported and
// the CHILD_SAs keep raw ESP.
func (e *Engine) UseNATSocket(s NATSocket) { e.nat.sock = s }

// OfferNATT is Offer for a datagram that came on port 4500, the non-ESP
// marker stripped.
func (e *Engine) OfferNATT(b []byte, from netip.AddrPort) { e.offer(b, from, true) }

// NoteESPPeer tells the engine that authentic ESP in UDP came from the
// peer at from (the tunnel's receive pump, after the ICV verified). If the
// peer is behind a NAT and from is not where we send, its mapping changed:
// the engine moves IKE and ESP there. It does not block.
func (e *Engine) NoteESPPeer(from netip.AddrPort) {
	select {
	case e.nat.espFrom <- from:
	default:
	}
}

// NATHash is the data of NAT_DETECTION_SOURCE_IP/DESTINATION_IP
// (§2.23): SHA-1(SPIi | SPIr | IP address | port). SHA-1 is what the RFC
// fixes here; it is a hash of public values, not a security mechanism.
func NATHash(spii, spir uint64, ap netip.AddrPort) []byte {
	h := sha1.New()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], spii)
	binary.BigEndian.PutUint64(b[8:], spir)
	h.Write(b[:])
	h.Write(ap.Addr().Unmap().AsSlice())
	binary.BigEndian.PutUint16(b[:], ap.Port())
	h.Write(b[:2])
	return h.Sum(nil)
}

// localIKEPort is the port of ours the current datagram came to (or the
// next request goes from).
func (e *Engine) localIKEPort(natt bool) uint16 {
	if natt {
		return NATTPort
	}
	return 500
}

// natPayloads are our NAT_DETECTION notifies for an IKE_SA_INIT message
// sent from our port on socket natt to the peer at to. udp_encap =
// "always" fakes the source hash with port 0, which no real path has.
func (e *Engine) natPayloads(spiI, spiR uint64, natt bool, to netip.AddrPort) Payloads {
	src := netip.AddrPortFrom(e.cfg.Local, e.localIKEPort(natt))
	if e.cfg.UDPEncap == EncapAlways {
		src = netip.AddrPortFrom(e.cfg.Local, 0)
	}
	return Payloads{
		&Notify{Kind: NAT_DETECTION_SOURCE_IP, Data: NATHash(spiI, spiR, src)},
		&Notify{Kind: NAT_DETECTION_DESTINATION_IP, Data: NATHash(spiI, spiR, to)},
	}
}

// checkNAT compares the peer's NAT detection hashes in an IKE_SA_INIT
// message (§2.23) with what the current datagram shows: its source, and
// our address with the port it came to. It records the result on sa and
// reports whether the peer sent the payloads at all.
func (e *Engine) checkNAT(sa *ikeSA, ps Payloads) bool {
	src := ps.Notifies(NAT_DETECTION_SOURCE_IP)
	dst := ps.Notify(NAT_DETECTION_DESTINATION_IP)
	if len(src) == 0 || dst == nil {
		return false
	}
	spiR := sa.spiR
	if !sa.initiator {
		spiR = 0
	}
	local := netip.AddrPortFrom(e.cfg.Local, e.localIKEPort(e.nat.cur.natt))
	from := e.nat.cur.from
	sa.nat = natFlags{faked: e.cfg.UDPEncap == EncapAlways}
	sa.nat.here = string(dst.Data) != string(NATHash(sa.spiI, spiR, local))
	want := NATHash(sa.spiI, spiR, from)
	sa.nat.there = true
	for _, n := range src {
		if string(n.Data) == string(want) {
			sa.nat.there = false
		}
	}
	if sa.nat.here || sa.nat.there {
		e.log.Info("NAT detected", append(e.saFields(sa, nil), zap.Bool("nat_here", sa.nat.here), zap.Bool("nat_there", sa.nat.there),
			zap.Stringer("peer", from), zap.Stringer("udp_encap", e.cfg.UDPEncap))...)
	}
	return true
}

// natRefused is the initiator's check after IKE_SA_INIT: with udp_encap =
// "never" a NAT ends the IKE SA (the peer would send ESP in UDP, which we
// do not take). Otherwise, if the SA found (or fakes) a NAT, IKE moves to
// port 4500 for IKE_AUTH (§2.23).
func (e *Engine) natRefused(now time.Time, sa *ikeSA) bool {
	if !sa.nat.encap() {
		return false
	}
	if e.cfg.UDPEncap == EncapNever {
		e.log.Error("NAT detected, but udp_encap = \"never\" forbids ESP in UDP: not going on; set udp_encap = \"auto\"",
			append(e.saFields(sa, nil), zap.Bool("nat_here", sa.nat.here), zap.Bool("nat_there", sa.nat.there))...)
		e.fail(now, sa, "NAT detected and udp_encap = \"never\"")
		return true
	}
	if e.nat.sock == nil {
		e.log.Warn("NAT detected but no UDP 4500 socket: keeping raw ESP", e.saFields(sa, nil)...)
		sa.nat = natFlags{}
		return false
	}
	if !e.nat.floated {
		e.nat.floated = true
		e.peer = netip.AddrPortFrom(e.peer.Addr(), NATTPort)
		e.log.Info("moving IKE to UDP port 4500", append(e.saFields(sa, nil), zap.Stringer("peer", e.peer))...)
	}
	return false
}

// responderNAT is the responder's NAT detection on an IKE_SA_INIT
// request; it returns our NAT_DETECTION payloads for the answer (none
// with udp_encap = "never", so that the peer keeps raw ESP too).
func (e *Engine) responderNAT(sa *ikeSA, req Payloads) Payloads {
	sent := e.checkNAT(sa, req)
	if e.cfg.UDPEncap == EncapNever {
		if sa.nat.here || sa.nat.there {
			e.log.Warn("NAT detected, but udp_encap = \"never\": raw ESP (IP protocol 50), which this NAT may not pass; set udp_encap = \"auto\"",
				e.saFields(sa, nil)...)
		}
		sa.nat = natFlags{}
		return nil
	}
	if !sent {
		// The peer does no NAT-T: neither can we.
		sa.nat = natFlags{}
		return nil
	}
	if e.nat.sock == nil {
		sa.nat = natFlags{}
	}
	return e.natPayloads(sa.spiI, sa.spiR, e.nat.cur.natt, e.nat.cur.from)
}

// notePeer runs on every authenticated message on sa (request or
// response) from `from`. A message on port 4500 while IKE is on port 500
// moves IKE there (the peer found a NAT, or floats without one as
// strongSwan's MOBIKE does); after that, a new source address or port
// from a peer behind a NAT is its NAT's new mapping (§2.23: the
// responder follows it, on authenticated messages only). A peer not
// behind a NAT does not move: that is MOBIKE, which we do not offer.
func (e *Engine) notePeer(sa *ikeSA, from netip.AddrPort, natt bool) {
	if !natt && e.nat.floated && sa.state == saConnecting && !sa.initiator {
		// The peer authenticates a new IKE SA on port 500 (it restarted
		// without NAT-T, or no NAT any more): IKE goes back there.
		e.log.Info("peer's new IKE SA runs on UDP port 500", append(e.saFields(sa, nil), zap.Stringer("peer", from))...)
		e.nat.floated = false
		e.movePeer(from)
		return
	}
	if !natt || e.nat.sock == nil || from == e.peer {
		return
	}
	switch {
	case !e.nat.floated:
		e.nat.floated = true
		e.log.Info("peer moved IKE to UDP port 4500", append(e.saFields(sa, nil), zap.Stringer("peer", from))...)
	case sa.nat.there:
		e.counters.NATRebinds++
		e.log.Info("peer's NAT mapping changed: following it", append(e.saFields(sa, nil),
			zap.Stringer("old", e.peer), zap.Stringer("new", from))...)
	default:
		return
	}
	e.movePeer(from)
}

// movePeer sends IKE, and ESP in UDP, to `to` from now on.
func (e *Engine) movePeer(to netip.AddrPort) {
	if e.cfg.AnyRemote && to.Addr().Unmap() != e.cfg.Remote {
		e.setRemote(to.Addr().Unmap()) // dynamic.go
	}
	e.peer = to
	if m, ok := e.dp.(ESPPeerMover); ok {
		m.MoveESPPeer(to)
	}
}

// espPeer handles NoteESPPeer: authentic ESP in UDP from `from`. It
// follows a new port of the peer's address only (for a dynamic peer too:
// a new address comes with authenticated IKE, since an ESP packet someone
// held back passes its ICV from anywhere).
func (e *Engine) espPeer(from netip.AddrPort) {
	sa := e.primary()
	if sa == nil || !e.nat.floated || from == e.peer || from.Addr().Unmap() != e.cfg.Remote.Unmap() || !sa.nat.there {
		return
	}
	e.counters.NATRebinds++
	e.log.Info("ESP in UDP from the peer's new NAT mapping: following it", append(e.saFields(sa, nil),
		zap.Stringer("old", e.peer), zap.Stringer("new", from))...)
	e.movePeer(from)
}

// udpPeer is where a CHILD_SA of sa sends ESP in UDP; zero: raw ESP.
func (e *Engine) udpPeer(sa *ikeSA) netip.AddrPort {
	if sa == nil || !sa.nat.encap() || !e.nat.floated {
		return netip.AddrPort{}
	}
	return e.peer
}

// natKeepalive sends a NAT keepalive (RFC 3948 §2.3) when we are behind a
// NAT and nothing else went out to the peer on port 4500 for
// Config.NATKeepalive.
func (e *Engine) natKeepalive(now time.Time) {
	sa := e.primary()
	if e.cfg.NATKeepalive <= 0 || e.nat.sock == nil || !e.nat.floated || sa == nil || !sa.nat.here || !sa.usable() {
		return
	}
	if e.counters.Sent != e.nat.sentSeen {
		e.nat.sentSeen, e.nat.lastOut = e.counters.Sent, now
	}
	if e.outSPI != 0 {
		if _, out := e.dp.ChildBytes(e.outSPI); out != e.nat.outBytes {
			e.nat.outBytes, e.nat.lastOut = out, now
		}
	}
	if now.Sub(e.nat.lastOut) < e.cfg.NATKeepalive {
		return
	}
	e.nat.lastOut = now
	if err := e.nat.sock.SendKeepalive(e.peer); err != nil {
		e.log.Debug("NAT keepalive not sent", zap.Error(err))
		return
	}
	e.counters.NATKeepalives++
}

// SendIKE sends b to `to`: on UDP 4500 behind the non-ESP marker (sock)
// when natt, else on the IKE socket conn; for both IKE versions. sent is
// false when there is no socket to send on (nothing was tried).
func SendIKE(sock NATSocket, conn Sender, b []byte, to netip.AddrPort, natt bool) (sent bool, err error) {
	switch {
	case natt && sock != nil:
		return true, sock.SendIKE(b, to)
	case conn != nil:
		_, err = conn.WriteToUDPAddrPort(b, to)
		return true, err
	}
	return false, nil
}

// sendTo sends raw to `to`, on port 4500 behind the non-ESP marker when
// natt, else on the IKE socket.
func (e *Engine) sendTo(raw []byte, to netip.AddrPort, natt bool) {
	sent, err := SendIKE(e.nat.sock, e.conn, raw, to, natt)
	if !sent {
		return
	}
	if err != nil {
		e.log.Warn("send failed", zap.Error(err))
		return
	}
	e.counters.Sent++
}

// reply answers the datagram being handled: to its source, on the socket
// it came on (§2.11).
func (e *Engine) reply(raw []byte) { e.sendTo(raw, e.nat.cur.from, e.nat.cur.natt) }

// resetPath puts IKE back on port 500 of the configured peer, for a new
// IKE SA when none is left.
func (e *Engine) resetPath() {
	port := e.cfg.RemotePort
	if port == 0 {
		port = 500
	}
	e.nat.floated = false
	e.peer = netip.AddrPortFrom(e.cfg.Remote, port)
}

// NATStatus describes NAT traversal with the peer, for `gresec status`.
type NATStatus struct {
	// Encap is "udp" when the CHILD_SAs carry ESP in UDP (RFC 3948),
	// else "none" (raw ESP, IP protocol 50).
	Encap string `json:"encap"`
	Mode  string `json:"udp_encap"` // the configured udp_encap
	// LocalPort and RemotePort are the IKE ports: ours and the peer's as
	// we see it (its NAT's mapping when it is behind one).
	LocalPort  uint16 `json:"local_port"`
	RemotePort uint16 `json:"remote_port"`
	Peer       string `json:"peer"`     // the peer's address and port we send to
	NATHere    bool   `json:"nat_here"` // a NAT in front of us
	NATThere   bool   `json:"nat_peer"` // a NAT in front of the peer
	Faked      bool   `json:"faked"`    // udp_encap = "always" faked the detection
}

func (e *Engine) natStatus(sa *ikeSA) NATStatus {
	s := NATStatus{Encap: "none", Mode: e.cfg.UDPEncap.String(), LocalPort: e.localIKEPort(e.nat.floated),
		RemotePort: e.peer.Port(), Peer: e.peer.String()}
	if sa != nil {
		s.NATHere, s.NATThere, s.Faked = sa.nat.here, sa.nat.there, sa.nat.faked
		if e.udpPeer(sa).IsValid() {
			s.Encap = "udp"
		}
	}
	return s
}

// natSelectors substitutes addresses in the peer's traffic selectors for
// one side (RFC 7296 §2.23.1): in transport mode, the side behind a NAT
// names its private address, which the other side never sees. A
// single-address selector of the right family and protocol there stands
// for our selector of that side. It reports whether it substituted.
func (e *Engine) natSelectors(theirs, ours []TrafficSelector, behindNAT bool) ([]TrafficSelector, bool) {
	if !behindNAT || e.cfg.Child.TunnelMode {
		return theirs, false
	}
	var out []TrafficSelector
	for i, t := range theirs {
		if t.Raw != nil || t.Start != t.End {
			continue
		}
		for _, o := range ours {
			if o.Raw == nil && o.Start == o.End && o.TSType == t.TSType && o.Protocol == t.Protocol && o.Start != t.Start {
				if out == nil {
					out = append([]TrafficSelector(nil), theirs...)
				}
				out[i].Start, out[i].End = o.Start, o.End
				break
			}
		}
	}
	if out == nil {
		return theirs, false
	}
	return out, true
}

// MOBIKE (RFC 4555) notifies. We do not send MOBIKE_SUPPORTED, so a peer
// must not use MOBIKE with us; strongSwan (mobike = yes) still floats to
// port 4500 and may send these. The rules for a peer that did not
// negotiate MOBIKE: UPDATE_SA_ADDRESSES and the address lists change
// nothing (a peer behind a NAT is followed by notePeer anyway, on any
// authenticated message); COOKIE2 is copied into the answer (§3.8), which
// costs nothing and is what a return-routability check expects.
const (
	ADDITIONAL_IP4_ADDRESS  NotifyType = 16397
	ADDITIONAL_IP6_ADDRESS  NotifyType = 16398
	NO_ADDITIONAL_ADDRESSES NotifyType = 16399
	UPDATE_SA_ADDRESSES     NotifyType = 16400
	COOKIE2                 NotifyType = 16401
	NO_NATS_ALLOWED         NotifyType = 16402
)

func init() {
	for n, s := range map[NotifyType]string{ADDITIONAL_IP4_ADDRESS: "ADDITIONAL_IP4_ADDRESS", ADDITIONAL_IP6_ADDRESS: "ADDITIONAL_IP6_ADDRESS",
		NO_ADDITIONAL_ADDRESSES: "NO_ADDITIONAL_ADDRESSES", UPDATE_SA_ADDRESSES: "UPDATE_SA_ADDRESSES",
		COOKIE2: "COOKIE2", NO_NATS_ALLOWED: "NO_NATS_ALLOWED"} {
		notifyNames[n] = s
	}
}

// mobikeAnswer is what an INFORMATIONAL response carries for the MOBIKE
// notifies of the request ps: a copy of COOKIE2 (RFC 4555 §3.8: 8..64
// bytes; others are ignored).
func (e *Engine) mobikeAnswer(sa *ikeSA, ps Payloads) Payloads {
	var out Payloads
	for _, p := range ps {
		n, ok := p.(*Notify)
		if !ok {
			continue
		}
		switch n.Kind {
		case COOKIE2:
			if l := len(n.Data); l >= 8 && l <= 64 && len(out) == 0 {
				out = append(out, &Notify{Kind: COOKIE2, Data: append([]byte(nil), n.Data...)})
			}
		case UPDATE_SA_ADDRESSES, ADDITIONAL_IP4_ADDRESS, ADDITIONAL_IP6_ADDRESS, NO_ADDITIONAL_ADDRESSES, NO_NATS_ALLOWED:
			e.log.Debug("MOBIKE notify from a peer that did not negotiate MOBIKE: ignored",
				append(e.saFields(sa, nil), zap.Stringer("notify", n.Kind))...)
		}
	}
	return out
}
