// Package bench measures tunnels side by side: one TCP stream (iperf3)
// between two network namespaces over bare veth, through gresec and
// through wireguard-go, several rounds each, in one run on one machine, so
// that ratios between them mean something on a shared, noisy host.
package bench

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/curve25519"

	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/internal/netns"
)

// Options say what to run.
type Options struct {
	Gresec      string // path of the gresec binary
	WireguardGo string // path of wireguard-go; empty skips it
	// Baseline is another gresec binary (an earlier build) measured in the
	// same rounds as path "gresec-baseline", so that a change is judged
	// against what it replaces under the same load; empty skips it.
	Baseline string
	// ESP lists static-key transforms (strongSwan names, as [static] esp)
	// measured each as path "gresec-NAME" beside the default transform,
	// so that their throughput is compared under the same load.
	ESP      []string
	Rounds   int           // rounds per path
	Duration time.Duration // per measurement
	Out      io.Writer     // progress
}

// Result is one measurement.
type Result struct {
	Path        string  // "veth", "gresec", "wireguard-go"
	Round       int     // 1-based
	Gbps        float64 // as the receiver counted
	CPUSecPerGB float64 // whole-machine CPU time per GB received
	// TunnelCPUSecPerGB is the CPU time of the tunnel's own processes
	// (both sites, kernel time they cause included) per GB received: less
	// disturbed than CPUSecPerGB by whatever else the machine runs. Zero
	// for bare veth.
	TunnelCPUSecPerGB float64
	BytesMovedGB      float64
	// Resident memory of the tunnel's processes (both sites, summed):
	// before traffic, and the peak (VmHWM) after it. Zero for bare veth.
	RSSIdleMB, RSSPeakMB float64
}

// Paths in the order they are measured each round.
const (
	PathVeth   = "veth"
	PathGresec = "gresec"
	// PathGresecUDP is gresec with static keys and ESP in UDP 4500
	// (udp_encap = "always"), with UDP GSO and GRO.
	PathGresecUDP = "gresec-udp"
	PathWireguard = "wireguard-go"
	PathBaseline  = "gresec-baseline"
	// PathESPPrefix + a transform name: gresec with that static transform.
	PathESPPrefix = "gresec-"
)

// espPath names the path measuring gresec with transform name.
func espPath(name string) string { return PathESPPrefix + name }

var (
	underA = netip.MustParsePrefix("198.18.0.1/24")
	underB = netip.MustParsePrefix("198.18.0.2/24")
)

// Run measures every path Rounds times, interleaving paths so that a
// change in the machine's load hits them alike.
func Run(o Options) ([]Result, error) {
	paths := []string{PathVeth, PathGresec, PathGresecUDP}
	transforms := map[string]esp.Transform{}
	for _, name := range o.ESP {
		t, err := esp.ParseTransform(name)
		if err != nil {
			return nil, fmt.Errorf("-esp %q: %w", name, err)
		}
		if _, dup := transforms[espPath(name)]; dup || name == "baseline" {
			return nil, fmt.Errorf("-esp %q: given twice", name)
		}
		transforms[espPath(name)] = t
		paths = append(paths, espPath(name))
	}
	if o.Baseline != "" {
		paths = append(paths, PathBaseline)
	}
	if o.WireguardGo != "" {
		paths = append(paths, PathWireguard)
	}
	var results []Result
	for round := 1; round <= o.Rounds; round++ {
		for _, p := range paths {
			fmt.Fprintf(o.Out, "[round %d/%d] %-24s ", round, o.Rounds, p)
			r, err := measure(o, p, transforms[p])
			if err != nil {
				fmt.Fprintln(o.Out, "failed")
				return results, fmt.Errorf("%s, round %d: %w", p, round, err)
			}
			r.Round = round
			fmt.Fprintf(o.Out, "%6.2f Gbit/s  %5.2f CPU s/GB", r.Gbps, r.CPUSecPerGB)
			if r.TunnelCPUSecPerGB > 0 {
				fmt.Fprintf(o.Out, " (tunnel %.2f)", r.TunnelCPUSecPerGB)
			}
			if r.RSSPeakMB > 0 {
				fmt.Fprintf(o.Out, "  RSS %.1f MB idle, %.1f MB peak (both sites)", r.RSSIdleMB, r.RSSPeakMB)
			}
			fmt.Fprintln(o.Out)
			results = append(results, r)
		}
	}
	return results, nil
}

