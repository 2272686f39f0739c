package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dynamicTunnel is a tunnel with remote = "any"; extra goes into [ike].
func dynamicTunnel(t *testing.T, iface, addr, extra string) string {
	psk := filepath.Join(t.TempDir(), "psk")
	if err := os.WriteFile(psk, []byte("a-pre-shared-key-of-enough-length\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "[tunnel]\ninterface = \"" + iface + "\"\nlocal = \"198.18.0.1\"\nremote = \"any\"\naddresses = [\"" + addr +
		"\"]\n[ipsec]\nkeying = \"ikev2\"\n[ike]\npsk_file = \"" + psk + "\"\n" + extra
}

func TestRemoteAny(t *testing.T) {
	c, err := Parse("d.toml", []byte(dynamicTunnel(t, "gd", "198.19.1.1/30", "remote_id = \"spoke.example\"\n")))
	if err != nil {
		t.Fatal(err)
	}
	if !c.AnyRemote || c.Remote.IsValid() || c.IKE.Initiate || c.RemoteText() != "any" || c.IKE.RemoteIDText != "spoke.example" {
		t.Fatalf("remote = \"any\": %+v", c)
	}
	for _, tc := range []struct{ body, want string }{
		{dynamicTunnel(t, "gd", "198.19.1.1/30", ""), "ike.remote_id: missing"},
		{dynamicTunnel(t, "gd", "198.19.1.1/30", "remote_id = \"s.example\"\ninitiate = true\n"), "ike.initiate: tunnel.remote = \"any\" only responds"},
		{strings.Replace(dynamicTunnel(t, "gd", "198.19.1.1/30", "remote_id = \"s.example\"\n"), "keying = \"ikev2\"", "keying = \"ikev1\"", 1), "\"any\" needs ipsec.keying = \"ikev2\""},
		{plainTunnel("gd", "any", "198.19.1.1/30"), "\"any\" needs ipsec.keying = \"ikev2\""},
	} {
		if _, err := Parse("d.toml", []byte(tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
}

func TestCheckSetDynamic(t *testing.T) {
	parse := func(name, body string) *Config {
		c, err := Parse(name, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := parse("a.toml", dynamicTunnel(t, "ga", "198.19.1.1/30", "remote_id = \"a.example\"\n"))
	b := parse("b.toml", dynamicTunnel(t, "gb", "198.19.2.1/30", "remote_id = \"b.example\"\n"))
	if err := CheckSet([]*Config{a, b}); err != nil {
		t.Fatalf("two dynamic tunnels with their own identities refused: %v", err)
	}
	for _, tc := range []struct{ extra, want string }{
		{"remote_id = \"a.example\"\n", "both take the dynamic peer (remote = \"any\") with ike.remote_id a.example on 198.18.0.1"},
		{"remote_id = \"b.example\"\nproposals = [\"aes128gcm16-prfsha256-ecp256\"]\n", "must have the same ike.proposals"},
	} {
		err := CheckSet([]*Config{a, parse("b.toml", dynamicTunnel(t, "gb", "198.19.2.1/30", tc.extra))})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
}
