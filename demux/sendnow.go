package demux

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// SendNow is a UDP socket's sending side that never waits: a datagram the
// socket buffer has no room for is dropped and counted (Full), not queued
// behind. IKE sends through it, from the socket's reader too (cookie
// demands, Offer): a responder that answers any address (remote = "any")
// can be made to answer forged on-link sources, whose replies sit in the
// kernel's queue for unresolved neighbours for seconds, holding the
// socket's send buffer; a blocking write there stalls the reader, and
// with it every tunnel's IKE on that port. IKE retransmits what is lost.
type SendNow struct {
	c  *net.UDPConn
	rc syscall.RawConn
	v6 bool
	// Full counts datagrams dropped for a full send buffer.
	Full atomic.Uint64
}

// sendBuffer is the send buffer IKE sockets ask for (best effort: the
// kernel caps it at net.core.wmem_max): room for the answers to a burst
// of peers while some wait on neighbour resolution.
const sendBuffer = 4 << 20

// NewSendNow wraps c, a UDP socket bound to an address of one family.
func NewSendNow(c *net.UDPConn) (*SendNow, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	_ = c.SetWriteBuffer(sendBuffer)
	la, _ := c.LocalAddr().(*net.UDPAddr)
	return &SendNow{c: c, rc: rc, v6: la != nil && la.IP.To4() == nil}, nil
}

// errFull is returned for a datagram dropped because the buffer is full.
var errFull = errors.New("UDP send buffer full: datagram dropped")

// WriteToUDPAddrPort sends b to `to` at once, or drops it (Sender).
func (s *SendNow) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	var sa unix.Sockaddr
	switch a := to.Addr(); {
	case s.v6: // an IPv4 destination as v4-mapped
		sa = &unix.SockaddrInet6{Addr: a.As16(), Port: int(to.Port())}
	default:
		if !a.Unmap().Is4() {
			return 0, &net.AddrError{Err: "IPv6 destination on an IPv4 socket", Addr: to.String()}
		}
		sa = &unix.SockaddrInet4{Addr: a.Unmap().As4(), Port: int(to.Port())}
	}
	var serr error
	if err := s.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, unix.MSG_DONTWAIT, sa)
		return true // never wait for room
	}); err != nil {
		return 0, err
	}
	if errors.Is(serr, unix.EAGAIN) || errors.Is(serr, unix.ENOBUFS) {
		s.Full.Add(1)
		return 0, errFull
	}
	if serr != nil {
		return 0, &net.OpError{Op: "sendto", Net: "udp", Addr: net.UDPAddrFromAddrPort(to), Err: serr}
	}
	return len(b), nil
}
