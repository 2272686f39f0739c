package ikev1

import (
	"sort"
	"sync"
	"sync/atomic"
)

// Exchange results, as ExchangeCount.Result says them.
const (
	ResultOK      = "ok"
	ResultFailed  = "failed"  // refused, or did not verify
	ResultTimeout = "timeout" // no answer after every retransmission
)

// ExchangeCount is how many exchanges of one kind ended one way.
type ExchangeCount struct {
	Exchange  string `json:"exchange"` // main_mode, quick_mode
	Initiated bool   `json:"initiated"`
	Result    string `json:"result"`
	Count     uint64 `json:"count"`
}

type exchangeKey struct {
	exchange  string
	initiated bool
	result    string
}

// counters are the engine's monotonic counts, for status and metrics.
type counters struct {
	mu          sync.Mutex
	exchanges   map[exchangeKey]uint64
	retransmits atomic.Uint64
	dpdFailures atomic.Uint64
}

func (c *counters) exchange(x string, initiated bool, result string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exchanges == nil {
		c.exchanges = map[exchangeKey]uint64{}
	}
	c.exchanges[exchangeKey{x, initiated, result}]++
}

// snapshot lists the exchange counts in a stable order.
func (c *counters) snapshot() []ExchangeCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ExchangeCount, 0, len(c.exchanges))
	for k, n := range c.exchanges {
		out = append(out, ExchangeCount{Exchange: k.exchange, Initiated: k.initiated, Result: k.result, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Exchange != b.Exchange {
			return a.Exchange < b.Exchange
		}
		if a.Initiated != b.Initiated {
			return a.Initiated
		}
		return a.Result < b.Result
	})
	return out
}
