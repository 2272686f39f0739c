package tunnel

import (
	"fmt"
	"net/netip"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/ikev1"
	"github.com/gresec/gresec/rawip"
	"github.com/gresec/gresec/udpencap"
)

// NAT traversal in the data plane (IKEv2, and IKEv1 through the same
// socket: the header's version picks the engine). An IKE tunnel that may float
// (udp_encap other than "never") opens UDP port 4500 at start, next to the
// raw ESP socket. IKE on port 4500 and ESP in UDP share it: udpencap hands
// the IKE messages (non-ESP marker) to the engine, the ESP packets to a
// receive pump of their own, which opens them with the one SA database.
// Each CHILD_SA says whether its ESP travels in UDP (ike.ChildKeys
// .UDPPeer); the send pump reads the path of the outbound SA once per
// batch, so the raw path costs one atomic load more and nothing per
// packet.

var _ ike.ESPPeerMover = (*Tunnel)(nil)

// natSocket is UDP 4500 as the tunnel uses it: its own *udpencap.Conn, or
// its share of the daemon's (shared.go).
type natSocket interface {
	underlay
	ike.NATSocket
	Stats() udpencap.Stats
	Offloads() (gso, gro bool)
}

// sendPath is where the send pump writes: the raw socket, or the UDP 4500
// socket and the peer's port there (its NAT's mapping).
type sendPath struct {
	conn underlay
	port uint16 // 0: the socket's default (raw IP; static ESP in UDP)
	// floated: IKE moved ESP into UDP; TCP is clamped to the smaller MSS.
	floated bool
}

// clampMSS is the MSS to clamp TCP SYNs to on the current path.
func (t *Tunnel) clampMSS() (mss4, mss6 uint16) {
	if p := t.path.Load(); p != nil && p.floated {
		return t.mssUDP4, t.mssUDP6
	}
	return t.mss4, t.mss6
}

// listenNATT opens UDP 4500 for an IKE tunnel that may float.
func (t *Tunnel) listenNATT(cfg *config.Config) error {
	if !cfg.NATTSocket() {
		return nil
	}
	c, err := udpencap.Listen(cfg.Local, ike.NATTPort, ike.NATTPort, batchSize)
	if err != nil {
		return fmt.Errorf("NAT traversal socket on %s: %w", netip.AddrPortFrom(cfg.Local, ike.NATTPort), err)
	}
	c.SetIKEHandler(func(msg []byte, from netip.AddrPort) {
		if e := t.ikev1.Load(); e != nil && ikev1.IsV1(msg) {
			e.OfferNATT(msg, from)
		} else if e := t.ike.Load(); e != nil {
			e.OfferNATT(msg, from)
		} else if t.ikeSock != nil {
			t.ikeSock.orphans.Add(1)
		}
	})
	t.natt = c
	return nil
}

// writeBatch sends msgs (Addr set, Port not) on the outbound SA's path.
func (t *Tunnel) writeBatch(msgs []rawip.Message) (int, error) {
	p := t.path.Load()
	if p == nil {
		return t.conn.WriteBatch(msgs)
	}
	if p.port != 0 {
		for i := range msgs {
			msgs[i].Port = p.port
		}
	}
	return p.conn.WriteBatch(msgs)
}

// choosePath makes the send pump write raw ESP, or ESP in UDP to udp
// (valid), from now on. The caller holds children.mu.
func (t *Tunnel) choosePath(udp netip.AddrPort) {
	if !udp.IsValid() || t.natt == nil {
		t.path.Store(&t.rawPath)
		return
	}
	if p := t.path.Load(); p != nil && p.conn == underlay(t.natt) && p.port == udp.Port() {
		return
	}
	t.path.Store(&sendPath{conn: t.natt, port: udp.Port(), floated: true})
}

// MoveESPPeer follows the peer's new UDP address (its NAT's new mapping):
// the CHILD_SAs that carry ESP in UDP send there from now on.
func (t *Tunnel) MoveESPPeer(to netip.AddrPort) {
	t.children.mu.Lock()
	defer t.children.mu.Unlock()
	for spi, p := range t.children.udp {
		if p.IsValid() {
			t.children.udp[spi] = to
		}
	}
	if p := t.path.Load(); p != nil && p.conn == underlay(t.natt) {
		t.choosePath(to)
	}
	t.espPort.Store(uint32(to.Port()))
}

// noteESPFrom runs for every authentic ESP packet that came in UDP: one
// from a port the peer has not used before goes to the engine, which
// decides whether it is a new NAT mapping to follow (ike/nat.go).
func (t *Tunnel) noteESPFrom(m *rawip.Message) {
	if uint32(m.Port) == t.espPort.Load() || t.natt == nil {
		return
	}
	t.espPort.Store(uint32(m.Port))
	if e := t.ike.Load(); e != nil {
		e.NoteESPPeer(netip.AddrPortFrom(m.Addr, m.Port))
	} else if e := t.ikev1.Load(); e != nil {
		e.NoteESPPeer(netip.AddrPortFrom(m.Addr, m.Port))
	}
}

// encapMode is udp_encap as the engine takes it.
func encapMode(m config.UDPEncap) ike.EncapMode {
	switch m {
	case config.UDPEncapAlways:
		return ike.EncapAlways
	case config.UDPEncapNever:
		return ike.EncapNever
	}
	return ike.EncapAuto
}
