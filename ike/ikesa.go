package ike

import (
	"errors"
	"time"
)

// ikeSA is one IKE SA and the CHILD_SAs it owns.
type ikeSA struct {
	spiI, spiR uint64
	initiator  bool // we are this SA's original initiator (I flag)
	suite      Suite
	keys       IKEKeys
	out, in    *SKCipher

	ni, nr        []byte
	dh            *DHKey
	initReq       []byte // IKE_SA_INIT request as sent (AUTH covers it)
	initResp      []byte
	cookie        []byte
	established   bool
	establishedAt time.Time
	lastRecv      time.Time

	nextReqID   uint32 // ID of our next request
	expectReqID uint32 // ID of the peer's next request
	lastResp    []byte // our response to the peer's last request

	children            []*childSA
	childSPI            uint32 // inbound SPI offered in IKE_AUTH
	rekeying            bool
	retryRekey          time.Time
	deleteAfterResponse bool
}

type childSA struct {
	keys       ChildKeys
	installed  time.Time
	rekeying   bool
	retryRekey time.Time
	lastIn     uint64
}

func (sa *ikeSA) keyed() bool { return sa.out != nil }

// flags are the header flags of a message we send on sa.
func (sa *ikeSA) flags(response bool) Flags {
	var f Flags
	if sa.initiator {
		f |= FlagInitiator
	}
	if response {
		f |= FlagResponse
	}
	return f
}

// deriveKeys computes SK_* from g^ir and sets up the SK ciphers.
func (sa *ikeSA) deriveKeys(skeyseed Secret) error {
	keys, err := DeriveIKEKeys(sa.suite.PRF, skeyseed, sa.suite.KeyLen(), 0, sa.ni, sa.nr, sa.spiI, sa.spiR)
	skeyseed.Wipe()
	if err != nil {
		return err
	}
	sa.keys = keys
	ei, err := NewSKCipher(keys.SKei)
	if err != nil {
		return err
	}
	er, err := NewSKCipher(keys.SKer)
	if err != nil {
		return err
	}
	if sa.initiator {
		sa.out, sa.in = ei, er
	} else {
		sa.out, sa.in = er, ei
	}
	return nil
}

// protect encodes m with inner payloads in an SK payload.
func (sa *ikeSA) protect(m *Message, inner Payloads) ([]byte, error) {
	if sa.out == nil {
		return nil, errors.New("ike: IKE SA has no keys yet")
	}
	return sa.out.Seal(m, inner)
}

// unprotect opens m's SK payload; messages must be encrypted after
// IKE_SA_INIT (§3.14) and carry the peer's I flag.
func (sa *ikeSA) unprotect(m *Message, raw []byte) (Payloads, error) {
	if sa.in == nil {
		return nil, errors.New("ike: IKE SA has no keys yet")
	}
	if m.FromInitiator() == sa.initiator {
		return nil, errors.New("ike: message has our own initiator flag")
	}
	return sa.in.Open(raw, m)
}

func (sa *ikeSA) child(spiIn uint32) *childSA {
	for _, c := range sa.children {
		if c.keys.SPIIn == spiIn {
			return c
		}
	}
	return nil
}

func (sa *ikeSA) childByOut(spiOut uint32) *childSA {
	for _, c := range sa.children {
		if c.keys.SPIOut == spiOut {
			return c
		}
	}
	return nil
}
