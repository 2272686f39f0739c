package esp

import (
	"sync"
	"sync/atomic"
	"testing"
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
