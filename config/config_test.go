package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const good = `
[tunnel]
interface = "gre0"
local = "198.18.0.1"
remote = "198.18.0.2"
addresses = ["198.19.0.0/31", "2001:db8:19::/127"]
mss_clamp = true
[ipsec]
keying = "static"
mode = "transport"
replay_window = 1024
[static]
spi_out = 0x1001
spi_in = 0x1002
key_out = "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"
key_in = "0x202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40414243"
`

func TestParseGood(t *testing.T) {
	c, err := Parse("good.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.MTU != 1442 || !c.MTUComputed {
		t.Errorf("MTU = %d (computed %v), want the seed's 1442", c.MTU, c.MTUComputed)
	}
	if c.MSS4() != 1402 || c.MSS6() != 1382 {
		t.Errorf("MSS = %d/%d, want 1402/1382", c.MSS4(), c.MSS6())
	}
	if c.Overhead() != 58 {
		t.Errorf("overhead = %d, want 58 (20 IP + 4 GRE + 34 ESP)", c.Overhead())
	}
	if c.Static.SPIOut != 0x1001 || c.Static.SPIIn != 0x1002 || len(c.Static.KeyOut) != 36 {
		t.Errorf("static = %+v", c.Static)
	}
	if len(c.Addresses) != 2 || c.ReplayWindow != 1024 {
		t.Errorf("addresses %v window %d", c.Addresses, c.ReplayWindow)
	}
	if c.MetricsListen.IsValid() || c.User != "" {
		t.Errorf("metrics %v user %q, want both off by default", c.MetricsListen, c.User)
	}
	c, err = Parse("good.toml", []byte(strings.Replace(good, "[ipsec]", "[metrics]\nlisten = \"[::1]:9470\"\n[daemon]\nuser = \"gresec\"\n[ipsec]", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.MetricsListen.String() != "[::1]:9470" || c.User != "gresec" {
		t.Errorf("metrics %v user %q", c.MetricsListen, c.User)
	}
}

func TestComputedMTU(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		want        int
	}{
		{"ipv4 esp", "", 1442},
		{"ipv4 esp gre key", "gre_key = 7\n", 1438},
		{"ipv4 esp 9000", "underlay_mtu = 9000\n", 8942},
		{"ipv4 esp 1400", "underlay_mtu = 1400\n", 1342},
	} {
		c, err := Parse("x", []byte(strings.Replace(good, "mss_clamp = true\n", "mss_clamp = true\n"+tc.extra, 1)))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.MTU != tc.want {
			t.Errorf("%s: MTU %d, want %d", tc.name, c.MTU, tc.want)
		}
		// The largest inner packet must fit the underlay exactly or with <4 bytes to spare.
		if total := c.MTU + c.Overhead(); total > c.UnderlayMTU || total < c.UnderlayMTU-3 {
			t.Errorf("%s: MTU %d + overhead %d = %d, underlay %d", tc.name, c.MTU, c.Overhead(), total, c.UnderlayMTU)
		}
	}
	none := strings.Replace(good, `keying = "static"`, `keying = "none"`, 1)
	none = none[:strings.Index(none, "[static]")]
	c, err := Parse("x", []byte(none))
	if err != nil {
		t.Fatal(err)
	}
	if c.MTU != 1476 {
		t.Errorf("plain GRE MTU %d, want 1476 (FreeBSD gre(4) default)", c.MTU)
	}
	v6 := strings.NewReplacer(`"198.18.0.1"`, `"2001:db8::1"`, `"198.18.0.2"`, `"2001:db8::2"`).Replace(good)
	if c, err = Parse("x", []byte(v6)); err != nil || c.MTU != 1422 {
		t.Errorf("IPv6 underlay MTU %v %v, want 1422", c, err)
	}
}

func TestParseErrorsNameFileAndKey(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{`local = "198.18.0.1"`, `local = "banana"`, `bad.toml: tunnel.local: expected an IPv4 or IPv6 address, got "banana"`},
		{`local = "198.18.0.1"`, ``, `tunnel.local: missing`},
		{`remote = "198.18.0.2"`, `remote = "2001:db8::2"`, `tunnel.remote: expected the same address family`},
		{`mss_clamp = true`, `mss_clamp = true` + "\nmtu = 100", `tunnel.mtu: expected an integer 1280..`},
		{`mss_clamp = true`, `mss_clamp = true` + "\nbogus = 1", `tunnel.bogus: unknown key`},
		{`mode = "transport"`, `mode = "tunel"`, `ipsec.mode: expected "transport" or "tunnel", got "tunel"`},
		{`keying = "static"`, `keying = "manual"`, `ipsec.keying: expected "static", "ikev2", "ikev1" or "none", got "manual"`},
		{`replay_window = 1024`, `replay_window = -1`, `ipsec.replay_window: expected an integer 0..65536`},
		{`spi_out = 0x1001`, `spi_out = 5`, `static.spi_out: expected an integer 256..0xffffffff`},
		{`interface = "gre0"`, `interface = "this-name-is-far-too-long"`, `tunnel.interface: expected an interface name`},
		{`"198.19.0.0/31"`, `"198.19.0.0"`, `tunnel.addresses[0]: expected an address with prefix length`},
		{`mtu`, `mtu`, ``},
		{`key_out = "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"`, `key_out = "0x0001020304"`, `static.key_out: expected 36 bytes (AES-256 key + salt) or 20 bytes (AES-128 key + salt), got 5 bytes (value not shown)`},
		{`key_in = "0x202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40414243"`, `key_in = "0xzz2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40414243"`, `static.key_in: expected hex digits`},
		{`[tunnel]`, `[tunnel`, `bad.toml: line `},
		{`[ipsec]`, "[metrics]\nlisten = \"localhost:9470\"\n[ipsec]", `metrics.listen: expected an address and port like "127.0.0.1:9470"`},
		{`[ipsec]`, "[metrics]\nlisten = \"127.0.0.1\"\n[ipsec]", `metrics.listen: expected an address and port`},
		{`[ipsec]`, "[daemon]\nuser = \"root; rm\"\n[ipsec]", `daemon.user: expected a user name or numeric uid`},
	} {
		if tc.want == "" {
			continue
		}
		_, err := Parse("bad.toml", []byte(strings.Replace(good, tc.from, tc.to, 1)))
		if err == nil {
			t.Errorf("%q -> %q: no error, want %q", tc.from, tc.to, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q -> %q:\n got  %v\n want %q", tc.from, tc.to, err, tc.want)
		}
		if strings.Contains(err.Error(), "0405060708") || strings.Contains(err.Error(), "2425262728") {
			t.Errorf("error leaks key material: %v", err)
		}
	}
}

func TestKeyNeverFormatted(t *testing.T) {
	c, err := Parse("x", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		fmt.Sprintf("%v", c.Static.KeyOut), fmt.Sprintf("%x", c.Static.KeyOut), fmt.Sprintf("%+v", c.Static),
		fmt.Sprintf("%#v", c.Static), fmt.Sprintf("%s", c.Static.KeyIn),
	} {
		if strings.Contains(s, "0102") || strings.Contains(s, "2122") || strings.Contains(s, "[0 1 2") {
			t.Errorf("key material in %q", s)
		}
	}
}

func TestLoadRefusesReadableKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "g.toml")
	if err := os.WriteFile(p, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "static: file holds keys but has mode 0644") {
		t.Fatalf("Load of a 0644 key file: %v", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err != nil {
		t.Fatalf("Load of a 0600 key file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("[tunnel]\nlocal = \"2001:db8::1\"\nremote = \"2001:db8::2\"\n[ipsec]\nkeying = \"none\"\n"))
	f.Add([]byte("[tunnel]\nmtu = 99999999999999999999\n"))
	f.Add([]byte(strings.Replace(good, `"0x`+keyOut+`"`, "0x"+keyOut, 1)))
	f.Add([]byte("[static]\nkey_out = 0x0102030405060708090a0b0c0d0e0f\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.toml: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			// What may be key material (16+ hex digits, a letter among
			// them: numbers are echoed in decimal) never reaches an error.
			for _, run := range hexRun.FindAllString(err.Error(), -1) {
				if strings.ContainsAny(run, "abcdefABCDEF") {
					t.Fatalf("error shows %q: %v", run, err)
				}
			}
			return
		}
		if !c.Local.IsValid() || !c.Remote.IsValid() || c.MTU < minMTU {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
	})
}
