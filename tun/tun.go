// Package tun is the tunnel's TUN device: creation with offloads, addresses,
// batched packet I/O, and the TCP MSS clamp.
package tun

import (
	"fmt"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// WriteHeadroom is the least offset Write accepts: the device may write
// a virtio-net header in front of each packet.
const WriteHeadroom = 10

// Device is a TUN interface.
type Device struct {
	dev  wgtun.Device
	name string
	mtu  int
}

// Create makes a TUN device named name with the given MTU. On Linux it
// asks for TSO/GRO offloads: Read then splits TCP super-packets into
// MTU-sized ones and Write coalesces them.
func Create(name string, mtu int) (*Device, error) {
	dev, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		return nil, err
	}
	real, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, err
	}
	d := &Device{dev: dev, name: real, mtu: mtu}
	// The device's event channel must be drained or its monitor blocks.
	go func() {
		for range dev.Events() {
		}
	}()
	return d, nil
}

// Name is the interface name the kernel gave.
func (d *Device) Name() string { return d.name }

// MTU is the MTU it was created with.
func (d *Device) MTU() int { return d.mtu }

// BatchSize is the most packets one Read may return.
func (d *Device) BatchSize() int { return d.dev.BatchSize() }

// Read reads one or more packets into bufs at offset.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return d.dev.Read(bufs, sizes, offset)
}

// Write writes packets found at bufs[i][offset:]; offset must be at least
// WriteHeadroom. It may modify the buffers (coalescing).
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if offset < WriteHeadroom {
		return 0, fmt.Errorf("tun: write offset %d below %d", offset, WriteHeadroom)
	}
	return d.dev.Write(bufs, offset)
}

// Close removes the interface.
func (d *Device) Close() error { return d.dev.Close() }
