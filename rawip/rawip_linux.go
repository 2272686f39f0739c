package rawip

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr; Go pads it to the kernel's layout.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

const sockBuf = 4 << 20

// Conn is a raw socket bound to a local address, receiving and sending
// one IP protocol. One goroutine may read while another writes; two
// readers or two writers must not run at once (they share the batch
// arguments).
type Conn struct {
	f    *os.File
	rc   syscall.RawConn
	ipv6 bool

	// recvmmsg/sendmmsg arguments, allocated once; the callbacks are
	// method values made once so a batch allocates nothing.
	rhdrs  []mmsghdr
	riov   []unix.Iovec
	rnames []unix.RawSockaddrInet6
	rn     int
	rgot   int
	rerr   error
	readFn func(uintptr) bool

	whdrs   []mmsghdr
	wiov    []unix.Iovec
	wnames  []unix.RawSockaddrInet6
	wn      int
	wgot    int
	werr    error
	writeFn func(uintptr) bool
}

// Listen opens a raw socket for IP protocol proto bound to local, moving
// up to batch packets per system call. It needs CAP_NET_RAW.
func Listen(proto int, local netip.Addr, batch int) (*Conn, error) {
	if batch < 1 {
		batch = 1
	}
	family := unix.AF_INET
	if local.Is6() && !local.Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	c := &Conn{ipv6: family == unix.AF_INET6}
	var sa unix.Sockaddr
	if c.ipv6 {
		sa = &unix.SockaddrInet6{Addr: local.As16()}
	} else {
		sa = &unix.SockaddrInet4{Addr: local.Unmap().As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binding raw socket to %s: %w", local, err)
	}
	// Bursts of a whole batch must not overflow the default buffers.
	for _, opt := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[0], sockBuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[1], sockBuf)
		}
	}
	c.f = os.NewFile(uintptr(fd), fmt.Sprintf("rawip:%d", proto))
	if c.rc, err = c.f.SyscallConn(); err != nil {
		c.f.Close()
		return nil, err
	}
	c.rhdrs, c.riov, c.rnames = make([]mmsghdr, batch), make([]unix.Iovec, batch), make([]unix.RawSockaddrInet6, batch)
	c.whdrs, c.wiov, c.wnames = make([]mmsghdr, batch), make([]unix.Iovec, batch), make([]unix.RawSockaddrInet6, batch)
	for i := range batch {
		c.rhdrs[i].hdr.Iov, c.rhdrs[i].hdr.Iovlen = &c.riov[i], 1
		c.rhdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&c.rnames[i]))
		c.whdrs[i].hdr.Iov, c.whdrs[i].hdr.Iovlen = &c.wiov[i], 1
		c.whdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&c.wnames[i]))
	}
	c.readFn, c.writeFn = c.recvmmsg, c.sendmmsg
	return c, nil
}

// Close closes the socket, unblocking ReadBatch and WriteBatch.
func (c *Conn) Close() error { return c.f.Close() }

// ReadBatch waits for packets and fills msgs from the front; it returns
// how many it filled. A packet larger than its buffer arrives with N = 0.
func (c *Conn) ReadBatch(msgs []Message) (int, error) {
	n := min(len(msgs), len(c.rhdrs))
	for i := range n {
		c.riov[i].Base = unsafe.SliceData(msgs[i].Buf)
		c.riov[i].SetLen(len(msgs[i].Buf))
		c.rhdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		c.rhdrs[i].hdr.Flags = 0
	}
	c.rn, c.rgot, c.rerr = n, 0, nil
	if err := c.rc.Read(c.readFn); err != nil {
		return 0, closedError(err)
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	for i := range c.rgot {
		c.fill(&msgs[i], i)
	}
	return c.rgot, nil
}

func (c *Conn) recvmmsg(fd uintptr) bool {
	r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.rhdrs[0])), uintptr(c.rn), 0, 0, 0)
	for e == unix.EINTR {
		r, _, e = unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.rhdrs[0])), uintptr(c.rn), 0, 0, 0)
	}
	if e == unix.EAGAIN {
		return false
	}
	if e != 0 {
		c.rerr = os.NewSyscallError("recvmmsg", e)
		return true
	}
	c.rgot = int(r)
	return true
}

// fill strips the IPv4 header (IPv6 raw sockets deliver none) and sets the
// source address.
func (c *Conn) fill(m *Message, i int) {
	h := &c.rhdrs[i]
	n := int(h.n)
	m.Off, m.N = 0, n
	if h.hdr.Flags&unix.MSG_TRUNC != 0 {
		m.N = 0
	}
	if c.ipv6 {
		sa := &c.rnames[i]
		m.Addr = netip.AddrFrom16(sa.Addr)
		return
	}
	b := m.Buf
	if n < 20 || b[0]>>4 != 4 {
		m.N = 0
		return
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || ihl > n || total > n || total < ihl {
		m.N = 0
		return
	}
	m.Addr = netip.AddrFrom4([4]byte(b[12:16]))
	m.Off, m.N = ihl, total-ihl
	if h.hdr.Flags&unix.MSG_TRUNC != 0 {
		m.N = 0
	}
}

// WriteBatch sends every message; it returns how many the kernel took and
// the last error. A message the kernel refuses (EMSGSIZE, unreachable) is
// skipped so that one bad packet does not stall the batch.
func (c *Conn) WriteBatch(msgs []Message) (int, error) {
	sent := 0
	var lastErr error
	for len(msgs) > 0 {
		n := min(len(msgs), len(c.whdrs))
		for i := range n {
			m := &msgs[i]
			c.wiov[i].Base = &m.Buf[m.Off]
			c.wiov[i].SetLen(m.N)
			c.whdrs[i].hdr.Namelen = c.putAddr(&c.wnames[i], m.Addr)
		}
		c.wn, c.wgot, c.werr = n, 0, nil
		if err := c.rc.Write(c.writeFn); err != nil {
			return sent, closedError(err)
		}
		sent += c.wgot
		if c.werr != nil {
			lastErr = c.werr
			// Skip the message that failed.
			msgs = msgs[c.wgot+1:]
			continue
		}
		msgs = msgs[c.wgot:]
	}
	return sent, lastErr
}

func (c *Conn) putAddr(sa *unix.RawSockaddrInet6, a netip.Addr) uint32 {
	if c.ipv6 {
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		return unix.SizeofSockaddrInet6
	}
	sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
	*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4()}
	return unix.SizeofSockaddrInet4
}

func (c *Conn) sendmmsg(fd uintptr) bool {
	r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.whdrs[0])), uintptr(c.wn), 0, 0, 0)
	for e == unix.EINTR {
		r, _, e = unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.whdrs[0])), uintptr(c.wn), 0, 0, 0)
	}
	if e == unix.EAGAIN {
		return false
	}
	if e != 0 {
		c.werr = os.NewSyscallError("sendmmsg", e)
		return true
	}
	c.wgot = int(r)
	return true
}

// closedError: RawConn fails only once the socket is closed (we set no
// deadlines), with an internal error value; say it the standard way.
func closedError(err error) error {
	return fmt.Errorf("rawip: %w (%v)", net.ErrClosed, err)
}
