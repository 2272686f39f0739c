package ikev1

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/gresec/gresec/ike"
)

// NAT traversal for IKEv1 (RFC 3947, RFC 3948). Both sides send RFC
// 3947's vendor ID in Main Mode messages 1 and 2; when both did, messages
// 3 and 4 carry NAT-D payloads: the hash of the address and port the
// message goes to, then of the one it comes from. A hash that does not
// match shows a NAT on that side. Then the initiator moves IKE to UDP
// port 4500 from message 5 on (behind the non-ESP marker, on the socket
// that carries ESP in UDP, the one IKEv2 uses: tunnel/nat.go), Quick Mode
// negotiates UDP-Encapsulated-Transport (mode 4) with NAT-OA payloads,
// the side behind the NAT sends keepalives and the other side follows the
// peer's mapping on authenticated messages.
//
// NAT-OA carries the original addresses for a transport-mode peer to fix
// TCP and UDP checksums; our payload is GRE, whose optional checksum
// covers only the GRE packet (RFC 2784 §2.5), so we send ours and ignore
// the peer's.
//
// udp_encap = "never" sends no vendor ID, so neither side floats;
// "always" fakes our NAT-D source hash (port 0), as strongSwan's encap =
// yes does, so both sides float and encapsulate without a NAT.

// natFlags is what one phase 1 SA's Main Mode found.
type natFlags struct {
	natt  bool // both sides sent RFC 3947's vendor ID
	here  bool // a NAT in front of us
	there bool // a NAT in front of the peer
	faked bool // we faked our hash (udp_encap = "always")
}

// encap reports whether the phase 2 SAs of the phase 1 SA carry ESP in
// UDP.
func (f natFlags) encap() bool { return f.natt && (f.here || f.there || f.faked) }

// natState is the engine's NAT-T state, owned by the Serve goroutine but
// for sock (set before Serve) and espFrom.
type natState struct {
	sock ike.NATSocket
	// floated: IKE with the peer runs on port 4500, to e.peer.
	floated bool
	// cur is the datagram being handled: its source and whether it came
	// on port 4500. Answers to it go back that way.
	cur struct {
		from netip.AddrPort
		natt bool
	}
	// lastOut is when something last went out to the peer (IKE, a
	// keepalive or ESP, as outBytes tracks).
	lastOut  time.Time
	outBytes uint64
	espFrom  chan netip.AddrPort
}

// UseNATSocket gives the engine the UDP 4500 socket; call it before
// Serve. Without one the engine sends no NAT-T vendor ID and so never
// floats.
func (e *Engine) UseNATSocket(s ike.NATSocket) { e.nat.sock = s }

// OfferNATT is Offer for a datagram that came on port 4500, the non-ESP
// marker stripped.
func (e *Engine) OfferNATT(b []byte, from netip.AddrPort) { e.offer(b, from, true) }

// NoteESPPeer tells the engine that authentic ESP in UDP came from the
// peer at from; if the peer is behind a NAT and from is new, its mapping
// changed and IKE and ESP follow it. It does not block.
func (e *Engine) NoteESPPeer(from netip.AddrPort) {
	select {
	case e.nat.espFrom <- from:
	default:
	}
}

// offersNATT: we send RFC 3947's vendor ID.
func (e *Engine) offersNATT() bool {
	return e.nat.sock != nil && e.cfg.UDPEncap != ike.EncapNever
}

func hasVendor(ps []Payload, id []byte) bool {
	for _, v := range All(ps, PayloadVendor) {
		if bytes.Equal(v.Body, id) {
			return true
		}
	}
	return false
}

// NATHash is a NAT-D payload's body (RFC 3947 §3.2): HASH(CKY-I | CKY-R |
// IP | Port) with the phase 1 SA's negotiated hash.
func NATHash(prf ike.PRF, ic, rc uint64, ap netip.AddrPort) []byte {
	h := newHash(prf)()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], ic)
	binary.BigEndian.PutUint64(b[8:], rc)
	h.Write(b[:])
	h.Write(ap.Addr().Unmap().AsSlice())
	binary.BigEndian.PutUint16(b[:], ap.Port())
	h.Write(b[:2])
	return h.Sum(nil)
}

func localPort(natt bool) uint16 {
	if natt {
		return ike.NATTPort
	}
	return 500
}

