package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/swan"
	"github.com/gresec/gresec/peerconf"
)

// TestPeerConfigStrongSwanNegotiates generates the strongSwan end with
// peerconf from a gresec config, loads it into a real charon with
// swanctl --load-all, and checks that the two negotiate: IKE SA
// ESTABLISHED with the iked + IOS pair's suite, CHILD_SA INSTALLED in TRANSPORT mode
// with GRE host selectors, SPIs matching crosswise. Once with gresec
// initiating (the generated side answers, start_action = none) and with
// separate local/remote PSK files; once with the generated side
// initiating (start_action = start) and one PSK file.
//
// The generated swanctl.conf is loaded unmodified, policies included:
// charon runs with internal/swan's XFRM shim, which turns its SA and
// policy requests into no-ops (this kernel has no ESP). The
// generated nft MSS clamp lines run in the strongSwan namespace; the ip
// tunnel lines cannot (no GRE in this kernel).
func TestPeerConfigStrongSwanNegotiates(t *testing.T) {
	for _, tc := range []struct {
		name            string
		gresecInitiates bool
		twoKeys         bool
	}{
		{"gresec-initiates", true, true},
		{"strongswan-initiates", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := startGeneratedSwan(t, tc.gresecInitiates, tc.twoKeys, "")
			st, child := sp.installed(t, "")
			if child.Mode != "TRANSPORT" || child.EncrAlg != "AES_GCM_16" || child.EncrKey != 256 {
				t.Errorf("strongSwan installed %+v, want TRANSPORT AES_GCM_16-256", child)
			}
			if fmt.Sprintf("0x%08x", child.SPIOut) != st.Inbound[0].SPI {
				t.Errorf("strongSwan sends with 0x%08x, gresec receives on %s", child.SPIOut, st.Inbound[0].SPI)
			}
			if strings.Join(child.LocalTS, " ") != "198.18.0.2/32[gre]" || strings.Join(child.RemoteTS, " ") != "198.18.0.1/32[gre]" {
				t.Errorf("selectors %v === %v, want GRE host to host", child.LocalTS, child.RemoteTS)
			}
			sas, err := sp.charon.SAs()
			if err != nil || len(sas) != 1 {
				t.Fatalf("strongSwan SAs: %v %+v", err, sas)
			}
			s := sas[0]
			if s.State != "ESTABLISHED" || s.EncrAlg != "AES_GCM_16" || s.PRF != "PRF_HMAC_SHA2_384" || s.DHGroup != "ECP_384" {
				t.Errorf("IKE SA %s %s/%s/%s, want ESTABLISHED AES_GCM_16/PRF_HMAC_SHA2_384/ECP_384", s.State, s.EncrAlg, s.PRF, s.DHGroup)
			}
			// Who initiated is what the generated start_action says.
			if s.Initiator == tc.gresecInitiates {
				t.Errorf("strongSwan initiator = %v, want %v", s.Initiator, !tc.gresecInitiates)
			}
			if s.LocalID != "198.18.0.2" || s.RemoteID != "198.18.0.1" {
				t.Errorf("identities %s / %s, want 198.18.0.2 / 198.18.0.1", s.LocalID, s.RemoteID)
			}
			// The generated child has policies (the default): charon asks the
			// kernel for them, and the shim turns each request into a no-op.
			if n := strings.Count(sp.charon.Output(), "POLICY spi"); n < 2 {
				t.Errorf("charon sent %d XFRM policy requests, want >= 2 (in and out):\n%s", n, sp.charon.Output())
			}
		})
	}
}

