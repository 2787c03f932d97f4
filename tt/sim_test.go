package tt

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

var (
	seedFlag    = flag.Uint64("tt.seed", 0, "seed for the tt property tests (0: random)")
	configsFlag = flag.Int("tt.configs", 2000, "random clock configurations per tt property test")
)

// testSeed returns the seed to use and logs it on failure so that a failing
// run can be replayed with -tt.seed.
func testSeed(t *testing.T) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replay: go test ./tt -run '^%s$' -tt.seed=%d", t.Name(), seed)
		}
	})
	return seed
}

// simChecker drives a Sim in virtual time and checks invariant 1 at each
// query instant: true time lies in Now()'s interval whenever Now succeeds.
type simChecker struct {
	cfg        SimConfig
	now        Timestamp
	clock      *Sim
	checked    int // healthy answers checked
	unhealthy  int
	violations int
	first      string // the first violation, for the failure message
}

func newSimChecker(cfg SimConfig, start Timestamp) *simChecker {
	c := &simChecker{cfg: cfg, now: start}
	c.clock = NewSim(cfg, func() Timestamp { return c.now })
	return c
}

// query checks one instant.
func (c *simChecker) query() {
	iv, err := c.clock.Now()
	if err != nil {
		if !errors.Is(err, ErrUnhealthy) {
			panic(fmt.Sprintf("Now error %v does not wrap ErrUnhealthy", err))
		}
		c.unhealthy++
		return
	}
	c.checked++
	if truth := c.clock.TrueNow(); !iv.Contains(truth) {
		if c.violations == 0 {
			miss := iv.Earliest.Sub(truth)
			if truth > iv.Latest {
				miss = truth.Sub(iv.Latest)
			}
			c.first = fmt.Sprintf("true time %d (%s after start) outside %v by %s",
				int64(truth), truth.Sub(c.clock.origin), iv, miss)
		}
		c.violations++
	}
}

// run queries at n random instants: exactly at sync instants, just after
// them, just before the next one, and at random gaps up to three sync
// intervals (several syncs skipped).
func (c *simChecker) run(rng *rand.Rand, n int) {
	si := c.clock.cfg.SyncInterval
	c.query() // the first query takes the first sample: a sync instant
	for i := 1; i < n; i++ {
		elapsed := c.now.Sub(c.clock.origin)
		nextSync := c.clock.origin.Add((elapsed/si + 1) * si)
		switch rng.IntN(6) {
		case 0: // exactly at the next sync instant
			c.now = nextSync
		case 1: // a few nanoseconds after the next sync
			c.now = nextSync.Add(time.Duration(rng.IntN(1000)))
		case 2: // just before the next sync: ε at its widest
			c.now = nextSync.Add(-1 - time.Duration(rng.IntN(1000)))
			if c.now < c.clock.origin.Add(elapsed) {
				c.now = c.clock.origin.Add(elapsed)
			}
		case 3: // a tiny step
			c.now = c.now.Add(time.Duration(rng.IntN(10_000)))
		default: // anywhere within the next three sync intervals
			c.now = c.now.Add(time.Duration(rng.Int64N(int64(3 * si))))
		}
		c.query()
	}
}

// randomSimConfig draws a clock configuration within the assumptions: the
// real drift within ±0.9 of the bound and the bias within ±SampleErr.
func randomSimConfig(rng *rand.Rand) SimConfig {
	bounds := []float64{DefaultDriftBound, 50e-6, 1e-3, 10e-6}
	db := bounds[rng.IntN(len(bounds))]
	sampleErr := time.Duration(1 + rng.Int64N(int64(20*time.Millisecond)))
	syncs := []time.Duration{time.Millisecond, 10 * time.Millisecond, time.Second, 30 * time.Second, 60 * time.Second}
	si := syncs[rng.IntN(len(syncs))] + time.Duration(rng.Int64N(int64(time.Second)))
	return SimConfig{
		Drift:        (rng.Float64()*2 - 1) * 0.9 * db,
		DriftBound:   db,
		SyncInterval: si,
		SampleErr:    sampleErr,
		Bias:         time.Duration((rng.Float64()*2 - 1) * float64(sampleErr)),
		Seed:         rng.Uint64(),
	}
}

