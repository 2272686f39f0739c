package integration

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
	"github.com/gresec/gresec/internal/swan"
	"github.com/gresec/gresec/tunnel"
)

// hub is one gresec daemon running a directory of tunnels to many spoke
// sites, each a namespace with its own one-tunnel gresec. All sites share
// one underlay LAN (a bridge in the hub's namespace), so every tunnel of
// the hub has the same local address: one raw ESP socket and one UDP 500
// socket carry them all.
type hub struct {
	t      *testing.T
	ns     *netns.NS
	dir    string // the hub's tunnel directory
	work   string
	sock   string
	proc   *netns.Proc
	spokes map[int]*spoke
	ipv6   bool // IPv6 underlay
}

type spoke struct {
	n      int
	keying string
	ns     *netns.NS
	cfg    string
	sock   string
	proc   *netns.Proc
	addr   netip.Addr // its underlay address once moved (moveSpoke)
	id     string     // its IKE identity, for a dynamic peer ("ikev2-any")
}

var hubAddr4 = netip.MustParseAddr("198.18.0.1")

func spokeAddr4(n int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + n)}) }

// hubAddr and spokeAddr are the underlay addresses, IPv6 with h.ipv6.
func (h *hub) hubAddr() netip.Addr {
	if h.ipv6 {
		return netip.MustParseAddr("2001:db8:18::1")
	}
	return hubAddr4
}

func (h *hub) spokeAddr(n int) netip.Addr {
	if h.ipv6 {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x18, 14: 0, 15: byte(10 + n)})
	}
	return spokeAddr4(n)
}

func (h *hub) prefixLen() string {
	if h.ipv6 {
		return "/64"
	}
	return "/24"
}
func hubInner(n int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(n), 0}), 31)
}
func spokeInner(n int) netip.Addr    { return netip.AddrFrom4([4]byte{198, 19, byte(n), 1}) }
func spokeName(n int) string         { return fmt.Sprintf("s%02d", n) }
func spokeFile(h *hub, n int) string { return filepath.Join(h.dir, spokeName(n)+".toml") }

