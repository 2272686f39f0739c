package rawip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr; Go pads it to the kernel's layout (64 bytes
// on 64-bit systems, 32 on 32-bit ones).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// sockBuf is the socket buffer size asked for: a few batches of 128
// full-size packets, so a burst waits in the kernel instead of being
// dropped while the reader is busy.
const sockBuf = 4 << 20

// errClosed is what ReadBatch and WriteBatch return once the socket is
// closed: both net.ErrClosed and os.ErrClosed, whichever the caller checks.
var errClosed = fmt.Errorf("rawip: %w (%w)", net.ErrClosed, os.ErrClosed)

// Conn is a raw socket bound to a local address, receiving and sending
// one IP protocol. One goroutine may read while another writes; two
// readers or two writers must not run at once (they share the batch
// arguments).
type Conn struct {
	f     *os.File
	rc    syscall.RawConn
	ipv6  bool
	proto int

	dropped atomic.Uint64

	// recvmmsg/sendmmsg arguments, allocated once; the callbacks are
	// method values made once, so that a batch allocates nothing.
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

// Listen opens a raw socket for IP protocol proto (1-254) bound to local,
// moving up to batch packets per system call. An IPv4 (or IPv4-mapped)
// local address makes an IPv4 socket, an IPv6 one an IPv6 socket; an
// unspecified one receives the protocol on every local address. It needs
// CAP_NET_RAW; it creates the socket in the calling thread's network
// namespace, where it stays.
func Listen(proto int, local netip.Addr, batch int) (*Conn, error) {
	// 0 is no protocol, 255 (IPPROTO_RAW) implies IP_HDRINCL.
	if proto < 1 || proto > 254 {
		return nil, fmt.Errorf("rawip: protocol %d outside 1..254", proto)
	}
	if !local.IsValid() || local.Zone() != "" {
		return nil, fmt.Errorf("rawip: bad local address %q", local)
	}
	batch = max(batch, 1)
	family := unix.AF_INET
	if local.Is6() && !local.Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("rawip: socket for protocol %d: %w", proto, err)
	}
	c := &Conn{ipv6: family == unix.AF_INET6, proto: proto}
	var sa unix.Sockaddr
	if c.ipv6 {
		sa = &unix.SockaddrInet6{Addr: local.As16()}
	} else {
		sa = &unix.SockaddrInet4{Addr: local.Unmap().As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("rawip: binding protocol %d to %s: %w", proto, local, err)
	}
	// Bursts of a whole batch must not overflow the default buffers. The
	// FORCE variants pass net.core.[rw]mem_max (with CAP_NET_ADMIN);
	// without it the plain ones get what the limit allows.
	for _, opt := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[0], sockBuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[1], sockBuf)
		}
	}
	// A non-blocking descriptor: os.NewFile registers it with the runtime's
	// poller, so RawConn.Read/Write park the goroutine instead of a thread,
	// and Close wakes them.
	c.f = os.NewFile(uintptr(fd), fmt.Sprintf("rawip:%d:%s", proto, local))
	if c.rc, err = c.f.SyscallConn(); err != nil {
		c.f.Close()
		return nil, err
	}
	c.rhdrs, c.riov, c.rnames = make([]mmsghdr, batch), make([]unix.Iovec, batch), make([]unix.RawSockaddrInet6, batch)
	c.whdrs, c.wiov, c.wnames = make([]mmsghdr, batch), make([]unix.Iovec, batch), make([]unix.RawSockaddrInet6, batch)
	for i := range batch {
		c.rhdrs[i].hdr.Iov = &c.riov[i]
		c.rhdrs[i].hdr.SetIovlen(1)
		c.rhdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&c.rnames[i]))
		c.whdrs[i].hdr.Iov = &c.wiov[i]
		c.whdrs[i].hdr.SetIovlen(1)
		c.whdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&c.wnames[i]))
	}
	c.readFn, c.writeFn = c.recvmmsg, c.sendmmsg
	return c, nil
}

// Close closes the socket, unblocking ReadBatch and WriteBatch.
func (c *Conn) Close() error { return c.f.Close() }

// SetReadDeadline makes a waiting or later ReadBatch fail with
// os.ErrDeadlineExceeded once t passes; the zero time clears it.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

// SetWriteDeadline is SetReadDeadline for WriteBatch.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// Dropped counts received packets handed back with N = 0: larger than
// their buffer, or with a malformed IPv4 header.
func (c *Conn) Dropped() uint64 { return c.dropped.Load() }

