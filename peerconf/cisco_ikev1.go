package peerconf

import (
	"fmt"
	"strings"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/ikev1"
)

// CiscoIOSIKEv1 is IOS with IKEv1 (keying = "ikev1"): ISAKMP policies and
// key, a transport-mode transform set, an IPsec profile and Tunnel0, the
// crypto-map era configuration (IKEv1, as the IOS crypto-map sites use).
const CiscoIOSIKEv1 Peer = "cisco-ios-ikev1"

const iosIKEv1Profile = "GRESEC-IKEv1-IPsec-Profile"

// checkIKEv1 pairs keying = "ikev1" with the peers that speak it.
func (m *mirror) checkIKEv1() error {
	v1Peer := m.o.Peer == CiscoIOSIKEv1 || m.o.Peer == FreeBSDRacoon
	switch {
	case m.c.Keying == config.KeyingIKEv1 && !v1Peer:
		return fmt.Errorf("peerconf: %s uses ipsec.keying = \"ikev1\"; peer-config writes IKEv1 for --for %s or %s only", m.c.Path, CiscoIOSIKEv1, FreeBSDRacoon)
	case v1Peer && m.c.Keying != config.KeyingIKEv1:
		return fmt.Errorf("peerconf: %s uses ipsec.keying = %q; --for %s needs keying = \"ikev1\" (use --for %s or %s for IKEv2)", m.c.Path, m.c.Keying, m.o.Peer, CiscoIOS, StrongSwan)
	}
	return nil
}

var (
	iosISAKMPHash = map[ike.PRF]string{ike.PRFSHA1: "sha", ike.PRFSHA256: "sha256", ike.PRFSHA384: "sha384", ike.PRFSHA512: "sha512"}
	iosISAKMPAES  = map[int]string{128: "aes", 192: "aes 192", 256: "aes 256"}
)

// ciscoIKEv1 writes IOS's end of an IKEv1 tunnel: one `crypto isakmp
// policy` per phase 1 suite, the PSK for gresec's address (no-xauth:
// gresec refuses XAUTH), Aggressive Mode off, DPD, a transform set that
// requires transport mode, an IPsec profile with PFS and lifetimes, and
// Tunnel0 protected by it.
func (m *mirror) ciscoIKEv1() error {
	m.out.comment = "!"
	k := &m.c.IKE
	suites, err := ikev1.Phase1Suites(k.Proposals, k.Lifetime)
	if err != nil {
		return err
	}
	esp, err := iosESPProposals(k.ESPProposals)
	if err != nil {
		return err
	}
	for _, text := range []string{k.LocalIDText, k.RemoteIDText} {
		if id, err := idOf(text); err != nil || (id.Type != ike.ID_IPV4_ADDR && id.Type != ike.ID_IPV6_ADDR) {
			return fmt.Errorf("peerconf: identity %q: --for %s writes address identities only (IOS's crypto isakmp identity address)", text, CiscoIOSIKEv1)
		}
	}
	psk, err := m.iosPSK(m.peerLocalPSK())
	if err != nil {
		return err
	}
	m.header("Cisco IOS (IKEv1 Main Mode, ISAKMP policy, IPsec profile, Tunnel0)")

	var b strings.Builder
	for i, s := range suites {
		grp, ok := iosGroup[s.DH]
		if !ok {
			return fmt.Errorf("peerconf: IKE proposal group %v: %s", s.DH, iosGroups)
		}
		fmt.Fprintf(&b, "crypto isakmp policy %d\n encryption %s\n hash %s\n authentication pre-share\n group %d\n", 10*(i+1), iosISAKMPAES[s.KeyBits], iosISAKMPHash[s.PRF], grp)
		fmt.Fprintf(&b, " lifetime %d\n", clampSeconds(&b, "phase 1 lifetime", k.Lifetime, 60, 86400))
	}
	if !m.o.IncludeSecret {
		fmt.Fprintf(&b, "! the key gresec reads from %s (IKEv1 has one key for both sides)\n", m.peerLocalPSK().file)
	}
	fmt.Fprintf(&b, "crypto isakmp key %s address %s no-xauth\n", psk, iosHostV1(m))
	b.WriteString("crypto isakmp identity address\n")
	if k.DPD > 0 {
		fmt.Fprintf(&b, "crypto isakmp keepalive %d 10 on-demand\n", clampSeconds(&b, "DPD interval", k.DPD, 10, 3600))
	}
	b.WriteString("crypto isakmp aggressive-mode disable\n")
	replay := iosReplay(m.c.ReplayWindow)
	fmt.Fprintf(&b, "crypto ipsec security-association replay %s\n", replay)
	var sets []string
	for _, ts := range esp.sets {
		sets = append(sets, ts.name)
		// "require": IOS would otherwise fall back to tunnel mode.
		fmt.Fprintf(&b, "crypto ipsec transform-set %s %s\n mode transport require\n", ts.name, ts.transform)
	}
	fmt.Fprintf(&b, "crypto ipsec profile %s\n", iosIKEv1Profile)
	fmt.Fprintf(&b, " set security-association lifetime seconds %d\n", clampSeconds(&b, "phase 2 lifetime", k.ChildLifetime, 120, 86400))
	if k.ChildLifetimeBytes > 0 {
		fmt.Fprintf(&b, " set security-association lifetime kilobytes %d\n", (k.ChildLifetimeBytes+999)/1000)
	}
	fmt.Fprintf(&b, " set security-association replay %s\n", replay)
	fmt.Fprintf(&b, " set transform-set %s\n", strings.Join(sets, " "))
	if esp.pfs != 0 {
		fmt.Fprintf(&b, " set pfs group%d\n", esp.pfs)
	}
	var tun strings.Builder
	m.iosTunnel(&tun, true)
	b.WriteString(strings.Replace(tun.String(), " tunnel protection ipsec profile "+iosIPsec+"\n", " tunnel protection ipsec profile "+iosIKEv1Profile+"\n", 1))
	m.iosACL(&b)
	m.add(IOSConfig, 0, b.String())
	return nil
}

// iosHostV1 is gresec's address as `crypto isakmp key ... address` takes
// it: IPv4 bare, IPv6 as ipv6 PREFIX.
func iosHostV1(m *mirror) string {
	if m.remote.Is6() {
		return "ipv6 " + hostPrefix(m.remote).String()
	}
	return m.remote.String()
}
