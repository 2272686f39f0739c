package interop

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/interop/guest"
	"github.com/gresec/gresec/tunnel"
)

var (
	gresecBin string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gresec-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gresecBin = filepath.Join(dir, "gresec")
	// Built once here and reported by each test that needs it, so `go vet`
	// style runs without root still list the tests as skipped.
	if out, err := exec.Command("go", "build", "-o", gresecBin, "../cmd/gresec").CombinedOutput(); err != nil {
		buildErr = fmt.Errorf("building gresec: %v\n%s", err, out)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The underlay between the host namespace (TAP) and the guest (eth0), and
// the tunnel's inner addresses on each end.
var (
	hostUnder  = []netip.Prefix{netip.MustParsePrefix("198.18.7.1/24"), netip.MustParsePrefix("2001:db8:7::1/64")}
	guestUnder = []netip.Prefix{netip.MustParsePrefix("198.18.7.2/24"), netip.MustParsePrefix("2001:db8:7::2/64")}
	hostInner4 = netip.MustParsePrefix("198.19.7.0/31")
	hostInner6 = netip.MustParsePrefix("2001:db8:17::/127")
	guestIn4   = netip.MustParsePrefix("198.19.7.1/31")
	guestIn6   = netip.MustParsePrefix("2001:db8:17::1/127")
)

// requireGuest fails under CI, which must run these tests, and skips loudly
// elsewhere when the guest cannot run (not root, qemu or debootstrap missing).
func requireGuest(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIPPED (-short): interop tests boot a qemu guest")
	}
	if err := guest.Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("interop tests must run under CI: %v", err)
		}
		t.Skipf("SKIPPED: %v", err)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// lab is one host namespace with a guest on its TAP and gresec between them.
type lab struct {
	// xfrmBefore, when set, is /proc/net/xfrm_stat before the data phase:
	// counters an IKE daemon moved while it negotiated (an ACQUIRE for
	// traffic that met its policy before the SA) are not the data path's.
	xfrmBefore string
	t          *testing.T
	ns         *netns.NS
	g          *guest.Guest
	dir        string
	cfg        string
	sock       string
	gresec     *netns.Proc
	// ipsecExtra: more [ipsec] lines for startGresec's config.
	ipsecExtra string
	// mode and encap, when set, are gresec's [ipsec] mode and [tunnel]
	// encap (shapes_test.go).
	mode, encap string
}

// newLab makes the namespace, boots the guest in it and counts ESP and GRE
// crossing the namespace's input and output hooks with nftables, so tests
// can tell what actually went on the wire. Everything is undone at the end
// of the test: gresec and qemu are stopped by PID, then the namespace goes.
func newLab(t *testing.T) *lab {
	t.Helper()
	requireGuest(t)
	l := &lab{t: t, dir: t.TempDir()}
	ns, err := netns.Create(netns.Unique("gresec-iop"))
	if err != nil {
		t.Fatal(err)
	}
	l.ns = ns
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Errorf("deleting namespace: %v", err)
		}
	})
	// The first test of a cold run builds the image (minutes): time it
	// apart from the boot.
	start := time.Now()
	if _, err := guest.EnsureImage(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("guest image ready in %v", d.Round(time.Second))
	}
	start = time.Now()
	g, err := guest.Boot(ns.Name, hostUnder, guestUnder)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest (kernel %s, qemu pid %d) booted in %v", g.Kernel(), g.PID(), time.Since(start).Round(100*time.Millisecond))
	l.g = g
	t.Cleanup(func() {
		if t.Failed() {
			l.dumpGuest()
		}
		if err := g.Stop(); err != nil {
			t.Errorf("stopping guest: %v", err)
		}
	})
	l.hostRunInput(nftCounters, "nft", "-f", "-")
	return l
}

const nftCounters = `table inet gresec_iop {
	counter esp_in {}
	counter esp_out {}
	counter gre_in {}
	counter gre_out {}
	chain in {
		type filter hook input priority 0; policy accept;
		meta l4proto esp counter name esp_in
		meta l4proto gre counter name gre_in
	}
	chain out {
		type filter hook output priority 0; policy accept;
		meta l4proto esp counter name esp_out
		meta l4proto gre counter name gre_out
	}
}
`

