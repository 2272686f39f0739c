package esp

import (
	"slices"
	"sync"
	"sync/atomic"
)

// DB is the SA database of one tunnel: the inbound SAs by SPI (several at
// once while a rekey makes the new SA before breaking the old) and the
// current outbound SA. Readers (Lookup, Outbound) are on the hot path and
// take no lock: they load an immutable slice that writers replace. A linear
// scan over the few SAs of a rekey beats a map and does not allocate.
// The zero DB is empty and ready to use.
type DB struct {
	mu      sync.Mutex // serialises writers
	inbound atomic.Pointer[[]*SA]
	out     atomic.Pointer[SA]
	drops   dropCounters
}

// Lookup returns the inbound SA with this SPI, or nil.
func (db *DB) Lookup(spi uint32) *SA {
	if in := db.inbound.Load(); in != nil {
		for _, sa := range *in {
			if sa.spi == spi {
				return sa
			}
		}
	}
	return nil
}

// Outbound returns the current outbound SA, or nil.
func (db *DB) Outbound() *SA { return db.out.Load() }

// SetOutbound makes sa the outbound SA and returns the one it replaced.
// Seal calls already holding the old SA finish with it.
func (db *DB) SetOutbound(sa *SA) (old *SA) { return db.out.Swap(sa) }

// AddInbound installs sa, replacing any inbound SA with the same SPI.
func (db *DB) AddInbound(sa *SA) {
	if sa == nil {
		return
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	var next []*SA
	if in := db.inbound.Load(); in != nil {
		next = slices.DeleteFunc(slices.Clone(*in), func(o *SA) bool { return o.spi == sa.spi })
	}
	next = append(next, sa)
	db.inbound.Store(&next)
}

// RemoveInbound retires the inbound SA with this SPI, if any.
func (db *DB) RemoveInbound(spi uint32) {
	db.mu.Lock()
	defer db.mu.Unlock()
	in := db.inbound.Load()
	if in == nil || !slices.ContainsFunc(*in, func(o *SA) bool { return o.spi == spi }) {
		return
	}
	next := slices.DeleteFunc(slices.Clone(*in), func(o *SA) bool {
		if o.spi != spi {
			return false
		}
		// Keep the SA's drops in the totals, so they never go backwards.
		for _, r := range []DropReason{DropMalformed, DropReplay, DropAuth} {
			db.drops[r].Add(o.drops[r].Load())
		}
		return true
	})
	db.inbound.Store(&next)
}

// Inbound returns the inbound SAs in the order they were added (a copy).
func (db *DB) Inbound() []*SA {
	if in := db.inbound.Load(); in != nil {
		return slices.Clone(*in)
	}
	return nil
}

// CountDrop counts a packet dropped before any SA took it, typically
// DropBadSPI (no such SA) or DropMalformed (too short to hold an SPI).
func (db *DB) CountDrop(r DropReason) { db.drops.add(r) }

// Drops returns the tunnel's ESP drops by reason name, every reason
// present: those before any SA took the packet, plus those of every
// inbound SA, installed or retired, so that the totals never decrease.
func (db *DB) Drops() map[string]uint64 {
	m := db.drops.snapshot(DropBadSPI, DropMalformed, DropReplay, DropAuth)
	for _, sa := range db.Inbound() {
		for _, r := range []DropReason{DropMalformed, DropReplay, DropAuth} {
			m[r.String()] += sa.drops[r].Load()
		}
	}
	return m
}