// startGeneratedSwan is startSwanPair with the strongSwan side written
// by peerconf instead of by hand.
// extra holds more [ike] lines for gresec (proposals).
func startGeneratedSwan(t *testing.T, gresecInitiates, twoKeys bool, extra string) *swanPair {
	t.Helper()
	p := newSwanSites(t, "gresec-pc", "gresec-peerconf-"+newKey(t)[2:34])
	keys := fmt.Sprintf("psk_file = %q\n", filepath.Join(p.dir, "a.psk"))
	writeKey := func(name, key string) {
		if err := os.WriteFile(filepath.Join(p.dir, name), []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKey("a.psk", p.psk)
	remoteKey := p.psk
	if twoKeys {
		remoteKey = "gresec-peerconf-remote-" + newKey(t)[2:34]
		writeKey("remote.psk", remoteKey)
		keys = fmt.Sprintf("local_psk_file = %q\nremote_psk_file = %q\n", filepath.Join(p.dir, "a.psk"), filepath.Join(p.dir, "remote.psk"))
	}
	p.writeGresecSide(gresecInitiates, keys, extra)

	c, err := config.Load(p.a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err := peerconf.Generate(c, peerconf.Options{Peer: peerconf.StrongSwan, IncludeSecret: true})
	if err != nil {
		t.Fatal(err)
	}
	sec, ok := out.Section(peerconf.SwanctlFile)
	if !ok {
		t.Fatalf("no %s section in the output", peerconf.SwanctlFile)
	}
	for _, k := range []string{p.psk, remoteKey} {
		if !strings.Contains(sec.Text, k) {
			t.Fatal("generated swanctl.conf lacks a PSK although --include-secret was given")
		}
	}
	want := "start_action = none"
	if !gresecInitiates {
		want = "start_action = start"
	}
	if !strings.Contains(sec.Text, want) {
		t.Fatalf("generated swanctl.conf lacks %q", want)
	}
	conf := sec.Text

	var ch *swan.Charon
	if gresecInitiates {
		ch = startCharon(t, p.b.ns.Name, conf) // the generated side waits for gresec
		p.start(p.a)
	} else {
		p.start(p.a) // the generated side initiates as soon as it is loaded
		ch = startCharon(t, p.b.ns.Name, conf)
	}

	cmds, ok := out.Section(peerconf.CommandsSection)
	if !ok {
		t.Fatalf("no %q section", peerconf.CommandsSection)
	}
	runNftLines(t, p.b.ns, cmds.Text)
	return &swanPair{pair: p, charon: ch}
}

// runNftLines runs the generated nft commands in ns and checks that the
// MSS clamp rules are in place.
func runNftLines(t *testing.T, ns *netns.NS, cmds string) {
	t.Helper()
	n := 0
	for _, line := range strings.Split(cmds, "\n") {
		if !strings.HasPrefix(line, "nft ") {
			continue
		}
		n++
		if out, err := ns.Run("sh", "-c", line); err != nil {
			t.Fatalf("generated line %q: %v\n%s", line, err, out)
		}
	}
	out, err := ns.Run("nft", "list", "table", "inet", "gresec")
	if err != nil {
		t.Fatalf("nft list: %v\n%s", err, out)
	}
	if n != 6 || strings.Count(out, "tcp option maxseg size set 1402") != 2 || strings.Count(out, "tcp option maxseg size set 1382") != 2 {
		t.Errorf("%d nft lines; ruleset after them:\n%s\nwant two clamps to 1402 (IPv4) and two to 1382 (IPv6)", n, out)
	}
}

// TestPeerConfigCLI runs `gresec peer-config` itself: its output is the
// library's, the PSK only appears with --include-secret, and errors name
// the problem.
func TestPeerConfigCLI(t *testing.T) {
	dir := t.TempDir()
	psk := filepath.Join(dir, "psk")
	key := "cli-test-psk-" + newKey(t)[2:20]
	os.WriteFile(psk, []byte(key+"\n"), 0o600)
	cfg := filepath.Join(dir, "g.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`[tunnel]
local = "198.18.0.1"
remote = "198.18.0.2"
addresses = ["198.19.0.0/31"]
[ipsec]
keying = "ikev2"
[ike]
psk_file = %q
`, psk)), 0o600)

	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, peer := range []string{"strongswan", "openbsd", "cisco-ios"} {
		out, err := runGresec(t, "peer-config", "-c", cfg, "--for", peer)
		if err != nil {
			t.Fatalf("peer-config --for %s: %v\n%s", peer, err, out)
		}
		p, _ := peerconf.ParsePeer(peer)
		g, err := peerconf.Generate(c, peerconf.Options{Peer: p})
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		g.WriteTo(&want)
		if out != want.String() {
			t.Errorf("--for %s: CLI output differs from peerconf.Generate", peer)
		}
		if strings.Contains(out, key) {
			t.Errorf("--for %s printed the PSK without --include-secret", peer)
		}
		if !strings.Contains(out, "<contents of "+psk+">") {
			t.Errorf("--for %s: no placeholder naming %s", peer, psk)
		}
		out, err = runGresec(t, "peer-config", "-c", cfg, "--for", peer, "--include-secret")
		if err != nil || !strings.Contains(out, key) {
			t.Errorf("--for %s --include-secret: %v; PSK shown: %v", peer, err, strings.Contains(out, key))
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-c", cfg, "--for", "vyos"}, `unknown peer "vyos"; expected one of strongswan, openbsd, cisco-ios, linux`},
		{[]string{"-c", cfg}, "--for is required"},
		{[]string{"-c", cfg, "--for", "linux"}, "use --for strongswan"},
		{[]string{"-c", filepath.Join(dir, "missing.toml"), "--for", "linux"}, "missing.toml: no such file"},
	} {
		out, err := runGresec(t, append([]string{"peer-config"}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("peer-config %v: %v\n%s\nwant an error containing %q", tc.args, err, out, tc.want)
		}
	}
	// A config error is reported as config.Load reports it.
	os.Chmod(psk, 0o644)
	out, err := runGresec(t, "peer-config", "-c", cfg, "--for", "strongswan")
	if err == nil || !strings.Contains(out, "ike.psk_file: "+psk+" has mode 0644") {
		t.Errorf("readable PSK file: %v\n%s", err, out)
	}
}
