package demux

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/gresec/gresec/ike"
)

// IKEPort is one UDP socket for IKE on port 500, shared by every tunnel on
// its local address, and the dispatcher of the IKE messages that come
// behind the non-ESP marker on the address's UDP 4500 socket
// (DispatchNATT, the udpencap IKE handler): one SPI table for both, since
// an IKE SA starts on 500 and may float to 4500.
//
// A datagram goes to an engine by our IKE SPI in it (the responder SPI of
// a request from the original initiator, else the initiator SPI), when an
// engine has that SPI; otherwise (a new IKE_SA_INIT, or an SA the port has
// not seen yet) by the sender's address, the tunnel's remote. The port
// learns each engine's SPIs from the messages it sends (IKEClient), so
// the ike package needs no hook, and an SPI names its engine even where
// the address does not (peers behind one NAT, a peer that moved).
type IKEPort struct {
	conn   *net.UDPConn // nil: a port that only dispatches (tests, 4500's handler)
	send   *SendNow     // conn's sending side, which never blocks
	mu     sync.Mutex
	byPeer atomic.Pointer[map[netip.Addr]*IKEClient]
	bySPI  atomic.Pointer[map[uint64]*IKEClient]
	// anyPeer are the engines of dynamic peers (JoinAny), by the
	// identity they take; the first answers a new IKE_SA_INIT from an
	// address no tunnel has (see ike/dynamic.go).
	anyPeer atomic.Pointer[[]*IKEClient]
	// Unrouted: datagrams with no SPI of ours from an address no tunnel
	// has as its peer.
	Unrouted atomic.Uint64
}

// spisPerClient bounds the IKE SPIs remembered per engine: the current
// IKE SA, the one a rekey replaces, crossing IKE_SA_INITs. Older ones are
// forgotten (their datagrams fall back to the address).
const spisPerClient = 8

// IKEClient is one engine's hold on the port: its ike.Sender, which
// learns the engine's SPIs from what it sends.
type IKEClient struct {
	port      *IKEPort
	peer      netip.Addr
	offer     Offer
	offerNATT Offer // for 4500 (nil: none)
	out       Sender
	nat       NATSender             // the 4500 socket (nil: none)
	spis      [spisPerClient]uint64 // a ring, under port.mu
	next      int
	left      bool // under port.mu: learn no more
	// anyID is the identity a dynamic peer's engine takes (JoinAny; ""
	// for a fixed peer), owner what its tunnel gave JoinAny.
	anyID string
	owner any
}

// Sender sends one datagram: *net.UDPConn, or a wrapper that adds
// the non-ESP marker on port 4500.
type Sender interface {
	WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error)
}

// NATSender sends IKE behind the non-ESP marker, and NAT keepalives, on
// UDP 4500 (*udpencap.Conn).
type NATSender interface {
	SendIKE(msg []byte, to netip.AddrPort) error
	SendKeepalive(to netip.AddrPort) error
}

// ListenIKE opens UDP port on local.
func ListenIKE(local netip.Addr, port uint16) (*IKEPort, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, port)))
	if err != nil {
		return nil, fmt.Errorf("IKE socket %s port %d: %w", local, port, err)
	}
	// Room for a burst while engines compute DH (best effort: the kernel
	// caps it at net.core.rmem_max).
	_ = conn.SetReadBuffer(4 << 20)
	p := NewIKEPort(conn)
	return p, nil
}

// NewIKEPort dispatches for conn (nil: Dispatch only, the caller reads).
func NewIKEPort(conn *net.UDPConn) *IKEPort {
	p := &IKEPort{conn: conn}
	if conn != nil {
		p.send, _ = NewSendNow(conn)
	}
	p.byPeer.Store(&map[netip.Addr]*IKEClient{})
	p.bySPI.Store(&map[uint64]*IKEClient{})
	return p
}

