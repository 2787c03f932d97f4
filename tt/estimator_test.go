package tt

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// base is an arbitrary true time for estimator tests (late 2026).
const base = Timestamp(1795620000000000000)

func newTestEstimator(t *testing.T, cfg EstimatorConfig) *Estimator {
	t.Helper()
	if cfg.MaxEpsilon == 0 {
		cfg.MaxEpsilon = time.Second
	}
	if cfg.SyncDeadline == 0 {
		cfg.SyncDeadline = time.Minute
	}
	e, err := NewEstimator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// sample is a sample from server at local reading local claiming true time
// mid ± err.
func sample(server string, local time.Duration, mid Timestamp, err time.Duration) Sample {
	return Sample{Server: server, Local: local, Mid: mid, Err: err}
}

func TestNewEstimatorValidation(t *testing.T) {
	ok := EstimatorConfig{Servers: []string{"a"}, MaxEpsilon: time.Millisecond, SyncDeadline: time.Second}
	bad := map[string]func(*EstimatorConfig){
		"no servers":        func(c *EstimatorConfig) { c.Servers = nil },
		"negative drift":    func(c *EstimatorConfig) { c.DriftBound = -1e-6 },
		"absurd drift":      func(c *EstimatorConfig) { c.DriftBound = 0.02 },
		"zero max epsilon":  func(c *EstimatorConfig) { c.MaxEpsilon = 0 },
		"zero deadline":     func(c *EstimatorConfig) { c.SyncDeadline = 0 },
		"duplicate servers": func(c *EstimatorConfig) { c.Servers = []string{"a", "b", "a"} },
	}
	for name, mutate := range bad {
		cfg := ok
		mutate(&cfg)
		if _, err := NewEstimator(cfg); err == nil {
			t.Errorf("%s: NewEstimator succeeded", name)
		}
	}
	e, err := NewEstimator(ok)
	if err != nil {
		t.Fatal(err)
	}
	c := e.Config()
	if c.DriftBound != DefaultDriftBound {
		t.Errorf("defaults not filled: %+v", c)
	}
}

func TestEstimatorNoSample(t *testing.T) {
	e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a"}})
	est := e.Estimate(time.Second)
	if !errors.Is(est.Err, ErrUnhealthy) {
		t.Fatalf("estimate without samples: err %v, want ErrUnhealthy", est.Err)
	}
	if len(est.Servers) != 1 || !est.Servers[0].Excluded || est.Servers[0].HasSample {
		t.Errorf("servers %+v", est.Servers)
	}
}

func TestEstimatorExtrapolation(t *testing.T) {
	const drift = 200e-6
	e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a"}, DriftBound: drift})
	s := sample("a", 10*time.Second, base, time.Millisecond)
	if j := e.Observe(s); j != nil {
		t.Fatalf("first sample reported a jump: %+v", j)
	}
	for _, elapsed := range []time.Duration{0, 1, time.Microsecond, time.Second, 5 * time.Second, 30 * time.Second, time.Minute} {
		est := e.Estimate(s.Local + elapsed)
		if est.Err != nil {
			t.Fatalf("elapsed %s: %v", elapsed, est.Err)
		}
		w := Timestamp(math.Ceil(drift * float64(elapsed)))
		if float64(w) < drift*float64(elapsed) || float64(w) > drift*float64(elapsed)+1 {
			t.Fatalf("bad widening %d for %s", w, elapsed)
		}
		want := Interval{
			Earliest: base - Timestamp(time.Millisecond) + Timestamp(elapsed) - w,
			Latest:   base + Timestamp(time.Millisecond) + Timestamp(elapsed) + w,
		}
		if est.Interval != want {
			t.Errorf("elapsed %s: interval %v, want %v", elapsed, est.Interval, want)
		}
		if got, wantEps := est.Interval.Epsilon(), time.Millisecond+time.Duration(w); got != wantEps {
			t.Errorf("elapsed %s: ε %s, want %s", elapsed, got, wantEps)
		}
		if est.LastSync != s.Local {
			t.Errorf("LastSync %s, want %s", est.LastSync, s.Local)
		}
	}
	// 30 s at 200 µs/s: ε grows from 1 ms to 7 ms, Spanner's sawtooth.
	if eps := e.Estimate(s.Local + 30*time.Second).Interval.Epsilon(); eps < 7*time.Millisecond || eps > 7*time.Millisecond+1 {
		t.Errorf("ε after 30 s = %s, want 7ms", eps)
	}
}

func TestExtrapolateBackwards(t *testing.T) {
	i := iv(base, base+10)
	got := Extrapolate(i, 10*time.Second, 9*time.Second, 200e-6)
	w := Timestamp(math.Ceil(200e-6 * float64(time.Second)))
	want := iv(base-Timestamp(time.Second)-w, base+10-Timestamp(time.Second)+w)
	if got != want {
		t.Errorf("Extrapolate backwards = %v, want %v", got, want)
	}
	if got := Extrapolate(i, time.Second, time.Second, 200e-6); got != i {
		t.Errorf("Extrapolate by 0 = %v, want %v", got, i)
	}
}

// A step of the only server is a step of the clock's sources: the
// estimator fences at once (architecture invariant 2) and gives no interval
// however many consistent samples follow, until Unfence adopts the new
// time.
func TestEstimatorStepFences(t *testing.T) {
	for _, step := range []time.Duration{50 * time.Millisecond, -50 * time.Millisecond, 200 * time.Millisecond, 5 * time.Second} {
		e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a"}})
		const errb = time.Millisecond
		e.Observe(sample("a", 0, base, errb))
		before := e.Estimate(0)
		if before.Err != nil {
			t.Fatal(before.Err)
		}
		s := sample("a", time.Second, base.Add(time.Second+step), errb)
		j := e.Observe(s)
		if j == nil || j.Server != "a" || j.Sample != s.Interval() {
			t.Fatalf("step %s: jump %+v, want one reported for the sample %v", step, j, s.Interval())
		}
		est := e.Estimate(time.Second)
		if !errors.Is(est.Err, ErrFenced) || !errors.Is(est.Err, ErrUnhealthy) {
			t.Fatalf("step %s: err %v, want ErrFenced", step, est.Err)
		}
		if est.Fence == nil || est.Fence.Kind != FenceStep || est.Fence.Step < step-2*errb || est.Fence.Step > step+2*errb {
			t.Fatalf("step %s: fence %+v", step, est.Fence)
		}
		if est.Interval != (Interval{}) || est.Candidate != s.Interval() {
			t.Errorf("step %s: interval %v candidate %v, want none and the sample", step, est.Interval, est.Candidate)
		}
		// The server keeps agreeing with itself at the new time: still
		// fenced.
		for k := 2; k <= 6; k++ {
			local := time.Duration(k) * time.Second
			if j := e.Observe(sample("a", local, base.Add(local+step), errb)); j != nil {
				t.Fatalf("step %s: consistent sample %d reported as a jump", step, k)
			}
			if est := e.Estimate(local); !errors.Is(est.Err, ErrFenced) {
				t.Fatalf("step %s: after %d consistent samples the fence lifted by itself: %v %v", step, k-1, est.Interval, est.Err)
			}
		}
		if err := e.Unfence(6 * time.Second); err != nil {
			t.Fatal(err)
		}
		est = e.Estimate(6 * time.Second)
		want := sample("a", 6*time.Second, base.Add(6*time.Second+step), errb).Interval()
		if est.Err != nil || est.Interval != want {
			t.Errorf("step %s: after Unfence %v %v, want the servers' time %v", step, est.Interval, est.Err, want)
		}
	}
}

// A source running away faster than the drift bound allows, in steps each
// too small to contradict its previous sample, still fences: the estimate
// is carried forward by the oscillator and intersected with every reading.
func TestEstimatorRunawayFences(t *testing.T) {
	e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a"}})
	const errb = time.Millisecond
	fenced := -1
	for k := 0; k < 10 && fenced < 0; k++ {
		local := time.Duration(k) * time.Second
		// 2 ms per second: ten times the drift bound.
		if j := e.Observe(sample("a", local, base.Add(local+time.Duration(k)*2*time.Millisecond), errb)); j != nil {
			t.Fatalf("sample %d reported as a jump: %+v", k, j)
		}
		est := e.Estimate(local)
		if errors.Is(est.Err, ErrFenced) {
			fenced = k
			continue
		}
		if est.Err != nil {
			t.Fatal(est.Err)
		}
	}
	if fenced < 0 || fenced > 3 {
		t.Errorf("a source running at 10× the drift bound fenced at sample %d, want within 3", fenced)
	}
}

// One server of three stepping is out-voted and fences nothing.
func TestEstimatorLoneStepOutvoted(t *testing.T) {
	e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a", "b", "c"}})
	const errb = time.Millisecond
	for k := 0; k < 5; k++ {
		local := time.Duration(k) * time.Second
		off := time.Duration(0)
		if k >= 2 {
			off = 200 * time.Millisecond
		}
		e.Observe(sample("a", local, base.Add(local+off), errb))
		e.Observe(sample("b", local, base.Add(local), errb))
		e.Observe(sample("c", local, base.Add(local+100*time.Microsecond), errb))
		est := e.Estimate(local)
		if est.Err != nil || !est.Interval.Contains(base.Add(local)) {
			t.Fatalf("k=%d: %v %v", k, est.Interval, est.Err)
		}
		if k >= 2 && !est.Servers[0].Excluded {
			t.Errorf("k=%d: the stepped server is not excluded", k)
		}
	}
}

// Sources lost for a while and back: the carried-forward estimate has
// widened by the drift bound meanwhile, so the same time is accepted; a
// time 200 ms away is not.
func TestEstimatorSourcesBackAfterLoss(t *testing.T) {
	for _, back := range []time.Duration{0, 3 * time.Millisecond, 200 * time.Millisecond} {
		e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a"}, SyncDeadline: 10 * time.Second})
		const errb = time.Millisecond
		e.Observe(sample("a", 0, base, errb))
		e.Estimate(0)
		if est := e.Estimate(30 * time.Second); est.Err == nil {
			t.Fatalf("no sample for 30 s with a 10 s deadline: healthy %v", est.Interval)
		}
		local := 30 * time.Second
		e.Observe(sample("a", local, base.Add(local+back), errb))
		est := e.Estimate(local)
		// 30 s at 200 µs/s widens each side by 6 ms: a 3 ms difference is
		// within it, 200 ms is a step.
		if wantFence := back > 10*time.Millisecond; errors.Is(est.Err, ErrFenced) != wantFence {
			t.Errorf("back %s after 30 s: err %v, want fenced %v", back, est.Err, wantFence)
		}
	}
}

// A fence from outside (peers, an operator) holds until Unfence, which
// needs a majority of the servers.
func TestEstimatorExternalFence(t *testing.T) {
	e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a", "b", "c"}})
	const errb = time.Millisecond
	for _, srv := range []string{"a", "b", "c"} {
		e.Observe(sample(srv, 0, base, errb))
	}
	e.Fence(FencePeers, "two peers disagree", time.Second)
	e.Fence(FenceOperator, "ignored: a fence is in place", time.Second)
	est := e.Estimate(time.Second)
	if !errors.Is(est.Err, ErrFenced) || est.Fence == nil || est.Fence.Kind != FencePeers || !strings.Contains(est.Err.Error(), "two peers disagree") {
		t.Fatalf("fenced estimate: %v %+v", est.Err, est.Fence)
	}
	if f, ok := e.Fenced(); !ok || f.Local != time.Second {
		t.Errorf("Fenced: %+v %v", f, ok)
	}
	// No majority at 2 minutes (the samples are stale): Unfence refuses.
	if err := e.Unfence(2 * time.Minute); !errors.Is(err, ErrUnhealthy) {
		t.Errorf("Unfence with stale samples: %v", err)
	}
	if err := e.Unfence(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if est := e.Estimate(2 * time.Second); est.Err != nil || !est.Interval.Contains(base.Add(2*time.Second)) {
		t.Errorf("after Unfence: %v %v", est.Interval, est.Err)
	}
}

func TestEstimatorFalseticker(t *testing.T) {
	e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a", "b", "f"}})
	e.Observe(sample("a", time.Second, base, time.Millisecond))
	e.Observe(sample("b", time.Second, base.Add(300*time.Microsecond), time.Millisecond))
	e.Observe(sample("f", time.Second, base.Add(time.Second), time.Millisecond))
	est := e.Estimate(time.Second)
	if est.Err != nil {
		t.Fatal(est.Err)
	}
	if !est.Interval.Contains(base) {
		t.Errorf("%v does not contain the truth", est.Interval)
	}
	want := []bool{false, false, true}
	for i, s := range est.Servers {
		if s.Excluded != want[i] {
			t.Errorf("server %s excluded %v, want %v", s.Server, s.Excluded, want[i])
		}
	}
}

func TestEstimatorStale(t *testing.T) {
	e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a", "b", "c"}, SyncDeadline: 5 * time.Second})
	for _, s := range []string{"a", "b", "c"} {
		e.Observe(sample(s, 0, base, time.Millisecond))
	}
	// Only a and b answer later.
	for _, s := range []string{"a", "b"} {
		e.Observe(sample(s, 4*time.Second, base.Add(4*time.Second), time.Millisecond))
	}
	est := e.Estimate(6 * time.Second)
	if est.Err != nil {
		t.Fatalf("two fresh servers of three: %v", est.Err)
	}
	if c := est.Servers[2]; !c.Excluded || c.Effective != (Interval{}) || !c.HasSample {
		t.Errorf("stale server c: %+v, want excluded with no effective interval", c)
	}
	if est.LastSync != 4*time.Second {
		t.Errorf("LastSync %s, want 4s", est.LastSync)
	}
	// Exactly at the deadline a sample still counts; past it, it drops out.
	if est := e.Estimate(9 * time.Second); est.Err != nil {
		t.Errorf("at the deadline: %v", est.Err)
	}
	est = e.Estimate(9*time.Second + 1)
	if !errors.Is(est.Err, ErrUnhealthy) || !strings.Contains(est.Err.Error(), "no majority") {
		t.Fatalf("all samples stale: err %v, want no majority", est.Err)
	}
	for _, s := range est.Servers {
		if !s.Excluded {
			t.Errorf("stale server %s not excluded", s.Server)
		}
	}
	// Fresh samples bring it back.
	for _, s := range []string{"b", "c"} {
		e.Observe(sample(s, 10*time.Second, base.Add(10*time.Second), time.Millisecond))
	}
	if est := e.Estimate(10 * time.Second); est.Err != nil {
		t.Errorf("after fresh samples: %v", est.Err)
	}
}

func TestEstimatorMaxEpsilon(t *testing.T) {
	e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a"}, MaxEpsilon: 2 * time.Millisecond})
	e.Observe(sample("a", 0, base, time.Millisecond))
	if est := e.Estimate(time.Second); est.Err != nil {
		t.Fatalf("ε 1.2ms: %v", est.Err)
	}
	// 1 ms + 200 µs/s × 4 s = 1.8 ms: still healthy.
	if est := e.Estimate(4 * time.Second); est.Err != nil {
		t.Errorf("ε 1.8ms: %v", est.Err)
	}
	est := e.Estimate(6 * time.Second)
	if !errors.Is(est.Err, ErrUnhealthy) {
		t.Fatalf("ε %s above max: err %v, want ErrUnhealthy", est.Interval.Epsilon(), est.Err)
	}
	if !strings.Contains(est.Err.Error(), "exceeds") {
		t.Errorf("error %q does not say why", est.Err)
	}
	// A sample wider than the maximum is unhealthy at once.
	e2 := newTestEstimator(t, EstimatorConfig{Servers: []string{"a"}, MaxEpsilon: time.Millisecond})
	e2.Observe(sample("a", 0, base, 2*time.Millisecond))
	if est := e2.Estimate(0); !errors.Is(est.Err, ErrUnhealthy) {
		t.Errorf("wide sample: err %v", est.Err)
	}
}

func TestEstimatorNoMajority(t *testing.T) {
	tests := []struct {
		name    string
		servers []string
		samples []Sample
	}{
		{"three disagree", []string{"a", "b", "c"}, []Sample{
			sample("a", 0, base, time.Millisecond),
			sample("b", 0, base.Add(time.Second), time.Millisecond),
			sample("c", 0, base.Add(2*time.Second), time.Millisecond),
		}},
		{"one of three answered", []string{"a", "b", "c"}, []Sample{
			sample("a", 0, base, time.Millisecond),
		}},
		{"two of four agree", []string{"a", "b", "c", "d"}, []Sample{
			sample("a", 0, base, time.Millisecond),
			sample("b", 0, base, time.Millisecond),
			sample("c", 0, base.Add(time.Second), time.Millisecond),
		}},
		{"two disagree", []string{"a", "b"}, []Sample{
			sample("a", 0, base, time.Millisecond),
			sample("b", 0, base.Add(time.Second), time.Millisecond),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEstimator(t, EstimatorConfig{Servers: tc.servers})
			for _, s := range tc.samples {
				e.Observe(s)
			}
			est := e.Estimate(0)
			if !errors.Is(est.Err, ErrUnhealthy) || !strings.Contains(est.Err.Error(), "no majority") {
				t.Fatalf("err %v, want no majority", est.Err)
			}
			if est.Interval != (Interval{}) {
				t.Errorf("interval %v reported without a majority", est.Interval)
			}
		})
	}
	// Two of three agreeing is a majority even if the third never answered.
	e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a", "b", "c"}})
	e.Observe(sample("a", 0, base, time.Millisecond))
	e.Observe(sample("b", 0, base, time.Millisecond))
	if est := e.Estimate(0); est.Err != nil {
		t.Errorf("two of three: %v", est.Err)
	}
}

func TestEstimatorRejectAndUnknown(t *testing.T) {
	e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a"}})
	e.Reject("a", RejectKiss, errors.New("kiss of death (RATE)"))
	e.Reject("a", RejectKiss, nil)
	e.Reject("a", RejectQuery, errors.New("timeout"))
	e.Reject("zzz", RejectQuery, nil) // unknown: ignored
	if j := e.Observe(sample("zzz", 0, base, time.Millisecond)); j != nil {
		t.Error("unknown server reported a jump")
	}
	st := e.Estimate(0).Servers
	if len(st) != 1 {
		t.Fatalf("servers %+v", st)
	}
	s := st[0]
	if s.Rejected != 3 || s.Rejections[RejectKiss] != 2 || s.Rejections[RejectQuery] != 1 || s.LastError != "timeout" || s.HasSample {
		t.Errorf("status %+v", s)
	}
	// Status maps are copies.
	s.Rejections[RejectKiss] = 100
	if e.Estimate(0).Servers[0].Rejections[RejectKiss] != 2 {
		t.Error("Estimate returned the estimator's own map")
	}
	e.Observe(sample("a", 0, base, time.Millisecond))
	if s := e.Estimate(0).Servers[0]; s.LastError != "" || s.Accepted != 1 {
		t.Errorf("after an accepted sample: %+v", s)
	}
}
