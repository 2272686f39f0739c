package main

import (
	"strings"
	"testing"

	"github.com/gresec/gresec/config"
)

// TestCheckPrintsIKESettings: check shows the [ike] settings in effect,
// defaults filled in, as an admin compares them with the peer's; IKE
// fragmentation only for IKEv2, which has it.
func TestCheckPrintsIKESettings(t *testing.T) {
	const base = "[tunnel]\nlocal = \"198.18.0.1\"\nremote = \"198.18.0.2\"\n[ipsec]\n"
	for _, tc := range []struct {
		text      string
		want      []string
		forbidden string
	}{
		{base + "keying = \"ikev2\"\n[ike]\ninitiate = false\npsk_file = \"/etc/gresec/psk\"\nlocal_id = \"site-a.example\"\nfragment_size = 576\n",
			[]string{
				"ike            ikev2, answers only (initiate = false)\n",
				"identities     local site-a.example, remote 198.18.0.2; psk /etc/gresec/psk\n",
				"proposals      ike [aes256gcm16-prfsha384-ecp384], esp [aes256gcm16-ecp384]\n",
				"lifetimes      ike 24h0m0s, child 1h0m0s / 524288000 bytes; dpd 1m0s\n",
				"fragmentation  yes, fragments up to 576 bytes\n",
			}, ""},
		{base + "keying = \"ikev1\"\n[ike]\npsk_file = \"/etc/gresec/psk\"\nproposals = [\"aes128-sha1-modp2048\"]\ndpd = \"0\"\nchild_lifetime_bytes = \"0\"\n",
			[]string{
				"ike            ikev1, initiates and answers\n",
				"proposals      ike [aes128-sha1-modp2048], esp [aes256gcm16-ecp384]\n",
				"lifetimes      ike 24h0m0s, child 1h0m0s / no byte limit; dpd off\n",
			}, "fragmentation"},
	} {
		c, err := config.Parse("g.toml", []byte(tc.text))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		printIKE(&b, c)
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("want %q in\n%s", w, b.String())
			}
		}
		if tc.forbidden != "" && strings.Contains(b.String(), tc.forbidden) {
			t.Errorf("%q in\n%s", tc.forbidden, b.String())
		}
	}
}
