package tun

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tunSetCarrier is TUNSETCARRIER, _IOW('T', 226, int) in linux/if_tun.h
// (Linux 4.20 and later); golang.org/x/sys does not name it.
const tunSetCarrier = 0x400454e2

// SetCarrier turns the interface's carrier on or off, as a cable being
// plugged in or pulled out would: the interface stays administratively up
// with its addresses and routes, but without carrier the kernel sends
// nothing into it, flags its routes "linkdown", and clears IFF_LOWER_UP
// and IFF_RUNNING (operstate DOWN, `ip link` shows NO-CARRIER). Routing
// daemons read that as the link going down: BIRD's `show interfaces`
// says LinkDown and its OSPF (`check link`, on by default) drops the
// neighbours on it at once, as IOS does when a tunnel's line protocol
// goes down. Setting the interface administratively down instead would
// also delete its IPv6 addresses and the routes the daemons installed.
//
// The ioctl goes through the device's file descriptor (the daemon keeps
// CAP_NET_ADMIN after dropping privileges); it takes effect while another
// goroutine reads or writes.
func (d *Device) SetCarrier(on bool) error {
	if d.closed.Load() {
		return os.ErrClosed
	}
	f, ok := d.dev.(interface{ File() *os.File })
	if !ok {
		return fmt.Errorf("tun: %s: carrier: %w", d.name, errors.ErrUnsupported)
	}
	rc, err := f.File().SyscallConn()
	if err != nil {
		return fmt.Errorf("tun: %s: carrier: %w", d.name, err)
	}
	v := int32(0)
	if on {
		v = 1
	}
	var errno unix.Errno
	// Control, not File().Fd(): Fd would switch the descriptor to blocking
	// mode under the reader's feet.
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, tunSetCarrier, uintptr(unsafe.Pointer(&v)))
	}); err != nil {
		return fmt.Errorf("tun: %s: carrier: %w", d.name, err)
	}
	if errno != 0 {
		return fmt.Errorf("tun: %s: carrier (TUNSETCARRIER): %w", d.name, errno)
	}
	return nil
}

// Carrier reports whether the interface has carrier (IFF_LOWER_UP), as
// routing daemons see it.
func (d *Device) Carrier() (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	nl, err := d.link.get()
	if err != nil {
		return false, fmt.Errorf("tun: %s: %w", d.name, err)
	}
	return nl.Attrs().RawFlags&unix.IFF_LOWER_UP != 0, nil
}
