package integration

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
	"github.com/gresec/gresec/internal/swan"
	"github.com/gresec/gresec/tunnel"
)

// ikev1Proposal is the Cisco appliance's "AES SHA 14" of the seeds, the
// common IKEv1 suite: AES-128-CBC, SHA-1, MODP 2048, and the same for ESP
// with PFS.
const ikev1Proposal = "aes128-sha1-modp2048"

// startSwanV1 runs strongSwan with version = 1 in site b and gresec with
// keying = "ikev1" in site a: Main Mode + Quick Mode, transport mode, GRE
// selectors, PSK.
func startSwanV1(t *testing.T, gresecInitiates bool, gresecExtra string, conf swan.Conn) *swanPair {
	t.Helper()
	p := newSwanSites(t, "gresec-v1", "gresec-v1-"+newKey(t)[2:34])
	conf.Version = 1
	conf.IKEProposal, conf.ESPProposal = ikev1Proposal, ikev1Proposal
	conf.Local, conf.Remote, conf.PSK = "198.18.0.2", "198.18.0.1", swan.Key(p.psk)
	ch := startCharon(t, p.b.ns.Name, conf.SwanctlConf())

	psk := filepath.Join(p.dir, "a.psk")
	if err := os.WriteFile(psk, []byte(p.psk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.a.cfgPath, p.a.sock = filepath.Join(p.dir, "a.toml"), filepath.Join(p.dir, "a.sock")
	c := fmt.Sprintf(`[tunnel]
local = "198.18.0.1"
remote = "198.18.0.2"
addresses = [%q, %q]
[ipsec]
keying = "ikev1"
[ike]
initiate = %v
psk_file = %q
proposals = [%q]
esp_proposals = [%q]
retransmit_timeout = "1s"
%s[control]
socket = %q
`, p.a.tun4, p.a.tun6, gresecInitiates, psk, ikev1Proposal, ikev1Proposal, gresecExtra, p.a.sock)
	if err := os.WriteFile(p.a.cfgPath, []byte(c), 0o600); err != nil {
		t.Fatal(err)
	}
	p.start(p.a)
	if !gresecInitiates {
		if err := ch.Initiate("gre"); err != nil {
			t.Fatalf("charon initiate: %v", err)
		}
	}
	return &swanPair{pair: p, charon: ch}
}

// installedV1 waits for gresec's outbound SA to be one strongSwan
// installed (other than notSPI) and returns both views.
func (sp *swanPair) installedV1(t *testing.T, notSPI string) (tunnel.Status, swan.ChildSA, swan.IKESA) {
	t.Helper()
	var st tunnel.Status
	var child swan.ChildSA
	var ike swan.IKESA
	ok := netns.WaitFor(30*time.Second, func() bool {
		var err error
		if st, err = sp.status(sp.a); err != nil || st.Outbound == nil || st.Outbound.SPI == notSPI {
			return false
		}
		sas, err := sp.charon.SAs()
		if err != nil {
			return false
		}
		for _, s := range sas {
			for _, c := range s.Installed() {
				if fmt.Sprintf("0x%08x", c.SPIIn) == st.Outbound.SPI {
					child, ike = c, s
					return true
				}
			}
		}
		return false
	})
	if !ok {
		raw, _ := sp.charon.ListSAs()
		t.Fatalf("gresec and strongSwan did not agree on an installed phase 2 SA within 30 s\ngresec out %+v\nstrongSwan:\n%s\ngresec log:\n%s", st.Outbound, raw, sp.a.proc.Out)
	}
	return st, child, ike
}

// TestStrongSwanIKEv1 runs Main Mode and Quick Mode against strongSwan in
// both roles, checks that both sides agree on the suite, the transport
// mode and the GRE selectors, that our ESP decrypts with strongSwan's
// keys (tshark), that strongSwan's DELETE removes our SA, and that
// gresec's shutdown deletes strongSwan's.
func TestStrongSwanIKEv1(t *testing.T) {
	for _, tc := range []struct {
		name            string
		gresecInitiates bool
	}{{"gresec-initiates", true}, {"strongswan-initiates", false}} {
		t.Run(tc.name, func(t *testing.T) {
			// gresec rekeys when it initiates (10 s lives); strongSwan when asked.
			extra := ""
			if tc.gresecInitiates {
				extra = "child_lifetime = \"10s\"\n"
			}
			sp := startSwanV1(t, tc.gresecInitiates, extra, swan.Conn{})
			st, child, ike := sp.installedV1(t, "")
			if ike.Version != 1 || ike.EncrAlg != "AES_CBC" || ike.EncrKey != 128 || ike.IntegAlg != "HMAC_SHA1_96" || ike.DHGroup != "MODP_2048" {
				t.Errorf("strongSwan's IKE SA: version %d %s-%d %s %s, want IKEv1 AES_CBC-128 HMAC_SHA1_96 MODP_2048", ike.Version, ike.EncrAlg, ike.EncrKey, ike.IntegAlg, ike.DHGroup)
			}
			if ike.Initiator == tc.gresecInitiates {
				t.Errorf("strongSwan initiator = %v, want %v", ike.Initiator, !tc.gresecInitiates)
			}
			if child.Mode != "TRANSPORT" || child.EncrAlg != "AES_CBC" || child.EncrKey != 128 || child.DHGroup != "MODP_2048" {
				t.Errorf("strongSwan installed %+v, want TRANSPORT AES_CBC-128 with PFS MODP_2048", child)
			}
			if fmt.Sprintf("0x%08x", child.SPIOut) != st.Inbound[0].SPI {
				t.Errorf("strongSwan sends with 0x%08x, gresec receives on %s", child.SPIOut, st.Inbound[0].SPI)
			}
			if strings.Join(child.LocalTS, " ") != "198.18.0.2/32[gre]" || strings.Join(child.RemoteTS, " ") != "198.18.0.1/32[gre]" {
				t.Errorf("selectors %v === %v, want GRE (protocol 47) host to host", child.LocalTS, child.RemoteTS)
			}
			sp.checkKeysAgree(t, st.Outbound.SPI)
			t.Logf("IKEv1 SA %016x_i %016x_r %s-%d/%s/%s; phase 2 %s %s-%d PFS %s, SPIs 0x%08x/0x%08x",
				ike.SPIi, ike.SPIr, ike.EncrAlg, ike.EncrKey, ike.IntegAlg, ike.DHGroup, child.Mode, child.EncrAlg, child.EncrKey, child.DHGroup, child.SPIIn, child.SPIOut)
			// No secret in gresec's log: the PSK, or the phase 2 keys.
			keys, _ := sp.charon.ChildKeys()
			log := strings.ToLower(sp.a.proc.Out.String())
			if strings.Contains(log, strings.ToLower(sp.psk)) {
				t.Error("gresec's log holds the PSK")
			}
			for _, k := range keys {
				if len(k.KeyIn) > 0 && strings.Contains(log, hex.EncodeToString(k.KeyIn)) {
					t.Error("gresec's log holds a phase 2 key")
				}
			}

			// Phase 2 rekey with PFS, by gresec or by strongSwan: both
			// install the new SA, the old one is deleted on both sides.
			if !tc.gresecInitiates {
				if out, err := sp.charon.Swanctl("--rekey", "--child", "gre"); err != nil {
					t.Fatalf("swanctl --rekey: %v\n%s", err, out)
				}
			}
			st2, child2, _ := sp.installedV1(t, st.Outbound.SPI)
			if child2.DHGroup != "MODP_2048" || child2.Mode != "TRANSPORT" {
				t.Errorf("rekeyed SA %+v, want TRANSPORT with PFS MODP_2048", child2)
			}
			sp.checkKeysAgree(t, st2.Outbound.SPI)
			if !tc.gresecInitiates {
				// strongSwan keeps an SA it rekeyed with IKEv1 until it
				// expires (charon.delete_rekeyed = no), and so does gresec.
				sas, _ := sp.charon.SAs()
				if len(sas) != 1 || len(sas[0].Children) != 2 || len(st2.Inbound) != 2 {
					raw, _ := sp.charon.ListSAs()
					t.Errorf("want the rekeyed and the new SA on both sides; gresec inbound %+v\nstrongSwan:\n%s", st2.Inbound, raw)
				}
			} else if !netns.WaitFor(15*time.Second, func() bool {
				sas, err := sp.charon.SAs()
				st, err2 := sp.status(sp.a)
				return err == nil && err2 == nil && len(sas) == 1 && len(sas[0].Installed()) == 1 && len(st.Inbound) == 1
			}) {
				raw, _ := sp.charon.ListSAs()
				t.Errorf("the old phase 2 SA was not deleted on both sides after gresec's rekey\nstrongSwan:\n%s\ngresec inbound: %+v", raw, sp.mustStatus(sp.a).Inbound)
			}

			if tc.gresecInitiates {
				// gresec stops: its DELETEs remove strongSwan's SAs.
				if err := sp.a.proc.Stop(5 * time.Second); err != nil {
					t.Errorf("gresec stop: %v", err)
				}
				if !netns.WaitFor(10*time.Second, func() bool {
					sas, err := sp.charon.SAs()
					return err == nil && len(sas) == 0
				}) {
					raw, _ := sp.charon.ListSAs()
					t.Errorf("strongSwan still lists SAs after gresec stopped:\n%s", raw)
				}
				return
			}
			// strongSwan deletes everything: gresec stops sending.
			if out, err := sp.charon.Swanctl("--terminate", "--ike", "gre"); err != nil {
				t.Fatalf("swanctl --terminate: %v\n%s", err, out)
			}
			if !netns.WaitFor(10*time.Second, func() bool {
				st, err := sp.status(sp.a)
				return err == nil && st.Outbound == nil
			}) {
				t.Errorf("gresec still sends on an SA after strongSwan's DELETE: %+v\n%s", sp.mustStatus(sp.a).Outbound, sp.a.proc.Out)
			}
		})
	}
}

// TestIKEv1GresecPair runs two gresec with keying = "ikev1": pings cross
// the GRE tunnel both ways, and a phase 2 rekey (child_lifetime 10 s)
// loses none of a steady ping stream (make-before-break).
func TestIKEv1GresecPair(t *testing.T) {
	p := startPair(t, pairOpt{keying: "ikev1", bResponds: true, ikeExtra: fmt.Sprintf("proposals = [%q]\nesp_proposals = [%q]\nchild_lifetime = \"10s\"\n", ikev1Proposal, ikev1Proposal)})
	var first string
	if !netns.WaitFor(20*time.Second, func() bool {
		a, errA := p.status(p.a)
		b, errB := p.status(p.b)
		if errA != nil || errB != nil || a.Outbound == nil || b.Outbound == nil {
			return false
		}
		first = a.Outbound.SPI
		return true
	}) {
		t.Fatalf("no phase 2 SA within 20 s\na:\n%s\nb:\n%s", p.a.proc.Out, p.b.proc.Out)
	}
	// status: IOS's terms, on both sides.
	for _, s := range []*side{p.a, p.b} {
		st := p.mustStatus(s)
		if st.Keying != "ikev1" || st.IKEv1 == nil || len(st.IKEv1.Phase1) != 1 || st.IKEv1.Phase1[0].State != "QM_IDLE" ||
			len(st.IKEv1.Phase2) != 1 || st.IKEv1.Phase2[0].Mode != "Transport" || st.IKEv1.Phase2[0].PFS != "MODP_2048" {
			t.Errorf("status --json in %s: keying %q ikev1 %+v", s.ns.Name, st.Keying, st.IKEv1)
		}
		text, err := exec.Command(gresecBin, "status", "-s", s.sock).CombinedOutput()
		if err != nil || !strings.Contains(string(text), "QM_IDLE") || !strings.Contains(string(text), "in use settings {Transport}") {
			t.Errorf("gresec status in %s (%v):\n%s", s.ns.Name, err, text)
		}
	}
	if n, out := p.ping(p.a, p.b.tun4.Addr(), 5); n != 5 {
		t.Fatalf("%d of 5 pings a -> b answered:\n%s", n, out)
	}
	if n, out := p.ping(p.b, p.a.tun4.Addr(), 5); n != 5 {
		t.Fatalf("%d of 5 pings b -> a answered:\n%s", n, out)
	}
	// 12 s of pings every 0.1 s span the rekey (5 s before the 10 s life ends).
	out, _ := p.a.ns.RunTimeout(40*time.Second, "ping", "-c", "120", "-i", "0.1", "-W", "2", "-w", "30", p.b.tun4.Addr().String())
	if n := replies(out); n != 120 {
		t.Errorf("%d of 120 pings answered across the rekey:\n%s", n, lastLines(out, 3))
	}
	st := p.mustStatus(p.a)
	if st.Outbound == nil || st.Outbound.SPI == first {
		t.Errorf("a still sends on %s: no rekey\n%s", first, p.a.proc.Out)
	}
	if !strings.Contains(p.a.proc.Out.String(), `"rekey": true`) && !strings.Contains(p.a.proc.Out.String(), `"rekey":true`) {
		t.Errorf("a's log shows no rekeying Quick Mode:\n%s", lastLines(p.a.proc.Out.String(), 20))
	}
}

// TestStrongSwanIKEv1BothInitiateDPD: strongSwan (start_action = start)
// and gresec both initiate, each with DPD every 2 s. They settle on SAs
// that carry our ESP (tshark with strongSwan's keys) and both answer
// R-U-THERE while idle; when strongSwan goes silent (nftables drops its
// IKE input), gresec declares it dead and stops sending.
func TestStrongSwanIKEv1BothInitiateDPD(t *testing.T) {
	sp := startSwanV1(t, true, "dpd = \"2s\"\nretransmit_tries = 2\n", swan.Conn{ConnExtra: "dpd_delay = 2s", ChildExtra: "start_action = start"})
	st, child, _ := sp.installedV1(t, "")
	if child.Mode != "TRANSPORT" {
		t.Errorf("strongSwan installed %+v, want TRANSPORT", child)
	}
	sp.checkKeysAgree(t, st.Outbound.SPI)
	// Idle for five DPD intervals: nobody is declared dead.
	time.Sleep(10 * time.Second)
	if strings.Contains(sp.a.proc.Out.String(), "peer is dead") {
		t.Fatalf("gresec declared a live strongSwan dead:\n%s", lastLines(sp.a.proc.Out.String(), 20))
	}
	// strongSwan's names: N(DPD) is R-U-THERE, N(DPD_ACK) its answer.
	log := sp.charon.Log()
	if !strings.Contains(log, "N(DPD_ACK)") {
		t.Errorf("strongSwan's log shows no answer to its R-U-THERE (N(DPD_ACK))")
	}
	if sas, err := sp.charon.SAs(); err != nil || len(sas) == 0 || len(sas[0].Installed()) == 0 {
		raw, _ := sp.charon.ListSAs()
		t.Fatalf("strongSwan lost its SAs while idle with DPD:\n%s", raw)
	}
	// strongSwan goes silent for IKE, both ways (its own R-U-THEREs would
	// prove it alive).
	rules := filepath.Join(sp.dir, "silent.nft")
	if err := os.WriteFile(rules, []byte("table inet silent {\n chain in {\n  type filter hook input priority 0;\n  udp dport 500 drop\n }\n chain out {\n  type filter hook output priority 0;\n  udp sport 500 drop\n }\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := sp.b.ns.Run("nft", "-f", rules); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	// dpd 2 s, then R-U-THERE at 0, 1 and 3 s: dead within about 8 s.
	if !netns.WaitFor(20*time.Second, func() bool {
		st, err := sp.status(sp.a)
		return err == nil && st.Outbound == nil
	}) {
		t.Fatalf("gresec still sends to a silent peer:\n%s", lastLines(sp.a.proc.Out.String(), 20))
	}
	if !strings.Contains(sp.a.proc.Out.String(), "peer is dead") {
		t.Errorf("gresec's log does not say why the SAs went:\n%s", lastLines(sp.a.proc.Out.String(), 20))
	}
}

// TestIKEv1KeysForWireshark: `gresec keys --wireshark` with keying =
// "ikev1" writes the ESP SAs and the ikev1_decryption_table, from which
// tshark alone decrypts a capture: Main Mode's identities, Quick Mode's
// GRE client IDs, and the pings inside ESP.
func TestIKEv1KeysForWireshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatalf("tshark is not installed: `sudo make test` installs it")
	}
	p := newPair(t, pairOpt{keying: "ikev1", bResponds: true, ikeExtra: fmt.Sprintf("proposals = [%q]\nesp_proposals = [%q]\n", ikev1Proposal, ikev1Proposal)})
	pcap := filepath.Join(t.TempDir(), "tunnel.pcap")
	dump, err := p.a.ns.Start("tcpdump", "-n", "--immediate-mode", "-Z", "root", "-i", "veth-a", "-w", pcap, "esp or udp port 500")
	if err != nil {
		t.Fatal(err)
	}
	if !netns.WaitFor(5*time.Second, func() bool { return strings.Contains(dump.Out.String(), "listening on") }) {
		t.Fatalf("tcpdump did not start: %s", dump.Out)
	}
	p.start(p.b)
	p.start(p.a)
	if !netns.WaitFor(20*time.Second, func() bool { st, err := p.status(p.a); return err == nil && st.Outbound != nil }) {
		t.Fatalf("no phase 2 SA:\n%s", p.a.proc.Out)
	}
	if got, out := p.ping(p.a, p.b.tun4.Addr(), 3); got < 3 {
		t.Fatalf("ping: %d of 3\n%s", got, out)
	}
	dir := filepath.Join(t.TempDir(), "wireshark")
	if out, err := exec.Command(gresecBin, "keys", "--wireshark", dir, "-s", p.a.sock).CombinedOutput(); err != nil {
		t.Fatalf("gresec keys: %v\n%s", err, out)
	}
	dump.Stop(5 * time.Second)
	if st, err := os.Stat(filepath.Join(dir, "ikev1_decryption_table")); err != nil || st.Mode().Perm() != 0o600 || st.Size() == 0 {
		t.Fatalf("ikev1_decryption_table: want a non-empty 0600 file: %v", err)
	}
	tshark := func(filter string, fields ...string) []string {
		args := []string{"-n", "-r", pcap, "-Y", filter, "-T", "fields"}
		for _, f := range fields {
			args = append(args, "-e", f)
		}
		cmd := exec.Command("tshark", args...)
		cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+dir)
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("tshark -Y %q: %v", filter, err)
		}
		return strings.Fields(string(got))
	}
	if icmp := tshark("esp && gre && icmp", "icmp.type"); len(icmp) < 6 {
		t.Errorf("tshark decrypted %d ICMP packets inside ESP/GRE, want >= 6: %v", len(icmp), icmp)
	}
	ids := strings.Join(tshark("isakmp.exchangetype == 2", "isakmp.id.data.ipv4_addr"), " ")
	for _, want := range []string{p.a.under.Addr().String(), p.b.under.Addr().String()} {
		if !strings.Contains(ids, want) {
			t.Errorf("tshark found IDs %q in the decrypted Main Mode, want %s among them", ids, want)
		}
	}
	if protos := strings.Join(tshark("isakmp.exchangetype == 32", "isakmp.id.protoid"), " "); !strings.Contains(protos, "47") {
		t.Errorf("tshark found client ID protocols %q in the decrypted Quick Mode, want 47 (GRE)", protos)
	}
}
