package integration

import (
	"crypto/rand"
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
	"github.com/gresec/gresec/internal/nstest"
	"github.com/gresec/gresec/tunnel"
)

// NAT traversal between two gresec (RFC 7296 §2.23, RFC 3948). Three
// namespaces: site A (198.18.1.2) behind a router namespace R
// (198.18.1.1 inside, 198.18.0.1 outside), site B (198.18.0.2) outside.
//
//   - masquerade: R rewrites A's packets to 198.18.0.1 with random ports
//     (a new port for every new conntrack entry), A initiates; B's remote
//     is R's outside address, and B only responds.
//   - one-to-one: R maps 198.18.0.3 to A both ways (dnat + snat), B
//     initiates to 198.18.0.3; A only responds.
//
// R counts what it forwards with nftables: ESP (protocol 50) must never
// cross, UDP 4500 must.

type natKind int

const (
	natMasquerade natKind = iota
	natOneToOne
	natNone // A and B on one link, no router: for udp_encap = "always"
)

type natLab struct {
	*pair
	router *netns.NS
	keying string // "ikev2" unless startNATLabKeying says otherwise
}

const (
	natInside   = "198.18.1.1/24"
	natOutside  = "198.18.0.1/24"
	natPublicA  = "198.18.0.3" // A's 1:1 public address
	natRouterUp = "198.18.0.1"
)

// startNATLab builds the namespaces and starts gresec on both sites with
// udp_encap = encap and the extra [ike] lines.
func startNATLab(t *testing.T, kind natKind, encap, ikeExtra string) *natLab {
	t.Helper()
	return startNATLabKeying(t, kind, "ikev2", encap, ikeExtra)
}

// startNATLabKeying is startNATLab with keying = "ikev1" or "ikev2".
func startNATLabKeying(t *testing.T, kind natKind, keying, encap, ikeExtra string) *natLab {
	t.Helper()
	nstest.RequireRoot(t, "network namespaces, TUN, raw sockets, nftables NAT")
	p := &pair{t: t, dir: t.TempDir(), psk: "gresec-test-" + newKey(t)[2:34]}
	p.a = &side{under: netip.MustParsePrefix("198.18.1.2/24"), tun4: netip.MustParsePrefix("198.19.0.0/31"), tun6: netip.MustParsePrefix("2001:db8:19::/127")}
	p.b = &side{under: netip.MustParsePrefix("198.18.0.2/24"), tun4: netip.MustParsePrefix("198.19.0.1/31"), tun6: netip.MustParsePrefix("2001:db8:19::1/127")}
	l := &natLab{pair: p, keying: keying}
	mk := func(prefix string) *netns.NS {
		ns, err := netns.Create(netns.Unique(prefix))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Delete() })
		return ns
	}
	p.a.ns, p.b.ns = mk("gresec-nat-a"), mk("gresec-nat-b")
	aRemote, bRemote := p.b.under.Addr(), p.a.under.Addr()
	if kind == natNone {
		if err := netns.Link(p.a.ns, "veth-a", []netip.Prefix{p.a.under}, p.b.ns, "veth-b", []netip.Prefix{p.b.under}); err != nil {
			t.Fatal(err)
		}
		// One link, but in two /24s: each reaches the other over it.
		for _, c := range [][]string{{"a", "ip", "route", "add", "198.18.0.0/24", "dev", "veth-a"}, {"b", "ip", "route", "add", "198.18.1.0/24", "dev", "veth-b"}} {
			ns := p.a.ns
			if c[0] == "b" {
				ns = p.b.ns
			}
			if out, err := ns.Run(c[1], c[2:]...); err != nil {
				t.Fatalf("%v: %v %s", c, err, out)
			}
		}
	} else {
		l.router = mk("gresec-nat-r")
		if err := netns.Link(p.a.ns, "veth-a", []netip.Prefix{p.a.under}, l.router, "rtr-in", []netip.Prefix{netip.MustParsePrefix(natInside)}); err != nil {
			t.Fatal(err)
		}
		if err := netns.Link(l.router, "rtr-out", []netip.Prefix{netip.MustParsePrefix(natOutside)}, p.b.ns, "veth-b", []netip.Prefix{p.b.under}); err != nil {
			t.Fatal(err)
		}
		l.run(p.a.ns, "ip", "route", "add", "default", "via", "198.18.1.1")
		l.run(l.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		rules := `table ip nat {
	chain pre {
		type nat hook prerouting priority -100;
		%s
	}
	chain post {
		type nat hook postrouting priority 100;
		%s
	}
}
table ip watch {
	counter n_esp {}
	counter n_udp4500 {}
	counter n_udp500 {}
	counter n_other {}
	counter n_frag {}
	chain frag_watch {
		type filter hook prerouting priority -450;
		ip frag-off & 0x3fff != 0 counter name n_frag
	}
	chain forward_watch {
		type filter hook forward priority 0;
		ip protocol esp counter name n_esp
		udp dport 4500 counter name n_udp4500 accept
		udp sport 4500 counter name n_udp4500 accept
		udp dport 500 counter name n_udp500 accept
		udp sport 500 counter name n_udp500 accept
		ip protocol icmp accept
		counter name n_other
	}
}
`
		var pre, post string
		switch kind {
		case natMasquerade:
			// random: every new mapping gets a new port, as a NAT that
			// lost its state (or a carrier-grade one) gives.
			post = `oifname "rtr-out" masquerade random`
			bRemote = netip.MustParseAddr(natRouterUp)
		case natOneToOne:
			pre = fmt.Sprintf(`ip daddr %s dnat to %s`, natPublicA, p.a.under.Addr())
			post = fmt.Sprintf(`oifname "rtr-out" ip saddr %s snat to %s`, p.a.under.Addr(), natPublicA)
			bRemote = netip.MustParseAddr(natPublicA)
			l.run(p.b.ns, "ip", "route", "add", natPublicA+"/32", "via", natRouterUp)
		}
		f := filepath.Join(p.dir, "nat.nft")
		if err := os.WriteFile(f, []byte(fmt.Sprintf(rules, pre, post)), 0o600); err != nil {
			t.Fatal(err)
		}
		l.run(l.router, "nft", "-f", f)
	}
	aInit, bInit := kind != natOneToOne, kind == natOneToOne
	// Behind a NAT, A's address is no identity B can know: A names itself
	// (the default ID is the address, which B sees translated).
	l.writeNATConfig(p.a, "a", aRemote, aInit, encap, ikeExtra+"local_id = \"site-a.example\"\n")
	l.writeNATConfig(p.b, "b", bRemote, bInit, encap, ikeExtra+"remote_id = \"site-a.example\"\n")
	p.start(p.a)
	p.start(p.b)
	return l
}

