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