// site is the pair of namespaces one measurement runs in.
type site struct {
	a, b  *netns.NS
	dir   string
	procs []*netns.Proc
}

func newSite() (*site, error) {
	s := &site{}
	var err error
	if s.a, err = netns.Create(netns.Unique("gresec-bench-a")); err != nil {
		return nil, err
	}
	if s.b, err = netns.Create(netns.Unique("gresec-bench-b")); err != nil {
		s.close()
		return nil, err
	}
	if err := netns.Link(s.a, "veth-a", []netip.Prefix{underA}, s.b, "veth-b", []netip.Prefix{underB}); err != nil {
		s.close()
		return nil, err
	}
	if s.dir, err = os.MkdirTemp("", "gresec-bench-"); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *site) start(ns *netns.NS, name string, args ...string) (*netns.Proc, error) {
	p, err := ns.Start(name, args...)
	if err == nil {
		s.procs = append(s.procs, p)
	}
	return p, err
}

func (s *site) close() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop(3 * time.Second)
	}
	if s.a != nil {
		s.a.Delete()
	}
	if s.b != nil {
		s.b.Delete()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// measure runs one path; tr is the static transform of an ESP path (the
// zero Transform otherwise: gresec's default).
func measure(o Options, path string, tr esp.Transform) (Result, error) {
	s, err := newSite()
	if err != nil {
		return Result{}, err
	}
	defer s.close()
	var dst netip.Addr
	switch path {
	case PathVeth:
		dst = underB.Addr()
	case PathGresec:
		dst, err = s.gresec(o.Gresec, nil, "")
	case PathGresecUDP:
		dst, err = s.gresec(o.Gresec, nil, "[ipsec]\nudp_encap = \"always\"\n")
	case PathBaseline:
		dst, err = s.gresec(o.Baseline, nil, "")
	case PathWireguard:
		dst, err = s.wireguard(o.WireguardGo)
	default:
		dst, err = s.gresec(o.Gresec, &tr, "")
	}
	if err != nil {
		return Result{}, err
	}
	tunnelProcs := append([]*netns.Proc(nil), s.procs...)
	idle := rss(tunnelProcs, "VmRSS")
	var pids []int
	for _, p := range tunnelProcs {
		pids = append(pids, p.Cmd.Process.Pid)
	}
	cpu0 := procCPUSeconds(pids)
	r, err := s.iperf(path, dst, o.Duration)
	if r.BytesMovedGB > 0 && len(pids) > 0 {
		r.TunnelCPUSecPerGB = (procCPUSeconds(pids) - cpu0) / r.BytesMovedGB
	}
	r.RSSIdleMB, r.RSSPeakMB = idle, rss(tunnelProcs, "VmHWM")
	return r, err
}

// procCPUSeconds sums the user and system time of the processes (all
// their threads) from /proc/PID/stat.
func procCPUSeconds(pids []int) float64 {
	var ticks float64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The command name (field 2) may hold spaces: count from its end.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		for _, v := range f[11:13] { // utime, stime: fields 14 and 15
			n, _ := strconv.ParseFloat(v, 64)
			ticks += n
		}
	}
	return ticks / 100 // USER_HZ
}

// rss sums a memory field of /proc/PID/status over procs, in MB.
func rss(procs []*netns.Proc, field string) float64 {
	var kb float64
	for _, p := range procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, field+":"); ok {
				n, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				kb += n
			}
		}
	}
	return kb / 1000
}