func (l *natLab) run(ns *netns.NS, name string, args ...string) string {
	l.t.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		l.t.Fatalf("%s %v in %s: %v\n%s", name, args, ns.Name, err, out)
	}
	return out
}

func (l *natLab) writeNATConfig(s *side, name string, remote netip.Addr, initiate bool, encap, ikeExtra string) {
	s.cfgPath = filepath.Join(l.dir, name+".toml")
	s.sock = filepath.Join(l.dir, name+".sock")
	psk := filepath.Join(l.dir, name+".psk")
	if err := os.WriteFile(psk, []byte(l.psk+"\n"), 0o600); err != nil {
		l.t.Fatal(err)
	}
	c := fmt.Sprintf(`[tunnel]
interface = "gre0"
local = %q
remote = %q
addresses = [%q, %q]
mss_clamp = true
[ipsec]
keying = %q
udp_encap = %q
nat_keepalive = "2s"
[ike]
initiate = %t
psk_file = %q
%s[control]
socket = %q
[log]
level = "debug"
`, s.under.Addr(), remote, s.tun4, s.tun6, l.keying, encap, initiate, psk, ikeExtra, s.sock)
	if err := os.WriteFile(s.cfgPath, []byte(c), 0o600); err != nil {
		l.t.Fatal(err)
	}
}

// routerCount reads one of R's forward counters.
func (l *natLab) routerCount(name string) uint64 {
	l.t.Helper()
	out := l.run(l.router, "nft", "list", "counter", "ip", "watch", "n_"+name)
	m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
	if m == nil {
		l.t.Fatalf("no packet count in %q", out)
	}
	v, _ := strconv.ParseUint(m[1], 10, 64)
	return v
}

