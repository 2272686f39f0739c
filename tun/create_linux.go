package tun

import (
	"fmt"

	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// createDevice makes the TUN device with IFF_VNET_HDR (offloads) but
// without wireguard's link monitor. That monitor opens a netlink socket per
// device, subscribed to every link event of the namespace: n tunnels
// cost O(n) work for each interface change and O(n²) to start (a daemon
// of 300 tunnels took 18 s to start here, over 40 % of its CPU in the
// monitors). Nothing here needs its events: the MTU is read when asked
// (Device.MTU), and the MTU is set over netlink once the link is open.
func createDevice(name string, _ int) (wgtun.Device, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("/dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, err
	}
	dev, _, err := wgtun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return dev, nil
}

// setMTU sets the interface's MTU (createDevice leaves the kernel's).
func (l link) setMTU(mtu int) error {
	nl, err := l.get()
	if err != nil {
		return err
	}
	return l.h.LinkSetMTU(nl, mtu)
}
