package udpencap

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

	"github.com/gresec/gresec/rawip"
)

// mmsghdr is struct mmsghdr; Go pads it to the kernel's layout.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

const (
	// sockBuf is the socket buffer size asked for, as in package rawip.
	sockBuf = 4 << 20
	// maxSegments is how many datagrams one GSO send may carry: the
	// kernel's UDP_MAX_SEGMENTS was 64 before Linux 6.9 (128 since).
	maxSegments = 64
	// groBufSize holds the largest coalesced receive (64 KiB of payload).
	groBufSize = 65536
	// groBufs is how many coalesced buffers one recvmmsg fills; each can
	// hold tens of datagrams, more than a batch of them together.
	groBufs = 8
)

var (
	segSpace = unix.CmsgSpace(2) // UDP_SEGMENT: a u16
	groSpace = unix.CmsgSpace(4) // UDP_GRO: an int
)

// errNoProgress: sendmmsg returned 0 messages sent and no error.
var errNoProgress = errors.New("udpencap: sendmmsg sent nothing")

// errClosed: both net.ErrClosed and os.ErrClosed, as package rawip.
var errClosed = fmt.Errorf("udpencap: %w (%w)", net.ErrClosed, os.ErrClosed)

// Conn is a UDP socket carrying ESP (and IKE behind the non-ESP marker).
// One goroutine may read while another writes; two readers or two writers
// must not run at once.
type Conn struct {
	f    *os.File
	rc   syscall.RawConn
	ipv6 bool
	port uint16 // the peer's port when a Message says 0

	ike atomic.Pointer[IKEHandler]

	dropped, keepalives, ikeIn, ikeDropped, gsoBatches, groBatches atomic.Uint64

	// Receive side. With GRO the kernel fills the conn's own buffers and
	// ReadBatch copies each datagram into a caller's message; a buffer not
	// yet split when the caller's batch is full waits for the next call.
	gro     bool
	rhdrs   []mmsghdr
	riov    []unix.Iovec
	rnames  []unix.RawSockaddrInet6
	rctl    []byte
	grobuf  [][]byte
	pend    int // first received GRO buffer not yet split
	pendOff int // how far into it
	pendN   int // how many were received
	rn      int
	rgot    int
	rerr    error
	readFn  func(uintptr) bool

	// Send side: one mmsghdr per group of segments, the group's packets
	// as consecutive iovecs.
	gso     bool        // owned by the writer
	gsoOn   atomic.Bool // gso as Offloads reports it to other goroutines
	whdrs   []mmsghdr
	wiov    []unix.Iovec
	wnames  []unix.RawSockaddrInet6
	wctl    []byte
	wgroup  []int // messages in each group
	wn      int
	wgot    int
	werr    error
	writeFn func(uintptr) bool
}

// Listen opens a UDP socket on local:port for ESP in UDP, sending to peers
// on peerPort unless a Message names a port, moving up to batch packets
// per system call. It turns on UDP GRO and uses UDP GSO where the kernel
// has them.
func Listen(local netip.Addr, port, peerPort uint16, batch int) (*Conn, error) {
	return listen(local, port, peerPort, batch, true)
}

