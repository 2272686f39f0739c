package natlab

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
)

func TestParseCounters(t *testing.T) {
	out := `table ip natlab-count {
	counter udp_out {
		packets 12 bytes 3456
	}
	counter esp_out {
		packets 0 bytes 0
	}
}
`
	var udp, esp uint64
	if err := parseCounters(out, map[string]*uint64{"udp_out": &udp, "esp_out": &esp}); err != nil || udp != 12 || esp != 0 {
		t.Errorf("parseCounters: udp %d esp %d err %v; want 12, 0, nil", udp, esp, err)
	}
	var other uint64
	if err := parseCounters(out, map[string]*uint64{"udp_out": &udp, "other_in": &other}); err == nil {
		t.Error("a missing counter was not reported")
	}
	if err := parseCounters("counter udp_out {\n packets x bytes 1\n}\n", map[string]*uint64{"udp_out": &udp}); err == nil {
		t.Error("a bad number was not reported")
	}
}

// udpConn opens a UDP socket bound to addr inside ns.
func udpConn(t *testing.T, ns *netns.NS, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recvFrom reads one datagram within 2 s; ok is false on time-out.
func recvFrom(c *net.UDPConn) (netip.AddrPort, string, bool) {
	buf := make([]byte, 100)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return netip.AddrPort{}, "", false
	}
	return netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), string(buf[:n]), true
}

func newLab(t *testing.T, o Options) *Lab {
	t.Helper()
	nstest.RequireRoot(t, "network namespaces and nftables")
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return l
}

// TestMasquerade: the inside's UDP 500 and 4500 reach the outside from the
// router's address (with RandomPorts on other ports), answers come back,
// the outside cannot start a flow to the inside, the counters see UDP and
// ICMP, and a conntrack flush removes the mappings.
func TestMasquerade(t *testing.T) {
	for _, random := range []bool{false, true} {
		t.Run(map[bool]string{false: "ports-kept", true: "random-ports"}[random], func(t *testing.T) {
			l := newLab(t, Options{RandomPorts: random})
			srv := udpConn(t, l.Outside, l.OutsideAddr.Addr().String()+":4500")
			changed := 0
			for _, port := range []string{"500", "4500"} {
				c := udpConn(t, l.Inside, l.InsideAddr.Addr().String()+":"+port)
				if _, err := c.WriteToUDPAddrPort([]byte("hello "+port), netip.AddrPortFrom(l.OutsideAddr.Addr(), 4500)); err != nil {
					t.Fatal(err)
				}
				from, msg, ok := recvFrom(srv)
				if !ok || msg != "hello "+port {
					t.Fatalf("from inside port %s: got %q from %v (ok %v)", port, msg, from, ok)
				}
				if from.Addr() != l.Public {
					t.Errorf("inside port %s arrived from %v, want the router's %v", port, from, l.Public)
				}
				if from.Port() != uint16(mustAtoi(port)) {
					changed++
				}
				if _, err := srv.WriteToUDPAddrPort([]byte("answer"), from); err != nil {
					t.Fatal(err)
				}
				if _, msg, ok := recvFrom(c); !ok || msg != "answer" {
					t.Errorf("the answer to the mapping %v did not reach inside port %s", from, port)
				}
			}
			if random && changed == 0 {
				t.Errorf("RandomPorts: both source ports survived the NAT")
			}
			if !random && changed != 0 {
				t.Errorf("plain masquerade changed %d free source ports", changed)
			}
			// Unsolicited: the outside to the public address, port 4500.
			in := udpConn(t, l.Inside, l.InsideAddr.Addr().String()+":14500")
			if _, err := srv.WriteToUDPAddrPort([]byte("unsolicited"), netip.AddrPortFrom(l.Public, 14500)); err != nil {
				t.Fatal(err)
			}
			if _, msg, ok := recvFrom(in); ok {
				t.Errorf("an unsolicited datagram crossed the masquerade: %q", msg)
			}
			if out, err := l.Inside.RunTimeout(10*time.Second, "ping", "-c", "1", "-W", "2", l.OutsideAddr.Addr().String()); err != nil {
				t.Errorf("ping through the NAT: %v\n%s", err, out)
			}
			f, err := l.Forwarded()
			if err != nil {
				t.Fatal(err)
			}
			if f.UDPOut != 2 || f.UDPIn != 2 || f.ICMPOut != 1 || f.ICMPIn != 1 || f.OtherOut != 0 || f.OtherIn != 0 || f.ESPOut != 0 || f.ESPIn != 0 {
				t.Errorf("forwarded %+v; want 2 UDP and 1 ICMP each way, no ESP", f)
			}
			m, err := l.Mappings()
			if err != nil || len(m) < 2 {
				t.Fatalf("mappings %v (%v); want the two UDP flows", m, err)
			}
			n, err := l.FlushConntrack()
			if err != nil || n < 2 {
				t.Fatalf("flush removed %d entries (%v); want >= 2", n, err)
			}
			if m, _ := l.Mappings(); len(m) != 0 {
				t.Errorf("mappings after the flush: %v", m)
			}
		})
	}
}

// TestOneToOne: the inside appears as Public with its ports kept, and the
// outside can start a flow to it.
func TestOneToOne(t *testing.T) {
	l := newLab(t, Options{Kind: OneToOne})
	srv := udpConn(t, l.Outside, l.OutsideAddr.Addr().String()+":4500")
	in := udpConn(t, l.Inside, l.InsideAddr.Addr().String()+":4500")
	if _, err := srv.WriteToUDPAddrPort([]byte("first"), netip.AddrPortFrom(l.Public, 4500)); err != nil {
		t.Fatal(err)
	}
	from, msg, ok := recvFrom(in)
	if !ok || msg != "first" || from != netip.AddrPortFrom(l.OutsideAddr.Addr(), 4500) {
		t.Fatalf("outside-initiated: got %q from %v (ok %v)", msg, from, ok)
	}
	if _, err := in.WriteToUDPAddrPort([]byte("back"), from); err != nil {
		t.Fatal(err)
	}
	from, msg, ok = recvFrom(srv)
	if !ok || msg != "back" || from != netip.AddrPortFrom(l.Public, 4500) {
		t.Errorf("answer: %q from %v (ok %v); want from %v:4500", msg, from, ok, l.Public)
	}
	f, err := l.Forwarded()
	if err != nil {
		t.Fatal(err)
	}
	if f.UDPIn != 1 || f.UDPOut != 1 {
		t.Errorf("forwarded %+v; want one UDP each way", f)
	}
}

func TestBadOptions(t *testing.T) {
	if _, err := New(Options{Kind: OneToOne, RandomPorts: true}); err == nil {
		t.Error("1:1 NAT with RandomPorts accepted")
	}
	if _, err := New(Options{Kind: Kind(7)}); err == nil {
		t.Error("unknown kind accepted")
	}
}

func mustAtoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
