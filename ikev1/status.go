package ikev1

import (
	"fmt"
	"time"

	"github.com/gresec/gresec/ike"
)

// Status is a snapshot for `status`, in the terms of IOS's
// `show crypto isakmp sa` and `show crypto ipsec sa`.
type Status struct {
	Phase1 []Phase1Status
	Phase2 []Phase2Status
	// Received counts datagrams offered; Drops those dropped, by reason.
	Received uint64
	Drops    map[string]uint64
}

// Phase1Status is one ISAKMP SA.
type Phase1Status struct {
	State     string // MM_NO_STATE, MM_SA_SETUP, MM_KEY_EXCH, QM_IDLE
	Initiator bool
	Cookies   string
	Suite     string
	PeerID    string
	Expires   time.Duration // 0 until established
}

// Phase2Status is one installed ESP SA pair.
type Phase2Status struct {
	SPIIn, SPIOut string
	Transform     string
	Expires       time.Duration
}

// Status returns the last published snapshot.
func (e *Engine) Status() Status {
	e.mu.Lock()
	s := e.status
	e.mu.Unlock()
	s.Received = e.received.Load()
	s.Drops = map[string]uint64{}
	for _, r := range ike.DropReasons() {
		if int(r) < len(e.drops) {
			if n := e.drops[r].Load(); n > 0 {
				s.Drops[r.String()] = n
			}
		}
	}
	return s
}

func (e *Engine) publish(now time.Time) {
	var s Status
	for _, p := range e.p1s {
		ps := Phase1Status{State: p.state.String(), Initiator: p.initiator, Cookies: p.spis(), Suite: p.suite.String()}
		if p.state == stateEstablished {
			ps.PeerID, ps.Expires = p.peerID.String(), p.expires.Sub(now).Truncate(time.Second)
		}
		s.Phase1 = append(s.Phase1, ps)
	}
	for _, c := range e.children {
		s.Phase2 = append(s.Phase2, Phase2Status{SPIIn: fmt.Sprintf("0x%08x", c.spiIn), SPIOut: fmt.Sprintf("0x%08x", c.spiOut),
			Transform: c.keys.Transform, Expires: c.expires.Sub(now).Truncate(time.Second)})
	}
	e.mu.Lock()
	e.status = s
	e.mu.Unlock()
}
