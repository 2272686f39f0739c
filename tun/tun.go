// Package tun is the tunnel's TUN device: creation with offloads, addresses,
// batched packet I/O, and the TCP MSS clamp (mss.go).
//
// It wraps golang.zx2c4.com/wireguard/tun. On Linux that device runs with
// IFF_VNET_HDR and TSO/GRO offloads: Read splits a TCP super-packet of up
// to 64 KiB into MTU-sized packets, one per buffer, and Write coalesces
// consecutive segments of a flow into one super-packet, so the kernel sees
// a few large packets instead of many small ones.
package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// WriteHeadroom is the least offset Write accepts: on Linux the device
// writes a 10-byte virtio-net header (struct virtio_net_hdr) in front of
// each packet it hands the kernel, in the caller's buffer.
const WriteHeadroom = 10

// Errors.
var (
	// ErrTooManySegments comes with a partial Read (n > 0): a super-packet
	// had more segments than the buffers offered; the rest were dropped.
	// Offer BatchSize() buffers to avoid it.
	ErrTooManySegments = wgtun.ErrTooManySegments
	// ErrHeadroom: Write was given an offset below WriteHeadroom.
	ErrHeadroom = errors.New("tun: write offset below WriteHeadroom")
)

// Device is a TUN interface. One goroutine may Read while another Writes.
type Device struct {
	dev  wgtun.Device
	name string
	mtu  atomic.Int64
	// closed: once set, failures are os.ErrClosed. Without it a reader
	// would first see the device's monitor dying ("netlink socket
	// closed") and mistake a shutdown for a fault.
	closed atomic.Bool

	mu   sync.Mutex // guards link: configuration may race with Close
	link link       // OS-specific configuration handle
}

// Create makes a TUN device named name (empty: the kernel picks tunN) with
// the given MTU, in the network namespace of the calling thread; later
// configuration calls act in that namespace, from whatever thread.
func Create(name string, mtu int) (*Device, error) {
	// Check here: a failure to set the MTU inside wireguard's CreateTUN
	// leaves its file open and the interface behind.
	if mtu < 68 || mtu > 65535 {
		return nil, fmt.Errorf("tun: MTU %d outside 68..65535", mtu)
	}
	dev, err := createDevice(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("tun: creating %q: %w", name, err)
	}
	ifname, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("tun: %w", err)
	}
	d := &Device{dev: dev, name: ifname}
	d.mtu.Store(int64(mtu))
	if d.link, err = openLink(ifname); err != nil {
		dev.Close()
		return nil, fmt.Errorf("tun: %s: %w", ifname, err)
	}
	if err := d.link.setMTU(mtu); err != nil {
		d.link.close()
		dev.Close()
		return nil, fmt.Errorf("tun: %s: MTU %d: %w", ifname, mtu, err)
	}
	// The device's event channel must be drained or a monitor (where
	// there is one: not on Linux, see createDevice) blocks; it closes when
	// the device does.
	go func() {
		for range dev.Events() {
		}
	}()
	return d, nil
}

// Name is the interface name the kernel gave.
func (d *Device) Name() string { return d.name }

// MTU is the interface's MTU as the system has it now (changes made
// behind the daemon's back, `ip link set mtu`, included), else the one it
// was created with.
func (d *Device) MTU() int {
	d.mu.Lock()
	m, err := d.link.mtu()
	d.mu.Unlock()
	if err == nil && m > 0 {
		d.mtu.Store(int64(m))
	}
	return int(d.mtu.Load())
}

// BatchSize is the most packets one Read returns or one Write should be
// given: 128 with offloads, 1 without (a kernel lacking IFF_VNET_HDR).
func (d *Device) BatchSize() int { return d.dev.BatchSize() }

// Read reads one or more packets, packet i into bufs[i][offset:] with its
// length in sizes[i], and returns how many. Offer BatchSize() buffers of at
// least offset+MTU() bytes each, and len(sizes) >= len(bufs). With n > 0
// the error may be ErrTooManySegments (the packets read are still good).
// Other errors concern one malformed super-packet, or os.ErrClosed.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.dev.Read(bufs, sizes, offset)
	if err != nil && d.closed.Load() {
		return n, os.ErrClosed
	}
	return n, err
}

// Write writes the packets bufs[i][offset:] (none empty), offset >=
// WriteHeadroom. It rewrites the buffers: headers go into the headroom, and
// segments of a TCP flow are coalesced into the first one's buffer, which
// grows into its spare capacity (up to cap(bufs[i])); give buffers
// capacity to coalesce.
// It returns len(bufs) on success. On error how many got through is not
// known (the underlying device reports bytes), so it returns 0; the error
// joins the failures of individual packets, or is os.ErrClosed.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if offset < WriteHeadroom {
		return 0, ErrHeadroom
	}
	if _, err := d.dev.Write(bufs, offset); err != nil {
		if d.closed.Load() {
			return 0, os.ErrClosed
		}
		return 0, err
	}
	return len(bufs), nil
}

// Close removes the interface (it goes when its file closes) and unblocks
// Read.
func (d *Device) Close() error {
	d.closed.Store(true)
	err := d.dev.Close()
	d.mu.Lock()
	d.link.close()
	d.link = link{}
	d.mu.Unlock()
	return err
}
