package ike

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Suite is the algorithm set of one negotiated SA, read off a selected
// proposal that has one transform of each type.
type Suite struct {
	Encr    uint16 // ENCR_AES_GCM_16, ENCR_CHACHA20_POLY1305 or ENCR_AES_CBC
	KeyBits int    // 128, 192 or 256 (256 for ChaCha20)
	Integ   uint16 // AUTH_*: with ENCR_AES_CBC only
	PRF     PRF    // IKE only
	DH      DHGroup
	ESN     bool // ESP only
}

// AEAD reports whether the cipher authenticates (GCM, ChaCha20-Poly1305).
func (s Suite) AEAD() bool { return s.Encr != ENCR_AES_CBC }

// KeyLen is the length of one direction's encryption key material,
// including the 4-byte salt of the AEAD ciphers (RFC 5282 §7.1, RFC 4106
// §8.1, RFC 7634 §2).
func (s Suite) KeyLen() int {
	if s.AEAD() {
		return s.KeyBits/8 + gcmSaltLen
	}
	return s.KeyBits / 8
}

// IntegKeyLen is the length of one direction's integrity key: the HMAC's
// output size (RFC 2404, RFC 4868 §2.1); 0 for AEAD ciphers.
func (s Suite) IntegKeyLen() int { return integAlgs[s.Integ].keyLen }

// ICVLen is the integrity check value's length: 16 for the AEAD ciphers,
// the truncated HMAC for the others.
func (s Suite) ICVLen() int {
	if s.AEAD() {
		return gcmICVLen
	}
	return integAlgs[s.Integ].icvLen
}

// EncrName is the cipher's strongSwan name: "aes256gcm16", "aes128",
// "chacha20poly1305".
func (s Suite) EncrName() string {
	switch s.Encr {
	case ENCR_AES_GCM_16:
		return "aes" + strconv.Itoa(s.KeyBits) + "gcm16"
	case ENCR_CHACHA20_POLY1305:
		return "chacha20poly1305"
	}
	return "aes" + strconv.Itoa(s.KeyBits)
}

// IntegName is the integrity algorithm's strongSwan name ("sha256"), or
// "" for AEAD ciphers.
func (s Suite) IntegName() string { return integAlgs[s.Integ].name }

// Transform names an ESP SA's cipher and integrity, as the data plane
// does: "aes256gcm16", "aes128-sha1", "chacha20poly1305".
func (s Suite) Transform() string {
	if n := s.IntegName(); n != "" {
		return s.EncrName() + "-" + n
	}
	return s.EncrName()
}

// String is the strongSwan spelling, e.g. "aes256gcm16-prfsha384-ecp384".
func (s Suite) String() string {
	parts := []string{s.Transform()}
	if s.PRF != 0 {
		parts = append(parts, prfNames[uint16(s.PRF)])
	}
	if name, ok := dhNames[s.DH]; ok {
		parts = append(parts, name)
	}
	if s.ESN {
		parts = append(parts, "esn")
	}
	return strings.Join(parts, "-")
}

type integAlg struct {
	name           string
	keyLen, icvLen int
	prf            PRF // the PRF strongSwan pairs with it when none is named
}

var integAlgs = map[uint16]integAlg{
	AUTH_HMAC_SHA1_96:      {"sha1", 20, 12, PRFSHA1},
	AUTH_HMAC_SHA2_256_128: {"sha256", 32, 16, PRFSHA256},
	AUTH_HMAC_SHA2_384_192: {"sha384", 48, 24, PRFSHA384},
	AUTH_HMAC_SHA2_512_256: {"sha512", 64, 32, PRFSHA512},
}

var dhNames = map[DHGroup]string{MODP2048: "modp2048", MODP3072: "modp3072", MODP4096: "modp4096",
	ECP256: "ecp256", ECP384: "ecp384", ECP521: "ecp521", Curve25519: "curve25519"}

