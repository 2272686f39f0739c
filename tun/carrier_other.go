//go:build !linux

package tun

import (
	"errors"
	"fmt"
)

// SetCarrier is Linux's TUNSETCARRIER; the BSDs' and macOS's tun devices
// have no carrier of their own to switch.
func (d *Device) SetCarrier(bool) error {
	return fmt.Errorf("tun: %s: carrier: %w", d.name, errors.ErrUnsupported)
}

// Carrier reports true: the interface is never taken down here.
func (d *Device) Carrier() (bool, error) { return true, nil }
