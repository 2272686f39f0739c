package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const ikeBase = `[tunnel]
local = "198.18.0.1"
remote = "198.18.0.2"
[ipsec]
keying = "ikev2"
[ike]
psk_file = "PSK"
`

func TestIKEDefaultsAreTheIkedIOSPair(t *testing.T) {
	c, err := Parse("g.toml", []byte(ikeBase))
	if err != nil {
		t.Fatal(err)
	}
	k := c.IKE
	if !k.Initiate || k.Lifetime != 24*time.Hour || k.ChildLifetime != time.Hour || k.ChildLifetimeBytes != 500<<20 || k.DPD != time.Minute {
		t.Errorf("defaults %+v", k)
	}
	if len(k.Proposals) == 0 || len(k.ESPProposals) == 0 || k.ProposalText[0] != "aes256gcm16-prfsha384-ecp384" || k.ESPProposalText[0] != "aes256gcm16-ecp384" {
		t.Errorf("proposals %v %v", k.ProposalText, k.ESPProposalText)
	}
	if k.LocalIDText != "198.18.0.1" || k.RemoteIDText != "198.18.0.2" {
		t.Errorf("ids %q %q", k.LocalIDText, k.RemoteIDText)
	}
	if !k.Fragmentation || k.FragmentSize != 1280 {
		t.Errorf("fragmentation %v, fragment_size %d", k.Fragmentation, k.FragmentSize)
	}
	c, err = Parse("g.toml", []byte(ikeBase+"fragmentation = \"no\"\nfragment_size = 576\n"))
	if err != nil || c.IKE.Fragmentation || c.IKE.FragmentSize != 576 {
		t.Errorf("fragmentation = \"no\", fragment_size = 576: %v", err)
	}
}

func TestIKEErrors(t *testing.T) {
	for _, tc := range []struct{ add, want string }{
		{`proposals = ["aes256gcm16-prfmd5-ecp384"]`, "ike.proposals[0]: expected a proposal like"},
		{`lifetime = "soon"`, `ike.lifetime: expected a duration like "1h" or "90s" of at least 1m0s, got "soon"`},
		{`child_lifetime = "1s"`, "ike.child_lifetime: expected a duration"},
		{`child_lifetime_bytes = "lots"`, `ike.child_lifetime_bytes: expected a size like "500MiB"`},
		{`dpd = "-5s"`, "ike.dpd: expected a duration"},
		{`local_psk_file = "x"`, "ike.psk_file: expected either psk_file or local_psk_file + remote_psk_file"},
		{`colour = "red"`, "ike.colour: unknown key"},
		{`fragmentation = "force"`, `ike.fragmentation: expected "yes" or "no", got "force"`},
		{`fragment_size = 100`, "ike.fragment_size: expected an IP datagram size from 200 to 65535 bytes, got 100"},
	} {
		_, err := Parse("g.toml", []byte(ikeBase+tc.add+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.add, err, tc.want)
		}
	}
	if _, err := Parse("g.toml", []byte(strings.Replace(ikeBase, `psk_file = "PSK"`, "", 1))); err == nil || !strings.Contains(err.Error(), "ike.psk_file: missing") {
		t.Errorf("no psk_file: %v", err)
	}
	noIKE := ikeBase[:strings.Index(ikeBase, "[ike]")]
	if _, err := Parse("g.toml", []byte(noIKE)); err == nil || !strings.Contains(err.Error(), "ike: missing") {
		t.Errorf("no [ike]: %v", err)
	}
}

func TestIKELoadReadsPSKPrivately(t *testing.T) {
	dir := t.TempDir()
	psk := filepath.Join(dir, "psk")
	cfg := filepath.Join(dir, "g.toml")
	os.WriteFile(cfg, []byte(strings.Replace(ikeBase, "PSK", psk, 1)), 0o644)
	const secret = "correct horse battery staple"
	os.WriteFile(psk, []byte(secret+"\n"), 0o644)
	_, err := Load(cfg)
	if err == nil || !strings.Contains(err.Error(), "ike.psk_file: "+psk+" has mode 0644") {
		t.Fatalf("world-readable PSK: %v", err)
	}
	os.Chmod(psk, 0o600)
	c, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.IKE.LocalPSK) != secret || string(c.IKE.RemotePSK) != secret {
		t.Error("PSK not read, or the newline kept")
	}
	os.WriteFile(psk, []byte("short"), 0o600)
	if _, err := Load(cfg); err == nil || !strings.Contains(err.Error(), "holds 5 bytes") || strings.Contains(err.Error(), "short") {
		t.Errorf("short PSK: %v", err)
	}
	// A missing file says how to make one, rather than stat's words alone.
	os.Remove(psk)
	if _, err := Load(cfg); err == nil || !strings.Contains(err.Error(), "ike.psk_file: the pre-shared key file "+psk+" does not exist; expected a random key both ends share: openssl rand -base64 24 > "+psk) {
		t.Errorf("missing PSK file: %v", err)
	}
}
