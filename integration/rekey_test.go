package integration

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gresec/gresec/tunnel"
)

// TestIKEv2RekeyUnderFloodLosesNothing rekeys the CHILD_SA about every
// 2.6 s while UDP floods both ways fill the send batches and ping counts
// every loss. A packet the peer sealed with the old SA just before it
// switched, still in its send batch, on the wire or in our socket queue
// behind the DELETE that retires that SA, must still be accepted; and no
// end may send on a new SA before its peer installed it (a rekey
// collision's survivor, when the two ends' rekey timers meet): no
// esp_bad_spi, no lost ping.
func TestIKEv2RekeyUnderFloodLosesNothing(t *testing.T) {
	p := startPair(t, pairOpt{keying: "ikev2", ikeExtra: "child_lifetime = \"3s\"\n"})
	p.waitEstablished(15 * time.Second)
	p.waitOneIKESA(t, 30*time.Second)
	for _, s := range []*side{p.a, p.b} {
		// The TUN device drops what its queue cannot hold while gresec's
		// send pump waits for a CPU; on a busy 2-core machine that wait
		// reaches 100 ms, 500 packets (the default queue) of this load.
		// Those are the machine's losses, not the rekeys': give the queue
		// a second of the load.
		if _, err := s.ns.Run("ip", "link", "set", "gre0", "txqueuelen", "5000"); err != nil {
			t.Fatal(err)
		}
	}
	before := map[*side]tunnel.Status{p.a: p.mustStatus(p.a), p.b: p.mustStatus(p.b)}

	const (
		run     = 20 * time.Second
		pings   = 1000 // at 50/s: the whole run on a quiet machine, longer on a busy one
		perTick = 4    // datagrams per 2 ms each way: 2000/s, 16 Mbit/s
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent, received atomic.Uint64
	for _, dir := range []struct{ from, to *side }{{p.a, p.b}, {p.b, p.a}} {
		rx, tx := udpFloodPair(t, dir.from, dir.to)
		wg.Add(2)
		go func() { defer wg.Done(); received.Add(drain(rx)) }()
		go func() { defer wg.Done(); sent.Add(flood(tx, perTick, 2*time.Millisecond, 3*run, stop)) }()
	}
	// The floods last as long as ping does.
	out, err := p.a.ns.RunTimeout(3*run, "ping", "-c", fmt.Sprint(pings), "-i", "0.02", "-W", "5", "-w", fmt.Sprint(int(3*run/time.Second)-1), p.b.tun4.Addr().String())
	close(stop)
	wg.Wait()
	t.Logf("UDP load: %d datagrams sent, %d received", sent.Load(), received.Load())

	if got := replies(out); err != nil || got != pings {
		t.Errorf("%d of %d ping replies across CHILD_SA rekeys under load (%v)\n%s", got, pings, err, lastLines(out, 3))
		for _, s := range []*side{p.a, p.b} {
			// Where else a packet can go: the TUN queue, the raw socket's.
			link, _ := s.ns.Run("ip", "-s", "link", "show", "gre0")
			raw, _ := s.ns.Run("cat", "/proc/net/raw")
			t.Logf("%s:\n%s%s%+v", s.ns.Name, link, raw, p.mustStatus(s).Drops)
		}
	}
	for _, s := range []*side{p.a, p.b} {
		t.Logf("%s: %d CHILD_SA rekey collisions", s.ns.Name, strings.Count(s.proc.Out.String(), "CHILD_SA rekey collision:"))
	}
	for _, s := range []*side{p.a, p.b} {
		st := p.mustStatus(s)
		rekeys := st.IKE.Counters.Rekeys - before[s].IKE.Counters.Rekeys
		t.Logf("%s: %d rekeys, esp_bad_spi %d, no_outbound_sa %d, esp_replay %d, esp_auth %d", s.ns.Name, rekeys,
			st.Drops["esp_bad_spi"], st.Drops["no_outbound_sa"], st.Drops["esp_replay"], st.Drops["esp_auth"])
		if rekeys < 4 {
			t.Errorf("%s: %d rekeys in %s with a 3 s child lifetime", s.ns.Name, rekeys, run)
		}
		for _, d := range []string{"esp_bad_spi", "no_outbound_sa", "esp_replay", "esp_auth"} {
			if n := st.Drops[d] - before[s].Drops[d]; n != 0 {
				t.Errorf("%s: %d packets dropped as %s across rekeys", s.ns.Name, n, d)
			}
		}
	}
	if t.Failed() {
		for _, s := range []*side{p.a, p.b} {
			t.Logf("%s: SA events:\n%s", s.ns.Name, grepLines(s.proc.Out.String(), "SA"))
		}
	}
}

// udpFloodPair opens a receiving socket on to's tunnel address and a
// sending socket in from's namespace connected to it.
func udpFloodPair(t *testing.T, from, to *side) (rx, tx *net.UDPConn) {
	t.Helper()
	err := to.ns.Do(func() (err error) {
		rx, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.tun4.Addr(), 9000)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	err = from.ns.Do(func() (err error) {
		tx, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.tun4.Addr(), 9000)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close() })
	return rx, tx
}

// flood sends perTick 1000-byte datagrams every tick until d has passed or
// stop closes, and returns how many it sent. Send errors (a full socket
// buffer) are load shed, not failures.
func flood(c *net.UDPConn, perTick int, tick, d time.Duration, stop <-chan struct{}) uint64 {
	buf := make([]byte, 1000)
	var n uint64
	tk := time.NewTicker(tick)
	defer tk.Stop()
	end := time.After(d)
	for {
		select {
		case <-stop:
			return n
		case <-end:
			return n
		case <-tk.C:
		}
		for range perTick {
			if _, err := c.Write(buf); err == nil {
				n++
			}
		}
	}
}

// drain reads datagrams until the socket closes or is quiet for 2 s.
func drain(c *net.UDPConn) uint64 {
	buf := make([]byte, 2048)
	var n uint64
	for {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(buf); err != nil {
			return n
		}
		n++
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