// pingBoth pings across the tunnel both ways, IPv4 and IPv6 inner.
func (l *natLab) pingBoth(when string) {
	l.t.Helper()
	for _, c := range []struct{ from, to *side }{{l.a, l.b}, {l.b, l.a}} {
		for _, dst := range []netip.Addr{c.to.tun4.Addr(), c.to.tun6.Addr()} {
			if got, out := l.ping(c.from, dst, 5); got < 4 {
				l.t.Errorf("%s: ping %s from %s: %d of 5\n%s", when, dst, c.from.ns.Name, got, out)
			}
		}
	}
}

// checkNATStatus checks what each side's status says about the NAT.
func (l *natLab) checkNATStatus(aHere, bThere, faked bool) (a, b tunnel.Status) {
	l.t.Helper()
	a, b = l.mustStatus(l.a), l.mustStatus(l.b)
	for _, c := range []struct {
		name        string
		st          tunnel.Status
		here, there bool
	}{{"a", a, aHere, false}, {"b", b, false, bThere}} {
		n := c.st.IKE.NAT
		if n.Encap != "udp" || n.LocalPort != 4500 || n.NATHere != c.here || n.NATThere != c.there || n.Faked != faked {
			l.t.Errorf("%s: NAT status %+v; want encap udp, local port 4500, nat here %v, at the peer %v, faked %v", c.name, n, c.here, c.there, faked)
		}
		if u := c.st.UDPEncap; u == nil || u.LocalPort != 4500 || u.RemotePort == 0 || u.IKE == 0 {
			l.t.Errorf("%s: ESP-in-UDP status %+v; want port 4500 -> the peer's port, IKE messages on it", c.name, u)
		}
	}
	return a, b
}

// checkOnlyUDP asserts that R forwarded ESP in UDP and never raw ESP.
func (l *natLab) checkOnlyUDP() {
	l.t.Helper()
	if esp := l.routerCount("esp"); esp != 0 {
		l.t.Errorf("the router forwarded %d raw ESP (protocol 50) packets", esp)
	}
	if n := l.routerCount("udp4500"); n < 20 {
		l.t.Errorf("the router forwarded %d UDP 4500 packets; want the pings' ESP in UDP", n)
	}
	if n := l.routerCount("other"); n != 0 {
		l.t.Errorf("the router forwarded %d packets that are neither IKE, ESP in UDP nor ICMP", n)
	}
}

// TestNATMasqueradeInitiatorBehindNAT: A behind a masquerading router
// initiates; both float to 4500, ESP goes in UDP, pings cross both ways,
// the router sees no protocol 50; after the router forgets its mappings
// (conntrack -F; the next one has a new port) traffic recovers: B follows
// A's new mapping on A's next authenticated IKE message (a liveness
// check) or ESP packet.
func TestNATMasqueradeInitiatorBehindNAT(t *testing.T) {
	l := startNATLab(t, natMasquerade, "auto", "dpd = \"5s\"\n")
	l.waitEstablished(20 * time.Second)
	l.pingBoth("through the NAT")
	l.checkNATStatus(true, true, false)
	l.checkOnlyUDP()
	for _, c := range []struct {
		s    *side
		want string
	}{{l.a, "nat: in front of us"}, {l.b, "nat: in front of the peer"}} {
		out, err := exec.Command(gresecBin, "status", "-s", c.s.sock).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "nat-t: esp in udp  udp_encap auto  ike port 4500 -> ") || !strings.Contains(string(out), c.want) {
			t.Errorf("gresec status in %s (%v): want the NAT-T line with %q\n%s", c.s.ns.Name, err, c.want, out)
		}
	}

	// B pings A only: nothing from B can reach A until A sends through
	// the new mapping (its liveness check, dpd = 5 s).
	for _, direction := range []string{"B to A", "A to B"} {
		pre := l.mustStatus(l.b)
		before, oldPort := pre.IKE.Counters.NATRebinds, pre.UDPEncap.RemotePort
		l.run(l.router, "conntrack", "-F")
		start := time.Now()
		from, to := l.b, l.a
		if direction == "A to B" {
			from, to = l.a, l.b
		}
		ok := netns.WaitFor(30*time.Second, func() bool {
			got, _ := l.ping(from, to.tun4.Addr(), 1)
			return got == 1
		})
		if !ok {
			t.Fatalf("%s: no ping reply within 30 s after the router flushed its mappings\nA: %s\nB: %s", direction,
				lastLines(l.a.proc.Out.String(), 15), lastLines(l.b.proc.Out.String(), 15))
		}
		t.Logf("%s: traffic back %.1f s after conntrack -F", direction, time.Since(start).Seconds())
		st := l.mustStatus(l.b)
		switch {
		case st.UDPEncap.RemotePort == oldPort:
			t.Logf("%s: the router's new mapping reused port %d", direction, oldPort)
		case st.IKE.Counters.NATRebinds <= before:
			t.Errorf("%s: B sends to A's new port %d -> %d but counted no rebinding", direction, oldPort, st.UDPEncap.RemotePort)
		case int(st.IKE.NAT.RemotePort) != st.UDPEncap.RemotePort:
			t.Errorf("%s: B's IKE goes to port %d, its ESP to %d", direction, st.IKE.NAT.RemotePort, st.UDPEncap.RemotePort)
		}
	}
	l.pingBoth("after new mappings")
	l.checkOnlyUDP()
	if st := l.mustStatus(l.a); st.IKE.Counters.NATKeepalives == 0 {
		t.Errorf("A, behind the NAT, sent no NAT keepalives (nat_keepalive = 2s)")
	}
	if st := l.mustStatus(l.b); st.IKE.Counters.NATKeepalives != 0 {
		t.Errorf("B, not behind a NAT, sent %d NAT keepalives", st.IKE.Counters.NATKeepalives)
	}
	if !strings.Contains(l.b.proc.Out.String(), "NAT mapping changed") && !strings.Contains(l.b.proc.Out.String(), "new NAT mapping") {
		t.Errorf("B never followed A's new mapping:\n%s", lastLines(l.b.proc.Out.String(), 20))
	}
}

