package esp

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func saWithSPI(t testing.TB, spi uint32) *SA {
	t.Helper()
	sa, err := NewSA(spi, testKey256, 64)
	if err != nil {
		t.Fatal(err)
	}
	return sa
}

func TestDB(t *testing.T) {
	var db DB
	if db.Lookup(1) != nil || db.Outbound() != nil || db.Inbound() != nil {
		t.Fatal("zero DB is not empty")
	}
	a, b, c := saWithSPI(t, 0x100), saWithSPI(t, 0x200), saWithSPI(t, 0x300)
	db.AddInbound(a)
	db.AddInbound(b)
	db.AddInbound(nil)
	if db.Lookup(0x100) != a || db.Lookup(0x200) != b || db.Lookup(0x300) != nil {
		t.Fatal("Lookup after two adds")
	}
	snap := db.Inbound()
	if len(snap) != 2 || snap[0] != a || snap[1] != b {
		t.Fatalf("Inbound = %v", snap)
	}
	snap[0] = c // a snapshot is the caller's
	if db.Lookup(0x100) != a {
		t.Fatal("writing to the snapshot changed the DB")
	}

	a2 := saWithSPI(t, 0x100) // rekey with a colliding SPI replaces
	db.AddInbound(a2)
	if db.Lookup(0x100) != a2 || len(db.Inbound()) != 2 {
		t.Fatal("AddInbound with an existing SPI did not replace it")
	}
	db.RemoveInbound(0x999) // absent: no-op
	db.RemoveInbound(0x100)
	if db.Lookup(0x100) != nil || db.Lookup(0x200) != b || len(db.Inbound()) != 1 {
		t.Fatal("RemoveInbound")
	}

	if old := db.SetOutbound(a); old != nil {
		t.Fatal("first SetOutbound returned an old SA")
	}
	if old := db.SetOutbound(c); old != a || db.Outbound() != c {
		t.Fatal("SetOutbound did not swap")
	}

	db.CountDrop(DropBadSPI)
	db.CountDrop(DropBadSPI)
	db.CountDrop(DropMalformed)
	d := db.Drops()
	if d["bad_spi"] != 2 || d["malformed"] != 1 || len(d) != 4 {
		t.Errorf("Drops = %v", d)
	}
	db.CountDrop(DropAuth)
	db.CountDrop(DropReason(99)) // ignored, not a panic
	if d := db.Drops(); d["auth"] != 1 || len(d) != 4 {
		t.Errorf("Drops = %v", d)
	}
	if d := (&DB{}).Drops(); len(d) != 4 || d["bad_spi"] != 0 || d["replay"] != 0 {
		t.Errorf("fresh Drops = %v", d)
	}
}

// TestDBConcurrent: readers on the hot path see either the old or the new
// set while writers rekey (run with -race); an SA that was never removed
// is always found.
func TestDBConcurrent(t *testing.T) {
	var db DB
	stable := saWithSPI(t, 0xAAAA)
	db.AddInbound(stable)
	db.SetOutbound(stable)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				if db.Lookup(0xAAAA) != stable {
					t.Error("stable SA not found during a rekey")
					return
				}
				if sa := db.Lookup(0xBBBB); sa != nil && sa.SPI() != 0xBBBB {
					t.Error("Lookup returned the wrong SA")
					return
				}
				if db.Outbound() == nil {
					t.Error("no outbound SA during a swap")
					return
				}
			}
		})
	}
	for i := range 2000 {
		sa := saWithSPI(t, 0xBBBB)
		db.AddInbound(sa)
		db.SetOutbound(sa)
		if i%2 == 0 {
			db.RemoveInbound(0xBBBB)
		}
		db.CountDrop(DropBadSPI)
		_ = db.Inbound()
	}
	stop.Store(true)
	wg.Wait()
	if db.Drops()["bad_spi"] != 2000 {
		t.Error("concurrent CountDrop lost counts")
	}
}

// TestDBDropsSurviveRemoval: an SA's drops stay in the totals after a
// rekey retires it, so Prometheus counters never go backwards.
func TestDBDropsSurviveRemoval(t *testing.T) {
	var db DB
	sa, err := NewSA(0x1234, make([]byte, 36), 64)
	if err != nil {
		t.Fatal(err)
	}
	db.AddInbound(sa)
	sa.drops.add(DropAuth)
	sa.drops.add(DropReplay)
	sa.drops.add(DropReplay)
	if d := db.Drops(); d["auth"] != 1 || d["replay"] != 2 {
		t.Fatalf("live SA: Drops = %v", d)
	}
	db.RemoveInbound(0x1234)
	if d := db.Drops(); d["auth"] != 1 || d["replay"] != 2 {
		t.Errorf("after removal: Drops = %v, want auth 1 replay 2", d)
	}
}

