package demux

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/gresec/gresec/rawip"
	"github.com/gresec/gresec/udpencap"
)

// protoESP is IP protocol 50.
const protoESP = 50

// Sockets are the daemon's shared sockets, opened on first use for each
// local address (and IKE port) and read until Close. Open every local
// address the configuration names before dropping privileges: opening
// needs CAP_NET_RAW and CAP_NET_BIND_SERVICE.
type Sockets struct {
	SPIs *SPITable

	mu     sync.Mutex
	esp    map[netip.Addr]*ESPPort
	ike    map[netip.AddrPort]*IKEPort
	natt   map[netip.Addr]*NATTPort
	wg     sync.WaitGroup
	closed bool

	batch, headroom, bufSize int
}

// NewSockets returns an empty set whose ESP ports read batch packets at
// a time into buffers of bufSize bytes behind headroom bytes (NewESPPort).
func NewSockets(batch, headroom, bufSize int) *Sockets {
	return &Sockets{SPIs: NewSPITable(), esp: map[netip.Addr]*ESPPort{}, ike: map[netip.AddrPort]*IKEPort{}, natt: map[netip.Addr]*NATTPort{},
		batch: batch, headroom: headroom, bufSize: bufSize}
}

// ESP returns the raw ESP port of local, opening it on first use.
func (s *Sockets) ESP(local netip.Addr) (*ESPPort, error) {
	local = local.Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("shared sockets closed")
	}
	if p := s.esp[local]; p != nil {
		return p, nil
	}
	conn, err := rawip.Listen(protoESP, local, s.batch)
	if err != nil {
		return nil, fmt.Errorf("raw IP socket (protocol %d) on %s: %w", protoESP, local, err)
	}
	p := NewESPPort(conn, s.SPIs, s.batch, s.headroom, s.bufSize)
	s.esp[local] = p
	s.wg.Add(1)
	go func() { defer s.wg.Done(); p.Run() }()
	return p, nil
}

// IKE returns the IKE port of local and port, opening it on first use.
func (s *Sockets) IKE(local netip.Addr, port uint16) (*IKEPort, error) {
	ap := netip.AddrPortFrom(local.Unmap(), port)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("shared sockets closed")
	}
	if p := s.ike[ap]; p != nil {
		return p, nil
	}
	p, err := ListenIKE(ap.Addr(), port)
	if err != nil {
		return nil, err
	}
	s.ike[ap] = p
	s.wg.Add(1)
	go func() { defer s.wg.Done(); p.Run() }()
	return p, nil
}

// NATTPort is the UDP 4500 socket of a local address (IKEv2 NAT
// traversal): its ESP in UDP dispatched by SPI as on the raw socket, its
// IKE messages by the address's IKE port (DispatchNATT).
type NATTPort struct {
	*ESPPort
	Conn *udpencap.Conn
}

// NATT returns the UDP 4500 port of local, opening it on first use. The
// IKE port of local and port 500 must be open: IKE on 4500 goes to it.
func (s *Sockets) NATT(local netip.Addr) (*NATTPort, error) {
	local = local.Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("shared sockets closed")
	}
	if p := s.natt[local]; p != nil {
		return p, nil
	}
	ikePort := s.ike[netip.AddrPortFrom(local, 500)]
	if ikePort == nil {
		return nil, fmt.Errorf("NAT traversal socket on %s: no IKE socket on port 500", local)
	}
	conn, err := udpencap.Listen(local, nattPort, nattPort, s.batch)
	if err != nil {
		return nil, fmt.Errorf("NAT traversal socket on %s: %w", netip.AddrPortFrom(local, nattPort), err)
	}
	conn.SetIKEHandler(ikePort.DispatchNATT)
	p := &NATTPort{ESPPort: NewESPPort(conn, s.SPIs, s.batch, s.headroom, s.bufSize), Conn: conn}
	s.natt[local] = p
	s.wg.Add(1)
	go func() { defer s.wg.Done(); p.Run() }()
	return p, nil
}

// nattPort is UDP 4500 (RFC 3948).
const nattPort = 4500

// Stats sums the ports' own drops, for status.
func (s *Sockets) Stats() (malformed, unknownSPI, unroutedIKE uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.esp {
		malformed += p.stats.Malformed.Load()
		unknownSPI += p.stats.UnknownSPI.Load()
	}
	for _, p := range s.natt {
		malformed += p.stats.Malformed.Load()
		unknownSPI += p.stats.UnknownSPI.Load()
	}
	for _, p := range s.ike {
		unroutedIKE += p.Unrouted.Load()
	}
	return
}

// IKESendFull is how many IKE datagrams the shared IKE ports dropped for
// a full send buffer (SendNow).
func (s *Sockets) IKESendFull() (n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.ike {
		if p.send != nil {
			n += p.send.Full.Load()
		}
	}
	return n
}

// Close closes every port and waits for the readers to return.
func (s *Sockets) Close() {
	s.mu.Lock()
	s.closed = true
	for _, p := range s.esp {
		p.Close()
	}
	for _, p := range s.ike {
		p.Close()
	}
	for _, p := range s.natt {
		p.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
