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

// TestWindowInfer walks RFC 4303 Appendix A2.2's two cases for the high
// half of an ESN sequence number.
func TestWindowInfer(t *testing.T) {
	const W = 1024
	tests := []struct {
		highest uint64
		low     uint32
		want    uint64
		why     string
	}{
		{0, 1, 1, "nothing seen: subspace 0"},
		{0, 0xFFFFFFFF, 0xFFFFFFFF, "nothing seen: no subspace below 0"},
		{5000, 4000, 4000, "case A, in the window"},
		{5000, 3977, 3977, "case A, the window's bottom"},
		{5000, 3976, 1<<32 + 3976, "case A, below the bottom: next subspace"},
		{5000, 9000, 9000, "case A, ahead"},
		{1<<32 - 1, 0, 1 << 32, "case A at the top: the boundary"},
		{1<<32 - 1, 5, 1<<32 + 5, "case A at the top: just past"},
		{1<<32 - 1, 0xFFFFFC01, 0xFFFFFC01, "case A at the top: bottom"},
		{1<<32 + 10, 0xFFFFFFF0, 0xFFFFFFF0, "case B: the lower subspace"},
		{1<<32 + 10, 0xFFFFFC0B, 0xFFFFFC0B, "case B: the window's bottom"},
		{1<<32 + 10, 0xFFFFFC0A, 2<<32 - 0x3F6, "case B: below the bottom is ahead"},
		{1<<32 + 10, 3, 1<<32 + 3, "case B: in the window, upper subspace"},
		{1<<32 + 10, 3000, 1<<32 + 3000, "case B: ahead"},
		{7<<32 + 1022, 0xFFFFFFFF, 6<<32 + 0xFFFFFFFF, "case B, Tl = W-2"},
		{7<<32 + 1023, 0xFFFFFFFF, 7<<32 + 0xFFFFFFFF, "case A, Tl = W-1: the bottom is 0, nothing is below it"},
		{7<<32 + 1023, 0, 7 << 32, "case A, Tl = W-1: the bottom"},
	}
	for _, tt := range tests {
		w, _ := NewWindow(W)
		if tt.highest != 0 && !w.Update(tt.highest) {
			t.Fatal("Update")
		}
		if got := w.Infer(tt.low); got != tt.want {
			t.Errorf("highest %#x, low %#x: %#x, want %#x (%s)", tt.highest, tt.low, got, tt.want, tt.why)
		}
	}
	// A disabled window infers around the highest number, half the
	// space either way.
	w, _ := NewWindow(0)
	w.Update(3<<32 + 10)
	for low, want := range map[uint32]uint64{5: 3<<32 + 5, 0x7FFFFFFF: 3<<32 + 0x7FFFFFFF, 0x80000010: 2<<32 + 0x80000010} {
		if got := w.Infer(low); got != want {
			t.Errorf("disabled window, low %#x: %#x, want %#x", low, got, want)
		}
	}
}

// TestWindowESNMatchesModel drives an ESN window with the low halves of a
// stream that crosses several 2^32 boundaries (reordered within the
// window, with replays and jumps) and compares with the model fed the
// true 64-bit numbers. Only numbers the RFC's inference can place are
// sent: those above the window's bottom and less than 2^31 ahead.
func TestWindowESNMatchesModel(t *testing.T) {
	for _, size := range []int{64, 1000, 1024, 4096} {
		rng := rand.New(rand.NewPCG(uint64(size), 4303))
		w, _ := NewWindow(size)
		m := &model{size: uint64(size), seen: map[uint64]bool{}}
		next := uint64(1<<32 - 3*uint64(size))
		crossed := 0
		for i := range 50000 {
			var seq uint64
			h := m.highest
			switch r := rng.IntN(100); {
			case r < 60 || h == 0:
				seq = next
				next++
			case r < 80: // reordered or replayed, inside the window
				seq = h - rng.Uint64N(uint64(size))
			case r < 95: // a gap
				next += rng.Uint64N(3 * uint64(size))
				seq = next
				next++
			default: // a big jump, at most a quarter of the space
				next += rng.Uint64N(1 << 30)
				seq = next
				next++
			}
			if seq == 0 {
				continue
			}
			got, ok := w.checkLow(uint32(seq), true)
			if got != seq {
				t.Fatalf("size %d step %d: low %#x inferred as %#x, true %#x (highest %#x)", size, i, uint32(seq), got, seq, h)
			}
			accepted := ok && w.Update(got)
			if want := m.accept(seq); accepted != want {
				t.Fatalf("size %d step %d: seq %#x accepted %v, model %v", size, i, seq, accepted, want)
			}
			if m.highest>>32 != h>>32 {
				crossed++
			}
		}
		if crossed < 5 {
			t.Errorf("size %d: the stream crossed only %d boundaries", size, crossed)
		}
	}
}