// SuiteOf reads the algorithms of a selected proposal (one transform per
// type) and checks that we implement them.
func SuiteOf(p Proposal) (Suite, error) {
	var s Suite
	seen := map[TransformType]bool{}
	for _, t := range p.Transforms {
		if seen[t.Type] {
			return Suite{}, fmt.Errorf("ike: proposal has two %v transforms", t.Type)
		}
		seen[t.Type] = true
		switch t.Type {
		case TransformENCR:
			kl, _ := t.KeyLength()
			switch {
			case (t.ID == ENCR_AES_GCM_16 || t.ID == ENCR_AES_CBC) && (kl == 128 || kl == 192 || kl == 256):
			case t.ID == ENCR_CHACHA20_POLY1305 && kl == 0: // fixed 256-bit key, no attribute (RFC 7634 §3)
				kl = 256
			default:
				return Suite{}, fmt.Errorf("ike: unsupported encryption %d/%d", t.ID, kl)
			}
			s.Encr, s.KeyBits = t.ID, int(kl)
		case TransformPRF:
			if !PRF(t.ID).Supported() {
				return Suite{}, fmt.Errorf("ike: unsupported %v", PRF(t.ID))
			}
			s.PRF = PRF(t.ID)
		case TransformINTEG:
			if _, ok := integAlgs[t.ID]; !ok && t.ID != AUTH_NONE {
				return Suite{}, fmt.Errorf("ike: unsupported integrity algorithm %d", t.ID)
			}
			s.Integ = t.ID
		case TransformDH:
			g := DHGroup(t.ID)
			if g != DHNone && !g.Supported() {
				return Suite{}, fmt.Errorf("ike: unsupported DH group %v", g)
			}
			s.DH = g
		case TransformESN:
			s.ESN = t.ID == ESN_ON
		default:
			return Suite{}, fmt.Errorf("ike: unknown transform type %v", t.Type)
		}
	}
	if s.Encr == 0 {
		return Suite{}, fmt.Errorf("ike: proposal without encryption")
	}
	// AEAD: integrity is NONE or absent (RFC 5282 §8); others need one.
	if s.AEAD() != (s.Integ == AUTH_NONE) {
		return Suite{}, fmt.Errorf("ike: %s with integrity algorithm %d", s.EncrName(), s.Integ)
	}
	if p.Protocol == ProtoIKE && (s.PRF == 0 || s.DH == DHNone) {
		return Suite{}, fmt.Errorf("ike: IKE proposal needs a PRF and a DH group")
	}
	return s, nil
}

