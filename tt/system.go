package tt

import (
	"fmt"
	"time"
)

// System is an interval clock for machines without an NTP server: it reads
// the system clock and assumes a fixed ε that nothing measures. It is the
// demo's default and says so wherever it is printed; production nodes use
// NTP.
type System struct {
	epsilon time.Duration
}

// NewSystem returns a system clock with the assumed uncertainty epsilon.
func NewSystem(epsilon time.Duration) *System {
	if epsilon < 0 {
		epsilon = -epsilon
	}
	return &System{epsilon: epsilon}
}

// Now returns [wall-ε, wall+ε]. It never reports the clock unhealthy.
func (c *System) Now() (Interval, error) {
	w := Timestamp(time.Now().UnixNano())
	return Interval{Earliest: w.Add(-c.epsilon), Latest: w.Add(c.epsilon)}, nil
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
