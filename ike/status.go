package ike

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// The engine's status is the one model of its state: tunnel.Status embeds
// Counters and ExchangeCount as they are (their JSON names are defined
// here), and `gresec status`, its --json and the Prometheus metrics all
// render that one snapshot. A counter added to Counters must reach all
// three; cmd/gresec's TestEveryIKECounterIsRendered fails until it does.

// Status is a snapshot for `gresec status`.
type Status struct {
	State       State
	SPIi, SPIr  uint64
	Suite       string
	ESPSuite    string
	Established time.Time
	RekeyAt     time.Time // when we will next rekey the IKE SA (zero if not scheduled)
	Children    []ChildStatus
	LastError   string
	HalfOpen    int // responder IKE SAs awaiting IKE_AUTH
	NAT         NATStatus
	Counters    Counters
}

// State sums up the IKE SA that Status describes (Engine.primary). The
// names of the two SA states are those of saConnecting and saEstablished
// (state.go); a test holds them equal.
type State string

const (
	StateIdle        State = "idle"        // no IKE SA
	StateConnecting  State = "connecting"  // IKE_SA_INIT or IKE_AUTH under way
	StateEstablished State = "established" // authenticated (it may be being rekeyed or deleted)
)

// States lists every State, for renderers that show each one.
func States() []State { return []State{StateIdle, StateConnecting, StateEstablished} }

func (s State) String() string { return string(s) }

// ChildStatus describes one installed CHILD_SA.
type ChildStatus struct {
	SPIIn, SPIOut uint32
	State         string // childState.String(): installed, rekeying, rekeyed, redundant, deleting
	Transform     string
	Installed     time.Time
	RekeyAt       time.Time // when we will rekey this CHILD_SA by time (zero: never)
	ExpiresAt     time.Time // hard expiry (lifetime; zero: none)
	LifetimeBytes uint64    // byte limit (0: none)
}

// Counters count what happened, bad input included. Received counts every
// datagram read from the socket; each one not processed counts once in
// Dropped and, by reason, in Drops. The JSON names are those of
// `gresec status --json` ("ike"."counters").
type Counters struct {
	Received    uint64 `json:"received"` // datagrams read from the socket
	Sent        uint64 `json:"sent"`     // datagrams sent, retransmissions included
	Retransmits uint64 `json:"retransmits"`
	Dropped     uint64 `json:"dropped"`
	// Drops break Dropped down by reason (DropReason.String), every reason
	// present.
	Drops          map[string]uint64 `json:"drops"`
	InvalidSyntax  uint64            `json:"invalid_syntax"` // requests that decrypted but did not parse (answered INVALID_SYNTAX)
	AuthFailures   uint64            `json:"auth_failures"`
	Rekeys         uint64            `json:"rekeys"`          // IKE and CHILD SA rekeys completed
	DPDFailures    uint64            `json:"dpd_failures"`    // liveness checks the peer did not answer
	NATKeepalives  uint64            `json:"nat_keepalives"`  // NAT keepalives sent (RFC 3948 §2.3)
	NATRebinds     uint64            `json:"nat_rebinds"`     // times we followed the peer's NAT to a new mapping
	BadTransitions uint64            `json:"bad_transitions"` // invalid SA state changes: bugs (state.go)
	// IKE fragmentation (RFC 7383): fragments sent (retransmissions
	// included), authentic fragments received, and messages reassembled.
	FragmentsSent        uint64 `json:"fragments_sent"`
	FragmentsReceived    uint64 `json:"fragments_received"`
	FragmentsReassembled uint64 `json:"fragments_reassembled"`
	// Exchanges counts finished exchanges; Status returns a copy. JSON
	// carries it as the sorted list ExchangeCounts ("ike"."exchanges").
	Exchanges map[ExchangeKey]uint64 `json:"-"`
}

// ExchangeKey classifies one finished exchange.
type ExchangeKey struct {
	Exchange  string // "IKE_SA_INIT", "IKE_AUTH", "CREATE_CHILD_SA", "INFORMATIONAL"
	Initiated bool   // we sent the request
	// Result is "ok", the error notify that ended it ("NO_PROPOSAL_CHOSEN",
	// "AUTHENTICATION_FAILED", "TS_UNACCEPTABLE", "INVALID_KE_PAYLOAD",
	// "TEMPORARY_FAILURE", ...), "COOKIE" for a cookie demand, or "timeout".
	Result string
}

// ExchangeCount is how many exchanges of one kind ended one way: one entry
// of Counters.Exchanges, as JSON and the renderers show it.
type ExchangeCount struct {
	Exchange  string `json:"exchange"`
	Initiated bool   `json:"initiated"`
	Result    string `json:"result"`
	Count     uint64 `json:"count"`
}

