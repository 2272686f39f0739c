package config

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
)

// Change is one key whose value differs between two configs.
type Change struct {
	Key      string
	Old, New string // "(changed)" for secrets: never their values
}

func (c Change) String() string { return fmt.Sprintf("%s: %s -> %s", c.Key, c.Old, c.New) }

// Digests fingerprints the secrets Load read (static keys, PSKs), so a
// later Diff can tell whether they changed after the daemon has wiped its
// copies. A SHA-256 of high-entropy key material reveals nothing usable.
func (c *Config) Digests() map[string][32]byte {
	d := map[string][32]byte{}
	if c.Static.KeyIn != nil {
		d["static.key_in"] = sha256.Sum256(c.Static.KeyIn)
		d["static.key_out"] = sha256.Sum256(c.Static.KeyOut)
	}
	if c.IKE.LocalPSK != nil {
		d["ike.local_psk"] = sha256.Sum256(c.IKE.LocalPSK)
		d["ike.remote_psk"] = sha256.Sum256(c.IKE.RemotePSK)
	}
	return d
}

// Diff lists the keys whose values differ from old to next, in file order.
// Secrets are compared by the digests taken when old was loaded.
func Diff(old *Config, oldDigests map[string][32]byte, next *Config) []Change {
	var out []Change
	cmp := func(key string, a, b any) {
		sa, sb := fmt.Sprint(a), fmt.Sprint(b)
		if sa != sb {
			out = append(out, Change{Key: key, Old: sa, New: sb})
		}
	}
	cmp("tunnel.interface", old.Interface, next.Interface)
	cmp("tunnel.local", old.Local, next.Local)
	cmp("tunnel.remote", old.Remote, next.Remote)
	cmp("tunnel.addresses", old.Addresses, next.Addresses)
	cmp("tunnel.mtu", old.MTU, next.MTU)
	cmp("tunnel.mss_clamp", old.MSSClamp, next.MSSClamp)
	cmp("tunnel.gre_key", keyText(old.GREKey), keyText(next.GREKey))
	cmp("ipsec.keying", old.Keying, next.Keying)
	cmp("ipsec.replay_window", old.ReplayWindow, next.ReplayWindow)
	cmp("static.spi_out", old.Static.SPIOut, next.Static.SPIOut)
	cmp("static.spi_in", old.Static.SPIIn, next.Static.SPIIn)
	cmp("static.esp", old.Static.Transform, next.Static.Transform)
	cmp("static.seq_out", old.Static.SeqOut, next.Static.SeqOut)
	oi, ni := &old.IKE, &next.IKE
	cmp("ike.initiate", oi.Initiate, ni.Initiate)
	cmp("ike.local_psk_file", oi.LocalPSKFile, ni.LocalPSKFile)
	cmp("ike.remote_psk_file", oi.RemotePSKFile, ni.RemotePSKFile)
	cmp("ike.local_id", oi.LocalIDText, ni.LocalIDText)
	cmp("ike.remote_id", oi.RemoteIDText, ni.RemoteIDText)
	cmp("ike.proposals", strings.Join(oi.ProposalText, ","), strings.Join(ni.ProposalText, ","))
	cmp("ike.esp_proposals", strings.Join(oi.ESPProposalText, ","), strings.Join(ni.ESPProposalText, ","))
	cmp("ike.lifetime", oi.Lifetime, ni.Lifetime)
	cmp("ike.child_lifetime", oi.ChildLifetime, ni.ChildLifetime)
	cmp("ike.child_lifetime_bytes", oi.ChildLifetimeBytes, ni.ChildLifetimeBytes)
	cmp("ike.dpd", oi.DPD, ni.DPD)
	nd := next.Digests()
	for _, k := range []string{"static.key_in", "static.key_out", "ike.local_psk", "ike.remote_psk"} {
		if oldDigests[k] != nd[k] {
			out = append(out, Change{Key: k, Old: "(secret)", New: "(changed)"})
		}
	}
	cmp("control.socket", old.ControlSocket, next.ControlSocket)
	cmp("log.level", old.LogLevel, next.LogLevel)
	cmp("metrics.listen", addrText(old.MetricsListen.String()), addrText(next.MetricsListen.String()))
	cmp("daemon.user", old.User, next.User)
	return out
}

func keyText(k *uint32) string {
	if k == nil {
		return "none"
	}
	return fmt.Sprint(*k)
}

func addrText(s string) string {
	if s == "invalid AddrPort" {
		return "off"
	}
	return s
}

// Keys is the set of keys in cs.
func Keys(cs []Change) []string {
	var k []string
	for _, c := range cs {
		k = append(k, c.Key)
	}
	return slices.Compact(k)
}
