package interop

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
)

// BIRD 2 OSPF across a route-based VTI: gresec (mode = "tunnel", encap =
// "none", IKEv2) on the host, and on the guest the Linux kernel's xfrm
// interface keyed by strongSwan (if_id 42), BIRD on each end. What a user
// of `tunnel mode ipsec ipv4` on a router expects: an adjacency over the
// tunnel interface, each site's LAN prefix learned from the other, and
// LAN-to-LAN traffic following the learned routes through the SAs.

// The sites' LANs: a veth pair in the host namespace (this host's kernel
// has no dummy interfaces), a dummy interface in the guest.
var (
	hostLAN  = netip.MustParsePrefix("198.18.20.1/24")
	guestLAN = netip.MustParsePrefix("198.18.21.1/24")
)

// birdOSPF is the configuration of one site: OSPFv2 point-to-point on the
// tunnel interface with fast timers (as integration/ospf_test.go), the LAN
// as a stub, learned routes exported to the kernel.
func birdOSPF(routerID netip.Addr, tunnelIf, lanIf string) string {
	return fmt.Sprintf(`router id %s;
protocol device { scan time 1; }
protocol kernel { ipv4 { import none; export all; }; }
protocol ospf v2 {
	ipv4 { import all; export none; };
	area 0 {
		interface %q { type ptp; hello 1; dead 4; };
		interface %q { stub yes; };
	};
}
`, routerID, tunnelIf, lanIf)
}

var reBirdNeighbor = regexp.MustCompile(`(?m)^(\S+)\s+\d+\s+Full/PtP\s+\S+\s+(\S+)`)

// fullNeighbor returns the router id of a Full/PtP neighbour on iface in
// `birdc show ospf neighbors` output, or "".
func fullNeighbor(out, iface string) string {
	for _, m := range reBirdNeighbor.FindAllStringSubmatch(out, -1) {
		if m[2] == iface {
			return m[1]
		}
	}
	return ""
}

