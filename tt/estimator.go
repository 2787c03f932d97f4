package tt

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// DefaultDriftBound is the assumed worst-case drift of the local oscillator:
// 200 µs per second, Spanner's figure.
const DefaultDriftBound = 200e-6

// DefaultJumpConfirmations is how many consecutive mutually consistent
// samples a server must send after a jump before the estimator follows it.
const DefaultJumpConfirmations = 3

// Sample is one measurement of true time against the local monotonic clock:
// at the local reading Local, true time lay in [Mid-Err, Mid+Err].
type Sample struct {
	Server string
	// Local is the local monotonic reading the sample applies to.
	Local time.Duration
	// Mid is the estimate of true time at Local.
	Mid Timestamp
	// Err bounds |true time - Mid| at Local.
	Err time.Duration

	// Raw measurement, kept for display.
	Offset         time.Duration
	RTT            time.Duration
	RootDelay      time.Duration
	RootDispersion time.Duration
	Precision      time.Duration
	Stratum        uint8
}

// Interval returns [Mid-Err, Mid+Err].
func (s Sample) Interval() Interval {
	return Interval{Earliest: s.Mid.Add(-s.Err), Latest: s.Mid.Add(s.Err)}
}

// EstimatorConfig configures an Estimator.
type EstimatorConfig struct {
	// Servers names the configured sources. A majority of them must agree
	// for the estimate to be healthy.
	Servers []string
	// DriftBound is the assumed maximum rate error of the local clock
	// (seconds per second). Default DefaultDriftBound.
	DriftBound float64
	// MaxEpsilon: an estimate whose ε exceeds it is unhealthy.
	MaxEpsilon time.Duration
	// SyncDeadline: with no accepted sample from the agreeing servers within
	// this long, the estimate is unhealthy. Samples older than this are
	// dropped from the intersection.
	SyncDeadline time.Duration
	// JumpConfirmations is how many consecutive mutually consistent samples a
	// server must deliver after a jump before its raw samples are trusted
	// again. Default DefaultJumpConfirmations.
	JumpConfirmations int
}

// ServerStatus is what the estimator knows of one server.
type ServerStatus struct {
	Server string
	// Last is the last accepted sample (zero if none).
	Last      Sample
	HasSample bool
	// Effective is the interval in use for this server, extrapolated to the
	// estimate's local reading; after a jump it is wider than Last.
	Effective Interval
	// Excluded is true when the server's interval holds no point a majority
	// agrees on (a falseticker) or its sample is too old.
	Excluded bool
	// Jumped is true while a jump awaits confirmation.
	Jumped   bool
	Accepted uint64
	Rejected uint64
	Jumps    uint64
	// Rejections counts rejected responses by reason.
	Rejections map[string]uint64
	LastError  string
}

// Estimate is the estimator's answer at one local reading.
type Estimate struct {
	Local    time.Duration
	Interval Interval
	// LastSync is the local reading of the newest sample among the agreeing
	// servers.
	LastSync time.Duration
	// Err is non-nil (wrapping ErrUnhealthy) when there is no estimate.
	Err     error
	Servers []ServerStatus
}

// Jump describes a sample that contradicted the server's current interval.
type Jump struct {
	Server   string
	Previous Interval // the server's interval extrapolated to the sample
	Sample   Interval
	Adopted  Interval // what the estimator uses instead: the hull
}

type serverState struct {
	ServerStatus
	effLocal time.Duration // local reading Effective refers to
	eff      Interval
	rawLocal time.Duration // local reading of the last raw sample
	raw      Interval
	confirms int
}

// Estimator turns samples into a TrueTime interval. It is deterministic:
// the local monotonic reading comes in as an argument, so the same code runs
// under the real NTP source and the simulator. It is not safe for
// concurrent use.
type Estimator struct {
	cfg     EstimatorConfig
	servers []*serverState
	index   map[string]int
}

// NewEstimator returns an estimator for the configured servers.
func NewEstimator(cfg EstimatorConfig) (*Estimator, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("tt: no time servers configured")
	}
	if cfg.DriftBound == 0 {
		cfg.DriftBound = DefaultDriftBound
	}
	if cfg.DriftBound < 0 || cfg.DriftBound > 0.01 {
		return nil, fmt.Errorf("tt: drift bound %g outside [0, 0.01]", cfg.DriftBound)
	}
	if cfg.MaxEpsilon <= 0 {
		return nil, errors.New("tt: max epsilon must be positive")
	}
	if cfg.SyncDeadline <= 0 {
		return nil, errors.New("tt: sync deadline must be positive")
	}
	if cfg.JumpConfirmations <= 0 {
		cfg.JumpConfirmations = DefaultJumpConfirmations
	}
	e := &Estimator{cfg: cfg, index: make(map[string]int)}
	for i, s := range cfg.Servers {
		if _, dup := e.index[s]; dup {
			return nil, fmt.Errorf("tt: time server %q listed twice", s)
		}
		e.index[s] = i
		e.servers = append(e.servers, &serverState{ServerStatus: ServerStatus{Server: s, Rejections: map[string]uint64{}}})
	}
	return e, nil
}