// TestNATOneToOneResponderBehindNAT: B initiates to A's public address,
// which R maps 1:1 to A; A, the responder, finds the NAT in front of
// itself and accepts B's selectors naming that public address for its
// own (transport mode, RFC 7296 §2.23.1).
//
// It also sends TCP both ways: the MTU is the raw path's (udp_encap =
// "auto"), so full segments fit only because the MSS clamp leaves room
// for the UDP header while ESP floats. R counts IP fragments before its
// conntrack reassembles them (priority -450, ahead of defrag's -400).
func TestNATOneToOneResponderBehindNAT(t *testing.T) {
	l := startNATLab(t, natOneToOne, "auto", "")
	l.waitEstablished(20 * time.Second)
	l.pingBoth("through the 1:1 NAT")
	l.checkNATStatus(true, true, false)
	l.checkOnlyUDP()

	data := make([]byte, 2<<20)
	rand.Read(data)
	transferTCP(t, l.a, l.b, l.b.tun4.Addr(), data)
	transferTCP(t, l.b, l.a, l.a.tun4.Addr(), data)
	if n := l.routerCount("frag"); n != 0 {
		t.Errorf("the router received %d IP fragments: the MSS clamp does not leave room for ESP in UDP", n)
	}
}

// TestNATAlwaysWithoutNAT: udp_encap = "always" on both ends of a plain
// link: the faked NAT detection makes both float, ESP travels in UDP
// 4500 (no raw ESP socket traffic at all), no keepalives (no real NAT).
func TestNATAlwaysWithoutNAT(t *testing.T) {
	l := startNATLab(t, natNone, "always", "")
	l.waitEstablished(20 * time.Second)
	l.pingBoth("udp_encap always")
	a, b := l.mustStatus(l.a), l.mustStatus(l.b)
	for _, st := range []tunnel.Status{a, b} {
		n := st.IKE.NAT
		// Each fakes its own hash, so each sees a "NAT" at the other.
		if n.Encap != "udp" || !n.Faked || n.NATHere || !n.NATThere || n.RemotePort != 4500 {
			t.Errorf("NAT status %+v; want udp, faked, the peer's (faked) NAT, peer port 4500", n)
		}
		if st.UDPEncap == nil || st.UDPEncap.RemotePort != 4500 {
			t.Errorf("ESP-in-UDP status %+v", st.UDPEncap)
		}
		if st.Outbound == nil || st.Outbound.Packets < 10 {
			t.Errorf("outbound SA %+v", st.Outbound)
		}
		if st.IKE.Counters.NATKeepalives != 0 {
			t.Errorf("%d NAT keepalives without a NAT", st.IKE.Counters.NATKeepalives)
		}
	}
}
