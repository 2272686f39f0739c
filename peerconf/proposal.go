package peerconf

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gresec/gresec/ike"
)

// cipher is one encryption transform: AES-GCM-16, AES-CBC (with the key
// length) or ChaCha20-Poly1305.
type cipher struct {
	id   uint16
	bits int // key bits; 256 for ChaCha20-Poly1305
}

func (c cipher) aead() bool { return c.id != ike.ENCR_AES_CBC }

// swan is strongSwan's name: "aes256gcm16", "aes128", "chacha20poly1305".
func (c cipher) swan() string {
	switch c.id {
	case ike.ENCR_AES_GCM_16:
		return "aes" + strconv.Itoa(c.bits) + "gcm16"
	case ike.ENCR_CHACHA20_POLY1305:
		return "chacha20poly1305"
	}
	return "aes" + strconv.Itoa(c.bits)
}

// algs is one proposal's algorithms by type, in the proposal's order.
// ParseProposals allows several of one type in a proposal
// ("aes256gcm16-aes128gcm16-prfsha384-ecp384"), so each is a list.
type algs struct {
	proto  ike.ProtocolID
	encr   []cipher
	integ  []uint16
	prf    []uint16
	dh     []ike.DHGroup
	esnOn  bool
	esnOff bool
	other  []string // transforms no peer writer knows
}

func splitProposal(p ike.Proposal) algs {
	a := algs{proto: p.Protocol}
	for _, t := range p.Transforms {
		switch t.Type {
		case ike.TransformENCR:
			kl, _ := t.KeyLength()
			switch {
			case (t.ID == ike.ENCR_AES_GCM_16 || t.ID == ike.ENCR_AES_CBC) && (kl == 128 || kl == 192 || kl == 256):
				a.encr = append(a.encr, cipher{t.ID, int(kl)})
			case t.ID == ike.ENCR_CHACHA20_POLY1305 && kl == 0:
				a.encr = append(a.encr, cipher{t.ID, 256})
			default:
				a.other = append(a.other, fmt.Sprintf("encryption %d/%d", t.ID, kl))
			}
		case ike.TransformINTEG:
			switch {
			case t.ID == ike.AUTH_NONE:
			case swanInteg[t.ID] != "":
				a.integ = append(a.integ, t.ID)
			default:
				a.other = append(a.other, fmt.Sprintf("integrity %d", t.ID))
			}
		case ike.TransformPRF:
			a.prf = append(a.prf, t.ID)
		case ike.TransformDH:
			if g := ike.DHGroup(t.ID); g != ike.DHNone {
				a.dh = append(a.dh, g)
			}
		case ike.TransformESN:
			if t.ID == ike.ESN_ON {
				a.esnOn = true
			} else {
				a.esnOff = true
			}
		default:
			a.other = append(a.other, fmt.Sprintf("transform type %d", t.Type))
		}
	}
	return a
}

// strongSwan spellings; ParseProposals reads exactly these back.
var (
	swanInteg = map[uint16]string{ike.AUTH_HMAC_SHA1_96: "sha1", ike.AUTH_HMAC_SHA2_256_128: "sha256",
		ike.AUTH_HMAC_SHA2_384_192: "sha384", ike.AUTH_HMAC_SHA2_512_256: "sha512"}
	swanPRF = map[uint16]string{ike.PRF_HMAC_SHA1: "prfsha1", ike.PRF_HMAC_SHA2_256: "prfsha256",
		ike.PRF_HMAC_SHA2_384: "prfsha384", ike.PRF_HMAC_SHA2_512: "prfsha512"}
	swanDH = map[ike.DHGroup]string{ike.MODP2048: "modp2048", ike.MODP3072: "modp3072", ike.MODP4096: "modp4096",
		ike.ECP256: "ecp256", ike.ECP384: "ecp384", ike.ECP521: "ecp521", ike.Curve25519: "curve25519"}
)

// swanProposal is one proposal in strongSwan syntax, the form errors
// use to name a proposal. The PRF is always written: an IKE proposal
// with a non-AEAD cipher would otherwise take it from the integrity
// algorithm, which is the same thing said implicitly.
func swanProposal(p ike.Proposal) string {
	a := splitProposal(p)
	var parts []string
	for _, c := range a.encr {
		parts = append(parts, c.swan())
	}
	for _, id := range a.integ {
		parts = append(parts, swanInteg[id])
	}
	for _, id := range a.prf {
		if s, ok := swanPRF[id]; ok {
			parts = append(parts, s)
		} else {
			parts = append(parts, fmt.Sprintf("prf%d", id))
		}
	}
	for _, g := range a.dh {
		if s, ok := swanDH[g]; ok {
			parts = append(parts, s)
		} else {
			parts = append(parts, fmt.Sprintf("dh%d", g))
		}
	}
	if a.esnOn {
		parts = append(parts, "esn")
	}
	if a.esnOff && a.esnOn {
		parts = append(parts, "noesn")
	}
	return strings.Join(append(parts, a.other...), "-")
}

