package ikeattack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// MarkTTL is the IPv4 TTL of forged datagrams unless NewInjector is told
// otherwise. Linux sends with 64; a filter matching 77 counts the attack.
const MarkTTL = 77

// maxDatagram is the largest IKE payload sent in one unfragmented IPv4
// datagram over a 1500-byte link (IP_HDRINCL does not fragment).
const maxDatagram = 1500 - 20 - 8

// Injector sends UDP datagrams with any IPv4 source through a raw socket
// that writes its own IP header (IPPROTO_RAW implies IP_HDRINCL). Create
// it inside the namespace it should send from (netns.NS.Do). Safe for
// concurrent use.
type Injector struct {
	fd  int
	ttl uint8

	mu  sync.Mutex
	buf []byte

	sent, bytes, errs atomic.Uint64
}

// NewInjector opens the raw socket; ttl 0 means MarkTTL.
func NewInjector(ttl uint8) (*Injector, error) {
	if ttl == 0 {
		ttl = MarkTTL
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("ikeattack: raw socket: %w", err)
	}
	return &Injector{fd: fd, ttl: ttl, buf: make([]byte, 0, 20+8+maxDatagram)}, nil
}

// Send sends payload from src to dst as one UDP datagram. It fails for
// payloads that would need fragmenting.
func (in *Injector) Send(src, dst netip.AddrPort, payload []byte) error {
	if !src.Addr().Is4() || !dst.Addr().Is4() {
		return errors.New("ikeattack: IPv4 addresses only")
	}
	if len(payload) > maxDatagram {
		return fmt.Errorf("ikeattack: %d-byte payload does not fit one datagram", len(payload))
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	pkt := appendIPv4UDP(in.buf[:0], src, dst, in.ttl, payload)
	err := unix.Sendto(in.fd, pkt, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()})
	if err != nil {
		in.errs.Add(1)
		return fmt.Errorf("ikeattack: send to %v: %w", dst, err)
	}
	in.sent.Add(1)
	in.bytes.Add(uint64(len(payload)))
	return nil
}

// Sent is how many datagrams the kernel took; Errors how many it refused.
func (in *Injector) Sent() uint64   { return in.sent.Load() }
func (in *Injector) Errors() uint64 { return in.errs.Load() }

// Bytes is the UDP payload bytes sent.
func (in *Injector) Bytes() uint64 { return in.bytes.Load() }

// Close closes the socket.
func (in *Injector) Close() error { return unix.Close(in.fd) }

// appendIPv4UDP appends an IPv4 header (the kernel fills in the ID, total
// length and header checksum for IP_HDRINCL sockets; we fill them anyway),
// a UDP header with its checksum, and payload.
func appendIPv4UDP(b []byte, src, dst netip.AddrPort, ttl uint8, payload []byte) []byte {
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	total := 20 + 8 + len(payload)
	start := len(b)
	b = append(b, 0x45, 0, byte(total>>8), byte(total), 0, 0, 0, 0, ttl, unix.IPPROTO_UDP, 0, 0)
	b = append(b, s4[:]...)
	b = append(b, d4[:]...)
	binary.BigEndian.PutUint16(b[start+10:], checksum(b[start:start+20]))
	u := len(b)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(payload)))
	b = append(b, 0, 0)
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[u+6:], udpChecksum(s4, d4, b[u:]))
	return b
}

// udpChecksum is the UDP checksum over the IPv4 pseudo-header and seg
// (RFC 768); 0 is sent as 0xffff.
func udpChecksum(src, dst [4]byte, seg []byte) uint16 {
	var pseudo [12]byte
	copy(pseudo[0:], src[:])
	copy(pseudo[4:], dst[:])
	pseudo[9] = unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
	c := fold(sum16(sum16(0, pseudo[:]), seg))
	if c == 0 {
		return 0xffff
	}
	return c
}

// checksum is the Internet checksum of b (RFC 1071).
func checksum(b []byte) uint16 { return fold(sum16(0, b)) }

func sum16(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Datagram is one UDP datagram seen by a Sniffer.
type Datagram struct {
	Src, Dst netip.AddrPort
	TTL      uint8
	Payload  []byte
}

// Sniffer reads every UDP datagram that arrives in its network namespace
// (a raw IPPROTO_UDP socket gets a copy of each, IP header included),
// whoever it is for. Create it inside that namespace (netns.NS.Do). One
// goroutine reads.
type Sniffer struct {
	fd  int
	buf []byte
}

// NewSniffer opens the raw socket with a large receive buffer, so that a
// flood's replies are not lost before they are read.
func NewSniffer() (*Sniffer, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("ikeattack: raw UDP socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Sniffer{fd: fd, buf: make([]byte, 65536)}, nil
}

// errTimeout is Read's "nothing within 100 ms".
var errTimeout = errors.New("ikeattack: no datagram")

// Read returns the next datagram, or errTimeout after 100 ms without one
// (so a reader loop can check for its end). The payload is the caller's.
func (s *Sniffer) Read() (Datagram, error) {
	for {
		n, _, err := unix.Recvfrom(s.fd, s.buf, 0)
		if err == unix.EAGAIN || err == unix.EINTR {
			return Datagram{}, errTimeout
		}
		if err != nil {
			return Datagram{}, err
		}
		if d, ok := parseIPv4UDP(s.buf[:n]); ok {
			return d, nil
		}
	}
}

// Close closes the socket.
func (s *Sniffer) Close() error { return unix.Close(s.fd) }

func parseIPv4UDP(b []byte) (Datagram, bool) {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != unix.IPPROTO_UDP {
		return Datagram{}, false
	}
	ihl := int(b[0]&15) * 4
	if ihl < 20 || len(b) < ihl+8 {
		return Datagram{}, false
	}
	u := b[ihl:]
	ulen := int(binary.BigEndian.Uint16(u[4:]))
	if ulen < 8 || ulen > len(u) {
		return Datagram{}, false
	}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	return Datagram{
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(u[0:])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(u[2:])),
		TTL:     b[8],
		Payload: append([]byte(nil), u[8:ulen]...),
	}, true
}