func TestBirdOSPFStrongSwanVTIKernel(t *testing.T) {
	l := newLab(t)
	if _, err := exec.LookPath("bird"); err != nil {
		t.Fatal("bird (Debian bird2) is not installed on the host: `make deps-test` installs it")
	}
	l.mode, l.encap = "tunnel", "none"
	psk := l.guestStrongSwanChild("mode = tunnel\n\t\t\t\tlocal_ts = 0.0.0.0/0,::/0\n\t\t\t\tremote_ts = 0.0.0.0/0,::/0\n\t\t\t\tif_id_in = 42\n\t\t\t\tif_id_out = 42")
	st := l.startGresecIKE(psk, true)
	if st.Mode != "tunnel" || st.Encap != "none" {
		t.Fatalf("gresec status shows mode %q encap %q, want the VTI (tunnel, none)", st.Mode, st.Encap)
	}
	hostID, guestID := hostInner4.Addr(), guestIn4.Addr()

	// The guest: its xfrm interface (multicast on, for the OSPF hellos to
	// 224.0.0.5), a dummy LAN, and BIRD.
	l.guestRun(fmt.Sprintf(`set -e
ip link add xfrm1 type xfrm dev eth0 if_id 42
ip addr add %[1]s dev xfrm1
ip link set xfrm1 mtu %[2]d multicast on up
ip link add lan0 type dummy
ip addr add %[3]s dev lan0
ip link set lan0 up
cat > /tmp/bird.conf <<'CONF'
%[4]sCONF
bird -c /tmp/bird.conf -s /tmp/bird.ctl -P /tmp/bird.pid
for i in $(seq 50); do [ -s /tmp/bird.pid ] && break; sleep 0.1; done
test -s /tmp/bird.pid`, guestIn4, st.MTU, guestLAN, birdOSPF(guestID, "xfrm1", "lan0")))
	t.Cleanup(func() {
		// Ended by its PID before the guest goes down with it.
		if out, err := l.g.Run(`kill "$(cat /tmp/bird.pid)"`); err != nil {
			t.Logf("stopping the guest's bird: %v: %s", err, out)
		}
	})

	// The host: a veth pair for its LAN, and BIRD on gresec's TUN.
	for _, args := range [][]string{
		{"link", "add", "lan0", "type", "veth", "peer", "name", "lan0p"},
		{"addr", "add", hostLAN.String(), "dev", "lan0"},
		{"link", "set", "lan0", "up"},
		{"link", "set", "lan0p", "up"},
	} {
		l.hostRun("ip", args...)
	}
	dir := t.TempDir()
	conf, sock := filepath.Join(dir, "bird.conf"), filepath.Join(dir, "bird.ctl")
	if err := os.WriteFile(conf, []byte(birdOSPF(hostID, "gre0", "lan0")), 0o600); err != nil {
		t.Fatal(err)
	}
	bird, err := l.ns.Start("bird", "-f", "-c", conf, "-s", sock, "-P", filepath.Join(dir, "bird.pid"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bird.Stop(5 * time.Second); err != nil {
			t.Errorf("host bird did not stop on SIGTERM: %v\n%s", err, bird.Out)
		}
	})
	hostBirdc := func(args ...string) string {
		out, _ := l.ns.RunTimeout(5*time.Second, "birdc", append([]string{"-s", sock}, args...)...)
		return out
	}
	guestBirdc := func(args string) string {
		out, _ := l.g.Run("birdc -s /tmp/bird.ctl " + args)
		return out
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host bird:\n%s\n%s", hostBirdc("show", "ospf", "neighbors"), hostBirdc("show", "route"))
			t.Logf("guest bird:\n%s\n%s", guestBirdc("show ospf neighbors"), guestBirdc("show route"))
		}
	})

	// The adjacency, each end naming the other's router id on its tunnel
	// interface.
	if !netns.WaitFor(40*time.Second, func() bool {
		return fullNeighbor(hostBirdc("show", "ospf", "neighbors"), "gre0") == guestID.String() &&
			fullNeighbor(guestBirdc("show ospf neighbors"), "xfrm1") == hostID.String()
	}) {
		t.Fatalf("OSPF adjacency not Full on both ends within 40 s:\nhost:\n%s\nguest:\n%s",
			hostBirdc("show", "ospf", "neighbors"), guestBirdc("show ospf neighbors"))
	}

	// Each LAN prefix learned by the other site, into its kernel table,
	// through the tunnel interface.
	learned := func(routes, dev string) bool {
		return strings.Contains(routes, "dev "+dev) && strings.Contains(routes, "proto bird")
	}
	if !netns.WaitFor(20*time.Second, func() bool {
		out, _ := l.ns.Run("ip", "route", "show", guestLAN.Masked().String())
		return learned(out, "gre0")
	}) {
		out, _ := l.ns.Run("ip", "route")
		t.Fatalf("host did not learn %s via gre0 from OSPF:\n%s", guestLAN.Masked(), out)
	}
	if !netns.WaitFor(20*time.Second, func() bool {
		out, _ := l.g.Run("ip route show " + hostLAN.Masked().String())
		return learned(out, "xfrm1")
	}) {
		out, _ := l.g.Run("ip route")
		t.Fatalf("guest did not learn %s via xfrm1 from OSPF:\n%s", hostLAN.Masked(), out)
	}

	// LAN to LAN, both ways, every request answered.
	lanPing := func(src, dst netip.Addr) string {
		return fmt.Sprintf("for i in $(seq %d); do ping -c 1 -W 5 -I %s %s; done", pingCount, src, dst)
	}
	out, _ := l.ns.RunTimeout(60*time.Second, "sh", "-c", lanPing(hostLAN.Addr(), guestLAN.Addr()))
	l.checkPing("host LAN", guestLAN.Addr(), 56, out)
	out, _ = l.g.Run(lanPing(guestLAN.Addr(), hostLAN.Addr()))
	l.checkPing("guest LAN", hostLAN.Addr(), 56, out)

	// The hellos and the pings were ESP: the guest kernel decrypted far
	// more than the pings alone, and gresec's inbound SAs too.
	l.checkGuestInbound(l.mustStatus(), 10+pingCount)
	var decrypted uint64
	for _, sa := range l.mustStatus().Inbound {
		decrypted += sa.Packets
	}
	if decrypted < 10+pingCount {
		t.Errorf("gresec decrypted only %d packets; OSPF did not cross the tunnel?", decrypted)
	}
	if gre := l.wire("gre_in") + l.wire("gre_out"); gre != 0 {
		t.Errorf("%d GRE packets on the host's wire; the VTI carries none", gre)
	}
}
