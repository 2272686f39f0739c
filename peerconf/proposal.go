package peerconf

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gresec/gresec/ike"
)

// algs is one proposal's algorithms by type, in the proposal's order.
// ParseProposals allows several of one type in a proposal
// ("aes256gcm16-aes128gcm16-prfsha384-ecp384"), so each is a list.
type algs struct {
	proto  ike.ProtocolID
	encr   []int // AES-GCM-16 key bits
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
			if t.ID != ike.ENCR_AES_GCM_16 {
				a.other = append(a.other, fmt.Sprintf("encryption %d", t.ID))
				continue
			}
			a.encr = append(a.encr, int(kl))
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
		case ike.TransformINTEG:
			if t.ID != 0 {
				a.other = append(a.other, fmt.Sprintf("integrity %d", t.ID))
			}
		default:
			a.other = append(a.other, fmt.Sprintf("transform type %d", t.Type))
		}
	}
	return a
}

// strongSwan spellings; ParseProposals reads exactly these back.
var (
	swanPRF = map[uint16]string{ike.PRF_HMAC_SHA2_256: "prfsha256", ike.PRF_HMAC_SHA2_384: "prfsha384", ike.PRF_HMAC_SHA2_512: "prfsha512"}
	swanDH  = map[ike.DHGroup]string{ike.MODP2048: "modp2048", ike.ECP256: "ecp256", ike.ECP384: "ecp384", ike.ECP521: "ecp521", ike.Curve25519: "curve25519"}
)

// swanProposal is one proposal in strongSwan syntax, the form errors
// use to name a proposal.
func swanProposal(p ike.Proposal) string {
	a := splitProposal(p)
	var parts []string
	for _, k := range a.encr {
		parts = append(parts, "aes"+strconv.Itoa(k)+"gcm16")
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
		for _, g := range a.dh {
			if _, ok := swanDH[g]; !ok {
				return "", unsupported("strongSwan", p, "DH group "+strconv.Itoa(int(g)))
			}
		}
		out[i] = swanProposal(p)
	}
	return strings.Join(out, ","), nil
}

// iked spellings (iked.conf(5), checked with `iked -n` of openiked 7.2):
// the IKE SA takes aes-128-gcm and aes-256-gcm, the CHILD SA also
// aes-192-gcm.
var (
	ikedPRF = map[uint16]string{ike.PRF_HMAC_SHA2_256: "hmac-sha2-256", ike.PRF_HMAC_SHA2_384: "hmac-sha2-384", ike.PRF_HMAC_SHA2_512: "hmac-sha2-512"}
	ikedDH  = swanDH
)

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
		for _, k := range a.encr {
			if k == 192 && p.Protocol == ike.ProtoIKE {
				return nil, unsupported(peer, p, "aes192gcm16 for the IKE SA (it has aes-128-gcm and aes-256-gcm)")
			}
			parts = append(parts, fmt.Sprintf("enc aes-%d-gcm", k))
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
// (the seed's C887) has no AES-GCM-192 and no Curve25519 (group 31), and
// its transform sets have no ESN.
var iosGroup = map[ike.DHGroup]int{ike.MODP2048: 14, ike.ECP256: 19, ike.ECP384: 20, ike.ECP521: 21}

var iosPRF = map[uint16]string{ike.PRF_HMAC_SHA2_256: "sha256", ike.PRF_HMAC_SHA2_384: "sha384", ike.PRF_HMAC_SHA2_512: "sha512"}

// iosIKEProposal is the body of one `crypto ikev2 proposal`.
type iosIKEProposal struct {
	encryption, prf, group string // space-separated lists
}

func iosIKEProposals(ps []ike.Proposal) ([]iosIKEProposal, error) {
	const peer = "Cisco IOS"
	var out []iosIKEProposal
	for _, p := range ps {
		a := splitProposal(p)
		if len(a.other) > 0 {
			return nil, unsupported(peer, p, strings.Join(a.other, ", "))
		}
		var enc, prf, grp []string
		for _, k := range a.encr {
			if k != 128 && k != 256 {
				return nil, unsupported(peer, p, fmt.Sprintf("aes%dgcm16 (IOS has aes-gcm-128 and aes-gcm-256)", k))
			}
			enc = append(enc, fmt.Sprintf("aes-gcm-%d", k))
		}
		for _, id := range a.prf {
			s, ok := iosPRF[id]
			if !ok {
				return nil, unsupported(peer, p, fmt.Sprintf("PRF %d", id))
			}
			prf = append(prf, s)
		}
		for _, g := range a.dh {
			n, ok := iosGroup[g]
			if !ok {
				return nil, unsupported(peer, p, fmt.Sprintf("DH group %s (IOS has groups 14, 19, 20, 21)", swanDH[g]))
			}
			grp = append(grp, strconv.Itoa(n))
		}
		out = append(out, iosIKEProposal{strings.Join(enc, " "), strings.Join(prf, " "), strings.Join(grp, " ")})
	}
	return out, nil
}

// iosESP is what IOS needs from our ESP proposals: transform sets by
// name (esp-gcm 128/256) and the PFS group. IOS takes one PFS group per
// profile; it proposes that one and accepts it, so the first of ours is
// used (gresec accepts any group it lists).
type iosESP struct {
	sets []iosTransformSet
	pfs  int // 0: no PFS
}

type iosTransformSet struct{ name, transform string }

func iosESPProposals(ps []ike.Proposal) (iosESP, error) {
	const peer = "Cisco IOS"
	var r iosESP
	seen := map[int]bool{}
	for _, p := range ps {
		a := splitProposal(p)
		if len(a.other) > 0 {
			return r, unsupported(peer, p, strings.Join(a.other, ", "))
		}
		if a.esnOn && !a.esnOff {
			return r, unsupported(peer, p, "extended sequence numbers (esn) in a transform set; add noesn")
		}
		for _, k := range a.encr {
			if k != 128 && k != 256 {
				return r, unsupported(peer, p, fmt.Sprintf("aes%dgcm16 (IOS has esp-gcm 128 and esp-gcm 256)", k))
			}
			if !seen[k] {
				seen[k] = true
				r.sets = append(r.sets, iosTransformSet{fmt.Sprintf("ESP-AESGCM-%d", k), fmt.Sprintf("esp-gcm %d", k)})
			}
		}
		for _, g := range a.dh {
			n, ok := iosGroup[g]
			if !ok {
				return r, unsupported(peer, p, fmt.Sprintf("PFS group %s (IOS has groups 14, 19, 20, 21)", swanDH[g]))
			}
			if r.pfs == 0 {
				r.pfs = n
			}
		}
	}
	return r, nil
}