// gresec brings up a static-key gresec tunnel and returns b's tunnel
// address. tr nil: the default transform (AES-256-GCM); otherwise both SAs
// use *tr. extra are more config lines (sections) before [static].
func (s *site) gresec(bin string, tr *esp.Transform, extra string) (netip.Addr, error) {
	cfgs := staticConfigs(tr, [2]string{filepath.Join(s.dir, "0.sock"), filepath.Join(s.dir, "1.sock")}, extra)
	for i, ns := range []*netns.NS{s.a, s.b} {
		cfg := filepath.Join(s.dir, fmt.Sprintf("%d.toml", i))
		sock := filepath.Join(s.dir, fmt.Sprintf("%d.sock", i))
		if err := os.WriteFile(cfg, []byte(cfgs[i]), 0o600); err != nil {
			return netip.Addr{}, err
		}
		p, err := s.start(ns, bin, "up", "-c", cfg)
		if err != nil {
			return netip.Addr{}, err
		}
		if !netns.WaitFor(10*time.Second, func() bool { _, err := os.Stat(sock); return err == nil }) {
			return netip.Addr{}, fmt.Errorf("gresec did not start: %s", p.Out)
		}
	}
	return netip.MustParseAddr("198.19.0.1"), s.waitPing(netip.MustParseAddr("198.19.0.1"))
}

// staticConfigs writes the two sites' configs: mirrored SPIs and random
// keys of transform tr's lengths (nil: the default AES-256-GCM, no esp
// key), control sockets socks, and extra lines before [static].
func staticConfigs(tr *esp.Transform, socks [2]string, extra string) [2]string {
	keyLen, authLen, espLine := 36, 0, ""
	if tr != nil {
		keyLen, espLine = tr.EncKeyLen(), fmt.Sprintf("esp = %q\n", tr.String())
		if !tr.AEAD() {
			authLen = tr.IntegKeyLen()
		}
	}
	keys := [2]string{randHex(keyLen), randHex(keyLen)}
	auth := [2]string{randHex(authLen), randHex(authLen)}
	tun := [2]string{"198.19.0.0/31", "198.19.0.1/31"}
	under := [2]netip.Addr{underA.Addr(), underB.Addr()}
	var cfgs [2]string
	for i := range cfgs {
		c := fmt.Sprintf("[tunnel]\nlocal = %q\nremote = %q\naddresses = [%q]\n%s[static]\n%sspi_out = 0x%x\nspi_in = 0x%x\nkey_out = \"0x%s\"\nkey_in = \"0x%s\"\n",
			under[i], under[1-i], tun[i], extra, espLine, 0x1001+i, 0x1002-i, keys[i], keys[1-i])
		if authLen > 0 {
			c += fmt.Sprintf("auth_key_out = \"0x%s\"\nauth_key_in = \"0x%s\"\n", auth[i], auth[1-i])
		}
		cfgs[i] = c + fmt.Sprintf("[control]\nsocket = %q\n", socks[i])
	}
	return cfgs
}

// wireguard brings up wireguard-go between the sites, configured with wg.
func (s *site) wireguard(bin string) (netip.Addr, error) {
	var priv, pub [2]string
	for i := range priv {
		var k, p [32]byte
		rand.Read(k[:])
		k[0] &= 248
		k[31] = k[31]&127 | 64
		curve25519.ScalarBaseMult(&p, &k)
		priv[i], pub[i] = base64.StdEncoding.EncodeToString(k[:]), base64.StdEncoding.EncodeToString(p[:])
	}
	// Different names: wireguard-go's UAPI socket directory is shared
	// between namespaces.
	ifs := [2]string{fmt.Sprintf("wgb%da", os.Getpid()%10000), fmt.Sprintf("wgb%db", os.Getpid()%10000)}
	tun := [2]string{"198.19.1.0/31", "198.19.1.1/31"}
	under := [2]netip.Addr{underA.Addr(), underB.Addr()}
	for i, ns := range []*netns.NS{s.a, s.b} {
		if _, err := s.start(ns, bin, "-f", ifs[i]); err != nil {
			return netip.Addr{}, err
		}
		if !netns.WaitFor(5*time.Second, func() bool { _, err := ns.Run("ip", "link", "show", ifs[i]); return err == nil }) {
			return netip.Addr{}, fmt.Errorf("wireguard-go did not create %s", ifs[i])
		}
		keyFile := filepath.Join(s.dir, fmt.Sprintf("wg%d.key", i))
		if err := os.WriteFile(keyFile, []byte(priv[i]), 0o600); err != nil {
			return netip.Addr{}, err
		}
		peerTun := netip.MustParsePrefix(tun[1-i]).Addr().String() + "/32"
		for _, cmd := range [][]string{
			{"wg", "set", ifs[i], "private-key", keyFile, "listen-port", "51820", "peer", pub[1-i], "allowed-ips", peerTun, "endpoint", under[1-i].String() + ":51820"},
			{"ip", "addr", "add", tun[i], "dev", ifs[i]},
			{"ip", "link", "set", ifs[i], "mtu", "1420", "up"},
		} {
			if out, err := ns.Run(cmd[0], cmd[1:]...); err != nil {
				return netip.Addr{}, fmt.Errorf("%v: %s", err, out)
			}
		}
	}
	return netip.MustParseAddr("198.19.1.1"), s.waitPing(netip.MustParseAddr("198.19.1.1"))
}