// unsupported is the error for a proposal a peer cannot express.
func unsupported(peer string, p ike.Proposal, what string) error {
	kind := "IKE"
	if p.Protocol == ike.ProtoESP {
		kind = "ESP"
	}
	return fmt.Errorf("peerconf: %s proposal %q: %s cannot express %s", kind, swanProposal(p), peer, what)
}

// swanProposals renders proposals for swanctl.conf's proposals or
// esp_proposals. Everything ParseProposals accepts, strongSwan accepts.
func swanProposals(ps []ike.Proposal) (string, error) {
	out := make([]string, len(ps))
	for i, p := range ps {
		a := splitProposal(p)
		if len(a.other) > 0 {
			return "", unsupported("strongSwan", p, strings.Join(a.other, ", "))
		}
		for _, id := range a.prf {
			if _, ok := swanPRF[id]; !ok {
				return "", unsupported("strongSwan", p, fmt.Sprintf("PRF %d", id))
			}
		}
		for _, g := range a.dh {
			if _, ok := swanDH[g]; !ok {
				return "", unsupported("strongSwan", p, "DH group "+strconv.Itoa(int(g)))
			}
		}
		out[i] = swanProposal(p)
	}
	return strings.Join(out, ","), nil
}

// iked spellings (iked.conf(5), checked with `iked -n` of openiked 7.2).
// The IKE SA takes AES-CBC and AES-GCM 128/256, not ChaCha20-Poly1305;
// the CHILD SA also AES-GCM-192 and ChaCha20-Poly1305. An AEAD cipher
// takes no `auth` ("authentication is implicit"), AES-CBC needs one.
var (
	ikedInteg = map[uint16]string{ike.AUTH_HMAC_SHA1_96: "hmac-sha1", ike.AUTH_HMAC_SHA2_256_128: "hmac-sha2-256",
		ike.AUTH_HMAC_SHA2_384_192: "hmac-sha2-384", ike.AUTH_HMAC_SHA2_512_256: "hmac-sha2-512"}
	ikedPRF = map[uint16]string{ike.PRF_HMAC_SHA1: "hmac-sha1", ike.PRF_HMAC_SHA2_256: "hmac-sha2-256",
		ike.PRF_HMAC_SHA2_384: "hmac-sha2-384", ike.PRF_HMAC_SHA2_512: "hmac-sha2-512"}
	ikedDH = swanDH
)

func ikedCipher(c cipher, proto ike.ProtocolID) (string, bool) {
	switch c.id {
	case ike.ENCR_AES_CBC:
		return fmt.Sprintf("aes-%d", c.bits), true
	case ike.ENCR_AES_GCM_16:
		return fmt.Sprintf("aes-%d-gcm", c.bits), c.bits != 192 || proto == ike.ProtoESP
	}
	return "chacha20-poly1305", proto == ike.ProtoESP
}

// ikedTransforms renders proposals as iked.conf `ikesa ...` or
// `childsa ...` groups, one per proposal; several algorithms of a type
// repeat the keyword ("enc aes-256-gcm enc aes-128-gcm"), as iked reads.
func ikedTransforms(ps []ike.Proposal) ([]string, error) {
	const peer = "OpenBSD iked"
	var out []string
	for _, p := range ps {
		a := splitProposal(p)
		if len(a.other) > 0 {
			return nil, unsupported(peer, p, strings.Join(a.other, ", "))
		}
		kw := "ikesa"
		if p.Protocol == ike.ProtoESP {
			kw = "childsa"
		}
		parts := []string{kw}
		for _, c := range a.encr {
			s, ok := ikedCipher(c, p.Protocol)
			if !ok {
				return nil, unsupported(peer, p, c.swan()+" for the IKE SA (ikesa has aes-128/192/256, aes-128-gcm and aes-256-gcm)")
			}
			parts = append(parts, "enc "+s)
		}
		for _, id := range a.integ {
			parts = append(parts, "auth "+ikedInteg[id])
		}
		for _, id := range a.prf {
			s, ok := ikedPRF[id]
			if !ok {
				return nil, unsupported(peer, p, fmt.Sprintf("PRF %d", id))
			}
			parts = append(parts, "prf "+s)
		}
		for _, g := range a.dh {
			s, ok := ikedDH[g]
			if !ok {
				return nil, unsupported(peer, p, "DH group "+strconv.Itoa(int(g)))
			}
			parts = append(parts, "group "+s)
		}
		if p.Protocol == ike.ProtoESP {
			if a.esnOn {
				parts = append(parts, "esn")
			}
			if a.esnOff || !a.esnOn {
				parts = append(parts, "noesn")
			}
		}
		out = append(out, strings.Join(parts, " "))
	}
	return out, nil
}

