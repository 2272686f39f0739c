package interop

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
)

// loopCount is how many echo requests each ping loop sends, 0.2 s apart:
// 20 s, long enough for a rekey by each side with child_lifetime = 10s.
const loopCount = 100

// TestScenario2RekeyUnderPing: CHILD_SA rekeys by both sides while pings
// cross the tunnel both ways, against the guest kernel's real XFRM SAs.
// gresec (initiator, child_lifetime 10 s: it rekeys at 85-88 %) starts
// rekeys on its own timer, strongSwan one more (`swanctl --rekey`). Every
// echo request must be answered: of two loops 0.2 s apart that run through
// all of it, and of a 10 ms burst spanning each side's rekey, which catches
// even a short gap in which one side sends on an SA the other cannot use
// yet. Afterwards the SPIs have changed on both ends and the kernel holds
// exactly the new pair: make before break on both sides, and the old SAs
// really gone.
func TestScenario2RekeyUnderPing(t *testing.T) {
	l := newLab(t)
	psk := l.guestStrongSwan()
	st := l.startGresecIKE(psk, true, "child_lifetime = \"10s\"\n")
	l.guestGRE(st.MTU)
	first := l.onlyChild(st)
	if got := l.guestSPIs(); !sameSet(got, first.in, first.out) {
		t.Fatalf("guest kernel SAs %08x, want gresec's 0x%08x and 0x%08x", keys(got), first.in, first.out)
	}
	retired := map[uint32]bool{first.in: true, first.out: true}
	// The guest kernel's own account of every SA and acquire, for a failure.
	l.guestRun("(ip -ts xfrm monitor > /tmp/xfrm-monitor.log 2>&1 &); (tcpdump -n -tttt -i eth0 esp > /tmp/esp.log 2>/dev/null &)")
	t.Cleanup(func() {
		if t.Failed() {
			// Keys and the per-packet replay notices cut.
			out, _ := l.g.Run(`awk '/replay update/ {skip = 2} skip {skip--; next} !/^[[:space:]]*(auth|enc|aead) / {print}' /tmp/xfrm-monitor.log | tail -n 200; grep -v -e 'bytes from' /tmp/loop.log`)
			t.Logf("guest ip -ts xfrm monitor (keys cut) and ping loop:\n%s", out)
			// When each SPI first appeared on the guest's wire, to set
			// against when each side installed it.
			out, _ = l.g.Run(`awk 'match($0, /spi=0x[0-9a-f]+/) { s = substr($0, RSTART, RLENGTH); if (!(s in seen)) { seen[s] = 1; print } }' /tmp/esp.log`)
			t.Logf("guest tcpdump, first ESP packet of each SPI:\n%s", out)
		}
	})

	// Guest to host over IPv4 in the background of the guest's agent (which
	// runs one command at a time), host to guest over IPv6 from here.
	l.guestRun(fmt.Sprintf("ping -D -O -i 0.2 -c %d -W 5 %s > /tmp/loop.log 2>&1 &", loopCount, hostInner4.Addr()))
	hostLoop, err := l.ns.Start("ping", "-i", "0.2", "-c", strconv.Itoa(loopCount), "-W", "5", guestIn6.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostLoop.Stop(time.Second) })

	// A rekey started by gresec: its log names it, and its SPIs move on.
	// A dense burst of pings spans it, so that a gap of even a few tens of
	// milliseconds without a usable SA on either side loses packets.
	var due int64
	if !netns.WaitFor(15*time.Second, func() bool {
		st := l.mustStatus()
		if st.IKE == nil || len(st.IKE.ChildSAs) != 1 {
			return false
		}
		due = st.IKE.ChildSAs[0].RekeyInSeconds
		return due <= 2
	}) {
		t.Fatalf("gresec's CHILD_SA rekey is not due within 15 s (child_lifetime 10s): rekey in %d s", due)
	}
	// (On a slow machine gresec may have rekeyed once already; the burst
	// covers the rekey that is due now.)
	cur := l.onlyChild(l.mustStatus())
	retired[cur.in], retired[cur.out] = true, true
	started := strings.Count(l.gresec.Out.String(), "rekeying CHILD_SA")
	burst := l.hostBurst()
	if !netns.WaitFor(20*time.Second, func() bool {
		c, err := oneChild(l.mustStatus())
		if err == nil && c.in != cur.in && c.out != cur.out && strings.Count(l.gresec.Out.String(), "rekeying CHILD_SA") > started {
			cur = c
			return true
		}
		return false
	}) {
		t.Fatalf("gresec did not rekey its CHILD_SA within 20 s (child_lifetime 10s)")
	}
	retired[cur.in], retired[cur.out] = true, true
	l.waitLoop(burst, "host -> guest IPv4 burst across gresec's rekey", burstCount)

	// One started by strongSwan, right after gresec's, so gresec's own
	// timer (8.5-8.8 s) is not due while it runs; again inside a burst.
	burst = l.hostBurst()
	l.guestRun("swanctl --rekey --child gre")
	if !netns.WaitFor(20*time.Second, func() bool {
		c, err := oneChild(l.mustStatus())
		if err == nil && c.in != cur.in && c.out != cur.out {
			cur = c
			return true
		}
		return false
	}) {
		t.Fatal("gresec did not follow strongSwan's CHILD_SA rekey")
	}
	retired[cur.in], retired[cur.out] = true, true
	l.waitLoop(burst, "host -> guest IPv4 burst across strongSwan's rekey", burstCount)

	var guestLoop string
	if !netns.WaitFor(60*time.Second, func() bool {
		guestLoop = l.guestRun("cat /tmp/loop.log")
		return pingStats.MatchString(guestLoop)
	}) {
		t.Fatalf("guest ping loop did not finish:\n%s", guestLoop)
	}
	checkLoop(t, "guest -> host IPv4", guestLoop, loopCount)
	l.waitLoop(hostLoop, "host -> guest IPv6", loopCount)

	// Who started what, from each side's own log: gresec logs the rekeys
	// it starts; charon logs the CREATE_CHILD_SA requests it generates and
	// those it parses (gresec's).
	if n := strings.Count(l.gresec.Out.String(), "rekeying CHILD_SA"); n < 1 {
		t.Errorf("gresec started %d CHILD_SA rekeys, want >= 1", n)
	}
	clog := l.guestRun("cat /tmp/charon.log")
	if n := strings.Count(clog, "generating CREATE_CHILD_SA request"); n < 1 {
		t.Errorf("strongSwan started %d CREATE_CHILD_SA exchanges, want >= 1", n)
	}
	if n := strings.Count(clog, "parsed CREATE_CHILD_SA request"); n < 1 {
		t.Errorf("strongSwan answered %d CREATE_CHILD_SA requests, want >= 1", n)
	}

	// The end state, once any rekey still in flight (gresec keeps rekeying
	// every 8.5-8.8 s) has settled: one CHILD_SA on each side, the same pair in
	// the guest kernel, and none of the SAs seen earlier left anywhere.
	var why string
	if !netns.WaitFor(15*time.Second, func() bool {
		st = l.mustStatus()
		c, err := oneChild(st)
		if err != nil {
			why = err.Error()
			return false
		}
		sw := l.guestSwanSAs()
		got := l.guestSPIs()
		switch {
		case len(sw.children) != 1 || sw.children[0] != [2]uint32{c.out, c.in}:
			why = fmt.Sprintf("strongSwan CHILD_SAs in/out %08x, gresec in/out 0x%08x/0x%08x", sw.children, c.in, c.out)
		case !sameSet(got, c.in, c.out):
			why = fmt.Sprintf("guest kernel SAs %08x, want exactly 0x%08x and 0x%08x", keys(got), c.in, c.out)
		default:
			cur = c
			return true
		}
		return false
	}) {
		t.Fatalf("after the rekeys: %s", why)
	}
	t.Logf("SPIs in/out: first 0x%08x/0x%08x, now 0x%08x/0x%08x; %d SPIs seen on the way; rekeys started by gresec %d, by strongSwan %d",
		first.in, first.out, cur.in, cur.out, len(retired), strings.Count(l.gresec.Out.String(), "rekeying CHILD_SA"),
		strings.Count(clog, "generating CREATE_CHILD_SA request"))
	t.Logf("loops: guest %q, host %q", pingStats.FindString(guestLoop), pingStats.FindString(hostLoop.Out.String()))
	if cur.in == first.in || cur.out == first.out {
		t.Errorf("SPIs did not change: first 0x%08x/0x%08x, now 0x%08x/0x%08x", first.in, first.out, cur.in, cur.out)
	}
	got := l.guestSPIs()
	for spi := range retired {
		if got[spi] && spi != cur.in && spi != cur.out {
			t.Errorf("guest kernel still holds retired SA 0x%08x", spi)
		}
	}
	// Nothing was dropped on the way: no packet for an SPI one side had
	// already retired, none failing authentication or replay.
	for _, why := range []string{"esp_bad_spi", "esp_auth", "esp_replay"} {
		if n := st.Drops[why]; n != 0 {
			t.Errorf("gresec dropped %d ESP packets (%s)", n, why)
		}
	}
	if stats := l.guestRun("cat /proc/net/xfrm_stat"); !allZero(stats) {
		t.Errorf("guest XFRM error counters moved:\n%s", stats)
	}
	l.checkNoPlainGRE()
}