// TestDBRetireInbound: a retired SA keeps accepting (Lookup finds it)
// for its grace, behind the installed ones, then goes; at most
// MaxDraining drain at once, the one retired first leaving first.
func TestDBRetireInbound(t *testing.T) {
	var db DB
	cur, old := saWithSPI(t, 0x2), saWithSPI(t, 0x1)
	db.AddInbound(old)
	db.AddInbound(cur)
	db.RetireInbound(0x999, time.Hour) // absent: no-op
	db.RetireInbound(0x1, time.Hour)
	if db.Lookup(0x1) != old || db.Lookup(0x2) != cur {
		t.Fatal("Lookup does not find a draining SA")
	}
	if in := db.Inbound(); len(in) != 1 || in[0] != cur {
		t.Fatalf("Inbound = %v, want only the installed SA", in)
	}
	if d := db.Draining(); len(d) != 1 || d[0].SA != old || time.Until(d[0].Until) < 59*time.Minute {
		t.Fatalf("Draining = %+v", d)
	}
	if in := *db.inbound.Load(); in[0] != cur {
		t.Error("the scan does not try the installed SA first")
	}
	db.RetireInbound(0x1, time.Hour) // already draining: no-op
	if len(db.Draining()) != 1 {
		t.Fatal("retiring twice")
	}

	// The cap: the oldest retirements go first, their drops kept.
	var all []*SA
	for spi := uint32(0x10); spi < 0x10+MaxDraining+2; spi++ {
		sa := saWithSPI(t, spi)
		sa.drops.add(DropReplay)
		all = append(all, sa)
		db.AddInbound(sa)
		db.RetireInbound(spi, time.Hour)
	}
	d := db.Draining()
	if len(d) != MaxDraining || d[0].SA != all[len(all)-1] || db.Lookup(0x1) != nil || db.Lookup(0x10) != nil || db.Lookup(0x11) != nil {
		t.Fatalf("after %d retirements: %d draining, newest first %v", len(all)+1, len(d), d[0].SA == all[len(all)-1])
	}
	if got := db.Drops()["replay"]; got != uint64(len(all)) {
		t.Errorf("replay drops %d, want %d (evicted SAs' drops kept)", got, len(all))
	}

	// Re-adding a draining SPI installs the new SA; removing one ends its
	// drain at once.
	again := saWithSPI(t, 0x15)
	db.AddInbound(again)
	if db.Lookup(0x15) != again || len(db.Draining()) != MaxDraining-1 {
		t.Error("AddInbound did not replace the draining SA with its SPI")
	}
	db.RemoveInbound(0x14)
	if db.Lookup(0x14) != nil {
		t.Error("RemoveInbound left a draining SA")
	}

	// Grace ends.
	short := saWithSPI(t, 0x99)
	db.AddInbound(short)
	db.RetireInbound(0x99, 20*time.Millisecond)
	if db.Lookup(0x99) != short {
		t.Fatal("not draining")
	}
	deadline := time.Now().Add(5 * time.Second)
	for db.Lookup(0x99) != nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if db.Lookup(0x99) != nil {
		t.Fatal("a draining SA outlived its grace")
	}
	db.RetireInbound(0x2, 0) // no grace: removed at once
	if db.Lookup(0x2) != nil {
		t.Fatal("RetireInbound with no grace kept the SA")
	}
	db.FlushDraining()
	if len(db.Draining()) != 0 || len(*db.inbound.Load()) != 1 || db.Lookup(0x15) != again {
		t.Error("FlushDraining")
	}
	if got := db.Drops()["replay"]; got != uint64(len(all)) {
		t.Errorf("replay drops %d after the flush, want %d", got, len(all))
	}
}

// TestDBRetireConcurrent: lookups during retirements and expiries (run
// with -race) always find the installed SA.
func TestDBRetireConcurrent(t *testing.T) {
	var db DB
	stable := saWithSPI(t, 0xAAAA)
	db.AddInbound(stable)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			if db.Lookup(0xAAAA) != stable {
				t.Error("installed SA not found during retirements")
				return
			}
			_ = db.Lookup(0xBBBB)
			_ = db.Drops()
		}
	})
	for i := range 500 {
		db.AddInbound(saWithSPI(t, 0xBBBB+uint32(i%8)))
		db.RetireInbound(0xBBBB+uint32(i%8), time.Duration(i%3)*time.Millisecond)
		_ = db.Draining()
	}
	time.Sleep(10 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	db.FlushDraining()
}

// BenchmarkLookup is the hot path's SA lookup: the installed SA found
// first while MaxDraining retired SAs wait behind it; no allocation.
func BenchmarkLookup(b *testing.B) {
	var db DB
	for spi := uint32(1); spi <= MaxDraining; spi++ {
		db.AddInbound(saWithSPI(b, spi))
		db.RetireInbound(spi, time.Hour)
	}
	cur := saWithSPI(b, 0x100)
	db.AddInbound(cur)
	b.ReportAllocs()
	for b.Loop() {
		if db.Lookup(0x100) != cur {
			b.Fatal("lookup")
		}
	}
	db.FlushDraining()
}