// listen is Listen; tryGRO = false receives one datagram per message, as
// on a kernel without UDP GRO (for tests of that path).
func listen(local netip.Addr, port, peerPort uint16, batch int, tryGRO bool) (*Conn, error) {
	if !local.IsValid() || local.Zone() != "" {
		return nil, fmt.Errorf("udpencap: bad local address %q", local)
	}
	if peerPort == 0 {
		return nil, errors.New("udpencap: peer port 0")
	}
	batch = max(batch, 1)
	family := unix.AF_INET
	if local.Is6() && !local.Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("udpencap: socket: %w", err)
	}
	c := &Conn{ipv6: family == unix.AF_INET6, port: peerPort}
	var sa unix.Sockaddr
	if c.ipv6 {
		sa = &unix.SockaddrInet6{Addr: local.As16(), Port: int(port)}
	} else {
		sa = &unix.SockaddrInet4{Addr: local.Unmap().As4(), Port: int(port)}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("udpencap: binding %s: %w", netip.AddrPortFrom(local, port), err)
	}
	for _, opt := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[0], sockBuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt[1], sockBuf)
		}
	}
	// GSO: the option is read back where the kernel knows it (4.18+);
	// whether the device path takes it shows on the first send.
	_, err = unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	c.gso = err == nil
	c.gsoOn.Store(c.gso)
	c.gro = tryGRO && unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil

	c.f = os.NewFile(uintptr(fd), fmt.Sprintf("udpencap:%s", netip.AddrPortFrom(local, port)))
	if c.rc, err = c.f.SyscallConn(); err != nil {
		c.f.Close()
		return nil, err
	}
	nr := batch
	if c.gro {
		nr = groBufs
		c.grobuf = make([][]byte, groBufs)
		for i := range c.grobuf {
			c.grobuf[i] = make([]byte, groBufSize)
		}
	}
	c.rhdrs, c.riov, c.rnames = make([]mmsghdr, nr), make([]unix.Iovec, nr), make([]unix.RawSockaddrInet6, nr)
	c.rctl = make([]byte, nr*groSpace)
	for i := range nr {
		c.rhdrs[i].hdr.Iov = &c.riov[i]
		c.rhdrs[i].hdr.SetIovlen(1)
		c.rhdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&c.rnames[i]))
		if c.gro {
			c.riov[i].Base = &c.grobuf[i][0]
			c.riov[i].SetLen(groBufSize)
		}
	}
	c.whdrs, c.wiov, c.wnames = make([]mmsghdr, batch), make([]unix.Iovec, batch), make([]unix.RawSockaddrInet6, batch)
	c.wctl, c.wgroup = make([]byte, batch*segSpace), make([]int, batch)
	for i := range batch {
		c.whdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&c.wnames[i]))
		// The UDP_SEGMENT header of each group, filled once; only the
		// segment size changes.
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c.wctl[i*segSpace]))
		h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
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

// SetIKEHandler sets (nil: removes) where IKE messages on this socket go;
// without one they are dropped and counted.
func (c *Conn) SetIKEHandler(h IKEHandler) {
	if h == nil {
		c.ike.Store(nil)
		return
	}
	c.ike.Store(&h)
}

// Dropped counts datagrams dropped as not ESP (Stats.Dropped and
// Stats.IKEDropped), for the tunnel's socket drop counter.
func (c *Conn) Dropped() uint64 { return c.dropped.Load() + c.ikeDropped.Load() }

// Stats returns the socket's counters.
func (c *Conn) Stats() Stats {
	return Stats{Dropped: c.dropped.Load(), Keepalives: c.keepalives.Load(), IKE: c.ikeIn.Load(),
		IKEDropped: c.ikeDropped.Load(), GSOBatches: c.gsoBatches.Load(), GROBatches: c.groBatches.Load()}
}

// Offloads reports whether UDP GSO (send) and GRO (receive) are in use;
// GSO turns off for good if the first segmented send fails with EIO (no
// checksum offload on the way out).
func (c *Conn) Offloads() (gso, gro bool) { return c.gsoOn.Load(), c.gro }

