package tun

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// SetAddresses puts prefixes on the interface. IPv6 addresses skip
// duplicate address detection: on a point-to-point tunnel there is nobody
// to collide with, and DAD would hold the address back for a second.
func (d *Device) SetAddresses(prefixes []netip.Prefix) error {
	link, err := netlink.LinkByName(d.name)
	if err != nil {
		return err
	}
	for _, p := range prefixes {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(link, a); err != nil {
			return fmt.Errorf("address %s: %w", p, err)
		}
	}
	return nil
}

// Up sets the interface up.
func (d *Device) Up() error {
	link, err := netlink.LinkByName(d.name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(link)
}