// randomStart is a true time somewhere in 2020-2035.
func randomStart(rng *rand.Rand) Timestamp {
	return Timestamp(1577836800e9 + rng.Int64N(15*365*24*3600e9))
}

// TestSimContainsTrueTime is the property test of invariant 1 with the
// simulated clock: within the assumptions, true time is always inside the
// interval.
func TestSimContainsTrueTime(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0x7474))
	configs := *configsFlag
	if testing.Short() {
		configs /= 4
	}
	checked, unhealthy := 0, 0
	for k := 0; k < configs; k++ {
		cfg := randomSimConfig(rng)
		c := newSimChecker(cfg, randomStart(rng))
		c.run(rng, 100)
		checked += c.checked
		unhealthy += c.unhealthy
		if c.violations > 0 {
			t.Fatalf("config %d %+v: %d of %d answers miss true time; first: %s", k, cfg, c.violations, c.checked, c.first)
		}
	}
	// The property must not hold vacuously.
	if unhealthy > checked/100 {
		t.Errorf("%d unhealthy answers of %d: the checker barely checked", unhealthy, checked+unhealthy)
	}
	t.Logf("%d configurations, %d healthy answers checked, %d unhealthy", configs, checked, unhealthy)
}

// TestSimCheckerCanFail is the negative control: with a master lying beyond
// its error bound (bias beyond SampleErr) the same checker must find true
// time outside the interval.
func TestSimCheckerCanFail(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0x6e6f))
	configs := *configsFlag / 4
	failing := 0
	for k := 0; k < configs; k++ {
		cfg := randomSimConfig(rng)
		extra := time.Duration(1 + rng.Int64N(int64(10*time.Millisecond)))
		cfg.Bias = cfg.SampleErr + extra
		if rng.IntN(2) == 0 {
			cfg.Bias = -cfg.Bias
		}
		c := newSimChecker(cfg, randomStart(rng))
		c.run(rng, 100)
		if c.violations == 0 {
			t.Errorf("config %d %+v: a lying master went unnoticed in %d answers", k, cfg, c.checked)
		} else {
			failing++
		}
	}
	t.Logf("the checker caught the lie in %d of %d configurations", failing, configs)
}

func TestSimSawtooth(t *testing.T) {
	start := base
	now := start
	c := NewSim(SimConfig{SyncInterval: 30 * time.Second, SampleErr: time.Millisecond}, func() Timestamp { return now })
	eps := func() time.Duration {
		t.Helper()
		iv, err := c.Now()
		if err != nil {
			t.Fatal(err)
		}
		if !iv.Contains(now) {
			t.Fatalf("%v misses %d", iv, now)
		}
		return iv.Epsilon()
	}
	near := func(got, want time.Duration) bool { return got >= want-2 && got <= want+2 }
	for cycle := 0; cycle < 3; cycle++ {
		at := start.Add(time.Duration(cycle) * 30 * time.Second)
		now = at
		if e := eps(); !near(e, time.Millisecond) {
			t.Errorf("cycle %d: ε right after sync %s, want 1ms", cycle, e)
		}
		now = at.Add(15 * time.Second)
		if e := eps(); !near(e, 4*time.Millisecond) {
			t.Errorf("cycle %d: ε mid-interval %s, want 4ms", cycle, e)
		}
		now = at.Add(30*time.Second - 1)
		if e := eps(); !near(e, 7*time.Millisecond) {
			t.Errorf("cycle %d: ε before the next sync %s, want 7ms", cycle, e)
		}
	}
}

func TestSimLost(t *testing.T) {
	now := base
	c := NewSim(SimConfig{SyncInterval: time.Second}, func() Timestamp { return now })
	if _, err := c.Now(); err != nil {
		t.Fatal(err)
	}
	c.SetLost(true)
	now = now.Add(4 * time.Second) // the default deadline: 4 sync intervals
	if _, err := c.Now(); err != nil {
		t.Fatalf("at the deadline: %v", err)
	}
	now = now.Add(1)
	if _, err := c.Now(); !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("master lost past the deadline: err %v, want ErrUnhealthy", err)
	}
	c.SetLost(false)
	now = now.Add(time.Second)
	if iv, err := c.Now(); err != nil || !iv.Contains(now) {
		t.Fatalf("master back: %v %v", iv, err)
	}
}