// ExchangeCounts lists Exchanges sorted by exchange, result, then
// answered before initiated.
func (c *Counters) ExchangeCounts() []ExchangeCount {
	var out []ExchangeCount
	for k, n := range c.Exchanges {
		out = append(out, ExchangeCount{Exchange: k.Exchange, Initiated: k.Initiated, Result: k.Result, Count: n})
	}
	slices.SortFunc(out, func(a, b ExchangeCount) int {
		return cmp.Or(cmp.Compare(a.Exchange, b.Exchange), cmp.Compare(a.Result, b.Result), boolCmp(a.Initiated, b.Initiated))
	})
	return out
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// Status returns a snapshot of the engine's state. The Exchanges map is
// the caller's own copy.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.status
	s.Children = append([]ChildStatus(nil), s.Children...)
	s.Counters.Exchanges = maps.Clone(s.Counters.Exchanges)
	if s.Counters.Exchanges == nil {
		s.Counters.Exchanges = map[ExchangeKey]uint64{}
	}
	// Live: the socket reader counts these without the engine goroutine.
	s.Counters.Received = e.in.received.Load()
	if n := e.in.cookiesSent.Load(); n > 0 {
		s.Counters.Sent += n
		s.Counters.Exchanges[ExchangeKey{Exchange: IKE_SA_INIT.String(), Result: "COOKIE"}] += n
	}
	s.Counters.Dropped, s.Counters.Drops = e.drops.snapshot()
	return s
}

// ExportKeys returns a copy of the keys of every live IKE SA and CHILD_SA,
// for `gresec keys --wireshark`. Safe from any goroutine; the caller owns
// (and may Wipe) the copy.
func (e *Engine) ExportKeys() ExportedKeys {
	e.mu.Lock()
	defer e.mu.Unlock()
	return copyKeys(e.keys)
}

func copyKeys(k ExportedKeys) ExportedKeys {
	var out ExportedKeys
	for _, x := range k.IKE {
		x.SKd, x.SKai, x.SKar = clone(x.SKd), clone(x.SKai), clone(x.SKar)
		x.SKei, x.SKer, x.SKpi, x.SKpr = clone(x.SKei), clone(x.SKer), clone(x.SKpi), clone(x.SKpr)
		out.IKE = append(out.IKE, x)
	}
	for _, c := range k.Children {
		c.KeyIn, c.KeyOut = clone(c.KeyIn), clone(c.KeyOut)
		out.Children = append(out.Children, c)
	}
	return out
}

// primary is the IKE SA that Status describes: the one in use, or, while
// none is, the one being set up.
func (e *Engine) primary() *ikeSA {
	var best *ikeSA
	for _, sa := range e.sas {
		if sa.usable() && (best == nil || loses(best.ni, best.nr, sa.ni, sa.nr)) {
			best = sa
		}
	}
	if best != nil {
		return best
	}
	for _, sa := range e.sas {
		if sa.state != saConnecting {
			return sa
		}
	}
	for _, sa := range e.sas {
		if sa.initiator {
			return sa
		}
	}
	return nil
}

func (e *Engine) publish() {
	e.noteInitiating()
	s := Status{State: StateIdle, LastError: e.lastErr, Counters: e.counters, HalfOpen: e.half.len()}
	s.Counters.Exchanges = maps.Clone(e.counters.Exchanges)
	s.NAT = e.natStatus(e.primary())
	if sa := e.primary(); sa != nil {
		s.State = StateConnecting
		s.SPIi, s.SPIr = sa.spiI, sa.spiR
		if sa.state != saConnecting {
			s.State = StateEstablished
			s.Established = sa.establishedAt
			s.Suite = sa.suite.String()
			if sa.usable() && e.cfg.Lifetime > 0 {
				s.RekeyAt = sa.rekeyAt
				if !sa.retryRekey.IsZero() && sa.retryRekey.After(s.RekeyAt) {
					s.RekeyAt = sa.retryRekey
				}
			}
		}
	}
	for _, sa := range e.sas {
		for _, c := range sa.children {
			s.ESPSuite = c.keys.Transform
			cs := ChildStatus{SPIIn: c.keys.SPIIn, SPIOut: c.keys.SPIOut, State: c.state.String(), Transform: c.keys.Transform,
				Installed: c.installed, ExpiresAt: c.expiresAt, LifetimeBytes: c.keys.LifetimeBytes}
			if c.inUse() {
				cs.RekeyAt = c.rekeyAt
				if !c.retryRekey.IsZero() && c.retryRekey.After(cs.RekeyAt) {
					cs.RekeyAt = c.retryRekey
				}
			}
			s.Children = append(s.Children, cs)
		}
	}
	var keys ExportedKeys
	fresh := false
	if e.keyGen != e.keysGen {
		keys, fresh = e.exportKeys(), true
	}
	e.mu.Lock()
	e.status = s
	var old ExportedKeys
	if fresh {
		old, e.keys, e.keysGen = e.keys, keys, e.keyGen
	}
	e.mu.Unlock()
	old.Wipe()
}

// exportKeys copies the live keys (engine goroutine).
func (e *Engine) exportKeys() ExportedKeys {
	var k ExportedKeys
	for _, sa := range e.sas {
		if !sa.keyed() {
			continue
		}
		k.IKE = append(k.IKE, IKEKeys{SPIi: sa.spiI, SPIr: sa.spiR, Encr: sa.suite.EncrName(), Integ: sa.suite.IntegName(),
			SKei: clone(sa.keys.SKei), SKer: clone(sa.keys.SKer), SKai: clone(sa.keys.SKai), SKar: clone(sa.keys.SKar)})
		for _, c := range sa.children {
			ck := c.keys
			ck.KeyIn, ck.KeyOut = clone(ck.KeyIn), clone(ck.KeyOut)
			k.Children = append(k.Children, ck)
		}
	}
	return k
}
