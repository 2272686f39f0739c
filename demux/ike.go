package demux

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// IKEPort is one UDP socket for IKE (port 500; 4500 with the non-ESP
// marker once NAT-T lands: Dispatch is then the udpencap IKE handler),
// shared by every tunnel on its local address. Each tunnel's engine is
// bound to one peer address, so the peer's address names the engine: a
// request with a responder SPI, a response, and a new IKE_SA_INIT alike.
// A tunnel of one local address per peer is what `gresec check` enforces.
type IKEPort struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	engines atomic.Pointer[map[netip.Addr]Offer]
	// Unrouted: datagrams from an address no tunnel has as its peer.
	Unrouted atomic.Uint64
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
	p := &IKEPort{conn: conn}
	p.engines.Store(&map[netip.Addr]Offer{})
	return p, nil
}

// Add routes datagrams from peer to offer. It reports false when another
// tunnel has this peer on this port.
func (p *IKEPort) Add(peer netip.Addr, offer Offer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.engines.Load()
	if _, ok := cur[peer.Unmap()]; ok {
		return false
	}
	next := make(map[netip.Addr]Offer, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[peer.Unmap()] = offer
	p.engines.Store(&next)
	return true
}

// Remove stops routing datagrams from peer.
func (p *IKEPort) Remove(peer netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.engines.Load()
	next := make(map[netip.Addr]Offer, len(cur))
	for k, v := range cur {
		if k != peer.Unmap() {
			next[k] = v
		}
	}
	p.engines.Store(&next)
}

// Dispatch hands one datagram to the engine for its sender.
func (p *IKEPort) Dispatch(b []byte, from netip.AddrPort) {
	if offer := (*p.engines.Load())[from.Addr().Unmap()]; offer != nil {
		offer(b, from)
		return
	}
	p.Unrouted.Add(1)
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

// WriteToUDPAddrPort sends for an engine (the ike.Sender of every tunnel
// on this port). *net.UDPConn allows concurrent writers.
func (p *IKEPort) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	return p.conn.WriteToUDPAddrPort(b, to)
}

// Close closes the socket; Run returns.
func (p *IKEPort) Close() error { return p.conn.Close() }
