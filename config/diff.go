package config

import (
	"crypto/sha256"
	"fmt"
	"math/bits"
	"strings"
)

// Field is one setting Diff compares. The constants are in file order,
// which is the order of Diff's result and of Fields.String.
type Field uint8

const (
	TunnelInterface Field = iota
	TunnelLocal
	TunnelRemote
	TunnelAddresses
	TunnelMTU
	TunnelMSSClamp
	TunnelGREKey
	TunnelKeepalive
	TunnelKeepaliveRetries
	TunnelEncap
	IPsecKeying
	IPsecMode
	IPsecReplayWindow
	IPsecUDPEncap
	IPsecUDPPort
	IPsecNATKeepalive
	StaticSPIOut
	StaticSPIIn
	StaticESP
	StaticSeqOut
	IKEInitiate
	IKELocalPSKFile
	IKERemotePSKFile
	IKELocalID
	IKERemoteID
	IKEProposals
	IKEESPProposals
	IKELifetime
	IKEChildLifetime
	IKEChildLifetimeBytes
	IKEDPD
	IKERetransmitTimeout
	IKERetransmitBase
	IKERetransmitTries
	IKELocalTS
	IKERemoteTS
	IKEFragmentation
	IKEFragmentSize
	StaticKeyIn  // compared by digest
	StaticKeyOut // compared by digest
	IKELocalPSK  // the contents of the PSK file, by digest
	IKERemotePSK // the contents of the PSK file, by digest
	ControlSocket
	LogLevel
	MetricsListen
	DaemonUser
	numFields
)

var fieldKeys = [numFields]string{
	TunnelInterface:        "tunnel.interface",
	TunnelLocal:            "tunnel.local",
	TunnelRemote:           "tunnel.remote",
	TunnelAddresses:        "tunnel.addresses",
	TunnelMTU:              "tunnel.mtu",
	TunnelMSSClamp:         "tunnel.mss_clamp",
	TunnelGREKey:           "tunnel.gre_key",
	TunnelKeepalive:        "tunnel.keepalive",
	TunnelKeepaliveRetries: "tunnel.keepalive_retries",
	TunnelEncap:            "tunnel.encap",
	IPsecKeying:            "ipsec.keying",
	IPsecMode:              "ipsec.mode",
	IPsecReplayWindow:      "ipsec.replay_window",
	IPsecUDPEncap:          "ipsec.udp_encap",
	IPsecUDPPort:           "ipsec.udp_port",
	IPsecNATKeepalive:      "ipsec.nat_keepalive",
	StaticSPIOut:           "static.spi_out",
	StaticSPIIn:            "static.spi_in",
	StaticESP:              "static.esp",
	StaticSeqOut:           "static.seq_out",
	IKEInitiate:            "ike.initiate",
	IKELocalPSKFile:        "ike.local_psk_file",
	IKERemotePSKFile:       "ike.remote_psk_file",
	IKELocalID:             "ike.local_id",
	IKERemoteID:            "ike.remote_id",
	IKEProposals:           "ike.proposals",
	IKEESPProposals:        "ike.esp_proposals",
	IKELifetime:            "ike.lifetime",
	IKEChildLifetime:       "ike.child_lifetime",
	IKEChildLifetimeBytes:  "ike.child_lifetime_bytes",
	IKEDPD:                 "ike.dpd",
	IKERetransmitTimeout:   "ike.retransmit_timeout",
	IKERetransmitBase:      "ike.retransmit_base",
	IKERetransmitTries:     "ike.retransmit_tries",
	IKELocalTS:             "ike.local_ts",
	IKERemoteTS:            "ike.remote_ts",
	IKEFragmentation:       "ike.fragmentation",
	IKEFragmentSize:        "ike.fragment_size",
	StaticKeyIn:            "static.key_in",
	StaticKeyOut:           "static.key_out",
	IKELocalPSK:            "ike.local_psk",
	IKERemotePSK:           "ike.remote_psk",
	ControlSocket:          "control.socket",
	LogLevel:               "log.level",
	MetricsListen:          "metrics.listen",
	DaemonUser:             "daemon.user",
}

