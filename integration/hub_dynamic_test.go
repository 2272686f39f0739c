package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/natlab"
	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/nstest"
	"github.com/gresec/gresec/tunnel"
)

// TestHubDynamicPeers: two tunnels with remote = "any" in a hub daemon,
// beside a tunnel with a fixed peer, on the same sockets. Each dynamic
// tunnel is chosen by the identity its peer proves with its own PSK; the
// IKE_SA_INIT of both peers goes to one of them (the sockets cannot tell
// them apart before IKE_AUTH), which hands the other's IKE SA over. A
// peer claiming a dynamic tunnel's identity without its PSK is refused
// and moves nothing; a peer that comes back from a new address takes its
// tunnel there, and the other tunnels keep their SAs.
func TestHubDynamicPeers(t *testing.T) {
	h := newHub(t, false)
	h.addSpoke(1, "static")
	mobile := h.addSpoke(2, "ikev2-any")
	h.addSpoke(3, "ikev2-any")
	// Spoke 5 is strongSwan's charon, with its default mobike = yes: it
	// moves IKE to UDP 4500 for IKE_AUTH, so its SA is handed over there.
	swanDyn := h.addSpoke(5, "ikev2-any")
	// Spoke 4 claims spoke 3's identity with another PSK: its hub-side
	// file goes, its spoke-side config takes the identity.
	impostor := h.addSpoke(4, "ikev2-any")
	if err := os.Remove(spokeFile(h, 4)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(impostor.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(impostor.cfg, []byte(strings.Replace(string(b), `local_id = "s04.example"`, `local_id = "s03.example"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	var st tunnel.DaemonStatus
	if !netns.WaitFor(20*time.Second, func() bool { st, err = h.status(); return err == nil && len(st.Tunnels) == 4 }) {
		t.Fatalf("hub did not come up with 4 tunnels:\n%s", lastLines(h.proc.Out.String(), 40))
	}
	for _, s := range st.Tunnels {
		if want := s.Name != "s01"; s.Dynamic != want || (want && s.Remote != "any") {
			t.Errorf("%s before any peer: dynamic %v, remote %q", s.Name, s.Dynamic, s.Remote)
		}
	}
	for _, n := range []int{1, 2, 3} {
		h.startSpoke(h.spokes[n])
	}
	h.startSwanSpoke(swanDyn)
	st = h.waitReady([]string{"s01", "s02", "s03", "s05"}, 60*time.Second)
	remotes := func(st tunnel.DaemonStatus) map[string]string {
		out := map[string]string{}
		for _, s := range st.Tunnels {
			out[s.Name] = s.Remote
		}
		return out
	}
	if r := remotes(st); r["s02"] != h.spokeAddr(2).String() || r["s03"] != h.spokeAddr(3).String() || r["s05"] != h.spokeAddr(5).String() {
		t.Errorf("dynamic tunnels bound to %v, want s02 %s, s03 %s and s05 %s", r, h.spokeAddr(2), h.spokeAddr(3), h.spokeAddr(5))
	}
	for _, s := range st.Tunnels {
		if s.Name == "s05" && (s.IKE == nil || s.IKE.NAT.LocalPort != 4500) {
			t.Errorf("s05 (charon, mobike = yes): IKE %+v, want it on port 4500", s.IKE)
		}
	}
	if failed := h.pingSpokes([]int{1, 2, 3}); len(failed) > 0 {
		t.Fatalf("no ping through the tunnels to spokes %v\n%s", failed, lastLines(h.proc.Out.String(), 40))
	}
	if n := strings.Count(h.proc.Out.String(), "handing the IKE SA over"); n < 2 {
		t.Errorf("%d IKE SAs handed over, want at least 2 (s03's and s05's: s02's engine answers every new address):\n%s", n, lastLines(h.proc.Out.String(), 40))
	}
	before := spis(st)

	// The impostor: refused, and spoke 3's tunnel stays where it is.
	h.startSpoke(impostor)
	if !netns.WaitFor(20*time.Second, func() bool {
		return strings.Contains(h.proc.Out.String(), "AUTH payload does not match the PSK")
	}) {
		t.Errorf("the hub did not refuse a peer claiming s03.example with another PSK:\n%s", lastLines(h.proc.Out.String(), 40))
	}
	impostor.proc.Stop(5 * time.Second)
	impostor.proc = nil
	st, _ = h.status()
	if r := remotes(st); r["s03"] != h.spokeAddr(3).String() || spis(st)["s03"] != before["s03"] {
		t.Errorf("after the impostor, s03 is bound to %s with SAs %s (was %s, %s)", r["s03"], spis(st)["s03"], h.spokeAddr(3), before["s03"])
	}

	// Spoke 2 comes back from another address.
	moved := netip.AddrFrom4([4]byte{198, 18, 0, 40})
	h.moveSpoke(mobile, moved)
	if !netns.WaitFor(60*time.Second, func() bool {
		st, err = h.status()
		return err == nil && ready(st, []string{"s02"}) && remotes(st)["s02"] == moved.String() && spis(st)["s02"] != before["s02"]
	}) {
		t.Fatalf("s02 did not follow its peer to %s: %v %v\n%s", moved, remotes(st), spis(st), lastLines(h.proc.Out.String(), 40))
	}
	if failed := h.pingSpokes([]int{1, 2, 3}); len(failed) > 0 {
		t.Fatalf("after spoke 2 moved, no ping to spokes %v\n%s", failed, lastLines(h.proc.Out.String(), 40))
	}
	st, _ = h.status()
	after := spis(st)
	for _, name := range []string{"s01", "s03", "s05"} {
		if after[name] != before[name] {
			t.Errorf("%s SAs changed when spoke 2 moved: %s -> %s", name, before[name], after[name])
		}
	}
	if st.UnknownSPI != 0 || st.UnroutedIKE != 0 {
		t.Errorf("shared sockets dropped %d ESP packets with unknown SPIs and %d IKE datagrams", st.UnknownSPI, st.UnroutedIKE)
	}
}

// TestHubDynamicPeersBehindOneNAT: two dynamic peers behind one
// masquerading NAT (random ports) reach the hub from the same public
// address: the hub tells them apart by identity, then by their IKE SPIs
// and ESP SPIs, and each tunnel binds to its own NAT mapping.
func TestHubDynamicPeersBehindOneNAT(t *testing.T) {
	nstest.RequireRoot(t, "network namespaces, nftables, TUN, raw sockets")
	lab, err := natlab.New(natlab.Options{Kind: natlab.Masquerade, RandomPorts: true, Prefix: "gresec-dnat"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	work := t.TempDir()
	dir := filepath.Join(work, "tunnels.d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	h := &hub{t: t, ns: lab.Outside, dir: dir, work: work, sock: filepath.Join(work, "hub.sock")}
	write := func(path, body string) {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "gresec.toml"), fmt.Sprintf("[control]\nsocket = %q\n", h.sock))
	second := netip.MustParseAddr("198.18.1.3")
	if _, err := lab.Inside.Run("ip", "addr", "add", second.String()+"/24", "dev", natlab.InsideIf, "nodad"); err != nil {
		t.Fatal(err)
	}
	for i, local := range []netip.Addr{lab.InsideAddr.Addr(), second} {
		n := i + 1
		psk := filepath.Join(work, fmt.Sprintf("d%d.psk", n))
		write(psk, "gresec-dnat-test-"+newKey(t)[2:34]+"\n")
		write(filepath.Join(dir, fmt.Sprintf("d%d.toml", n)), fmt.Sprintf(
			"[tunnel]\ninterface = \"hd%d\"\nlocal = %q\nremote = \"any\"\naddresses = [%q]\n[ipsec]\nkeying = \"ikev2\"\n[ike]\nremote_id = \"d%d.example\"\npsk_file = %q\n",
			n, lab.OutsideAddr.Addr(), hubInner(n), n, psk))
		write(filepath.Join(work, fmt.Sprintf("spoke%d.toml", n)), fmt.Sprintf(
			"[tunnel]\ninterface = \"sd%d\"\nlocal = %q\nremote = %q\naddresses = [\"%s/31\"]\n[ipsec]\nkeying = \"ikev2\"\n[ike]\nlocal_id = \"d%d.example\"\npsk_file = %q\ndpd = \"5s\"\n[control]\nsocket = %q\n",
			n, local, lab.OutsideAddr.Addr(), spokeInner(n), n, psk, filepath.Join(work, fmt.Sprintf("spoke%d.sock", n))))
	}
	h.start()
	for n := 1; n <= 2; n++ {
		proc, err := lab.Inside.Start(gresecBin, "up", "-c", filepath.Join(work, fmt.Sprintf("spoke%d.toml", n)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { proc.Stop(5 * time.Second) })
	}
	st := h.waitReady([]string{"d1", "d2"}, 60*time.Second)
	peers := map[string]bool{}
	for _, s := range st.Tunnels {
		if s.Remote != lab.Public.String() || s.IKE == nil || !s.IKE.NAT.NATThere || s.IKE.NAT.Encap != "udp" {
			t.Errorf("%s: remote %s, IKE %+v; want the NAT's address %s, ESP in UDP", s.Name, s.Remote, s.IKE, lab.Public)
			continue
		}
		peers[s.IKE.NAT.Peer] = true
	}
	if len(peers) != 2 {
		t.Errorf("the two tunnels send to %v: want two NAT mappings", peers)
	}
	if failed := h.pingSpokes([]int{1, 2}); len(failed) > 0 {
		t.Fatalf("no ping through the tunnels to spokes %v\n%s", failed, lastLines(h.proc.Out.String(), 40))
	}
	// DPD both ways runs on each tunnel's own SAs for a while.
	before := spis(st)
	time.Sleep(12 * time.Second)
	st, _ = h.status()
	if after := spis(st); after["d1"] != before["d1"] || after["d2"] != before["d2"] || !ready(st, []string{"d1", "d2"}) {
		t.Errorf("SAs changed behind one NAT: %v -> %v\n%s", before, after, lastLines(h.proc.Out.String(), 40))
	}
	if failed := h.pingSpokes([]int{1, 2}); len(failed) > 0 {
		t.Fatalf("later, no ping to spokes %v", failed)
	}
	if st.UnknownSPI != 0 || st.UnroutedIKE != 0 {
		t.Errorf("shared sockets dropped %d ESP packets with unknown SPIs and %d IKE datagrams", st.UnknownSPI, st.UnroutedIKE)
	}
}
