package tttest

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiandb/meridian/tt"
)

var _ tt.Clock = (*ManualClock)(nil)

func TestManualClock(t *testing.T) {
	const t0 = tt.Timestamp(1795620000000000000)
	c := NewManualClock(t0, 2*time.Millisecond)
	iv, err := c.Now()
	if err != nil || iv != (tt.Interval{Earliest: t0.Add(-2 * time.Millisecond), Latest: t0.Add(2 * time.Millisecond)}) {
		t.Fatalf("Now = %v, %v", iv, err)
	}
	if c.True() != t0 {
		t.Errorf("True = %d", c.True())
	}
	c.Advance(time.Second)
	if c.True() != t0.Add(time.Second) {
		t.Errorf("after Advance True = %d", c.True())
	}
	if iv, _ := c.Now(); !iv.Contains(t0.Add(time.Second)) || iv.Epsilon() != 2*time.Millisecond {
		t.Errorf("after Advance Now = %v", iv)
	}
	c.Set(t0)
	c.SetEpsilon(5 * time.Millisecond)
	if iv, _ := c.Now(); iv.Earliest != t0.Add(-5*time.Millisecond) || iv.Latest != t0.Add(5*time.Millisecond) {
		t.Errorf("after Set/SetEpsilon Now = %v", iv)
	}
	c.SetUnhealthy("servers lost")
	iv, err = c.Now()
	if !errors.Is(err, tt.ErrUnhealthy) || !strings.Contains(err.Error(), "servers lost") || iv != (tt.Interval{}) {
		t.Errorf("unhealthy Now = %v, %v", iv, err)
	}
	c.SetUnhealthy("")
	if _, err := c.Now(); err != nil {
		t.Errorf("healed Now: %v", err)
	}
	// Near the epoch Earliest saturates at MinTimestamp.
	c0 := NewManualClock(0, time.Millisecond)
	if iv, _ := c0.Now(); iv.Earliest != tt.MinTimestamp || iv.Latest != tt.Timestamp(time.Millisecond) {
		t.Errorf("at 0: %v", iv)
	}
}

func TestManualClockConcurrent(t *testing.T) {
	c := NewManualClock(1, time.Millisecond)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				c.Advance(time.Microsecond)
			}
		}()
		go func() {
			defer wg.Done()
			var last tt.Timestamp
			for i := 0; i < 1000; i++ {
				iv, err := c.Now()
				if err != nil {
					t.Error(err)
					return
				}
				if iv.Latest < last {
					t.Errorf("time went back: %d < %d", iv.Latest, last)
					return
				}
				last = iv.Latest
			}
		}()
	}
	wg.Wait()
	if got, want := c.True(), tt.Timestamp(1).Add(4000*time.Microsecond); got != want {
		t.Errorf("True = %d, want %d", got, want)
	}
}