// ReadBatch waits for at least one packet, then fills msgs from the front
// with what has arrived, up to len(msgs) or the batch size, and returns
// how many it filled. Each message receives into all of its Buf; Off, N
// and Addr are outputs.
func (c *Conn) ReadBatch(msgs []Message) (int, error) {
	n := min(len(msgs), len(c.rhdrs))
	if n == 0 {
		return 0, nil
	}
	for i := range n {
		c.riov[i].Base = unsafe.SliceData(msgs[i].Buf)
		c.riov[i].SetLen(len(msgs[i].Buf))
		c.rhdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		c.rhdrs[i].hdr.Flags = 0
		c.rhdrs[i].n = 0
	}
	c.rn, c.rgot, c.rerr = n, 0, nil
	if err := c.rc.Read(c.readFn); err != nil {
		return 0, rawConnError(err)
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	for i := range c.rgot {
		c.fill(&msgs[i], i)
	}
	return c.rgot, nil
}

// recvmmsg is the RawConn.Read callback: false asks the poller to wait.
func (c *Conn) recvmmsg(fd uintptr) bool {
	var r uintptr
	var e syscall.Errno
	for {
		// No MSG_WAITFORONE needed: on a non-blocking socket recvmmsg
		// returns what is queued, or EAGAIN when nothing is. As it never
		// waits, it is a raw system call: entersyscall/exitsyscall would
		// let sysmon hand this thread's P to another thread during a long
		// batch, a thread wake-up per batch for nothing (measured: fewer
		// context switches and less CPU per GB, docs/performance.md).
		// Waiting happens in the poller.
		r, _, e = unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&c.rhdrs[0])), uintptr(c.rn), 0, 0, 0)
		if e != unix.EINTR {
			break
		}
	}
	switch e {
	case 0:
		c.rgot = int(r)
	case unix.EAGAIN:
		return false
	default:
		c.rerr = os.NewSyscallError("recvmmsg", e)
	}
	return true
}

// fill turns received message i into m: it strips the IPv4 header (IPv6
// raw sockets deliver none) and sets the source address.
func (c *Conn) fill(m *Message, i int) {
	h := &c.rhdrs[i]
	n := int(h.n)
	m.Off, m.N, m.Addr = 0, 0, netip.Addr{}
	if h.hdr.Flags&unix.MSG_TRUNC != 0 || n > len(m.Buf) {
		c.dropped.Add(1)
		return
	}
	if c.ipv6 {
		m.N, m.Addr = n, netip.AddrFrom16(c.rnames[i].Addr)
		return
	}
	b := m.Buf[:n]
	if n < 20 || b[0]>>4 != 4 {
		c.dropped.Add(1)
		return
	}
	// Linux hands raw IPv4 sockets the header with tot_len in network
	// order (the BSDs differ: see x/net/ipv4/header.go).
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:]))
	if ihl < 20 || total < ihl || total > n {
		c.dropped.Add(1)
		return
	}
	m.Off, m.N, m.Addr = ihl, total-ihl, netip.AddrFrom4([4]byte(b[12:16]))
}

// WriteBatch sends every message and returns how many the kernel took. It
// loops over short sendmmsg results, and skips a message the kernel refuses
// (EMSGSIZE, no route, a firewall drop) or that is malformed (ErrMessage),
// so that one bad packet does not stall the rest; the error is then the
// last such failure. A closed socket or an expired write deadline ends it
// early.
func (c *Conn) WriteBatch(msgs []Message) (int, error) {
	sent := 0
	var lastErr error
	for len(msgs) > 0 {
		// Gather messages up to the first malformed one.
		n := 0
		for n < min(len(msgs), len(c.whdrs)) {
			m := &msgs[n]
			if m.Off < 0 || m.N < 0 || m.Off > len(m.Buf) || m.N > len(m.Buf)-m.Off || !c.putAddr(n, m.Addr) {
				break
			}
			c.wiov[n].Base = unsafe.SliceData(m.Buf[m.Off:])
			c.wiov[n].SetLen(m.N)
			n++
		}
		if n == 0 {
			lastErr = ErrMessage
			msgs = msgs[1:]
			continue
		}
		c.wn, c.wgot, c.werr = n, 0, nil
		if err := c.rc.Write(c.writeFn); err != nil {
			return sent, rawConnError(err)
		}
		sent += c.wgot
		msgs = msgs[c.wgot:]
		if c.werr != nil {
			// sendmmsg fails only when its first message does: skip it.
			lastErr = c.werr
			msgs = msgs[1:]
		}
	}
	return sent, lastErr
}

// putAddr writes a as the destination of send slot i and reports whether
// it suits the socket's family.
func (c *Conn) putAddr(i int, a netip.Addr) bool {
	h := &c.whdrs[i].hdr
	sa := &c.wnames[i]
	switch {
	case c.ipv6 && a.Is6() && a.Zone() == "":
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		h.Namelen = unix.SizeofSockaddrInet6
	case !c.ipv6 && a.Unmap().Is4():
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4()}
		h.Namelen = unix.SizeofSockaddrInet4
	default:
		return false
	}
	return true
}

// sendmmsg is the RawConn.Write callback: false asks the poller to wait
// for room in the send buffer.
func (c *Conn) sendmmsg(fd uintptr) bool {
	var r uintptr
	var e syscall.Errno
	for {
		// Raw for the reason given in recvmmsg: on a non-blocking socket
		// sendmmsg never waits for room (a full buffer is EAGAIN).
		r, _, e = unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.whdrs[0])), uintptr(c.wn), 0, 0, 0)
		if e != unix.EINTR {
			break
		}
	}
	switch e {
	case 0:
		c.wgot = int(r)
		if c.wgot == 0 {
			// Not seen from Linux, but it would loop WriteBatch forever.
			c.werr = os.NewSyscallError("sendmmsg", unix.EIO)
		}
	case unix.EAGAIN:
		return false
	default:
		c.werr = os.NewSyscallError("sendmmsg", e)
	}
	return true
}

// rawConnError: RawConn fails only when the socket is closed or a deadline
// passed, with internal error values; say it the standard way.
func rawConnError(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return errClosed
}
