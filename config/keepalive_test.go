package config

import (
	"strings"
	"testing"
	"time"
)

// TestKeepalive: [tunnel] keepalive and keepalive_retries, IOS's
// `keepalive 10 3`: off by default, the retries default 3, the ranges
// IOS allows, retries without keepalives refused, and a reload diff that
// names them.
func TestKeepalive(t *testing.T) {
	with := func(lines string) string {
		return strings.Replace(good, "mss_clamp = true", "mss_clamp = true\n"+lines, 1)
	}
	for _, tc := range []struct {
		lines    string
		interval time.Duration
		retries  int
		err      string
	}{
		{"", 0, 3, ""},
		{`keepalive = "10s"`, 10 * time.Second, 3, ""},
		{"keepalive = \"5s\"\nkeepalive_retries = 4", 5 * time.Second, 4, ""},
		{`keepalive = "0"`, 0, 3, ""},
		{"keepalive = \"1s\"\nkeepalive_retries = 255", time.Second, 255, ""},
		{`keepalive = "32767s"`, 32767 * time.Second, 3, ""},
		{`keepalive = "500ms"`, 0, 0, `tunnel.keepalive: expected a duration like "1h" or "90s" of at least 1s, got "500ms"`},
		{`keepalive = "0s"`, 0, 0, `tunnel.keepalive: expected a duration`},
		{`keepalive = "ten"`, 0, 0, `tunnel.keepalive: expected a duration`},
		{`keepalive = "32768s"`, 0, 0, `tunnel.keepalive: expected a duration from 1s to 9h6m7s, or "0" for none, got "32768s"`},
		{`keepalive = 10`, 0, 0, `tunnel.keepalive: must be a string (in quotes), got an integer`},
		{"keepalive = \"10s\"\nkeepalive_retries = 0", 0, 0, `tunnel.keepalive_retries: expected an integer 1..255, got 0`},
		{"keepalive = \"10s\"\nkeepalive_retries = 256", 0, 0, `tunnel.keepalive_retries: expected an integer 1..255, got 256`},
		{"keepalive_retries = 3", 0, 0, `tunnel.keepalive_retries: given, but no keepalives are sent; expected tunnel.keepalive as well`},
		{"keepalive = \"0\"\nkeepalive_retries = 3", 0, 0, `tunnel.keepalive_retries: given, but no keepalives are sent`},
	} {
		c, err := Parse("k.toml", []byte(with(tc.lines)))
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q:\n got  %v\n want %s", tc.lines, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.lines, err)
		case tc.err == "" && (c.Keepalive != tc.interval || c.KeepaliveRetries != tc.retries):
			t.Errorf("%q: keepalive %s retries %d, want %s %d", tc.lines, c.Keepalive, c.KeepaliveRetries, tc.interval, tc.retries)
		}
	}

	old, _ := Parse("k.toml", []byte(good))
	next, err := Parse("k.toml", []byte(with("keepalive = \"10s\"\nkeepalive_retries = 5")))
	if err != nil {
		t.Fatal(err)
	}
	cs := Diff(old, old.Digests(), next)
	if f := Changed(cs); f != FieldsOf(TunnelKeepalive, TunnelKeepaliveRetries) || cs[0].String() != "tunnel.keepalive: 0s -> 10s" {
		t.Errorf("changes %v", cs)
	}
}
