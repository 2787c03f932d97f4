// Package tttest provides a manual interval clock for tests.
package tttest

import (
	"fmt"
	"sync"
	"time"

	"github.com/meridiandb/meridian/tt"
)

// ManualClock is an interval clock that moves only when told to. It is safe
// for concurrent use.
type ManualClock struct {
	mu      sync.Mutex
	now     tt.Timestamp
	epsilon time.Duration
	err     error
}

// NewManualClock returns a clock whose true time is now and whose
// uncertainty is epsilon.
func NewManualClock(now tt.Timestamp, epsilon time.Duration) *ManualClock {
	return &ManualClock{now: now, epsilon: epsilon}
}

// Now returns [now-ε, now+ε], or the error set by SetUnhealthy.
func (c *ManualClock) Now() (tt.Interval, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return tt.Interval{}, c.err
	}
	return tt.Interval{Earliest: c.now.Add(-c.epsilon), Latest: c.now.Add(c.epsilon)}, nil
}

// Advance moves true time forward by d.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Set moves true time to t.
func (c *ManualClock) Set(t tt.Timestamp) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// True returns the clock's true time.
func (c *ManualClock) True() tt.Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// SetEpsilon changes the uncertainty.
func (c *ManualClock) SetEpsilon(eps time.Duration) {
	c.mu.Lock()
	c.epsilon = eps
	c.mu.Unlock()
}

// SetUnhealthy makes Now fail with an error wrapping tt.ErrUnhealthy and the
// reason; an empty reason makes the clock healthy again.
func (c *ManualClock) SetUnhealthy(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if reason == "" {
		c.err = nil
		return
	}
	c.err = fmt.Errorf("%w: %s", tt.ErrUnhealthy, reason)
}
