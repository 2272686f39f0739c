package integration

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/gresec/gresec/internal/nstest"
)

// TestLabShapes: `gresec lab` builds each tunnel shape between two real
// sites, IKEv2-keyed, pings across both ways (IPv4 and IPv6 inner) and
// reports the shape in both statuses; a pair that makes no sense is
// refused by the sites' config with the key named.
func TestLabShapes(t *testing.T) {
	nstest.RequireRoot(t, "network namespaces, TUN, raw sockets")
	for _, me := range [][2]string{{"tunnel", "gre"}, {"tunnel", "none"}, {"transport", "ipip"}} {
		t.Run(me[0]+"+"+me[1], func(t *testing.T) {
			out, err := exec.Command(gresecBin, "lab", "-keying", "ikev2", "-mode", me[0], "-encap", me[1], "-seconds", "0").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "lab passed") {
				t.Fatalf("gresec lab: %v\n%s", err, out)
			}
			if n := strings.Count(string(out), "esp "+me[0]+" mode  encap "+me[1]); n != 2 {
				t.Errorf("%d statuses show the shape, want 2:\n%s", n, out)
			}
		})
	}
	out, err := exec.Command(gresecBin, "lab", "-keying", "static", "-mode", "transport", "-encap", "none", "-seconds", "0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `tunnel.encap: "none" leaves nothing to carry the inner packets in transport mode`) {
		t.Errorf("transport + none: %v\n%s", err, out)
	}
}

// TestLabSpokes: `gresec lab -spokes N` runs a hub daemon with N tunnels
// to N spoke sites, pings every spoke through its tunnel and lists the
// hub's tunnels one line each.
func TestLabSpokes(t *testing.T) {
	nstest.RequireRoot(t, "network namespaces, TUN, raw sockets")
	out, err := exec.Command(gresecBin, "lab", "-spokes", "3").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "lab passed") || !strings.Contains(string(out), "3 of 3 spokes answered") {
		t.Fatalf("gresec lab -spokes 3: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "ikev2 established"); n != 3 {
		t.Errorf("%d tunnels listed established, want 3:\n%s", n, out)
	}
}

// TestLabIKEv1: `gresec lab -keying ikev1` keys the two sites with IKEv1
// Main Mode + Quick Mode, pings across both ways and shows both sites'
// ISAKMP SA in QM_IDLE and a transport-mode IPsec SA; IKEv1 with a shape
// it cannot negotiate is refused by the config, naming the key.
func TestLabIKEv1(t *testing.T) {
	nstest.RequireRoot(t, "network namespaces, TUN, raw sockets")
	out, err := exec.Command(gresecBin, "lab", "-keying", "ikev1", "-seconds", "0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "lab passed") || !strings.Contains(string(out), "ISAKMP SA and IPsec SA established on both sites") {
		t.Fatalf("gresec lab -keying ikev1: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "QM_IDLE"); n != 2 {
		t.Errorf("%d ISAKMP SAs in QM_IDLE, want 2:\n%s", n, out)
	}
	if n := strings.Count(string(out), "in use settings {Transport}"); n != 2 {
		t.Errorf("%d transport-mode IPsec SAs, want 2:\n%s", n, out)
	}
	out, err = exec.Command(gresecBin, "lab", "-keying", "ikev1", "-mode", "tunnel", "-encap", "none", "-seconds", "0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `ipsec.keying: keying = "ikev1" negotiates GRE in transport mode only`) {
		t.Errorf("ikev1 + VTI: %v\n%s", err, out)
	}
}