// wire returns the packets counted by the named nftables counter.
func (l *lab) wire(name string) uint64 {
	l.t.Helper()
	out := l.hostRun("nft", "list", "counter", "inet", "gresec_iop", name)
	m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
	if m == nil {
		l.t.Fatalf("no packet count in %q", out)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// hostRun runs a command in the namespace and fails the test on error.
func (l *lab) hostRun(name string, args ...string) string {
	l.t.Helper()
	return l.hostRunInput("", name, args...)
}

// hostRunInput is hostRun with stdin.
func (l *lab) hostRunInput(stdin, name string, args ...string) string {
	l.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns.Name, name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// guestRun runs a shell command in the guest and fails the test on error.
func (l *lab) guestRun(cmd string) string {
	l.t.Helper()
	out, err := l.g.Run(cmd)
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

// guestGRE creates the guest's end of the tunnel: the kernel's own GRE
// device, with the same 4-byte header gresec sends.
func (l *lab) guestGRE(mtu int) {
	l.guestRun(fmt.Sprintf(`set -e
ip tunnel add gre1 mode gre local %s remote %s ttl 64
ip addr add %s dev gre1
ip -6 addr add %s dev gre1 nodad
ip link set gre1 mtu %d up`, guestUnder[0].Addr(), hostUnder[0].Addr(), guestIn4, guestIn6, mtu))
}

type staticKeys struct {
	spiOut, spiIn uint32 // gresec's view: out = host to guest
	keyOut, keyIn string // 0x + 72 hex digits: AES-256 key + salt
}

func newKey(t *testing.T) string {
	k := make([]byte, 36)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return "0x" + hex.EncodeToString(k)
}

// startGresec writes the host's config (mode 0600: it may hold keys) and
// runs `gresec up` in the namespace until the end of the test.
func (l *lab) startGresec(keying string, keys *staticKeys, extra ...string) tunnel.Status {
	l.t.Helper()
	l.writeGresecConfig(keying, keys, extra...)
	return l.runGresec()
}

// writeGresecConfig writes the host's config (mode 0600) to l.cfg.
func (l *lab) writeGresecConfig(keying string, keys *staticKeys, extra ...string) {
	t := l.t
	t.Helper()
	l.cfg = filepath.Join(l.dir, "gresec.toml")
	l.sock = filepath.Join(l.dir, "gresec.sock")
	c := fmt.Sprintf(`[tunnel]
interface = "gre0"
local = %q
remote = %q
addresses = [%q, %q]
mss_clamp = true
encap = %q
[ipsec]
keying = %q
mode = %q
replay_window = 1024
%s[control]
socket = %q
`, hostUnder[0].Addr(), guestUnder[0].Addr(), hostInner4, hostInner6, cmp.Or(l.encap, "gre"), keying, cmp.Or(l.mode, "transport"), l.ipsecExtra, l.sock)
	if keys != nil {
		c += fmt.Sprintf("[static]\nspi_out = 0x%x\nspi_in = 0x%x\nkey_out = %q\nkey_in = %q\n",
			keys.spiOut, keys.spiIn, keys.keyOut, keys.keyIn)
	}
	c += strings.Join(extra, "")
	if err := os.WriteFile(l.cfg, []byte(c), 0o600); err != nil {
		t.Fatal(err)
	}
}

// runGresec runs `gresec up -c l.cfg` in the namespace until the end of
// the test and waits for its status.
func (l *lab) runGresec() tunnel.Status {
	t := l.t
	t.Helper()
	p, err := l.ns.Start(gresecBin, "up", "-c", l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.gresec = p
	t.Cleanup(func() {
		if err := p.Stop(5 * time.Second); err != nil {
			t.Errorf("gresec did not stop cleanly on SIGTERM: %v\n%s", err, p.Out)
		}
		if t.Failed() {
			t.Logf("gresec output:\n%s", p.Out)
		}
	})
	var st tunnel.Status
	if !netns.WaitFor(15*time.Second, func() bool {
		if done, _ := p.Exited(); done {
			return true
		}
		st, err = l.status()
		return err == nil
	}) || err != nil {
		t.Fatalf("gresec did not come up within 15 s (%v):\n%s", err, p.Out)
	}
	return st
}

func (l *lab) status() (tunnel.Status, error) {
	var st tunnel.Status
	out, err := exec.Command(gresecBin, "status", "--json", "-s", l.sock).CombinedOutput()
	if err != nil {
		return st, fmt.Errorf("gresec status: %v: %s", err, out)
	}
	return st, json.Unmarshal(out, &st)
}

func (l *lab) mustStatus() tunnel.Status {
	l.t.Helper()
	st, err := l.status()
	if err != nil {
		l.t.Fatal(err)
	}
	return st
}

var pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// pingCount is the number of echo requests each ping check sends; every one
// must be answered.
const pingCount = 5

// pingFromHost pings dst from the host namespace with payload size bytes
// and the don't-fragment bit, and fails unless every request is answered.
func (l *lab) pingFromHost(dst netip.Addr, size int) {
	l.t.Helper()
	out, _ := l.ns.RunTimeout(60*time.Second, "sh", "-c", pingScript(dst, size))
	l.checkPing("host", dst, size, out)
}

// pingFromGuest is pingFromHost the other way round.
func (l *lab) pingFromGuest(dst netip.Addr, size int) {
	l.t.Helper()
	out, _ := l.g.Run(pingScript(dst, size))
	l.checkPing("guest", dst, size, out)
}

// pingScript sends pingCount requests, one ping run each. Not one run of
// pingCount: once a reply has come, iputils ping waits only two round
// trips for the rest after its last request (-W counts only while none
// has), so a reply the slow guest delivers late was counted as lost.
func pingScript(dst netip.Addr, size int) string {
	return fmt.Sprintf("for i in $(seq %d); do ping -c 1 -W 5 -s %d -M do %s; done", pingCount, size, dst)
}

// checkPing wants pingCount runs, each with its one request answered.
func (l *lab) checkPing(from string, dst netip.Addr, size int, out string) {
	l.t.Helper()
	runs := pingStats.FindAllStringSubmatch(out, -1)
	answered := 0
	for _, m := range runs {
		if m[1] == "1" && m[2] == "1" {
			answered++
		}
	}
	if len(runs) != pingCount || answered != pingCount {
		l.t.Fatalf("ping %s (%d bytes) from the %s: want %d/%d replies, got %d:\n%s", dst, size, from, pingCount, pingCount, answered, out)
	}
}

// pingAll checks both directions, IPv4 and IPv6 inner, with small packets
// and with packets that fill the tunnel MTU exactly (DF set), so both ends
// must agree on the MTU and neither may fragment.
func (l *lab) pingAll(mtu int) {
	l.t.Helper()
	for _, size := range []int{56, mtu - 28} {
		l.pingFromHost(guestIn4.Addr(), size)
		l.pingFromGuest(hostInner4.Addr(), size)
	}
	for _, size := range []int{56, mtu - 48} {
		l.pingFromHost(guestIn6.Addr(), size)
		l.pingFromGuest(hostInner6.Addr(), size)
	}
}

// xfrmSA is one SA as `ip -s xfrm state` shows it.
type xfrmSA struct {
	spi              uint32
	src, dst         string
	bytes, packets   uint64
	replay, integrty uint64 // stats: dropped as replays / failed ICV
}

var (
	reSASrc   = regexp.MustCompile(`^src (\S+) dst (\S+)`)
	reSASPI   = regexp.MustCompile(`proto esp spi 0x([0-9a-f]+)`)
	reSALife  = regexp.MustCompile(`^\s*(\d+)\(bytes\), (\d+)\(packets\)`)
	reSAStats = regexp.MustCompile(`replay-window \d+ replay (\d+) failed (\d+)`)
)

// guestSAs parses the guest's `ip -s xfrm state`.
func (l *lab) guestSAs() map[uint32]xfrmSA {
	out := l.guestRun("ip -s xfrm state")
	sas := map[uint32]xfrmSA{}
	var cur *xfrmSA
	inCurrent := false
	flush := func() {
		if cur != nil {
			sas[cur.spi] = *cur
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if m := reSASrc.FindStringSubmatch(line); m != nil {
			flush()
			cur = &xfrmSA{src: m[1], dst: m[2]}
			continue
		}
		if cur == nil {
			continue
		}
		if m := reSASPI.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseUint(m[1], 16, 32)
			cur.spi = uint32(v)
		}
		if strings.Contains(line, "lifetime current:") {
			inCurrent = true
			continue
		}
		if m := reSALife.FindStringSubmatch(line); m != nil && inCurrent {
			cur.bytes, _ = strconv.ParseUint(m[1], 10, 64)
			cur.packets, _ = strconv.ParseUint(m[2], 10, 64)
			inCurrent = false
		}
		if m := reSAStats.FindStringSubmatch(line); m != nil {
			cur.replay, _ = strconv.ParseUint(m[1], 10, 64)
			cur.integrty, _ = strconv.ParseUint(m[2], 10, 64)
		}
	}
	flush()
	if len(sas) == 0 {
		l.t.Fatalf("no SAs in the guest's ip -s xfrm state:\n%s", out)
	}
	return sas
}

// dumpGuest logs the guest's view for a failed test.
func (l *lab) dumpGuest() {
	out, err := l.g.Run("ip -s link; ip addr; ip -s xfrm state; ip xfrm policy; dmesg | tail -n 30")
	l.t.Logf("guest state (err %v):\n%s", err, out)
	l.t.Logf("guest console tail:\n%s", lastLines(l.g.Console(), 30))
	if out, err := l.ns.Run("nft", "list", "table", "inet", "gresec_iop"); err == nil {
		l.t.Logf("host wire counters:\n%s", out)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// guestLinkCounters returns a guest interface's rx and tx packet counters.
func (l *lab) guestLinkCounters(dev string) (rx, tx uint64) {
	l.t.Helper()
	out := l.guestRun(fmt.Sprintf("cat /sys/class/net/%[1]s/statistics/rx_packets /sys/class/net/%[1]s/statistics/tx_packets", dev))
	if _, err := fmt.Sscan(out, &rx, &tx); err != nil {
		l.t.Fatalf("guest %s counters %q: %v", dev, out, err)
	}
	return rx, tx
}
