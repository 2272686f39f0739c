package ikev1

import (
	"fmt"
	"strings"
	"time"

	"github.com/gresec/gresec/ike"
)

// Phase1Suite is a negotiated ISAKMP SA's algorithms. IKEv1 has no PRF of
// its own choosing: the PRF is the HMAC of the negotiated hash.
type Phase1Suite struct {
	KeyBits  int // AES-CBC key
	PRF      ike.PRF
	DH       ike.DHGroup
	Lifetime time.Duration
}

// String is the strongSwan spelling, e.g. "aes128-sha1-modp2048".
func (s Phase1Suite) String() string {
	return ike.Suite{Encr: ike.ENCR_AES_CBC, KeyBits: s.KeyBits, Integ: integOfPRF[s.PRF], DH: s.DH}.String()
}

var (
	hashOfPRF  = map[ike.PRF]uint64{ike.PRFSHA1: HashSHA1, ike.PRFSHA256: HashSHA256, ike.PRFSHA384: HashSHA384, ike.PRFSHA512: HashSHA512}
	prfOfHash  = map[uint64]ike.PRF{HashSHA1: ike.PRFSHA1, HashSHA256: ike.PRFSHA256, HashSHA384: ike.PRFSHA384, HashSHA512: ike.PRFSHA512}
	integOfPRF = map[ike.PRF]uint16{ike.PRFSHA1: ike.AUTH_HMAC_SHA1_96, ike.PRFSHA256: ike.AUTH_HMAC_SHA2_256_128,
		ike.PRFSHA384: ike.AUTH_HMAC_SHA2_384_192, ike.PRFSHA512: ike.AUTH_HMAC_SHA2_512_256}
	authOfInteg = map[uint16]uint64{ike.AUTH_HMAC_SHA1_96: AuthHMACSHA1, ike.AUTH_HMAC_SHA2_256_128: AuthHMACSHA256,
		ike.AUTH_HMAC_SHA2_384_192: AuthHMACSHA384, ike.AUTH_HMAC_SHA2_512_256: AuthHMACSHA512}
	integOfAuth = map[uint64]uint16{AuthHMACSHA1: ike.AUTH_HMAC_SHA1_96, AuthHMACSHA256: ike.AUTH_HMAC_SHA2_256_128,
		AuthHMACSHA384: ike.AUTH_HMAC_SHA2_384_192, AuthHMACSHA512: ike.AUTH_HMAC_SHA2_512_256}
)

