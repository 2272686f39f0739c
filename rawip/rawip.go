// Package rawip is a raw IP socket for one protocol (ESP, GRE) that moves
// batches of packets per system call.
package rawip

import "net/netip"

// Message is one packet. On receive, Buf is where it lands and the
// protocol payload (outer IP header stripped) is Buf[Off:Off+N], from
// Addr. On send, Buf[Off:Off+N] goes to Addr; the kernel writes the outer
// IP header.
type Message struct {
	Buf  []byte
	Off  int
	N    int
	Addr netip.Addr
}