// IOS spellings (IKEv2 proposal, transform-set, PFS). Classic IOS 15
// (the seed's C887) has no AES-GCM-192 and no ChaCha20-Poly1305, no
// Curve25519 (group 31), and its transform sets have no ESN.
var (
	iosGroup = map[ike.DHGroup]int{ike.MODP2048: 14, ike.MODP3072: 15, ike.MODP4096: 16,
		ike.ECP256: 19, ike.ECP384: 20, ike.ECP521: 21}
	iosHash = map[uint16]string{
		ike.PRF_HMAC_SHA1: "sha1", ike.PRF_HMAC_SHA2_256: "sha256", ike.PRF_HMAC_SHA2_384: "sha384", ike.PRF_HMAC_SHA2_512: "sha512"}
	iosInteg = map[uint16]string{ike.AUTH_HMAC_SHA1_96: "sha1", ike.AUTH_HMAC_SHA2_256_128: "sha256",
		ike.AUTH_HMAC_SHA2_384_192: "sha384", ike.AUTH_HMAC_SHA2_512_256: "sha512"}
	// Transform-set integrity: esp-sha-hmac is HMAC-SHA1-96.
	iosESPInteg = map[uint16]string{ike.AUTH_HMAC_SHA1_96: "esp-sha-hmac", ike.AUTH_HMAC_SHA2_256_128: "esp-sha256-hmac",
		ike.AUTH_HMAC_SHA2_384_192: "esp-sha384-hmac", ike.AUTH_HMAC_SHA2_512_256: "esp-sha512-hmac"}
)

const iosGroups = "IOS has groups 14, 15, 16, 19, 20, 21"

// iosIKEProposal is the body of one `crypto ikev2 proposal`.
type iosIKEProposal struct {
	encryption, integrity, prf, group string // space-separated lists; integrity "" for AES-GCM
}

func iosIKEProposals(ps []ike.Proposal) ([]iosIKEProposal, error) {
	const peer = "Cisco IOS"
	var out []iosIKEProposal
	for _, p := range ps {
		a := splitProposal(p)
		if len(a.other) > 0 {
			return nil, unsupported(peer, p, strings.Join(a.other, ", "))
		}
		var enc, integ, prf, grp []string
		for _, c := range a.encr {
			switch {
			case c.id == ike.ENCR_AES_CBC:
				enc = append(enc, fmt.Sprintf("aes-cbc-%d", c.bits))
			case c.id == ike.ENCR_AES_GCM_16 && c.bits != 192:
				enc = append(enc, fmt.Sprintf("aes-gcm-%d", c.bits))
			default:
				return nil, unsupported(peer, p, c.swan()+" (IOS has aes-cbc-128/192/256, aes-gcm-128 and aes-gcm-256)")
			}
		}
		for _, id := range a.integ {
			integ = append(integ, iosInteg[id])
		}
		for _, id := range a.prf {
			s, ok := iosHash[id]
			if !ok {
				return nil, unsupported(peer, p, fmt.Sprintf("PRF %d", id))
			}
			prf = append(prf, s)
		}
		for _, g := range a.dh {
			n, ok := iosGroup[g]
			if !ok {
				return nil, unsupported(peer, p, fmt.Sprintf("DH group %s (%s)", swanDH[g], iosGroups))
			}
			grp = append(grp, strconv.Itoa(n))
		}
		out = append(out, iosIKEProposal{strings.Join(enc, " "), strings.Join(integ, " "), strings.Join(prf, " "), strings.Join(grp, " ")})
	}
	return out, nil
}

// iosESP is what IOS needs from our ESP proposals: transform sets by
// name and the PFS group. IOS takes one PFS group per profile; it
// proposes that one and accepts it, so the first of ours is used
// (gresec accepts any group it lists).
type iosESP struct {
	sets []iosTransformSet
	pfs  int // 0: no PFS
}

type iosTransformSet struct{ name, transform string }

// iosMaxSets is how many transform sets `set transform-set` takes.
const iosMaxSets = 6