// burstCount echo requests 10 ms apart: 4 s, long enough to span a rekey.
const burstCount = 400

// hostBurst starts a dense ping from the host namespace to the guest.
func (l *lab) hostBurst() *netns.Proc {
	l.t.Helper()
	p, err := l.ns.Start("ping", "-i", "0.01", "-c", strconv.Itoa(burstCount), "-W", "2", guestIn4.Addr().String())
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { p.Stop(time.Second) })
	return p
}

// waitLoop waits for a ping started with Start to end and checks it got
// every reply.
func (l *lab) waitLoop(p *netns.Proc, what string, count int) {
	l.t.Helper()
	if !netns.WaitFor(60*time.Second, func() bool { done, _ := p.Exited(); return done }) {
		l.t.Fatalf("ping %s did not finish:\n%s", what, lastLines(p.Out.String(), 4))
	}
	checkLoop(l.t, what, p.Out.String(), count)
}

// checkLoop fails unless a ping loop got every one of its replies.
func checkLoop(t *testing.T, what, out string, count int) {
	t.Helper()
	m := pingStats.FindStringSubmatch(out)
	if m == nil || m[1] != strconv.Itoa(count) || m[2] != m[1] {
		t.Errorf("ping %s: want %d/%d replies:\n%s", what, count, count, lastLines(out, 4))
	}
}
