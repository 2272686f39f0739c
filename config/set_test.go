package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeTunnel(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func plainTunnel(iface, remote, addr string) string {
	return "[tunnel]\ninterface = \"" + iface + "\"\nlocal = \"198.18.0.1\"\nremote = \"" + remote +
		"\"\naddresses = [\"" + addr + "\"]\n[ipsec]\nkeying = \"none\"\n"
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	writeTunnel(t, dir, "b.toml", plainTunnel("gb", "198.18.1.2", "198.19.2.1/30"))
	writeTunnel(t, dir, "a.toml", plainTunnel("ga", "198.18.1.1", "198.19.1.1/30"))
	writeTunnel(t, dir, "notes.txt", "not a tunnel")
	writeTunnel(t, dir, DaemonFile, "[control]\nsocket = \"/run/gresec/hub.sock\"\n[log]\nlevel = \"debug\"\n")
	d, cs, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].Interface != "ga" || cs[1].Interface != "gb" {
		t.Fatalf("tunnels %v, want ga and gb in file order", cs)
	}
	if d.ControlSocket != "/run/gresec/hub.sock" || d.LogLevel != "debug" {
		t.Fatalf("daemon settings %+v", d)
	}

	// A tunnel section in the daemon's file, and a daemon section in a
	// tunnel's file, are refused with the file and key named.
	writeTunnel(t, dir, DaemonFile, plainTunnel("gx", "198.18.1.9", "198.19.9.1/30"))
	if _, _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "not a daemon-wide section") {
		t.Fatalf("tunnel in gresec.toml: err = %v", err)
	}
	os.Remove(filepath.Join(dir, DaemonFile))
	writeTunnel(t, dir, "a.toml", plainTunnel("ga", "198.18.1.1", "198.19.1.1/30")+"[control]\nsocket = \"/run/x.sock\"\n")
	if _, _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "a.toml: control: daemon-wide section") {
		t.Fatalf("control in a tunnel file: err = %v", err)
	}
	writeTunnel(t, dir, "a.toml", plainTunnel("ga", "198.18.1.1", "198.19.1.1/30"))
	if d, _, err := LoadDir(dir); err != nil || d.ControlSocket != DefaultDaemonSocket {
		t.Fatalf("without gresec.toml: %+v, %v", d, err)
	}
	if _, _, err := LoadDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no tunnel files") {
		t.Fatalf("empty directory: err = %v", err)
	}
}

func TestCheckSetConflicts(t *testing.T) {
	parse := func(name, body string) *Config {
		c, err := Parse(name, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := parse("a.toml", plainTunnel("ga", "198.18.1.1", "198.19.1.1/30"))
	ok := parse("b.toml", plainTunnel("gb", "198.18.1.2", "198.19.2.1/30"))
	if err := CheckSet([]*Config{a, ok}); err != nil {
		t.Fatalf("distinct tunnels refused: %v", err)
	}
	for _, tc := range []struct {
		body, want string
	}{
		{plainTunnel("ga", "198.18.1.2", "198.19.2.1/30"), "both use interface ga"},
		{plainTunnel("gb", "198.18.1.1", "198.19.2.1/30"), "both run between local 198.18.0.1 and remote 198.18.1.1"},
		{plainTunnel("gb", "198.18.1.2", "198.19.1.2/24"), "addresses 198.19.1.1/30 and 198.19.1.2/24 overlap"},
	} {
		err := CheckSet([]*Config{a, parse("b.toml", tc.body)})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "a.toml and b.toml") {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
	static := func(name, iface, remote, addr string) *Config {
		return parse(name, strings.Replace(plainTunnel(iface, remote, addr), `keying = "none"`, `keying = "static"`, 1)+
			"[static]\nspi_in = 0x1001\nspi_out = 0x1002\nkey_in = \"0x"+strings.Repeat("11", 36)+"\"\nkey_out = \"0x"+strings.Repeat("22", 36)+"\"\n")
	}
	err := CheckSet([]*Config{static("a.toml", "ga", "198.18.1.1", "198.19.1.1/30"), static("b.toml", "gb", "198.18.1.2", "198.19.2.1/30")})
	if err == nil || !strings.Contains(err.Error(), "both receive on static.spi_in 0x00001001") {
		t.Fatalf("same static spi_in: err = %v", err)
	}
	udp := parse("u.toml", strings.Replace(plainTunnel("gu", "198.18.1.3", "198.19.3.1/30"), `keying = "none"`, "keying = \"static\"\nudp_encap = \"always\"", 1)+
		"[static]\nspi_in = 0x3001\nspi_out = 0x3002\nkey_in = \"0x"+strings.Repeat("11", 36)+"\"\nkey_out = \"0x"+strings.Repeat("22", 36)+"\"\n")
	ikev2 := parse("i.toml", strings.Replace(plainTunnel("gi", "198.18.1.4", "198.19.4.1/30"), `keying = "none"`, `keying = "ikev2"`, 1)+"[ike]\npsk_file = \"/nonexistent\"\n")
	if err := CheckSet([]*Config{udp, ikev2}); err == nil || !strings.Contains(err.Error(), "static ESP in UDP and IKEv2 NAT traversal cannot share it") {
		t.Fatalf("static ESP in UDP on 4500 beside IKEv2: err = %v", err)
	}
	ikev1 := parse("v1.toml", strings.Replace(plainTunnel("g1", "198.18.1.5", "198.19.5.1/30"), `keying = "none"`, `keying = "ikev1"`, 1)+
		"[ike]\npsk_file = \"/nonexistent\"\nproposals = [\"aes128-sha1-modp2048\"]\nesp_proposals = [\"aes128-sha1-modp2048\"]\n")
	// IKEv1 shares the daemon's UDP 500 and 4500 with IKEv2 on one local
	// address, and two IKEv1 tunnels share them too; only the same local
	// and remote is refused, whatever the IKE versions.
	ikev1b := parse("v1b.toml", strings.Replace(plainTunnel("g6", "198.18.1.6", "198.19.6.1/30"), `keying = "none"`, `keying = "ikev1"`, 1)+
		"[ike]\npsk_file = \"/nonexistent\"\nproposals = [\"aes128-sha1-modp2048\"]\nesp_proposals = [\"aes128-sha1-modp2048\"]\n")
	if err := CheckSet([]*Config{ikev2, ikev1, ikev1b, static("a.toml", "ga", "198.18.1.1", "198.19.1.1/30")}); err != nil {
		t.Fatalf("IKEv1 beside IKEv1, IKEv2 and static keys on one address: %v", err)
	}
	v2same := parse("i2.toml", strings.Replace(plainTunnel("gj", "198.18.1.5", "198.19.7.1/30"), `keying = "none"`, `keying = "ikev2"`, 1)+"[ike]\npsk_file = \"/nonexistent\"\n")
	if err := CheckSet([]*Config{ikev1, v2same}); err == nil || !strings.Contains(err.Error(), "both run between local 198.18.0.1 and remote 198.18.1.5") {
		t.Fatalf("IKEv1 and IKEv2 to the same remote from one local: err = %v", err)
	}
}
