package peerconf

import (
	"fmt"
	"strings"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/ike"
)

// OpenBSD section names.
const (
	IkedConf     = "/etc/iked.conf"
	HostnameGRE0 = "/etc/hostname.gre0"
	PfConf       = "/etc/pf.conf (add)"
	SysctlConf   = "/etc/sysctl.conf (add)"
	RcConfLocal  = "/etc/rc.conf.local (add)"
)

// openbsd is the seed 000 OpenBSD end: iked(8) with gre(4), pf and the
// sysctls, for IKEv2 keying; gre(4) alone for keying "none".
func (m *mirror) openbsd() error {
	if m.c.Keying == config.KeyingStatic {
		return fmt.Errorf("peerconf: %s uses ipsec.keying = \"static\"; peer-config writes OpenBSD iked (IKEv2) or plain gre(4) only; use keying = \"ikev2\", or --for linux for static keys", m.c.Path)
	}
	esp := m.c.Keying == config.KeyingIKEv2
	if esp {
		if err := m.iked(); err != nil {
			return err
		}
	} else {
		m.header("OpenBSD (gre(4), plain GRE without ESP)")
	}
	m.hostnameGRE()
	m.pf(esp)

	var s strings.Builder
	s.WriteString("net.inet.gre.allow=1\n")
	if esp {
		s.WriteString("net.inet.esp.enable=1\n")
	}
	s.WriteString("# To route networks across the tunnel (as in seed 000):\n")
	s.WriteString("net.inet.ip.forwarding=1\nnet.inet6.ip6.forwarding=1\n")
	m.add(SysctlConf, 0, s.String())
	if esp {
		m.add(RcConfLocal, 0, "iked_flags=\n")
	}

	var c strings.Builder
	if esp {
		c.WriteString("# iked refuses an iked.conf that group or others can read or write.\n")
		c.WriteString("chown root:wheel /etc/iked.conf && chmod 600 /etc/iked.conf\n")
		c.WriteString("iked -n -f /etc/iked.conf\n")
	}
	c.WriteString("sysctl net.inet.gre.allow=1\n")
	if esp {
		c.WriteString("sysctl net.inet.esp.enable=1\n")
	}
	c.WriteString("sh /etc/netstart gre0\npfctl -f /etc/pf.conf\n")
	if esp {
		c.WriteString("rcctl enable iked\nrcctl start iked\n")
	}
	m.add(CommandsSection, 0, c.String())
	return nil
}

// iked writes iked.conf: seed 000's one-line policy with our settings.
func (m *mirror) iked() error {
	k := &m.c.IKE
	if m.asymmetricPSK() {
		return fmt.Errorf("peerconf: %s has different local_psk_file and remote_psk_file, but OpenBSD iked takes one PSK for both directions; use psk_file", m.c.Path)
	}
	ikesa, err := ikedTransforms(k.Proposals)
	if err != nil {
		return err
	}
	childsa, err := ikedTransforms(k.ESPProposals)
	if err != nil {
		return err
	}
	srcid, err := ikedID(k.RemoteIDText)
	if err != nil {
		return err
	}
	dstid, err := ikedID(k.LocalIDText)
	if err != nil {
		return err
	}
	psk, err := m.pskValue(m.peerLocalPSK())
	if err != nil {
		return err
	}
	m.header("OpenBSD (iked, gre(4), pf)")

	var b strings.Builder
	if k.DPD > 0 {
		fmt.Fprintf(&b, "# Dead peer detection as gresec's (ike.dpd = %s).\n", k.DPD)
		fmt.Fprintf(&b, "set dpd_check_interval %d\n", seconds(k.DPD))
	} else {
		b.WriteString("# gresec has dead peer detection off (ike.dpd = 0); iked's default interval applies.\n")
	}
	mode := "passive"
	if k.Initiate {
		b.WriteString("# gresec initiates (initiate = true), so this end waits: passive.\n")
	} else {
		mode = "active"
		b.WriteString("# gresec waits (initiate = false), so this end initiates: active.\n")
	}
	m.ikedEncap(&b)
	b.WriteString("# Replay window: iked.conf has no setting; iked asks the kernel for a 64-packet window.\n")
	fmt.Fprintf(&b, "# gresec's window (%d) covers what gresec receives.\n", m.c.ReplayWindow)
	if k.ChildLifetimeBytes == 0 {
		b.WriteString("# gresec has no CHILD SA byte limit; iked's default applies.\n")
	}
	af := "inet"
	if m.v6() {
		af = "inet6"
	}
	lines := []string{
		fmt.Sprintf("ikev2 \"gresec\" %s transport esp %s proto gre from %s to %s", mode, af, m.local, m.remote),
		fmt.Sprintf("local %s peer %s", m.local, m.remote),
	}
	lines = append(lines, ikesa...)
	lines = append(lines, childsa...)
	lines = append(lines, fmt.Sprintf("srcid %s dstid %s", srcid, dstid))
	life := fmt.Sprintf("ikelifetime %d lifetime %d", seconds(k.Lifetime), seconds(k.ChildLifetime))
	if k.ChildLifetimeBytes > 0 {
		life += " bytes " + ikedBytes(k.ChildLifetimeBytes)
	}
	lines = append(lines, life, "psk "+psk)
	b.WriteString(strings.Join(lines, " \\\n\t") + "\n")
	m.add(IkedConf, 0o600, b.String())
	return nil
}