// Phase1Suites expands IKE proposals in strongSwan syntax into the
// phase 1 suites IKEv1 can carry, in order: AES-CBC with each integrity
// algorithm as the hash (its HMAC is then the PRF) and each DH group.
// AEAD ciphers have no IKEv1 phase 1 form and are left out.
func Phase1Suites(ps []ike.Proposal, lifetime time.Duration) ([]Phase1Suite, error) {
	var out []Phase1Suite
	for _, p := range ps {
		var encrs []int
		var prfs []ike.PRF
		var groups []ike.DHGroup
		for _, t := range p.Transforms {
			switch t.Type {
			case ike.TransformENCR:
				if kl, _ := t.KeyLength(); t.ID == ike.ENCR_AES_CBC {
					encrs = append(encrs, int(kl))
				}
			case ike.TransformINTEG:
				for prf, integ := range integOfPRF {
					if integ == t.ID {
						prfs = append(prfs, prf)
					}
				}
			case ike.TransformDH:
				if g := ike.DHGroup(t.ID); g.Supported() {
					groups = append(groups, g)
				}
			}
		}
		for _, e := range encrs {
			for _, f := range prfs {
				for _, g := range groups {
					out = append(out, Phase1Suite{KeyBits: e, PRF: f, DH: g, Lifetime: lifetime})
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ikev1: no IKE proposal has an IKEv1 form (AES-CBC with a SHA integrity algorithm and a DH group)")
	}
	if len(out) > maxTransforms {
		out = out[:maxTransforms]
	}
	return out, nil
}

func (s Phase1Suite) transform(num uint8) Transform {
	return Transform{Num: num, ID: KeyIKE, Attributes: []Attribute{
		{AttrEncryption, EncrAESCBC}, {AttrKeyLength, uint64(s.KeyBits)}, {AttrHash, hashOfPRF[s.PRF]},
		{AttrAuthMethod, AuthPSK}, {AttrGroup, uint64(s.DH)},
		{AttrLifeType, LifeSeconds}, {AttrLifeDur, uint64(s.Lifetime / time.Second)},
	}}
}

// phase1SA is the initiator's SA payload: one ISAKMP proposal whose
// transforms are the alternatives.
func phase1SA(suites []Phase1Suite) SA {
	p := Proposal{Num: 1, Protocol: ProtoISAKMP}
	for i, s := range suites {
		p.Transforms = append(p.Transforms, s.transform(uint8(i+1)))
	}
	return SA{Proposals: []Proposal{p}}
}

// phase1Of reads a phase 1 transform; ok is false for what we do not
// implement (other ciphers, hashes, groups, or an authentication method
// other than PSK: XAUTH and signatures).
func phase1Of(t Transform) (Phase1Suite, bool) {
	if t.ID != KeyIKE {
		return Phase1Suite{}, false
	}
	var s Phase1Suite
	lifeType := uint64(LifeSeconds)
	for _, a := range t.Attributes {
		switch a.Type {
		case AttrEncryption:
			if a.Value != EncrAESCBC {
				return Phase1Suite{}, false
			}
		case AttrKeyLength:
			s.KeyBits = int(a.Value)
		case AttrHash:
			s.PRF = prfOfHash[a.Value]
		case AttrAuthMethod:
			if a.Value != AuthPSK {
				return Phase1Suite{}, false
			}
		case AttrGroup:
			s.DH = ike.DHGroup(a.Value)
		case AttrLifeType:
			lifeType = a.Value
		case AttrLifeDur:
			if lifeType == LifeSeconds && a.Value < 1<<32 {
				s.Lifetime = time.Duration(a.Value) * time.Second
			}
		default:
			return Phase1Suite{}, false // e.g. a PRF attribute or group description we do not know
		}
	}
	if _, ok := t.Attr(AttrEncryption); !ok {
		return Phase1Suite{}, false
	}
	if _, ok := t.Attr(AttrAuthMethod); !ok {
		return Phase1Suite{}, false
	}
	if s.KeyBits != 128 && s.KeyBits != 192 && s.KeyBits != 256 || s.PRF == 0 || !s.DH.Supported() {
		return Phase1Suite{}, false
	}
	return s, true
}

// selectPhase1 is the responder's choice: our order wins, as in ike's
// SelectProposal. It returns the chosen suite and the initiator's
// transform to echo. The lifetime is the shorter of both.
func selectPhase1(ours []Phase1Suite, sa SA) (Phase1Suite, Proposal, bool) {
	for _, o := range ours {
		for _, p := range sa.Proposals {
			if p.Protocol != ProtoISAKMP {
				continue
			}
			for _, t := range p.Transforms {
				s, ok := phase1Of(t)
				if !ok || s.KeyBits != o.KeyBits || s.PRF != o.PRF || s.DH != o.DH {
					continue
				}
				if s.Lifetime == 0 || s.Lifetime > o.Lifetime {
					s.Lifetime = o.Lifetime
				}
				echo := p
				echo.Transforms = []Transform{t}
				return s, echo, true
			}
		}
	}
	return Phase1Suite{}, Proposal{}, false
}

// Phase2Suite is an ESP SA's algorithms and the Quick Mode group (PFS).
type Phase2Suite struct {
	ESP ike.Suite
	PFS ike.DHGroup
}

// Phase2Suites expands ESP proposals in strongSwan syntax: each cipher
// with each integrity algorithm, with the proposal's first DH group as
// the PFS group.
func Phase2Suites(ps []ike.Proposal) []Phase2Suite {
	var out []Phase2Suite
	for _, p := range ps {
		var encr, integ []ike.Transform
		pfs := ike.DHNone
		for _, t := range p.Transforms {
			switch t.Type {
			case ike.TransformENCR:
				encr = append(encr, t)
			case ike.TransformINTEG:
				integ = append(integ, t)
			case ike.TransformDH:
				if pfs == ike.DHNone {
					pfs = ike.DHGroup(t.ID)
				}
			}
		}
		if len(integ) == 0 {
			integ = []ike.Transform{{Type: ike.TransformINTEG, ID: ike.AUTH_NONE}}
		}
		for _, e := range encr {
			for _, in := range integ {
				s, err := ike.SuiteOf(ike.Proposal{Protocol: ike.ProtoESP, Transforms: []ike.Transform{e, in}})
				if err != nil || (s.Encr != ike.ENCR_AES_CBC && s.Encr != ike.ENCR_AES_GCM_16) {
					continue
				}
				out = append(out, Phase2Suite{ESP: s, PFS: pfs})
			}
		}
	}
	return out
}

// Phase2Life is a Quick Mode SA's lifetime.
type Phase2Life struct {
	Time time.Duration
	KB   uint64
}

func (s Phase2Suite) transform(num uint8, encap uint64, life Phase2Life) Transform {
	id := uint8(ESPAESCBC)
	if s.ESP.Encr == ike.ENCR_AES_GCM_16 {
		id = ESPAESGCM16
	}
	as := []Attribute{{AttrSALifeType, LifeSeconds}, {AttrSALifeDur, uint64(life.Time / time.Second)}}
	if life.KB > 0 {
		as = append(as, Attribute{AttrSALifeType, LifeKilobytes}, Attribute{AttrSALifeDur, life.KB})
	}
	if s.PFS != ike.DHNone {
		as = append(as, Attribute{AttrSAGroup, uint64(s.PFS)})
	}
	as = append(as, Attribute{AttrEncapMode, encap}, Attribute{AttrSAKeyLength, uint64(s.ESP.KeyBits)})
	if a, ok := authOfInteg[s.ESP.Integ]; ok {
		as = append(as, Attribute{AttrAuthAlg, a})
	}
	return Transform{Num: num, ID: id, Attributes: as}
}

// phase2Of reads an ESP transform: suite, encapsulation mode, lifetime.
func phase2Of(t Transform) (s Phase2Suite, encap uint64, life Phase2Life, ok bool) {
	switch t.ID {
	case ESPAESCBC:
		s.ESP.Encr = ike.ENCR_AES_CBC
	case ESPAESGCM16:
		s.ESP.Encr = ike.ENCR_AES_GCM_16
	default:
		return s, 0, life, false
	}
	lifeType := uint64(LifeSeconds)
	for _, a := range t.Attributes {
		switch a.Type {
		case AttrSALifeType:
			lifeType = a.Value
		case AttrSALifeDur:
			if lifeType == LifeSeconds && a.Value < 1<<32 {
				life.Time = time.Duration(a.Value) * time.Second
			} else if lifeType == LifeKilobytes {
				life.KB = a.Value
			}
		case AttrSAGroup:
			s.PFS = ike.DHGroup(a.Value)
		case AttrEncapMode:
			encap = a.Value
		case AttrSAKeyLength:
			s.ESP.KeyBits = int(a.Value)
		case AttrAuthAlg:
			integ, known := integOfAuth[a.Value]
			if !known {
				return s, 0, life, false
			}
			s.ESP.Integ = integ
		default:
			return s, 0, life, false
		}
	}
	if s.ESP.KeyBits != 128 && s.ESP.KeyBits != 192 && s.ESP.KeyBits != 256 {
		return s, 0, life, false
	}
	if (s.ESP.Encr == ike.ENCR_AES_CBC) == (s.ESP.Integ == ike.AUTH_NONE) {
		return s, 0, life, false
	}
	return s, encap, life, true
}

// phase2Matches: same cipher, key, integrity and PFS group.
func phase2Matches(a, b Phase2Suite) bool {
	return a.ESP.Encr == b.ESP.Encr && a.ESP.KeyBits == b.ESP.KeyBits && a.ESP.Integ == b.ESP.Integ && a.PFS == b.PFS
}

func suitesString(ss []Phase2Suite) string {
	var names []string
	for _, s := range ss {
		n := s.ESP.Transform()
		if s.PFS != ike.DHNone {
			n += "-" + strings.ToLower(strings.ReplaceAll(s.PFS.String(), "_", ""))
		}
		names = append(names, n)
	}
	return strings.Join(names, ",")
}

func transformsString(p Proposal, phase1 bool) string {
	var names []string
	for _, t := range p.Transforms {
		if phase1 {
			if s, ok := phase1Of(t); ok {
				names = append(names, s.String())
				continue
			}
		} else if s, _, _, ok := phase2Of(t); ok {
			names = append(names, suitesString([]Phase2Suite{s}))
			continue
		}
		names = append(names, fmt.Sprintf("transform(%d %v)", t.ID, t.Attributes))
	}
	return strings.Join(names, ",")
}
