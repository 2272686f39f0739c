package peerconf

import (
	"fmt"
	"strings"

	"github.com/gresec/gresec/config"
)

// SwanctlFile is the section holding swanctl.conf (connections and
// secrets); swanctl --load-all reads every file in conf.d.
const SwanctlFile = "/etc/swanctl/conf.d/gresec.conf"

// CommandsSection holds shell commands for the peer (Linux device
// set-up, MSS clamp, OpenBSD start-up).
const CommandsSection = "commands (as root)"

// strongswan is a swanctl.conf for strongSwan 5.9 on Linux, plus the
// kernel GRE device it protects.
func (m *mirror) strongswan() error {
	if err := m.needIKE("strongSwan negotiates ESP keys with IKEv2", "linux"); err != nil {
		return err
	}
	k := &m.c.IKE
	ikeProps, err := swanProposals(k.Proposals)
	if err != nil {
		return err
	}
	espProps, err := swanProposals(k.ESPProposals)
	if err != nil {
		return err
	}
	lid, err := swanID(k.RemoteIDText)
	if err != nil {
		return err
	}
	rid, err := swanID(k.LocalIDText)
	if err != nil {
		return err
	}
	m.header("strongSwan (swanctl)")

	var b strings.Builder
	b.WriteString("connections {\n  gresec {\n    version = 2\n")
	fmt.Fprintf(&b, "    local_addrs = %s\n    remote_addrs = %s\n", m.local, m.remote)
	fmt.Fprintf(&b, "    proposals = %s\n", ikeProps)
	m.swanEncap(&b)
	fmt.Fprintf(&b, "    rekey_time = %ds\n", seconds(k.Lifetime))
	if k.DPD > 0 {
		fmt.Fprintf(&b, "    dpd_delay = %ds\n", seconds(k.DPD))
	}
	if !k.Initiate {
		b.WriteString("    # This end initiates (gresec has initiate = false): keep trying.\n")
		b.WriteString("    keyingtries = 0\n")
	}
	fmt.Fprintf(&b, "    local {\n      auth = psk\n      id = %s\n    }\n", lid)
	fmt.Fprintf(&b, "    remote {\n      auth = psk\n      id = %s\n    }\n", rid)
	b.WriteString("    children {\n      gre {\n")
	m.swanChild(&b)
	fmt.Fprintf(&b, "        esp_proposals = %s\n", espProps)
	child := seconds(k.ChildLifetime)
	// life_time is strongSwan's default (rekey_time + 10%), written out so
	// that the hard limit is visible next to the rekey time.
	fmt.Fprintf(&b, "        rekey_time = %ds\n        life_time = %ds\n", child, child+child/10)
	if k.ChildLifetimeBytes > 0 {
		fmt.Fprintf(&b, "        rekey_bytes = %d\n", k.ChildLifetimeBytes)
	}
	fmt.Fprintf(&b, "        # Anti-replay window as gresec's (strongSwan's default is 32).\n        replay_window = %d\n", m.c.ReplayWindow)
	if k.Initiate {
		b.WriteString("        # gresec initiates (initiate = true); this end answers.\n")
		b.WriteString("        start_action = none\n")
		if k.DPD > 0 {
			b.WriteString("        dpd_action = clear\n")
		}
	} else {
		b.WriteString("        start_action = start\n")
		if k.DPD > 0 {
			b.WriteString("        dpd_action = restart\n")
		}
	}
	b.WriteString("      }\n    }\n  }\n}\n")

	if err := m.swanSecrets(&b, lid, rid); err != nil {
		return err
	}
	m.add(SwanctlFile, 0o600, b.String())

	var c strings.Builder
	c.WriteString("# Load the connection: swanctl --load-all\n")
	m.deviceLines(&c)
	m.mssClampLines(&c)
	m.add(CommandsSection, 0, c.String())
	return nil
}

// swanSecrets writes the PSKs. One key: one secret for both identities.
// Two keys (local_psk_file, remote_psk_file): strongSwan signs with the
// secret whose identities best match the OTHER side first, then its own
// (credential_manager.c get_shared), and verifies with every secret that
// matches either. So the key this end signs with (our remote key) is
// bound to gresec's identity, and the one gresec signs with (our local
// key) to this end's identity. strongSwan then also accepts gresec
// authenticating with this end's key: it cannot hold a key for one
// direction only.
func (m *mirror) swanSecrets(b *strings.Builder, lid, rid string) error {
	b.WriteString("secrets {\n")
	if !m.asymmetricPSK() {
		v, err := m.pskValue(m.peerLocalPSK())
		if err != nil {
			return err
		}
		fmt.Fprintf(b, "  ike-gresec {\n    id-1 = %s\n    id-2 = %s\n    secret = %s\n  }\n}\n", lid, rid, v)
		return nil
	}
	own, err := m.pskValue(m.peerLocalPSK())
	if err != nil {
		return err
	}
	theirs, err := m.pskValue(m.peerRemotePSK())
	if err != nil {
		return err
	}
	b.WriteString("  # Two keys. strongSwan signs with the secret bound to the other side's id\n")
	b.WriteString("  # (gresec's: gresec's remote key) and verifies with either.\n")
	fmt.Fprintf(b, "  ike-gresec-sign {\n    id = %s\n    secret = %s\n  }\n", rid, own)
	fmt.Fprintf(b, "  ike-gresec-verify {\n    id = %s\n    secret = %s\n  }\n}\n", lid, theirs)
	return nil
}

// swanID quotes an identity for swanctl.conf: "@#..." would otherwise
// start a comment. gresec reads identities with strongSwan's rules
// (ike.ParseID), so the text carries over unchanged.
func swanID(text string) (string, error) {
	if _, err := idOf(text); err != nil {
		return "", err
	}
	if strings.ContainsAny(text, "\"\\\n\r") {
		return "", fmt.Errorf("peerconf: identity %q cannot be written in swanctl.conf (quote, backslash or newline)", text)
	}
	return `"` + text + `"`, nil
}

// needIKE refuses a keying the peer's IKE configuration cannot carry.
func (m *mirror) needIKE(why, instead string) error {
	switch m.c.Keying {
	case config.KeyingIKEv2:
		return nil
	case config.KeyingStatic:
		return fmt.Errorf("peerconf: %s uses ipsec.keying = \"static\", but %s; use --for %s (ip xfrm with the same keys)", m.c.Path, why, instead)
	default:
		return fmt.Errorf("peerconf: %s uses ipsec.keying = \"none\" (plain GRE), but %s; use --for %s", m.c.Path, why, instead)
	}
}
