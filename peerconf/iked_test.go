package peerconf

import (
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/ike"
)

// binPSK needs hex in iked.conf: a quote, a backslash, a control byte.
const binPSK = "quote\" backslash\\ and \x01 bytes"

// iked finds OpenBSD iked (Debian package openiked); under CI its absence
// fails the test, elsewhere it skips loudly.
func iked(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("iked")
	if err != nil {
		for _, c := range []string{"/usr/sbin/iked", "/sbin/iked"} {
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
		if os.Getenv("CI") == "true" {
			t.Fatal("iked not installed (apt-get install -y openiked): CI must check the generated iked.conf")
		}
		t.Skip("SKIPPED: iked not installed; apt-get install -y openiked to check the generated iked.conf")
	}
	return p
}

// ikedCheck writes text as an iked.conf with mode and runs `iked -n -f`.
func ikedCheck(t *testing.T, bin, text string, mode os.FileMode) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "iked.conf")
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask must not decide
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-n", "-v", "-f", path).CombinedOutput()
	return string(out), err
}

// TestIkedAcceptsGeneratedConf has openiked's parser check every iked.conf
// we write: the iked + IOS pair (placeholder and real key), an IPv6 responder with
// name identities and several proposals, ESN, and a key that needs hex.
func TestIkedAcceptsGeneratedConf(t *testing.T) {
	bin := iked(t)
	seed := parseTestdata(t, "iked-ios")
	seedKey := parseTestdata(t, "iked-ios")
	seedKey.IKE.LocalPSK, seedKey.IKE.RemotePSK = ike.Secret(testPSK), ike.Secret(testPSK)
	v6 := parseTestdata(t, "responder-v6")
	v6.IKE.RemotePSKFile = v6.IKE.LocalPSKFile // iked takes one key
	esn := withESP(t, loadIKE(t, "psk_file = \"DIR/psk\"\ndpd = \"0\"\n", map[string]string{"psk": testPSK}), "aes128gcm16-esn", "aes256gcm16-esn-noesn")
	binKey := loadIKE(t, "psk_file = \"DIR/psk\"\n", map[string]string{"psk": binPSK})
	// The appliance's `AES SHA 14` both ways; the iked + IOS pair with the child
	// Linux iked can key; SHA-2 HMACs with MODP 3072/4096 and ESN.
	appliance := withESP(t, loadIKE(t, "psk_file = \"DIR/psk\"\nproposals = [\"aes128-sha1-modp2048\"]\n", map[string]string{"psk": testPSK}), "aes128-sha1-modp2048")
	childCBC := withESP(t, parseTestdata(t, "iked-ios"), "aes256-sha256-ecp384")
	sha2 := withESP(t, loadIKE(t, "psk_file = \"DIR/psk\"\nproposals = [\"aes256-sha512-prfsha384-modp4096\", \"aes192-sha384-modp3072\"]\n", map[string]string{"psk": testPSK}),
		"aes192-sha384-modp3072-esn", "aes256-aes128-sha256-sha1")

	for _, tc := range []struct {
		name   string
		c      *config.Config
		secret bool
		expect []string // in iked's printout of the policy it parsed
	}{
		{"iked-ios", seed, false, []string{"ikev2 \"gresec\" passive transport esp proto { gre } inet from 198.18.0.2 to 198.18.0.1 local 198.18.0.2 peer 198.18.0.1",
			"ikesa enc aes-256-gcm prf hmac-sha2-384 group ecp384", "srcid 198.18.0.2 dstid 198.18.0.1", "ikelifetime 86400 lifetime 3600 bytes 524288000"}},
		{"iked-ios-with-key", seedKey, true, []string{"psk 0x" + hex.EncodeToString([]byte(testPSK))}},
		{"responder-v6", v6, false, []string{"active transport esp proto { gre } inet6 from 2001:db8:18::2 to 2001:db8:18::1",
			"ikesa enc aes-128-gcm prf hmac-sha2-256 group ecp256 group modp2048", "srcid peer@example.net dstid gresec.example", "ikelifetime 28800 lifetime 1800 "}},
		{"esn", esn, false, []string{"ikesa enc aes-256-gcm prf hmac-sha2-384 group ecp384"}},
		{"hex-key", binKey, true, []string{"psk 0x" + hex.EncodeToString([]byte(binPSK))}},
		{"appliance", appliance, false, []string{"ikesa enc aes-128 prf hmac-sha1 auth hmac-sha1 group modp2048 childsa enc aes-128 auth hmac-sha1 group modp2048 noesn"}},
		{"iked-ios-child-cbc", childCBC, false, []string{"ikesa enc aes-256-gcm prf hmac-sha2-384 group ecp384 childsa enc aes-256 auth hmac-sha2-256 group ecp384 noesn"}},
		{"sha2-modp", sha2, false, []string{"ikesa enc aes-256 prf hmac-sha2-384 auth hmac-sha2-512 group modp4096",
			"ikesa enc aes-192 prf hmac-sha2-384 auth hmac-sha2-384 group modp3072",
			"childsa enc aes-192 auth hmac-sha2-384 group modp3072 esn",
			"childsa enc aes-256 enc aes-128 auth hmac-sha2-256 auth hmac-sha1 group none noesn"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Generate(tc.c, Options{Peer: OpenBSD, IncludeSecret: tc.secret})
			if err != nil {
				t.Fatal(err)
			}
			sec, ok := out.Section(IkedConf)
			if !ok {
				t.Fatal("no iked.conf section")
			}
			printed, err := ikedCheck(t, bin, sec.Text, sec.Mode)
			if err != nil || !strings.Contains(printed, "configuration OK") {
				t.Fatalf("iked -n rejects the generated iked.conf (%v):\n%s\n--- iked.conf ---\n%s", err, printed, sec.Text)
			}
			for _, want := range tc.expect {
				if !strings.Contains(printed, want) {
					t.Errorf("iked parsed the policy as\n%s\nwant it to contain %q", printed, want)
				}
			}
		})
	}
}

// TestIkedChecksWhatWeThinkItChecks: a misspelt transform and a
// world-readable file are both refused, so the test above can fail.
func TestIkedChecksWhatWeThinkItChecks(t *testing.T) {
	bin := iked(t)
	out, err := Generate(parseTestdata(t, "iked-ios"), Options{Peer: OpenBSD})
	if err != nil {
		t.Fatal(err)
	}
	sec, _ := out.Section(IkedConf)
	if printed, err := ikedCheck(t, bin, strings.Replace(sec.Text, "aes-256-gcm", "aes-257-gcm", 1), 0o600); err == nil {
		t.Errorf("iked -n accepted a misspelt transform:\n%s", printed)
	}
	printed, err := ikedCheck(t, bin, sec.Text, 0o644)
	if err == nil || !strings.Contains(printed, "world read") {
		t.Errorf("iked -n accepted a world-readable iked.conf (%v): %s", err, printed)
	}
}
