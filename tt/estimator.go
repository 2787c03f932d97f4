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
}

// ServerStatus is what the estimator knows of one server.
type ServerStatus struct {
	Server string
	// Last is the last accepted sample (zero if none).
	Last      Sample
	HasSample bool
	// Effective is the server's last sample extrapolated to the estimate's
	// local reading.
	Effective Interval
	// Excluded is true when the server's interval holds no point a majority
	// agrees on (a falseticker) or its sample is too old.
	Excluded bool
	// Jumped is true when the server's last sample contradicted its
	// previous one (extrapolated): the server stepped.
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
	Local time.Duration
	// Interval is the clock's reading: what a majority of the servers say,
	// intersected with the previous reading carried forward by the local
	// oscillator (zero when Err is set).
	Interval Interval
	// Candidate is what a majority of the servers say now, on their own
	// (zero without a majority). While the clock is fenced it is the time
	// the clock would adopt if its peers confirmed it.
	Candidate Interval
	// Fence is set while the clock is fenced (Err then wraps ErrFenced).
	Fence *Fence
	// LastSync is the local reading of the newest sample among the agreeing
	// servers.
	LastSync time.Duration
	// Err is non-nil (wrapping ErrUnhealthy) when there is no estimate.
	Err     error
	Servers []ServerStatus
}

// Jump describes a sample that contradicted the server's previous sample
// carried forward by the local oscillator: the server stepped (or the
// oscillator did).
type Jump struct {
	Server   string
	Previous Interval // the server's previous sample extrapolated to this one
	Sample   Interval
}

type serverState struct {
	ServerStatus
	rawLocal time.Duration // local reading of the last sample
	raw      Interval
}

