package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/tunnel"
)

// TestCiscoKeepaliveReflected: the keepalive Cisco IOS sends (built with
// scapy, not with gresec's code), ESP-sealed with AES-GCM by scapy or as
// plain GRE, reaches gresec in site b from site a's address; what comes
// back to a is the keepalive's inner GRE header alone (protocol type 0)
// from b to a, in ESP with b's outbound SPI and next header 47 (scapy
// decrypts it with b's key and checks the ICV) or as plain GRE. That is
// what IOS recognises as its keepalive coming back. Nothing reaches b's
// interface, and b counts one keepalive reflected.
func TestCiscoKeepaliveReflected(t *testing.T) {
	if _, err := exec.LookPath("/usr/bin/python3"); err != nil {
		t.Fatal("/usr/bin/python3 (with python3-scapy) is not installed: `sudo make test` installs it")
	}
	script, err := filepath.Abs("testdata/cisco_keepalive.py")
	if err != nil {
		t.Fatal(err)
	}
	for _, keying := range []string{"static", "none"} {
		t.Run(keying, func(t *testing.T) {
			// Only b runs gresec; scapy in a plays IOS.
			p := newPair(t, pairOpt{keying: keying})
			p.start(p.b)
			args := []string{script, "veth-a", p.a.under.Addr().String(), p.b.under.Addr().String()}
			if keying == "static" {
				args = append(args, "esp", fmt.Sprintf("0x%x", p.a.spiOut), p.a.keyOut, fmt.Sprintf("0x%x", p.b.spiOut), p.b.keyOut)
			} else {
				args = append(args, "none")
			}
			out, err := p.a.ns.RunTimeout(60*time.Second, "/usr/bin/python3", args...)
			if err != nil {
				t.Fatalf("scapy: %v\n%s", err, out)
			}
			var r struct {
				SentInner  string  `json:"sent_inner"`
				SentProto  int     `json:"sent_proto"`
				Answer     *string `json:"answer"`
				Proto      int     `json:"answer_proto"`
				Src        string  `json:"answer_src"`
				Dst        string  `json:"answer_dst"`
				SPI        uint32  `json:"answer_spi"`
				NextHeader int     `json:"answer_next_header"`
			}
			if err := json.Unmarshal([]byte(lastLine(out)), &r); err != nil {
				t.Fatalf("scapy's report: %v\n%s", err, out)
			}
			// The keepalive IOS sends: IPv4 b -> a, TTL 255, protocol 47, GRE type 0.
			wantInner := "45000018" + "00000000" + "ff2f"
			if !strings.HasPrefix(r.SentInner, wantInner) || len(r.SentInner) != 48 || !strings.HasSuffix(r.SentInner, "00000000") {
				t.Fatalf("scapy built %s, not IOS's 24-byte keepalive", r.SentInner)
			}
			st := p.mustStatus(p.b)
			if r.Answer == nil {
				t.Fatalf("nothing came back within 5 s; b's status: drops %v keepalive %+v\n%s", st.Drops, st.Keepalive, p.b.proc.Out)
			}
			wantProto := 47
			if keying == "static" {
				wantProto = 50
				if r.SPI != p.b.spiOut || r.NextHeader != 47 {
					t.Errorf("answer in ESP SPI 0x%x with next header %d; want SPI 0x%x, next header 47 (GRE)", r.SPI, r.NextHeader, p.b.spiOut)
				}
			}
			if r.Proto != wantProto || r.Src != p.b.under.Addr().String() || r.Dst != p.a.under.Addr().String() {
				t.Errorf("answer: protocol %d from %s to %s; want %d from %s to %s", r.Proto, r.Src, r.Dst,
					wantProto, p.b.under.Addr(), p.a.under.Addr())
			}
			if *r.Answer != "00000000" {
				t.Errorf("answer carries %s; want the keepalive's GRE header 00000000 (protocol type 0) and nothing else", *r.Answer)
			}
			if st.Keepalive == nil || st.Keepalive.Reflected != 1 || st.Keepalive.State != "off" {
				t.Errorf("b's keepalive status %+v; want 1 reflected, keepalives off", st.Keepalive)
			}
			if st.Inner.RxPackets != 0 || st.Drops["inner_malformed"] != 0 || st.Drops["gre_protocol"] != 0 {
				t.Errorf("b delivered %d inner packets, drops %v; want nothing delivered or dropped", st.Inner.RxPackets, st.Drops)
			}
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestKeepaliveDownAndUp: two gresec sending keepalives every second
// (retries 3) keep their interfaces up; when b's data plane stops (its
// namespace drops all ESP), both interfaces lose carrier within keepalive
// × (retries + 1) plus a margin, and not before keepalive × (retries - 1);
// BIRD sees the link go down and its OSPF (dead interval 60 s, so only
// the link state can explain it) drops the neighbour at once. When ESP
// flows again both come back up within about one interval, and OSPF forms
// the adjacency again.
func TestKeepaliveDownAndUp(t *testing.T) {
	if _, err := exec.LookPath("bird"); err != nil {
		t.Fatal("bird (Debian bird2) is not installed: `sudo make test` installs it")
	}
	const interval, retries = time.Second, 3
	p := startPair(t, pairOpt{tunnelExtra: fmt.Sprintf("keepalive = %q\nkeepalive_retries = %d\n", interval.String(), retries)})
	sides := []*side{p.a, p.b}
	keepalive := func(s *side) tunnel.KeepaliveStatus {
		st := p.mustStatus(s)
		if st.Keepalive == nil {
			t.Fatalf("%s: no keepalive status", s.ns.Name)
		}
		return *st.Keepalive
	}
	for _, s := range sides {
		if !netns.WaitFor(10*time.Second, func() bool { k := keepalive(s); return k.State == "up" && k.Replied >= 2 }) {
			t.Fatalf("%s: keepalives not coming back: %+v\n%s", s.ns.Name, keepalive(s), s.proc.Out)
		}
	}

	birdc := map[*side]func(args ...string) string{}
	for _, s := range sides {
		birdc[s] = startBirdOSPF(t, s)
	}
	full := func(s *side) bool { return strings.Contains(birdc[s]("show", "ospf", "neighbors"), "Full") }
	for _, s := range sides {
		if !netns.WaitFor(40*time.Second, func() bool { return full(s) }) {
			t.Fatalf("%s: OSPF adjacency not Full within 40 s:\n%s", s.ns.Name, birdc[s]("show", "ospf", "neighbors"))
		}
	}

	// b's data plane stops: nothing it receives over ESP reaches gresec.
	for _, cmd := range [][]string{
		{"nft", "add", "table", "inet", "gresec-ka"},
		{"nft", "add", "chain", "inet", "gresec-ka", "in", "{ type filter hook input priority 0; policy accept; }"},
		{"nft", "add", "rule", "inet", "gresec-ka", "in", "meta", "l4proto", "esp", "drop"},
	} {
		if out, err := p.b.ns.Run(cmd[0], cmd[1:]...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	stopped := time.Now()
	limit := interval*(retries+1) + 3*time.Second // the margin: a loaded machine, status polling
	downAt := map[*side]time.Duration{}
	if !netns.WaitFor(limit, func() bool {
		for _, s := range sides {
			if _, done := downAt[s]; !done && keepalive(s).State == "down" {
				downAt[s] = time.Since(stopped)
			}
		}
		return len(downAt) == 2
	}) {
		t.Fatalf("not down within %s of ESP stopping: a %+v, b %+v", limit, keepalive(p.a), keepalive(p.b))
	}
	for s, d := range downAt {
		if d < interval*(retries-1) {
			t.Errorf("%s went down %s after ESP stopped, before %d keepalives could go unanswered", s.ns.Name, d, retries)
		}
		k := keepalive(s)
		if k.Downs != 1 || k.Unanswered < retries {
			t.Errorf("%s: %+v; want 1 down, at least %d unanswered", s.ns.Name, k, retries)
		}
		t.Logf("%s down %s after ESP stopped", s.ns.Name, d.Round(100*time.Millisecond))
	}
	if out, _ := exec.Command(gresecBin, "status", "-s", p.a.sock).CombinedOutput(); !strings.Contains(string(out), "keepalive: line protocol down  every 1s, retries 3") {
		t.Errorf("gresec status does not show the tunnel down:\n%s", out)
	}
	link, _ := p.a.ns.Run("ip", "link", "show", "dev", "gre0")
	if !strings.Contains(link, "NO-CARRIER") || !strings.Contains(link, "state DOWN") || !strings.Contains(link, ",UP") {
		t.Errorf("a's interface while keepalives go unanswered: want up, NO-CARRIER, state DOWN:\n%s", link)
	}
	if !netns.WaitFor(3*time.Second, func() bool { return strings.Contains(birdc[p.a]("show", "interfaces"), "LinkDown") }) {
		t.Errorf("BIRD does not see a's interface down:\n%s", birdc[p.a]("show", "interfaces"))
	}
	if !netns.WaitFor(3*time.Second, func() bool { return !full(p.a) }) {
		t.Errorf("BIRD's OSPF kept the neighbour over a link without carrier:\n%s", birdc[p.a]("show", "ospf", "neighbors"))
	}

	// The data plane returns.
	if out, err := p.b.ns.Run("nft", "delete", "table", "inet", "gresec-ka"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	returned := time.Now()
	limit = interval + 3*time.Second
	for _, s := range sides {
		if !netns.WaitFor(limit, func() bool { return keepalive(s).State == "up" }) {
			t.Fatalf("%s: not up within %s of ESP flowing again: %+v", s.ns.Name, limit, keepalive(s))
		}
		t.Logf("%s up %s after ESP returned", s.ns.Name, time.Since(returned).Round(100*time.Millisecond))
	}
	link, _ = p.a.ns.Run("ip", "link", "show", "dev", "gre0")
	if strings.Contains(link, "NO-CARRIER") || !strings.Contains(link, "LOWER_UP") {
		t.Errorf("a's interface after keepalives came back: still no carrier:\n%s", link)
	}
	for _, s := range sides {
		if !netns.WaitFor(40*time.Second, func() bool { return full(s) }) {
			t.Errorf("%s: OSPF adjacency not Full again within 40 s:\n%s", s.ns.Name, birdc[s]("show", "ospf", "neighbors"))
		}
	}
	if got, out := p.ping(p.a, p.b.tun4.Addr(), 3); got < 2 {
		t.Errorf("ping across after the tunnel came back: %d of 3\n%s", got, out)
	}
	for _, s := range sides {
		if k := keepalive(s); k.Downs != 1 || k.Reflected == 0 {
			t.Errorf("%s: %+v; want exactly 1 down and the peer's keepalives sent back", s.ns.Name, k)
		}
	}
}

// startBirdOSPF runs BIRD 2 in s with OSPF on gre0 (hello 1 s, dead 60
// s: only a link going down ends the adjacency quickly) and returns a
// birdc for it. BIRD is stopped by PID at the end of the test.
func startBirdOSPF(t *testing.T, s *side) func(args ...string) string {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "bird.conf")
	sock := filepath.Join(dir, "bird.ctl")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`router id %s;
protocol device { scan time 1; }
protocol ospf v2 {
	ipv4 { import all; export none; };
	area 0 {
		interface "gre0" { type ptp; hello 1; dead 60; };
	};
}
`, s.tun4.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	proc, err := s.ns.Start("bird", "-f", "-c", conf, "-s", sock, "-P", filepath.Join(dir, "bird.pid"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Stop(5 * time.Second) })
	return func(args ...string) string {
		out, _ := s.ns.RunTimeout(5*time.Second, "birdc", append([]string{"-s", sock}, args...)...)
		return out
	}
}

// TestKeepaliveOverIKEv2: with IKE-negotiated SAs the keepalives of both
// sides come back once the CHILD_SA is installed, and the interfaces are
// up (a keepalive due before that counts as unanswered, not as an error).
func TestKeepaliveOverIKEv2(t *testing.T) {
	p := startPair(t, pairOpt{keying: "ikev2", tunnelExtra: "keepalive = \"1s\"\n"})
	for _, s := range []*side{p.a, p.b} {
		if !netns.WaitFor(30*time.Second, func() bool {
			k := p.mustStatus(s).Keepalive
			return k != nil && k.State == "up" && k.Replied >= 3 && k.Reflected >= 3
		}) {
			t.Fatalf("%s: keepalives not coming back over IKE's SAs: %+v\n%s", s.ns.Name, p.mustStatus(s).Keepalive, s.proc.Out)
		}
	}
	if got, out := p.ping(p.a, p.b.tun4.Addr(), 3); got < 2 {
		t.Errorf("ping: %d of 3\n%s", got, out)
	}
}
