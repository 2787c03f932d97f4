package tt

import (
	"fmt"
	"sync"
	"time"
)

// System is an interval clock for machines without an NTP server: it reads
// the system clock and assumes a fixed ε that nothing measures. It is the
// demo's default and says so wherever it is printed; production nodes use
// NTP.
type System struct {
	epsilon time.Duration

	mu    sync.Mutex
	fence *FenceInfo
}

// NewSystem returns a system clock with the assumed uncertainty epsilon.
func NewSystem(epsilon time.Duration) *System {
	if epsilon < 0 {
		epsilon = -epsilon
	}
	return &System{epsilon: epsilon}
}

// Now returns [wall-ε, wall+ε], or ErrFenced while fenced.
func (c *System) Now() (Interval, error) {
	c.mu.Lock()
	f := c.fence
	c.mu.Unlock()
	if f != nil {
		return Interval{}, fmt.Errorf("%w (%s): %s", ErrFenced, f.Kind, f.Reason)
	}
	return c.Candidate()
}

// Candidate returns [wall-ε, wall+ε], fenced or not.
func (c *System) Candidate() (Interval, error) {
	w := Timestamp(time.Now().UnixNano())
	return Interval{Earliest: w.Add(-c.epsilon), Latest: w.Add(c.epsilon)}, nil
}

// Fence fences the clock (see Fencer): a system clock whose assumed ε its
// peers contradict.
func (c *System) Fence(kind FenceKind, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fence == nil {
		c.fence = &FenceInfo{Kind: kind, Reason: reason, Since: time.Now()}
	}
}

// Fenced returns the fence in place, if any.
func (c *System) Fenced() (FenceInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fence == nil {
		return FenceInfo{}, false
	}
	return *c.fence, true
}

// Unfence lifts the fence.
func (c *System) Unfence() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fence = nil
	return nil
}

// Epsilon returns the assumed ε.
func (c *System) Epsilon() time.Duration { return c.epsilon }

// Describe names the clock source for humans.
func (c *System) Describe() string {
	return fmt.Sprintf("system clock with an assumed (unmeasured) ε of %s", c.epsilon)
}

// Describer is implemented by clocks that can name their source for logs and
// status output.
type Describer interface {
	Describe() string
}
