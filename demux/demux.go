// Package demux shares the daemon's sockets among its tunnels: one socket
// carrying ESP per local address (raw IP protocol 50, and ESP in UDP once
// NAT-T lands: any Conn fits), dispatching each inbound packet by its SPI
// in O(1) to the tunnel that owns the SA, and one UDP socket per local
// address and IKE port, dispatching each datagram to an IKE engine by our
// IKE SPI in it, or (a new IKE_SA_INIT) by the sender's address. SPIs are allocated here so that they are unique in
// the daemon, whatever tunnel asks.
//
// Nothing here knows a tunnel: the tunnel registers a Sink (its receive
// path) and an IKE Offer function, and the tables map keys to them.
package demux

import (
	"net/netip"

	"github.com/gresec/gresec/rawip"
)

// Conn is a socket that carries ESP for the daemon: *rawip.Conn (raw IP
// protocol 50) or *udpencap.Conn (ESP in UDP).
type Conn interface {
	ReadBatch([]rawip.Message) (int, error)
	WriteBatch([]rawip.Message) (int, error)
	Close() error
}

// Sink is one tunnel's receive path. Receive runs on the port's reading
// goroutine with a run of packets for this tunnel, read into msgs whose
// buffers start headroom bytes into bases; it must not keep them.
type Sink interface {
	Receive(msgs []rawip.Message, bases [][]byte)
}

// Offer hands one IKE datagram to an engine (ike.Engine.Offer): it copies
// b if it keeps it.
type Offer func(b []byte, from netip.AddrPort)