// ReadBatch waits for at least one ESP packet, then fills msgs from the
// front with ESP packets (SPI first) and returns how many. Each message
// receives into its Buf, with Off = 0; Off, N, Addr and Port are outputs.
// Datagrams that are not ESP (keepalives, IKE, runts) are never handed
// out: they are counted or given to the IKE handler.
func (c *Conn) ReadBatch(msgs []rawip.Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	if c.gro {
		return c.readGRO(msgs)
	}
	n := min(len(msgs), len(c.rhdrs))
	for {
		for i := range n {
			c.riov[i].Base = unsafe.SliceData(msgs[i].Buf)
			c.riov[i].SetLen(len(msgs[i].Buf))
		}
		if err := c.receive(n); err != nil {
			return 0, err
		}
		// What is not ESP is taken out; the ESP packets after it move
		// up (a copy, only in a batch that held a keepalive or IKE).
		out := 0
		for i := range c.rgot {
			h := &c.rhdrs[i]
			if h.hdr.Flags&unix.MSG_TRUNC != 0 {
				c.dropped.Add(1)
				continue
			}
			addr, port := c.source(i)
			d := msgs[i].Buf[:h.n]
			if !c.classify(d, addr, port) {
				continue
			}
			m := &msgs[out]
			if out != i {
				if len(d) > len(m.Buf) { // buffers of mixed sizes
					c.dropped.Add(1)
					continue
				}
				copy(m.Buf, d)
			}
			m.Off, m.N, m.Addr, m.Port = 0, len(d), addr, port
			out++
		}
		if out > 0 {
			return out, nil
		}
	}
}

// readGRO fills msgs from the conn's coalesced buffers, receiving more
// only when every received buffer has been split.
func (c *Conn) readGRO(msgs []rawip.Message) (int, error) {
	out := 0
	for out == 0 {
		if c.pend >= c.pendN {
			if err := c.receive(len(c.rhdrs)); err != nil {
				return 0, err
			}
			c.pend, c.pendOff, c.pendN = 0, 0, c.rgot
		}
		for out < len(msgs) && c.pend < c.pendN {
			out = c.split(msgs, out)
		}
	}
	return out, nil
}

// split copies datagrams of received buffer c.pend, from c.pendOff, into
// msgs[out:] and returns the new out; it moves on to the next buffer once
// this one is done.
func (c *Conn) split(msgs []rawip.Message, out int) int {
	i := c.pend
	h := &c.rhdrs[i]
	n := int(h.n)
	if h.hdr.Flags&unix.MSG_TRUNC != 0 {
		c.dropped.Add(1)
		c.pend, c.pendOff = i+1, 0
		return out
	}
	seg := n
	if h.hdr.Controllen > 0 {
		if s := groSize(c.rctl[i*groSpace : i*groSpace+int(h.hdr.Controllen)]); s > 0 {
			seg = s
		}
	}
	if c.pendOff == 0 && seg < n {
		c.groBatches.Add(1)
	}
	addr, port := c.source(i)
	buf := c.grobuf[i][:n]
	for c.pendOff < n && out < len(msgs) {
		d := buf[c.pendOff:min(c.pendOff+seg, n)]
		c.pendOff += len(d)
		if !c.classify(d, addr, port) {
			continue
		}
		m := &msgs[out]
		if len(d) > len(m.Buf) {
			c.dropped.Add(1)
			continue
		}
		m.Off, m.N, m.Addr, m.Port = 0, copy(m.Buf, d), addr, port
		out++
	}
	if c.pendOff >= n {
		c.pend, c.pendOff = i+1, 0
	}
	return out
}

// groSize reads the segment size from a UDP_GRO control message, or 0.
func groSize(ctl []byte) int {
	for len(ctl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(ctl) {
			return 0
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && l >= unix.CmsgLen(4) {
			return int(*(*int32)(unsafe.Pointer(&ctl[unix.CmsgLen(0)])))
		}
		ctl = ctl[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(ctl)):]
	}
	return 0
}

// classify reports whether datagram d is ESP for the caller; otherwise it
// consumes it (a keepalive, IKE for the handler) or counts it dropped.
func (c *Conn) classify(d []byte, addr netip.Addr, port uint16) bool {
	switch {
	case len(d) == 1 && d[0] == 0xff:
		c.keepalives.Add(1)
		return false
	case len(d) >= 4 && d[0]|d[1]|d[2]|d[3] == 0:
		if h := c.ike.Load(); h != nil {
			c.ikeIn.Add(1)
			(*h)(d[4:], netip.AddrPortFrom(addr, port))
		} else {
			c.ikeDropped.Add(1)
		}
		return false
	case len(d) < minESP:
		c.dropped.Add(1)
		return false
	}
	return true
}

