package tt_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/tt/tttest"
)

const t0 = tt.Timestamp(1795620000000000000)

func TestWaitUntilAfterManualAdvanced(t *testing.T) {
	t.Parallel()
	c := tttest.NewManualClock(t0, time.Millisecond)
	target := t0.Add(20 * time.Millisecond)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				c.Advance(2 * time.Millisecond)
			}
		}
	}()
	waited, err := tt.WaitUntilAfter(context.Background(), c, target)
	if err != nil {
		t.Fatal(err)
	}
	iv, _ := c.Now()
	if !iv.After(target) {
		t.Errorf("returned at %v, before %d has passed", iv, target)
	}
	if waited <= 0 || waited > 5*time.Second {
		t.Errorf("waited %s", waited)
	}
}

// The manual clock moved in one step, much later than the wait's first
// estimate: the wait keeps checking until it sees the step.
func TestWaitUntilAfterManualLateStep(t *testing.T) {
	t.Parallel()
	c := tttest.NewManualClock(t0, time.Millisecond)
	target := t0.Add(5 * time.Millisecond)
	go func() {
		time.Sleep(30 * time.Millisecond)
		c.Set(target.Add(10 * time.Millisecond))
	}()
	start := time.Now()
	if _, err := tt.WaitUntilAfter(context.Background(), c, target); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Errorf("returned before the clock moved")
	}
}

func TestWaitUntilAfterAlreadyPassed(t *testing.T) {
	c := tttest.NewManualClock(t0, time.Millisecond)
	waited, err := tt.WaitUntilAfter(context.Background(), c, t0.Add(-2*time.Millisecond))
	if err != nil || waited > 100*time.Millisecond {
		t.Errorf("waited %s, err %v", waited, err)
	}
	// Earliest itself has not definitely passed: it must wait.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := tt.WaitUntilAfter(ctx, c, t0.Add(-time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait for Earliest on a stopped clock: %v", err)
	}
}

func TestWaitUntilAfterSystem(t *testing.T) {
	t.Parallel()
	c := tt.NewSystem(2 * time.Millisecond)
	iv, _ := c.Now()
	target := iv.Latest
	waited, err := tt.WaitUntilAfter(context.Background(), c, target)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := c.Now()
	if !after.After(target) {
		t.Errorf("%v: %d not passed", after, target)
	}
	// Commit wait is about 2ε.
	if waited < 4*time.Millisecond-time.Millisecond || waited > 2*time.Second {
		t.Errorf("waited %s, want about 4ms", waited)
	}
}

func TestWaitUntilAfterUnhealthy(t *testing.T) {
	t.Parallel()
	c := tttest.NewManualClock(t0, time.Millisecond)
	c.SetUnhealthy("no time servers")
	if _, err := tt.WaitUntilAfter(context.Background(), c, t0); !errors.Is(err, tt.ErrUnhealthy) {
		t.Fatalf("unhealthy before the wait: %v", err)
	}
	// Unhealthy during the wait.
	c.SetUnhealthy("")
	go func() {
		time.Sleep(10 * time.Millisecond)
		c.SetUnhealthy("lost the servers")
	}()
	_, err := tt.WaitUntilAfter(context.Background(), c, t0.Add(30*time.Millisecond))
	if !errors.Is(err, tt.ErrUnhealthy) {
		t.Fatalf("unhealthy during the wait: %v", err)
	}
}

func TestWaitUntilAfterContext(t *testing.T) {
	t.Parallel()
	c := tttest.NewManualClock(t0, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(10 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	_, err := tt.WaitUntilAfter(ctx, c, t0.Add(time.Hour))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %s", d)
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	if _, err := tt.WaitUntilAfter(ctx, tt.NewSystem(time.Hour), tt.FromTime(time.Now())); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait past deadline: %v", err)
	}
	// Far-future targets do not overflow the timer.
	ctx3, cancel3 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel3()
	if _, err := tt.WaitUntilAfter(ctx3, c, tt.MaxTimestamp); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for MaxTimestamp: %v", err)
	}
}

func TestSystem(t *testing.T) {
	c := tt.NewSystem(-3 * time.Millisecond)
	if c.Epsilon() != 3*time.Millisecond {
		t.Errorf("ε %s", c.Epsilon())
	}
	a := tt.FromTime(time.Now())
	iv, err := c.Now()
	b := tt.FromTime(time.Now())
	if err != nil || iv.Epsilon() != 3*time.Millisecond || iv.Earliest > a.Add(3*time.Millisecond) || iv.Latest < b.Add(-3*time.Millisecond) {
		t.Errorf("Now = %v, %v around [%d, %d]", iv, err, a, b)
	}
	var d tt.Describer = c
	if d.Describe() == "" {
		t.Error("empty Describe")
	}
}
