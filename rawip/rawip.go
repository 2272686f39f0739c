// Package rawip is a raw IP socket for one protocol (ESP, GRE) that moves
// batches of packets per system call.
//
// Callers always see the protocol payload: the outer IP header is written
// by the kernel on send (no IP_HDRINCL) and stripped on receive (Linux
// raw IPv4 sockets deliver it, IPv6 ones do not).
//
// Path MTU: the socket keeps the kernel's default, IP_PMTUDISC_WANT (and
// IPV6_PMTUDISC_WANT). Over IPv4 a packet that fits the route's MTU goes
// out with DF set, so a smaller hop answers "fragmentation needed", which
// the kernel records for the route; a packet larger than the known path
// MTU is fragmented by the kernel rather than refused. IPv6 has no DF and
// no fragmenting routers: the kernel learns "packet too big" the same way
// and fragments at the source. Either way the tunnel keeps working across
// a path with a smaller MTU (the peer reassembles) instead of dropping,
// and the tunnel's own MTU and TCP MSS clamp keep that rare. Forcing DF
// (IP_PMTUDISC_DO) would turn such packets into EMSGSIZE errors with no
// ICMP to tell the inner sender; never setting it (IP_PMTUDISC_DONT) would
// hide path MTU changes from the kernel.
package rawip

import (
	"errors"
	"net/netip"
)

// Message is one packet. On receive, Buf is where it lands and the
// protocol payload (outer IP header stripped) is Buf[Off:Off+N], from
// Addr; N = 0 marks a packet that was dropped (larger than Buf, or a
// malformed IPv4 header), counted in Conn.Dropped. On send, Buf[Off:Off+N]
// goes to Addr; the kernel writes the outer IP header.
//
// Port is for UDP transports (package udpencap): the peer's port on
// receive, and on send the destination port, 0 meaning the transport's
// default. Raw IP sockets ignore it and leave it 0.
type Message struct {
	Buf  []byte
	Off  int
	N    int
	Addr netip.Addr
	Port uint16
}

// ErrMessage is reported by WriteBatch for a message it could not send as
// given: Off and N outside Buf, or Addr not of the socket's family.
var ErrMessage = errors.New("rawip: message with bad bounds or address family")
