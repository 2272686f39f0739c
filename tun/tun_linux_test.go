package tun

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
)

// newDevice creates a TUN device inside a fresh namespace.
func newDevice(t *testing.T, name string, mtu int) (*netns.NS, *Device) {
	t.Helper()
	nstest.RequireRoot(t, "TUN, network namespaces")
	ns, err := netns.Create(netns.Unique("gresec-tun"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Delete() })
	var d *Device
	if err := ns.Do(func() (err error) { d, err = Create(name, mtu); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return ns, d
}

// echo is an ICMP echo request from peer to local (built with gopacket),
// and checks a packet for the matching reply.
type echo struct {
	local, peer netip.Addr
	id, seq     uint16
	data        []byte
}

func (e echo) request(t testing.TB) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}
	var err error
	if e.local.Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4,
			SrcIP: net.IP(e.peer.AsSlice()), DstIP: net.IP(e.local.AsSlice())}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: e.id, Seq: e.seq}
		err = gopacket.SerializeLayers(buf, opts, ip, icmp, gopacket.Payload(e.data))
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6,
			SrcIP: net.IP(e.peer.AsSlice()), DstIP: net.IP(e.local.AsSlice())}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
		if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		err = gopacket.SerializeLayers(buf, opts, ip, icmp,
			&layers.ICMPv6Echo{Identifier: e.id, SeqNumber: e.seq}, gopacket.Payload(e.data))
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// isReply reports whether pkt is the kernel's answer to e.
func (e echo) isReply(pkt []byte) bool {
	if e.local.Is4() {
		p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		return ip != nil && icmp != nil && ip.SrcIP.Equal(e.local.AsSlice()) && ip.DstIP.Equal(e.peer.AsSlice()) &&
			icmp.TypeCode.Type() == layers.ICMPv4TypeEchoReply && icmp.Id == e.id && icmp.Seq == e.seq &&
			bytes.Equal(icmp.Payload, e.data)
	}
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv6, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	icmp, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	ec, _ := p.Layer(layers.LayerTypeICMPv6Echo).(*layers.ICMPv6Echo)
	// gopacket's ICMPv6Echo keeps no payload: the data follows id and seq.
	return ip != nil && icmp != nil && ec != nil && ip.SrcIP.Equal(e.local.AsSlice()) && ip.DstIP.Equal(e.peer.AsSlice()) &&
		icmp.TypeCode.Type() == layers.ICMPv6TypeEchoReply && ec.Identifier == e.id && ec.SeqNumber == e.seq &&
		len(icmp.Payload) >= 4 && bytes.Equal(icmp.Payload[4:], e.data)
}

