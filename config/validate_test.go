package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnderlayAddressesRefused: an underlay end that cannot be one peer,
// the two ends equal or of different families, and tunnel prefixes that
// hold an underlay address (the route to the peer would lead into the
// tunnel) are refused, naming the key.
func TestUnderlayAddressesRefused(t *testing.T) {
	v6 := strings.NewReplacer(`"198.18.0.1"`, `"2001:db8:18::1"`, `"198.18.0.2"`, `"2001:db8:18::2"`).Replace(good)
	for _, tc := range []struct{ base, from, to, want string }{
		{good, `remote = "198.18.0.2"`, `remote = "255.255.255.255"`, `tunnel.remote: expected a unicast address of this host or its peer, got 255.255.255.255 (broadcast)`},
		{good, `remote = "198.18.0.2"`, `remote = "224.0.0.5"`, `tunnel.remote: expected a unicast address of this host or its peer, got 224.0.0.5 (link-local multicast)`},
		{good, `remote = "198.18.0.2"`, `remote = "239.1.2.3"`, `got 239.1.2.3 (multicast)`},
		{good, `remote = "198.18.0.2"`, `remote = "0.0.0.0"`, `got 0.0.0.0 (unspecified)`},
		{good, `remote = "198.18.0.2"`, `remote = "127.0.0.1"`, `tunnel.remote: expected a unicast address of this host or its peer, got 127.0.0.1 (loopback`},
		{good, `remote = "198.18.0.2"`, `remote = "127.3.2.1"`, `(loopback`},
		{good, `remote = "198.18.0.2"`, `remote = "::ffff:127.0.0.1"`, `got 127.0.0.1 (loopback`},
		{good, `local = "198.18.0.1"`, `local = "127.0.0.1"`, `tunnel.local: expected a unicast address of this host or its peer, got 127.0.0.1 (loopback`},
		{good, `remote = "198.18.0.2"`, `remote = "198.18.0.1"`, `tunnel.remote: expected an address other than tunnel.local, got 198.18.0.1`},
		{good, `remote = "198.18.0.2"`, `remote = "::ffff:198.18.0.1"`, `tunnel.remote: expected an address other than tunnel.local`},
		{good, `remote = "198.18.0.2"`, `remote = "2001:db8:18::2"`, `tunnel.remote: expected the same address family as tunnel.local (198.18.0.1), got 2001:db8:18::2`},
		{v6, `remote = "2001:db8:18::2"`, `remote = "ff02::1"`, `got ff02::1 (link-local multicast)`},
		{v6, `remote = "2001:db8:18::2"`, `remote = "ff05::2"`, `got ff05::2 (multicast)`},
		{v6, `remote = "2001:db8:18::2"`, `remote = "::"`, `got :: (unspecified)`},
		{v6, `remote = "2001:db8:18::2"`, `remote = "::1"`, `got ::1 (loopback`},
		{v6, `remote = "2001:db8:18::2"`, `remote = "198.18.0.2"`, `tunnel.remote: expected the same address family as tunnel.local (2001:db8:18::1), got 198.18.0.2`},
		// Tunnel prefixes over the underlay.
		{good, `"198.19.0.0/31"`, `"198.18.0.0/24"`, `tunnel.addresses[0]: 198.18.0.0/24 contains tunnel.local 198.18.0.1: the route to the peer would lead into the tunnel itself`},
		{good, `"198.19.0.0/31"`, `"198.18.0.9/24"`, `tunnel.addresses[0]: 198.18.0.9/24 contains tunnel.local 198.18.0.1`},
		{good, `"198.19.0.0/31"`, `"198.18.0.2/32"`, `tunnel.addresses[0]: 198.18.0.2/32 contains tunnel.remote 198.18.0.2`},
		{good, `"198.19.0.0/31"`, `"198.18.0.0/31"`, `tunnel.addresses[0]: 198.18.0.0/31 contains tunnel.local 198.18.0.1`},
		{good, `"198.19.0.0/31"`, `"198.0.0.0/8"`, `tunnel.addresses[0]: 198.0.0.0/8 contains tunnel.local`},
		{good, `"2001:db8:19::/127"`, `"198.19.0.2/31"`, ``},
		{v6, `"2001:db8:19::/127"`, `"2001:db8:18::5/64"`, `tunnel.addresses[1]: 2001:db8:18::5/64 contains tunnel.local 2001:db8:18::1`},
		{v6, `"2001:db8:19::/127"`, `"2001:db8:18::2/128"`, `tunnel.addresses[1]: 2001:db8:18::2/128 contains tunnel.remote 2001:db8:18::2`},
		// Near misses that are fine.
		{good, `"198.19.0.0/31"`, `"198.18.1.0/24"`, ``},
		{good, `remote = "198.18.0.2"`, `remote = "198.18.0.255"`, ``},
		{v6, `remote = "2001:db8:18::2"`, `remote = "fe80::2"`, ``},
	} {
		in := strings.Replace(tc.base, tc.from, tc.to, 1)
		if in == tc.base {
			t.Fatalf("%s: replaced nothing", tc.to)
		}
		_, err := Parse("bad.conf", []byte(in))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want it accepted", tc.to, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s:\n got  %v\n want %s", tc.to, err, tc.want)
		}
	}
}

