package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
)

// IKEv1 NAT traversal (RFC 3947) between two gresec, in the namespaces of
// nat_test.go: Main Mode finds the NAT, IKE floats to UDP 4500, Quick
// Mode negotiates UDP-Encapsulated-Transport, ESP crosses the router in
// UDP only.

var ikev1NATExtra = fmt.Sprintf("proposals = [%q]\nesp_proposals = [%q]\n", ikev1Proposal, ikev1Proposal)

// waitV1 waits for a phase 2 SA on both sides whose ESP goes in UDP
// (encap "udp") or raw ("none").
func (l *natLab) waitV1(encap string) {
	l.t.Helper()
	for _, s := range []*side{l.a, l.b} {
		if !netns.WaitFor(30*time.Second, func() bool {
			st, err := l.status(s)
			return err == nil && st.IKEv1 != nil && st.Outbound != nil && st.IKEv1.NAT != nil && st.IKEv1.NAT.Encap == encap
		}) {
			st, _ := l.status(s)
			l.t.Fatalf("%s: no phase 2 SA with encap %s within 30 s: %+v\n%s", s.ns.Name, encap, st.IKEv1, lastLines(s.proc.Out.String(), 30))
		}
	}
}

// checkV1NAT checks what each side's IKEv1 status says about the NAT.
func (l *natLab) checkV1NAT(aHere, aThere, bHere, bThere bool) {
	l.t.Helper()
	for _, c := range []struct {
		s           *side
		here, there bool
	}{{l.a, aHere, aThere}, {l.b, bHere, bThere}} {
		st := l.mustStatus(c.s)
		n := st.IKEv1.NAT
		if n.Encap != "udp" || n.NATHere != c.here || n.NATThere != c.there || n.RemotePort == 500 {
			l.t.Errorf("%s: IKEv1 NAT status %+v; want udp, nat here %v, at the peer %v, IKE not on port 500", c.s.ns.Name, n, c.here, c.there)
		}
		if u := st.UDPEncap; u == nil || u.LocalPort != 4500 || u.RemotePort == 0 || u.IKE == 0 {
			l.t.Errorf("%s: ESP-in-UDP status %+v; want port 4500 -> the peer's port, IKE messages on it", c.s.ns.Name, u)
		}
		if len(st.IKEv1.Phase1) == 0 || st.IKEv1.Phase1[0].State != "QM_IDLE" {
			l.t.Errorf("%s: phase 1 %+v", c.s.ns.Name, st.IKEv1.Phase1)
		}
	}
}

