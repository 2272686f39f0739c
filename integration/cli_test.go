package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runGresec(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(gresecBin, args...).CombinedOutput()
	return string(out), err
}

func TestCheckPrintsEffectiveSettings(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "g.toml")
	key := strings.Repeat("ab", 36)
	os.WriteFile(cfg, []byte(`[tunnel]
local = "198.18.0.1"
remote = "198.18.0.2"
[static]
spi_out = 0x1001
spi_in = 0x1002
key_out = "0x`+key+`"
key_in = "0x`+key+`"
`), 0o600)
	out, err := runGresec(t, "check", "-c", cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"mtu            1442 (computed: underlay 1500 - overhead 58)", "tcp mss clamp  1402 (IPv4), 1382 (IPv6)", "aes-256-gcm-16"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "abab") {
		t.Errorf("check printed key material:\n%s", out)
	}

	// Readable by others: refused, naming the file and the fix.
	os.Chmod(cfg, 0o644)
	out, err = runGresec(t, "check", "-c", cfg)
	if err == nil || !strings.Contains(out, cfg+": static: file holds keys but has mode 0644") {
		t.Errorf("world-readable key file: %v\n%s", err, out)
	}

	// A wrong value names the file, the key and what is expected.
	os.WriteFile(cfg, []byte("[tunnel]\nlocal = \"198.18.0.1\"\nremote = \"198.18.0.2\"\nmtu = 70000\n[ipsec]\nkeying = \"none\"\n"), 0o600)
	out, err = runGresec(t, "check", "-c", cfg)
	if err == nil || !strings.Contains(out, cfg+": tunnel.mtu: expected an integer 1280..65435, got 70000") {
		t.Errorf("bad mtu: %v\n%s", err, out)
	}
}

func TestStatusWithoutInstanceSaysSo(t *testing.T) {
	out, err := runGresec(t, "status", "-s", filepath.Join(t.TempDir(), "none.sock"))
	if err == nil || !strings.Contains(out, "no gresec answering at") {
		t.Errorf("status with nothing running: %v\n%s", err, out)
	}
	out, err = runGresec(t, "frobnicate")
	if err == nil || !strings.Contains(out, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %v\n%s", err, out)
	}
}

// TestEveryCommandHasHelp: each command `gresec help` lists answers -h
// with its usage line and exits 0.
func TestEveryCommandHasHelp(t *testing.T) {
	out, err := runGresec(t, "help")
	if err != nil {
		t.Fatalf("gresec help: %v\n%s", err, out)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); strings.HasPrefix(line, "  ") && len(f) > 1 {
			names = append(names, f[0])
		}
	}
	if len(names) < 8 {
		t.Fatalf("gresec help lists %d commands, want at least 8:\n%s", len(names), out)
	}
	for _, n := range names {
		out, err := runGresec(t, n, "-h")
		if err != nil || !strings.Contains(out, "Usage: gresec "+n) {
			t.Errorf("gresec %s -h: %v\n%s", n, err, out)
		}
	}
}
