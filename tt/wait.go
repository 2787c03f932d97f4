package tt

import (
	"context"
	"time"
)

// WaitUntilAfter blocks until clock reports t as definitely passed
// (Now().After(t)), the clock is unhealthy, or ctx ends. It is commit wait
// for clocks that run in real time. It returns how long it waited.
func WaitUntilAfter(ctx context.Context, c Clock, t Timestamp) (time.Duration, error) {
	start := time.Now()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		iv, err := c.Now()
		if err != nil {
			return time.Since(start), err
		}
		if iv.After(t) {
			return time.Since(start), nil
		}
		// Earliest advances at least at (1 - drift) of real time; sleep the
		// gap and check again.
		d := t.Sub(iv.Earliest) + time.Nanosecond
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-timer.C:
		}
	}
}