// TestIKEv1NATMasquerade: A behind a masquerading router initiates Main
// Mode; both float, ESP goes in UDP, pings cross both ways, the router
// sees no protocol 50; A, behind the NAT, sends keepalives while idle;
// after the router forgets its mappings, A's next packets come from a new
// port and B follows them.
func TestIKEv1NATMasquerade(t *testing.T) {
	l := startNATLabKeying(t, natMasquerade, "ikev1", "auto", ikev1NATExtra)
	l.waitV1("udp")
	l.pingBoth("IKEv1 through the NAT")
	l.checkV1NAT(true, false, false, true)
	l.checkOnlyUDP()
	for _, c := range []struct {
		s    *side
		want string
	}{{l.a, "nat: in front of us"}, {l.b, "nat: in front of the peer"}} {
		out, err := exec.Command(gresecBin, "status", "-s", c.s.sock).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "nat-t: esp in udp  udp_encap auto") || !strings.Contains(string(out), c.want) ||
			!strings.Contains(string(out), "in use settings {Transport UDP-Encaps}") {
			t.Errorf("gresec status in %s (%v): want the NAT-T line with %q and UDP-Encaps\n%s", c.s.ns.Name, err, c.want, out)
		}
	}
	if n := l.routerCount("udp500"); n == 0 {
		t.Errorf("no IKE on port 500 crossed the router: Main Mode must start there")
	}

	// Idle for three keepalive intervals (nat_keepalive = 2s).
	time.Sleep(7 * time.Second)
	if st := l.mustStatus(l.a); st.IKEv1.NAT.Keepalives == 0 {
		t.Errorf("A, behind the NAT, sent no NAT keepalives: %+v", st.IKEv1.NAT)
	}
	if st := l.mustStatus(l.b); st.IKEv1.NAT.Keepalives != 0 {
		t.Errorf("B, not behind a NAT, sent %d NAT keepalives", st.IKEv1.NAT.Keepalives)
	}

	oldPort := l.mustStatus(l.b).UDPEncap.RemotePort
	l.run(l.router, "conntrack", "-F")
	start := time.Now()
	if !netns.WaitFor(30*time.Second, func() bool {
		got, _ := l.ping(l.a, l.b.tun4.Addr(), 1)
		return got == 1
	}) {
		t.Fatalf("no ping reply within 30 s after the router flushed its mappings\nA: %s\nB: %s",
			lastLines(l.a.proc.Out.String(), 15), lastLines(l.b.proc.Out.String(), 15))
	}
	t.Logf("traffic back %.1f s after conntrack -F", time.Since(start).Seconds())
	st := l.mustStatus(l.b)
	switch {
	case st.UDPEncap.RemotePort == oldPort:
		t.Logf("the router's new mapping reused port %d", oldPort)
	case st.IKEv1.NAT.Rebinds == 0:
		t.Errorf("B sends to A's new port %d -> %d but counted no rebinding", oldPort, st.UDPEncap.RemotePort)
	case int(st.IKEv1.NAT.RemotePort) != st.UDPEncap.RemotePort:
		t.Errorf("B's IKE goes to port %d, its ESP to %d", st.IKEv1.NAT.RemotePort, st.UDPEncap.RemotePort)
	}
	l.pingBoth("after new mappings")
	l.checkOnlyUDP()
}

// TestIKEv1NATOneToOneResponderBehindNAT: B initiates to A's public
// address; A, the responder, finds the NAT in front of itself and accepts
// B's Quick Mode ID naming that public address for its own.
func TestIKEv1NATOneToOneResponderBehindNAT(t *testing.T) {
	l := startNATLabKeying(t, natOneToOne, "ikev1", "auto", ikev1NATExtra)
	l.waitV1("udp")
	l.pingBoth("IKEv1 through the 1:1 NAT")
	l.checkV1NAT(true, false, false, true)
	l.checkOnlyUDP()
}

// TestIKEv1NATAlwaysWithoutNAT: udp_encap = "always" on a plain link: the
// faked NAT-D hash makes both float and encapsulate.
func TestIKEv1NATAlwaysWithoutNAT(t *testing.T) {
	l := startNATLabKeying(t, natNone, "ikev1", "always", ikev1NATExtra)
	l.waitV1("udp")
	l.pingBoth("IKEv1 udp_encap always")
	for _, s := range []*side{l.a, l.b} {
		st := l.mustStatus(s)
		if n := st.IKEv1.NAT; !n.Faked || n.NATHere || !n.NATThere || n.RemotePort != 4500 {
			t.Errorf("%s: NAT status %+v; want faked, the peer's (faked) NAT, peer port 4500", s.ns.Name, n)
		}
		if st.UDPEncap == nil || st.UDPEncap.RemotePort != 4500 || st.Outbound == nil || st.Outbound.Packets < 10 {
			t.Errorf("%s: ESP in UDP %+v, outbound %+v", s.ns.Name, st.UDPEncap, st.Outbound)
		}
		if !strings.Contains(s.proc.Out.String(), "moving IKE to UDP port 4500") && !strings.Contains(s.proc.Out.String(), "peer moved IKE to UDP port 4500") {
			t.Errorf("%s: no float in the log", s.ns.Name)
		}
	}
}