func (s *site) waitPing(dst netip.Addr) error {
	if !netns.WaitFor(10*time.Second, func() bool {
		_, err := s.a.RunTimeout(3*time.Second, "ping", "-c", "1", "-W", "1", dst.String())
		return err == nil
	}) {
		return fmt.Errorf("no ping through the tunnel to %s", dst)
	}
	return nil
}

// iperf runs one TCP stream a -> b and the machine's CPU time meanwhile.
func (s *site) iperf(path string, dst netip.Addr, d time.Duration) (Result, error) {
	if _, err := s.start(s.b, "iperf3", "-s", "-1", "-B", dst.String()); err != nil {
		return Result{}, err
	}
	time.Sleep(300 * time.Millisecond)
	cpu0, err := cpuSeconds()
	if err != nil {
		return Result{}, err
	}
	secs := int(d.Seconds())
	out, err := s.a.RunTimeout(d+20*time.Second, "iperf3", "-c", dst.String(), "-t", strconv.Itoa(secs), "-J")
	if err != nil {
		return Result{}, fmt.Errorf("iperf3: %w", err)
	}
	cpu1, err := cpuSeconds()
	if err != nil {
		return Result{}, err
	}
	var r struct {
		End struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.End.SumReceived.Bytes == 0 {
		return Result{}, fmt.Errorf("iperf3 gave no result: %v", err)
	}
	gb := r.End.SumReceived.Bytes / 1e9
	return Result{Path: path, Gbps: r.End.SumReceived.BitsPerSecond / 1e9, CPUSecPerGB: (cpu1 - cpu0) / gb, BytesMovedGB: gb}, nil
}

// cpuSeconds is the machine's busy CPU time so far (all cores), from
// /proc/stat: everything but idle and iowait.
func cpuSeconds() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat: %q", line)
	}
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / 100, nil // USER_HZ is 100 on Linux
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Summary is the median of each path's rounds.
type Summary struct {
	Path        string
	Gbps        float64
	CPUSecPerGB float64
	// TunnelCPUSecPerGB: median of Result.TunnelCPUSecPerGB.
	TunnelCPUSecPerGB float64
	Rounds            int
	RSSIdleMB         float64
	RSSPeakMB         float64
}

// Summarize takes medians per path, in measuring order.
func Summarize(results []Result) []Summary {
	var order []string
	by := map[string][]Result{}
	for _, r := range results {
		if _, ok := by[r.Path]; !ok {
			order = append(order, r.Path)
		}
		by[r.Path] = append(by[r.Path], r)
	}
	var out []Summary
	for _, p := range order {
		rs := by[p]
		out = append(out, Summary{Path: p, Gbps: median(rs, func(r Result) float64 { return r.Gbps }),
			CPUSecPerGB: median(rs, func(r Result) float64 { return r.CPUSecPerGB }), Rounds: len(rs),
			TunnelCPUSecPerGB: median(rs, func(r Result) float64 { return r.TunnelCPUSecPerGB }),
			RSSIdleMB:         median(rs, func(r Result) float64 { return r.RSSIdleMB }),
			RSSPeakMB:         median(rs, func(r Result) float64 { return r.RSSPeakMB })})
	}
	return out
}

func median(rs []Result, f func(Result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
