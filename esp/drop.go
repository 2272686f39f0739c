package esp

import (
	"strconv"
	"sync/atomic"
)

// DropReason says why Open refused a packet. Drops are counted, not
// returned as errors: the hot path neither allocates nor logs per packet.
type DropReason uint8

const (
	DropNone      DropReason = iota // accepted
	DropMalformed                   // too short, or a trailer/padding that is not RFC 4303's
	DropBadSPI                      // no SA has this SPI
	DropReplay                      // sequence number zero, too old, or already seen
	DropAuth                        // ICV did not verify (tampered, wrong key, or garbage)
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropNone:      "none",
	DropMalformed: "malformed",
	DropBadSPI:    "bad_spi",
	DropReplay:    "replay",
	DropAuth:      "auth",
}

// String is the reason's name in status output and JSON keys.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "drop(" + strconv.Itoa(int(r)) + ")"
}

// dropCounters counts drops by reason.
type dropCounters [numDropReasons]atomic.Uint64

func (d *dropCounters) add(r DropReason) {
	if r < numDropReasons {
		d[r].Add(1)
	}
}

// snapshot returns the counts of the given reasons by name.
func (d *dropCounters) snapshot(always ...DropReason) map[string]uint64 {
	m := make(map[string]uint64, len(always))
	for _, r := range always {
		m[r.String()] = d[r].Load()
	}
	for r := DropMalformed; r < numDropReasons; r++ {
		if n := d[r].Load(); n != 0 {
			m[r.String()] = n
		}
	}
	return m
}
