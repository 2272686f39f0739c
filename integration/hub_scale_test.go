package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
)

// TestHubScale measures one hub daemon with N IKEv2 tunnels against N
// peers (GRESEC_SCALE=N, opt-in: it is a measurement). The peers are one
// more gresec daemon with N tunnels, one per local address, in a second
// namespace. It reports the time until every tunnel is established, the
// hub's RSS and its CPU while idle, and pings through every tunnel.
func TestHubScale(t *testing.T) {
	n := optInCount(t, "GRESEC_SCALE", "docs/performance.md, many tunnels in one daemon")
	l := newScaleLab(t, n, "gresec-scale")
	hubNS, peerNS, hubDir, peerDir, names := l.hub, l.peers, l.hubDir, l.peerDir, l.names
	inner := scaleInner
	hubProc, err := hubNS.Start(gresecBin, "up", "-d", hubDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hubProc.Stop(30 * time.Second) })
	h := &hub{t: t, sock: l.hubSock, proc: hubProc}
	if !netns.WaitFor(60*time.Second, func() bool { st, err := h.status(); return err == nil && len(st.Tunnels) == n }) {
		t.Fatalf("hub did not come up with %d tunnels:\n%s", n, lastLines(hubProc.Out.String(), 20))
	}
	rssUp := rssKB(t, hubProc.Cmd.Process.Pid)

	start := time.Now()
	peers, err := peerNS.Start(gresecBin, "up", "-d", peerDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peers.Stop(30 * time.Second) })
	h.waitReady(names, time.Duration(30+n)*time.Second)
	established := time.Since(start)

	// Idle: no traffic but IKE's timers (DPD off, lifetimes hours).
	time.Sleep(2 * time.Second)
	cpu0, wall0 := cpuTicks(t, hubProc.Cmd.Process.Pid), time.Now()
	time.Sleep(20 * time.Second)
	idle := float64(cpuTicks(t, hubProc.Cmd.Process.Pid)-cpu0) / 100 / time.Since(wall0).Seconds() * 100
	rss := rssKB(t, hubProc.Cmd.Process.Pid)

	failed := 0
	sem := make(chan struct{}, 16)
	res := make(chan bool, n)
	for k := 0; k < n; k++ {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			out, _ := peerNS.RunTimeout(20*time.Second, "ping", "-c", "2", "-i", "0.3", "-W", "2", "-w", "10", "-I", fmt.Sprintf("p%03d", k), inner(k, 0).String())
			res <- replies(out) >= 1
		}()
	}
	for k := 0; k < n; k++ {
		if !<-res {
			failed++
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d tunnels carried no ping", failed, n)
	}
	t.Logf("%d tunnels: all established %.1f s after the peers started; hub RSS %d KiB with the tunnels up and idle (%d KiB before any SA); idle CPU %.2f%% of one core over 20 s",
		n, established.Seconds(), rss, rssUp, idle)
	// Before the reload below: its DELETEs from the peers' removed tunnels
	// may reach the hub after it removed its own, and count as unrouted.
	if st, err := h.status(); err == nil && (st.UnknownSPI != 0 || st.UnroutedIKE != 0) {
		t.Errorf("shared sockets dropped %d ESP packets with unknown SPIs, %d IKE datagrams from no tunnel's peer", st.UnknownSPI, st.UnroutedIKE)
	}
	if os.Getenv("GRESEC_SCALE_IPERF") == "1" && n > 1 {
		// One tunnel's single stream with n-1 idle tunnels beside it, then
		// with the others removed by a reload of both daemons: same run.
		many := iperfMedian(t, hubNS, peerNS, inner(0, 0))
		for k := 1; k < n; k++ {
			name := fmt.Sprintf("t%03d.toml", k)
			os.Remove(filepath.Join(hubDir, name))
			os.Remove(filepath.Join(peerDir, name))
		}
		hubProc.Cmd.Process.Signal(syscall.SIGHUP)
		peers.Cmd.Process.Signal(syscall.SIGHUP)
		if !netns.WaitFor(60*time.Second, func() bool { st, err := h.status(); return err == nil && len(st.Tunnels) == 1 }) {
			t.Fatalf("hub did not go down to one tunnel")
		}
		h.waitReady(names[:1], 10*time.Second)
		one := iperfMedian(t, hubNS, peerNS, inner(0, 0))
		t.Logf("single TCP stream through one tunnel: %.0f Mbit/s with %d idle tunnels beside it, %.0f Mbit/s alone: ratio %.3f (median of 3 runs of 5 s)",
			many, n-1, one, many/one)
	}
}

// iperfMedian is the median of three 5 s single-stream TCP runs from
// client's namespace to dst in server's.
func iperfMedian(t *testing.T, server, client *netns.NS, dst netip.Addr) float64 {
	var runs []float64
	for i := 0; i < 3; i++ {
		srv, err := server.Start("iperf3", "-s", "-1", "-B", dst.String())
		if err != nil {
			t.Fatal(err)
		}
		if !netns.WaitFor(5*time.Second, func() bool {
			out, _ := server.Run("ss", "-ltn", "sport", "= :5201")
			return strings.Contains(out, "5201")
		}) {
			srv.Stop(time.Second)
			t.Fatalf("iperf3 server did not listen:\n%s", srv.Out)
		}
		out, err := client.RunTimeout(30*time.Second, "iperf3", "-c", dst.String(), "-t", "5", "-J")
		srv.Stop(2 * time.Second)
		r := parseIperf(out, err)
		if r.err != "" {
			t.Fatalf("iperf3: %s", r.err)
		}
		runs = append(runs, r.mbps)
	}
	sort.Float64s(runs)
	return runs[1]
}

// rssKB is a process's resident set, from /proc.
func rssKB(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// cpuTicks is a process's user+system time in clock ticks (1/100 s).
func cpuTicks(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.Atoi(f[11])
	k, _ := strconv.Atoi(f[12])
	return u + k
}
