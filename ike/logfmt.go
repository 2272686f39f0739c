package ike

import (
	"net/netip"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// What a failed negotiation logs: both sides' offers in the syntax an
// operator writes in the configuration (strongSwan's), so the two can be
// compared at a glance.

// FormatProposals writes proposals in strongSwan syntax, comma separated:
// "aes256gcm16-prfsha384-ecp384, aes128-sha256-modp2048". Algorithms we do
// not implement are named as strongSwan names them, or by number.
func FormatProposals(ps []Proposal) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ", ")
}

// String is the proposal in strongSwan syntax, e.g. "aes256gcm16-ecp384-noesn".
func (p Proposal) String() string {
	var parts []string
	for _, t := range p.Transforms {
		parts = append(parts, transformName(t))
	}
	if len(parts) == 0 {
		return "(empty " + p.Protocol.String() + " proposal)"
	}
	return strings.Join(parts, "-")
}

var encrNames = map[uint16]string{3: "3des", 12: "aes", 13: "aesctr", 14: "aesccm8", 15: "aesccm12", 16: "aesccm16",
	18: "aesgcm8", 19: "aesgcm12", 20: "aesgcm16", 23: "camellia", 28: "chacha20poly1305"}
var integNames = map[uint16]string{1: "md5", 2: "sha1", 5: "aesxcbc", 12: "sha256", 13: "sha384", 14: "sha512"}
var prfNames = map[uint16]string{1: "prfmd5", 2: "prfsha1", 4: "prfaesxcbc", 5: "prfsha256", 6: "prfsha384", 7: "prfsha512"}
var allDHNames = map[uint16]string{1: "modp768", 2: "modp1024", 5: "modp1536", 14: "modp2048", 15: "modp3072",
	16: "modp4096", 17: "modp6144", 18: "modp8192", 19: "ecp256", 20: "ecp384", 21: "ecp521", 31: "curve25519", 32: "curve448"}

func transformName(t Transform) string {
	num := func(prefix string) string { return prefix + strconv.Itoa(int(t.ID)) }
	switch t.Type {
	case TransformENCR:
		name, ok := encrNames[t.ID]
		if !ok {
			name = num("encr")
		}
		if kl, ok := t.KeyLength(); ok {
			// strongSwan writes the key length after "aes", before the mode.
			if rest, found := strings.CutPrefix(name, "aes"); found {
				return "aes" + strconv.Itoa(int(kl)) + rest
			}
			return name + strconv.Itoa(int(kl))
		}
		return name
	case TransformPRF:
		if n, ok := prfNames[t.ID]; ok {
			return n
		}
		return num("prf")
	case TransformINTEG:
		if t.ID == 0 {
			return "nointeg"
		}
		if n, ok := integNames[t.ID]; ok {
			return n
		}
		return num("integ")
	case TransformDH:
		if t.ID == 0 {
			return "nodh"
		}
		if n, ok := allDHNames[t.ID]; ok {
			return n
		}
		return num("dh")
	case TransformESN:
		if t.ID == ESN_ON {
			return "esn"
		}
		return "noesn"
	}
	return "transform" + strconv.Itoa(int(t.Type)) + "." + strconv.Itoa(int(t.ID))
}

// String is the selector as strongSwan logs it: "198.18.0.1/32[gre]",
// "2001:db8::/64[tcp/80]", "198.18.0.1..198.18.0.9".
func (ts TrafficSelector) String() string {
	if ts.Raw != nil {
		return "TS(type " + strconv.Itoa(int(ts.TSType)) + ")"
	}
	var b strings.Builder
	b.WriteString(rangeString(ts.Start, ts.End))
	proto := ""
	switch ts.Protocol {
	case 0:
	case 1:
		proto = "icmp"
	case 6:
		proto = "tcp"
	case 17:
		proto = "udp"
	case 47:
		proto = "gre"
	case 58:
		proto = "ipv6-icmp"
	default:
		proto = strconv.Itoa(int(ts.Protocol))
	}
	ports := ""
	switch {
	case ts.StartPort == 0 && ts.EndPort == 0xffff:
	case ts.StartPort == ts.EndPort:
		ports = strconv.Itoa(int(ts.StartPort))
	default:
		ports = strconv.Itoa(int(ts.StartPort)) + "-" + strconv.Itoa(int(ts.EndPort))
	}
	if proto != "" || ports != "" {
		b.WriteByte('[')
		b.WriteString(proto)
		if ports != "" {
			b.WriteByte('/')
			b.WriteString(ports)
		}
		b.WriteByte(']')
	}
	return b.String()
}

func rangeString(start, end netip.Addr) string {
	if !start.IsValid() || !end.IsValid() {
		return "?"
	}
	for bits := 0; bits <= start.BitLen(); bits++ {
		p, err := start.Prefix(bits)
		if err != nil || p.Addr() != start {
			continue
		}
		if last := lastAddr(p); last == end {
			return p.String()
		}
	}
	return start.String() + ".." + end.String()
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// FormatSelectors writes a selector list, comma separated.
func FormatSelectors(ts []TrafficSelector) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}

// logProposalMismatch is the NO_PROPOSAL_CHOSEN diagnosis: what we
// accept next to what the peer offered (or chose).
func (e *Engine) logProposalMismatch(sa *ikeSA, m *Message, ours, theirs []Proposal) {
	e.log.Warn("no acceptable proposal", append(e.saFields(sa, m),
		zap.String("ours", FormatProposals(ours)), zap.String("theirs", FormatProposals(theirs)))...)
}
