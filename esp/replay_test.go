package esp

import (
	"math/rand/v2"
	"testing"
)

// TestWindowTable steps one window through RFC 4303 §3.4.3's cases; each
// step is Check then (if it passed) Update, as Open does.
func TestWindowTable(t *testing.T) {
	type step struct {
		seq  uint64
		want bool
		why  string
	}
	const W = 1024
	tests := []struct {
		name  string
		size  int
		steps []step
	}{
		{"basics", W, []step{
			{0, false, "zero is never valid"},
			{1, true, "first packet"},
			{1, false, "duplicate"},
			{2, true, "in order"},
			{3, true, "in order"},
			{2, false, "duplicate of an older one"},
			{0, false, "zero after traffic"},
		}},
		{"first packet far ahead", W, []step{
			{5000, true, "first packet need not be 1"},
			{5000 - W + 1, true, "H-W+1: oldest acceptable"},
			{5000 - W, false, "H-W: just outside"},
			{1, false, "far behind"},
			{4999, true, "inside, unseen"},
			{4999, false, "inside, seen"},
		}},
		{"edge moves with H", W, []step{
			{W + 10, true, ""},
			{11, true, "H-W+1"},
			{10, false, "H-W"},
			{W + 11, true, "H moves by one"},
			{11, false, "was H-W+1, now H-W and seen"},
			{12, true, "now H-W+1"},
		}},
		{"reordering within the window", W, []step{
			{100, true, ""}, {98, true, ""}, {99, true, ""}, {97, true, ""},
			{101, true, ""}, {96, true, ""}, {98, false, "dup"}, {100, false, "dup"},
			{64, true, "other block"}, {63, true, "other block"}, {64, false, "dup"},
		}},
		{"jump more than W clears", W, []step{
			{10, true, ""}, {11, true, ""},
			{10 + W + 1, true, "jump of W+1"},
			{11, false, "now H-W: outside"},
			{12, true, "H-W+1, its bit must have been cleared"},
			{10 + W, true, "unseen inside"},
		}},
		{"jump much more than W clears the whole ring", W, []step{
			{1, true, ""}, {2, true, ""}, {64, true, ""}, {65, true, ""}, {700, true, ""},
			{1_000_000, true, ">> W"},
			{1_000_000 - W + 1, true, "edge, unseen"},
			{1_000_000 - 1, true, ""},
			{1_000_000 - 1, false, "dup"},
			{1_000_000 + 64*17, true, "jump of exactly the ring (32 blocks > 17)"},
			{1_000_000 + 64*17 - 64, true, "a slot that aliased an old block"},
			{700, false, "ancient"},
		}},
		{"big jump then old packets", W, []step{
			{1, true, ""}, {2, true, ""}, {3, true, ""},
			{3 + 5*W, true, "big jump"},
			{4, false, "old, unseen but outside"},
			{3, false, "old, seen"},
			{3 + 5*W - 1, true, "recent, unseen"},
			{3 + 4*W + 1, true, "H-W+1"},
			{3 + 4*W, false, "H-W"},
		}},
		{"window not a multiple of 64", 100, []step{
			{200, true, ""}, {101, true, "H-W+1"}, {100, false, "H-W"},
			{150, true, ""}, {150, false, "dup"}, {201, true, ""}, {101, false, "seen, now H-W"},
			{102, true, "H-W+1"},
		}},
		{"window of one", 1, []step{
			{5, true, ""}, {5, false, "dup"}, {4, false, "H-W"}, {7, true, ""}, {6, false, "H-W"},
		}},
		{"window 64 across block boundaries", 64, []step{
			{127, true, ""}, {64, true, "H-W+1"}, {63, false, "H-W"}, {128, true, "new block"},
			{64, false, "seen"}, {65, true, "H-W+1"}, {191, true, ""}, {128, false, "H-W+1 but seen"},
			{192, true, ""}, {129, true, "H-W+1, unseen"}, {128, false, "H-W"},
		}},
		{"disabled accepts replays but not zero", 0, []step{
			{5, true, ""}, {5, true, "replay allowed"}, {1, true, "old allowed"}, {0, false, "zero"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewWindow(tt.size)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				got := w.Check(s.seq) && w.Update(s.seq)
				if got != s.want {
					t.Fatalf("step %d: seq %d accepted=%v, want %v (%s); highest %d", i, s.seq, got, s.want, s.why, w.Highest())
				}
			}
		})
	}
}

