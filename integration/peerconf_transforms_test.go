package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/internal/swan"
	"github.com/gresec/gresec/peerconf"
)

// TestPeerConfigStrongSwanCBC: gresec with the appliance's IKE proposal
// (IKEv2 `AES SHA 14`: aes128-sha1-modp2048) and the strongSwan end
// generated from it negotiate: strongSwan's IKE SA is AES_CBC-128 with
// HMAC_SHA1_96, PRF_HMAC_SHA1 and MODP_2048, and the CHILD_SA (AES-GCM,
// what the data plane does today) is installed.
func TestPeerConfigStrongSwanCBC(t *testing.T) {
	sp := startGeneratedSwan(t, true, false, "proposals = [\"aes128-sha1-modp2048\"]\n")
	_, child := sp.installed(t, "")
	if child.Mode != "TRANSPORT" || child.EncrAlg != "AES_GCM_16" {
		t.Errorf("CHILD_SA %+v, want TRANSPORT AES_GCM_16", child)
	}
	sas, err := sp.charon.SAs()
	if err != nil || len(sas) != 1 {
		t.Fatalf("strongSwan SAs: %v %+v", err, sas)
	}
	if s := sas[0]; s.State != "ESTABLISHED" || s.EncrAlg != "AES_CBC" || s.EncrKey != 128 || s.PRF != "PRF_HMAC_SHA1" || s.DHGroup != "MODP_2048" {
		t.Errorf("IKE SA %s %s-%d/%s/%s, want ESTABLISHED AES_CBC-128/PRF_HMAC_SHA1/MODP_2048", s.State, s.EncrAlg, s.EncrKey, s.PRF, s.DHGroup)
	}
	if raw, _ := sp.charon.ListSAs(); !strings.Contains(raw, "AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_2048") {
		t.Errorf("strongSwan's IKE SA lacks HMAC_SHA1_96:\n%s", raw)
	}
}

// TestStrongSwanLoadsGeneratedTransforms: the swanctl.conf peer-config
// writes for each family of transforms loads into a real charon
// (swanctl --load-all), and charon reads the proposals as meant (its
// log of the loaded connection; swanctl --list-conns does not show
// them): AES-CBC with each HMAC, ChaCha20-Poly1305,
// MODP 3072/4096, PRF SHA-1, ESN. The ESP proposals are set past config,
// which refuses those the data plane does not implement yet.
func TestStrongSwanLoadsGeneratedTransforms(t *testing.T) {
	sites := newSwanSites(t, "gresec-pct", "gresec-pct-"+newKey(t)[2:34])
	psk := filepath.Join(sites.dir, "a.psk")
	if err := os.WriteFile(psk, []byte(sites.psk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		ike, esp []string
		want     []string // in charon's log of the connection it loaded
	}{
		{"appliance", []string{"aes128-sha1-modp2048"}, []string{"aes128-sha1-modp2048"}, []string{
			"proposals = IKE:AES_CBC_128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_2048\n",
			"proposals = ESP:AES_CBC_128/HMAC_SHA1_96/MODP_2048/NO_EXT_SEQ\n"}},
		{"sha2 and big modp", []string{"aes256-sha512-prfsha384-modp4096", "aes192-sha384-modp3072"}, []string{"aes256-sha256-ecp384", "aes256-sha512-modp4096-esn"}, []string{
			"proposals = IKE:AES_CBC_256/HMAC_SHA2_512_256/PRF_HMAC_SHA2_384/MODP_4096, IKE:AES_CBC_192/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/MODP_3072\n",
			"proposals = ESP:AES_CBC_256/HMAC_SHA2_256_128/ECP_384/NO_EXT_SEQ, ESP:AES_CBC_256/HMAC_SHA2_512_256/MODP_4096/EXT_SEQ\n"}},
		{"chacha20", []string{"chacha20poly1305-prfsha256-x25519"}, []string{"chacha20poly1305-x25519-esn-noesn"}, []string{
			"proposals = IKE:CHACHA20_POLY1305/PRF_HMAC_SHA2_256/CURVE_25519\n",
			"proposals = ESP:CHACHA20_POLY1305/CURVE_25519/EXT_SEQ/NO_EXT_SEQ\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "g.toml")
			text := fmt.Sprintf("[tunnel]\nlocal = \"198.18.0.1\"\nremote = \"198.18.0.2\"\n[ipsec]\nkeying = \"ikev2\"\n[ike]\npsk_file = %q\nproposals = [\"%s\"]\n",
				psk, strings.Join(tc.ike, `", "`))
			if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := config.Load(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var esp []ike.Proposal
			for _, s := range tc.esp {
				esp = append(esp, ike.MustParseProposals(ike.ProtoESP, s)...)
			}
			c.IKE.ESPProposals = ike.Numbered(esp)
			out, err := peerconf.Generate(c, peerconf.Options{Peer: peerconf.StrongSwan, IncludeSecret: true})
			if err != nil {
				t.Fatal(err)
			}
			sec, _ := out.Section(peerconf.SwanctlFile)
			ch := startCharon(t, sites.b.ns.Name, sec.Text) // fails unless --load-all took it
			conns := ch.RedactedLog()
			for _, want := range tc.want {
				if !strings.Contains(conns, want) {
					t.Errorf("charon read the generated proposals as\n%s\nwant %q\n--- swanctl.conf ---\n%s", conns, want, swan.Redact(sec.Text))
				}
			}
		})
	}
}