// TestTypeErrorsSpeakTOML: a value of the wrong TOML type is named in
// TOML's terms (table, string, integer, boolean, array), never as the Go
// type it would have been decoded into, and never with its value.
func TestTypeErrorsSpeakTOML(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{`[tunnel]`, "tunnel = 5\n[x]", `bad.conf: tunnel: must be a table (a [tunnel] section), got an integer`},
		{`[tunnel]`, "[[tunnel]]", `tunnel: must be a table (a [tunnel] section), got an array of tables`},
		{`[ipsec]`, "ipsec = \"static\"\n[y]", `tunnel.ipsec: unknown key`},
		{`[static]`, "[ipsec2]\n[static]", `ipsec2: unknown key`},
		{`mss_clamp = true`, `mtu = "1400"`, `tunnel.mtu: must be an integer, got a string`},
		{`mss_clamp = true`, `mtu = 1400.0`, `tunnel.mtu: must be an integer, got a float`},
		{`mss_clamp = true`, `mtu = 1979-05-27`, `tunnel.mtu: must be an integer, got a date/time`},
		{`mss_clamp = true`, `mss_clamp = "yes"`, `tunnel.mss_clamp: must be a boolean (true or false), got a string`},
		{`mss_clamp = true`, `mss_clamp = 1`, `tunnel.mss_clamp: must be a boolean (true or false), got an integer`},
		{`mss_clamp = true`, `MTU = 1400`, `tunnel.MTU: unknown key; keys are lower case: tunnel.mtu`},
		{`addresses = ["198.19.0.0/31", "2001:db8:19::/127"]`, `addresses = "198.19.0.0/31"`, `tunnel.addresses: must be an array of strings, got a string`},
		{`addresses = ["198.19.0.0/31", "2001:db8:19::/127"]`, `addresses = ["198.19.0.0/31", 5]`, `tunnel.addresses: must be an array of strings, but element 1 is an integer`},
		{`addresses = ["198.19.0.0/31", "2001:db8:19::/127"]`, `addresses = 198.19.0.0/31`, `tunnel.addresses: line 6, column 13: not valid TOML: the value must be an array of strings, as in addresses = ["…"]`},
		{`remote = "198.18.0.2"`, `remote = 198.18.0.2`, `tunnel.remote: line 5, column 10: not valid TOML: the value must be a string in quotes, as in remote = "…"`},
		{`remote = "198.18.0.2"`, `remote = ["198.18.0.2"]`, `tunnel.remote: must be a string (in quotes), got an array`},
		{`remote = "198.18.0.2"`, `remote = { a = 1 }`, `tunnel.remote: must be a string (in quotes), got a table`},
		{`spi_out = 0x1001`, `spi_out = "0x1001"`, `static.spi_out: must be an integer, got a string`},
		{`spi_out = 0x1001`, `spi_out = true`, `static.spi_out: must be an integer, got a boolean`},
		{`mss_clamp = true`, `mss_clamp = true` + "\ngre_key = 99999999999999999999", `tunnel.gre_key: line 8, column 11: not valid TOML: the integer is out of range (64-bit signed)`},
		{`mss_clamp = true`, `mss_clamp = maybe`, `tunnel.mss_clamp: line 7, column 13: not valid TOML: the value must be true or false`},
	} {
		in := strings.Replace(good, tc.from, tc.to, 1)
		if in == good {
			t.Fatalf("%s: replaced nothing", tc.to)
		}
		_, err := Parse("bad.conf", []byte(in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got  %v\n want %s", tc.to, err, tc.want)
			continue
		}
		for _, w := range []string{"struct", "int64", "*string", "[]string", "interface", "map[", "float64", "incompatible"} {
			if strings.Contains(err.Error(), w) {
				t.Errorf("%s: the error names a Go type (%q): %v", tc.to, w, err)
			}
		}
	}
	ike := strings.Replace(ikeBase, "[ike]", "ike = 1\n[z]", 1)
	if _, err := Parse("bad.conf", []byte(ike)); err == nil || !strings.Contains(err.Error(), "ipsec.ike: unknown key") {
		t.Errorf("ike = 1 inside [ipsec]: %v", err)
	}
	ike = "ike = 1\n" + ikeBase[:strings.Index(ikeBase, "[ike]")]
	if _, err := Parse("bad.conf", []byte(ike)); err == nil || !strings.Contains(err.Error(), "bad.conf: ike: must be a table (a [ike] section), got an integer") {
		t.Errorf("ike = 1: %v", err)
	}
	if _, err := Parse("bad.conf", []byte(ikeBase+"proposals = \"aes256gcm16-prfsha384-ecp384\"\n")); err == nil ||
		!strings.Contains(err.Error(), "ike.proposals: must be an array of strings, got a string") {
		t.Errorf("proposals as a string: %v", err)
	}
}

