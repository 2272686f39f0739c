//go:build !linux

package rawip

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// Conn is a raw socket bound to a local address, receiving and sending one
// IP protocol. Off Linux it moves one packet per system call through the
// net package, which strips the IPv4 header on receive the same way on
// every BSD; the batched, allocation-free path is Linux's recvmmsg and
// sendmmsg (rawip_linux.go).
type Conn struct {
	c       *net.IPConn
	ipv6    bool
	dropped atomic.Uint64
}

// Listen opens a raw socket for IP protocol proto (1-254) bound to local.
// batch is ignored here: every call moves one packet.
func Listen(proto int, local netip.Addr, batch int) (*Conn, error) {
	if proto < 1 || proto > 254 {
		return nil, fmt.Errorf("rawip: protocol %d outside 1..254", proto)
	}
	if !local.IsValid() || local.Zone() != "" {
		return nil, fmt.Errorf("rawip: bad local address %q", local)
	}
	network := fmt.Sprintf("ip4:%d", proto)
	ipv6 := local.Is6() && !local.Is4In6()
	if ipv6 {
		network = fmt.Sprintf("ip6:%d", proto)
	}
	c, err := net.ListenIP(network, &net.IPAddr{IP: local.Unmap().AsSlice()})
	if err != nil {
		return nil, fmt.Errorf("rawip: binding protocol %d to %s: %w", proto, local, err)
	}
	return &Conn{c: c, ipv6: ipv6}, nil
}

// Close closes the socket, unblocking ReadBatch and WriteBatch.
func (c *Conn) Close() error { return c.c.Close() }

// SetReadDeadline bounds ReadBatch.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// SetWriteDeadline bounds WriteBatch.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.c.SetWriteDeadline(t) }

// Dropped counts packets that could not be delivered whole.
func (c *Conn) Dropped() uint64 { return c.dropped.Load() }

// ReadBatch waits for one packet and fills msgs[0] with it.
func (c *Conn) ReadBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	m := &msgs[0]
	n, addr, err := c.c.ReadFromIP(m.Buf)
	if err != nil {
		return 0, err
	}
	m.Off, m.N = 0, n
	a, _ := netip.AddrFromSlice(addr.IP)
	m.Addr = a.Unmap()
	if n == len(m.Buf) { // possibly truncated: never deliver part of a packet
		m.N = 0
		c.dropped.Add(1)
	}
	return 1, nil
}

// WriteBatch sends msgs one by one, stopping at the first error.
func (c *Conn) WriteBatch(msgs []Message) (int, error) {
	for i := range msgs {
		m := &msgs[i]
		is6 := m.Addr.Is6() && !m.Addr.Is4In6()
		if m.Off < 0 || m.N < 0 || m.Off+m.N > len(m.Buf) || is6 != c.ipv6 {
			return i, ErrMessage
		}
		if _, err := c.c.WriteToIP(m.Buf[m.Off:m.Off+m.N], &net.IPAddr{IP: m.Addr.Unmap().AsSlice()}); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}