// Join routes datagrams from peer to offer (and those on 4500 to
// offerNATT), and returns the engine's sender, which writes through out
// (nil: the port's socket) and nat (4500; nil: none). It returns nil when
// another tunnel has this peer on this port.
func (p *IKEPort) Join(peer netip.Addr, offer, offerNATT Offer, out Sender, nat NATSender) *IKEClient {
	peer = peer.Unmap()
	if out == nil {
		out = p.send
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// A tunnel configured with this peer takes it from a dynamic
	// tunnel that found its peer there.
	if o, ok := (*p.byPeer.Load())[peer]; ok && o.anyID == "" {
		return nil
	}
	c := &IKEClient{port: p, peer: peer, offer: offer, offerNATT: offerNATT, out: out, nat: nat}
	p.setPeer(peer, c)
	return c
}

// setPeer routes peer's datagrams to c (nil: to nobody). Under p.mu.
func (p *IKEPort) setPeer(peer netip.Addr, c *IKEClient) {
	cur := *p.byPeer.Load()
	next := make(map[netip.Addr]*IKEClient, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	if c == nil {
		delete(next, peer)
	} else {
		next[peer] = c
	}
	p.byPeer.Store(&next)
}

// JoinAny is Join for a dynamic peer (remote = "any") whose engine takes
// the identity id: it gets new IKE_SA_INITs from addresses no tunnel has
// (the first such engine answers them all, until the peer names itself),
// and those from its peer's address once Bind tells it. owner is returned
// by AnyOwner(id). It returns nil when another dynamic tunnel takes id.
func (p *IKEPort) JoinAny(id string, owner any, offer, offerNATT Offer, out Sender, nat NATSender) *IKEClient {
	if out == nil {
		out = p.send
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.anyClients()
	for _, o := range cur {
		if o.anyID == id {
			return nil
		}
	}
	c := &IKEClient{port: p, offer: offer, offerNATT: offerNATT, out: out, nat: nat, anyID: id, owner: owner}
	next := append(append(make([]*IKEClient, 0, len(cur)+1), cur...), c)
	p.anyPeer.Store(&next)
	return c
}

func (p *IKEPort) anyClients() []*IKEClient {
	if l := p.anyPeer.Load(); l != nil {
		return *l
	}
	return nil
}

// AnyOwner is the owner of the dynamic peer's engine that takes id (nil:
// none).
func (p *IKEPort) AnyOwner(id string) any {
	for _, c := range p.anyClients() {
		if c.anyID == id {
			return c.owner
		}
	}
	return nil
}

// Bind routes datagrams from peer, where a dynamic peer authenticated, to
// c instead of its old address (unless a tunnel configured with peer has
// it: then c's own SPIs still reach c).
func (c *IKEClient) Bind(peer netip.Addr) {
	peer = peer.Unmap()
	p := c.port
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.left || c.peer == peer {
		return
	}
	if c.peer.IsValid() && (*p.byPeer.Load())[c.peer] == c {
		p.setPeer(c.peer, nil)
	}
	c.peer = peer
	if _, ok := (*p.byPeer.Load())[peer]; !ok {
		p.setPeer(peer, c)
	}
}

var _ ike.SPIClaimer = (*IKEClient)(nil)

// Claim routes the datagrams with our IKE SPI spi to c: an IKE SA another
// engine answered and handed over to c's (ike.Config.Handoff), or one a
// rekey created before anything was sent on it (ike.SPIClaimer).
func (c *IKEClient) Claim(spi uint64) { c.learn(spi) }

// Leave stops routing datagrams to the engine, by address and by SPI.
// (Not Close: an engine closes a Sender that is an io.Closer when it
// stops, and its successor in the tunnel goes on with this one.)
func (c *IKEClient) Leave() {
	p := c.port
	p.mu.Lock()
	defer p.mu.Unlock()
	c.left = true
	if c.peer.IsValid() && (*p.byPeer.Load())[c.peer] == c {
		p.setPeer(c.peer, nil)
	}
	if c.anyID != "" {
		var next []*IKEClient
		for _, o := range p.anyClients() {
			if o != c {
				next = append(next, o)
			}
		}
		p.anyPeer.Store(&next)
	}
	spis := *p.bySPI.Load()
	next := make(map[uint64]*IKEClient, len(spis))
	for k, v := range spis {
		if v != c {
			next[k] = v
		}
	}
	p.bySPI.Store(&next)
}

// WriteToUDPAddrPort sends for the engine and learns its SPI from the
// header: the initiator SPI of a message from the original initiator (us),
// else the responder SPI.
func (c *IKEClient) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if spi := sentSPI(b); spi != 0 {
		c.learn(spi)
	}
	return c.out.WriteToUDPAddrPort(b, to)
}

// sentSPI is the SPI to learn from a message the engine sends: ourSPI,
// from an IKE_SA_INIT message or a protected one (SK, SKF) only. Those
// are on an IKE SA of ours, with our SPI where ourSPI looks. An
// unprotected message after IKE_SA_INIT is an INVALID_IKE_SPI hint
// (RFC 7296 §1.5), which echoes the SPIs of the request it answers,
// chosen by whoever sent it: learning from it would let any peer, or
// anyone spoofing one, take another tunnel's IKE SPI and with it that
// tunnel's IKE traffic.
func sentSPI(b []byte) uint64 {
	if !isIKEv2(b) {
		return 0
	}
	h := ike.Header(b)
	if h.Exchange() != ike.IKE_SA_INIT && h.NextPayload() != ike.PayloadSK && h.NextPayload() != ike.PayloadSKF {
		return 0
	}
	return ourSPI(b, true)
}

// ourSPI is the IKE SPI we chose, in the header of a message we send
// (sent) or receive: the initiator SPI when we are the SA's original
// initiator, else the responder SPI. 0: shorter than a header, or not
// chosen yet (the responder SPI of an IKE_SA_INIT request we receive),
// or not IKEv2 (isIKEv2: an IKEv1 message goes by its sender's address).
func ourSPI(b []byte, sent bool) uint64 {
	if !isIKEv2(b) {
		return 0
	}
	h := ike.Header(b)
	fromInitiator := h.Flags()&ike.FlagInitiator != 0
	// We are the original initiator of the SA when we send with the I
	// flag, or receive without it.
	if fromInitiator == sent {
		return h.SPIi()
	}
	return h.SPIr()
}

// SendIKE sends on 4500 for the engine (ike.NATSocket), learning its SPI
// as WriteToUDPAddrPort does.
func (c *IKEClient) SendIKE(msg []byte, to netip.AddrPort) error {
	if spi := sentSPI(msg); spi != 0 {
		c.learn(spi)
	}
	return c.nat.SendIKE(msg, to)
}

// SendKeepalive sends a NAT keepalive on 4500 (ike.NATSocket).
func (c *IKEClient) SendKeepalive(to netip.AddrPort) error { return c.nat.SendKeepalive(to) }

func (c *IKEClient) learn(spi uint64) {
	p := c.port
	if (*p.bySPI.Load())[spi] == c {
		return // the common case: no lock
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.bySPI.Load()
	if cur[spi] == c || c.left {
		return
	}
	next := make(map[uint64]*IKEClient, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	if old := c.spis[c.next]; old != 0 && next[old] == c {
		delete(next, old)
	}
	c.spis[c.next] = spi
	c.next = (c.next + 1) % spisPerClient
	next[spi] = c
	p.bySPI.Store(&next)
}

// Dispatch hands one datagram to the engine with our SPI in it, else to
// the engine for its sender's address.
func (p *IKEPort) Dispatch(b []byte, from netip.AddrPort) {
	if c := p.route(b, from); c != nil {
		c.offer(b, from)
	}
}

// DispatchNATT is Dispatch for an IKE message that came on UDP 4500, its
// non-ESP marker stripped (a udpencap.IKEHandler).
func (p *IKEPort) DispatchNATT(b []byte, from netip.AddrPort) {
	if c := p.route(b, from); c != nil {
		if c.offerNATT == nil {
			p.Unrouted.Add(1)
			return
		}
		c.offerNATT(b, from)
	}
}

// route finds the engine for a datagram, or counts it unrouted.
func (p *IKEPort) route(b []byte, from netip.AddrPort) *IKEClient {
	if spi := ourSPI(b, false); spi != 0 {
		if c := (*p.bySPI.Load())[spi]; c != nil {
			return c
		}
	}
	if c := (*p.byPeer.Load())[from.Addr().Unmap()]; c != nil {
		return c
	}
	// A new IKEv2 SA (no responder SPI yet) from an address no tunnel
	// has: a dynamic peer's, perhaps. (Anything else with an SPI we do
	// not know is no tunnel's.)
	if dyn := p.anyClients(); len(dyn) > 0 && isIKEv2(b) && ike.Header(b).SPIr() == 0 {
		return dyn[0]
	}
	p.Unrouted.Add(1)
	return nil
}

// Run reads until the socket is closed.
func (p *IKEPort) Run() {
	buf := make([]byte, 65535)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p.Dispatch(buf[:n], from)
	}
}

// Close closes the socket; Run returns.
func (p *IKEPort) Close() error { return p.conn.Close() }
