package peerconf

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/ike"
)

// IOSConfig is the Cisco IOS section: configuration-mode lines.
const IOSConfig = "running-config (configure terminal)"

// Names are seed 000's, so that its configuration and ours compare
// line by line.
const (
	iosProposal = "VPN-IKEv2-Proposal"
	iosPolicy   = "VPN-IKEv2-Policy"
	iosKeyring  = "VPN-IKEv2-Keyring"
	iosProfile  = "VPN-IKEv2-Profile"
	iosIPsec    = "VPN-IKEv2-IPsec-Profile"
)

// cisco is the seed 000 Cisco IOS end: IKEv2 proposal, policy, keyring
// and profile, an IPsec profile with a transport-mode transform set, and
// Tunnel0 protected by it.
func (m *mirror) cisco() error {
	m.out.comment = "!"
	switch m.c.Keying {
	case config.KeyingStatic:
		return fmt.Errorf("peerconf: %s uses ipsec.keying = \"static\"; peer-config writes IOS IKEv2 (keying = \"ikev2\") or plain GRE (keying = \"none\") only; use --for linux for static keys", m.c.Path)
	case config.KeyingNone:
		m.header("Cisco IOS (plain GRE, no IPsec)")
		var b strings.Builder
		m.iosTunnel(&b, false)
		m.add(IOSConfig, 0, b.String())
		return nil
	}
	k := &m.c.IKE
	props, err := iosIKEProposals(k.Proposals)
	if err != nil {
		return err
	}
	esp, err := iosESPProposals(k.ESPProposals)
	if err != nil {
		return err
	}
	localPSK, err := m.iosPSK(m.peerLocalPSK())
	if err != nil {
		return err
	}
	remotePSK, err := m.iosPSK(m.peerRemotePSK())
	if err != nil {
		return err
	}
	localID, err := iosIdentity(k.RemoteIDText)
	if err != nil {
		return err
	}
	remoteID, err := iosIdentity(k.LocalIDText)
	if err != nil {
		return err
	}
	shape := m.c.Shape()
	switch shape {
	case config.ShapeVTI:
		m.header("Cisco IOS (IKEv2, IPsec profile, VTI Tunnel0: tunnel mode ipsec)")
	case config.ShapeGRETunnel:
		m.header("Cisco IOS (IKEv2, GRE Tunnel0 protected by a tunnel-mode crypto map)")
	default:
		m.header("Cisco IOS (IKEv2, IPsec profile, Tunnel0)")
	}

	var b strings.Builder
	var names []string
	for i, p := range props {
		name := iosProposal
		if i > 0 {
			name = fmt.Sprintf("%s-%d", iosProposal, i+1)
		}
		names = append(names, name)
		fmt.Fprintf(&b, "crypto ikev2 proposal %s\n encryption %s\n", name, p.encryption)
		if p.integrity != "" { // AES-CBC; AES-GCM takes none
			fmt.Fprintf(&b, " integrity %s\n", p.integrity)
		}
		fmt.Fprintf(&b, " prf %s\n group %s\n", p.prf, p.group)
	}
	fmt.Fprintf(&b, "crypto ikev2 policy %s\n", iosPolicy)
	for _, n := range names {
		fmt.Fprintf(&b, " proposal %s\n", n)
	}
	fmt.Fprintf(&b, "crypto ikev2 keyring %s\n peer gresec\n  address %s\n", iosKeyring, iosHost(m.remote))
	if !m.o.IncludeSecret {
		fmt.Fprintf(&b, "  ! local: this router's key, from %s; remote: gresec's, from %s\n", m.peerLocalPSK().file, m.peerRemotePSK().file)
	}
	fmt.Fprintf(&b, "  pre-shared-key local %s\n  pre-shared-key remote %s\n", localPSK, remotePSK)
	fmt.Fprintf(&b, "crypto ikev2 profile %s\n match identity remote %s\n", iosProfile, remoteID)
	if localID != "" && localID != "address "+iosHost(m.local) {
		fmt.Fprintf(&b, " identity local %s\n", localID)
	}
	b.WriteString(" authentication remote pre-share\n authentication local pre-share\n")
	fmt.Fprintf(&b, " keyring local %s\n", iosKeyring)
	fmt.Fprintf(&b, " lifetime %d\n", clampSeconds(&b, "IKE SA lifetime", k.Lifetime, 120, 86400))
	if k.DPD > 0 {
		fmt.Fprintf(&b, " dpd %d 10 on-demand\n", clampSeconds(&b, "DPD interval", k.DPD, 10, 3600))
	}
	b.WriteString("crypto isakmp aggressive-mode disable\n")
	m.iosEncap(&b)
	replay := iosReplay(m.c.ReplayWindow)
	fmt.Fprintf(&b, "crypto ipsec security-association replay %s\n", replay)
	var sets []string
	for _, ts := range esp.sets {
		sets = append(sets, ts.name)
		if shape == config.ShapeGRE {
			// "require": without it IOS answers a tunnel-mode proposal
			// in tunnel mode; this gresec does transport mode.
			fmt.Fprintf(&b, "crypto ipsec transform-set %s %s\n mode transport require\n", ts.name, ts.transform)
		} else {
			fmt.Fprintf(&b, "crypto ipsec transform-set %s %s\n mode tunnel\n", ts.name, ts.transform)
		}
	}
	b.WriteString("crypto ipsec fragmentation after-encryption\n")
	if shape == config.ShapeGRETunnel {
		m.iosCryptoMap(&b, replay, sets, esp.pfs)
		m.iosACL(&b)
		m.add(IOSConfig, 0, b.String())
		return nil
	}
	fmt.Fprintf(&b, "crypto ipsec profile %s\n", iosIPsec)
	m.iosSASettings(&b, replay, sets, esp.pfs)
	if shape == config.ShapeVTI {
		m.iosVTI(&b)
	} else {
		m.iosTunnel(&b, true)
	}
	m.iosACL(&b)
	m.add(IOSConfig, 0, b.String())
	return nil
}