// String is the key as the file spells it ("tunnel.mtu").
func (f Field) String() string {
	if f >= numFields {
		return fmt.Sprintf("Field(%d)", uint8(f))
	}
	return fieldKeys[f]
}

// Fields is a set of Field.
type Fields uint64

// FieldsOf is the set of fs.
func FieldsOf(fs ...Field) Fields {
	var s Fields
	for _, f := range fs {
		s |= 1 << f
	}
	return s
}

// Sections of the file, as sets.
var (
	StaticFields = FieldsOf(StaticSPIOut, StaticSPIIn, StaticESP, StaticSeqOut, StaticKeyIn, StaticKeyOut)
	IKEFields    = FieldsOf(IKEInitiate, IKELocalPSKFile, IKERemotePSKFile, IKELocalID, IKERemoteID,
		IKEProposals, IKEESPProposals, IKELifetime, IKEChildLifetime, IKEChildLifetimeBytes, IKEDPD,
		IKERetransmitTimeout, IKERetransmitBase, IKERetransmitTries, IKELocalTS, IKERemoteTS, IKELocalPSK, IKERemotePSK,
		IKEFragmentation, IKEFragmentSize)
)

// Has tells whether f is in s.
func (s Fields) Has(f Field) bool { return s&(1<<f) != 0 }

// Any tells whether s and o have a field in common.
func (s Fields) Any(o Fields) bool { return s&o != 0 }

// List is the fields of s in file order.
func (s Fields) List() []Field {
	var out []Field
	for s != 0 {
		f := Field(bits.TrailingZeros64(uint64(s)))
		out = append(out, f)
		s &^= 1 << f
	}
	return out
}

// String is the keys of s in file order, separated by ", ".
func (s Fields) String() string {
	var keys []string
	for _, f := range s.List() {
		keys = append(keys, f.String())
	}
	return strings.Join(keys, ", ")
}

// Change is one setting whose value differs between two configs.
type Change struct {
	Field    Field
	Old, New string // "(secret)" and "(changed)" for secrets: never their values
}

// Key is the changed key as the file spells it, for logs.
func (c Change) Key() string { return c.Field.String() }

func (c Change) String() string { return fmt.Sprintf("%s: %s -> %s", c.Field, c.Old, c.New) }

// Changed is the set of fields in cs.
func Changed(cs []Change) Fields {
	var s Fields
	for _, c := range cs {
		s |= 1 << c.Field
	}
	return s
}

// SecretDigests are SHA-256 digests of a config's secrets, by field.
type SecretDigests map[Field][32]byte

// Digests fingerprints the secrets Load read (static keys, PSKs), so a
// later Diff can tell whether they changed after the daemon has wiped its
// copies. A SHA-256 of high-entropy key material reveals nothing usable.
func (c *Config) Digests() SecretDigests {
	d := SecretDigests{}
	if c.Static.KeyIn != nil {
		d[StaticKeyIn] = sha256.Sum256(c.Static.KeyIn)
		d[StaticKeyOut] = sha256.Sum256(c.Static.KeyOut)
	}
	if c.IKE.LocalPSK != nil {
		d[IKELocalPSK] = sha256.Sum256(c.IKE.LocalPSK)
		d[IKERemotePSK] = sha256.Sum256(c.IKE.RemotePSK)
	}
	return d
}

