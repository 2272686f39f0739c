package ike

import (
	"bytes"
	"errors"
	"time"
)

// ikeSA is one IKE SA and the CHILD_SAs it owns.
type ikeSA struct {
	spiI, spiR uint64
	initiator  bool      // we are this SA's original initiator (I flag)
	state      saState   // state.go
	seq        uint64    // engine event number of its creation (responder: its IKE_SA_INIT's arrival)
	createdAt  time.Time //
	suite      Suite
	keys       IKEKeys
	out, in    SKCipher

	ni, nr []byte
	dh     *DHKey
	// peerKE: a responder SA answered under load keeps the initiator's
	// public value and computes g^ir only when IKE_AUTH arrives
	// (halfopen.go).
	peerKE        []byte
	initReq       []byte // IKE_SA_INIT request as sent (AUTH covers it)
	initResp      []byte
	cookie        []byte
	establishedAt time.Time
	estSeq        uint64 // engine event number of its authentication
	lastRecv      time.Time
	rekeyAt       time.Time

	nextReqID   uint32   // ID of our next request
	expectReqID uint32   // ID of the peer's next request
	lastResp    [][]byte // our response to the peer's last request (its fragments, if any)
	// lastReqDigest identifies that request: only an identical copy is
	// answered with lastResp again.
	lastReqDigest [32]byte
	req           *request
	queue         []queuedRequest // task.go

	children            []*childSA
	childSPI            uint32 // inbound SPI offered in IKE_AUTH
	ikeRekeying         bool   // our CREATE_CHILD_SA rekeying this SA is in flight
	retryRekey          time.Time
	deleteAfterResponse bool
	// afterHint: we initiated this SA because the peer hinted that it
	// lost the others (hint.go); they go once this one authenticates.
	afterHint bool
	// nat is what NAT detection found in its IKE_SA_INIT (nat.go).
	nat natFlags

	// Collisions. peerRekey is the SA the peer's rekey of this one created
	// while ours was in flight (§2.8.2); that SA is Pending on this one
	// (pendingOn) until the collision is resolved.
	peerRekey *ikeSA
	pendingOn *ikeSA
	// survivor is the SA a Redundant one lost to.
	survivor       *ikeSA
	redundantSince time.Time

	frag fragState // RFC 7383 (fragment.go)
}

type childSA struct {
	keys       ChildKeys
	installed  time.Time
	seq        uint64 // engine event number of its installation
	rekeyAt    time.Time
	rekeyBytes uint64 // rekey once either half carried this much (0: never)
	expiresAt  time.Time
	ni, nr     []byte     // nonces of the exchange that created it
	state      childState // state.go
	retryRekey time.Time
	// replacedBy is the CHILD_SA a rekey created for this one; whoever
	// initiated the surviving rekey deletes this one.
	replacedBy *childSA
	// peerRekey is the CHILD_SA the peer's rekey created while ours was
	// in flight: a collision, resolved when our exchange completes.
	peerRekey *childSA
	lastIn    uint64
	// peerHas: the peer has installed it, so we may send on it: we
	// initiated the exchange that made it (the peer installs before it
	// answers), ESP arrived on it, or the peer sent a request after our
	// answer that made it (it has read that answer).
	peerHas bool
}

func (sa *ikeSA) keyed() bool { return sa.out != nil }

// usable: established and in use (not replaced, not being deleted, not a
// collision loser or an undecided collision winner).
func (sa *ikeSA) usable() bool { return sa.state == saEstablished }

// gone: removed from the engine.
func (sa *ikeSA) gone() bool { return sa.state == saGone }

// initiatorOfReq reports whether m is a response to a request of ours on sa.
func (sa *ikeSA) initiatorOfReq(m *Message) bool {
	if sa.spiI != m.SPIi {
		return false
	}
	if m.Exchange == IKE_SA_INIT {
		return sa.initiator && sa.state == saConnecting && sa.spiR == 0
	}
	return sa.spiR == m.SPIr
}

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
	keys, err := DeriveIKEKeys(sa.suite.PRF, skeyseed, sa.suite.KeyLen(), sa.suite.IntegKeyLen(), sa.ni, sa.nr, sa.spiI, sa.spiR)
	skeyseed.Wipe()
	if err != nil {
		return err
	}
	sa.keys = keys
	ei, err := NewSK(sa.suite, keys.SKei, keys.SKai, nil)
	if err != nil {
		return err
	}
	er, err := NewSK(sa.suite, keys.SKer, keys.SKar, nil)
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
// IKE_SA_INIT (§3.14) and carry the peer's I flag. An authentic message
// whose payloads do not parse gives an error wrapping ErrInnerSyntax.
func (sa *ikeSA) unprotect(m *Message, raw []byte) (Payloads, error) {
	if sa.in == nil {
		return nil, errors.New("ike: IKE SA has no keys yet")
	}
	if m.FromInitiator() == sa.initiator {
		return nil, errors.New("ike: message has our own initiator flag")
	}
	return sa.in.Open(raw, m)
}

func (sa *ikeSA) childByOut(spiOut uint32) *childSA {
	for _, c := range sa.children {
		if c.keys.SPIOut == spiOut {
			return c
		}
	}
	return nil
}

// lowestNonce is the smaller of an exchange's two nonces. RFC 7296 §2.8.1
// and §2.8.2 let the SA created with the lowest of all four nonces of two
// colliding exchanges lose; both peers see the same four nonces, so they
// agree without talking.
func lowestNonce(ni, nr []byte) []byte {
	if bytes.Compare(ni, nr) <= 0 {
		return ni
	}
	return nr
}

// loses reports whether an SA created with nonces (ni, nr) is redundant
// next to one created with (oi, or).
func loses(ni, nr, oi, or []byte) bool {
	return bytes.Compare(lowestNonce(ni, nr), lowestNonce(oi, or)) < 0
}