// natD are our NAT-D payloads for Main Mode message 3 or 4 sent to `to`:
// the destination first, then our source (faked with udp_encap =
// "always"). The initiator sends from port 4500 once IKE floated (a phase
// 1 rekey), the responder answers from the port the request came to.
func (e *Engine) natD(p *phase1, to netip.AddrPort) []Payload {
	natt := e.nat.cur.natt
	if p.initiator {
		natt = e.nat.floated
	}
	src := netip.AddrPortFrom(e.cfg.Local, localPort(natt))
	if e.cfg.UDPEncap == ike.EncapAlways {
		src = netip.AddrPortFrom(e.cfg.Local, 0)
	}
	return []Payload{
		{PayloadNATD, NATHash(p.suite.PRF, p.ic, p.rc, to)},
		{PayloadNATD, NATHash(p.suite.PRF, p.ic, p.rc, src)},
	}
}

// checkNATD compares the peer's NAT-D payloads in message 3 or 4 with
// what the current datagram shows and records the result on p. A peer
// that announced NAT-T but sent none does no NAT-T after all.
func (e *Engine) checkNATD(p *phase1, ps []Payload) {
	ds := All(ps, PayloadNATD)
	if !p.nat.natt {
		return
	}
	if len(ds) < 2 {
		p.nat = natFlags{}
		return
	}
	local := netip.AddrPortFrom(e.cfg.Local, localPort(e.nat.cur.natt))
	p.nat.faked = e.cfg.UDPEncap == ike.EncapAlways
	p.nat.here = !bytes.Equal(ds[0].Body, NATHash(p.suite.PRF, p.ic, p.rc, local))
	want := NATHash(p.suite.PRF, p.ic, p.rc, e.nat.cur.from)
	p.nat.there = true
	for _, d := range ds[1:] {
		if bytes.Equal(d.Body, want) {
			p.nat.there = false
		}
	}
	if p.nat.here || p.nat.there {
		e.log.Info("NAT detected", zap.String("spi", p.spis()), zap.Bool("nat_here", p.nat.here), zap.Bool("nat_there", p.nat.there),
			zap.Stringer("peer", e.nat.cur.from), zap.Stringer("udp_encap", e.cfg.UDPEncap))
	}
}

// float moves IKE to port 4500 for Main Mode message 5 when p found (or
// fakes) a NAT: the initiator's part (RFC 3947 §4).
func (e *Engine) float(p *phase1) {
	if !p.nat.encap() || e.nat.floated {
		return
	}
	e.nat.floated = true
	e.peer = netip.AddrPortFrom(e.peer.Addr(), ike.NATTPort)
	e.log.Info("moving IKE to UDP port 4500", zap.String("spi", p.spis()), zap.Stringer("peer", e.peer))
}

// notePeer runs on every authenticated message on p from the current
// datagram's source. A message on port 4500 while IKE runs on port 500
// moves IKE there (the peer floated); after that a new source of a peer
// behind a NAT is its NAT's new mapping, which we follow. A new Main Mode
// the peer authenticates on port 500 brings IKE back there.
func (e *Engine) notePeer(p *phase1) {
	from, natt := e.nat.cur.from, e.nat.cur.natt
	if !from.IsValid() || from == e.peer {
		return
	}
	switch {
	case !natt && e.nat.floated && !p.initiator && p.state != stateEstablished:
		e.log.Info("peer's new phase 1 SA runs on UDP port 500", zap.String("spi", p.spis()), zap.Stringer("peer", from))
		e.nat.floated = false
	case natt && e.nat.sock != nil && !e.nat.floated:
		e.nat.floated = true
		e.log.Info("peer moved IKE to UDP port 4500", zap.String("spi", p.spis()), zap.Stringer("peer", from))
	case natt == e.nat.floated && p.nat.there:
		e.rebinds.Add(1)
		e.log.Info("peer's NAT mapping changed: following it", zap.String("spi", p.spis()), zap.Stringer("old", e.peer), zap.Stringer("new", from))
	default:
		return
	}
	e.movePeer(from)
}

// movePeer sends IKE, and ESP in UDP, to `to` from now on.
func (e *Engine) movePeer(to netip.AddrPort) {
	e.peer = to
	if m, ok := e.dp.(ike.ESPPeerMover); ok && e.nat.floated {
		m.MoveESPPeer(to)
	}
}

// espPeer handles NoteESPPeer: authentic ESP in UDP from `from`.
func (e *Engine) espPeer(from netip.AddrPort) {
	p := e.established()
	if p == nil || !e.nat.floated || from == e.peer || from.Addr().Unmap() != e.cfg.Remote.Unmap() || !p.nat.there {
		return
	}
	e.rebinds.Add(1)
	e.log.Info("ESP in UDP from the peer's new NAT mapping: following it", zap.Stringer("old", e.peer), zap.Stringer("new", from))
	e.movePeer(from)
}

// udpPeer is where a phase 2 SA of p sends ESP in UDP; zero: raw ESP.
func (e *Engine) udpPeer(p *phase1) netip.AddrPort {
	if p == nil || !p.nat.encap() || !e.nat.floated {
		return netip.AddrPort{}
	}
	return e.peer
}