// source is the peer address of received message i.
func (c *Conn) source(i int) (netip.Addr, uint16) {
	sa := &c.rnames[i]
	if c.ipv6 {
		return netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port)
	}
	sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
	return netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port)
}

// ntohs reads a port the kernel stored in network byte order.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return binary.BigEndian.Uint16(b[:])
}

// receive runs recvmmsg over the first n receive slots.
func (c *Conn) receive(n int) error {
	for i := range n {
		h := &c.rhdrs[i]
		h.hdr.Namelen = unix.SizeofSockaddrInet6
		h.hdr.Flags = 0
		h.n = 0
		if c.gro {
			h.hdr.Control = &c.rctl[i*groSpace]
			h.hdr.SetControllen(groSpace)
		}
	}
	c.rn, c.rgot, c.rerr = n, 0, nil
	if err := c.rc.Read(c.readFn); err != nil {
		return rawConnError(err)
	}
	return c.rerr
}

// recvmmsg is the RawConn.Read callback: false asks the poller to wait.
// A raw system call, as in package rawip: on a non-blocking socket it
// never waits.
func (c *Conn) recvmmsg(fd uintptr) bool {
	var r uintptr
	var e syscall.Errno
	for {
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

// maxPayload is the most UDP payload one (GSO) datagram can carry.
func (c *Conn) maxPayload() int {
	if c.ipv6 {
		return 65535 - 8
	}
	return 65535 - 20 - 8
}

// WriteBatch sends every message and returns how many the kernel took.
// With GSO, consecutive messages to one peer with one length (the last
// may be shorter) go out in one sendmsg. A message the kernel refuses or
// that is malformed (ErrMessage) is skipped, so one bad packet does not
// stall the rest; the error is then the last such failure. A closed
// socket or an expired write deadline ends it early.
func (c *Conn) WriteBatch(msgs []rawip.Message) (int, error) {
	sent := 0
	var lastErr error
	for len(msgs) > 0 {
		groups := c.gather(msgs)
		if groups == 0 {
			lastErr = ErrMessage
			msgs = msgs[1:]
			continue
		}
		c.wn, c.wgot, c.werr = groups, 0, nil
		if err := c.rc.Write(c.writeFn); err != nil {
			return sent, rawConnError(err)
		}
		for g := range c.wgot {
			sent += c.wgroup[g]
			msgs = msgs[c.wgroup[g]:]
			if c.wgroup[g] > 1 {
				c.gsoBatches.Add(1)
			}
		}
		if c.werr == nil {
			continue
		}
		// sendmmsg fails only when its first message does: that group.
		g := c.wgot
		if c.wgroup[g] == 1 {
			lastErr = c.werr
			msgs = msgs[1:]
			continue
		}
		// A segmented send refused: EIO says the way out cannot segment
		// (no checksum offload), so GSO goes off for good; anything else
		// (a segment over the path MTU: EINVAL) is tried one datagram at
		// a time by turning GSO off for this group only.
		if errors.Is(c.werr, unix.EIO) {
			c.gso = false
			c.gsoOn.Store(false)
			continue
		}
		// (The nested call reuses the send slots: keep the group's size.)
		n := c.wgroup[g]
		gso := c.gso
		c.gso = false
		k, err := c.WriteBatch(msgs[:n])
		c.gso = gso
		sent += k
		if err != nil {
			lastErr = err
			if isClosedOrDeadline(err) {
				return sent, err
			}
		}
		msgs = msgs[n:]
	}
	return sent, lastErr
}

// gather groups msgs, from the front, into send slots up to the first
// malformed message or the end of the slots, and returns the number of
// groups; c.wgroup holds how many messages each took.
func (c *Conn) gather(msgs []rawip.Message) (groups int) {
	used := 0
	limit := c.maxPayload()
	for used < len(msgs) && groups < len(c.whdrs) && used < len(c.wiov) {
		m := &msgs[used]
		if !c.valid(m) || !c.putAddr(groups, m.Addr, m.Port) {
			break
		}
		first := used
		seg := m.N
		total := 0
		for used < len(msgs) && used < len(c.wiov) {
			m := &msgs[used]
			if used > first {
				if !c.gso || m.N > seg || used-first >= maxSegments || total+m.N > limit ||
					m.Addr != msgs[first].Addr || m.Port != msgs[first].Port || !c.valid(m) || msgs[used-1].N < seg {
					break
				}
			}
			c.wiov[used].Base = unsafe.SliceData(m.Buf[m.Off:])
			c.wiov[used].SetLen(m.N)
			total += m.N
			used++
		}
		h := &c.whdrs[groups].hdr
		h.Iov = &c.wiov[first]
		h.SetIovlen(used - first)
		if used-first > 1 {
			ctl := c.wctl[groups*segSpace : (groups+1)*segSpace]
			binary.NativeEndian.PutUint16(ctl[unix.CmsgLen(0):], uint16(seg))
			h.Control = &ctl[0]
			h.SetControllen(segSpace)
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		c.wgroup[groups] = used - first
		groups++
	}
	return groups
}

// valid: the message's bounds lie in its buffer and it is not empty.
func (c *Conn) valid(m *rawip.Message) bool {
	return m.Off >= 0 && m.N > 0 && m.Off <= len(m.Buf) && m.N <= len(m.Buf)-m.Off
}

// putAddr writes the destination of send slot i and reports whether it
// suits the socket's family.
func (c *Conn) putAddr(i int, a netip.Addr, port uint16) bool {
	if port == 0 {
		port = c.port
	}
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], port)
	h := &c.whdrs[i].hdr
	sa := &c.wnames[i]
	switch {
	case c.ipv6 && a.Is6() && a.Zone() == "":
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16(), Port: *(*uint16)(unsafe.Pointer(&p))}
		h.Namelen = unix.SizeofSockaddrInet6
	case !c.ipv6 && a.Unmap().Is4():
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4(), Port: *(*uint16)(unsafe.Pointer(&p))}
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
			c.werr = errNoProgress
		}
	case unix.EAGAIN:
		return false
	default:
		c.werr = os.NewSyscallError("sendmmsg", e)
	}
	return true
}