// Diff lists the settings whose values differ from old to next, in file
// order. Secrets are compared by the digests taken when old was loaded.
func Diff(old *Config, oldDigests SecretDigests, next *Config) []Change {
	var out []Change
	cmp := func(f Field, a, b any) {
		sa, sb := fmt.Sprint(a), fmt.Sprint(b)
		if sa != sb {
			out = append(out, Change{Field: f, Old: sa, New: sb})
		}
	}
	cmp(TunnelInterface, old.Interface, next.Interface)
	cmp(TunnelLocal, old.Local, next.Local)
	cmp(TunnelRemote, old.Remote, next.Remote)
	cmp(TunnelAddresses, old.Addresses, next.Addresses)
	cmp(TunnelMTU, old.MTU, next.MTU)
	cmp(TunnelMSSClamp, old.MSSClamp, next.MSSClamp)
	cmp(TunnelGREKey, keyText(old.GREKey), keyText(next.GREKey))
	cmp(TunnelKeepalive, old.Keepalive, next.Keepalive)
	cmp(TunnelKeepaliveRetries, old.KeepaliveRetries, next.KeepaliveRetries)
	cmp(TunnelEncap, old.Encap, next.Encap)
	cmp(IPsecKeying, old.Keying, next.Keying)
	cmp(IPsecMode, old.Mode, next.Mode)
	cmp(IPsecReplayWindow, old.ReplayWindow, next.ReplayWindow)
	cmp(IPsecUDPEncap, old.UDPEncap, next.UDPEncap)
	cmp(IPsecUDPPort, old.UDPPort, next.UDPPort)
	cmp(IPsecNATKeepalive, old.NATKeepalive, next.NATKeepalive)
	cmp(StaticSPIOut, old.Static.SPIOut, next.Static.SPIOut)
	cmp(StaticSPIIn, old.Static.SPIIn, next.Static.SPIIn)
	cmp(StaticESP, old.Static.Transform, next.Static.Transform)
	cmp(StaticSeqOut, old.Static.SeqOut, next.Static.SeqOut)
	oi, ni := &old.IKE, &next.IKE
	cmp(IKEInitiate, oi.Initiate, ni.Initiate)
	cmp(IKELocalPSKFile, oi.LocalPSKFile, ni.LocalPSKFile)
	cmp(IKERemotePSKFile, oi.RemotePSKFile, ni.RemotePSKFile)
	cmp(IKELocalID, oi.LocalIDText, ni.LocalIDText)
	cmp(IKERemoteID, oi.RemoteIDText, ni.RemoteIDText)
	cmp(IKEProposals, strings.Join(oi.ProposalText, ","), strings.Join(ni.ProposalText, ","))
	cmp(IKEESPProposals, strings.Join(oi.ESPProposalText, ","), strings.Join(ni.ESPProposalText, ","))
	cmp(IKELifetime, oi.Lifetime, ni.Lifetime)
	cmp(IKEChildLifetime, oi.ChildLifetime, ni.ChildLifetime)
	cmp(IKEChildLifetimeBytes, oi.ChildLifetimeBytes, ni.ChildLifetimeBytes)
	cmp(IKEDPD, oi.DPD, ni.DPD)
	cmp(IKERetransmitTimeout, oi.RetransmitTimeout, ni.RetransmitTimeout)
	cmp(IKERetransmitBase, oi.RetransmitBase, ni.RetransmitBase)
	cmp(IKERetransmitTries, oi.RetransmitTries, ni.RetransmitTries)
	cmp(IKELocalTS, oi.LocalTS, ni.LocalTS)
	cmp(IKERemoteTS, oi.RemoteTS, ni.RemoteTS)
	cmp(IKEFragmentation, oi.Fragmentation, ni.Fragmentation)
	cmp(IKEFragmentSize, oi.FragmentSize, ni.FragmentSize)
	nd := next.Digests()
	for _, f := range []Field{StaticKeyIn, StaticKeyOut, IKELocalPSK, IKERemotePSK} {
		if oldDigests[f] != nd[f] {
			out = append(out, Change{Field: f, Old: "(secret)", New: "(changed)"})
		}
	}
	cmp(ControlSocket, old.ControlSocket, next.ControlSocket)
	cmp(LogLevel, old.LogLevel, next.LogLevel)
	cmp(MetricsListen, addrText(old.MetricsListen.String()), addrText(next.MetricsListen.String()))
	cmp(DaemonUser, old.User, next.User)
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