// TestSchemaCoversEveryKey: the type check knows every key the decoder
// fills, with the kind it is decoded as.
func TestSchemaCoversEveryKey(t *testing.T) {
	for key, want := range map[string]kind{
		"tunnel": kindTable, "tunnel.mtu": kindInteger, "tunnel.addresses": kindStringArray, "tunnel.mss_clamp": kindBoolean,
		"static": kindTable, "static.key_out": kindString, "ike": kindTable, "ike.proposals": kindStringArray, "daemon.user": kindString,
	} {
		if got, ok := schema[key]; !ok || got != want {
			t.Errorf("schema[%s] = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if len(schema) < 35 {
		t.Errorf("schema has %d keys, want every section and key", len(schema))
	}
}

// TestWeakPSKRefused: a PSK file of whitespace, of too few bytes or of
// too few different characters is refused, naming the key and the file
// but not the key's text; a random-looking one passes.
func TestWeakPSKRefused(t *testing.T) {
	dir := t.TempDir()
	psk := filepath.Join(dir, "psk")
	cfg := filepath.Join(dir, "g.toml")
	if err := os.WriteFile(cfg, []byte(strings.Replace(ikeBase, "PSK", psk, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ psk, want string }{
		{strings.Repeat(" ", 16), "holds only whitespace"},
		{strings.Repeat(" \t", 20) + "\n", "holds only whitespace"},
		{strings.Repeat("x", 32), "holds only 1 different characters other than spaces"},
		{"abcabcabcabcabcabc", "holds only 3 different characters other than spaces"},
		{"secret  secret  secret", "holds only 5 different characters other than spaces"},
		{"       1234567       ", "holds only 7 different characters other than spaces"},
		{"short", "holds 5 bytes"},
		{"", "holds 0 bytes"},
		{"12345678abcdefgh", ""},
		{"       12345678       ", ""},
		{"gresec-test-8f2c0a61d4e9b7a3c5f1e2d4", ""},
	} {
		if err := os.WriteFile(psk, []byte(tc.psk), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(cfg)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%q: %v, want it accepted", tc.psk, err)
			} else if string(c.IKE.LocalPSK) != tc.psk {
				t.Errorf("%q: read as %q", tc.psk, c.IKE.LocalPSK)
			}
			continue
		}
		want := "ike.psk_file: " + psk + " " + tc.want + "; expected a pre-shared key of at least 16 bytes with at least 8 different characters other than spaces (value not shown)"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q:\n got  %v\n want %s", tc.psk, err, want)
		}
		if tc.psk != "" && strings.TrimSpace(tc.psk) != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.psk)) {
			t.Errorf("%q: the error shows the PSK: %v", tc.psk, err)
		}
	}
}

// TestUnknownKeySuggests: a misspelt key or section names the one it was
// probably meant to be, and a key put in the wrong section names its own;
// a name close to nothing gets no guess.
func TestUnknownKeySuggests(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{strings.Replace(ikeBase, `keying = "ikev2"`, `keyng = "ikev2"`, 1), `ipsec.keyng: unknown key; did you mean ipsec.keying?`},
		{strings.Replace(ikeBase, `[ipsec]`, `[ipsce]`, 1), `ipsce: unknown key; did you mean [ipsec]?`},
		{strings.Replace(ikeBase, `[ipsec]`, "mss_clamps = true\n[ipsec]", 1), `tunnel.mss_clamps: unknown key; did you mean tunnel.mss_clamp?`},
		{ikeBase + "udp_encap = \"always\"\n", `ike.udp_encap: unknown key; udp_encap belongs in [ipsec], as ipsec.udp_encap`},
		{ikeBase + "gre_key = 5\n", `ike.gre_key: unknown key; gre_key belongs in [tunnel], as tunnel.gre_key`},
		{ikeBase + "colour = \"red\"\n", `ike.colour: unknown key; see docs/configuration.md for the valid keys`},
	} {
		_, err := Parse("bad.conf", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got  %v\nwant %s", err, tc.want)
		}
	}
}