// TestWindowCheckThenUpdate: Check does not record, and Update refuses the
// second of two packets that both passed Check (the race Open guards).
func TestWindowCheckThenUpdate(t *testing.T) {
	w, _ := NewWindow(DefaultReplayWindow)
	first := w.Check(7)
	second := w.Check(7)
	if !first || !second {
		t.Fatal("Check of an unseen number failed, or Check recorded it")
	}
	if !w.Update(7) {
		t.Fatal("first Update refused")
	}
	if w.Update(7) || w.Check(7) {
		t.Fatal("second Update or later Check accepted a duplicate")
	}
	if w.Update(0) {
		t.Fatal("Update accepted zero")
	}
	w.Reset()
	if w.Highest() != 0 || !w.Check(7) || w.Size() != DefaultReplayWindow {
		t.Fatal("Reset did not empty the window")
	}
}

func TestNewWindowBounds(t *testing.T) {
	for _, n := range []int{-1, MaxReplayWindow + 1} {
		if _, err := NewWindow(n); err == nil {
			t.Errorf("NewWindow(%d) accepted", n)
		}
	}
	for _, n := range []int{0, 1, MaxReplayWindow} {
		if _, err := NewWindow(n); err != nil {
			t.Errorf("NewWindow(%d): %v", n, err)
		}
	}
}

// model is a trivially correct anti-replay filter: every accepted number
// and the highest one.
type model struct {
	size    uint64
	highest uint64
	seen    map[uint64]bool
}

func (m *model) accept(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if m.size == 0 {
		m.highest = max(m.highest, seq)
		return true
	}
	if seq <= m.highest && (m.highest-seq >= m.size || m.seen[seq]) {
		return false
	}
	m.seen[seq] = true
	m.highest = max(m.highest, seq)
	return true
}

// TestWindowMatchesModel drives the ring and the model with the same
// random sequences (mostly nearby, some replays, some jumps of every size)
// and requires the same verdict every time.
func TestWindowMatchesModel(t *testing.T) {
	sizes := []int{0, 1, 2, 63, 64, 65, 100, 127, 128, 1000, 1024, 1025, 4096}
	steps := 20000
	if testing.Short() {
		steps = 3000
	}
	for _, size := range sizes {
		for seed := range uint64(4) {
			rng := rand.New(rand.NewPCG(seed, uint64(size)))
			w, err := NewWindow(size)
			if err != nil {
				t.Fatal(err)
			}
			m := &model{size: uint64(size), seen: map[uint64]bool{}}
			var recent []uint64
			for i := range steps {
				var seq uint64
				h := m.highest
				span := uint64(size) + 2
				switch r := rng.IntN(100); {
				case r < 40: // near the edge of the window
					if base, d := h+span/2, rng.Uint64N(span+1); d < base {
						seq = base - d
					}
				case r < 60: // slightly ahead
					seq = h + 1 + rng.Uint64N(3)
				case r < 75 && len(recent) > 0: // replay of something sent
					seq = recent[rng.IntN(len(recent))]
				case r < 85: // jump up to a few windows
					seq = h + rng.Uint64N(4*span+1)
				case r < 90: // jump far beyond the ring
					seq = h + 1 + rng.Uint64N(1<<20)
				case r < 95: // far in the past
					seq = rng.Uint64N(h + 1)
				default:
					seq = uint64(rng.IntN(3)) // 0, 1, 2
				}
				recent = append(recent, seq)
				if len(recent) > 64 {
					recent = recent[1:]
				}
				check := w.Check(seq)
				got := check && w.Update(seq)
				want := m.accept(seq)
				if check != want || got != want {
					t.Fatalf("size %d seed %d step %d: seq %d (highest %d): Check %v, Check+Update %v, model %v",
						size, seed, i, seq, h, check, got, want)
				}
				if w.Highest() != m.highest {
					t.Fatalf("size %d step %d: highest %d, model %d", size, i, w.Highest(), m.highest)
				}
			}
		}
	}
}