// encapMode is the phase 2 encapsulation mode attribute for SAs under p.
func (e *Engine) encapMode(p *phase1) uint64 {
	udp := p != nil && p.nat.encap() && e.nat.floated
	switch {
	case e.cfg.Child.TunnelMode && udp:
		return EncapUDPTunnel
	case e.cfg.Child.TunnelMode:
		return EncapTunnel
	case udp:
		return EncapUDPTranspor
	}
	return EncapTransport
}

// natOA are the NAT-OA payloads (RFC 3947 §5.2) of a Quick Mode in
// transport mode under a NAT: the initiator's address, then the
// responder's, as the initiator sees them.
func (e *Engine) natOA(p *phase1, initiator bool) []Payload {
	if e.encapMode(p) != EncapUDPTranspor {
		return nil
	}
	oa := func(a netip.Addr) []byte {
		t := byte(ike.ID_IPV4_ADDR)
		if a.Unmap().Is6() {
			t = byte(ike.ID_IPV6_ADDR)
		}
		return append([]byte{t, 0, 0, 0}, a.Unmap().AsSlice()...)
	}
	l, r := e.cfg.Local, e.peer.Addr()
	if initiator {
		return []Payload{{PayloadNATOA, oa(l)}, {PayloadNATOA, oa(r)}}
	}
	return []Payload{{PayloadNATOA, oa(r)}, {PayloadNATOA, oa(l)}}
}

// natKeepalive sends a NAT keepalive (RFC 3948 §2.3) when we are behind a
// NAT and nothing else went out to the peer for Config.NATKeepalive.
func (e *Engine) natKeepalive(now time.Time) {
	p := e.established()
	if e.cfg.NATKeepalive <= 0 || e.nat.sock == nil || !e.nat.floated || p == nil || !p.nat.here {
		return
	}
	var out uint64
	for _, c := range e.children {
		_, o := e.dp.ChildBytes(c.spiIn)
		out += o
	}
	if out != e.nat.outBytes {
		e.nat.outBytes, e.nat.lastOut = out, now
	}
	if now.Sub(e.nat.lastOut) < e.cfg.NATKeepalive {
		return
	}
	e.nat.lastOut = now
	if err := e.nat.sock.SendKeepalive(e.peer); err != nil {
		e.log.Debug("NAT keepalive not sent", zap.Error(err))
		return
	}
	e.keepalives.Add(1)
}

// sendTo sends b to `to`, on port 4500 behind the non-ESP marker when
// natt, else on the IKE socket.
func (e *Engine) sendTo(b []byte, to netip.AddrPort, natt bool) {
	sent, err := ike.SendIKE(e.nat.sock, e.conn, b, to, natt)
	if !sent {
		return
	}
	if err != nil {
		e.log.Debug("send failed", zap.Error(err))
		return
	}
	e.nat.lastOut = time.Now()
}

// reply answers the datagram being handled: to its source, the way it
// came.
func (e *Engine) reply(b []byte) {
	if !e.nat.cur.from.IsValid() {
		e.write(b)
		return
	}
	e.sendTo(b, e.nat.cur.from, e.nat.cur.natt)
}

// resetPath puts IKE back on port 500 of the configured peer, for a new
// Main Mode when no phase 1 SA is left.
func (e *Engine) resetPath() {
	port := e.cfg.RemotePort
	if port == 0 {
		port = 500
	}
	e.nat.floated = false
	e.peer = netip.AddrPortFrom(e.cfg.Remote, port)
}

// NATStatus describes NAT traversal with the peer.
type NATStatus struct {
	Encap      string `json:"encap"`     // "udp" when phase 2 SAs carry ESP in UDP, else "none"
	Mode       string `json:"udp_encap"` // the configured udp_encap
	RemotePort uint16 `json:"remote_port"`
	NATHere    bool   `json:"nat_here"`
	NATThere   bool   `json:"nat_peer"`
	Faked      bool   `json:"faked"`
	Keepalives uint64 `json:"keepalives_sent"`
	Rebinds    uint64 `json:"rebinds"`
}

func (e *Engine) natStatus() *NATStatus {
	s := &NATStatus{Encap: "none", Mode: e.cfg.UDPEncap.String(), RemotePort: e.peer.Port(),
		Keepalives: e.keepalives.Load(), Rebinds: e.rebinds.Load()}
	if p := e.established(); p != nil {
		s.NATHere, s.NATThere, s.Faked = p.nat.here, p.nat.there, p.nat.faked && p.nat.natt
		if e.udpPeer(p).IsValid() {
			s.Encap = "udp"
		}
	}
	return s
}
