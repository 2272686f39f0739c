package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/privdrop"
)

// scrape fetches /metrics from inside s's namespace. The socket is made
// on this goroutine's thread, which Do has moved into the namespace.
func scrape(t *testing.T, s *side, addr string) string {
	t.Helper()
	var body string
	err := s.ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("HTTP %s: %s", resp.Status, b)
		}
		body = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("scraping %s in %s: %v", addr, s.ns.Name, err)
	}
	return body
}

// metric returns the value of the first sample whose name and labels
// contain every part of want, or -1.
func metric(body string, name string, labels ...string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			return v
		}
	}
	return -1
}

// TestMetricsScrapedAndPromtoolClean: with [metrics] on, Prometheus text
// comes back whose values follow the traffic, and promtool (Debian's
// prometheus package) finds nothing wrong with it.
func TestMetricsScrapedAndPromtoolClean(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatalf("promtool is not installed (Debian package prometheus): `sudo make test` installs it")
	}
	const addr = "127.0.0.1:9470"
	p := startPair(t, pairOpt{keying: "ikev2", aExtra: fmt.Sprintf("[metrics]\nlisten = %q\n", addr)})
	p.waitEstablished(15 * time.Second)
	if got, out := p.ping(p.a, p.b.tun4.Addr(), 5); got < 4 {
		t.Fatalf("ping: %d of 5\n%s", got, out)
	}
	body := scrape(t, p.a, addr)

	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, c := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"gresec_tunnel_up", nil, 1},
		{"gresec_ike_sa_state", []string{`state="established"`}, 1},
		{"gresec_inner_packets_total", []string{`direction="tx"`}, 5},
		{"gresec_inner_packets_total", []string{`direction="rx"`}, 4},
		{"gresec_esp_sa_packets_total", []string{`direction="out"`}, 5},
		{"gresec_ike_messages_total", []string{`direction="sent"`}, 2},
		{"gresec_ike_exchanges_total", []string{`exchange="IKE_AUTH"`, `result="ok"`}, 1},
		{"gresec_drops_total", []string{`reason="esp_auth"`}, 0},
		{"go_goroutines", nil, 1},
	} {
		if v := metric(body, c.name, c.labels...); v < c.min {
			t.Errorf("%s%v = %v, want >= %v", c.name, c.labels, v, c.min)
		}
	}
	if strings.Contains(body, p.psk) {
		t.Error("the metrics show the PSK")
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}

// TestDaemonUserDropsPrivileges: with daemon.user, every thread of the
// running gresec has the user's ids, only CAP_NET_ADMIN left (also in the
// bounding set) and no_new_privs, and the tunnel still negotiates and
// carries traffic both ways.
func TestDaemonUserDropsPrivileges(t *testing.T) {
	p := startPair(t, pairOpt{keying: "ikev2", aExtra: "[daemon]\nuser = \"nobody\"\n"})
	p.waitEstablished(15 * time.Second)
	for _, c := range []struct{ from, to *side }{{p.a, p.b}, {p.b, p.a}} {
		if got, out := p.ping(c.from, c.to.tun4.Addr(), 3); got < 3 {
			t.Errorf("ping %s: %d of 3\n%s", c.to.tun4.Addr(), got, out)
		}
	}
	pid := p.a.proc.Cmd.Process.Pid
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	const netAdmin = uint64(1) << privdrop.CapNetAdmin
	for _, task := range tasks {
		st, err := privdrop.ReadStatus(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue
		}
		if st.UID != [4]int{65534, 65534, 65534, 65534} || st.GID[0] != 65534 || st.GID[1] != 65534 {
			t.Errorf("thread %s: uids %v gids %v, want nobody (65534)", task.Name(), st.UID, st.GID)
		}
		if st.CapEff != netAdmin || st.CapPrm != netAdmin || st.CapBnd != netAdmin || st.CapInh != 0 || st.CapAmb != 0 {
			t.Errorf("thread %s: capabilities eff %#x prm %#x bnd %#x inh %#x amb %#x, want only CAP_NET_ADMIN (%#x)",
				task.Name(), st.CapEff, st.CapPrm, st.CapBnd, st.CapInh, st.CapAmb, netAdmin)
		}
		if !st.NoNewPrivs {
			t.Errorf("thread %s: no_new_privs not set", task.Name())
		}
	}
	t.Logf("gresec pid %d: %d threads checked", pid, len(tasks))
	if !strings.Contains(p.a.proc.Out.String(), "dropped privileges") {
		t.Errorf("no log line about the privilege drop:\n%s", p.a.proc.Out)
	}
}

