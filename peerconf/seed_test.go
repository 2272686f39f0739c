package peerconf

import (
	"strings"
	"testing"

	"github.com/gresec/gresec/ike"
)

// seed000IOS is the Cisco IOS configuration of shared/seeds/000 (config
// block and the ACL entries after it), placeholders filled in: OpenBSD
// (gresec) 198.18.0.1, Cisco 198.18.0.2, tunnel 198.19.0.0/31 and
// 2001:db8:19::/127.
const seed000IOS = `crypto ikev2 proposal VPN-IKEv2-Proposal
 encryption aes-gcm-256
 prf sha384
 group 20
crypto ikev2 policy VPN-IKEv2-Policy
 proposal VPN-IKEv2-Proposal
crypto ikev2 keyring VPN-IKEv2-Keyring
 peer openbsd
  address 198.18.0.1
  pre-shared-key local ThisShouldBeAStrongPassword
  pre-shared-key remote ThisShouldBeAStrongPassword
crypto ikev2 profile VPN-IKEv2-Profile
 match identity remote address 198.18.0.1
 authentication remote pre-share
 authentication local pre-share
 keyring local VPN-IKEv2-Keyring
 dpd 60 10 on-demand
crypto isakmp aggressive-mode disable
crypto ipsec security-association replay window-size 1024
crypto ipsec transform-set ESP-AESGCM-256 esp-gcm 256
 mode transport
crypto ipsec fragmentation after-encryption
crypto ipsec profile VPN-IKEv2-IPsec-Profile
 set security-association lifetime kilobytes 524288
 set transform-set ESP-AESGCM-256
 set pfs group20
 set ikev2-profile VPN-IKEv2-Profile
interface Tunnel0
 ip address 198.19.0.1
 ip tcp adjust-mss 1402
 ipv6 address 2001:db8:19::1/127
 ipv6 tcp adjust-mss 1382
 tunnel source 198.18.0.2
 tunnel destination 198.18.0.1
 tunnel path-mtu-discovery
 tunnel protection ipsec profile VPN-IKEv2-IPsec-Profile
ip access-list extended Inbound
 permit udp host 198.18.0.1 host 198.18.0.2 eq isakmp
 permit udp host 198.18.0.1 host 198.18.0.2 eq non500-isakmp
 permit esp host 198.18.0.1 host 198.18.0.2
ip access-list extended Outbound
 permit udp host 198.18.0.2 host 198.18.0.1 eq isakmp
 permit udp host 198.18.0.2 host 198.18.0.1 eq non500-isakmp
 permit esp host 198.18.0.2 host 198.18.0.1
`

// TestIOSMatchesSeed000 compares our IOS output for seed 000's settings
// with the seed's working Cisco configuration line by line. Every seed
// line must appear in ours, in the same order, except these, which
// differ on purpose:
//
//   - " peer openbsd" is " peer gresec": the keyring peer's name is a label.
//   - " mode transport" is " mode transport require": without "require"
//     IOS answers a tunnel-mode proposal in tunnel mode; gresec only does
//     transport mode.
//   - " ip address 198.19.0.1": the seed's placeholder stood for the
//     address and mask; IOS needs the mask (" ... 255.255.255.254").
//
// Ours adds lines the seed leaves at IOS defaults or omits, listed in
// extra: the IKE lifetime (IOS default 86400), the CHILD SA lifetime in
// seconds (IOS default 3600), the replay window in the profile as well as
// globally, and the tunnel MTU (the seed relies on path MTU discovery).
func TestIOSMatchesSeed000(t *testing.T) {
	c := parseTestdata(t, "seed000")
	c.IKE.LocalPSK, c.IKE.RemotePSK = ike.Secret("ThisShouldBeAStrongPassword"), ike.Secret("ThisShouldBeAStrongPassword")
	out, err := Generate(c, Options{Peer: CiscoIOS, IncludeSecret: true})
	if err != nil {
		t.Fatal(err)
	}
	sec, ok := out.Section(IOSConfig)
	if !ok {
		t.Fatal("no IOS section")
	}
	differs := map[string]string{
		" peer openbsd":          " peer gresec",
		" mode transport":        " mode transport require",
		" ip address 198.19.0.1": " ip address 198.19.0.1 255.255.255.254",
	}
	extra := map[string]bool{
		" lifetime 86400": true,
		" set security-association lifetime seconds 3600":   true,
		" set security-association replay window-size 1024": true,
		" ip mtu 1442":   true,
		" ipv6 mtu 1442": true,
		// NAT traversal: the IOS default written out, and the keepalive
		// the end behind a NAT sends.
		"crypto ipsec nat-transparency udp-encapsulation": true,
		"crypto ikev2 nat keepalive 20":                   true,
	}
	var ours []string
	for _, l := range strings.Split(strings.TrimRight(sec.Text, "\n"), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "!") { // comments
			ours = append(ours, l)
		}
	}
	seed := strings.Split(strings.TrimRight(seed000IOS, "\n"), "\n")

	// Walk both in order: each seed line (or its documented replacement)
	// must come next in ours, skipping only documented extra lines.
	i := 0
	for _, want := range seed {
		if r, ok := differs[want]; ok {
			want = r
		}
		for i < len(ours) && ours[i] != want && extra[ours[i]] {
			i++
		}
		if i >= len(ours) || ours[i] != want {
			got := "(end)"
			if i < len(ours) {
				got = ours[i]
			}
			t.Fatalf("seed 000 line %q: ours has %q at line %d\nours:\n%s", want, got, i+1, strings.Join(ours, "\n"))
		}
		i++
	}
	for ; i < len(ours); i++ {
		if !extra[ours[i]] {
			t.Errorf("line %q after the seed's last line is not documented", ours[i])
		}
	}
}
