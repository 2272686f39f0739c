package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/gresec/gresec/control"
	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/tunnel"
)

// The hub lab (`gresec lab -spokes N`): one hub site running a directory
// of N tunnels in one daemon, N spoke sites each running one tunnel to it,
// all on one underlay LAN (a bridge in the hub's namespace): the hub's
// tunnels share its one raw ESP socket and one UDP 500 socket.

const maxLabSpokes = 200

func labHubAddr() netip.Addr { return netip.MustParseAddr("198.18.0.1") }

func labSpokeAddr(k int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(1 + k/250), byte(1 + k%250)})
}

// labInner is tunnel k's inner address on the hub (side 0) or the spoke.
func labInner(k, side int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 19, byte(k >> 7), byte((k&127)*2 + side)})
}

type hubLab struct {
	self, keying string
	n            int
	dir          string
	hub          *netns.NS
	spokes       []*netns.NS
	hubProc      *netns.Proc
	spokeProcs   []*netns.Proc
	step         int
}

func (l *hubLab) say(format string, args ...any) {
	l.step++
	fmt.Printf("[%d] %s\n", l.step, fmt.Sprintf(format, args...))
}

func runHubLab(self, keying string, n int) error {
	if n < 1 || n > maxLabSpokes {
		return fmt.Errorf("-spokes: expected 1 to %d, got %d", maxLabSpokes, n)
	}
	if keying != "ikev2" && keying != "static" {
		return fmt.Errorf("-spokes: -keying must be ikev2 or static, got %q", keying)
	}
	l := &hubLab{self: self, keying: keying, n: n}
	defer l.teardown()
	return l.run()
}

func (l *hubLab) run() error {
	var err error
	l.say("creating a hub site and %d spoke sites (network namespaces) on one LAN: hub %s, spokes %s...", l.n, labHubAddr(), labSpokeAddr(0))
	if l.hub, err = netns.Create(netns.Unique("gresec-lab-hub")); err != nil {
		return err
	}
	for _, c := range [][]string{
		{"ip", "link", "add", "br0", "type", "bridge"},
		{"ip", "addr", "add", labHubAddr().String() + "/16", "dev", "br0"},
		{"ip", "link", "set", "br0", "up"},
	} {
		if _, err := l.hub.Run(c[0], c[1:]...); err != nil {
			return err
		}
	}
	if l.dir, err = os.MkdirTemp("", "gresec-lab-hub-"); err != nil {
		return err
	}
	tunnels := filepath.Join(l.dir, "tunnels.d")
	if err := os.Mkdir(tunnels, 0o700); err != nil {
		return err
	}
	hubSock := filepath.Join(l.dir, "hub.sock")
	if err := os.WriteFile(filepath.Join(tunnels, "gresec.toml"), []byte(fmt.Sprintf("[control]\nsocket = %q\n", hubSock)), 0o600); err != nil {
		return err
	}
	spokeCfgs := make([]string, l.n)
	for k := 0; k < l.n; k++ {
		ns, err := netns.Create(netns.Unique("gresec-lab-spoke"))
		if err != nil {
			return err
		}
		l.spokes = append(l.spokes, ns)
		veth := fmt.Sprintf("sp%d", k)
		if _, err := netns.Cmd("ip", "link", "add", veth, "netns", l.hub.Name, "type", "veth", "peer", "name", "eth0", "netns", ns.Name); err != nil {
			return err
		}
		for _, c := range [][]string{{"ip", "link", "set", veth, "master", "br0"}, {"ip", "link", "set", veth, "up"}} {
			if _, err := l.hub.Run(c[0], c[1:]...); err != nil {
				return err
			}
		}
		for _, c := range [][]string{{"ip", "addr", "add", labSpokeAddr(k).String() + "/16", "dev", "eth0"}, {"ip", "link", "set", "eth0", "up"}} {
			if _, err := ns.Run(c[0], c[1:]...); err != nil {
				return err
			}
		}
		hubSide, spokeSide, err := l.configs(k)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tunnels, fmt.Sprintf("spoke%03d.toml", k)), []byte(hubSide), 0o600); err != nil {
			return err
		}
		spokeCfgs[k] = filepath.Join(l.dir, fmt.Sprintf("spoke%03d-own.toml", k))
		if err := os.WriteFile(spokeCfgs[k], []byte(spokeSide+fmt.Sprintf("[control]\nsocket = %q\n", l.spokeSock(k))), 0o600); err != nil {
			return err
		}
	}

	l.say("starting the hub: one gresec daemon for %d tunnels (gresec up -d %s)", l.n, tunnels)
	if l.hubProc, err = l.hub.Start(l.self, "up", "-d", tunnels); err != nil {
		return err
	}
	if !netns.WaitFor(30*time.Second, func() bool {
		var st tunnel.DaemonStatus
		return queryJSON(hubSock, &st) == nil && len(st.Tunnels) == l.n
	}) {
		return fmt.Errorf("the hub did not come up with %d tunnels; its output:\n%s", l.n, l.hubProc.Out)
	}
	l.say("starting one gresec in each spoke (keying %s; the spokes initiate)", l.keying)
	for k, ns := range l.spokes {
		p, err := ns.Start(l.self, "up", "-c", spokeCfgs[k])
		if err != nil {
			return err
		}
		l.spokeProcs = append(l.spokeProcs, p)
	}
	start := time.Now()
	// Static keys are up on the hub at once: the spokes' own ends must be
	// too before the pings.
	for k := range l.spokes {
		if !netns.WaitFor(20*time.Second, func() bool { _, err := control.Query(l.spokeSock(k), "status"); return err == nil }) {
			return fmt.Errorf("spoke %d: gresec did not come up; its output:\n%s", k, l.spokeProcs[k].Out)
		}
	}
	var st tunnel.DaemonStatus
	if !netns.WaitFor(time.Duration(30+l.n)*time.Second, func() bool {
		if queryJSON(hubSock, &st) != nil {
			return false
		}
		for _, s := range st.Tunnels {
			if s.Outbound == nil || (s.IKE != nil && s.IKE.State != "established") {
				return false
			}
		}
		return len(st.Tunnels) == l.n
	}) {
		return fmt.Errorf("not every tunnel came up; the hub's output:\n%s", lastLines(l.hubProc.Out.String(), 30))
	}
	fmt.Printf("    all %d tunnels up %.1f s after the spokes started\n", l.n, time.Since(start).Seconds())

	l.say("pinging every spoke from the hub, through its tunnel")
	failed := 0
	for k := 0; k < l.n; k++ {
		out, err := l.hub.RunTimeout(20*time.Second, "ping", "-c", "2", "-i", "0.2", "-W", "2", labInner(k, 1).String())
		if err != nil {
			failed++
			fmt.Print(indent(lastLines(out, 2)))
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d spokes did not answer through their tunnels", failed, l.n)
	}
	fmt.Printf("    %d of %d spokes answered\n", l.n, l.n)

	l.say("gresec status on the hub")
	out, err := l.hub.Run(l.self, "status", "-s", hubSock)
	if err != nil {
		return err
	}
	fmt.Print(indent(out))
	l.say("lab passed: tearing down")
	return nil
}