// TestDeviceInNamespace creates a TUN in a fresh namespace, configures it
// from outside that namespace (through the netlink socket it keeps), and
// pings the kernel through it: echo requests written into the TUN come
// back as replies read from it, in batches, for IPv4 and IPv6.
func TestDeviceInNamespace(t *testing.T) {
	const name, mtu = "gresectun0", 1442
	ns, d := newDevice(t, name, mtu)
	if d.Name() != name || d.MTU() != mtu {
		t.Fatalf("name %q mtu %d", d.Name(), d.MTU())
	}
	if d.BatchSize() < 2 {
		t.Errorf("BatchSize %d: the kernel refused IFF_VNET_HDR offloads", d.BatchSize())
	}
	// Not in our own namespace.
	if _, err := netns.Cmd("ip", "link", "show", "dev", name); err == nil {
		t.Fatalf("%s appeared in the test's own namespace", name)
	}

	local4, peer4 := netip.MustParseAddr("198.19.7.2"), netip.MustParseAddr("198.19.7.3")
	local6, peer6 := netip.MustParseAddr("2001:db8:7::2"), netip.MustParseAddr("2001:db8:7::3")
	prefixes := []netip.Prefix{netip.PrefixFrom(local4, 31), netip.PrefixFrom(local6, 127)}
	for range 2 { // twice: it must be idempotent
		if err := d.SetAddresses(prefixes); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Up(); err != nil {
		t.Fatal(err)
	}
	out, err := ns.Run("ip", "addr", "show", "dev", name)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"inet 198.19.7.2/31 ", "inet6 2001:db8:7::2/127 ", "mtu 1442", ",UP"} {
		if !strings.Contains(out, want) {
			t.Errorf("ip addr lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "inet 198.19.7.2/31") != 1 || strings.Count(out, "inet6 2001:db8:7::2/127") != 1 {
		t.Errorf("addresses added twice:\n%s", out)
	}
	// Our address must be usable at once; the kernel's own link-local
	// address may well be tentative.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "2001:db8:7::2") && (strings.Contains(line, "tentative") || !strings.Contains(line, "nodad")) {
			t.Errorf("IPv6 address waits for DAD: %s", line)
		}
	}

	const perFamily = 8
	var echoes []echo
	for i := range 2 * perFamily {
		e := echo{local4, peer4, 0x4747, uint16(i), []byte(fmt.Sprintf("gresec tun test %d", i))}
		if i >= perFamily {
			e.local, e.peer = local6, peer6
		}
		echoes = append(echoes, e)
	}

	// A reader hands over copies of what it reads until the device closes.
	const off = 16 // any read offset works; the tunnel uses its headroom
	packets := make(chan []byte, 1024)
	readerDone := make(chan error, 1)
	go func() {
		rbufs := make([][]byte, d.BatchSize())
		for i := range rbufs {
			rbufs[i] = make([]byte, off+mtu)
		}
		sizes := make([]int, len(rbufs))
		for {
			n, err := d.Read(rbufs, sizes, off)
			for j := range n {
				select {
				case packets <- bytes.Clone(rbufs[j][off : off+sizes[j]]):
				default: // the test stopped listening
				}
			}
			if err != nil {
				readerDone <- err
				return
			}
		}
	}()

	// Ping as ping does: resend what is unanswered, a bounded number of
	// times. Right after Up the kernel may not yet have installed the local
	// route of the IPv6 address (addrconf does that from a work queue, DAD
	// or not), and drops what arrives before it.
	got := make([]bool, len(echoes))
	missing := len(echoes)
	for round := 0; missing > 0 && round < 10; round++ {
		if round > 0 {
			t.Logf("round %d: resending %d unanswered echo requests", round, missing)
		}
		var bufs [][]byte // fresh each time: Write rewrites its buffers
		for i, e := range echoes {
			if got[i] {
				continue
			}
			req := e.request(t)
			buf := make([]byte, WriteHeadroom+len(req), WriteHeadroom+mtu)
			copy(buf[WriteHeadroom:], req)
			bufs = append(bufs, buf)
		}
		if n, err := d.Write(bufs, WriteHeadroom); err != nil || n != len(bufs) {
			t.Fatalf("Write: %d, %v", n, err)
		}
		wait := time.After(time.Second)
	collect:
		for missing > 0 {
			select {
			case pkt := <-packets:
				// Also the kernel's own packets (MLD, router solicitations)
				// arrive here; they match no echo.
				for i, e := range echoes {
					if !got[i] && e.isReply(pkt) {
						if !transportChecksumOK(pkt) {
							t.Errorf("reply %d: bad ICMP checksum: %x", i, pkt)
						}
						got[i] = true
						missing--
					}
				}
			case err := <-readerDone:
				t.Fatalf("Read: %v", err)
			case <-wait:
				break collect
			}
		}
	}
	for i, ok := range got {
		if !ok {
			t.Errorf("no echo reply for %s -> %s seq %d", echoes[i].peer, echoes[i].local, echoes[i].seq)
		}
	}

	// The device follows MTU changes made behind its back.
	if _, err := ns.Run("ip", "link", "set", "dev", name, "mtu", "1400"); err != nil {
		t.Fatal(err)
	}
	if !netns.WaitFor(10*time.Second, func() bool { return d.MTU() == 1400 }) {
		t.Errorf("MTU %d after ip link set mtu 1400", d.MTU())
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-readerDone; !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read ended by Close with %v, want os.ErrClosed", err)
	}
	if !netns.WaitFor(10*time.Second, func() bool { _, err := ns.Run("ip", "link", "show", "dev", name); return err != nil }) {
		t.Errorf("%s still exists after Close", name)
	}
	if err := d.Up(); err == nil {
		t.Error("Up after Close succeeded")
	}
	if _, err := d.Read([][]byte{make([]byte, 2000)}, make([]int, 1), 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close: %v, want os.ErrClosed", err)
	}
}