// SendIKE sends an IKE message to a peer behind the four-byte zero
// non-ESP marker (RFC 3948 §2.2), and SendKeepalive a NAT keepalive (one
// 0xFF byte, §2.3). Both are safe to call while another goroutine runs
// WriteBatch or ReadBatch: each is one sendto of its own.
func (c *Conn) SendIKE(msg []byte, to netip.AddrPort) error {
	b := make([]byte, 4+len(msg))
	copy(b[4:], msg)
	return c.sendto(b, to)
}

// SendKeepalive: see SendIKE.
func (c *Conn) SendKeepalive(to netip.AddrPort) error { return c.sendto([]byte{0xff}, to) }

func (c *Conn) sendto(b []byte, to netip.AddrPort) error {
	var sa unix.Sockaddr
	switch a := to.Addr(); {
	case c.ipv6 && a.Is6() && a.Zone() == "":
		sa = &unix.SockaddrInet6{Addr: a.As16(), Port: int(to.Port())}
	case !c.ipv6 && a.Unmap().Is4():
		sa = &unix.SockaddrInet4{Addr: a.Unmap().As4(), Port: int(to.Port())}
	default:
		return ErrMessage
	}
	// Never wait for room: IKE goes out from the socket's reader too, and
	// a buffer held by answers to forged on-link sources (sitting in the
	// kernel's unresolved-neighbour queue) must not stall it; IKE
	// retransmits what is dropped here (see demux.SendNow).
	var serr error
	err := c.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, unix.MSG_DONTWAIT, sa)
		return true
	})
	if err != nil {
		return rawConnError(err)
	}
	if serr != nil {
		return os.NewSyscallError("sendto", serr)
	}
	return nil
}

func isClosedOrDeadline(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded)
}

// rawConnError: RawConn fails only when the socket is closed or a deadline
// passed; say it the standard way.
func rawConnError(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return errClosed
}
