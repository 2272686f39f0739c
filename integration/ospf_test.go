package integration

import (
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
)

// TestOSPFAcrossTunnel is why GRE sits inside IPsec: BIRD 2 runs OSPF over
// gresec's interface in each site, its multicast hellos (224.0.0.5) cross
// the encrypted tunnel, the adjacency reaches Full, each site learns the
// other's LAN prefix, and the LANs reach each other.
func TestOSPFAcrossTunnel(t *testing.T) {
	ospfAcross(t, pairOpt{})
}

// TestOSPFAcrossVTI is the same over the route-based VTI shape (ESP tunnel
// mode, no GRE: mode = "tunnel", encap = "none") keyed by IKEv2 with the
// default selectors 0.0.0.0/0 and ::/0, what an IOS `tunnel mode ipsec
// ipv4` or a Linux xfrm interface runs OSPF over: the hellos to 224.0.0.5
// are inner packets like any other, the selectors let them through, and
// the TUN is a point-to-point link BIRD treats as such.
func TestOSPFAcrossVTI(t *testing.T) {
	p := ospfAcross(t, pairOpt{keying: "ikev2", ipsecExtra: "mode = \"tunnel\"\n", tunnelExtra: "encap = \"none\"\n"})
	for _, s := range []*side{p.a, p.b} {
		if st := p.mustStatus(s); st.Mode != "tunnel" || st.Encap != "none" {
			t.Errorf("%s: status shows mode %q encap %q, want the VTI (tunnel, none)", s.ns.Name, st.Mode, st.Encap)
		}
	}
}

// ospfAcross runs BIRD 2 OSPF in both sites of a pair started with o,
// across gresec's interface, and checks the adjacency, the learned LAN
// prefixes and LAN-to-LAN pings. It returns the pair.
func ospfAcross(t *testing.T, o pairOpt) *pair {
	nstest.RequireRoot(t, "network namespaces, TUN, raw sockets")
	if _, err := exec.LookPath("bird"); err != nil {
		t.Fatal("bird (Debian bird2) is not installed: `sudo make test` installs it")
	}
	p := startPair(t, o)
	if o.keying == "ikev2" {
		p.waitEstablished(15 * time.Second)
	}
	lans := map[*side]netip.Prefix{
		p.a: netip.MustParsePrefix("198.18.10.1/24"),
		p.b: netip.MustParsePrefix("198.18.11.1/24"),
	}
	birds := map[*side]string{}
	for s, lan := range lans {
		// This kernel has no dummy interfaces: a veth pair inside the site
		// stands in for the LAN.
		for _, cmd := range [][]string{
			{"ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p"},
			{"ip", "addr", "add", lan.String(), "dev", "lan0"},
			{"ip", "link", "set", "lan0", "up"},
			{"ip", "link", "set", "lan0p", "up"},
		} {
			if out, err := s.ns.Run(cmd[0], cmd[1:]...); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
		}
		dir := t.TempDir()
		conf := filepath.Join(dir, "bird.conf")
		sock := filepath.Join(dir, "bird.ctl")
		os.WriteFile(conf, []byte(fmt.Sprintf(`router id %s;
protocol device { scan time 1; }
protocol kernel { ipv4 { import none; export all; }; }
protocol ospf v2 {
	ipv4 { import all; export none; };
	area 0 {
		interface "gre0" { type ptp; hello 1; dead 4; };
		interface "lan0" { stub yes; };
	};
}
`, s.tun4.Addr())), 0o600)
		proc, err := s.ns.Start("bird", "-f", "-c", conf, "-s", sock, "-P", filepath.Join(dir, "bird.pid"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { proc.Stop(5 * time.Second) })
		birds[s] = sock
	}

	birdc := func(s *side, args ...string) string {
		out, _ := s.ns.RunTimeout(5*time.Second, "birdc", append([]string{"-s", birds[s]}, args...)...)
		return out
	}
	for _, s := range []*side{p.a, p.b} {
		if !netns.WaitFor(30*time.Second, func() bool { return strings.Contains(birdc(s, "show", "ospf", "neighbors"), "Full") }) {
			t.Fatalf("%s: OSPF adjacency not Full within 30 s:\n%s\ngresec: %s", s.ns.Name, birdc(s, "show", "ospf", "neighbors"), s.proc.Out)
		}
	}
	peers := map[*side]*side{p.a: p.b, p.b: p.a}
	// Both routes first: a ping needs the way back too.
	for s, peer := range peers {
		want := lans[peer].Masked().String()
		if !netns.WaitFor(15*time.Second, func() bool {
			out, _ := s.ns.Run("ip", "route", "show", want)
			return strings.Contains(out, "gre0")
		}) {
			routes, _ := s.ns.Run("ip", "route")
			t.Fatalf("%s did not learn %s via gre0 from OSPF:\n%s", s.ns.Name, want, routes)
		}
	}
	for s, peer := range peers {
		out, err := s.ns.RunTimeout(15*time.Second, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-w", "12", "-I", lans[s].Addr().String(), lans[peer].Addr().String())
		if got := replies(out); err != nil || got < 2 {
			t.Errorf("LAN %s -> LAN %s: %d of 3 replies\n%s", lans[s].Addr(), lans[peer].Addr(), got, out)
		}
	}
	// The hellos were encrypted: the inbound SAs saw far more than the
	// pings (IKEv2 may have more than one installed).
	var decrypted uint64
	for _, sa := range p.mustStatus(p.b).Inbound {
		decrypted += sa.Packets
	}
	if decrypted < 10 {
		t.Errorf("b decrypted only %d packets; OSPF hellos did not cross the tunnel?", decrypted)
	}
	return p
}
