package tunnel

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/demux"
	"github.com/gresec/gresec/rawip"
	"github.com/gresec/gresec/udpencap"
)

// A tunnel of a daemon with many tunnels does not open its own raw ESP
// socket, UDP 500 and UDP 4500 sockets: it joins the daemon's (package
// demux), whose readers hand it the packets whose SPI it owns and the IKE
// datagrams of its IKE SAs or its peer. Plain GRE and ESP in UDP with static keys keep their own
// socket.

// NewSockets returns the shared sockets for the tunnels of one daemon,
// reading into buffers laid out as this package's receive path needs.
func NewSockets() *demux.Sockets { return demux.NewSockets(batchSize, tunWriteOffset, recvBufSize) }

// shared is a tunnel's hold on the daemon's sockets.
type shared struct {
	socks   *demux.Sockets
	esp     *demux.ESPPort
	ike     *demux.IKEPort
	natt    *demux.NATTPort  // UDP 4500, for IKE NAT traversal (nil: none)
	ikeC    *demux.IKEClient // the engines' sender; nil until attach
	orphans atomic.Uint64    // IKE datagrams that came while no engine ran
}

// sharesESP tells whether a tunnel of cfg uses the daemon's raw ESP socket.
func sharesESP(cfg *config.Config) bool {
	return cfg.Keying != config.KeyingNone && !cfg.ESPInUDP()
}

// joinSockets takes the tunnel's ports from socks (opening them if it is
// the first tunnel on its local address). It registers nothing yet: see
// attach.
func (t *Tunnel) joinSockets(socks *demux.Sockets) error {
	s := &shared{socks: socks}
	var err error
	if s.esp, err = socks.ESP(t.cfg.Local); err != nil {
		return err
	}
	if t.cfg.Keying == config.KeyingStatic && socks.SPIs.Lookup(t.cfg.Static.SPIIn) != nil {
		return fmt.Errorf("%s: static.spi_in 0x%08x: another tunnel of this daemon receives on it", t.cfg.Path, t.cfg.Static.SPIIn)
	}
	// IKEv1 and IKEv2 alike: the port routes IKEv1 by the peer's address
	// (demux/ikev1.go), IKEv2 by SPI first.
	if t.cfg.Keying.IKE() {
		if s.ike, err = socks.IKE(t.cfg.Local, 500); err != nil {
			return err
		}
	}
	if t.cfg.NATTSocket() {
		if s.natt, err = socks.NATT(t.cfg.Local); err != nil {
			return err
		}
		t.natt = &sharedNATT{s}
	}
	t.shared = s
	t.conn = sharedConn{s.esp}
	return nil
}

// attach starts the dispatch to the tunnel, once its device is up: its
// inbound SPIs, now and as SAs come and go, its peer's packets with SPIs
// nobody owns, and its peer's IKE datagrams.
func (t *Tunnel) attach() error {
	s := t.shared
	if !t.cfg.AnyRemote { // a dynamic peer's address comes with BindPeer
		if !s.esp.AddPeer(t.remote, t) {
			return fmt.Errorf("%s: another tunnel of this daemon has peer %s on %s", t.cfg.Path, t.remote, t.cfg.Local)
		}
		if s.natt != nil && !s.natt.AddPeer(t.remote, t) {
			return fmt.Errorf("%s: another tunnel of this daemon has peer %s on %s port 4500", t.cfg.Path, t.remote, t.cfg.Local)
		}
	}
	spis := s.socks.SPIs
	t.sadb.Watch(func(spi uint32, present bool) {
		if present {
			if !spis.Add(spi, t) {
				t.log.Sugar().Errorw("inbound SPI held by another tunnel; its packets do not reach this one", "spi", fmt.Sprintf("0x%08x", spi))
			}
		} else {
			spis.Remove(spi, t)
		}
	})
	for _, sa := range t.sadb.Inbound() {
		if !spis.Add(sa.SPI(), t) {
			return fmt.Errorf("%s: SPI 0x%08x: another tunnel of this daemon receives on it", t.cfg.Path, sa.SPI())
		}
	}
	if s.ike == nil {
		return nil
	}
	offer, offerNATT := t.offerIKE, t.offerNATT
	var nat demux.NATSender
	if s.natt != nil {
		nat = s.natt.Conn
	} else {
		offerNATT = nil
	}
	if t.cfg.AnyRemote {
		if s.ikeC = s.ike.JoinAny(t.cfg.IKE.RemoteID.Key(), t, offer, offerNATT, nil, nat); s.ikeC == nil {
			return fmt.Errorf("%s: another tunnel of this daemon takes the dynamic peer %s on %s", t.cfg.Path, t.cfg.IKE.RemoteIDText, t.cfg.Local)
		}
		return nil
	}
	if s.ikeC = s.ike.Join(t.remote, offer, offerNATT, nil, nat); s.ikeC == nil {
		return fmt.Errorf("%s: another tunnel of this daemon negotiates with %s from %s", t.cfg.Path, t.remote, t.cfg.Local)
	}
	return nil
}