// Config returns the estimator's configuration with defaults filled in.
func (e *Estimator) Config() EstimatorConfig { return e.cfg }

// widen returns how far an interval must grow on each side after elapsed
// local time d: DriftBound × d, rounded up.
func widen(drift float64, d time.Duration) Timestamp {
	if d <= 0 {
		return 0
	}
	return Timestamp(math.Ceil(drift * float64(d)))
}

// Extrapolate moves iv, measured at local reading from, to local reading
// to: it advances by the local elapsed time and widens by the drift bound on
// both sides.
func Extrapolate(iv Interval, from, to time.Duration, drift float64) Interval {
	d := to - from
	if d < 0 {
		// A reading from before the sample: move back and widen the same.
		w := widen(drift, -d)
		return Interval{Earliest: iv.Earliest + Timestamp(d) - w, Latest: iv.Latest + Timestamp(d) + w}
	}
	w := widen(drift, d)
	return Interval{Earliest: iv.Earliest + Timestamp(d) - w, Latest: iv.Latest + Timestamp(d) + w}
}

// Observe feeds an accepted sample. It returns a non-nil *Jump when the
// sample contradicted the server's current interval; the estimator then
// uses the hull of the two (never the narrower sample) until the server
// confirms its new time with JumpConfirmations consistent samples.
func (e *Estimator) Observe(s Sample) *Jump {
	i, ok := e.index[s.Server]
	if !ok {
		return nil
	}
	st := e.servers[i]
	st.Accepted++
	st.LastError = ""
	iv := s.Interval()
	var jump *Jump
	switch {
	case !st.HasSample:
		st.eff, st.effLocal = iv, s.Local
	default:
		prev := Extrapolate(st.eff, st.effLocal, s.Local, e.cfg.DriftBound)
		prevRaw := Extrapolate(st.raw, st.rawLocal, s.Local, e.cfg.DriftBound)
		switch {
		case !iv.Overlaps(prev):
			st.Jumps++
			st.Jumped = true
			st.confirms = 0
			st.eff, st.effLocal = prev.Hull(iv), s.Local
			jump = &Jump{Server: s.Server, Previous: prev, Sample: iv, Adopted: st.eff}
		case st.Jumped:
			if iv.Overlaps(prevRaw) {
				st.confirms++
			} else {
				st.confirms = 0
			}
			if st.confirms >= e.cfg.JumpConfirmations {
				st.Jumped = false
				st.eff, st.effLocal = iv, s.Local
			} else {
				st.eff, st.effLocal = prev.Hull(iv), s.Local
			}
		default:
			st.eff, st.effLocal = iv, s.Local
		}
	}
	st.raw, st.rawLocal = iv, s.Local
	st.Last = s
	st.HasSample = true
	return jump
}

// Reject records a response that failed validation (or a failed query).
func (e *Estimator) Reject(server, reason string, err error) {
	i, ok := e.index[server]
	if !ok {
		return
	}
	st := e.servers[i]
	st.Rejected++
	st.Rejections[reason]++
	if err != nil {
		st.LastError = err.Error()
	} else {
		st.LastError = reason
	}
}

// Estimate computes the interval at local reading now from every server's
// effective interval no older than SyncDeadline, intersected with Marzullo
// at majority quorum.
func (e *Estimator) Estimate(now time.Duration) Estimate {
	est := Estimate{Local: now, Servers: make([]ServerStatus, len(e.servers))}
	ivs := make([]Interval, 0, len(e.servers))
	idx := make([]int, 0, len(e.servers))
	for i, st := range e.servers {
		est.Servers[i] = st.ServerStatus
		est.Servers[i].Rejections = copyCounts(st.Rejections)
		est.Servers[i].Excluded = true
		if !st.HasSample || now-st.rawLocal > e.cfg.SyncDeadline {
			continue
		}
		iv := Extrapolate(st.eff, st.effLocal, now, e.cfg.DriftBound)
		est.Servers[i].Effective = iv
		ivs = append(ivs, iv)
		idx = append(idx, i)
	}
	q := Quorum(len(e.servers))
	excluded := make([]bool, len(ivs))
	res, ok := Marzullo(ivs, q, excluded)
	if !ok {
		est.Err = fmt.Errorf("%w: no majority: need %d of %d servers to agree, %d have fresh samples",
			ErrUnhealthy, q, len(e.servers), len(ivs))
		return est
	}
	for k, i := range idx {
		est.Servers[i].Excluded = excluded[k]
		if !excluded[k] && e.servers[i].rawLocal > est.LastSync {
			est.LastSync = e.servers[i].rawLocal
		}
	}
	est.Interval = res
	if eps := res.Epsilon(); eps > e.cfg.MaxEpsilon {
		est.Err = fmt.Errorf("%w: ε %s exceeds the maximum %s", ErrUnhealthy, eps, e.cfg.MaxEpsilon)
	}
	return est
}

func copyCounts(m map[string]uint64) map[string]uint64 {
	c := make(map[string]uint64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