// Estimator turns samples into a TrueTime interval. It is deterministic:
// the local monotonic reading comes in as an argument, so the same code runs
// under the real NTP source and the simulator. It is not safe for
// concurrent use.
//
// Consistency with the local oscillator (architecture invariant 2): between
// two readings true time moves only as the monotonic clock moves, within
// the drift bound. Every estimate is therefore intersected with the
// previous one carried forward (the anchor); when the servers' majority
// interval no longer meets it, the servers stepped together (or the
// oscillator broke), and the estimator fences: it gives no interval until
// Unfence, however well the servers agree with each other afterwards.
type Estimator struct {
	cfg     EstimatorConfig
	servers []*serverState
	index   map[string]int

	anchored    bool
	anchor      Interval // the last estimate, at local reading anchorLocal
	anchorLocal time.Duration
	fence       *Fence
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
// sample contradicted the server's previous one. The sample is used as it
// is: a server that steps alone is out-voted by the majority (Marzullo),
// and servers that step together move the majority, which Estimate then
// finds inconsistent with the local oscillator.
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
	st.Jumped = false
	if st.HasSample {
		if prev := Extrapolate(st.raw, st.rawLocal, s.Local, e.cfg.DriftBound); !iv.Overlaps(prev) {
			st.Jumps++
			st.Jumped = true
			jump = &Jump{Server: s.Server, Previous: prev, Sample: iv}
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

// Estimate computes the interval at local reading now: Marzullo's
// intersection, at majority quorum, of every server's last sample no older
// than SyncDeadline (the candidate), intersected with the previous estimate
// carried forward to now. It then keeps the result as the new anchor, so
// readings must come in local-time order; a candidate that does not meet
// the carried-forward estimate fences the estimator (see Estimator).
func (e *Estimator) Estimate(now time.Duration) Estimate {
	est := Estimate{Local: now, Servers: make([]ServerStatus, len(e.servers))}
	res, err := e.candidate(now, &est)
	if err != nil {
		est.Err = err
		if e.fence != nil {
			est.Err = e.fence.err()
		}
		est.Fence = e.fenceCopy()
		return est
	}
	est.Candidate = res
	if e.fence != nil {
		est.Err, est.Fence = e.fence.err(), e.fenceCopy()
		return est
	}
	if e.anchored {
		ext := Extrapolate(e.anchor, e.anchorLocal, now, e.cfg.DriftBound)
		if !res.Overlaps(ext) {
			step := res.Mid().Sub(ext.Mid())
			e.fence = &Fence{Kind: FenceStep, Local: now, Step: step,
				Reason: fmt.Sprintf("time sources moved %s in %s, beyond what the local oscillator allows (drift bound %g): they now say %s, the clock carried forward says %s",
					step, (now - e.anchorLocal).Round(time.Millisecond), e.cfg.DriftBound, res, ext)}
			est.Err, est.Fence = e.fence.err(), e.fenceCopy()
			return est
		}
		res = Interval{Earliest: max(res.Earliest, ext.Earliest), Latest: min(res.Latest, ext.Latest)}
	}
	e.anchored, e.anchor, e.anchorLocal = true, res, now
	est.Interval = res
	if eps := res.Epsilon(); eps > e.cfg.MaxEpsilon {
		est.Err = fmt.Errorf("%w: ε %s exceeds the maximum %s", ErrUnhealthy, eps, e.cfg.MaxEpsilon)
	}
	return est
}

// candidate fills est's per-server status and LastSync and returns the
// majority interval of the fresh samples at now.
func (e *Estimator) candidate(now time.Duration, est *Estimate) (Interval, error) {
	ivs := make([]Interval, 0, len(e.servers))
	idx := make([]int, 0, len(e.servers))
	for i, st := range e.servers {
		est.Servers[i] = st.ServerStatus
		est.Servers[i].Rejections = copyCounts(st.Rejections)
		est.Servers[i].Excluded = true
		if !st.HasSample || now-st.rawLocal > e.cfg.SyncDeadline {
			continue
		}
		iv := Extrapolate(st.raw, st.rawLocal, now, e.cfg.DriftBound)
		est.Servers[i].Effective = iv
		ivs = append(ivs, iv)
		idx = append(idx, i)
	}
	q := Quorum(len(e.servers))
	excluded := make([]bool, len(ivs))
	res, ok := Marzullo(ivs, q, excluded)
	if !ok {
		return Interval{}, fmt.Errorf("%w: no majority: need %d of %d servers to agree, %d have fresh samples",
			ErrUnhealthy, q, len(e.servers), len(ivs))
	}
	for k, i := range idx {
		est.Servers[i].Excluded = excluded[k]
		if !excluded[k] && e.servers[i].rawLocal > est.LastSync {
			est.LastSync = e.servers[i].rawLocal
		}
	}
	return res, nil
}

// Fence makes the estimator give no interval until Unfence, for a reason
// found outside it (its peers disagree with it, its time is not confirmed
// yet, an operator). A fence already in place is kept.
func (e *Estimator) Fence(kind FenceKind, reason string, now time.Duration) {
	if e.fence == nil {
		e.fence = &Fence{Kind: kind, Reason: reason, Local: now}
	}
}

// Fenced returns the fence in place, if any.
func (e *Estimator) Fenced() (Fence, bool) {
	if e.fence == nil {
		return Fence{}, false
	}
	return *e.fence, true
}

// Unfence lifts the fence and re-anchors the clock at the servers' current
// majority interval. It fails when the servers have no majority now. The
// caller decides that the new time is safe to adopt (see Fence).
func (e *Estimator) Unfence(now time.Duration) error {
	if e.fence == nil {
		return nil
	}
	var est Estimate
	est.Servers = make([]ServerStatus, len(e.servers))
	res, err := e.candidate(now, &est)
	if err != nil {
		return err
	}
	e.fence = nil
	e.anchored, e.anchor, e.anchorLocal = true, res, now
	return nil
}

func (e *Estimator) fenceCopy() *Fence {
	if e.fence == nil {
		return nil
	}
	f := *e.fence
	return &f
}

func copyCounts(m map[string]uint64) map[string]uint64 {
	c := make(map[string]uint64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
