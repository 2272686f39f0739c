package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gresec/gresec/internal/netns"
)

// keyPieces reports the first 8-hex-digit piece of the key (0x… form)
// found in out: a key shown in part is shown.
func keyPiece(out, key string) string {
	h := strings.TrimPrefix(key, "0x")
	for i := 0; i+8 <= len(h); i++ {
		if strings.Contains(out, h[i:i+8]) {
			return h[i : i+8]
		}
	}
	return ""
}

// TestCheckHidesKeyMaterial: `gresec check` on a file whose static key is
// written unquoted, as `ip xfrm` takes it, or mistyped otherwise, names
// the line or key and what is expected, and prints no part of the key.
// It also refuses what cannot work: a broadcast remote, a tunnel prefix
// over the underlay, a table given as a number.
func TestCheckHidesKeyMaterial(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "g.toml")
	key := newKey(t)
	const base = "[tunnel]\nlocal = \"198.18.0.1\"\nremote = \"198.18.0.2\"\naddresses = [\"198.19.0.0/31\"]\n[static]\nspi_out = 0x1001\nspi_in = 0x1002\nkey_in = \"0x" +
		"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40414243\"\n"
	for _, tc := range []struct{ text, want string }{
		{base + "key_out = " + key + "\n", cfg + ": static.key_out: line 9, column 11: not valid TOML: the value must be a string in quotes, as in key_out = \"0x…\""},
		{base + "key_out = " + key[:12] + "\n", cfg + ": static.key_out: must be a string in quotes, as in key_out = \"0x…\", got an integer (value not shown)"},
		{base + "key_out = \"" + key[:70] + "\"\n", cfg + ": static.key_out: expected 36 bytes"},
		{base + "key_out = \"" + key + "\n", cfg + ": static.key_out: line 9"},
		{base + "key_out = [\"" + key + "\"]\n", "static.key_out: must be a string in quotes"},
		{base + key + "\n", cfg + ": line 9"},
		{strings.Replace(base, `remote = "198.18.0.2"`, `remote = "255.255.255.255"`, 1) + "key_out = \"" + key + "\"\n", "tunnel.remote: expected a unicast address of this host or its peer, got 255.255.255.255 (broadcast)"},
		{strings.Replace(base, `"198.19.0.0/31"`, `"198.18.0.0/24"`, 1) + "key_out = \"" + key + "\"\n", "tunnel.addresses[0]: 198.18.0.0/24 contains tunnel.local 198.18.0.1"},
		{"tunnel = 5\n[ipsec]\nkeying = \"none\"\n", cfg + ": tunnel: must be a table (a [tunnel] section), got an integer"},
	} {
		if err := os.WriteFile(cfg, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := runGresec(t, "check", "-c", cfg)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("check: %v\n got  %s want %s", err, out, tc.want)
		}
		if p := keyPiece(out, key); p != "" {
			t.Errorf("check printed key material (%s):\n%s", p, out)
		}
	}
}

// TestSIGHUPReloadHidesKeyMaterial: a reload of a static-key tunnel whose
// new file has the key unquoted, or of the wrong length, is refused with
// the key named; the log holds no part of the new or the running keys,
// and the running configuration keeps carrying traffic.
func TestSIGHUPReloadHidesKeyMaterial(t *testing.T) {
	p := startPair(t, pairOpt{keying: "static"})
	if got, out := p.ping(p.a, p.b.tun4.Addr(), 2); got < 2 {
		t.Fatalf("ping before the reloads: %d of 2\n%s", got, out)
	}
	orig, err := os.ReadFile(p.a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	newKey := newKey(t)
	quoted := "key_out = \"" + p.a.keyOut + "\""
	if !strings.Contains(string(orig), quoted) {
		t.Fatalf("the config has no %s line:\n%s", quoted, orig)
	}
	for i, tc := range []struct{ line, want string }{
		{"key_out = " + newKey, "static.key_out: line 14, column 11: not valid TOML: the value must be a string in quotes"},
		{"key_out = \"" + newKey[:60] + "\"", "static.key_out: expected 36 bytes (AES-256 key + salt) or 20 bytes (AES-128 key + salt), got 29 bytes (value not shown)"},
		{"key_out = " + newKey[:14], "static.key_out: must be a string in quotes"},
	} {
		if err := os.WriteFile(p.a.cfgPath, []byte(strings.Replace(string(orig), quoted, tc.line, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(p.a.proc.Out.String(), "reload refused: invalid configuration")
		if err := p.a.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if !netns.WaitFor(10*time.Second, func() bool {
			return strings.Count(p.a.proc.Out.String(), "reload refused: invalid configuration") > before
		}) {
			t.Fatalf("reload %d was not refused:\n%s", i, p.a.proc.Out)
		}
		// The refusal is one log line; wait for the whole of it.
		if !netns.WaitFor(5*time.Second, func() bool { return strings.Contains(p.a.proc.Out.String(), tc.want) }) {
			t.Errorf("reload %d: no %q in the log:\n%s", i, tc.want, p.a.proc.Out)
		}
	}
	log := p.a.proc.Out.String()
	for _, k := range []string{newKey, p.a.keyOut, p.a.keyIn} {
		if piece := keyPiece(log, k); piece != "" {
			t.Errorf("the log shows key material (%s):\n%s", piece, log)
		}
	}
	if got, out := p.ping(p.a, p.b.tun4.Addr(), 3); got < 3 {
		t.Errorf("ping after the refused reloads: %d of 3\n%s", got, out)
	}
}
