package interop

import (
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
)

// reconnectDelay is how long gresec (initiate = true) waits before it
// negotiates again after losing its IKE SA (ike.reconnectDelay).
const reconnectDelay = 10 * time.Second

// TestScenario2Delete: IKE SA deletion both ways against strongSwan and the
// guest kernel. strongSwan deletes (`swanctl --terminate --ike`): gresec
// removes its CHILD_SA and ESP SAs, and as initiator comes back on its own
// after its reconnect delay, with a tunnel that carries traffic again.
// Then gresec stops on SIGTERM: its Delete makes strongSwan remove the IKE
// SA, the CHILD_SA and the kernel's SAs and policies.
func TestScenario2Delete(t *testing.T) {
	l := newLab(t)
	psk := l.guestStrongSwan()
	st := l.startGresecIKE(psk, true)
	l.guestGRE(st.MTU)
	l.pingFromHost(guestIn4.Addr(), 56)
	l.pingFromGuest(hostInner4.Addr(), 56)
	first := l.onlyChild(st)
	// (Only up to here: once strongSwan has deleted its SAs it also drops
	// its policies, and gre1's IPv6 router solicitations go out bare.)
	l.checkNoPlainGRE()

	// strongSwan deletes the IKE SA.
	out := l.guestRun("swanctl --terminate --ike gre --timeout 10")
	if !strings.Contains(out, "terminate completed successfully") {
		t.Fatalf("swanctl --terminate did not complete:\n%s", out)
	}
	deleted := time.Now()
	if !netns.WaitFor(5*time.Second, func() bool {
		st = l.mustStatus()
		return st.IKE != nil && st.IKE.State != "established" && len(st.IKE.ChildSAs) == 0 && st.IKE.Children == 0 &&
			st.Outbound == nil && len(st.Inbound) == 0
	}) {
		t.Fatalf("gresec kept its SAs after strongSwan deleted the IKE SA: IKE %+v, outbound %+v, inbound %+v", st.IKE, st.Outbound, st.Inbound)
	}
	if !strings.Contains(l.gresec.Out.String(), "peer deletes the IKE SA") {
		t.Errorf("gresec did not log the peer's Delete:\n%s", l.gresec.Out)
	}
	if got := l.guestSPIs(); len(got) != 0 {
		t.Errorf("guest kernel still holds SAs %08x after strongSwan's terminate", keys(got))
	}

	// gresec initiates again once its reconnect delay has passed.
	st = l.waitEstablished(reconnectDelay + 20*time.Second)
	t.Logf("gresec re-established %v after the Delete (reconnect delay %v)", time.Since(deleted).Round(100*time.Millisecond), reconnectDelay)
	again := l.onlyChild(st)
	if again.in == first.in || again.out == first.out {
		t.Errorf("re-established CHILD_SA reuses SPIs 0x%08x/0x%08x", again.in, again.out)
	}
	if sw := l.guestSwanSAs(); !sw.established || sw.weInitiated || len(sw.children) != 1 || sw.children[0] != [2]uint32{again.out, again.in} {
		t.Fatalf("guest strongSwan after gresec's reconnect, want gresec's CHILD_SA 0x%08x/0x%08x:\n%s", again.in, again.out, sw.raw)
	}
	l.pingFromHost(guestIn4.Addr(), 56)
	l.pingFromGuest(hostInner4.Addr(), 56)

	// gresec shuts down: its Delete empties the guest. (charon's per-socket
	// bypass policies for its own IKE sockets stay; the dir in/out/fwd
	// listings leave them out.)
	const policies = "ip xfrm policy list dir out; ip xfrm policy list dir in; ip xfrm policy list dir fwd"
	if pols := l.guestRun(policies); !strings.Contains(pols, "proto gre") {
		t.Fatalf("guest has no GRE policies while the tunnel is up:\n%s", pols)
	}
	if err := l.gresec.Stop(5 * time.Second); err != nil {
		t.Fatalf("gresec did not stop cleanly on SIGTERM: %v\n%s", err, l.gresec.Out)
	}
	var sas, pols, spis string
	if !netns.WaitFor(10*time.Second, func() bool {
		sas = l.guestRun("swanctl --list-sas 2>/dev/null")
		spis = l.guestRun("ip xfrm state")
		pols = l.guestRun(policies)
		return strings.TrimSpace(sas+spis+pols) == ""
	}) {
		t.Fatalf("guest after gresec's shutdown: swanctl --list-sas:\n%s\nip xfrm state:\n%s\nip xfrm policy:\n%s", sas, redactKeys(spis), pols)
	}
	if clog := l.guestRun("cat /tmp/charon.log"); !strings.Contains(clog, "received DELETE for IKE_SA gre") {
		t.Errorf("strongSwan did not log gresec's Delete:\n%s", lastLines(clog, 25))
	}
}
