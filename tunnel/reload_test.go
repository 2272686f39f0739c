package tunnel

import (
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/esp"
)

const reloadBase = `[tunnel]
local = "198.18.0.1"
remote = "198.18.0.2"
[ipsec]
replay_window = 1024
[static]
spi_out = 0x1001
spi_in = 0x1002
key_out = "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"
key_in = "0x202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40414243"
`

// staticTunnel is a tunnel with cfg's static SAs and no devices: enough
// for a Reload that changes no addresses.
func staticTunnel(t *testing.T, cfg *config.Config) *Tunnel {
	t.Helper()
	tn := &Tunnel{cfg: cfg, log: zap.NewNop(), remote: cfg.Remote, sadb: &esp.DB{}}
	if err := tn.replaceStatic(cfg); err != nil {
		t.Fatal(err)
	}
	return tn
}

func mustParse(t *testing.T, text string) *config.Config {
	t.Helper()
	c, err := config.Parse("g.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReloadByField: a reload acts on the typed fields config.Diff
// reports: restart-only fields are refused with the keys named in file
// order and nothing applied; a new replay window or new keys replace the
// static SAs; a log level alone leaves them be.
func TestReloadByField(t *testing.T) {
	old := mustParse(t, reloadBase)
	tn := staticTunnel(t, old)
	in, out := tn.sadb.Lookup(0x1002), tn.sadb.Outbound()
	reload := func(text string) error {
		next := mustParse(t, text)
		return tn.Reload(next, config.Diff(old, old.Digests(), next))
	}

	err := reload(strings.NewReplacer("[tunnel]", "[tunnel]\nmtu = 1400\ninterface = \"gre9\"", "[ipsec]", "[log]\nlevel = \"debug\"\n[ipsec]").Replace(reloadBase))
	if err == nil || err.Error() != "g.toml: tunnel.interface, tunnel.mtu, control.socket changed: a restart is needed for that; still running the previous configuration" {
		t.Errorf("restart-only reload: %v", err)
	}
	if err := reload(reloadBase + "[log]\nlevel = \"debug\"\n"); err != nil {
		t.Errorf("log level reload: %v", err)
	}
	if tn.sadb.Lookup(0x1002) != in || tn.sadb.Outbound() != out {
		t.Fatal("the SAs changed on a refused or a log-level reload")
	}

	if err := reload(strings.Replace(reloadBase, "replay_window = 1024", "replay_window = 64", 1)); err != nil {
		t.Fatal(err)
	}
	if tn.sadb.Lookup(0x1002) == in || tn.sadb.Outbound() == out {
		t.Error("a new replay window did not replace the static SAs")
	}
	in, out = tn.sadb.Lookup(0x1002), tn.sadb.Outbound()
	if err := reload(strings.Replace(reloadBase, "0x202122", "0x302122", 1)); err != nil {
		t.Fatal(err)
	}
	if tn.sadb.Lookup(0x1002) == in || tn.sadb.Outbound() == out {
		t.Error("a new key_in did not replace the static SAs")
	}
}

// TestReloadRestartsIKEOnlyForItsFields: with keying = "ikev2", [ike]
// fields and the replay window restart the IKE engine; other reloadable
// fields do not.
func TestReloadRestartsIKEOnlyForItsFields(t *testing.T) {
	const base = "[tunnel]\nlocal = \"198.18.0.1\"\nremote = \"198.18.0.2\"\n[ipsec]\nkeying = \"ikev2\"\n[ike]\npsk_file = \"/nonexistent\"\n"
	old := mustParse(t, base)
	restarts := 0
	tn := &Tunnel{cfg: old, log: zap.NewNop(), ikeRestart: func() { restarts++ }}
	for _, tc := range []struct {
		text string
		want int
	}{
		{base + "[log]\nlevel = \"warn\"\n", 0},
		{strings.Replace(base, "[ike]", "replay_window = 64\n[ike]", 1), 1},
		{base + "dpd = \"30s\"\n", 1},
		{base + "proposals = [\"aes128gcm16-prfsha256-ecp256\"]\n", 1},
	} {
		restarts = 0
		next := mustParse(t, tc.text)
		if err := tn.Reload(next, config.Diff(old, nil, next)); err != nil {
			t.Fatal(err)
		}
		if restarts != tc.want {
			t.Errorf("%q: %d IKE restarts, want %d", tc.text[len(base)-10:], restarts, tc.want)
		}
	}
}
