package ikeattack

import (
	"context"
	"time"
)

// Flood paces an attack: at most Rate datagrams a second, for at most
// Duration, at most Max in all (0: Rate × Duration). Behind schedule (a
// loaded machine) it catches up in bursts but never exceeds the count
// due at any moment.
type Flood struct {
	Rate     int
	Duration time.Duration
	Max      int
}

// Run calls send(i) for i = 0, 1, ... on schedule until the time, the
// count or ctx runs out, and returns how many calls it made.
func (f Flood) Run(ctx context.Context, send func(i int)) int {
	limit := f.Max
	if limit <= 0 {
		limit = int(float64(f.Rate) * f.Duration.Seconds())
	}
	start := time.Now()
	n := 0
	for n < limit && ctx.Err() == nil {
		elapsed := time.Since(start)
		if elapsed >= f.Duration {
			break
		}
		due := min(int(elapsed.Seconds()*float64(f.Rate))+1, limit)
		for ; n < due; n++ {
			send(n)
		}
		time.Sleep(time.Millisecond)
	}
	return n
}