func newHub(t *testing.T, ipv6 bool) *hub {
	nstest.RequireRoot(t, "network namespaces, TUN, raw sockets")
	h := &hub{t: t, work: t.TempDir(), spokes: map[int]*spoke{}, ipv6: ipv6}
	h.dir = filepath.Join(h.work, "tunnels.d")
	h.sock = filepath.Join(h.work, "hub.sock")
	if err := os.Mkdir(h.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ns, err := netns.Create(netns.Unique("gresec-hub"))
	if err != nil {
		t.Fatal(err)
	}
	h.ns = ns
	t.Cleanup(func() { ns.Delete() })
	for _, c := range [][]string{
		{"ip", "link", "add", "br0", "type", "bridge"},
		{"ip", "addr", "add", h.hubAddr().String() + h.prefixLen(), "dev", "br0", "nodad"},
		{"ip", "link", "set", "br0", "up"},
	} {
		if _, err := ns.Run(c[0], c[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(h.dir, "gresec.toml"), []byte(fmt.Sprintf("[control]\nsocket = %q\n", h.sock)), 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}

// addSpoke makes spoke n's site and both ends' configs; startSpoke runs it.
func (h *hub) addSpoke(n int, keying string) *spoke {
	t := h.t
	ns, err := netns.Create(netns.Unique("gresec-spoke"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Delete() })
	veth := fmt.Sprintf("hv%02d", n)
	if _, err := netns.Cmd("ip", "link", "add", veth, "netns", h.ns.Name, "type", "veth", "peer", "name", "eth0", "netns", ns.Name); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{{"ip", "link", "set", veth, "master", "br0"}, {"ip", "link", "set", veth, "up"}} {
		if _, err := h.ns.Run(c[0], c[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range [][]string{{"ip", "addr", "add", h.spokeAddr(n).String() + h.prefixLen(), "dev", "eth0", "nodad"}, {"ip", "link", "set", "eth0", "up"}} {
		if _, err := ns.Run(c[0], c[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	s := &spoke{n: n, keying: keying, ns: ns, cfg: filepath.Join(h.work, spokeName(n)+"-spoke.toml"), sock: filepath.Join(h.work, spokeName(n)+".sock")}
	// "ikev2-udp": IKEv2 with ESP in UDP 4500 (udp_encap = "always"), on
	// the hub's shared NAT traversal socket. "ikev2-any": IKEv2 to a
	// dynamic peer (remote = "any" at the hub), known by its identity.
	encap, remote, dynamic := "", h.spokeAddr(n).String(), false
	switch keying {
	case "ikev2-udp":
		keying, encap = "ikev2", "udp_encap = \"always\"\n"
	case "ikev2-any":
		keying, remote, dynamic = "ikev2", "any", true
	}
	hubSide := fmt.Sprintf("[tunnel]\ninterface = \"hk%02d\"\nlocal = %q\nremote = %q\naddresses = [%q]\n[ipsec]\nkeying = %q\n%s",
		n, h.hubAddr(), remote, hubInner(n), keying, encap)
	spokeSide := fmt.Sprintf("[tunnel]\ninterface = \"gre0\"\nlocal = %q\nremote = %q\naddresses = [\"%s/31\"]\n[ipsec]\nkeying = %q\n%s[control]\nsocket = %q\n",
		h.spokeAddr(n), h.hubAddr(), spokeInner(n), keying, encap, s.sock)
	switch keying {
	case "static":
		k1, k2 := newKey(t), newKey(t)
		spiHub, spiSpoke := 0x10000+n, 0x20000+n
		hubSide += fmt.Sprintf("[static]\nspi_in = 0x%x\nspi_out = 0x%x\nkey_in = %q\nkey_out = %q\n", spiHub, spiSpoke, k1, k2)
		spokeSide += fmt.Sprintf("[static]\nspi_in = 0x%x\nspi_out = 0x%x\nkey_in = %q\nkey_out = %q\n", spiSpoke, spiHub, k2, k1)
	case "ikev2", "ikev1":
		psk := filepath.Join(h.work, spokeName(n)+".psk")
		if err := os.WriteFile(psk, []byte("gresec-hub-test-"+newKey(t)[2:34]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The spoke initiates, the hub only responds: as a hub does.
		hubSide += fmt.Sprintf("[ike]\ninitiate = false\npsk_file = %q\n", psk)
		spokeSide += fmt.Sprintf("[ike]\ninitiate = true\npsk_file = %q\n", psk)
		if dynamic {
			s.id = spokeName(n) + ".example"
			hubSide += fmt.Sprintf("remote_id = %q\n", s.id)
			spokeSide += fmt.Sprintf("local_id = %q\n", s.id)
		}
		if keying == "ikev1" { // its phase 1 cannot carry the AEAD defaults
			v1 := "proposals = [\"aes128-sha1-modp2048\"]\nesp_proposals = [\"aes128-sha1-modp2048\"]\n"
			hubSide, spokeSide = hubSide+v1, spokeSide+v1
		}
	}
	if err := os.WriteFile(spokeFile(h, n), []byte(hubSide), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.cfg, []byte(spokeSide), 0o600); err != nil {
		t.Fatal(err)
	}
	h.spokes[n] = s
	return s
}

// moveSpoke gives spoke s the underlay address to (stopping it first):
// a dynamic peer that comes back from elsewhere.
func (h *hub) moveSpoke(s *spoke, to netip.Addr) {
	t := h.t
	if s.proc != nil {
		s.proc.Stop(5 * time.Second)
		s.proc = nil
	}
	b, err := os.ReadFile(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	from := s.addr
	if from == (netip.Addr{}) {
		from = h.spokeAddr(s.n)
	}
	for _, c := range [][]string{
		{"ip", "addr", "del", from.String() + h.prefixLen(), "dev", "eth0"},
		{"ip", "addr", "add", to.String() + h.prefixLen(), "dev", "eth0", "nodad"},
	} {
		if _, err := s.ns.Run(c[0], c[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	conf := strings.Replace(string(b), fmt.Sprintf("local = %q", from), fmt.Sprintf("local = %q", to), 1)
	if err := os.WriteFile(s.cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.addr = to
	h.startSpoke(s)
}

func (h *hub) startSpoke(s *spoke) {
	proc, err := s.ns.Start(gresecBin, "up", "-c", s.cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	s.proc = proc
	h.t.Cleanup(func() {
		if s.proc == proc {
			proc.Stop(5 * time.Second)
		}
	})
}

// startSwanSpoke runs strongSwan's charon as spoke s (made by addSpoke
// with keying ikev2), initiating to the hub with the same PSK. It moves no
// ESP here (the kernel has none), so it proves the hub's IKE only.
func (h *hub) startSwanSpoke(s *spoke) *swan.Charon {
	t := h.t
	if err := swan.Install(); err != nil {
		t.Fatalf("strongSwan: %v", err)
	}
	psk, err := os.ReadFile(filepath.Join(h.work, spokeName(s.n)+".psk"))
	if err != nil {
		t.Fatal(err)
	}
	conf := swan.Conn{Local: h.spokeAddr(s.n).String(), Remote: h.hubAddr().String(), LocalID: s.id, PSK: swan.Key(strings.TrimSpace(string(psk)))}
	ch := startCharon(t, s.ns.Name, conf.SwanctlConf())
	if err := ch.Initiate("gre"); err != nil {
		t.Fatalf("charon initiate: %v", err)
	}
	return ch
}

func (h *hub) start() {
	proc, err := h.ns.Start(gresecBin, "up", "-d", h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	h.proc = proc
	h.t.Cleanup(func() {
		if err := proc.Stop(10 * time.Second); err != nil {
			h.t.Errorf("hub did not stop cleanly on SIGTERM: %v\n%s", err, lastLines(proc.Out.String(), 30))
		}
	})
}

func (h *hub) status() (tunnel.DaemonStatus, error) {
	var st tunnel.DaemonStatus
	out, err := exec.Command(gresecBin, "status", "--json", "-s", h.sock).CombinedOutput()
	if err != nil {
		return st, fmt.Errorf("%v: %s", err, out)
	}
	err = json.Unmarshal(out, &st)
	return st, err
}

// ready reports whether every tunnel of names is in the hub's status with
// an outbound SA (and, under IKE, an established IKE SA).
func ready(st tunnel.DaemonStatus, names []string) bool {
	by := map[string]tunnel.Status{}
	for _, s := range st.Tunnels {
		by[s.Name] = s
	}
	for _, n := range names {
		s, ok := by[n]
		if !ok || s.Outbound == nil || (s.IKE != nil && s.IKE.State != "established") {
			return false
		}
	}
	return true
}

// spis is each tunnel's inbound and outbound SPIs, as the hub reports them.
func spis(st tunnel.DaemonStatus) map[string]string {
	out := map[string]string{}
	for _, s := range st.Tunnels {
		v := ""
		if s.Outbound != nil {
			v = "out " + s.Outbound.SPI
		}
		for _, in := range s.Inbound {
			v += " in " + in.SPI
		}
		out[s.Name] = v
	}
	return out
}

func (h *hub) waitReady(names []string, timeout time.Duration) tunnel.DaemonStatus {
	h.t.Helper()
	var st tunnel.DaemonStatus
	if !netns.WaitFor(timeout, func() bool {
		var err error
		st, err = h.status()
		return err == nil && ready(st, names)
	}) {
		h.t.Fatalf("hub tunnels %v not all up within %s: %v\n%s", names, timeout, spis(st), lastLines(h.proc.Out.String(), 40))
	}
	return st
}

// pingSpokes pings each spoke's inner address from the hub, all spokes at
// once, and returns those that did not answer.
func (h *hub) pingSpokes(ns []int) []int {
	type result struct {
		n  int
		ok bool
	}
	res := make(chan result, len(ns))
	for _, n := range ns {
		go func() {
			out, _ := h.ns.RunTimeout(20*time.Second, "ping", "-c", "3", "-i", "0.3", "-W", "2", "-w", "10", spokeInner(n).String())
			res <- result{n, replies(out) >= 2}
		}()
	}
	var failed []int
	for range ns {
		if r := <-res; !r.ok {
			failed = append(failed, r.n)
		}
	}
	return failed
}

// countSockets counts the hub namespace's sockets in a /proc/net table
// whose local port (for raw sockets: the protocol) is port.
func (h *hub) countSockets(table string, port uint16) int {
	out, err := h.ns.Run("cat", "/proc/net/"+table)
	if err != nil {
		h.t.Fatal(err)
	}
	want := fmt.Sprintf(":%04X", port)
	n := 0
	for _, line := range strings.Split(out, "\n")[1:] {
		if f := strings.Fields(line); len(f) > 1 && strings.HasSuffix(f[1], want) {
			n++
		}
	}
	return n
}

// TestHubManyTunnels runs one hub daemon with 12 tunnels (5 static, 5
// IKEv2 to gresec spokes, two of them with ESP in UDP 4500, 1 IKEv2 to a
// dynamic peer (remote = "any") that comes back from a new address, 1
// IKEv2 to a strongSwan spoke) to 12 spoke sites on one shared raw ESP socket, one
// UDP 500 and one UDP 4500 socket; pings through all
// gresec spokes (strongSwan moves no ESP on this kernel: its tunnel must
// be established); reloads removing one tunnel and adding another while
// the rest keep their SPIs; kills one spoke and checks that no other
// tunnel notices.
// swanSpoke is the spoke that is strongSwan's charon; dynamicSpoke's
// tunnel has remote = "any", and it changes its address.
const (
	swanSpoke    = 12
	dynamicSpoke = 11
)

func TestHubManyTunnels(t *testing.T) {
	h := newHub(t, false)
	var all []int
	for n := 1; n <= 12; n++ {
		keying := "static"
		switch {
		case n == dynamicSpoke:
			keying = "ikev2-any"
		case n == 8 || n == 10:
			keying = "ikev2-udp"
		case n%2 == 0:
			keying = "ikev2"
		}
		h.addSpoke(n, keying)
		all = append(all, n)
	}
	h.start()
	// The spokes start once the hub runs all its tunnels, so that none of
	// their packets comes before its tunnel: then every packet the shared
	// sockets see has its tunnel.
	if !netns.WaitFor(20*time.Second, func() bool { st, err := h.status(); return err == nil && len(st.Tunnels) == 12 }) {
		t.Fatalf("hub did not come up with 12 tunnels:\n%s", lastLines(h.proc.Out.String(), 40))
	}
	for _, n := range all {
		if n == swanSpoke {
			h.startSwanSpoke(h.spokes[n])
			continue
		}
		h.startSpoke(h.spokes[n])
	}
	pingable := func(ns []int) []int {
		var out []int
		for _, n := range ns {
			if n != swanSpoke {
				out = append(out, n)
			}
		}
		return out
	}
	nameList := func(ns []int) []string {
		var out []string
		for _, n := range ns {
			out = append(out, spokeName(n))
		}
		return out
	}
	before := h.waitReady(nameList(all), 60*time.Second)
	if len(before.Tunnels) != 12 {
		t.Fatalf("hub runs %d tunnels, want 12", len(before.Tunnels))
	}
	if raw, udp, natt := h.countSockets("raw", 50), h.countSockets("udp", 500), h.countSockets("udp", 4500); raw != 1 || udp != 1 || natt != 1 {
		t.Errorf("hub namespace has %d raw ESP sockets, %d UDP 500 and %d UDP 4500 sockets, want one of each", raw, udp, natt)
	}
	// The ESP-in-UDP tunnels really carry ESP in UDP.
	for _, st := range before.Tunnels {
		floated := st.UDPEncap != nil && st.UDPEncap.RemotePort == 4500
		if want := st.Name == "s08" || st.Name == "s10"; floated != want {
			t.Errorf("%s: ESP in UDP to port 4500 = %v, want %v (%+v)", st.Name, floated, want, st.UDPEncap)
		}
	}
	if failed := h.pingSpokes(pingable(all)); len(failed) > 0 {
		t.Fatalf("no ping through the tunnels to spokes %v\n%s", failed, lastLines(h.proc.Out.String(), 40))
	}
	// Spokes ping the hub too.
	for _, n := range []int{1, 2} {
		if out, _ := h.spokes[n].ns.RunTimeout(20*time.Second, "ping", "-c", "3", "-i", "0.3", "-w", "10", hubInner(n).Addr().String()); replies(out) < 2 {
			t.Errorf("spoke %d cannot ping the hub:\n%s", n, out)
		}
	}
	// Every packet found its tunnel by SPI: none dropped as unknown.
	if st, _ := h.status(); st.UnknownSPI != 0 || st.UnroutedIKE != 0 {
		t.Errorf("shared sockets dropped %d ESP packets with unknown SPIs and %d IKE datagrams", st.UnknownSPI, st.UnroutedIKE)
	}
	before, _ = h.status()
	spisBefore := spis(before)

	// Reload: s01 (static) goes, s13 (IKEv2) comes, s04's IKE lifetime
	// changes (applied in place: its IKE SA is negotiated again) and s06's
	// MTU (only a restart applies it: that tunnel alone restarts); the
	// others keep their SAs.
	if err := os.Remove(spokeFile(h, 1)); err != nil {
		t.Fatal(err)
	}
	edit := func(n int, from, to string) {
		b, err := os.ReadFile(spokeFile(h, n))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), from) {
			t.Fatalf("%s has no %q", spokeFile(h, n), from)
		}
		if err := os.WriteFile(spokeFile(h, n), []byte(strings.Replace(string(b), from, to, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	edit(4, "[ike]\n", "[ike]\nlifetime = \"2h\"\n")
	edit(6, "[ipsec]\n", "mtu = 1400\n[ipsec]\n")
	changed := map[int]bool{4: true, 6: true}
	h.spokes[1].proc.Stop(5 * time.Second)
	s13 := h.addSpoke(13, "ikev2")
	h.startSpoke(s13)
	if err := h.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	rest := all[1:]
	// Done when s13 is up (the daemon starts new tunnels last), s01 gone,
	// and s04 and s06 established on new SAs.
	var after tunnel.DaemonStatus
	if !netns.WaitFor(60*time.Second, func() bool {
		var err error
		if after, err = h.status(); err != nil || !ready(after, nameList(append(append([]int{}, rest...), 13))) {
			return false
		}
		now := spis(after)
		_, s01 := now["s01"]
		return !s01 && now["s04"] != spisBefore["s04"] && now["s06"] != spisBefore["s06"]
	}) {
		t.Fatalf("reload not applied within 60 s: %v\n%s", spis(after), lastLines(h.proc.Out.String(), 40))
	}
	for _, s := range after.Tunnels {
		if s.Name == "s01" {
			t.Errorf("s01 still runs after its file was removed")
		}
	}
	if !netns.WaitFor(5*time.Second, func() bool {
		_, err := h.ns.Run("ip", "link", "show", "hk01")
		return err != nil
	}) {
		t.Errorf("hk01 still exists after the reload removed its tunnel")
	}
	spisAfter := spis(after)
	for _, n := range rest {
		same := spisAfter[spokeName(n)] == spisBefore[spokeName(n)]
		if changed[n] && same {
			t.Errorf("%s kept its SAs across a reload that changed its IKE settings: %s", spokeName(n), spisAfter[spokeName(n)])
		} else if !changed[n] && !same {
			t.Errorf("%s SAs changed across the reload: %s -> %s", spokeName(n), spisBefore[spokeName(n)], spisAfter[spokeName(n)])
		}
	}
	if out, _ := h.ns.Run("ip", "link", "show", "hk06"); !strings.Contains(out, "mtu 1400") {
		t.Errorf("hk06 after its tunnel restarted with mtu = 1400:\n%s", out)
	}
	if failed := h.pingSpokes(pingable(append(append([]int{}, rest...), 13))); len(failed) > 0 {
		t.Fatalf("after the reload, no ping to spokes %v\n%s", failed, lastLines(h.proc.Out.String(), 40))
	}

	// Kill spoke 2 (IKEv2) without a word to the hub: the others go on.
	if err := h.spokes[2].proc.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	h.spokes[2].proc.Stop(time.Second)
	others := []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}
	if failed := h.pingSpokes(pingable(others)); len(failed) > 0 {
		t.Fatalf("with spoke 2 dead, no ping to spokes %v", failed)
	}
	final, _ := h.status()
	spisFinal := spis(final)
	for _, n := range others {
		if spisFinal[spokeName(n)] != spisAfter[spokeName(n)] {
			t.Errorf("%s SAs changed when spoke 2 died: %s -> %s", spokeName(n), spisAfter[spokeName(n)], spisFinal[spokeName(n)])
		}
	}

	// The dynamic spoke comes back from another address: its tunnel
	// follows, the others keep their SAs.
	moved := h.spokeAddr(40)
	h.moveSpoke(h.spokes[dynamicSpoke], moved)
	dyn := spokeName(dynamicSpoke)
	var st tunnel.DaemonStatus
	if !netns.WaitFor(60*time.Second, func() bool {
		var err error
		st, err = h.status()
		if err != nil || !ready(st, []string{dyn}) || spis(st)[dyn] == spisFinal[dyn] {
			return false
		}
		for _, s := range st.Tunnels {
			if s.Name == dyn {
				return s.Remote == moved.String()
			}
		}
		return false
	}) {
		t.Fatalf("%s did not follow its peer to %s: %v\n%s", dyn, moved, spis(st), lastLines(h.proc.Out.String(), 40))
	}
	if failed := h.pingSpokes([]int{dynamicSpoke, 3}); len(failed) > 0 {
		t.Fatalf("after spoke %d moved, no ping to spokes %v", dynamicSpoke, failed)
	}
	for _, n := range others {
		if now := spis(st)[spokeName(n)]; n != dynamicSpoke && now != spisFinal[spokeName(n)] {
			t.Errorf("%s SAs changed when spoke %d moved: %s -> %s", spokeName(n), dynamicSpoke, spisFinal[spokeName(n)], now)
		}
	}

	// The one-line listing names every tunnel.
	out, err := exec.Command(gresecBin, "status", "-s", h.sock).CombinedOutput()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "12 tunnels") || !strings.Contains(string(out), "s13          hk13") {
		t.Errorf("status listing:\n%s", out)
	}
	out, err = exec.Command(gresecBin, "status", "-s", h.sock, "-i", "hk04").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tunnel: s04") || !strings.Contains(string(out), "interface: hk04") {
		t.Errorf("status -i hk04: %v\n%s", err, out)
	}
}

// TestHubIPv6Underlay: the shared sockets on an IPv6 underlay (raw ESP
// over IPv6 delivers no IP header; the sender comes from the socket
// address), static and IKEv2 tunnels side by side in one daemon.
func TestHubIPv6Underlay(t *testing.T) {
	h := newHub(t, true)
	for n := 1; n <= 4; n++ {
		h.addSpoke(n, []string{"static", "ikev2"}[n%2])
	}
	h.start()
	if !netns.WaitFor(20*time.Second, func() bool { st, err := h.status(); return err == nil && len(st.Tunnels) == 4 }) {
		t.Fatalf("hub did not come up with 4 tunnels:\n%s", lastLines(h.proc.Out.String(), 40))
	}
	for n := 1; n <= 4; n++ {
		h.startSpoke(h.spokes[n])
	}
	h.waitReady([]string{"s01", "s02", "s03", "s04"}, 30*time.Second)
	if raw := h.countSockets("raw6", 50); raw != 1 {
		t.Errorf("hub namespace has %d raw IPv6 ESP sockets, want 1", raw)
	}
	if failed := h.pingSpokes([]int{1, 2, 3, 4}); len(failed) > 0 {
		t.Fatalf("no ping through the tunnels to spokes %v\n%s", failed, lastLines(h.proc.Out.String(), 40))
	}
	if st, _ := h.status(); st.UnknownSPI != 0 || st.UnroutedIKE != 0 {
		t.Errorf("shared sockets dropped %d ESP packets with unknown SPIs and %d IKE datagrams", st.UnknownSPI, st.UnroutedIKE)
	}
}

// TestHubIKEv1BesideStatic: IKEv1 tunnels in a daemon of many join its
// shared sockets on one local address, beside an IKEv2 and a static-key
// tunnel: one raw ESP socket, one UDP 500 (IKEv1 routed by the peer's
// address, IKEv2 by SPI) and one UDP 4500 (an IKEv1 spoke with
// udp_encap = "always" floats IKE and ESP onto it); pings cross all of
// them, every datagram finds its tunnel, and the IKEv1 tunnel comes back
// on new SAs when its spoke restarts while the others keep theirs.
func TestHubIKEv1BesideStatic(t *testing.T) {
	h := newHub(t, false)
	h.addSpoke(1, "ikev1")
	h.addSpoke(2, "ikev2")
	h.addSpoke(3, "static")
	h.addSpoke(4, "ikev1")
	// Spoke 4: IKEv1 with ESP in UDP 4500 on both sides.
	for _, f := range []string{spokeFile(h, 4), h.spokes[4].cfg} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "keying = \"ikev1\"\n") {
			t.Fatalf("%s has no IKEv1 keying", f)
		}
		if err := os.WriteFile(f, []byte(strings.Replace(string(b), "keying = \"ikev1\"\n", "keying = \"ikev1\"\nudp_encap = \"always\"\n", 1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	all := []int{1, 2, 3, 4}
	names := []string{"s01", "s02", "s03", "s04"}
	h.start()
	if !netns.WaitFor(20*time.Second, func() bool { st, err := h.status(); return err == nil && len(st.Tunnels) == len(all) }) {
		t.Fatalf("hub did not come up with %d tunnels:\n%s", len(all), lastLines(h.proc.Out.String(), 40))
	}
	for _, n := range all {
		h.startSpoke(h.spokes[n])
	}
	v1Up := func(st tunnel.DaemonStatus, name string) bool {
		for _, s := range st.Tunnels {
			if s.Name == name {
				return s.IKEv1 != nil && len(s.IKEv1.Phase1) > 0 && s.IKEv1.Phase1[0].State == "QM_IDLE"
			}
		}
		return false
	}
	h.waitReady(names, 30*time.Second)
	if raw, udp, natt := h.countSockets("raw", 50), h.countSockets("udp", 500), h.countSockets("udp", 4500); raw != 1 || udp != 1 || natt != 1 {
		t.Errorf("hub namespace has %d raw ESP sockets, %d UDP 500 and %d UDP 4500 sockets, want one of each", raw, udp, natt)
	}
	before, err := h.status()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range before.Tunnels {
		if want := st.Name == "s01" || st.Name == "s04"; v1Up(before, st.Name) != want {
			t.Errorf("%s: IKEv1 phase 1 in QM_IDLE: want %v (%+v)", st.Name, want, st.IKEv1)
		}
		floated := st.UDPEncap != nil && st.UDPEncap.RemotePort == 4500
		if want := st.Name == "s04"; floated != want {
			t.Errorf("%s: ESP in UDP to port 4500 = %v, want %v (%+v)", st.Name, floated, want, st.UDPEncap)
		}
		if st.Name == "s04" && (st.IKEv1 == nil || st.IKEv1.NAT == nil || st.IKEv1.NAT.Encap != "udp" || st.IKEv1.NAT.RemotePort != 4500 || st.UDPEncap == nil || st.UDPEncap.IKE == 0) {
			t.Errorf("s04: IKEv1 did not move IKE and ESP to the shared UDP 4500: %+v, %+v", st.IKEv1, st.UDPEncap)
		}
	}
	if failed := h.pingSpokes(all); len(failed) > 0 {
		t.Fatalf("no ping through the tunnels to spokes %v\n%s", failed, lastLines(h.proc.Out.String(), 40))
	}
	if st, _ := h.status(); st.UnknownSPI != 0 || st.UnroutedIKE != 0 {
		t.Errorf("shared sockets dropped %d ESP packets with unknown SPIs and %d IKE datagrams", st.UnknownSPI, st.UnroutedIKE)
	}

	// Spoke 1 restarts: it deletes its SAs on the way out and runs Main
	// Mode again; the hub's IKEv1 tunnel follows on new SAs, the others
	// keep theirs.
	before, _ = h.status()
	spisBefore := spis(before)
	if err := h.spokes[1].proc.Stop(5 * time.Second); err != nil {
		t.Fatalf("spoke 1 did not stop cleanly: %v", err)
	}
	h.startSpoke(h.spokes[1])
	var after tunnel.DaemonStatus
	if !netns.WaitFor(30*time.Second, func() bool {
		after, err = h.status()
		return err == nil && ready(after, names) && v1Up(after, "s01") && spis(after)["s01"] != spisBefore["s01"]
	}) {
		t.Fatalf("s01 not up on new SAs within 30 s of its spoke's restart: %v\n%s", spis(after), lastLines(h.proc.Out.String(), 40))
	}
	spisAfter := spis(after)
	for _, n := range []string{"s02", "s03", "s04"} {
		if spisAfter[n] != spisBefore[n] {
			t.Errorf("%s SAs changed when spoke 1 restarted: %s -> %s", n, spisBefore[n], spisAfter[n])
		}
	}
	if failed := h.pingSpokes(all); len(failed) > 0 {
		t.Fatalf("after spoke 1 restarted, no ping to spokes %v\n%s", failed, lastLines(h.proc.Out.String(), 40))
	}
	if st, _ := h.status(); st.UnknownSPI != 0 || st.UnroutedIKE != 0 {
		t.Errorf("shared sockets dropped %d ESP packets with unknown SPIs and %d IKE datagrams", st.UnknownSPI, st.UnroutedIKE)
	}
}
