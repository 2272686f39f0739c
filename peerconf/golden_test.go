package peerconf

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gresec/gresec/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// parseTestdata reads testdata/name.toml as if it were the installed
// /etc/gresec/gresec.toml (Parse: the PSK files it names need not exist).
func parseTestdata(t testing.TB, name string) *config.Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".toml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse("/etc/gresec/gresec.toml", data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func render(t testing.TB, c *config.Config, o Options) string {
	t.Helper()
	out, err := Generate(c, o)
	if err != nil {
		t.Fatalf("Generate(%s): %v", o.Peer, err)
	}
	var b bytes.Buffer
	if _, err := out.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// goldenCases cover every --for value on the iked + IOS pair's settings (with
// static keys for linux, whose kernel has no IKE), plain GRE, a responder
// over IPv6 with everything non-default, and each family of transforms:
// esp, when given, replaces the config's ESP proposals (config refuses
// those the data plane does not implement yet; peer-config must still
// translate them) and names the case with variant.
var goldenCases = []struct {
	config  string
	peer    Peer
	variant string
	esp     []string
}{
	{"iked-ios", StrongSwan, "", nil},
	{"ikev1", CiscoIOSIKEv1, "", nil},
	{"ikev1", FreeBSDRacoon, "", nil},
	{"iked-ios", OpenBSD, "", nil},
	{"iked-ios", CiscoIOS, "", nil},
	{"iked-ios-static", Linux, "", nil},
	{"iked-ios-none", Linux, "", nil},
	{"iked-ios-none", OpenBSD, "", nil},
	{"iked-ios-none", CiscoIOS, "", nil},
	{"responder-v6", StrongSwan, "", nil},
	{"responder-v6", CiscoIOS, "", nil},
	// The appliance's `AES SHA 14`, IKE and ESP.
	{"appliance", StrongSwan, "", []string{"aes128-sha1-modp2048"}},
	{"appliance", OpenBSD, "", []string{"aes128-sha1-modp2048"}},
	{"appliance", CiscoIOS, "", []string{"aes128-sha1-modp2048"}},
	// The iked + IOS pair with the child transform Linux iked can key.
	{"iked-ios", OpenBSD, "child-cbc", []string{"aes256-sha256-ecp384"}},
	{"iked-ios", CiscoIOS, "child-cbc", []string{"aes256-sha256-ecp384"}},
	{"iked-ios", StrongSwan, "child-cbc", []string{"aes256-sha256-ecp384"}},
	// SHA-2 HMACs, MODP 3072/4096, several transform sets, ESN.
	{"sha2-modp", CiscoIOS, "", []string{"aes256-aes128-sha512-sha1-modp3072", "aes192-sha384-modp4096-esn-noesn"}},
	{"sha2-modp", OpenBSD, "", []string{"aes256-aes128-sha512-sha1-modp3072", "aes192-sha384-modp4096-esn-noesn"}},
	// ChaCha20-Poly1305: strongSwan only (iked has no ChaCha20 IKE SA,
	// IOS none at all: TestErrors).
	{"chacha", StrongSwan, "", []string{"chacha20poly1305-x25519-esn"}},
	// The other tunnel shapes: strongSwan (IKEv2) and Linux (static).
	{"tunnelgre", StrongSwan, "", nil},
	{"vti", StrongSwan, "", nil},
	{"ipip", StrongSwan, "", nil},
	{"tunnelgre-static", Linux, "", nil},
	{"vti-static", Linux, "", nil},
	{"ipip-static", Linux, "", nil},
	// IOS: the VTI and the crypto map in tunnel mode over GRE.
	{"vti", CiscoIOS, "", nil},
	{"tunnelgre", CiscoIOS, "", nil},
	// FreeBSD: gif and gre with setkey, and plain GRE.
	{"ipip-static", FreeBSD, "", nil},
	{"iked-ios-static", FreeBSD, "", nil},
	{"iked-ios-none", FreeBSD, "", nil},
	// NAT traversal: ESP in UDP forced or off, and static keys in UDP.
	{"nat-always", StrongSwan, "", nil},
	{"nat-always", OpenBSD, "", nil},
	{"nat-always", CiscoIOS, "", nil},
	{"nat-never", StrongSwan, "", nil},
	{"nat-never", CiscoIOS, "", nil},
	{"udp-static", Linux, "", nil},
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		name := tc.config
		if tc.variant != "" {
			name += "-" + tc.variant
		}
		name += "." + string(tc.peer)
		t.Run(name, func(t *testing.T) {
			c := parseTestdata(t, tc.config)
			if tc.esp != nil {
				withESP(t, c, tc.esp...)
			}
			got := render(t, c, Options{Peer: tc.peer})
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./peerconf -run TestGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (review, then -update):\n%s", path, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	in := func(l string, ls []string) bool {
		for _, x := range ls {
			if x == l {
				return true
			}
		}
		return false
	}
	var b strings.Builder
	for _, l := range w {
		if !in(l, g) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range g {
		if !in(l, w) {
			b.WriteString("+ " + l + "\n")
		}
	}
	if b.Len() == 0 {
		return "(same lines, different order or count)"
	}
	return b.String()
}