// detach stops the dispatch to the tunnel; the sockets stay open for the
// others.
func (t *Tunnel) detach() {
	s := t.shared
	if s.ikeC != nil {
		s.ikeC.Leave()
	}
	t.peerMu.Lock()
	remote := t.remote
	t.peerMu.Unlock()
	if remote.IsValid() {
		s.esp.RemovePeer(remote, t)
		if s.natt != nil {
			s.natt.RemovePeer(remote, t)
		}
	}
	s.socks.SPIs.RemoveAll(t)
}

// ikeReceiver is the running IKE engine of either version.
type ikeReceiver interface {
	Offer(b []byte, from netip.AddrPort)
	OfferNATT(b []byte, from netip.AddrPort)
}

// receiver is the engine running now (nil: none, between restarts).
func (t *Tunnel) receiver() ikeReceiver {
	if e := t.ike.Load(); e != nil {
		return e
	}
	if e := t.ikev1.Load(); e != nil {
		return e
	}
	return nil
}

// offerIKE hands a datagram from the peer to the running engine.
func (t *Tunnel) offerIKE(b []byte, from netip.AddrPort) {
	if e := t.receiver(); e != nil {
		e.Offer(b, from)
	} else {
		t.shared.orphans.Add(1)
	}
}

// offerNATT hands an IKE message that came on UDP 4500 to the running
// engine.
func (t *Tunnel) offerNATT(b []byte, from netip.AddrPort) {
	if e := t.receiver(); e != nil {
		e.OfferNATT(b, from)
	} else {
		t.shared.orphans.Add(1)
	}
}

// sharedNATT is the tunnel's view of the daemon's UDP 4500 socket (its
// natSocket): ESP in UDP written through the port, IKE through the
// engine's IKE client (which learns its SPIs), read by the port.
type sharedNATT struct{ s *shared }

func (n *sharedNATT) ReadBatch([]rawip.Message) (int, error)    { return 0, net.ErrClosed }
func (n *sharedNATT) WriteBatch(m []rawip.Message) (int, error) { return n.s.natt.WriteBatch(m) }
func (n *sharedNATT) Close() error                              { return nil }
func (n *sharedNATT) SendIKE(msg []byte, to netip.AddrPort) error {
	return n.s.ikeC.SendIKE(msg, to)
}
func (n *sharedNATT) SendKeepalive(to netip.AddrPort) error { return n.s.ikeC.SendKeepalive(to) }
func (n *sharedNATT) Stats() udpencap.Stats                 { return n.s.natt.Conn.Stats() }
func (n *sharedNATT) Offloads() (gso, gro bool)             { return n.s.natt.Conn.Offloads() }

// sharedConn is the tunnel's view of the shared ESP socket: it writes
// through it; reading is the port's.
type sharedConn struct{ p *demux.ESPPort }

func (c sharedConn) ReadBatch([]rawip.Message) (int, error)    { return 0, net.ErrClosed }
func (c sharedConn) WriteBatch(m []rawip.Message) (int, error) { return c.p.WriteBatch(m) }
func (c sharedConn) Close() error                              { return nil }

// DaemonStatus is the control socket's answer to "status" in a daemon of
// many tunnels.
type DaemonStatus struct {
	Tunnels []Status `json:"tunnels"`
	// Drops of the shared sockets, before any tunnel: ESP shorter than an
	// SPI, ESP with an SPI no tunnel owns from no tunnel's peer, IKE from
	// no tunnel's peer.
	Malformed   uint64 `json:"esp_malformed"`
	UnknownSPI  uint64 `json:"esp_unknown_spi"`
	UnroutedIKE uint64 `json:"ike_unrouted"`
	// IKE datagrams dropped, not sent, because the socket's send buffer
	// was full (demux.SendNow).
	IKESendFull uint64 `json:"ike_send_buffer_full"`
}
