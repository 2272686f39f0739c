package esp

import (
	"fmt"
	"sync"
)

const (
	// DefaultReplayWindow is the seed configuration's
	// `replay window-size 1024`.
	DefaultReplayWindow = 1024
	// MaxReplayWindow bounds the ring's memory (8 KiB at this size).
	MaxReplayWindow = 1 << 16

	blockBits = 64
	blockLog  = 6
)

// Window is the anti-replay window of RFC 4303 §3.4.3, kept as RFC 6479's
// ring of 64-bit blocks: advancing the window clears whole blocks instead of
// shifting a bitmap, so a jump costs at most one pass over the ring.
//
// With highest accepted sequence number H and size W, a sequence number S is
// acceptable iff S > H, or S > H-W and S has not been seen. The ring holds
// more bits than W (whole blocks, one spare block so the block H is in never
// shares a slot with the oldest one, and a power-of-two block count so a
// slot is a mask); W itself is enforced exactly.
//
// Check is the cheap test before decryption, Update the commit after the
// ICV verified; Update checks again because another packet with the same
// number may have been accepted in between. A window of size 0 disables
// anti-replay: any non-zero sequence number passes. Zero is never valid.
// Window is safe for concurrent use; the zero Window is disabled.
type Window struct {
	mu   sync.Mutex
	size uint64
	last uint64   // highest accepted sequence number H
	ring []uint64 // bit S&63 of block (S>>6)&mask is set once S is accepted
	mask uint64
}

// NewWindow returns an empty window of size 0..MaxReplayWindow.
func NewWindow(size int) (*Window, error) {
	w := new(Window)
	if err := w.init(size); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Window) init(size int) error {
	if size < 0 || size > MaxReplayWindow {
		return fmt.Errorf("esp: replay window %d outside 0..%d", size, MaxReplayWindow)
	}
	w.size = uint64(size)
	w.last = 0
	w.ring, w.mask = nil, 0
	if size > 0 {
		blocks := 1
		for blocks < (size+blockBits-1)/blockBits+1 {
			blocks <<= 1
		}
		w.ring = make([]uint64, blocks)
		w.mask = uint64(blocks - 1)
	}
	return nil
}

// Size is the window size W; 0 means anti-replay is off.
func (w *Window) Size() int { return int(w.size) }

// Highest is the highest sequence number accepted so far (0: none).
func (w *Window) Highest() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Check reports whether seq may be accepted, without recording it.
func (w *Window) Check(seq uint64) bool {
	if seq == 0 {
		return false
	}
	w.mu.Lock()
	ok := w.check(seq)
	w.mu.Unlock()
	return ok
}

func (w *Window) check(seq uint64) bool {
	if seq > w.last || w.size == 0 {
		return true
	}
	if w.last-seq >= w.size {
		return false
	}
	return w.ring[(seq>>blockLog)&w.mask]&(1<<(seq&(blockBits-1))) == 0
}

// Infer returns the 64-bit sequence number whose low 32 bits are low, as
// an ESN receiver must (RFC 4303 Appendix A2.2): the high half of the
// highest accepted number, or the next one if low is behind the window's
// bottom (the sender has crossed a 2^32 boundary), or the previous one if
// the window spans a boundary and low lies below it. A disabled window
// infers as if it spanned half the sequence space.
func (w *Window) Infer(low uint32) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.infer(low)
}

func (w *Window) infer(low uint32) uint64 {
	size := w.size
	if size == 0 {
		size = 1 << 31
	}
	th, tl := uint32(w.last>>32), uint32(w.last)
	bottom := tl - uint32(size) + 1 // Tl - W + 1, modulo 2^32
	hi := th
	if uint64(tl) >= size-1 {
		// Case A: the window lies within one subspace of 2^32.
		if low < bottom && th != 1<<32-1 {
			hi = th + 1
		}
	} else if low >= bottom && th != 0 {
		// Case B: the window spans two subspaces and low is in the
		// lower one. In subspace 0 nothing lies below: low is ahead.
		hi = th - 1
	}
	return uint64(hi)<<32 | uint64(low)
}

// checkLow is Open's check: the full sequence number for the low 32 bits
// on the wire (inferred under ESN) and whether the window accepts it.
func (w *Window) checkLow(low uint32, esn bool) (uint64, bool) {
	seq := uint64(low)
	if !esn {
		return seq, seq != 0 && w.Check(seq)
	}
	w.mu.Lock()
	seq = w.infer(low)
	ok := seq != 0 && w.check(seq)
	w.mu.Unlock()
	return seq, ok
}

// Update records seq as accepted and moves the window forward if seq is
// the new highest; it returns false (and records nothing) if seq is no
// longer acceptable.
func (w *Window) Update(seq uint64) bool {
	if seq == 0 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.check(seq) {
		return false
	}
	if w.size == 0 {
		w.last = max(w.last, seq)
		return true
	}
	if seq > w.last {
		// Clear the blocks the window slides over; a jump larger than
		// the ring clears it all once.
		cur, next := w.last>>blockLog, seq>>blockLog
		n := min(next-cur, uint64(len(w.ring)))
		for i := cur + 1; i <= cur+n; i++ {
			w.ring[i&w.mask] = 0
		}
		w.last = seq
	}
	w.ring[(seq>>blockLog)&w.mask] |= 1 << (seq & (blockBits - 1))
	return true
}

// Reset empties the window, keeping its size.
func (w *Window) Reset() {
	w.mu.Lock()
	w.last = 0
	clear(w.ring)
	w.mu.Unlock()
}
