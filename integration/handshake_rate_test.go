package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/swan"
)

// TestHandshakeRate measures how many IKE_SA_INIT + IKE_AUTH handshakes
// per second a responder completes with N distinct peers
// (GRESEC_HANDSHAKES=N, opt-in: it is a measurement), gresec against
// strongSwan's charon on the same work, in the same run.
//
// The peers: one gresec daemon (`gresec up -d DIR`) with N IKEv2 PSK
// tunnels, each from its own local address (198.18.1.1 on) to the
// responder's 198.18.0.1, in a second namespace, all started together by
// that one daemon; each tunnel initiates as soon as it exists. The same
// initiator configuration runs twice, restarted in between:
//
//  1. against a gresec hub daemon with N responder tunnels (per-peer PSK);
//  2. against charon with N connections (the same per-peer PSKs and
//     identities), gresec's default proposals for IKE and ESP (so the
//     crypto work is the same: ECP-384, AES-256-GCM, PRF SHA-384),
//     transport mode with GRE selectors as the gresec peers propose, and
//     its log at level 1.
//
// charon demands COOKIEs once 10 IKE SAs are half open (cookie_threshold,
// daemon-wide); gresec counts per tunnel, so with one peer per tunnel it
// never does. Cookies would add a round trip to charon's handshakes only,
// so charon runs with cookie_threshold above N: both do the same four
// messages per peer.
//
// Each responder faces two bursts, each with a fresh responder and a
// freshly started initiator daemon:
//   - from the start: the clock runs from starting the initiator daemon.
//     It creates its tunnels one after another and each initiates at once,
//     so the handshakes are spread over the daemon's start-up, and the rate
//     can be bounded by the initiators rather than the responder;
//   - gated: the initiators' packets are held on their side of the link
//     (a tbf qdisc at 8 bit/s) until the daemon has started every tunnel,
//     then released together; the clock runs from the release. Tunnels
//     that waited longer than the 2 s retransmission timer have their
//     retransmissions queued too: the same for both responders.
//
// Either way the clock stops when the responder has sent an IKE_AUTH
// response to each of the N peers, counted by an nftables rule on its
// output (read every 25 ms; a status request costs the responder some
// 15 ms of CPU with 100 tunnels, a good part of what is measured, and
// gresec's log is sampled beyond 100 lines a second), and then its status
// must show all N IKE SAs established with their CHILD_SA. The
// responder's CPU time over the same interval is divided by N. The
// initiators share the machine's cores with the responder, the same load
// in both runs; neighbour entries are permanent, so no ARP is in the way.
// The responder namespace's UDP receive buffer drops are counted (gresec
// asks for a 4 MiB buffer, charon keeps the system default). In the
// gresec runs every tunnel must then carry a ping, so the figure is for
// working tunnels.
func TestHandshakeRate(t *testing.T) {
	n := optInCount(t, "GRESEC_HANDSHAKES", "docs/performance.md, IKE handshakes per second")
	if err := swan.Install(); err != nil {
		t.Fatalf("strongSwan: %v", err)
	}
	l := newScaleLab(t, n, "gresec-hs")
	work, respNS, peerNS, hubDir, peerDir, hubSock, names := l.work, l.hub, l.peers, l.hubDir, l.peerDir, l.hubSock, l.names
	const respAddr = scaleHubAddr
	peerAddr, inner := scalePeerAddr, scaleInner
	write := func(path, body string) { l.write(t, path, body) }
	var swanConf strings.Builder
	for k, name := range names {
		// strongSwan merges sections of the same name, so N complete
		// swanctl.conf texts make one file with N connections.
		swanConf.WriteString(swan.Conn{
			Name: name, Local: respAddr, Remote: peerAddr(k).String(), PSK: swan.Key(l.keys[k]),
			IKEProposal: strings.Join(config.DefaultProposals, ","), ESPProposal: strings.Join(config.DefaultESPProposals, ","),
			MOBIKE: "no",
		}.SwanctlConf())
	}
	t.Logf("peers: one gresec daemon with %d IKEv2 PSK initiator tunnels from %d local addresses, all starting at once; they share the machine's %d CPUs with the responder (same load in both runs)",
		n, n, runtime.NumCPU())

	// Permanent neighbour entries both ways: no ARP in the burst, and
	// none held at the gate below.
	mac := func(ns *netns.NS, dev string) string {
		out, err := ns.Run("ip", "-br", "link", "show", dev)
		f := strings.Fields(out)
		if err != nil || len(f) < 3 {
			t.Fatalf("MAC of %s: %v %q", dev, err, out)
		}
		return f[2]
	}
	var neigh strings.Builder
	for k := 0; k < n; k++ {
		fmt.Fprintf(&neigh, "neigh replace %s lladdr %s dev veth-h nud permanent\n", peerAddr(k), mac(peerNS, "veth-p"))
	}
	batch := filepath.Join(work, "neigh.batch")
	write(batch, neigh.String())
	if out, err := respNS.Run("ip", "-batch", batch); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := peerNS.Run("ip", "neigh", "replace", respAddr, "lladdr", mac(respNS, "veth-h"), "dev", "veth-p", "nud", "permanent"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}

	gresecResponder := func() handshakeResponder {
		proc, err := respNS.Start(gresecBin, "up", "-d", hubDir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { proc.Stop(30 * time.Second) })
		h := &hub{t: t, sock: hubSock, proc: proc}
		if !netns.WaitFor(60*time.Second, func() bool { st, err := h.status(); return err == nil && len(st.Tunnels) == n }) {
			t.Fatalf("hub did not come up with %d tunnels:\n%s", n, lastLines(proc.Out.String(), 20))
		}
		return handshakeResponder{
			pid: proc.Cmd.Process.Pid,
			established: func() (int, error) {
				st, err := h.status()
				if err != nil {
					return 0, err
				}
				c := 0
				for _, s := range st.Tunnels {
					if s.Outbound != nil && s.IKE != nil && s.IKE.State == "established" {
						c++
					}
				}
				return c, nil
			},
			check: func() {
				h.waitReady(names, 10*time.Second)
				failed := 0
				sem := make(chan struct{}, 16)
				ok := make(chan bool, n)
				for k := 0; k < n; k++ {
					sem <- struct{}{}
					go func() {
						defer func() { <-sem }()
						out, _ := peerNS.RunTimeout(20*time.Second, "ping", "-c", "2", "-i", "0.3", "-W", "2", "-w", "10", "-I", fmt.Sprintf("p%03d", k), inner(k, 0).String())
						ok <- replies(out) >= 1
					}()
				}
				for k := 0; k < n; k++ {
					if !<-ok {
						failed++
					}
				}
				if failed > 0 {
					t.Errorf("gresec responder: %d of %d tunnels carried no ping", failed, n)
				}
			},
			stop: func() {
				if err := proc.Stop(30 * time.Second); err != nil {
					t.Errorf("hub did not stop cleanly: %v", err)
				}
			},
		}
	}
	charonResponder := func() handshakeResponder {
		ch := startCharonWith(t, respNS.Name, swanConf.String(), swan.Options{
			LogLevels:    map[string]int{"ike": 1, "chd": 1, "net": 1, "cfg": 1, "knl": 1},
			CharonConf:   fmt.Sprintf("cookie_threshold = %d", n+1000),
			StartTimeout: 60 * time.Second,
		})
		if out, err := ch.Swanctl("--list-conns"); err != nil || strings.Count(out, "IKEv2,") != n {
			t.Fatalf("charon did not load %d connections (%v):\n%s", n, err, lastLines(out, 10))
		}
		sas := func() ([]swan.IKESA, error) {
			all, err := ch.SAs()
			var up []swan.IKESA
			for _, s := range all {
				if s.State == "ESTABLISHED" && len(s.Installed()) > 0 {
					up = append(up, s)
				}
			}
			return up, err
		}
		return handshakeResponder{
			pid: ch.PID(),
			established: func() (int, error) {
				up, err := sas()
				return len(up), err
			},
			// The same work as gresec's: its default proposals, one
			// transport-mode CHILD_SA per peer.
			check: func() {
				up, err := sas()
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range up {
					c := s.Installed()
					if s.EncrAlg != "AES_GCM_16" || s.EncrKey != 256 || s.PRF != "PRF_HMAC_SHA2_384" || s.DHGroup != "ECP_384" ||
						len(c) != 1 || c[0].Mode != "TRANSPORT" || c[0].EncrAlg != "AES_GCM_16" || c[0].EncrKey != 256 {
						t.Errorf("charon's IKE SA %s is not gresec's default suite: %+v", s.Name, s)
						break
					}
				}
			},
			stop: func() {
				if err := ch.Stop(); err != nil {
					t.Errorf("charon: %v", err)
				}
			},
		}
	}

	// burst runs the initiator daemon against a fresh responder until the
	// responder has answered IKE_AUTH from all n peers.
	// Gated: the initiators' packets are held in a queue on their side of
	// the link (a tbf qdisc at 8 bit/s) until the daemon has started every
	// tunnel, then released at once; the clock starts at the release.
	// Otherwise the clock starts with the initiator daemon, and the
	// handshakes begin as it creates its tunnels one after another.
	burst := func(who string, gated bool, start func() handshakeResponder) handshakeBurst {
		t.Helper()
		resp := start()
		defer resp.stop()
		r := handshakeBurst{who: who, gated: gated}
		if gated {
			if out, err := peerNS.Run("tc", "qdisc", "replace", "dev", "veth-p", "root", "tbf", "rate", "8bit", "burst", "1600", "limit", "10000000"); err != nil {
				t.Fatalf("tc: %v: %s", err, out)
			}
			defer peerNS.Run("tc", "qdisc", "del", "dev", "veth-p", "root")
			// Empty the token bucket, so that nothing passes before the release.
			peerNS.Run("ping", "-c", "1", "-s", "1500", "-W", "1", respAddr)
		}
		answered := ikeAuthAnswered(t, respNS)
		drops0 := udpRcvbufErrors(t, respNS)
		time.Sleep(time.Second) // the responder's start-up work settles before the CPU count
		cpu0, startAt := cpuTicks(t, resp.pid), time.Now()
		peers, err := peerNS.Start(gresecBin, "up", "-d", peerDir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { peers.Stop(30 * time.Second) })
		defer func() {
			if err := peers.Stop(30 * time.Second); err != nil {
				t.Errorf("initiator daemon did not stop cleanly: %v", err)
			}
		}()
		deadline := startAt.Add(time.Duration(30+n) * time.Second)
		if gated {
			if !netns.WaitFor(time.Duration(30+n)*time.Second, func() bool { return strings.Contains(peers.Out.String(), "daemon up") }) {
				t.Fatalf("%s: the initiator daemon did not start its %d tunnels:\n%s", who, n, lastLines(peers.Out.String(), 20))
			}
			r.created = time.Since(startAt)
			time.Sleep(300 * time.Millisecond) // the last tunnels' first IKE_SA_INIT
			out, _ := peerNS.Run("tc", "-s", "qdisc", "show", "dev", "veth-p")
			if f := strings.Fields(out[strings.Index(out, "backlog")+1:]); len(f) >= 3 {
				r.held, _ = strconv.Atoi(strings.TrimSuffix(f[2], "p"))
			}
			cpu0, startAt = cpuTicks(t, resp.pid), time.Now()
			deadline = startAt.Add(time.Duration(30+n) * time.Second)
			if out, err := peerNS.Run("tc", "qdisc", "change", "dev", "veth-p", "root", "tbf", "rate", "10gbit", "burst", "1000000", "limit", "10000000"); err != nil {
				t.Fatalf("tc: %v: %s", err, out)
			}
			// The queue drains on the next packet sent through it.
			go peerNS.Run("ping", "-c", "1", "-W", "1", respAddr)
		}
		for {
			time.Sleep(25 * time.Millisecond)
			got := answered()
			if got > 0 && r.first == 0 {
				r.first = time.Since(startAt)
			}
			if !gated && r.created == 0 && strings.Contains(peers.Out.String(), "daemon up") {
				r.created = time.Since(startAt)
			}
			if got >= n {
				r.elapsed = time.Since(startAt)
				break
			}
			if time.Now().After(deadline) {
				c, err := resp.established()
				t.Fatalf("%s: %d of %d peers got an IKE_AUTH response, %d IKE SAs established (%v) after %s\ninitiators:\n%s",
					who, got, n, c, err, time.Since(startAt).Round(time.Millisecond), lastLines(peers.Out.String(), 20))
			}
		}
		r.cpu = float64(cpuTicks(t, resp.pid)-cpu0) / 100
		r.peerCPU = float64(cpuTicks(t, peers.Cmd.Process.Pid)) / 100
		r.drops = udpRcvbufErrors(t, respNS) - drops0
		// Its status agrees: every answer was a success.
		c, err := resp.established()
		if err != nil || c != n {
			t.Fatalf("%s: it answered IKE_AUTH from %d peers, its status has %d IKE SAs established with a CHILD_SA (%v)", who, n, c, err)
		}
		// What polling its status would cost it, with all n up.
		c0 := cpuTicks(t, resp.pid)
		for i := 0; i < 10; i++ {
			resp.established()
		}
		r.pollCPU = float64(cpuTicks(t, resp.pid)-c0) / 100 / 10
		resp.check()
		return r
	}

	var results []handshakeBurst
	for _, gated := range []bool{false, true} {
		results = append(results, burst("gresec", gated, gresecResponder), burst("charon", gated, charonResponder))
	}
	for _, r := range results {
		mode := fmt.Sprintf("clock from the initiator daemon's start; it had started all its tunnels after %.2f s", r.created.Seconds())
		if r.gated {
			mode = fmt.Sprintf("gated: %d packets held until the initiator daemon had started all its tunnels (%.2f s), clock from their release", r.held, r.created.Seconds())
		}
		t.Logf("%s responder, %s: %d handshakes in %.2f s = %.1f handshakes/s (first established after %.2f s); responder CPU %.2f s = %.2f ms per handshake, %.0f%% of one core; one status request costs it %.1f ms with all up; UDP receive buffer drops %d; initiator daemon CPU %.2f s",
			r.who, mode, n, r.elapsed.Seconds(), r.rate(n), r.first.Seconds(), r.cpu, r.cpu*1000/float64(n), r.cpu/r.elapsed.Seconds()*100, r.pollCPU*1000, r.drops, r.peerCPU)
	}
	for i := 0; i+1 < len(results); i += 2 {
		g, c := results[i], results[i+1]
		t.Logf("gresec/charon (gated %v): handshakes/s ratio %.2f, responder CPU per handshake ratio %.2f", g.gated, g.rate(n)/c.rate(n), g.cpu/c.cpu)
	}
}