// iosTransformSetFor is the transform set for one cipher and, for
// AES-CBC, one integrity algorithm: "esp-gcm 256", "esp-aes 256
// esp-sha256-hmac", "esp-aes esp-sha-hmac" (esp-aes alone is 128 bits,
// as IOS writes it back).
func iosTransformSetFor(c cipher, integ uint16) (iosTransformSet, bool) {
	switch {
	case c.id == ike.ENCR_AES_GCM_16 && c.bits != 192:
		return iosTransformSet{fmt.Sprintf("ESP-AESGCM-%d", c.bits), fmt.Sprintf("esp-gcm %d", c.bits)}, true
	case c.id == ike.ENCR_AES_CBC:
		aes := "esp-aes"
		if c.bits != 128 {
			aes = fmt.Sprintf("esp-aes %d", c.bits)
		}
		name := fmt.Sprintf("ESP-AES%d-%s", c.bits, strings.ToUpper(swanInteg[integ]))
		return iosTransformSet{name, aes + " " + iosESPInteg[integ]}, true
	}
	return iosTransformSet{}, false
}

func iosESPProposals(ps []ike.Proposal) (iosESP, error) {
	const peer = "Cisco IOS"
	var r iosESP
	seen := map[string]bool{}
	for _, p := range ps {
		a := splitProposal(p)
		if len(a.other) > 0 {
			return r, unsupported(peer, p, strings.Join(a.other, ", "))
		}
		if a.esnOn && !a.esnOff {
			return r, unsupported(peer, p, "extended sequence numbers (esn) in a transform set; add noesn")
		}
		for _, c := range a.encr {
			integs := a.integ
			if c.aead() {
				integs = []uint16{ike.AUTH_NONE}
			}
			for _, integ := range integs {
				ts, ok := iosTransformSetFor(c, integ)
				if !ok {
					return r, unsupported(peer, p, c.swan()+" (IOS has esp-aes 128/192/256 with esp-sha-hmac or esp-sha256/384/512-hmac, esp-gcm 128 and esp-gcm 256)")
				}
				if !seen[ts.name] {
					seen[ts.name] = true
					r.sets = append(r.sets, ts)
				}
			}
		}
		for _, g := range a.dh {
			n, ok := iosGroup[g]
			if !ok {
				return r, unsupported(peer, p, fmt.Sprintf("PFS group %s (%s)", swanDH[g], iosGroups))
			}
			if r.pfs == 0 {
				r.pfs = n
			}
		}
	}
	if len(r.sets) > iosMaxSets {
		return r, fmt.Errorf("peerconf: ESP proposals %q make %d IOS transform sets; an IPsec profile takes at most %d: list fewer ciphers and integrity algorithms",
			swanProposalList(ps), len(r.sets), iosMaxSets)
	}
	return r, nil
}

func swanProposalList(ps []ike.Proposal) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = swanProposal(p)
	}
	return strings.Join(s, ",")
}

// xfrmAlgorithm is the algorithm part of an `ip xfrm state` line for an
// ESP SA of suite s, with key the SA's key material in KEYMAT order:
// the cipher key (with the 4-byte salt of the AEAD ciphers), then the
// integrity key (RFC 7296 §2.17). keyText renders a byte range of it, as
// hex or as a placeholder. The kernel's names: rfc4106(gcm(aes)) and
// rfc7539esp(chacha20,poly1305) with a 128-bit ICV, cbc(aes) with
// hmac(shaN) truncated to 96 (SHA-1, RFC 2404) or N/2 bits (RFC 4868).
func xfrmAlgorithm(s ike.Suite, keyText func(from, to int) string) (string, error) {
	enc := keyText(0, s.KeyLen())
	switch s.Encr {
	case ike.ENCR_AES_GCM_16:
		return fmt.Sprintf("aead 'rfc4106(gcm(aes))' %s 128", enc), nil
	case ike.ENCR_CHACHA20_POLY1305:
		return fmt.Sprintf("aead 'rfc7539esp(chacha20,poly1305)' %s 128", enc), nil
	case ike.ENCR_AES_CBC:
		hash, ok := map[uint16]string{ike.AUTH_HMAC_SHA1_96: "sha1", ike.AUTH_HMAC_SHA2_256_128: "sha256",
			ike.AUTH_HMAC_SHA2_384_192: "sha384", ike.AUTH_HMAC_SHA2_512_256: "sha512"}[s.Integ]
		if !ok {
			return "", fmt.Errorf("peerconf: %s: the Linux kernel lines need an integrity algorithm of sha1, sha256, sha384 or sha512", s.Transform())
		}
		auth := keyText(s.KeyLen(), s.KeyLen()+s.IntegKeyLen())
		return fmt.Sprintf("enc 'cbc(aes)' %s auth-trunc 'hmac(%s)' %s %d", enc, hash, auth, s.ICVLen()*8), nil
	}
	return "", fmt.Errorf("peerconf: %s: no Linux kernel algorithm known", s.Transform())
}
