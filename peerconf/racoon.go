package peerconf

import (
	"fmt"
	"strings"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/ike"
	"github.com/gresec/gresec/ikev1"
)

// FreeBSDRacoon is FreeBSD with racoon (ipsec-tools) for IKEv1 (keying =
// "ikev1"): racoon.conf with a remote block (Main Mode, the phase 1
// proposals) and a sainfo for GRE host to host (the phase 2 proposals,
// PFS), its PSK file, the setkey SPD lines that require ESP in transport
// mode for protocol 47, and gre(4): the FreeBSD racoon sites' setup.
const FreeBSDRacoon Peer = "freebsd-racoon"

// Where the ipsec-tools package (security/ipsec-tools) keeps racoon's
// files.
const (
	RacoonConf = "/usr/local/etc/racoon/racoon.conf"
	RacoonPSK  = "/usr/local/etc/racoon/psk.txt"
)

var (
	racoonHash  = map[ike.PRF]string{ike.PRFSHA1: "sha1", ike.PRFSHA256: "sha256", ike.PRFSHA384: "sha384", ike.PRFSHA512: "sha512"}
	racoonInteg = map[uint16]string{ike.AUTH_HMAC_SHA1_96: "hmac_sha1", ike.AUTH_HMAC_SHA2_256_128: "hmac_sha256",
		ike.AUTH_HMAC_SHA2_384_192: "hmac_sha384", ike.AUTH_HMAC_SHA2_512_256: "hmac_sha512"}
)

// racoonGroup is a DH group as racoon.conf names it: the MODP groups
// only (racoon has no elliptic curves).
func racoonGroup(g ike.DHGroup) (int, error) {
	switch g {
	case ike.MODP2048, ike.MODP3072, ike.MODP4096:
		return int(g), nil
	}
	return 0, fmt.Errorf("peerconf: DH group %v: racoon (ipsec-tools) has MODP groups only; use modp2048, modp3072 or modp4096 for --for %s", g, FreeBSDRacoon)
}

