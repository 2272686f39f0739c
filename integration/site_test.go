// Package integration runs the real gresec binary between two network
// namespaces joined by veth: real TUN devices, real raw sockets, real
// kernel stacks on both ends.
package integration

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
	"github.com/gresec/gresec/tunnel"
)

var gresecBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gresec-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gresecBin = filepath.Join(dir, "gresec")
	// Without cgo, as `make build` builds it: daemon.user's privilege drop
	// changes every thread, which a cgo binary cannot.
	build := exec.Command("go", "build", "-o", gresecBin, "../cmd/gresec")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if os.Getenv("GRESEC_RACE") == "1" {
		// A debugging aid: the daemons under the race detector (which
		// needs cgo, so tests of the privilege drop fail), exiting 66
		// on a race, which the tests that stop them report.
		build = exec.Command("go", "build", "-race", "-o", gresecBin, "../cmd/gresec")
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building gresec: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// side is one end of the test tunnel.
type side struct {
	ns      *netns.NS
	under   netip.Prefix
	tun4    netip.Prefix
	tun6    netip.Prefix
	spiOut  uint32
	keyOut  string
	keyIn   string
	cfgPath string
	sock    string
	proc    *netns.Proc
}

// pair is two sites with gresec running between them.
type pair struct {
	t        *testing.T
	a, b     *side
	dir      string
	psk      string
	wrongPSK bool
	ikeExtra string // more [ike] lines
	aExtra   string // more sections for side a
	// tunnelExtra: more [tunnel] lines for both sides.
	tunnelExtra string
	// ipsecExtra: more [ipsec] lines for both sides.
	ipsecExtra string
	// bResponds: b only responds (initiate = false); a initiates.
	bResponds bool
}

type pairOpt struct {
	keying   string // static or none
	ipv6     bool   // IPv6 underlay
	wrongKey bool   // b decrypts with a key a does not use
	ikeExtra string // more [ike] lines for keying ikev2
	aExtra   string // more sections for side a's config
	// tunnelExtra: more [tunnel] lines for both sides.
	tunnelExtra string
	// ipsecExtra: more [ipsec] lines for both sides.
	ipsecExtra string
	// bResponds makes b responder-only (initiate = false).
	bResponds bool
}

func newKey(t *testing.T) string {
	k := make([]byte, 36)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return "0x" + hex.EncodeToString(k)
}

// startPair builds two namespaces, links them and starts gresec in each,
// returning when both answer on their control sockets. Everything is
// removed at the end of the test.
func startPair(t *testing.T, o pairOpt) *pair {
	t.Helper()
	p := newPair(t, o)
	for _, s := range []*side{p.a, p.b} {
		p.start(s)
	}
	return p
}

// newPair is startPair without starting gresec: linked namespaces and
// both sides' configs written.
func newPair(t *testing.T, o pairOpt) *pair {
	t.Helper()
	nstest.RequireRoot(t, "network namespaces, TUN, raw sockets")
	if o.keying == "" {
		o.keying = "static"
	}
	p := &pair{t: t, dir: t.TempDir(), psk: "gresec-test-" + newKey(t)[2:34], ikeExtra: o.ikeExtra, wrongPSK: o.wrongKey, aExtra: o.aExtra, bResponds: o.bResponds,
		tunnelExtra: o.tunnelExtra, ipsecExtra: o.ipsecExtra}
	p.a = &side{under: netip.MustParsePrefix("198.18.0.1/24"), tun4: netip.MustParsePrefix("198.19.0.0/31"), tun6: netip.MustParsePrefix("2001:db8:19::/127"), spiOut: 0x1001}
	p.b = &side{under: netip.MustParsePrefix("198.18.0.2/24"), tun4: netip.MustParsePrefix("198.19.0.1/31"), tun6: netip.MustParsePrefix("2001:db8:19::1/127"), spiOut: 0x1002}
	if o.ipv6 {
		p.a.under = netip.MustParsePrefix("2001:db8:18::1/64")
		p.b.under = netip.MustParsePrefix("2001:db8:18::2/64")
	}
	p.a.keyOut, p.b.keyOut = newKey(t), newKey(t)
	p.a.keyIn, p.b.keyIn = p.b.keyOut, p.a.keyOut
	if o.wrongKey {
		p.b.keyIn = newKey(t)
	}
	p.linkSites("gresec-it")
	p.writeConfig(p.a, p.b, o.keying)
	p.writeConfig(p.b, p.a, o.keying)
	return p
}

// linkSites makes both sites' namespaces, joined by veth (veth-a, veth-b)
// with the underlay addresses, removed at cleanup.
func (p *pair) linkSites(prefix string) {
	for _, s := range []*side{p.a, p.b} {
		ns, err := netns.Create(netns.Unique(prefix))
		if err != nil {
			p.t.Fatal(err)
		}
		s.ns = ns
		p.t.Cleanup(func() { ns.Delete() })
	}
	if err := netns.Link(p.a.ns, "veth-a", []netip.Prefix{p.a.under}, p.b.ns, "veth-b", []netip.Prefix{p.b.under}); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pair) writeConfig(s, peer *side, keying string) {
	name := "a"
	if s == p.b {
		name = "b"
	}
	s.cfgPath = filepath.Join(p.dir, name+".toml")
	s.sock = filepath.Join(p.dir, name+".sock")
	c := fmt.Sprintf(`[tunnel]
interface = "gre0"
local = %q
remote = %q
addresses = [%q, %q]
mss_clamp = true
%s[ipsec]
keying = %q
%s[control]
socket = %q
`, s.under.Addr(), peer.under.Addr(), s.tun4, s.tun6, p.tunnelExtra, keying, p.ipsecExtra, s.sock)
	switch keying {
	case "static":
		c += fmt.Sprintf("[static]\nspi_out = 0x%x\nspi_in = 0x%x\nkey_out = %q\nkey_in = %q\n", s.spiOut, peer.spiOut, s.keyOut, s.keyIn)
	case "ikev2", "ikev1":
		psk := filepath.Join(p.dir, name+".psk")
		key := p.psk
		if p.wrongPSK && s == p.b {
			key += "-but-not-the-same"
		}
		if err := os.WriteFile(psk, []byte(key+"\n"), 0o600); err != nil {
			p.t.Fatal(err)
		}
		// Both initiate, as the iked + IOS pair (`active`) does: the two
		// IKE SAs that cross at start-up are resolved to one.
		c += fmt.Sprintf("[ike]\ninitiate = %t\npsk_file = %q\n%s", !(p.bResponds && s == p.b), psk, p.ikeExtra)
	}
	if s == p.a {
		c += p.aExtra
	}
	if err := os.WriteFile(s.cfgPath, []byte(c), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pair) start(s *side) {
	t := p.t
	proc, err := s.ns.Start(gresecBin, "up", "-c", s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s.proc = proc
	t.Cleanup(func() {
		if s.proc != proc {
			return // killed on purpose and restarted (p.kill, the soak run)
		}
		if err := proc.Stop(5 * time.Second); err != nil {
			t.Errorf("gresec did not stop cleanly on SIGTERM: %v\n%s", err, proc.Out)
		}
	})
	if !netns.WaitFor(10*time.Second, func() bool { _, err := p.status(s); return err == nil }) {
		t.Fatalf("gresec did not come up in %s within 10 s:\n%s", s.ns.Name, proc.Out)
	}
}

// kill ends s's gresec with SIGKILL (by PID), as a crash or power loss
// would: it deletes nothing and tells the peer nothing.
func (p *pair) kill(s *side) {
	p.t.Helper()
	if err := s.proc.Cmd.Process.Kill(); err != nil {
		p.t.Fatal(err)
	}
	if !netns.WaitFor(5*time.Second, func() bool { done, _ := s.proc.Exited(); return done }) {
		p.t.Fatalf("gresec in %s did not die on SIGKILL", s.ns.Name)
	}
	s.proc = nil
}

// status asks one side's gresec for its counters over the control socket.
func (p *pair) status(s *side) (tunnel.Status, error) {
	var st tunnel.Status
	out, err := exec.Command(gresecBin, "status", "--json", "-s", s.sock).CombinedOutput()
	if err != nil {
		return st, fmt.Errorf("%v: %s", err, out)
	}
	err = json.Unmarshal(out, &st)
	return st, err
}

func (p *pair) mustStatus(s *side) tunnel.Status {
	p.t.Helper()
	st, err := p.status(s)
	if err != nil {
		p.t.Fatal(err)
	}
	return st
}

// ping sends count echo requests from one side to dst and returns the
// number of replies.
func (p *pair) ping(from *side, dst netip.Addr, count int) (int, string) {
	// -w: wait for late replies too (-W alone gives up two round trips
	// after the last request once any reply came).
	out, _ := from.ns.RunTimeout(time.Duration(count+15)*time.Second, "ping", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2", "-w", fmt.Sprint(count+10), dst.String())
	return replies(out), out
}

// replies reads the reply count from ping's summary line.
func replies(out string) int {
	var sent, recv int
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "packets transmitted") {
			fmt.Sscanf(line, "%d packets transmitted, %d received", &sent, &recv)
		}
	}
	return recv
}
