package integration

import (
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
)

// TestRestartedPeerRecoversWithin10s kills each side in turn with SIGKILL
// and starts it again, with ping running: traffic must be back within
// 10 s of the restart, with the default DPD (60 s) and retransmissions
// (2+4+8+16+32 s), which alone would take well over a minute.
//   - b only responds: on a's next ESP packet the new b, which has no SA,
//     answers INVALID_SPI unprotected (RFC 7296 §1.5); a takes the hint and
//     sets up a new IKE SA with INITIAL_CONTACT beside the dead one.
//   - a initiates: the new a connects at once with INITIAL_CONTACT, and b
//     drops the SAs a has lost.
func TestRestartedPeerRecoversWithin10s(t *testing.T) {
	p := startPair(t, pairOpt{keying: "ikev2", bResponds: true})
	p.waitEstablished(15 * time.Second)
	for _, s := range []*side{p.b, p.a} {
		if got, out := p.ping(p.a, p.b.tun4.Addr(), 3); got != 3 {
			t.Fatalf("before restarting %s: %d of 3 pings\n%s", s.ns.Name, got, out)
		}
		before := p.mustStatus(p.a).IKE.SPIi
		p.kill(s)
		p.start(s) // returns once its control socket answers
		restarted := time.Now()
		back := netns.WaitFor(20*time.Second, func() bool {
			out, _ := p.a.ns.RunTimeout(3*time.Second, "ping", "-c", "1", "-W", "1", p.b.tun4.Addr().String())
			return replies(out) == 1
		})
		took := time.Since(restarted)
		t.Logf("%s restarted: traffic back after %.1f s", s.ns.Name, took.Seconds())
		if !back || took > 10*time.Second {
			t.Errorf("%s restarted: traffic back after %s (want <= 10 s)\n%s", s.ns.Name, took, p.a.proc.Out)
		}
		if st := p.mustStatus(p.a); st.IKE.SPIi == before || len(st.Inbound) > 2 {
			t.Errorf("after %s restarted: IKE SPIi %s (was %s), %d inbound SAs", s.ns.Name, st.IKE.SPIi, before, len(st.Inbound))
		}
	}
}