// iosSASettings are the CHILD SA's settings, the same lines in an IPsec
// profile and in a crypto map entry.
func (m *mirror) iosSASettings(b *strings.Builder, replay string, sets []string, pfs int) {
	k := &m.c.IKE
	fmt.Fprintf(b, " set security-association lifetime seconds %d\n", clampSeconds(b, "CHILD SA lifetime", k.ChildLifetime, 120, 86400))
	if k.ChildLifetimeBytes > 0 {
		// IOS counts in kilobytes of 1000 bytes, as seed 000's 524288 for
		// iked's 524288000; rounding up keeps IOS from rekeying first.
		fmt.Fprintf(b, " set security-association lifetime kilobytes %d\n", (k.ChildLifetimeBytes+999)/1000)
	} else {
		b.WriteString(" ! gresec has no CHILD SA byte limit; IOS's default applies.\n")
	}
	fmt.Fprintf(b, " set security-association replay %s\n", replay)
	fmt.Fprintf(b, " set transform-set %s\n", strings.Join(sets, " "))
	if pfs != 0 {
		fmt.Fprintf(b, " set pfs group%d\n", pfs)
	}
	fmt.Fprintf(b, " set ikev2-profile %s\n", iosProfile)
}

// iosTunnel is interface Tunnel0 with our inner addresses mirrored.
func (m *mirror) iosTunnel(b *strings.Builder, protect bool) {
	b.WriteString("interface Tunnel0\n")
	m.innerComments(b, " !")
	has6 := false
	for _, a := range m.inner {
		addr := a.placeholder()
		if a.theirs.IsValid() {
			addr = a.theirs.Addr().String()
		}
		if a.ours.Addr().Is4() {
			fmt.Fprintf(b, " ip address %s %s\n", addr, v4Mask(a.ours.Bits()))
		}
	}
	fmt.Fprintf(b, " ip mtu %d\n ip tcp adjust-mss %d\n", m.c.MTU, m.mss4())
	for _, a := range m.inner {
		if a.ours.Addr().Is6() {
			has6 = true
			addr := a.placeholder()
			if a.theirs.IsValid() {
				addr = a.theirs.Addr().String()
			}
			fmt.Fprintf(b, " ipv6 address %s/%d\n", addr, a.ours.Bits())
		}
	}
	if has6 {
		fmt.Fprintf(b, " ipv6 mtu %d\n ipv6 tcp adjust-mss %d\n", m.c.MTU, m.mss6())
	}
	fmt.Fprintf(b, " tunnel source %s\n tunnel destination %s\n", m.local, m.remote)
	if m.v6() {
		b.WriteString(" tunnel mode gre ipv6\n")
	}
	if m.c.GREKey != nil {
		fmt.Fprintf(b, " tunnel key %d\n", *m.c.GREKey)
	}
	b.WriteString(" tunnel path-mtu-discovery\n")
	if protect {
		fmt.Fprintf(b, " tunnel protection ipsec profile %s\n", iosIPsec)
	}
	m.iosKeepalive(b, protect)
}

