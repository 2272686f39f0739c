// Package udpencap is the ESP-in-UDP transport of RFC 3948: one UDP socket
// (port 4500 by default) that carries ESP packets, whose first four bytes
// are a non-zero SPI, and IKE messages behind a four-byte zero non-ESP
// marker, and that receives NAT keepalives (one 0xFF byte).
//
// It moves batches of packets per system call like package rawip, and
// shares its Message type, so the tunnel's pumps drive either. On Linux it
// sends with UDP generic segmentation offload (UDP_SEGMENT: consecutive
// packets of one size to one peer go out in one sendmsg, the kernel cuts
// them) and receives with UDP GRO (the kernel hands over a run of
// same-size datagrams of one flow as one buffer, with the segment size in
// a control message; Conn splits it). Either falls back to one datagram
// per message where the kernel or the device does not support it.
//
// Callers see the ESP packet (SPI first): the UDP header, the non-ESP
// marker and keepalives never reach them.
package udpencap

import (
	"errors"
	"net/netip"
)

// IKEHandler receives an IKE message that came behind the non-ESP marker
// (the marker stripped) from the given peer. It runs on the reading
// goroutine and must not keep msg: the buffer is reused.
type IKEHandler func(msg []byte, from netip.AddrPort)

// Stats counts what the socket consumed or refused instead of handing it
// to the caller.
type Stats struct {
	// Dropped: datagrams too short for ESP (under 8 bytes, SPI and
	// sequence number) that are not keepalives, or truncated ones.
	Dropped uint64
	// Keepalives: NAT keepalives received (RFC 3948 §2.3).
	Keepalives uint64
	// IKE: IKE messages handed to the IKEHandler; IKEDropped: those that
	// came while no handler was set.
	IKE, IKEDropped uint64
	// GSOBatches and GROBatches count sendmsg calls that carried several
	// segments and received buffers that held several datagrams.
	GSOBatches, GROBatches uint64
}

// ErrMessage is reported by WriteBatch for a message it could not send as
// given: Off and N outside Buf, or Addr not of the socket's family.
var ErrMessage = errors.New("udpencap: message with bad bounds or address family")

// minESP is the shortest datagram that can be ESP: SPI and sequence number.
const minESP = 8
