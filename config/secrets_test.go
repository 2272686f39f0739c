package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// keyOut is good's static.key_out, as the tests below misplace it.
const keyOut = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"

// leaks reports the first 8-character piece of secret found in s: a key
// shown in part is shown.
func leaks(s, secret string) string {
	for i := 0; i+8 <= len(secret); i++ {
		if strings.Contains(s, secret[i:i+8]) {
			return secret[i : i+8]
		}
	}
	return ""
}

// TestErrorsNeverShowKeyMaterial: however a static key or a PSK-like
// string is mistyped or misplaced (the `ip xfrm` habit of an unquoted
// 0x…, a broken quote, a wrong type, a pasted line), the error names the
// line or the key and what was expected, and holds no part of the secret.
func TestErrorsNeverShowKeyMaterial(t *testing.T) {
	const line = `key_out = "0x` + keyOut + `"`
	const psk = "correct horse battery staple"
	for _, tc := range []struct{ to, want string }{
		// The decoder's own message was "0x0001…2223 is out of range for int64".
		{`key_out = 0x` + keyOut, `bad.conf: static.key_out: line 15, column 11: not valid TOML: the value must be a string in quotes, as in key_out = "0x…"`},
		{`key_out = ` + keyOut, `static.key_out: line 15, column 11: not valid TOML: the value must be a string in quotes`},
		{`key_out = 0x0001020304`, `static.key_out: must be a string in quotes, as in key_out = "0x…", got an integer (value not shown)`},
		{`key_out = 0x` + keyOut[:14], `static.key_out: must be a string in quotes`},
		{`key_out = '0x` + keyOut + `"`, `static.key_out: line 15, column 87: not valid TOML: the quoted string is not closed`},
		{`key_out = "0x` + keyOut, `static.key_out: line 15`},
		{line + ` 00`, `static.key_out: line 15, column 87: not valid TOML: unexpected text after the value`},
		{line + ` = 1`, `line 15`},
		{`key_out "0x` + keyOut + `"`, `bad.conf: line 15, column 9: not valid TOML`},
		{`0x` + keyOut, `bad.conf: line 15`},
		{keyOut, `bad.conf: line 15`},
		{keyOut + ` = "x"`, `static: unknown key in [static] (its name is not shown`},
		{`"` + keyOut + `" = "x"`, `static: unknown key in [static]`},
		{`key_out = ["0x` + keyOut + `"]`, `static.key_out: must be a string in quotes, as in key_out = "0x…", got an array (value not shown)`},
		{`key_out = {k = "0x` + keyOut + `"}`, `static.key_out: must be a string in quotes, as in key_out = "0x…", got a table`},
		{line + "\n" + line, `static.key_out: line 16, column 88: not valid TOML: a key or section is given twice`},
		{`key_out = "0x` + keyOut[:70] + `"`, `static.key_out: expected 36 bytes (AES-256 key + salt) or 20 bytes (AES-128 key + salt), got 35 bytes (value not shown)`},
		{`key_out = "0x` + keyOut[:71] + `"`, `static.key_out: expected hex digits after "0x" (value not shown)`},
		{`key_out = "0x` + keyOut + `ZZ"`, `static.key_out: expected hex digits`},
		{line + "\nspi_in = 0x" + keyOut, `static.spi_in: line 16, column 10: not valid TOML: the integer is out of range`},
		{line + "\n[[static]]", `bad.conf: line 16`},
		// Pasted into keys that echo their values.
		{"\n[control]\nsocket = \"0x" + keyOut + "\"", `control.socket: expected an absolute path, got (value not shown: it looks like key material)`},
		// PSK-like text: no pattern tells it from a value, so syntax
		// errors show no text at all.
		{line + "\npsk = " + psk, `bad.conf: line 16, column 7: not valid TOML: a value must be a string in quotes`},
		{line + "\npsk = \"" + psk, `bad.conf: line 16`},
		{line + "\npsk = \"\"\"" + psk + "\n", `bad.conf: line 18, column 86: not valid TOML: the file ends inside a string`},
		{line + "\nx = [\"" + psk + "\"", `bad.conf: line 17`},
		{line + "\n" + psk, `bad.conf: line 16`},
		{line + "\n[tunnel.x]\n" + strings.ReplaceAll(psk, " ", "") + " = 1", `tunnel.x: unknown key`},
		{"\n[log]\nlevel = [\"" + psk + "\"]", `log.level: must be a string (in quotes), got an array`},
	} {
		in := strings.Replace(good, line, tc.to, 1)
		if strings.HasPrefix(tc.to, "\n[") {
			in = good + tc.to
		}
		if in == good {
			t.Fatalf("test case %q replaced nothing", tc.to)
		}
		_, err := Parse("bad.conf", []byte(in))
		if err == nil {
			t.Errorf("%s: no error, want %q", tc.to, tc.want)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%s:\n got  %s\n want %s", tc.to, msg, tc.want)
		}
		if l := leaks(msg, keyOut); l != "" {
			t.Errorf("%s: the error shows key material (%q): %s", tc.to, l, msg)
		}
		for _, w := range strings.Fields(psk) {
			if strings.Contains(msg, w) {
				t.Errorf("%s: the error shows the PSK-like text (%q): %s", tc.to, w, msg)
			}
		}
		// The decoder's vocabulary never reaches the operator.
		for _, w := range []string{"int64", "toml: line", "toml: (", "toml: error", "out of range for", "last key", "struct", "*string"} {
			if strings.Contains(msg, w) {
				t.Errorf("%s: the error speaks the decoder's language (%q): %s", tc.to, w, msg)
			}
		}
	}
}

// TestLoadErrorsNeverShowKeyMaterial: Load (what `gresec check` and a
// SIGHUP reload call) on a file whose key is unquoted.
func TestLoadErrorsNeverShowKeyMaterial(t *testing.T) {
	p := filepath.Join(t.TempDir(), "g.toml")
	if err := os.WriteFile(p, []byte(strings.Replace(good, `"0x`+keyOut+`"`, "0x"+keyOut, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p+": static.key_out: line 15") {
		t.Fatalf("Load: %v", err)
	}
	if l := leaks(err.Error(), keyOut); l != "" {
		t.Errorf("Load's error shows key material (%q): %v", l, err)
	}
}