// handshakeResponder is one side of TestHandshakeRate's bursts: the
// process whose CPU is counted, how many IKE SAs with a CHILD_SA its
// status reports, a check once all are up, and how to stop it.
type handshakeResponder struct {
	pid         int
	established func() (int, error)
	check       func()
	stop        func()
}

// handshakeBurst is one burst of TestHandshakeRate.
type handshakeBurst struct {
	who            string
	gated          bool
	elapsed, first time.Duration
	created        time.Duration // the initiator daemon had started all its tunnels
	held           int           // packets held at the gate
	cpu, peerCPU   float64       // seconds
	pollCPU        float64       // seconds of responder CPU per status request, all SAs up
	drops          uint64        // the responder namespace's UDP receive buffer errors
}

func (r handshakeBurst) rate(n int) float64 { return float64(n) / r.elapsed.Seconds() }

// ikeAuthAnswered installs, in ns, an nftables rule that counts the peers
// to which ns sent an IKE_AUTH response on UDP 500 (each address once,
// retransmissions aside), and returns the reader of that count.
func ikeAuthAnswered(t *testing.T, ns *netns.NS) func() int {
	t.Helper()
	ns.Run("nft", "delete", "table", "inet", "handshakes")
	// The IKE header's exchange type (35: IKE_AUTH) is byte 18 after the
	// UDP header, its Response flag bit 2 of byte 19.
	rules := `table inet handshakes {
  set answered { type ipv4_addr; flags dynamic; size 65535; }
  counter auth { }
  chain out {
    type filter hook output priority 0;
    udp sport 500 @th,208,8 35 @th,218,1 1 ip daddr != @answered add @answered { ip daddr } counter name auth
  }
}
`
	f := filepath.Join(t.TempDir(), "handshakes.nft")
	if err := os.WriteFile(f, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := ns.Run("nft", "-f", f); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	t.Cleanup(func() { ns.Run("nft", "delete", "table", "inet", "handshakes") })
	return func() int {
		out, _ := ns.Run("nft", "list", "counter", "inet", "handshakes", "auth")
		f := strings.Fields(out)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "packets" {
				v, _ := strconv.Atoi(f[i+1])
				return v
			}
		}
		return 0
	}
}
