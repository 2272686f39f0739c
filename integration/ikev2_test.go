package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/tunnel"
)

// waitEstablished waits until both sides report the IKE SA established and
// an outbound ESP SA installed.
func (p *pair) waitEstablished(timeout time.Duration) {
	p.t.Helper()
	for _, s := range []*side{p.a, p.b} {
		ok := netns.WaitFor(timeout, func() bool {
			st, err := p.status(s)
			return err == nil && st.IKE != nil && st.IKE.State == "established" && st.Outbound != nil
		})
		if !ok {
			st, _ := p.status(s)
			p.t.Fatalf("%s: IKE SA not established within %s: %+v\n%s", s.ns.Name, timeout, st.IKE, s.proc.Out)
		}
	}
}

func TestIKEv2PingBothWays(t *testing.T) {
	p := startPair(t, pairOpt{keying: "ikev2"})
	p.waitEstablished(15 * time.Second)
	for _, c := range []struct {
		from *side
		to   *side
	}{{p.a, p.b}, {p.b, p.a}} {
		for _, dst := range []*side{c.to} {
			if got, out := p.ping(c.from, dst.tun4.Addr(), 5); got < 4 {
				t.Errorf("ping %s: %d of 5\n%s", dst.tun4.Addr(), got, out)
			}
			if got, out := p.ping(c.from, dst.tun6.Addr(), 5); got < 4 {
				t.Errorf("ping %s: %d of 5\n%s", dst.tun6.Addr(), got, out)
			}
		}
	}
	a, b := p.mustStatus(p.a), p.mustStatus(p.b)
	if a.IKE.SPIi != b.IKE.SPIi || a.IKE.SPIr != b.IKE.SPIr || a.IKE.SPIi == "" {
		t.Errorf("IKE SPIs differ: a %+v, b %+v", a.IKE, b.IKE)
	}
	if a.Outbound.SPI != b.Inbound[0].SPI || b.Outbound.SPI != a.Inbound[0].SPI {
		t.Errorf("CHILD SPIs do not match crosswise: a out %s in %s, b out %s in %s",
			a.Outbound.SPI, a.Inbound[0].SPI, b.Outbound.SPI, b.Inbound[0].SPI)
	}
	if a.IKE.Suite == "" || a.Outbound.Transform != "esp-aes-256-gcm-16" {
		t.Errorf("suite %q transform %q", a.IKE.Suite, a.Outbound.Transform)
	}
}

func TestIKEv2WrongPSKNeverInstalls(t *testing.T) {
	p := startPair(t, pairOpt{keying: "ikev2", wrongKey: true})
	var st tunnel.Status
	failed := netns.WaitFor(15*time.Second, func() bool {
		st = p.mustStatus(p.a)
		return st.IKE != nil && strings.Contains(st.IKE.LastError, "AUTHENTICATION_FAILED")
	})
	if !failed {
		t.Errorf("initiator's IKE status %+v: want AUTHENTICATION_FAILED", st.IKE)
	}
	for _, s := range []*side{p.a, p.b} {
		if st := p.mustStatus(s); st.Outbound != nil || len(st.Inbound) != 0 {
			t.Errorf("%s installed SAs with mismatched PSKs: %+v %+v", s.ns.Name, st.Outbound, st.Inbound)
		}
	}
	if got, _ := p.ping(p.a, p.b.tun4.Addr(), 2); got != 0 {
		t.Errorf("%d replies through a tunnel whose PSKs differ", got)
	}
	if strings.Contains(p.a.proc.Out.String(), p.psk) || strings.Contains(p.b.proc.Out.String(), p.psk) {
		t.Error("a PSK reached the log")
	}
}

// TestIKEv2RekeyUnderPingLosesNothing rekeys the CHILD_SA (with PFS) every
// 8.5 s while pinging at 5 packets a second: make-before-break must not
// lose a single one.
func TestIKEv2RekeyUnderPingLosesNothing(t *testing.T) {
	p := startPair(t, pairOpt{keying: "ikev2", ikeExtra: "child_lifetime = \"10s\"\n"})
	p.waitEstablished(15 * time.Second)
	first := p.mustStatus(p.a).Outbound.SPI
	out, err := p.a.ns.RunTimeout(60*time.Second, "ping", "-c", "125", "-i", "0.2", "-W", "2", "-w", "55", p.b.tun4.Addr().String())
	if got := replies(out); err != nil || got != 125 {
		t.Errorf("%d of 125 replies across CHILD_SA rekeys (%v)\n%s", got, err, lastLines(out, 3))
	}
	st := p.mustStatus(p.a)
	if st.Outbound.SPI == first {
		t.Errorf("outbound SPI still %s after 25 s with a 10 s child lifetime: no rekey happened", first)
	}
	if len(st.Inbound) > 2 {
		t.Errorf("%d inbound SAs: old ones are not removed after rekeys", len(st.Inbound))
	}
	for _, s := range []*side{p.a, p.b} {
		for _, sa := range p.mustStatus(s).Inbound {
			for r, n := range sa.Drops {
				if n != 0 {
					t.Errorf("%s: inbound SA %s dropped %d (%s)", s.ns.Name, sa.SPI, n, r)
				}
			}
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