// iosKeepalive mirrors gresec's GRE keepalives. Over plain GRE IOS sends
// and answers them as gresec does. Under tunnel protection IOS routes its
// answer to gresec's keepalives out of the WAN interface, past the
// tunnel's protection (Cisco's GRE keepalive technote), so it leaves
// unencrypted and gresec, which reads only ESP, never sees it: gresec's
// keepalives would mark the tunnel down. IOS's own keepalives gresec
// answers through the SA.
func (m *mirror) iosKeepalive(b *strings.Builder, protect bool) {
	if m.c.Keepalive == 0 {
		return
	}
	period := max(1, seconds(m.c.Keepalive))
	if !protect {
		fmt.Fprintf(b, " keepalive %d %d\n", period, m.c.KeepaliveRetries)
		return
	}
	fmt.Fprintf(b, " ! gresec sends GRE keepalives (tunnel.keepalive = %s), but under tunnel protection IOS\n", m.c.Keepalive)
	b.WriteString(" ! answers them unencrypted, outside the SA, and gresec never sees the answers:\n")
	b.WriteString(" ! turn tunnel.keepalive off on gresec and rely on IKE DPD (ike.dpd), or protect\n")
	b.WriteString(" ! GRE with a crypto map on the WAN interface instead of tunnel protection.\n")
}

// iosACL are seed 000's entries for ACLs on the WAN interface.
func (m *mirror) iosACL(b *strings.Builder) {
	b.WriteString("! If the WAN interface has access lists, they need these entries:\n")
	kw := "ip access-list extended"
	if m.v6() {
		kw = "ipv6 access-list"
	}
	for _, dir := range []struct {
		name     string
		src, dst netip.Addr
	}{{"Inbound", m.remote, m.local}, {"Outbound", m.local, m.remote}} {
		fmt.Fprintf(b, "%s %s\n", kw, dir.name)
		fmt.Fprintf(b, " permit udp host %s host %s eq isakmp\n", dir.src, dir.dst)
		fmt.Fprintf(b, " permit udp host %s host %s eq non500-isakmp\n", dir.src, dir.dst)
		fmt.Fprintf(b, " permit esp host %s host %s\n", dir.src, dir.dst)
	}
}

func v4Mask(bits int) string {
	var m [4]byte
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(m).String()
}

// iosHost is an address as IOS keyrings and identity matches take it:
// IPv4 bare (seed 000), IPv6 with its /128.
func iosHost(a netip.Addr) string {
	if a.Is6() {
		return hostPrefix(a).String()
	}
	return a.String()
}

// iosIdentity renders an identity for `identity local` / `match identity
// remote`: "address A", "fqdn NAME" or "email USER@DOMAIN".
func iosIdentity(text string) (string, error) {
	id, err := idOf(text)
	if err != nil {
		return "", err
	}
	switch id.Type {
	case ike.ID_IPV4_ADDR, ike.ID_IPV6_ADDR:
		a, _ := netip.AddrFromSlice(id.Data)
		return "address " + iosHost(a), nil
	case ike.ID_FQDN:
		return "fqdn " + string(id.Data), nil
	case ike.ID_RFC822_ADDR:
		return "email " + string(id.Data), nil
	}
	return "", fmt.Errorf("peerconf: identity %q: Cisco IOS cannot express a key-id identity here", text)
}

// iosPSK is a key as IOS's CLI takes it: one word of printable ASCII
// without '?' (which asks for help) or '"'.
func (m *mirror) iosPSK(s secret) (string, error) {
	if !m.o.IncludeSecret {
		return fmt.Sprintf("<contents of %s>", s.file), nil
	}
	if s.value == nil {
		return "", fmt.Errorf("peerconf: --include-secret: the pre-shared key in %s was not loaded", s.file)
	}
	for _, c := range []byte(s.value) {
		if c <= ' ' || c > '~' || c == '?' || c == '"' {
			return "", fmt.Errorf("peerconf: the pre-shared key in %s has characters the IOS command line cannot take (space, control, non-ASCII, '?' or '\"'); use a key of printable ASCII", s.file)
		}
	}
	return string(s.value), nil
}

// iosReplay is the replay setting IOS accepts: window sizes 64 to 1024
// in powers of two (the next one up from ours), or disable.
func iosReplay(w int) string {
	if w == 0 {
		return "disable"
	}
	for _, n := range []int{64, 128, 256, 512} {
		if w <= n {
			return fmt.Sprintf("window-size %d", n)
		}
	}
	return "window-size 1024"
}

// clampSeconds keeps a lifetime in IOS's range, saying so when it must.
func clampSeconds(b *strings.Builder, what string, d time.Duration, lo, hi int64) int64 {
	s := seconds(d)
	switch {
	case s < lo:
		fmt.Fprintf(b, " ! gresec's %s is %d s; IOS's minimum is %d s.\n", what, s, lo)
		return lo
	case s > hi:
		fmt.Fprintf(b, " ! gresec's %s is %d s; IOS's maximum is %d s.\n", what, s, hi)
		return hi
	}
	return s
}
