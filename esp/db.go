package esp

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MaxDraining is how many retired inbound SAs a DB keeps accepting packets
// at once (RetireInbound). A peer that rekeys faster than the grace period
// cannot grow the list: past this many, the one retired longest ago goes
// first. Four covers a rekey every 1.25 s with the default 5 s grace.
const MaxDraining = 4

// DB is the SA database of one tunnel: the inbound SAs by SPI (several at
// once while a rekey makes the new SA before breaking the old, and retired
// ones still draining the peer's last packets) and the current outbound
// SA. Readers (Lookup, Outbound) are on the hot path and take no lock: they
// load an immutable slice that writers replace. A linear scan over the few
// SAs of a rekey beats a map and does not allocate; the installed SAs come
// first in it, so that retired ones cost nothing until a packet is for them.
// The zero DB is empty and ready to use.
type DB struct {
	mu       sync.Mutex // serialises writers; guards live and draining
	live     []*SA      // installed, in the order they were added
	draining []drainingSA
	inbound  atomic.Pointer[[]*SA] // live, then draining: what Lookup scans
	out      atomic.Pointer[SA]
	drops    dropCounters
	// watch learns of every inbound SPI that appears or goes (Watch).
	watch func(spi uint32, present bool)
}

// Watch makes the DB call f, under its lock, when an inbound SA appears
// (present) or goes (removed, or its drain ended): a daemon that shares
// one socket among tunnels keeps its SPI dispatch table with it. Call it
// before the first AddInbound; f must not call the DB.
func (db *DB) Watch(f func(spi uint32, present bool)) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.watch = f
}

// noteSPI tells the watcher; mu is held.
func (db *DB) noteSPI(spi uint32, present bool) {
	if db.watch != nil {
		db.watch(spi, present)
	}
}

// drainingSA is an inbound SA that its CHILD_SA's deletion retired but
// that still accepts the packets the peer sealed before it switched.
type drainingSA struct {
	sa    *SA
	until time.Time
	timer *time.Timer
}

// DrainingSA is a retired inbound SA and when it goes, for status.
type DrainingSA struct {
	SA    *SA
	Until time.Time
}

// Lookup returns the inbound SA with this SPI, installed or draining, or
// nil.
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

// AddInbound installs sa, replacing any inbound SA with the same SPI,
// draining or not.
func (db *DB) AddInbound(sa *SA) {
	if sa == nil {
		return
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.remove(sa.spi)
	db.live = append(db.live, sa)
	db.noteSPI(sa.spi, true)
	db.publish()
}

// RemoveInbound removes the inbound SA with this SPI at once, installed
// or draining, if any.
func (db *DB) RemoveInbound(spi uint32) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.remove(spi) {
		db.publish()
	}
}

// RetireInbound stops counting the installed inbound SA with this SPI as
// installed but lets it accept packets for grace more (strongSwan's
// delete_rekeyed_delay): packets the peer sealed with it before switching
// to the new SA may still be in its send batches, on the wire or queued
// behind the DELETE that retired it. Then it is removed. A grace of zero
// or less removes it at once.
func (db *DB) RetireInbound(spi uint32, grace time.Duration) {
	if grace <= 0 {
		db.RemoveInbound(spi)
		return
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	i := slices.IndexFunc(db.live, func(o *SA) bool { return o.spi == spi })
	if i < 0 {
		return
	}
	sa := db.live[i]
	db.live = slices.Delete(db.live, i, i+1)
	d := drainingSA{sa: sa, until: time.Now().Add(grace)}
	d.timer = time.AfterFunc(grace, func() { db.expire(sa) })
	// Newest first: the SA retired last is the likeliest to see packets.
	db.draining = slices.Insert(db.draining, 0, d)
	for len(db.draining) > MaxDraining {
		db.drop(len(db.draining) - 1)
	}
	db.publish()
}

// FlushDraining removes every draining SA now, for a tunnel that stops.
func (db *DB) FlushDraining() {
	db.mu.Lock()
	defer db.mu.Unlock()
	if len(db.draining) == 0 {
		return
	}
	for len(db.draining) > 0 {
		db.drop(len(db.draining) - 1)
	}
	db.publish()
}

// expire removes sa when its grace ends, unless it is gone already.
func (db *DB) expire(sa *SA) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if i := slices.IndexFunc(db.draining, func(d drainingSA) bool { return d.sa == sa }); i >= 0 {
		db.drop(i)
		db.publish()
	}
}

// remove takes the SA with this SPI out of either list; mu is held. It
// reports whether there was one.
func (db *DB) remove(spi uint32) bool {
	if i := slices.IndexFunc(db.live, func(o *SA) bool { return o.spi == spi }); i >= 0 {
		db.fold(db.live[i])
		db.noteSPI(db.live[i].spi, false)
		db.live = slices.Delete(db.live, i, i+1)
		return true
	}
	if i := slices.IndexFunc(db.draining, func(d drainingSA) bool { return d.sa.spi == spi }); i >= 0 {
		db.drop(i)
		return true
	}
	return false
}

// drop removes draining SA i; mu is held.
func (db *DB) drop(i int) {
	db.draining[i].timer.Stop()
	db.fold(db.draining[i].sa)
	db.noteSPI(db.draining[i].sa.spi, false)
	db.draining = slices.Delete(db.draining, i, i+1)
}

// fold keeps a removed SA's drops in the totals, so they never go
// backwards; mu is held.
func (db *DB) fold(sa *SA) {
	for _, r := range []DropReason{DropMalformed, DropReplay, DropAuth} {
		db.drops[r].Add(sa.drops[r].Load())
	}
}

// publish makes the lists what Lookup sees; mu is held. The slice is new
// each time, never written after it is stored.
func (db *DB) publish() {
	next := make([]*SA, 0, len(db.live)+len(db.draining))
	next = append(next, db.live...)
	for _, d := range db.draining {
		next = append(next, d.sa)
	}
	db.inbound.Store(&next)
}

// Inbound returns the installed inbound SAs in the order they were added
// (a copy); draining ones are not among them.
func (db *DB) Inbound() []*SA {
	db.mu.Lock()
	defer db.mu.Unlock()
	return slices.Clone(db.live)
}

// Draining returns the retired inbound SAs still accepting packets,
// the one retired last first.
func (db *DB) Draining() []DrainingSA {
	db.mu.Lock()
	defer db.mu.Unlock()
	var ds []DrainingSA
	for _, d := range db.draining {
		ds = append(ds, DrainingSA{SA: d.sa, Until: d.until})
	}
	return ds
}

// CountDrop counts a packet dropped before any SA took it, typically
// DropBadSPI (no such SA) or DropMalformed (too short to hold an SPI).
func (db *DB) CountDrop(r DropReason) { db.drops.add(r) }

// Drops returns the tunnel's ESP drops by reason name, every reason
// present: those before any SA took the packet, plus those of every
// inbound SA, installed, draining or removed, so that the totals never
// decrease.
func (db *DB) Drops() map[string]uint64 {
	db.mu.Lock() // no SA is folded while we add up
	defer db.mu.Unlock()
	m := db.drops.snapshot(DropBadSPI, DropMalformed, DropReplay, DropAuth)
	add := func(sa *SA) {
		for _, r := range []DropReason{DropMalformed, DropReplay, DropAuth} {
			m[r.String()] += sa.drops[r].Load()
		}
	}
	for _, sa := range db.live {
		add(sa)
	}
	for _, d := range db.draining {
		add(d.sa)
	}
	return m
}
