package ike

import "go.uber.org/zap"

// The lifecycle of an IKE SA. Every change goes through Engine.setState,
// which checks it against ikeTransitions; an unlisted change is a bug,
// logged and counted (Counters.BadTransitions), and tests fail on it.
//
//	               IKE_AUTH ok
//	Connecting ────────────────► Established ◄──────────────┐
//	    │                        │  │  │  ▲                  │ its survivor went
//	    │        lost a duplicate │  │  │  │ collision won    │
//	    │       or rekey collision│  │  │  │                  │
//	    │                        ▼  │  │  │                  │
//	    │                  Redundant│  │  Pending ◄─ peer's rekey answered
//	    │                        │  │  │             while ours was in flight
//	    │                        │  │  │ our rekey or the peer's finished
//	    │                        │  │  ▼
//	    │                        │  │ Rekeyed (children moved to the new SA)
//	    │                        ▼  ▼  │
//	    │                       Deleting (we sent a Delete)
//	    ▼                          │   │
//	   Gone ◄──────────────────────┴───┘  (removed: failure, Delete done,
//	                                       peer's Delete, INITIAL_CONTACT)
//
// Any state may go to Gone. A responder's SA is Connecting while it is
// half-open (halfopen.go).
type saState uint8

const (
	saConnecting  saState = iota // IKE_SA_INIT and IKE_AUTH under way
	saEstablished                // authenticated and in use
	saPending                    // the peer's rekey, made while ours was in flight: waits for the nonce rule (§2.8.2)
	saRedundant                  // lost a collision to survivor; whoever initiated it deletes it
	saRekeyed                    // replaced by a rekey; kept to finish its Delete exchange
	saDeleting                   // we sent a Delete for it
	saGone                       // removed from the engine; late callbacks ignore it
)

var saStateNames = [...]string{"connecting", "established", "pending", "redundant", "rekeyed", "deleting", "gone"}

func (s saState) String() string {
	if int(s) < len(saStateNames) {
		return saStateNames[s]
	}
	return "invalid"
}

// ikeTransitions lists, for each state, the states it may change to.
var ikeTransitions = map[saState][]saState{
	saConnecting:  {saEstablished, saGone},
	saEstablished: {saPending, saRedundant, saRekeyed, saDeleting, saGone},
	saPending:     {saEstablished, saGone},
	saRedundant:   {saEstablished, saRekeyed, saDeleting, saGone},
	saRekeyed:     {saDeleting, saGone},
	saDeleting:    {saGone},
}

// setState moves sa to state to, checking the transition.
func (e *Engine) setState(sa *ikeSA, to saState) {
	from := sa.state
	if from == to {
		return
	}
	ok := false
	for _, s := range ikeTransitions[from] {
		ok = ok || s == to
	}
	if !ok {
		e.counters.BadTransitions++
		e.log.Error("invalid IKE SA state transition (a bug)", append(e.saFields(sa, nil),
			zap.Stringer("from", from), zap.Stringer("to", to))...)
	}
	sa.state = to
}

// The lifecycle of a CHILD_SA, checked like the IKE SA's.
//
//	          our CREATE_CHILD_SA            its answer (ours won, or the
//	Installed ─────────────────► Rekeying ──────────────────────────► Rekeyed
//	  │  ▲  │ the peer's rekey       │  the rekey failed: back             │
//	  │  │  │ answered               ▼  to Installed, retried later        │
//	  │  └──┼────────────────────────┘                                     │
//	  │     └────────────────────────────────────────────────────────────► │
//	  │ created by the rekey that lost a collision (§2.8.1)                │
//	  ▼                                                                    ▼
//	Redundant ───────────────────────► Deleting (we sent a Delete) ──► Gone
//
// Any state may go to Gone (the peer's Delete, the IKE SA's end).
// replacedBy names the CHILD_SA that replaces a Rekeyed one; peerRekey
// the one the peer's rekey made while ours was in flight.
type childState uint8

const (
	childInstalled childState = iota // in use
	childRekeying                    // our rekey of it is in flight
	childRekeyed                     // replaced (replacedBy); waits for its Delete
	childRedundant                   // made by the rekey that lost a collision
	childDeleting                    // we sent a Delete for it
	childGone                        // removed from the data plane
)

var childStateNames = [...]string{"installed", "rekeying", "rekeyed", "redundant", "deleting", "gone"}

func (s childState) String() string {
	if int(s) < len(childStateNames) {
		return childStateNames[s]
	}
	return "invalid"
}

var childTransitions = map[childState][]childState{
	childInstalled: {childRekeying, childRekeyed, childRedundant, childDeleting, childGone},
	childRekeying:  {childInstalled, childRekeyed, childRedundant, childGone},
	childRekeyed:   {childDeleting, childGone},
	childRedundant: {childRekeyed, childDeleting, childGone},
	childDeleting:  {childGone},
}

// setChildState moves c to state to, checking the transition.
func (e *Engine) setChildState(c *childSA, to childState) {
	from := c.state
	if from == to {
		return
	}
	ok := false
	for _, s := range childTransitions[from] {
		ok = ok || s == to
	}
	if !ok {
		e.counters.BadTransitions++
		e.log.Error("invalid CHILD_SA state transition (a bug)", zap.Uint32("spi_in", c.keys.SPIIn),
			zap.Stringer("from", from), zap.Stringer("to", to))
	}
	c.state = to
}

// endRekey takes c out of Rekeying when its rekey ended without replacing
// it here: Rekeyed if the peer's rekey replaced it meanwhile, else back in
// use.
func (e *Engine) endRekey(c *childSA) {
	if c.state != childRekeying {
		return
	}
	if c.replacedBy != nil {
		e.setChildState(c, childRekeyed)
	} else {
		e.setChildState(c, childInstalled)
	}
}

// inUse: not replaced nor on its way out (it may be being rekeyed).
func (c *childSA) inUse() bool {
	return (c.state == childInstalled || c.state == childRekeying) && c.replacedBy == nil
}