// TestSIGHUPReload: a valid new config is applied with its changes logged
// (an address added to the interface, new IKE settings renegotiated); an
// invalid one, or one that needs a restart, is refused and the old
// configuration keeps carrying traffic.
func TestSIGHUPReload(t *testing.T) {
	p := startPair(t, pairOpt{keying: "ikev2"})
	p.waitEstablished(15 * time.Second)
	before := p.mustStatus(p.a).IKE.SPIi
	orig, err := os.ReadFile(p.a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	hup := func(cfg string) {
		t.Helper()
		if err := os.WriteFile(p.a.cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p.a.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	logHas := func(what string) bool {
		return netns.WaitFor(10*time.Second, func() bool { return strings.Contains(p.a.proc.Out.String(), what) })
	}

	// Valid: one more address, a different DPD interval.
	next := strings.Replace(string(orig), `addresses = [`, `addresses = ["198.19.7.0/31", `, 1) + "dpd = \"30s\"\n"
	hup(next)
	if !logHas("ike.dpd") {
		t.Fatalf("no reload log line for ike.dpd:\n%s", p.a.proc.Out)
	}
	if out, _ := p.a.ns.Run("ip", "-o", "addr", "show", "dev", "gre0"); !strings.Contains(out, "198.19.7.0/31") {
		t.Errorf("the new address is not on gre0:\n%s", out)
	}
	ok := netns.WaitFor(20*time.Second, func() bool {
		st, err := p.status(p.a)
		return err == nil && st.IKE != nil && st.IKE.State == "established" && st.IKE.SPIi != before && st.Outbound != nil
	})
	if !ok {
		t.Fatalf("no new IKE SA after the reload changed ike.dpd (was %s): %+v\n%s", before, p.mustStatus(p.a).IKE, p.a.proc.Out)
	}
	p.waitEstablished(15 * time.Second)
	if got, out := p.ping(p.a, p.b.tun4.Addr(), 3); got < 3 {
		t.Errorf("ping after reload: %d of 3\n%s", got, out)
	}

	// Invalid, then restart-only: both refused, traffic still flows.
	hup(strings.Replace(next, "[tunnel]", "[tunnel]\nmtu = 5", 1))
	if !logHas("reload refused: invalid configuration") {
		t.Errorf("an invalid config was not refused:\n%s", p.a.proc.Out)
	}
	hup(strings.Replace(next, "[tunnel]", "[tunnel]\nmtu = 1400", 1))
	if !logHas("tunnel.mtu changed: a restart is needed") {
		t.Errorf("an MTU change was not refused:\n%s", p.a.proc.Out)
	}
	if got, out := p.ping(p.a, p.b.tun4.Addr(), 3); got < 3 {
		t.Errorf("ping after refused reloads: %d of 3\n%s", got, out)
	}
	if st := p.mustStatus(p.a); st.MTU != 1442 {
		t.Errorf("MTU %d after a refused reload, want 1442", st.MTU)
	}

	// Only the log level: applied, and the SAs are left alone.
	kept := p.mustStatus(p.a)
	hup(next + "[log]\nlevel = \"debug\"\n")
	if !logHas(`"key": "log.level"`) && !logHas("log.level") {
		t.Errorf("no reload log line for log.level:\n%s", p.a.proc.Out)
	}
	if st := p.mustStatus(p.a); st.IKE.SPIi != kept.IKE.SPIi || st.Outbound == nil || st.Outbound.SPI != kept.Outbound.SPI {
		t.Errorf("a log-level reload renegotiated: IKE %s -> %s, outbound %v -> %v", kept.IKE.SPIi, st.IKE.SPIi, kept.Outbound, st.Outbound)
	}
	if strings.Contains(p.a.proc.Out.String(), p.psk) {
		t.Error("the log shows the PSK")
	}
}

// TestKeysForWireshark: `gresec keys --wireshark DIR` writes tables with
// which tshark, given nothing else, decrypts a capture of the tunnel: the
// IKE_AUTH exchange (both identities inside) and the ESP (GRE carrying the
// pings).
func TestKeysForWireshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatalf("tshark is not installed: `sudo make test` installs it")
	}
	p := startPair(t, pairOpt{keying: "ikev2"})
	p.waitEstablished(15 * time.Second)
	before := p.mustStatus(p.a).IKE.SPIi

	pcap := filepath.Join(t.TempDir(), "tunnel.pcap")
	dump, err := p.a.ns.Start("tcpdump", "-n", "--immediate-mode", "-Z", "root", "-i", "veth-a", "-w", pcap, "esp or udp port 500")
	if err != nil {
		t.Fatal(err)
	}
	if !netns.WaitFor(5*time.Second, func() bool { return strings.Contains(dump.Out.String(), "listening on") }) {
		t.Fatalf("tcpdump did not start: %s", dump.Out)
	}
	// A reload with new IKE settings makes a negotiate a new IKE SA, so the
	// capture holds a whole IKE_SA_INIT and IKE_AUTH.
	cfg, _ := os.ReadFile(p.a.cfgPath)
	os.WriteFile(p.a.cfgPath, append(cfg, "dpd = \"30s\"\n"...), 0o600)
	p.a.proc.Cmd.Process.Signal(syscall.SIGHUP)
	if !netns.WaitFor(20*time.Second, func() bool {
		st, err := p.status(p.a)
		return err == nil && st.IKE != nil && st.IKE.State == "established" && st.IKE.SPIi != before && st.Outbound != nil
	}) {
		t.Fatalf("no new IKE SA after the reload:\n%s", p.a.proc.Out)
	}
	p.waitEstablished(10 * time.Second)
	if got, out := p.ping(p.a, p.b.tun4.Addr(), 3); got < 3 {
		t.Fatalf("ping: %d of 3\n%s", got, out)
	}
	dir := filepath.Join(t.TempDir(), "wireshark")
	out, err := exec.Command(gresecBin, "keys", "--wireshark", dir, "-s", p.a.sock).CombinedOutput()
	if err != nil {
		t.Fatalf("gresec keys: %v\n%s", err, out)
	}
	dump.Stop(5 * time.Second)
	for _, f := range []string{"esp_sa", "ikev2_decryption_table", "preferences"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: want a 0600 file: %v", f, err)
		}
	}
	tshark := func(filter string, fields ...string) []string {
		args := []string{"-n", "-r", pcap, "-Y", filter, "-T", "fields"}
		for _, f := range fields {
			args = append(args, "-e", f)
		}
		cmd := exec.Command("tshark", args...)
		cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+dir)
		got, err := cmd.Output()
		if err != nil {
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			files, _ := os.ReadFile(filepath.Join(dir, "ikev2_decryption_table"))
			t.Fatalf("tshark -Y %q: %v\n%s\nikev2_decryption_table has %d bytes", filter, err, stderr, len(files))
		}
		return strings.Fields(string(got))
	}
	if icmp := tshark("esp && gre && icmp", "icmp.type"); len(icmp) < 6 {
		t.Errorf("tshark decrypted %d ICMP packets inside ESP/GRE, want >= 6 (3 requests, 3 replies): %v", len(icmp), icmp)
	}
	ids := strings.Join(tshark("isakmp.exchangetype == 35", "isakmp.id.data.ipv4_addr"), " ")
	for _, want := range []string{p.a.under.Addr().String(), p.b.under.Addr().String()} {
		if !strings.Contains(ids, want) {
			t.Errorf("tshark found IDs %q in the decrypted IKE_AUTH, want %s among them", ids, want)
		}
	}
}
