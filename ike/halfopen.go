package ike

import "time"

// Half-open IKE SAs: responder SAs between our IKE_SA_INIT answer and the
// peer's IKE_AUTH. They are kept apart from the engine's established SAs
// because anyone who can send from the peer's address can create them:
// the table is bounded in count and in bytes, found in O(1) by SPI pair,
// and evicted oldest first.
//
// Why this bound holds a real peer's SA during a flood: each half-open SA
// costs us one DH computation, so they arrive no faster than this engine
// can compute DH (about 1000/s for ECP-384 on one core). With
// maxHalfOpen of them an SA survives eviction for at least
// maxHalfOpen/rate ≈ 1 s, while a real peer's IKE_AUTH follows our
// answer within a round trip and its own DH, and jumps the queue of new
// IKE_SA_INIT requests (inbox.go). Memory: about 3 KiB per SA, so a few
// MiB at most, and maxHalfOpenBytes bounds what oversized requests could
// add.
const (
	maxHalfOpen = 1024
	// maxHalfOpenBytes bounds the IKE_SA_INIT messages kept for AUTH.
	maxHalfOpenBytes = 4 << 20
	// halfOpenTimeout forgets half-open SAs whose IKE_AUTH never came.
	halfOpenTimeout = 30 * time.Second
)

type spiPair struct{ i, r uint64 }

type halfOpenTable struct {
	bySPI map[spiPair]*ikeSA
	// order is the arrival order for eviction and expiry; entries already
	// removed from bySPI are skipped and compacted away.
	order []*ikeSA
	bytes int
}

func (t *halfOpenTable) len() int { return len(t.bySPI) }

func (t *halfOpenTable) get(spiI, spiR uint64) *ikeSA { return t.bySPI[spiPair{spiI, spiR}] }

// retransmitted returns the half-open SA whose IKE_SA_INIT request is
// exactly raw (the initiator did not get our answer), or nil.
func (t *halfOpenTable) retransmitted(spiI uint64, raw []byte) *ikeSA {
	// Several half-open SAs may share an SPIi (an attacker can reuse a
	// peer's); they are few unless under attack, and the scan is bounded.
	for _, h := range t.order {
		if h.spiI == spiI && !h.gone() && string(h.initReq) == string(raw) {
			return h
		}
	}
	return nil
}

func size(sa *ikeSA) int { return len(sa.initReq) + len(sa.initResp) + len(sa.peerKE) }

// loadKeyLife bounds how long the shared DH key of loadKey is used.
const loadKeyLife = 10 * time.Second

type loadKeyEntry struct {
	key  *DHKey
	made time.Time
}

// keyHalfOpen finishes the DH of a half-open SA answered under load, when
// its first IKE_AUTH arrives: at most one DH per half-open SA, and only
// for initiators that came back after our answer.
func (e *Engine) keyHalfOpen(sa *ikeSA) error {
	if sa.keyed() || sa.peerKE == nil {
		return nil
	}
	if err := sa.keyFrom(sa.peerKE); err != nil {
		return err
	}
	e.keyGen++
	return nil
}

// add inserts sa and returns the SAs evicted to make room (oldest first).
func (t *halfOpenTable) add(sa *ikeSA) (evicted []*ikeSA) {
	if t.bySPI == nil {
		t.bySPI = map[spiPair]*ikeSA{}
	}
	for len(t.bySPI) > 0 && (len(t.bySPI) >= maxHalfOpen || t.bytes+size(sa) > maxHalfOpenBytes) {
		evicted = append(evicted, t.oldest())
		t.remove(evicted[len(evicted)-1])
	}
	t.bySPI[spiPair{sa.spiI, sa.spiR}] = sa
	t.order = append(t.order, sa)
	t.bytes += size(sa)
	return evicted
}

// oldest is the earliest SA still in the table (the table is not empty).
func (t *halfOpenTable) oldest() *ikeSA {
	for {
		h := t.order[0]
		if t.bySPI[spiPair{h.spiI, h.spiR}] == h {
			return h
		}
		t.order = t.order[1:]
	}
}

// remove forgets sa (no-op if it is not in the table).
func (t *halfOpenTable) remove(sa *ikeSA) {
	k := spiPair{sa.spiI, sa.spiR}
	if t.bySPI[k] != sa {
		return
	}
	delete(t.bySPI, k)
	t.bytes -= size(sa)
	if len(t.order) > 2*len(t.bySPI)+16 {
		keep := make([]*ikeSA, 0, len(t.bySPI))
		for _, h := range t.order {
			if t.bySPI[spiPair{h.spiI, h.spiR}] == h {
				keep = append(keep, h)
			}
		}
		t.order = keep
	}
}

// expired returns the SAs older than halfOpenTimeout, oldest first.
func (t *halfOpenTable) expired(now time.Time) []*ikeSA {
	var out []*ikeSA
	for _, h := range t.order {
		if now.Sub(h.createdAt) < halfOpenTimeout {
			break
		}
		if t.bySPI[spiPair{h.spiI, h.spiR}] == h {
			out = append(out, h)
		}
	}
	return out
}