// ikedID writes an identity as iked reads srcid/dstid: an address, a
// name (FQDN, without strongSwan's leading '@') or user@domain (UFQDN).
func ikedID(text string) (string, error) {
	id, err := idOf(text)
	if err != nil {
		return "", err
	}
	switch id.Type {
	case ike.ID_IPV4_ADDR, ike.ID_IPV6_ADDR:
		return id.String(), nil
	case ike.ID_FQDN, ike.ID_RFC822_ADDR:
		s := string(id.Data)
		if strings.ContainsAny(s, "\"\\\n\r \t") || s == "" {
			return "", fmt.Errorf("peerconf: identity %q cannot be written in iked.conf", text)
		}
		return `"` + s + `"`, nil
	}
	return "", fmt.Errorf("peerconf: identity %q: OpenBSD iked cannot express a key-id identity in srcid/dstid", text)
}

// ikedBytes writes a byte count with iked's binary suffixes when exact.
func ikedBytes(n uint64) string {
	for _, u := range []struct {
		shift  uint
		suffix string
	}{{30, "G"}, {20, "M"}, {10, "K"}} {
		if n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.suffix)
		}
	}
	return fmt.Sprint(n)
}

// hostnameGRE is /etc/hostname.gre0: addresses in hostname.if(5)'s packed
// form, "inet addr netmask" and "inet6 addr prefixlen", each followed by
// "dest" with gresec's address (netstart appends it to the ifconfig line
// as the point-to-point destination).
func (m *mirror) hostnameGRE() {
	var b strings.Builder
	m.innerComments(&b, "#")
	b.WriteString("# Not seed 000's \"inet <this end> <other end>\": netstart reads a second word as the netmask.\n")
	for _, a := range m.inner {
		addr := a.placeholder()
		if a.theirs.IsValid() {
			addr = a.theirs.Addr().String()
		}
		if a.ours.Addr().Is4() {
			fmt.Fprintf(&b, "inet %s %s\n", addr, v4Mask(a.ours.Bits()))
		} else {
			fmt.Fprintf(&b, "inet6 %s %d\n", addr, a.ours.Bits())
		}
		fmt.Fprintf(&b, "dest %s\n", a.ours.Addr())
	}
	fmt.Fprintf(&b, "tunnel %s %s\n", m.local, m.remote)
	if m.c.GREKey != nil {
		fmt.Fprintf(&b, "vnetid %d\n", *m.c.GREKey)
	}
	fmt.Fprintf(&b, "# MTU as gresec's %s.\n", m.mtuNote())
	fmt.Fprintf(&b, "mtu %d\nup\n", m.c.MTU)
	m.add(HostnameGRE0, 0, b.String())
}

// pf writes seed 000's rules: MSS scrub on gre0, IKE and ESP on egress,
// GRE on enc0 (where decrypted traffic appears). Seed 000 also passes
// ipencap, which only tunnel mode uses.
func (m *mirror) pf(esp bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "# TCP MSS: MTU - 40 (IPv4), MTU - 60 (IPv6).\n")
	fmt.Fprintf(&b, "match on gre0 inet scrub (max-mss %d)\n", m.mss4())
	fmt.Fprintf(&b, "match on gre0 inet6 scrub (max-mss %d)\n", m.mss6())
	r := m.remote
	if esp {
		fmt.Fprintf(&b, "pass out quick on egress proto udp from egress to %s port { 500, 4500 } user _iked\n", r)
		fmt.Fprintf(&b, "pass in quick on egress proto udp from %s to egress port { 500, 4500 }\n", r)
		fmt.Fprintf(&b, "pass out quick on egress proto esp from egress to %s\n", r)
		fmt.Fprintf(&b, "pass in quick on egress proto esp from %s to egress\n", r)
		fmt.Fprintf(&b, "pass out quick on enc0 proto gre from egress to %s\n", r)
		fmt.Fprintf(&b, "pass in quick on enc0 proto gre from %s to egress\n", r)
	} else {
		fmt.Fprintf(&b, "pass out quick on egress proto gre from egress to %s\n", r)
		fmt.Fprintf(&b, "pass in quick on egress proto gre from %s to egress\n", r)
	}
	m.add(PfConf, 0, b.String())
}
