package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// link configures the interface over a rtnetlink socket opened when the
// device was created: the socket stays in the device's network namespace,
// so configuration works from any thread.
type link struct {
	h     *netlink.Handle
	index int
}

func openLink(name string) (link, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return link{}, fmt.Errorf("netlink: %w", err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		h.Close()
		return link{}, fmt.Errorf("netlink: %w", err)
	}
	return link{h: h, index: l.Attrs().Index}, nil
}

func (l link) get() (netlink.Link, error) {
	if l.h == nil {
		return nil, net.ErrClosed
	}
	return l.h.LinkByIndex(l.index)
}

func (l link) mtu() (int, error) {
	nl, err := l.get()
	if err != nil {
		return 0, err
	}
	return nl.Attrs().MTU, nil
}

func (l link) close() {
	if l.h != nil {
		l.h.Close()
	}
}

// SetAddresses adds prefixes to the interface (replacing an address that is
// already there, so calling it again is harmless); it removes none.
// Point-to-point prefixes work: a /31 (RFC 3021) gets no broadcast address,
// a /127 (RFC 6164) is an ordinary prefix. IPv6 addresses skip duplicate
// address detection (IFA_F_NODAD): on a point-to-point tunnel there is
// nobody to collide with, and DAD would hold the address "tentative",
// unusable as a source, for a second or, while the link is down, for good.
// IPv6 needs an MTU of at least 1280.
func (d *Device) SetAddresses(prefixes []netip.Prefix) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	nl, err := d.link.get()
	if err != nil {
		return fmt.Errorf("tun: %s: %w", d.name, err)
	}
	for _, p := range prefixes {
		if !p.IsValid() || p.Addr().Zone() != "" {
			return fmt.Errorf("tun: %s: invalid address %s", d.name, p)
		}
		addr := p.Addr().Unmap()
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(p.Bits(), addr.BitLen())}}
		if addr.Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := d.link.h.AddrReplace(nl, a); err != nil {
			return fmt.Errorf("tun: %s: address %s: %w", d.name, p, err)
		}
	}
	return nil
}

// Up sets the interface administratively up.
func (d *Device) Up() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	nl, err := d.link.get()
	if err == nil {
		err = d.link.h.LinkSetUp(nl)
	}
	if err != nil {
		return fmt.Errorf("tun: %s: up: %w", d.name, err)
	}
	return nil
}

// RemoveAddresses deletes the prefixes from the interface; one that is not
// there is not an error.
func (d *Device) RemoveAddresses(prefixes []netip.Prefix) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	nl, err := d.link.get()
	if err != nil {
		return fmt.Errorf("tun: %s: %w", d.name, err)
	}
	for _, p := range prefixes {
		addr := p.Addr().Unmap()
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(p.Bits(), addr.BitLen())}}
		if err := d.link.h.AddrDel(nl, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("tun: %s: removing address %s: %w", d.name, p, err)
		}
	}
	return nil
}
