//go:build !linux

package tun

import (
	"errors"
	"net/netip"
)

// link is the Linux configuration handle; other systems get theirs later
// (ifconfig-style ioctls on the BSDs).
type link struct{}

func openLink(string) (link, error) { return link{}, nil }
func (link) mtu() (int, error)      { return 0, errors.ErrUnsupported }
func (link) close()                 {}

// SetAddresses is not implemented here yet.
func (d *Device) SetAddresses([]netip.Prefix) error { return errors.ErrUnsupported }

// Up is not implemented here yet.
func (d *Device) Up() error { return errors.ErrUnsupported }