func TestWriteNeedsHeadroom(t *testing.T) {
	_, d := newDevice(t, "", 1420)
	if !strings.HasPrefix(d.Name(), "tun") {
		t.Errorf("kernel-chosen name %q", d.Name())
	}
	buf := make([]byte, 100)
	buf[WriteHeadroom-1] = 0x45
	if n, err := d.Write([][]byte{buf}, WriteHeadroom-1); err != ErrHeadroom || n != 0 {
		t.Errorf("Write below headroom: %d, %v", n, err)
	}
}

func TestCreateRefusesBadMTU(t *testing.T) {
	nstest.RequireRoot(t, "TUN, network namespaces")
	ns, err := netns.Create(netns.Unique("gresec-tun"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Delete() })
	for _, mtu := range []int{0, 67, 65536} {
		err := ns.Do(func() error {
			d, err := Create("gresecbad0", mtu)
			if err == nil {
				d.Close()
				return errors.New("created")
			}
			return nil
		})
		if err != nil {
			t.Errorf("MTU %d: %v", mtu, err)
		}
	}
	// Nothing left behind.
	if out, err := ns.Run("ip", "link", "show", "dev", "gresecbad0"); err == nil {
		t.Errorf("interface left behind:\n%s", out)
	}
}

// BenchmarkDeviceWriteRead writes batches of 32 ICMP echo requests into
// the TUN and reads the kernel's 32 replies back: the device's own cost
// per batch, and its allocations (0 expected).
func BenchmarkDeviceWriteRead(b *testing.B) {
	nstest.RequireRoot(b, "TUN, network namespaces")
	ns, err := netns.Create(netns.Unique("gresec-tun"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ns.Delete() })
	var d *Device
	if err := ns.Do(func() (err error) { d, err = Create("gresecbench0", 1500); return err }); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	local, peer := netip.MustParseAddr("198.19.8.0"), netip.MustParseAddr("198.19.8.1")
	if err := d.SetAddresses([]netip.Prefix{netip.PrefixFrom(local, 31)}); err != nil {
		b.Fatal(err)
	}
	if err := d.Up(); err != nil {
		b.Fatal(err)
	}
	watchdog := time.AfterFunc(5*time.Minute, func() { d.Close() })
	defer watchdog.Stop()

	const n, off, size = 32, 16, 1400
	bufs := make([][]byte, n)
	for i := range bufs {
		e := echo{local: local, peer: peer, id: 1, seq: uint16(i), data: make([]byte, size-28)}
		req := e.request(b)
		bufs[i] = make([]byte, off+len(req), off+1500)
		copy(bufs[i][off:], req)
	}
	rbufs := make([][]byte, d.BatchSize())
	for i := range rbufs {
		rbufs[i] = make([]byte, off+1500)
	}
	sizes := make([]int, len(rbufs))
	roundTrip := func() {
		if _, err := d.Write(bufs, off); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < n; {
			k, err := d.Read(rbufs, sizes, off)
			if err != nil {
				b.Fatal(err)
			}
			for i := range k {
				p := rbufs[i][off : off+sizes[i]]
				if sizes[i] == size && p[0] == 0x45 && p[9] == 1 && p[20] == 0 { // echo reply
					got++
				}
			}
		}
	}
	roundTrip()
	b.SetBytes(n * size)
	b.ReportAllocs()
	for b.Loop() {
		roundTrip()
	}
}