func TestSimMaxEpsilon(t *testing.T) {
	now := base
	// 1 ms + 200 µs/s × 60 s = 13 ms at the end of a sync interval.
	c := NewSim(SimConfig{SyncInterval: time.Minute, MaxEpsilon: 10 * time.Millisecond}, func() Timestamp { return now })
	if _, err := c.Now(); err != nil {
		t.Fatal(err)
	}
	now = now.Add(40 * time.Second) // 9 ms
	if _, err := c.Now(); err != nil {
		t.Fatal(err)
	}
	now = now.Add(10 * time.Second) // 11 ms
	if _, err := c.Now(); !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("ε above max: err %v", err)
	}
}

func TestSimNotSynced(t *testing.T) {
	// Before the first Now the clock has no sample; the first Now takes it.
	now := base
	c := NewSim(SimConfig{}, func() Timestamp { return now })
	if iv, err := c.Now(); err != nil || !iv.Contains(now) {
		t.Fatalf("first Now: %v %v", iv, err)
	}
	if c.Describe() == "" {
		t.Error("empty Describe")
	}
}

// TestSimDeterministic: the answers depend only on the true time, the
// configuration and the seed, never on how often Now is called.
func TestSimDeterministic(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	for k := 0; k < 50; k++ {
		cfg := randomSimConfig(rng)
		start := randomStart(rng)
		var nowA, nowB Timestamp = start, start
		a := NewSim(cfg, func() Timestamp { return nowA })
		b := NewSim(cfg, func() Timestamp { return nowB })
		for i := 0; i < 200; i++ {
			nowA = nowA.Add(time.Duration(rng.Int64N(int64(cfg.SyncInterval))))
			ivA, errA := a.Now()
			if i%7 != 0 {
				continue
			}
			nowB = nowA
			ivB, errB := b.Now()
			if ivA != ivB || (errA == nil) != (errB == nil) {
				t.Fatalf("config %+v step %d: often-queried %v %v, rarely-queried %v %v", cfg, i, ivA, errA, ivB, errB)
			}
		}
	}
}

func TestSimSetBias(t *testing.T) {
	now := base
	c := NewSim(SimConfig{SyncInterval: time.Second, SampleErr: time.Millisecond}, func() Timestamp { return now })
	if iv, err := c.Now(); err != nil || !iv.Contains(now) {
		t.Fatalf("%v %v", iv, err)
	}
	// A bias within the sample error moves nothing the interval misses.
	c.SetBias(500 * time.Microsecond)
	now = now.Add(time.Second)
	if iv, err := c.Now(); err != nil || !iv.Contains(now) {
		t.Fatalf("bias within ε: %v %v", iv, err)
	}
	// A lie beyond ε: the next sample misses true time by 4 ms and
	// contradicts the oscillator: the clock fences rather than follow it,
	// and stays fenced while the lie goes on.
	c.SetBias(5 * time.Millisecond)
	for i := 0; i < 4; i++ {
		now = now.Add(time.Second)
		if iv, err := c.Now(); !errors.Is(err, ErrFenced) {
			t.Fatalf("lying sample %d: %v %v, want ErrFenced", i, iv, err)
		}
	}
}

// TestSimCheckerCatchesDrift is a second negative control: an oscillator
// drifting faster than the assumed bound breaks the assumptions too, and the
// checker must see it in some configurations (those where the excess drift
// outgrows the sample's slack before the next sync).
func TestSimCheckerCatchesDrift(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0x6472))
	configs := *configsFlag / 4
	failing := 0
	for k := 0; k < configs; k++ {
		cfg := randomSimConfig(rng)
		cfg.Drift = 3 * cfg.DriftBound
		if rng.IntN(2) == 0 {
			cfg.Drift = -cfg.Drift
		}
		c := newSimChecker(cfg, randomStart(rng))
		c.run(rng, 100)
		if c.violations > 0 {
			failing++
		}
	}
	if failing == 0 {
		t.Errorf("an oscillator drifting at 3× the bound went unnoticed in %d configurations", configs)
	}
	t.Logf("the checker caught the excess drift in %d of %d configurations", failing, configs)
}
