package integration

import (
	"encoding/hex"
	"fmt"
	"os"
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
			sp := startSwanV1(t, tc.gresecInitiates, "", swan.Conn{})
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
