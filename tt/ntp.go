package tt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beevik/ntp"
)

// NTPConfig configures an NTP-backed interval clock.
type NTPConfig struct {
	// Servers are host:port pairs (port 123 when omitted).
	Servers []string
	// PollInterval between rounds of queries. Default 4 s.
	PollInterval time.Duration
	// QueryTimeout bounds one query. Default 1 s.
	QueryTimeout time.Duration
	// DriftBound is the assumed maximum drift of the local oscillator.
	// Default 200 µs/s.
	DriftBound float64
	// MaxEpsilon: above it the clock is unhealthy. Default 100 ms.
	MaxEpsilon time.Duration
	// SyncDeadline: with no accepted sample for this long the clock is
	// unhealthy. Default max(30 s, 8 × PollInterval).
	SyncDeadline time.Duration
	// Logger receives jumps, rejections and health changes. Default
	// slog.Default().
	Logger *slog.Logger
}

func (c *NTPConfig) fill() error {
	if len(c.Servers) == 0 {
		return errors.New("tt: no NTP servers given")
	}
	for i, s := range c.Servers {
		n, err := normalizeServer(s)
		if err != nil {
			return err
		}
		c.Servers[i] = n
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 4 * time.Second
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = time.Second
	}
	if c.DriftBound == 0 {
		c.DriftBound = DefaultDriftBound
	}
	if c.MaxEpsilon <= 0 {
		c.MaxEpsilon = 100 * time.Millisecond
	}
	if c.SyncDeadline <= 0 {
		c.SyncDeadline = max(30*time.Second, 8*c.PollInterval)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

func normalizeServer(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: the whole string is the host.
		if s == "" {
			return "", errors.New("tt: empty NTP server address")
		}
		return net.JoinHostPort(s, "123"), nil
	}
	if host == "" {
		return "", fmt.Errorf("tt: NTP server %q has no host", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return "", fmt.Errorf("tt: NTP server %q has an invalid port", s)
	}
	return s, nil
}

// published is the immutable state Now reads through an atomic pointer.
type published struct {
	local    time.Duration
	iv       Interval
	lastSync time.Duration
	err      error
	// cand is the sources' majority interval at local (candOK false when
	// they have none): what Candidate extrapolates.
	cand   Interval
	candOK bool
}

var (
	errNotSynced   = fmt.Errorf("%w: not synchronized yet", ErrUnhealthy)
	errEpsilon     = fmt.Errorf("%w: ε exceeds the configured maximum", ErrUnhealthy)
	errSyncTooOld  = fmt.Errorf("%w: no successful synchronization within the deadline", ErrUnhealthy)
	errClockClosed = fmt.Errorf("%w: clock closed", ErrUnhealthy)
)

// at extrapolates a published estimate to local reading now and applies the
// time-dependent health rules. It does not allocate.
func (p *published) at(now time.Duration, drift float64, maxEps, deadline time.Duration) (Interval, error) {
	if p.err != nil {
		return Interval{}, p.err
	}
	if now-p.lastSync > deadline {
		return Interval{}, errSyncTooOld
	}
	iv := Extrapolate(p.iv, p.local, now, drift)
	if iv.Epsilon() > maxEps {
		return Interval{}, errEpsilon
	}
	return iv, nil
}

// NTP is an interval clock disciplined by NTP servers. Now is cheap (no
// allocation, one monotonic clock read); a background loop started by Start
// polls the servers.
type NTP struct {
	cfg    NTPConfig
	origin time.Time // monotonic origin for local readings
	pub    atomic.Pointer[published]

	mu   sync.Mutex // guards est and last
	est  *Estimator
	last Estimate

	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	started atomic.Bool
}

// NewNTP returns an NTP clock. It performs no I/O; call Sync for a first
// round and Start for the background loop. Until the first successful round
// Now reports the clock unhealthy.
func NewNTP(cfg NTPConfig) (*NTP, error) {
	cfg.Servers = append([]string(nil), cfg.Servers...)
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	est, err := NewEstimator(EstimatorConfig{
		Servers:      cfg.Servers,
		DriftBound:   cfg.DriftBound,
		MaxEpsilon:   cfg.MaxEpsilon,
		SyncDeadline: cfg.SyncDeadline,
	})
	if err != nil {
		return nil, err
	}
	c := &NTP{cfg: cfg, origin: time.Now(), est: est, stop: make(chan struct{}), done: make(chan struct{})}
	c.pub.Store(&published{err: errNotSynced})
	return c, nil
}

// Config returns the configuration with defaults filled in.
func (c *NTP) Config() NTPConfig { return c.cfg }

func (c *NTP) local() time.Duration { return time.Since(c.origin) }

// Now returns the current interval, or an error wrapping ErrUnhealthy.
func (c *NTP) Now() (Interval, error) {
	return c.pub.Load().at(c.local(), c.cfg.DriftBound, c.cfg.MaxEpsilon, c.cfg.SyncDeadline)
}

// Describe names the clock source for humans.
func (c *NTP) Describe() string {
	return fmt.Sprintf("ntp %v (drift bound %g, max ε %s)", c.cfg.Servers, c.cfg.DriftBound, c.cfg.MaxEpsilon)
}

// Status returns the last estimate with every server's state.
func (c *NTP) Status() Estimate {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.last
	st.Servers = append([]ServerStatus(nil), c.last.Servers...)
	return st
}

type queryResult struct {
	server string
	resp   *ntp.Response
	err    error
	local  time.Duration // local reading right after the response
	wall   time.Time     // the wall reading taken at the same instant
}

// Sync queries every server once, concurrently, feeds the results to the
// estimator and publishes the new estimate. It returns the estimate's error
// (nil when healthy).
func (c *NTP) Sync(ctx context.Context) error {
	results := make([]queryResult, len(c.cfg.Servers))
	var wg sync.WaitGroup
	for i, s := range c.cfg.Servers {
		wg.Add(1)
		go func(i int, s string) {
			defer wg.Done()
			results[i] = c.query(ctx, s)
		}(i, s)
	}
	wg.Wait()

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range results {
		s, reason, err := c.toSample(r)
		if err != nil {
			c.est.Reject(r.server, reason, err)
			c.cfg.Logger.Debug("ntp response rejected", "server", r.server, "reason", reason, "err", err)
			continue
		}
		if j := c.est.Observe(s); j != nil {
			c.cfg.Logger.Warn("ntp server stepped: its sample contradicts its previous one carried forward",
				"server", j.Server, "previous", j.Previous.String(), "sample", j.Sample.String())
		}
	}
	_, wasFenced := c.est.Fenced()
	now := c.local()
	est := c.est.Estimate(now)
	prev := c.last
	c.last = est
	if est.Fence != nil && !wasFenced {
		c.cfg.Logger.Error("clock fenced: no leases, votes, timestamps or clock-dependent reads until its time is confirmed again",
			"kind", est.Fence.Kind.String(), "reason", est.Fence.Reason)
	}
	for i, s := range est.Servers {
		if s.Excluded && s.HasSample && (len(prev.Servers) <= i || !prev.Servers[i].Excluded) {
			c.cfg.Logger.Warn("ntp server excluded as a falseticker or stale", "server", s.Server)
		}
	}
	if (est.Err == nil) != (prev.Err == nil) || prev.Local == 0 {
		if est.Err != nil {
			c.cfg.Logger.Warn("clock unhealthy", "err", est.Err)
		} else {
			c.cfg.Logger.Info("clock healthy", "epsilon", est.Interval.Epsilon())
		}
	}
	c.publish(est)
	return est.Err
}

// publish makes est what Now and Candidate read. Callers hold mu.
func (c *NTP) publish(est Estimate) {
	select {
	case <-c.stop:
		c.pub.Store(&published{err: errClockClosed})
	default:
		c.pub.Store(&published{local: est.Local, iv: est.Interval, lastSync: est.LastSync, err: est.Err,
			cand: est.Candidate, candOK: est.Candidate.Latest != 0})
	}
}

// Candidate returns the interval the servers' majority gives now, fenced or
// not (see Fencer).
func (c *NTP) Candidate() (Interval, error) {
	p := c.pub.Load()
	if !p.candOK {
		if p.err != nil {
			return Interval{}, p.err
		}
		return Interval{}, errNoCandidate
	}
	now := c.local()
	if now-p.lastSync > c.cfg.SyncDeadline {
		return Interval{}, errSyncTooOld
	}
	return Extrapolate(p.cand, p.local, now, c.cfg.DriftBound), nil
}

// Fence fences the clock for a reason found outside it (see Fencer).
func (c *NTP) Fence(kind FenceKind, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.est.Fenced(); ok {
		return
	}
	c.est.Fence(kind, reason, c.local())
	c.cfg.Logger.Error("clock fenced: no leases, votes, timestamps or clock-dependent reads until its time is confirmed again",
		"kind", kind.String(), "reason", reason)
	est := c.est.Estimate(c.local())
	c.last = est
	c.publish(est)
}

// Fenced returns the fence in place, if any.
func (c *NTP) Fenced() (FenceInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.est.Fenced()
	if !ok {
		return FenceInfo{}, false
	}
	return FenceInfo{Kind: f.Kind, Reason: f.Reason, Since: c.origin.Add(f.Local), Step: f.Step}, true
}

// Unfence lifts the fence and adopts the servers' current majority
// interval (see Fencer).
func (c *NTP) Unfence() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.est.Fenced()
	if !ok {
		return nil
	}
	now := c.local()
	if err := c.est.Unfence(now); err != nil {
		return err
	}
	est := c.est.Estimate(now)
	c.last = est
	c.publish(est)
	c.cfg.Logger.Warn("clock unfenced: adopting the time its sources give", "was", f.Kind.String(),
		"fenced_for", (now - f.Local).Round(time.Millisecond), "interval", est.Interval.String())
	return est.Err
}

func (c *NTP) query(ctx context.Context, server string) queryResult {
	host, portStr, _ := net.SplitHostPort(server)
	port, _ := strconv.Atoi(portStr)
	timeout := c.cfg.QueryTimeout
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < timeout {
			timeout = d
		}
	}
	if timeout <= 0 {
		return queryResult{server: server, err: context.DeadlineExceeded}
	}
	resp, err := ntp.QueryWithOptions(host, ntp.QueryOptions{Port: port, Timeout: timeout})
	now := time.Now()
	return queryResult{server: server, resp: resp, err: err, local: now.Sub(c.origin), wall: now}
}

