package tt

import (
	"fmt"
	"time"
)

// SimConfig describes one simulated node clock: a local oscillator with a
// real drift and a time master sampled periodically with a bounded error, so
// that ε saws up between samples as with NTP.
type SimConfig struct {
	// Drift is the oscillator's actual rate error (e.g. 50e-6). Within the
	// assumptions |Drift| < DriftBound.
	Drift float64
	// DriftBound is the drift the estimator assumes. Default 200 µs/s.
	DriftBound float64
	// SyncInterval between samples of the time master. Default 30 s.
	SyncInterval time.Duration
	// SyncPhase shifts the sample schedule: samples are taken at
	// SyncPhase + k × SyncInterval after the clock's origin, so that
	// clocks sharing an interval need not saw up in step (ε differs
	// between them at any instant, as between real nodes).
	SyncPhase time.Duration
	// SampleErr is the error bound each sample reports (RTT/2 plus the
	// master's dispersion). Default 1 ms.
	SampleErr time.Duration
	// Bias shifts every sample: within SampleErr it is a clock offset the
	// interval still covers; beyond it the master lies and the assumptions
	// are broken (a fault beyond ε).
	Bias time.Duration
	// MaxEpsilon: above it the clock is unhealthy. Default 100 ms.
	MaxEpsilon time.Duration
	// SyncDeadline: with no sample for this long the clock is unhealthy.
	// Default 4 × SyncInterval.
	SyncDeadline time.Duration
	// Seed makes the sample noise reproducible.
	Seed uint64
}

// Sim is a simulated interval clock driven by virtual true time, for the
// deterministic simulator. The true time comes from a function the simulator
// owns; the clock's answers depend only on that time, the configuration and
// the seed, never on how often Now is called. Not safe for concurrent use.
type Sim struct {
	cfg      SimConfig
	trueNow  func() Timestamp
	origin   Timestamp // true time at which the local oscillator read zero
	est      *Estimator
	nextSync Timestamp
	lost     bool
	resync   bool
	pub      published
}

const simServer = "sim-master"

// NewSim returns a simulated clock reading virtual true time from trueNow.
// The first sample is taken at the first call to Now.
func NewSim(cfg SimConfig, trueNow func() Timestamp) *Sim {
	if cfg.DriftBound == 0 {
		cfg.DriftBound = DefaultDriftBound
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 30 * time.Second
	}
	cfg.SyncPhase %= cfg.SyncInterval
	if cfg.SyncPhase < 0 {
		cfg.SyncPhase += cfg.SyncInterval
	}
	if cfg.SampleErr <= 0 {
		cfg.SampleErr = time.Millisecond
	}
	if cfg.MaxEpsilon <= 0 {
		cfg.MaxEpsilon = 100 * time.Millisecond
	}
	if cfg.SyncDeadline <= 0 {
		cfg.SyncDeadline = 4 * cfg.SyncInterval
	}
	est, err := NewEstimator(EstimatorConfig{
		Servers:      []string{simServer},
		DriftBound:   cfg.DriftBound,
		MaxEpsilon:   cfg.MaxEpsilon,
		SyncDeadline: cfg.SyncDeadline,
	})
	if err != nil {
		panic(err) // unreachable: the configuration above is valid
	}
	t := trueNow()
	return &Sim{cfg: cfg, trueNow: trueNow, origin: t, est: est, nextSync: t, pub: published{err: errNotSynced}}
}

// local returns the oscillator reading at true time t.
func (c *Sim) local(t Timestamp) time.Duration {
	d := float64(t - c.origin)
	return time.Duration(d + d*c.cfg.Drift)
}

// noise returns a deterministic value in [-1, 1] for sample k.
func (c *Sim) noise(k uint64) float64 {
	x := c.cfg.Seed ^ (k+1)*0x9E3779B97F4A7C15
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	x ^= x >> 31
	return float64(x>>11)/float64(1<<52) - 1
}

// sync takes, in order, every sample due up to true time t. Each sample
// moves the estimator's anchor, so every one is taken whenever Now is
// called: the answers never depend on how often it is.
func (c *Sim) sync(t Timestamp) {
	if c.resync && !c.lost {
		// The master is back: the samples scheduled while it was lost are
		// gone, and one is taken now, off schedule, as an NTP client
		// retrying an unreachable server would (noise from a distinct
		// stream).
		c.resync = false
		for c.nextSync <= t {
			c.nextSync = c.after(c.nextSync)
		}
		c.sample(t, c.index(t)<<20|uint64(t-c.origin)%(1<<20)|1<<63)
	}
	for c.nextSync <= t {
		at := c.nextSync
		c.nextSync = c.after(at)
		if !c.lost {
			c.sample(at, c.index(at))
		}
	}
}

// schedule returns the true time of sample 0: samples are taken at
// schedule + k × SyncInterval (k ≥ 1), and once at the clock's origin.
func (c *Sim) schedule() Timestamp {
	return c.origin.Add(c.cfg.SyncPhase - c.cfg.SyncInterval)
}

// index returns the number of the last scheduled sample at or before at.
func (c *Sim) index(at Timestamp) uint64 {
	return uint64(at-c.schedule()) / uint64(c.cfg.SyncInterval)
}

// after returns the first scheduled sample time after at.
func (c *Sim) after(at Timestamp) Timestamp {
	return c.schedule() + Timestamp(c.index(at)+1)*Timestamp(c.cfg.SyncInterval)
}

// sample feeds the estimator the master's answer at true time at.
func (c *Sim) sample(at Timestamp, k uint64) {
	jitter := c.cfg.SampleErr - absDur(c.cfg.Bias)
	if jitter < 0 {
		jitter = 0
	}
	off := c.cfg.Bias + time.Duration(c.noise(k)*float64(jitter))
	c.est.Observe(Sample{Server: simServer, Local: c.local(at), Mid: at.Add(off), Err: c.cfg.SampleErr})
	e := c.est.Estimate(c.local(at))
	c.pub = published{local: e.Local, iv: e.Interval, lastSync: e.LastSync, err: e.Err}
}

// Now returns the interval at the current virtual time.
func (c *Sim) Now() (Interval, error) {
	t := c.trueNow()
	c.sync(t)
	return c.pub.at(c.local(t), c.cfg.DriftBound, c.cfg.MaxEpsilon, c.cfg.SyncDeadline)
}

// TrueNow returns the virtual true time (for checkers, never for protocol
// decisions).
func (c *Sim) TrueNow() Timestamp { return c.trueNow() }

// SetBias changes the bias of future samples (a clock offset; beyond
// SampleErr a fault beyond ε).
func (c *Sim) SetBias(b time.Duration) { c.cfg.Bias = b }

// SetLost stops (true) or resumes (false) sampling: a lost time master.
// When the master comes back the next reading takes a sample at once, as an
// NTP client retrying an unreachable server would.
func (c *Sim) SetLost(lost bool) {
	if c.lost && !lost {
		c.resync = true
	}
	c.lost = lost
}

// Describe names the clock for humans.
func (c *Sim) Describe() string {
	return fmt.Sprintf("simulated clock (drift %g, sample error %s, sync every %s, bias %s)",
		c.cfg.Drift, c.cfg.SampleErr, c.cfg.SyncInterval, c.cfg.Bias)
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
