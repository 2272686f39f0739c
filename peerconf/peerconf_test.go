package peerconf

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gresec/gresec/config"
)

// loadIKE writes a gresec config with the given [ike] lines and PSK files
// (name -> content, mode 0600) into a temporary directory and loads it the
// way `gresec peer-config` does (config.Load reads the keys).
func loadIKE(t testing.TB, ike string, psks map[string]string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	for name, key := range psks {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ike = strings.ReplaceAll(ike, "DIR", dir)
	path := filepath.Join(dir, "gresec.toml")
	text := "[tunnel]\nlocal = \"198.18.0.1\"\nremote = \"198.18.0.2\"\naddresses = [\"198.19.0.0/31\"]\n[ipsec]\nkeying = \"ikev2\"\n[ike]\n" + ike
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const (
	testPSK       = "ThisShouldBeAStrongPassword"
	testLocalPSK  = "gresec-local-key-0123456789"
	testRemotePSK = "gresec-remote-key-9876543210"
)

// secretForms are the ways a key could leak: raw, hex, upper-case hex.
func secretForms(s string) []string {
	h := hex.EncodeToString([]byte(s))
	return []string{s, h, strings.ToUpper(h)}
}

func generateAll(t *testing.T, c *config.Config, secret bool) map[Peer]string {
	t.Helper()
	outs := map[Peer]string{}
	for _, p := range Peers {
		out, err := Generate(c, Options{Peer: p, IncludeSecret: secret})
		if err != nil {
			continue // e.g. linux with IKEv2: no output, nothing to leak
		}
		var b bytes.Buffer
		out.WriteTo(&b)
		outs[p] = b.String()
		// Formatting the values must never show the text.
		outs[p+"%v"] = fmt.Sprintf("%v %+v %#v %s %v", out, out, out, out, out.Sections)
	}
	return outs
}

func TestSecretNeverPrintedWithoutIncludeSecret(t *testing.T) {
	sym := loadIKE(t, "psk_file = \"DIR/psk\"\n", map[string]string{"psk": testPSK})
	asym := loadIKE(t, "local_psk_file = \"DIR/l.psk\"\nremote_psk_file = \"DIR/r.psk\"\n",
		map[string]string{"l.psk": testLocalPSK, "r.psk": testRemotePSK})
	static := parseTestdata(t, "seed000-static")
	staticKeys := []string{hex.EncodeToString(static.Static.KeyOut), hex.EncodeToString(static.Static.KeyIn)}

	for _, tc := range []struct {
		name    string
		c       *config.Config
		secrets []string
		peers   int // outputs expected with --include-secret (proves the search can fail)
	}{
		{"psk", sym, []string{testPSK}, 3},
		{"local+remote psk", asym, []string{testLocalPSK, testRemotePSK}, 2},
		{"static keys", static, staticKeys, 2}, // linux and freebsd
	} {
		t.Run(tc.name, func(t *testing.T) {
			hidden := generateAll(t, tc.c, false)
			if len(hidden) == 0 {
				t.Fatal("no output at all")
			}
			for peer, text := range hidden {
				for _, s := range tc.secrets {
					for _, f := range secretForms(s) {
						if strings.Contains(text, f) {
							t.Errorf("%s: output without --include-secret contains the key (%d bytes):\n%s", peer, len(s), text)
						}
					}
				}
			}
			shown := generateAll(t, tc.c, true)
			n := 0
			for peer, text := range shown {
				if strings.HasSuffix(string(peer), "%v") {
					for _, s := range tc.secrets {
						for _, f := range secretForms(s) {
							if strings.Contains(text, f) {
								t.Errorf("%s: fmt of the output shows a key: %s", peer, text)
							}
						}
					}
					continue
				}
				for _, s := range tc.secrets {
					if !strings.Contains(text, s) {
						t.Errorf("%s --include-secret: key missing from the output", peer)
					}
				}
				n++
			}
			if n != tc.peers {
				t.Errorf("%d outputs with --include-secret, want %d", n, tc.peers)
			}
		})
	}
}

func TestPlaceholdersNameOurFiles(t *testing.T) {
	c := loadIKE(t, "local_psk_file = \"DIR/l.psk\"\nremote_psk_file = \"DIR/r.psk\"\n",
		map[string]string{"l.psk": testLocalPSK, "r.psk": testRemotePSK})
	dir := filepath.Dir(c.Path)
	sw := render(t, c, Options{Peer: StrongSwan})
	// The peer signs with our remote key and checks ours with our local key.
	for _, want := range []string{
		"ike-gresec-sign {\n    id = \"198.18.0.1\"\n    secret = \"<contents of " + dir + "/r.psk>\"",
		"ike-gresec-verify {\n    id = \"198.18.0.2\"\n    secret = \"<contents of " + dir + "/l.psk>\"",
	} {
		if !strings.Contains(sw, want) {
			t.Errorf("strongswan output lacks %q:\n%s", want, sw)
		}
	}
	ios := render(t, c, Options{Peer: CiscoIOS, IncludeSecret: true})
	for _, want := range []string{"pre-shared-key local " + testRemotePSK + "\n", "pre-shared-key remote " + testLocalPSK + "\n"} {
		if !strings.Contains(ios, want) {
			t.Errorf("IOS output lacks %q", want)
		}
	}
	st := render(t, parseTestdata(t, "seed000-static"), Options{Peer: Linux})
	for _, want := range []string{"0x<key_out of [static] in /etc/gresec/gresec.toml>", "0x<key_in of [static] in /etc/gresec/gresec.toml>"} {
		if !strings.Contains(st, want) {
			t.Errorf("linux output lacks %q", want)
		}
	}
}

func TestStaticSAsMirrored(t *testing.T) {
	c := parseTestdata(t, "seed000-static")
	out := render(t, c, Options{Peer: Linux, IncludeSecret: true})
	// The peer receives what we send (spi_out, key_out) and sends what we receive.
	in := fmt.Sprintf("ip xfrm state add src 198.18.0.1 dst 198.18.0.2 proto esp spi 0x00001001 mode transport replay-window 1024 aead 'rfc4106(gcm(aes))' 0x%x 128", []byte(c.Static.KeyOut))
	outSA := fmt.Sprintf("ip xfrm state add src 198.18.0.2 dst 198.18.0.1 proto esp spi 0x00001002 mode transport aead 'rfc4106(gcm(aes))' 0x%x 128", []byte(c.Static.KeyIn))
	for _, want := range []string{in, outSA,
		"ip xfrm policy add src 198.18.0.2 dst 198.18.0.1 proto gre dir out tmpl src 198.18.0.2 dst 198.18.0.1 proto esp mode transport",
		"ip xfrm policy add src 198.18.0.1 dst 198.18.0.2 proto gre dir in tmpl src 198.18.0.1 dst 198.18.0.2 proto esp mode transport",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing line %q in:\n%s", want, out)
		}
	}
}

func TestOtherEnd(t *testing.T) {
	for _, tc := range []struct{ ours, want string }{
		{"198.19.0.0/31", "198.19.0.1/31"},
		{"198.19.0.1/31", "198.19.0.0/31"},
		{"2001:db8:19::/127", "2001:db8:19::1/127"},
		{"2001:db8:19::ff/127", "2001:db8:19::fe/127"},
		{"198.19.0.5/24", ""},
		{"198.19.0.5/32", ""},
		{"2001:db8::1/64", ""},
		{"2001:db8::1/128", ""},
	} {
		got := otherEnd(netip.MustParsePrefix(tc.ours))
		if (tc.want == "" && got.IsValid()) || (tc.want != "" && got.String() != tc.want) {
			t.Errorf("otherEnd(%s) = %v, want %q", tc.ours, got, tc.want)
		}
	}
}

func TestAddressesToFillIn(t *testing.T) {
	c := parseTestdata(t, "responder-v6")
	for _, p := range []Peer{StrongSwan, CiscoIOS} {
		out := render(t, c, Options{Peer: p})
		if !strings.Contains(out, "gresec's tunnel address 198.19.7.5/24 is not a /31 or /127: fill in this end's address in 198.19.7.0/24.") ||
			!strings.Contains(out, "<an address in 198.19.7.0/24 other than 198.19.7.5>") {
			t.Errorf("%s: no fill-in note for a /24:\n%s", p, out)
		}
		if !strings.Contains(out, "2001:db8:19::1/127") {
			t.Errorf("%s: the /127 peer address is missing", p)
		}
	}
}

func TestErrors(t *testing.T) {
	seed := parseTestdata(t, "seed000")
	static := parseTestdata(t, "seed000-static")
	none := parseTestdata(t, "seed000-none")
	asym := parseTestdata(t, "responder-v6")
	keyID := parseTestdata(t, "seed000")
	keyID.IKE.LocalIDText = "@#0102"
	badPSK := loadIKE(t, "psk_file = \"DIR/psk\"\n", map[string]string{"psk": "has a space and a ? in it"})
	x25519 := loadIKE(t, "psk_file = \"DIR/psk\"\nproposals = [\"aes256gcm16-prfsha384-curve25519\"]\n", map[string]string{"psk": testPSK})
	// Set past config: it refuses ESP transforms the data plane lacks.
	esn := withESP(t, loadIKE(t, "psk_file = \"DIR/psk\"\n", map[string]string{"psk": testPSK}), "aes256gcm16-ecp384-esn")

	for _, tc := range []struct {
		name   string
		c      *config.Config
		o      Options
		want   string
		secret string // must not appear in the error
	}{
		{"unknown peer", seed, Options{Peer: "juniper"}, `unknown peer "juniper"; expected one of strongswan, openbsd, cisco-ios, linux, freebsd`, ""},
		{"freebsd with ikev2", seed, Options{Peer: FreeBSD}, `uses ipsec.keying = "ikev2": --for freebsd writes gre(4) with setkey for static keys`, ""},
		{"freebsd with a vti", parseTestdata(t, "vti-static"), Options{Peer: FreeBSD}, `--for freebsd writes GRE and IP-in-IP (gif) in transport mode only so far`, ""},
		{"ios with ip-in-ip", parseTestdata(t, "ipip"), Options{Peer: CiscoIOS}, `--for cisco-ios writes GRE in transport mode, GRE in tunnel mode (crypto map) and the VTI only so far`, ""},
		{"linux with ikev2", seed, Options{Peer: Linux}, `uses ipsec.keying = "ikev2": the Linux kernel has no IKE daemon; use --for strongswan`, ""},
		{"strongswan with static", static, Options{Peer: StrongSwan}, `uses ipsec.keying = "static", but strongSwan negotiates ESP keys with IKEv2; use --for linux`, ""},
		{"strongswan with none", none, Options{Peer: StrongSwan}, `ipsec.keying = "none" (plain GRE)`, ""},
		{"openbsd with static", static, Options{Peer: OpenBSD}, `use keying = "ikev2", or --for linux for static keys`, ""},
		{"ios with static", static, Options{Peer: CiscoIOS}, `use --for linux for static keys`, ""},
		{"freebsd with static keys in udp", parseTestdata(t, "udp-static"), Options{Peer: FreeBSD}, `has udp_encap = "always" with static keys (ESP in UDP 4500), but --for freebsd writes static SAs for raw ESP only`, ""},
		{"openbsd with two psks", asym, Options{Peer: OpenBSD}, "OpenBSD iked takes one PSK for both directions", ""},
		{"iked key-id", keyID, Options{Peer: OpenBSD}, `identity "@#0102": OpenBSD iked cannot express a key-id identity`, ""},
		{"ios key-id", keyID, Options{Peer: CiscoIOS}, `identity "@#0102": Cisco IOS cannot express a key-id identity`, ""},
		{"ios psk characters", badPSK, Options{Peer: CiscoIOS, IncludeSecret: true}, "characters the IOS command line cannot take", "has a space"},
		{"ios curve25519", x25519, Options{Peer: CiscoIOS}, `IKE proposal "aes256gcm16-prfsha384-curve25519": Cisco IOS cannot express DH group curve25519`, ""},
		{"ios esn", esn, Options{Peer: CiscoIOS}, `ESP proposal "aes256gcm16-ecp384-esn": Cisco IOS cannot express extended sequence numbers`, ""},
		{"secret not loaded", seed, Options{Peer: StrongSwan, IncludeSecret: true}, "the pre-shared key in /etc/gresec/psk was not loaded", ""},
		{"nil config", nil, Options{Peer: Linux}, "no configuration", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Generate(tc.c, tc.o)
			if err == nil {
				t.Fatalf("no error; output %v", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tc.want)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error shows the key: %q", err)
			}
		})
	}
}

func TestParsePeer(t *testing.T) {
	for _, p := range Peers {
		if got, err := ParsePeer(string(p)); err != nil || got != p {
			t.Errorf("ParsePeer(%q) = %q, %v", p, got, err)
		}
	}
	for _, s := range []string{"", "StrongSwan", "cisco", "ios", "openbsd "} {
		if _, err := ParsePeer(s); err == nil {
			t.Errorf("ParsePeer(%q) accepted", s)
		}
	}
}

func TestSectionsHaveModes(t *testing.T) {
	out, err := Generate(parseTestdata(t, "seed000"), Options{Peer: OpenBSD})
	if err != nil {
		t.Fatal(err)
	}
	s, ok := out.Section(IkedConf)
	if !ok || s.Mode != 0o600 {
		t.Errorf("iked.conf section %v mode %#o, want 0600 (iked refuses readable files)", ok, s.Mode)
	}
	out, err = Generate(parseTestdata(t, "seed000"), Options{Peer: StrongSwan})
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := out.Section(SwanctlFile); !ok || s.Mode != 0o600 {
		t.Errorf("swanctl section %v mode %#o, want 0600", ok, s.Mode)
	}
}
