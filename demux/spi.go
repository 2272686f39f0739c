package demux

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// SPITable maps every inbound ESP SPI in the daemon to the tunnel that
// owns it, and allocates new SPIs unique among them. Readers take no lock:
// they load an immutable map that writers replace (SAs come and go a few
// times an hour per tunnel, packets millions of times a second).
//
// An SPI is in the table from its allocation (reserved: the IKE engine
// proposes it before any SA exists) or from the moment an SA with it is
// installed (Add), until Remove. A reservation that never becomes an SA (a
// failed negotiation) expires after reserveFor, so failing peers cannot
// grow the table.
type SPITable struct {
	mu       sync.Mutex
	bySPI    atomic.Pointer[map[uint32]Sink]
	reserved map[uint32]time.Time // allocated, not yet installed
	clock    func() time.Time
}

// reserveFor is how long an allocated SPI waits for its SA: longer than
// any IKE exchange with all its retransmissions (5 tries from 2 s with
// back-off 2: about a minute).
const reserveFor = 5 * time.Minute

// NewSPITable returns an empty table.
func NewSPITable() *SPITable {
	t := &SPITable{reserved: map[uint32]time.Time{}, clock: time.Now}
	t.bySPI.Store(&map[uint32]Sink{})
	return t
}

// Lookup returns the tunnel that owns spi, or nil.
func (t *SPITable) Lookup(spi uint32) Sink { return (*t.bySPI.Load())[spi] }

// Len is how many SPIs have an owner.
func (t *SPITable) Len() int { return len(*t.bySPI.Load()) }

// Allocate returns a random SPI that no tunnel of the daemon holds or has
// been given, and reserves it. 1..255 are reserved by IANA (RFC 4303 §2.1).
func (t *SPITable) Allocate() uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock()
	for spi, at := range t.reserved {
		if now.Sub(at) > reserveFor {
			delete(t.reserved, spi)
		}
	}
	cur := *t.bySPI.Load()
	var b [4]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand does not fail
		spi := binary.BigEndian.Uint32(b[:])
		if spi <= 255 {
			continue
		}
		if _, held := cur[spi]; held {
			continue
		}
		if _, held := t.reserved[spi]; held {
			continue
		}
		t.reserved[spi] = now
		return spi
	}
}

// Add makes s the owner of spi. It reports false, changing nothing, when
// another tunnel owns it (two static configs with one spi_in).
func (t *SPITable) Add(spi uint32, s Sink) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := *t.bySPI.Load()
	if o, ok := cur[spi]; ok {
		return o == s
	}
	delete(t.reserved, spi)
	next := make(map[uint32]Sink, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	next[spi] = s
	t.bySPI.Store(&next)
	return true
}

// Remove forgets spi if s owns it.
func (t *SPITable) Remove(spi uint32, s Sink) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := *t.bySPI.Load()
	if o, ok := cur[spi]; !ok || o != s {
		return
	}
	next := make(map[uint32]Sink, len(cur))
	for k, v := range cur {
		if k != spi {
			next[k] = v
		}
	}
	t.bySPI.Store(&next)
}

// RemoveAll forgets every SPI s owns, for a tunnel that stops.
func (t *SPITable) RemoveAll(s Sink) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := *t.bySPI.Load()
	next := make(map[uint32]Sink, len(cur))
	for k, v := range cur {
		if v != s {
			next[k] = v
		}
	}
	t.bySPI.Store(&next)
}