// Rejection reasons, as counted per server.
const (
	RejectQuery     = "query failed"
	RejectKiss      = "kiss-of-death"
	RejectStratum   = "bad stratum"
	RejectLeap      = "leap alarm"
	RejectMalformed = "malformed"
	RejectInvalid   = "invalid"
	RejectTooWide   = "error bound above max ε"
)

// toSample validates a response and converts it into a sample. A response is
// rejected for failing ntp's Validate (stratum 0 or >= 16, kiss-of-death,
// leap alarm, stale reference, dispersion beyond 16 s, transmit before
// reference), for a negative or absurd round trip, or for an error bound
// larger than the maximum ε (it could never make the clock healthy).
func (c *NTP) toSample(r queryResult) (Sample, string, error) {
	if r.err != nil {
		return Sample{}, RejectQuery, r.err
	}
	resp := r.resp
	if err := resp.Validate(); err != nil {
		switch {
		case errors.Is(err, ntp.ErrKissOfDeath) || resp.KissCode != "":
			return Sample{}, RejectKiss, fmt.Errorf("%w (code %q)", err, resp.KissCode)
		case errors.Is(err, ntp.ErrInvalidStratum):
			return Sample{}, RejectStratum, err
		case errors.Is(err, ntp.ErrInvalidLeapSecond):
			return Sample{}, RejectLeap, err
		default:
			return Sample{}, RejectInvalid, err
		}
	}
	if resp.RTT < 0 || resp.RootDelay < 0 || resp.RootDispersion < 0 || resp.Precision < 0 {
		return Sample{}, RejectMalformed, fmt.Errorf("negative delay or dispersion (rtt %s, root delay %s, root dispersion %s)",
			resp.RTT, resp.RootDelay, resp.RootDispersion)
	}
	// The local clock drifts from the client's transmit timestamp on: over
	// the exchange (the round trip is measured with the local clock, which
	// adds up to drift × (t4 − t1) to the offset's error) and from the
	// client's receive timestamp to our reading. That whole gap counts
	// against the bound with the drift allowance.
	slack := time.Duration(0)
	if !resp.Timestamps.ClientXmit.IsZero() {
		if g := r.wall.Sub(resp.Timestamps.ClientXmit); g > 0 {
			slack = time.Duration(float64(g) * c.cfg.DriftBound)
		}
	}
	errBound := resp.RTT/2 + resp.RootDelay/2 + resp.RootDispersion + resp.Precision + slack + 1
	if errBound > c.cfg.MaxEpsilon {
		return Sample{}, RejectTooWide, fmt.Errorf("error bound %s above max ε %s (rtt %s)", errBound, c.cfg.MaxEpsilon, resp.RTT)
	}
	return Sample{
		Server:         r.server,
		Local:          r.local,
		Mid:            FromTime(r.wall).Add(resp.ClockOffset),
		Err:            errBound,
		Offset:         resp.ClockOffset,
		RTT:            resp.RTT,
		RootDelay:      resp.RootDelay,
		RootDispersion: resp.RootDispersion,
		Precision:      resp.Precision,
		Stratum:        resp.Stratum,
	}, "", nil
}

// Start runs the poll loop in the background until Close.
func (c *NTP) Start() {
	if !c.started.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer close(c.done)
		t := time.NewTicker(c.cfg.PollInterval)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), c.cfg.PollInterval)
				_ = c.Sync(ctx)
				cancel()
			}
		}
	}()
}

// Close stops the poll loop (if started) and waits for it to exit; Now then
// reports the clock unhealthy.
func (c *NTP) Close() {
	c.once.Do(func() {
		close(c.stop)
		// Sync checks stop and publishes under mu: storing under mu too
		// means a Sync in flight cannot overwrite this with a healthy
		// estimate after Close.
		c.mu.Lock()
		c.pub.Store(&published{err: errClockClosed})
		c.mu.Unlock()
		if c.started.Load() {
			<-c.done
		}
	})
}