// ParseProposals parses strongSwan proposal syntax: proposals separated by
// commas, algorithms by dashes, several algorithms of one type allowed in
// one proposal ("aes256gcm16-aes128gcm16-prfsha384-ecp384-ecp256"). As in
// strongSwan: for ESP a DH group means PFS on rekeying, and ESN defaults
// to "noesn"; in an IKE proposal "sha256" names the integrity algorithm of
// a non-AEAD cipher and, when no "prf..." is given, the PRF too — with an
// AEAD cipher, which has no integrity algorithm, it names only the PRF.
func ParseProposals(proto ProtocolID, s string) ([]Proposal, error) {
	if proto != ProtoIKE && proto != ProtoESP {
		return nil, fmt.Errorf("ike: proposals for %v are not supported", proto)
	}
	var out []Proposal
	for _, ps := range strings.Split(s, ",") {
		ps = strings.TrimSpace(ps)
		if ps == "" {
			continue
		}
		p, err := parseProposal(proto, ps)
		if err != nil {
			return nil, err
		}
		p.Num = uint8(len(out) + 1)
		out = append(out, p)
		if len(out) > maxProposals {
			return nil, fmt.Errorf("ike: more than %d proposals", maxProposals)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ike: no proposals in %q", s)
	}
	return out, nil
}

// Numbered returns a copy of ps numbered 1, 2, ... as RFC 7296 §3.3.1
// requires of a proposal list (lists parsed one string at a time all
// start at 1, and a peer like strongSwan then sees only one proposal).
func Numbered(ps []Proposal) []Proposal {
	out := slices.Clone(ps)
	for i := range out {
		out[i].Num = uint8(i + 1)
	}
	return out
}

// DataPlaneESP keeps of ESP proposals only the transforms that some
// supported suite uses (supports says which suites the data plane
// implements): never negotiate what it does not do. It returns the
// proposals left (renumbered; a proposal left without a cipher goes) and
// the names of the transforms removed.
func DataPlaneESP(ps []Proposal, supports func(Suite) bool) (kept []Proposal, removed []string) {
	for _, p := range ps {
		byType := map[TransformType][]Transform{}
		for _, t := range p.Transforms {
			byType[t.Type] = append(byType[t.Type], t)
		}
		integs := byType[TransformINTEG]
		if len(integs) == 0 {
			integs = []Transform{{Type: TransformINTEG, ID: AUTH_NONE}}
		}
		esns := byType[TransformESN]
		if len(esns) == 0 {
			esns = []Transform{{Type: TransformESN, ID: ESN_NONE}}
		}
		used := map[int]bool{} // indexes into p.Transforms
		index := func(t Transform) int {
			return slices.IndexFunc(p.Transforms, func(x Transform) bool { return sameTransform(x, t) })
		}
		for _, en := range byType[TransformENCR] {
			for _, in := range integs {
				for _, es := range esns {
					s, err := SuiteOf(Proposal{Protocol: ProtoESP, Transforms: []Transform{en, in, es}})
					if err == nil && supports(s) {
						used[index(en)], used[index(in)], used[index(es)] = true, true, true
					}
				}
			}
		}
		q := p
		q.Transforms = nil
		for i, t := range p.Transforms {
			switch {
			case used[i], t.Type == TransformDH:
				q.Transforms = append(q.Transforms, t)
			default:
				removed = append(removed, transformName(t))
			}
		}
		if slices.ContainsFunc(q.Transforms, func(t Transform) bool { return t.Type == TransformENCR }) {
			kept = append(kept, q)
		}
	}
	return Numbered(kept), removed
}

// MustParseProposals is ParseProposals for constants.
func MustParseProposals(proto ProtocolID, s string) []Proposal {
	p, err := ParseProposals(proto, s)
	if err != nil {
		panic(err)
	}
	return p
}

func encrTransform(id, bits uint16) Transform {
	t := Transform{Type: TransformENCR, ID: id}
	if bits != 0 {
		t.Attributes = []Attribute{{Type: AttrKeyLength, TV: true, Value: bits}}
	}
	return t
}

// Algorithm names of strongSwan's proposal syntax.
var (
	encrTokens = map[string]Transform{
		"aes128gcm16": encrTransform(ENCR_AES_GCM_16, 128), "aes128gcm128": encrTransform(ENCR_AES_GCM_16, 128),
		"aes192gcm16": encrTransform(ENCR_AES_GCM_16, 192), "aes192gcm128": encrTransform(ENCR_AES_GCM_16, 192),
		"aes256gcm16": encrTransform(ENCR_AES_GCM_16, 256), "aes256gcm128": encrTransform(ENCR_AES_GCM_16, 256),
		"chacha20poly1305": encrTransform(ENCR_CHACHA20_POLY1305, 0),
		"aes128":           encrTransform(ENCR_AES_CBC, 128), "aes": encrTransform(ENCR_AES_CBC, 128),
		"aes192": encrTransform(ENCR_AES_CBC, 192), "aes256": encrTransform(ENCR_AES_CBC, 256),
	}
	integTokens = map[string]uint16{"sha1": AUTH_HMAC_SHA1_96, "sha": AUTH_HMAC_SHA1_96,
		"sha256": AUTH_HMAC_SHA2_256_128, "sha2_256": AUTH_HMAC_SHA2_256_128,
		"sha384": AUTH_HMAC_SHA2_384_192, "sha2_384": AUTH_HMAC_SHA2_384_192,
		"sha512": AUTH_HMAC_SHA2_512_256, "sha2_512": AUTH_HMAC_SHA2_512_256}
	prfTokens = map[string]PRF{"prfsha1": PRFSHA1, "prfsha256": PRFSHA256, "prfsha384": PRFSHA384, "prfsha512": PRFSHA512}
	dhTokens  = map[string]DHGroup{"modp2048": MODP2048, "modp3072": MODP3072, "modp4096": MODP4096,
		"ecp256": ECP256, "ecp384": ECP384, "ecp521": ECP521, "curve25519": Curve25519, "x25519": Curve25519}
)

// parseProposal reads one proposal for protocol proto in strongSwan's
// syntax ("aes256gcm16-prfsha384-ecp384").
func parseProposal(proto ProtocolID, s string) (Proposal, error) {
	p := Proposal{Protocol: proto}
	l, err := proposalTokens(proto, s)
	if err != nil {
		return p, err
	}
	if err := l.settleIntegrity(proto, s); err != nil {
		return p, err
	}
	if proto == ProtoIKE && (len(l.prf) == 0 || len(l.dh) == 0) {
		return p, fmt.Errorf("ike: IKE proposal %q needs a PRF and a DH group", s)
	}
	if proto == ProtoESP && len(l.esn) == 0 {
		l.esn = []Transform{{Type: TransformESN, ID: ESN_NONE}}
	}
	// RFC 7296 §3.3.3 lists transforms by type; peers do not care about the
	// order, but a fixed one keeps our messages comparable to strongSwan's.
	p.Transforms = slices.Concat(l.encr, l.integ, l.prf, l.dh, l.esn)
	return p, nil
}

// transformLists are a proposal's transforms by type, as parsed.
type transformLists struct {
	encr, integ, prf, dh, esn []Transform
}

// proposalTokens reads the "-"-separated algorithm names of the proposal
// s for protocol proto.
func proposalTokens(proto ProtocolID, s string) (transformLists, error) {
	var l transformLists
	for _, tok := range strings.Split(strings.ToLower(s), "-") {
		if t, ok := encrTokens[tok]; ok {
			l.encr = append(l.encr, t)
			continue
		}
		if id, ok := integTokens[tok]; ok {
			l.integ = append(l.integ, Transform{Type: TransformINTEG, ID: id})
			continue
		}
		if f, ok := prfTokens[tok]; ok {
			if proto != ProtoIKE {
				return l, fmt.Errorf("ike: %q in an ESP proposal", tok)
			}
			l.prf = append(l.prf, Transform{Type: TransformPRF, ID: uint16(f)})
			continue
		}
		if g, ok := dhTokens[tok]; ok {
			l.dh = append(l.dh, Transform{Type: TransformDH, ID: uint16(g)})
			continue
		}
		switch tok {
		case "esn", "noesn":
			if proto != ProtoESP {
				return l, fmt.Errorf("ike: %q in an IKE proposal", tok)
			}
			id := ESN_NONE
			if tok == "esn" {
				id = ESN_ON
			}
			l.esn = append(l.esn, Transform{Type: TransformESN, ID: id})
		default:
			return l, fmt.Errorf("ike: unknown or unsupported algorithm %q in %q", tok, s)
		}
	}
	if len(l.encr) == 0 {
		return l, fmt.Errorf("ike: proposal %q has no encryption algorithm", s)
	}
	return l, nil
}

// settleIntegrity checks the ciphers against the integrity algorithms: an
// AEAD takes none (in an IKE proposal "sha384" then names the PRF), the
// others need one; an IKE proposal without a PRF takes the integrity
// algorithms' PRFs.
func (l *transformLists) settleIntegrity(proto ProtocolID, s string) error {
	aead := l.encr[0].ID != ENCR_AES_CBC
	for _, t := range l.encr {
		if (t.ID != ENCR_AES_CBC) != aead {
			// strongSwan would split it in two; say so instead.
			return fmt.Errorf("ike: proposal %q mixes AEAD and non-AEAD ciphers: write them as two proposals", s)
		}
	}
	switch {
	case aead && proto == ProtoIKE:
		// No integrity with an AEAD: "sha384" names the PRF.
		for _, t := range l.integ {
			l.prf = append(l.prf, Transform{Type: TransformPRF, ID: uint16(integAlgs[t.ID].prf)})
		}
		l.integ = nil
	case aead && len(l.integ) > 0:
		return fmt.Errorf("ike: proposal %q gives an integrity algorithm to an AEAD cipher", s)
	case !aead && len(l.integ) == 0:
		return fmt.Errorf("ike: proposal %q needs an integrity algorithm (e.g. sha256) for %s", s, s[:strings.IndexByte(s+"-", '-')])
	case !aead && proto == ProtoIKE && len(l.prf) == 0:
		for _, t := range l.integ {
			l.prf = append(l.prf, Transform{Type: TransformPRF, ID: uint16(integAlgs[t.ID].prf)})
		}
	}
	return nil
}

// WithoutDH returns proposals with their DH transforms removed: the form a
// CHILD_SA proposal takes in IKE_AUTH, where no key exchange happens (the
// group then applies to rekeying only).
func WithoutDH(ps []Proposal) []Proposal {
	out := make([]Proposal, len(ps))
	for i, p := range ps {
		q := p
		q.Transforms = nil
		for _, t := range p.Transforms {
			if t.Type != TransformDH {
				q.Transforms = append(q.Transforms, t)
			}
		}
		out[i] = q
	}
	return out
}

// DHGroups returns the DH groups of ps in preference order, without
// repeats: the first is what an initiator guesses for its KE payload.
func DHGroups(ps []Proposal) []DHGroup {
	var out []DHGroup
	seen := map[DHGroup]bool{}
	for _, p := range ps {
		for _, t := range p.Transforms {
			if g := DHGroup(t.ID); t.Type == TransformDH && g != DHNone && !seen[g] {
				seen[g] = true
				out = append(out, g)
			}
		}
	}
	return out
}

func sameTransform(a, b Transform) bool {
	if a.Type != b.Type || a.ID != b.ID {
		return false
	}
	ka, oka := a.KeyLength()
	kb, okb := b.KeyLength()
	return oka == okb && ka == kb
}

// SelectProposal picks what a responder accepts. Like strongSwan with its
// default charon.prefer_configured_proposals = yes, our own order wins:
// for each of our proposals in turn, the first of theirs that matches is
// taken, and within it, for each transform type, the first of our
// algorithms that they also offer. (RFC 7296 leaves the choice to the
// responder; preferring our order means our configured strongest suite is
// used whatever order a peer lists.)
//
// A match needs the same protocol and the same set of transform types; a
// missing ESN transform counts as "no ESN", and a DH transform with ID 0
// (NONE) as no DH. Unless withDH, DH transforms are ignored on both sides
// (the CHILD_SA of IKE_AUTH). The result has one transform per type and
// carries their proposal number and SPI.
func SelectProposal(ours, theirs []Proposal, withDH bool) (Proposal, bool) {
	for _, o := range ours {
		for _, t := range theirs {
			if p, ok := matchProposal(o, t, withDH); ok {
				return p, true
			}
		}
	}
	return Proposal{}, false
}

var transformOrder = []TransformType{TransformENCR, TransformPRF, TransformINTEG, TransformDH, TransformESN}

func matchProposal(o, t Proposal, withDH bool) (Proposal, bool) {
	if o.Protocol != t.Protocol {
		return Proposal{}, false
	}
	byType := func(p Proposal) map[TransformType][]Transform {
		m := map[TransformType][]Transform{}
		for _, x := range p.Transforms {
			if x.Type == TransformDH && (!withDH || x.ID == uint16(DHNone)) {
				continue
			}
			if x.Type == TransformINTEG && x.ID == 0 {
				continue // NONE with an AEAD
			}
			m[x.Type] = append(m[x.Type], x)
		}
		if p.Protocol == ProtoESP && len(m[TransformESN]) == 0 {
			m[TransformESN] = []Transform{{Type: TransformESN, ID: ESN_NONE}}
		}
		return m
	}
	om, tm := byType(o), byType(t)
	if len(om) != len(tm) {
		return Proposal{}, false
	}
	sel := Proposal{Num: t.Num, Protocol: t.Protocol, SPI: t.SPI}
	for _, typ := range transformOrder {
		if (len(om[typ]) == 0) != (len(tm[typ]) == 0) {
			return Proposal{}, false
		}
		found := false
	search:
		for _, a := range om[typ] {
			for _, b := range tm[typ] {
				if sameTransform(a, b) {
					sel.Transforms = append(sel.Transforms, a)
					found = true
					break search
				}
			}
		}
		if len(om[typ]) > 0 && !found {
			return Proposal{}, false
		}
		delete(om, typ)
		delete(tm, typ)
	}
	if len(om) != 0 || len(tm) != 0 {
		return Proposal{}, false // a transform type we do not know
	}
	return sel, true
}

// Suites lists every suite a proposal allows (one transform of each type,
// DH left out), for sizing and support checks.
func Suites(p Proposal) []Suite {
	out := []Suite{{}}
	for _, typ := range []TransformType{TransformENCR, TransformINTEG, TransformPRF, TransformESN} {
		var ts []Transform
		for _, t := range p.Transforms {
			if t.Type == typ {
				ts = append(ts, t)
			}
		}
		if len(ts) == 0 {
			continue
		}
		var next []Suite
		for _, s := range out {
			for _, t := range ts {
				next = append(next, withTransform(s, t))
			}
		}
		out = next
	}
	keep := out[:0]
	for _, s := range out {
		if s.Encr != 0 && s.AEAD() == (s.Integ == AUTH_NONE) {
			keep = append(keep, s)
		}
	}
	return keep
}

func withTransform(s Suite, t Transform) Suite {
	switch t.Type {
	case TransformENCR:
		kl, _ := t.KeyLength()
		if t.ID == ENCR_CHACHA20_POLY1305 && kl == 0 {
			kl = 256
		}
		s.Encr, s.KeyBits = t.ID, int(kl)
	case TransformINTEG:
		s.Integ = t.ID
	case TransformPRF:
		s.PRF = PRF(t.ID)
	case TransformESN:
		s.ESN = t.ID == ESN_ON
	}
	return s
}