// racoon writes FreeBSD's end of an IKEv1 tunnel with racoon.
func (m *mirror) racoon() error {
	m.out.comment = "#"
	k := &m.c.IKE
	suites, err := ikev1.Phase1Suites(k.Proposals, k.Lifetime)
	if err != nil {
		return err
	}
	p2 := ikev1.Phase2Suites(k.ESPProposals)
	for _, text := range []string{k.LocalIDText, k.RemoteIDText} {
		if id, err := idOf(text); err != nil || (id.Type != ike.ID_IPV4_ADDR && id.Type != ike.ID_IPV6_ADDR) {
			return fmt.Errorf("peerconf: identity %q: --for %s writes address identities only (racoon's my_identifier address)", text, FreeBSDRacoon)
		}
	}
	var encs, integs []string
	pfs := ike.DHNone
	for _, s := range p2 {
		if s.ESP.Encr != ike.ENCR_AES_CBC {
			return fmt.Errorf("peerconf: ESP proposal %s: racoon's phase 2 takes AES-CBC with HMAC-SHA; use e.g. esp_proposals = [\"aes128-sha1-modp2048\"] for --for %s", s.ESP.Transform(), FreeBSDRacoon)
		}
		encs = appendNew(encs, fmt.Sprintf("aes %d", s.ESP.KeyBits))
		integs = appendNew(integs, racoonInteg[s.ESP.Integ])
		pfs = s.PFS
	}
	if len(encs) == 0 {
		return fmt.Errorf("peerconf: no ESP proposal has an IKEv1 form for --for %s", FreeBSDRacoon)
	}
	psk := "<contents of " + m.peerLocalPSK().file + ">"
	if m.o.IncludeSecret {
		v := m.peerLocalPSK().value
		if v == nil {
			return fmt.Errorf("peerconf: --include-secret: the pre-shared key in %s was not loaded", m.peerLocalPSK().file)
		}
		for _, c := range []byte(v) {
			if c <= ' ' || c > '~' || c == '#' || c == '"' {
				return fmt.Errorf("peerconf: the pre-shared key in %s has characters psk.txt cannot take (space, control, non-ASCII, '#' or '\"'); use a key of printable ASCII", m.peerLocalPSK().file)
			}
		}
		psk = string(v)
	}
	m.header("FreeBSD (racoon IKEv1 Main Mode + Quick Mode, setkey policies, gre(4))",
		"racoon is security/ipsec-tools (pkg install ipsec-tools); the kernel needs IPSEC (GENERIC has it as a module).")

	var b strings.Builder
	fmt.Fprintf(&b, "path pre_shared_key %q;\n\n", RacoonPSK)
	fmt.Fprintf(&b, "remote %s {\n", m.remote)
	b.WriteString("\texchange_mode main;\n\tmy_identifier address;\n\tpeers_identifier address;\n\tverify_identifier on;\n")
	// gresec initiates: racoon answers only; else racoon starts phase 1
	// when the first GRE packet needs an SA.
	fmt.Fprintf(&b, "\tpassive %s;\n", onOff(k.Initiate))
	fmt.Fprintf(&b, "\tnat_traversal %s;\n", map[config.UDPEncap]string{config.UDPEncapAuto: "on", config.UDPEncapAlways: "force", config.UDPEncapNever: "off"}[m.c.UDPEncap])
	if k.DPD > 0 {
		fmt.Fprintf(&b, "\tdpd_delay %d;\n", seconds(k.DPD))
	}
	b.WriteString("\tproposal_check obey;\n")
	for _, s := range suites {
		g, err := racoonGroup(s.DH)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "\tproposal {\n\t\tencryption_algorithm aes %d;\n\t\thash_algorithm %s;\n\t\tauthentication_method pre_shared_key;\n\t\tdh_group %d;\n\t\tlifetime time %d sec;\n\t}\n",
			s.KeyBits, racoonHash[s.PRF], g, seconds(s.Lifetime))
	}
	b.WriteString("}\n\n")
	// Transport mode, GRE host to host: the Quick Mode IDs gresec sends.
	fmt.Fprintf(&b, "sainfo address %s gre address %s gre {\n", m.local, m.remote)
	if pfs != ike.DHNone {
		g, err := racoonGroup(pfs)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "\tpfs_group %d;\n", g)
	}
	fmt.Fprintf(&b, "\tlifetime time %d sec;\n", seconds(k.ChildLifetime))
	if k.ChildLifetimeBytes > 0 {
		// racoon.conf parses lifetime byte but does not enforce it.
		fmt.Fprintf(&b, "\t# gresec also rekeys after %d KB (child_lifetime_bytes); racoon enforces time lifetimes only\n", k.ChildLifetimeBytes/1024)
	}
	fmt.Fprintf(&b, "\tencryption_algorithm %s;\n\tauthentication_algorithm %s;\n\tcompression_algorithm deflate;\n}\n",
		strings.Join(encs, ", "), strings.Join(integs, ", "))
	m.add(RacoonConf, 0o600, b.String())
	if !m.o.IncludeSecret {
		m.add(RacoonPSK, 0o600, fmt.Sprintf("# the key gresec reads from %s (IKEv1 has one key for both sides)\n%s %s\n", m.peerLocalPSK().file, m.remote, psk))
	} else {
		m.add(RacoonPSK, 0o600, fmt.Sprintf("%s %s\n", m.remote, psk))
	}

	// racoon negotiates the SAs; setkey holds the policies that ask for
	// them (no generate_policy: both ends are fixed addresses).
	var s strings.Builder
	s.WriteString("# GRE between the two ends requires ESP in transport mode; racoon fills in the SAs.\n")
	fmt.Fprintf(&s, "spdadd %s %s gre -P out ipsec esp/transport//require;\n", m.local, m.remote)
	fmt.Fprintf(&s, "spdadd %s %s gre -P in ipsec esp/transport//require;\n", m.remote, m.local)
	m.add(SetkeyConf, 0o600, s.String())

	var c strings.Builder
	c.WriteString("# The policies first, then racoon, so that gre0's first packets wait for an SA:\n")
	c.WriteString("kldload -n ipsec\n")
	fmt.Fprintf(&c, "sysrc ipsec_enable=YES ipsec_file=%s\nservice ipsec start\n", SetkeyConf)
	fmt.Fprintf(&c, "sysrc racoon_enable=YES racoon_flags=\"-f %s\"\nservice racoon start\n", RacoonConf)
	m.freebsdDevice(&c, "gre0")
	m.add(CommandsSection, 0, c.String())
	return nil
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
