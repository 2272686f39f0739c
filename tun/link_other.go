//go:build !linux

package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// link on the BSDs and macOS configures the interface with ifconfig(8), as
// wg-quick does there: the ioctls differ between the three systems and the
// command line does not. This code is cross-compiled in CI but runs only
// where such a system is at hand; Linux is the tested platform.
type link struct{}

func openLink(string) (link, error) { return link{}, nil }
func (link) mtu() (int, error)      { return 0, errors.ErrUnsupported }
func (link) close()                 {}

// createDevice is wireguard's CreateTUN; setMTU has nothing left to do.
func createDevice(name string, mtu int) (wgtun.Device, error) { return wgtun.CreateTUN(name, mtu) }
func (link) setMTU(int) error                                 { return nil }

// SetAddresses adds each prefix. A TUN interface here is point to point,
// so an IPv4 address needs a destination: the other address of a /31, or
// else the first other host of the prefix, which is then routed to the
// interface.
func (d *Device) SetAddresses(prefixes []netip.Prefix) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range prefixes {
		if !p.IsValid() || p.Addr().Zone() != "" {
			return fmt.Errorf("tun: %s: invalid address %s", d.name, p)
		}
		a := p.Addr().Unmap()
		var args []string
		if a.Is4() {
			mask := net.IP(net.CIDRMask(p.Bits(), 32)).String()
			args = []string{d.name, "inet", a.String(), peerOf(netip.PrefixFrom(a, p.Bits())).String(), "netmask", mask, "alias"}
		} else {
			args = []string{d.name, "inet6", a.String(), "prefixlen", strconv.Itoa(p.Bits()), "alias"}
		}
		if out, err := exec.Command("ifconfig", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("tun: %s: address %s: ifconfig: %v: %s", d.name, p, err, out)
		}
	}
	return nil
}

// Up sets the interface administratively up.
func (d *Device) Up() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if out, err := exec.Command("ifconfig", d.name, "up").CombinedOutput(); err != nil {
		return fmt.Errorf("tun: %s: up: ifconfig: %v: %s", d.name, err, out)
	}
	return nil
}

// RemoveAddresses deletes the prefixes from the interface.
func (d *Device) RemoveAddresses(prefixes []netip.Prefix) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range prefixes {
		fam := "inet"
		if p.Addr().Is6() && !p.Addr().Is4In6() {
			fam = "inet6"
		}
		if out, err := exec.Command("ifconfig", d.name, fam, p.Addr().Unmap().String(), "-alias").CombinedOutput(); err != nil {
			return fmt.Errorf("tun: %s: removing address %s: ifconfig: %v: %s", d.name, p, err, out)
		}
	}
	return nil
}