func (l *hubLab) spokeSock(k int) string {
	return filepath.Join(l.dir, fmt.Sprintf("spoke%03d.sock", k))
}

// configs are tunnel k's two ends: the hub's file and the spoke's.
func (l *hubLab) configs(k int) (hubSide, spokeSide string, err error) {
	tun := func(iface string, local, remote, inner netip.Addr) string {
		return fmt.Sprintf("# gresec lab -spokes, tunnel %d\n[tunnel]\ninterface = %q\nlocal = %q\nremote = %q\naddresses = [\"%s/31\"]\nmss_clamp = true\n\n[ipsec]\nkeying = %q\n",
			k, iface, local, remote, inner, l.keying)
	}
	hubSide = tun(fmt.Sprintf("hub%d", k), labHubAddr(), labSpokeAddr(k), labInner(k, 0))
	spokeSide = tun("gre0", labSpokeAddr(k), labHubAddr(), labInner(k, 1))
	random := func(n int) (string, error) {
		b := make([]byte, n)
		_, err := rand.Read(b)
		return hex.EncodeToString(b), err
	}
	switch l.keying {
	case "ikev2":
		psk, err := random(24)
		if err != nil {
			return "", "", err
		}
		path := filepath.Join(l.dir, fmt.Sprintf("spoke%03d.psk", k))
		if err := os.WriteFile(path, []byte(psk+"\n"), 0o600); err != nil {
			return "", "", err
		}
		hubSide += fmt.Sprintf("\n[ike]\ninitiate = false\npsk_file = %q\n", path)
		spokeSide += fmt.Sprintf("\n[ike]\ninitiate = true\npsk_file = %q\n", path)
	case "static":
		toSpoke, err := random(36)
		if err != nil {
			return "", "", err
		}
		toHub, err := random(36)
		if err != nil {
			return "", "", err
		}
		spiHub, spiSpoke := 0x10000+k, 0x20000+k
		hubSide += fmt.Sprintf("\n[static]\nspi_in = 0x%x\nspi_out = 0x%x\nkey_in = \"0x%s\"\nkey_out = \"0x%s\"\n", spiHub, spiSpoke, toHub, toSpoke)
		spokeSide += fmt.Sprintf("\n[static]\nspi_in = 0x%x\nspi_out = 0x%x\nkey_in = \"0x%s\"\nkey_out = \"0x%s\"\n", spiSpoke, spiHub, toSpoke, toHub)
	}
	return hubSide, spokeSide, nil
}

func (l *hubLab) teardown() {
	for k, p := range l.spokeProcs {
		if err := p.Stop(5 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "spoke %d: gresec: %v\n%s", k, err, p.Out)
		}
	}
	if l.hubProc != nil {
		if err := l.hubProc.Stop(10 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "hub: gresec: %v\n%s", err, l.hubProc.Out)
		}
	}
	for _, n := range l.spokes {
		n.Delete()
	}
	if l.hub != nil {
		l.hub.Delete()
	}
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

// queryJSON asks a control socket for its status into v.
func queryJSON(sock string, v any) error {
	raw, err := control.Query(sock, "status")
	if err != nil {
		return err
	}
	return jsonUnmarshal(raw, v)
}
