package integration

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
)

// TestDynamicPeerOneTunnel: a daemon running one tunnel (`up -c`) with
// remote = "any", on sockets of its own: side a initiates with its
// identity, b binds to a's address; a comes back from another address and
// b follows it there.
func TestDynamicPeerOneTunnel(t *testing.T) {
	p := newPair(t, pairOpt{keying: "ikev2", bResponds: true})
	rewrite := func(s *side, from, to string) {
		b, err := os.ReadFile(s.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), from) {
			t.Fatalf("%s has no %q", s.cfgPath, from)
		}
		if err := os.WriteFile(s.cfgPath, []byte(strings.Replace(string(b), from, to, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(p.b, `remote = "198.18.0.1"`, `remote = "any"`)
	rewrite(p.b, "[ike]\n", "[ike]\nremote_id = \"site-a.example\"\n")
	rewrite(p.a, "[ike]\n", "[ike]\nlocal_id = \"site-a.example\"\n")
	p.start(p.b)
	if st := p.mustStatus(p.b); st.Remote != "any" || !st.Dynamic {
		t.Errorf("before any peer: remote %q, dynamic %v", st.Remote, st.Dynamic)
	}
	p.start(p.a)
	p.waitEstablished(20 * time.Second)
	pingBoth := func(when string) {
		for _, c := range [][2]*side{{p.a, p.b}, {p.b, p.a}} {
			for _, dst := range []netip.Addr{c[1].tun4.Addr(), c[1].tun6.Addr()} {
				if got, out := p.ping(c[0], dst, 5); got < 4 {
					t.Errorf("%s: ping %s: %d of 5\n%s", when, dst, got, out)
				}
			}
		}
	}
	pingBoth("first peer")
	if st := p.mustStatus(p.b); st.Remote != "198.18.0.1" {
		t.Errorf("b bound to %q, want 198.18.0.1", st.Remote)
	}
	before := p.mustStatus(p.b).Outbound.SPI

	// a moves to 198.18.0.7.
	p.a.proc.Stop(5 * time.Second)
	for _, c := range [][]string{
		{"ip", "addr", "del", "198.18.0.1/24", "dev", "veth-a"},
		{"ip", "addr", "add", "198.18.0.7/24", "dev", "veth-a", "nodad"},
	} {
		if _, err := p.a.ns.Run(c[0], c[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(p.a, `local = "198.18.0.1"`, `local = "198.18.0.7"`)
	p.start(p.a)
	if !netns.WaitFor(30*time.Second, func() bool {
		st, err := p.status(p.b)
		return err == nil && st.Remote == "198.18.0.7" && st.Outbound != nil && st.Outbound.SPI != before
	}) {
		st, _ := p.status(p.b)
		t.Fatalf("b did not follow a to 198.18.0.7: remote %q\n%s", st.Remote, lastLines(p.b.proc.Out.String(), 30))
	}
	p.waitEstablished(20 * time.Second)
	pingBoth("after a moved")
	if st := p.mustStatus(p.b); st.IKE == nil || len(st.Inbound) == 0 {
		t.Errorf("b after the move: %+v", st)
	}
}
