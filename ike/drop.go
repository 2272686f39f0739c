package ike

import "sync/atomic"

// DropReason says why a datagram was not processed. Every datagram read
// from the socket is either processed or counted under exactly one reason.
type DropReason uint8

const (
	DropUnknownSource      DropReason = iota // not from the configured peer
	DropQueueFull                            // the engine's queue was full
	DropMalformed                            // not an IKEv2 message, or does not decode
	DropUnknownSA                            // names no IKE SA of ours
	DropMessageID                            // outside the message ID window
	DropIntegrity                            // failed the ICV (forged, or not for this SA)
	DropRetransmitMismatch                   // reuses an answered message ID with other bytes
	DropCookie                               // a wrong or stale COOKIE
	DropBadKE                                // KE payload not a valid public value of its group
	DropUnexpected                           // a response to no request of ours, or the wrong exchange
	DropRateLimited                          // an unprotected notification beyond the hint rate
	// DropNoEngine: read by the socket while no engine ran (start, reload).
	// The tunnel, which owns the socket, counts these; the engine's own
	// count stays 0.
	DropNoEngine
	// DropFragment: an authentic IKE fragment (RFC 7383) not kept: a
	// duplicate, one with fewer Total Fragments than the message being
	// reassembled, or one of a request already answered (§2.6.1).
	DropFragment
	// DropFragmentLimit: a fragment beyond the reassembly bounds (count or
	// bytes); the message being reassembled is discarded.
	DropFragmentLimit
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropUnknownSource:      "unknown_source",
	DropQueueFull:          "queue_full",
	DropMalformed:          "malformed",
	DropUnknownSA:          "unknown_sa",
	DropMessageID:          "message_id",
	DropIntegrity:          "integrity",
	DropRetransmitMismatch: "retransmit_mismatch",
	DropCookie:             "cookie",
	DropBadKE:              "bad_ke",
	DropUnexpected:         "unexpected",
	DropRateLimited:        "rate_limited",
	DropNoEngine:           "no_engine",
	DropFragment:           "fragment",
	DropFragmentLimit:      "fragment_limit",
}

func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// DropReasons lists every reason, in order, for renderers that show zeros.
func DropReasons() []DropReason {
	rs := make([]DropReason, numDropReasons)
	for i := range rs {
		rs[i] = DropReason(i)
	}
	return rs
}

// dropCounts is safe for concurrent use: the socket reader counts the
// drops before the queue, the engine goroutine the rest.
type dropCounts [numDropReasons]atomic.Uint64

func (d *dropCounts) add(r DropReason) { d[r].Add(1) }

func (d *dropCounts) snapshot() (total uint64, by map[string]uint64) {
	by = make(map[string]uint64, numDropReasons)
	for i := range d {
		v := d[i].Load()
		by[DropReason(i).String()] = v
		total += v
	}
	return total, by
}
