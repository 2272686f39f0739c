//go:build !linux

package udpencap

import (
	"errors"
	"net/netip"
	"time"

	"github.com/gresec/gresec/rawip"
)

// Conn is ESP in UDP; only Linux has it so far (recvmmsg, sendmmsg, UDP
// GSO and GRO).
type Conn struct{}

// Listen fails off Linux.
func Listen(local netip.Addr, port, peerPort uint16, batch int) (*Conn, error) {
	return nil, errors.New("udpencap: ESP in UDP is implemented on Linux only")
}

func (c *Conn) Close() error                                 { return nil }
func (c *Conn) SetReadDeadline(t time.Time) error            { return nil }
func (c *Conn) SetWriteDeadline(t time.Time) error           { return nil }
func (c *Conn) SetIKEHandler(h IKEHandler)                   {}
func (c *Conn) Dropped() uint64                              { return 0 }
func (c *Conn) Stats() Stats                                 { return Stats{} }
func (c *Conn) Offloads() (gso, gro bool)                    { return false, false }
func (c *Conn) ReadBatch(msgs []rawip.Message) (int, error)  { return 0, errors.ErrUnsupported }
func (c *Conn) SendIKE(msg []byte, to netip.AddrPort) error  { return errors.ErrUnsupported }
func (c *Conn) SendKeepalive(to netip.AddrPort) error        { return errors.ErrUnsupported }
func (c *Conn) WriteBatch(msgs []rawip.Message) (int, error) { return 0, errors.ErrUnsupported }
