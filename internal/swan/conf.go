package swan

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Seed proposals: gresec's seed configuration (OpenBSD iked / Cisco IOS,
// shared/seeds/000): AES-256-GCM, PRF HMAC-SHA-384, ECP-384, PFS ECP-384.
const (
	SeedIKEProposal = "aes256gcm16-prfsha384-ecp384"
	SeedESPProposal = "aes256gcm16-ecp384"
)

// Conn is a host-to-host GRE-over-IPsec connection in transport mode, as
// gresec configures it, for a swanctl.conf.
type Conn struct {
	Name              string // connection and CHILD_SA name; default "gre"
	Local, Remote     string // addresses
	LocalID, RemoteID string // IKE identities; default the addresses
	PSK               Key
	IKEProposal       string // default SeedIKEProposal
	ESPProposal       string // default SeedESPProposal
	// MOBIKE is the connection's mobike setting: "yes", "no", or "" for
	// strongSwan's default (yes), with which charon moves IKE to UDP 4500
	// after IKE_SA_INIT even without a NAT.
	MOBIKE string
	// Encap forces ESP in UDP (`encap = yes`): charon fakes the NAT
	// detection hash so that both ends encapsulate without a NAT.
	Encap bool
	// ConnExtra and ChildExtra are swanctl.conf lines added to the
	// connection and its child, e.g. "rekey_time = 0" or "dpd_delay = 2s".
	ConnExtra, ChildExtra string
	// Version is the IKE version, 1 or 2; 0 means 2.
	Version int
}

// SwanctlConf renders c as a complete swanctl.conf (connection and secret).
// The child installs no policies: the shim makes the SAs no-ops anyway, and
// the kernel here has no ESP to apply them to.
func (c Conn) SwanctlConf() string {
	name := c.Name
	if name == "" {
		name = "gre"
	}
	lid, rid := c.LocalID, c.RemoteID
	if lid == "" {
		lid = c.Local
	}
	if rid == "" {
		rid = c.Remote
	}
	ike, esp := c.IKEProposal, c.ESPProposal
	if ike == "" {
		ike = SeedIKEProposal
	}
	if esp == "" {
		esp = SeedESPProposal
	}
	version := c.Version
	if version == 0 {
		version = 2
	}
	var b strings.Builder
	fmt.Fprintf(&b, `connections {
  %[1]s {
    version = %[10]d
    local_addrs = %[2]s
    remote_addrs = %[3]s
    proposals = %[4]s
%[11]s%[8]s
    local {
      auth = psk
      id = %[5]s
    }
    remote {
      auth = psk
      id = %[6]s
    }
    children {
      %[1]s {
        mode = transport
        policies = no
        local_ts = dynamic[gre]
        remote_ts = dynamic[gre]
        esp_proposals = %[7]s
        start_action = none
%[9]s
      }
    }
  }
}
`, name, c.Local, c.Remote, ike, lid, rid, esp, indent(c.ConnExtra, "    "), indent(c.ChildExtra, "        "), version, c.natLines())
	// Hex, so that any PSK bytes survive swanctl.conf quoting.
	fmt.Fprintf(&b, "secrets {\n  ike-%s {\n    id-local = %s\n    id-remote = %s\n    secret = 0x%s\n  }\n}\n",
		name, lid, rid, hex.EncodeToString(c.PSK))
	return b.String()
}

// natLines are the connection's mobike and encap lines, each ending in a
// newline, or "" for strongSwan's defaults.
func (c Conn) natLines() string {
	var b strings.Builder
	if c.MOBIKE != "" {
		fmt.Fprintf(&b, "    mobike = %s\n", c.MOBIKE)
	}
	if c.Encap {
		b.WriteString("    encap = yes\n")
	}
	return b.String()
}

func indent(s, prefix string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = prefix + strings.TrimSpace(l)
	}
	return strings.Join(lines, "\n")
}
