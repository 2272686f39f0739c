package tun

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestCarrier: carrier off leaves the interface up with its addresses but
// shows NO-CARRIER, flags its routes linkdown and makes the kernel send
// nothing into it; carrier on restores all of that.
func TestCarrier(t *testing.T) {
	const name = "gresectun1"
	ns, d := newDevice(t, name, 1442)
	prefixes := []netip.Prefix{netip.MustParsePrefix("198.19.8.2/31"), netip.MustParsePrefix("2001:db8:8::2/127")}
	if err := d.SetAddresses(prefixes); err != nil {
		t.Fatal(err)
	}
	if err := d.Up(); err != nil {
		t.Fatal(err)
	}
	packets := make(chan []byte, 64)
	go func() {
		bufs, sizes := make([][]byte, d.BatchSize()), make([]int, d.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, 16+1442)
		}
		for {
			n, err := d.Read(bufs, sizes, 16)
			for j := range n {
				select {
				case packets <- bytes.Clone(bufs[j][16 : 16+sizes[j]]):
				default:
				}
			}
			if err != nil {
				return
			}
		}
	}()
	// sendsInto reports whether a UDP datagram to the point-to-point peer
	// comes out of the device within a second.
	marker := []byte("gresec carrier test")
	sendsInto := func() bool {
		t.Helper()
		var c net.Conn
		if err := ns.Do(func() (err error) { c, err = net.Dial("udp", "198.19.8.3:9"); return err }); err != nil {
			return false // no route: "network is unreachable"
		}
		defer c.Close()
		c.Write(marker)
		deadline := time.After(time.Second)
		for {
			select {
			case p := <-packets:
				if bytes.HasSuffix(p, marker) {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}
	link := func() string {
		out, err := ns.Run("ip", "addr", "show", "dev", name)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	carrier := func(want bool) {
		t.Helper()
		got, err := d.Carrier()
		if err != nil || got != want {
			t.Fatalf("Carrier() = %v, %v; want %v", got, err, want)
		}
	}

	carrier(true)
	if !sendsInto() {
		t.Fatal("with carrier, a datagram to the peer did not come out of the device")
	}
	if err := d.SetCarrier(false); err != nil {
		t.Fatal(err)
	}
	carrier(false)
	out := link()
	for _, want := range []string{"NO-CARRIER", ",UP", "state DOWN", "inet 198.19.8.2/31", "inet6 2001:db8:8::2/127"} {
		if !strings.Contains(out, want) {
			t.Errorf("carrier off: ip addr lacks %q:\n%s", want, out)
		}
	}
	if routes, _ := ns.Run("ip", "route", "show", "dev", name); !strings.Contains(routes, "linkdown") {
		t.Errorf("carrier off: the interface's routes are not flagged linkdown:\n%s", routes)
	}
	if sendsInto() {
		t.Error("carrier off: the kernel still sent a datagram into the device")
	}

	if err := d.SetCarrier(true); err != nil {
		t.Fatal(err)
	}
	carrier(true)
	out = link()
	if strings.Contains(out, "NO-CARRIER") || !strings.Contains(out, "LOWER_UP") {
		t.Errorf("carrier on: still no carrier:\n%s", out)
	}
	if !sendsInto() {
		t.Error("carrier back on: a datagram to the peer did not come out of the device")
	}

	d.Close()
	if err := d.SetCarrier(true); err == nil {
		t.Error("SetCarrier on a closed device succeeded")
	}
}
