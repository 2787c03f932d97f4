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
	if c.DriftBound != DefaultDriftBound || c.JumpConfirmations != DefaultJumpConfirmations {
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

func TestEstimatorJump(t *testing.T) {
	e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a"}, JumpConfirmations: 3})
	const errb = time.Millisecond
	jump := 50 * time.Millisecond
	if j := e.Observe(sample("a", 0, base, errb)); j != nil {
		t.Fatal("unexpected jump")
	}
	before := e.Estimate(time.Second)
	// At local 1 s the server suddenly claims 50 ms more.
	s := sample("a", time.Second, base.Add(time.Second+jump), errb)
	j := e.Observe(s)
	if j == nil {
		t.Fatal("jump not reported")
	}
	if j.Server != "a" || j.Sample != s.Interval() || j.Previous != before.Interval {
		t.Errorf("jump %+v; previous want %v, sample want %v", j, before.Interval, s.Interval())
	}
	if j.Adopted != j.Previous.Hull(j.Sample) {
		t.Errorf("adopted %v, want the hull %v", j.Adopted, j.Previous.Hull(j.Sample))
	}
	est := e.Estimate(time.Second)
	if est.Err != nil {
		t.Fatal(est.Err)
	}
	// Never narrower than the previous interval: both the old and the new
	// time stay inside.
	if est.Interval != j.Adopted {
		t.Errorf("estimate %v, want the adopted hull %v", est.Interval, j.Adopted)
	}
	if !est.Interval.Contains(before.Interval.Earliest) || !est.Interval.Contains(before.Interval.Latest) ||
		!est.Interval.Contains(s.Interval().Earliest) || !est.Interval.Contains(s.Interval().Latest) {
		t.Errorf("estimate %v does not cover previous %v and sample %v", est.Interval, before.Interval, s.Interval())
	}
	if est.Interval.Epsilon() < before.Interval.Epsilon() {
		t.Errorf("ε shrank across a jump: %s < %s", est.Interval.Epsilon(), before.Interval.Epsilon())
	}
	st := est.Servers[0]
	if !st.Jumped || st.Jumps != 1 || st.Accepted != 2 {
		t.Errorf("status after jump %+v", st)
	}
	// JumpConfirmations consistent samples at the new time: the estimator
	// keeps the hull for the first two and follows the server at the third.
	for k := 1; k <= 3; k++ {
		local := time.Duration(1+k) * time.Second
		s := sample("a", local, base.Add(local+jump), errb)
		if j := e.Observe(s); j != nil {
			t.Fatalf("confirmation %d reported as a jump: %+v", k, j)
		}
		est := e.Estimate(local)
		if k < 3 {
			if !est.Servers[0].Jumped || !est.Interval.Contains(base.Add(local)) || est.Interval.Epsilon() < jump/2 {
				t.Errorf("confirmation %d: followed the server too early: %v (jumped %v)", k, est.Interval, est.Servers[0].Jumped)
			}
		} else {
			if est.Servers[0].Jumped || est.Interval != s.Interval() {
				t.Errorf("after %d confirmations: interval %v jumped %v, want the sample %v", k, est.Interval, est.Servers[0].Jumped, s.Interval())
			}
		}
	}
	if st := e.Estimate(4 * time.Second).Servers[0]; st.Jumps != 1 {
		t.Errorf("jumps counted %d, want 1", st.Jumps)
	}
}

// A server that keeps wandering never confirms: the estimator keeps the hull.
func TestEstimatorJumpUnconfirmed(t *testing.T) {
	e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a"}})
	const errb = time.Millisecond
	e.Observe(sample("a", 0, base, errb))
	e.Observe(sample("a", time.Second, base.Add(time.Second+20*time.Millisecond), errb)) // jump
	// Alternate between +10 ms and +30 ms: each sample overlaps the hull but
	// never the previous raw sample.
	for k := 2; k < 10; k++ {
		off := 10 * time.Millisecond
		if k%2 == 1 {
			off = 30 * time.Millisecond
		}
		local := time.Duration(k) * time.Second
		e.Observe(sample("a", local, base.Add(local+off), errb))
		est := e.Estimate(local)
		if !est.Servers[0].Jumped {
			t.Fatalf("k=%d: wandering server confirmed", k)
		}
		if !est.Interval.Contains(base.Add(local)) {
			t.Fatalf("k=%d: interval %v lost the original time", k, est.Interval)
		}
	}
}

// A transient glitch that returns to the old time stays covered.
func TestEstimatorJumpAndBack(t *testing.T) {
	e := newTestEstimator(t, EstimatorConfig{Servers: []string{"a"}})
	const errb = time.Millisecond
	e.Observe(sample("a", 0, base, errb))
	if j := e.Observe(sample("a", time.Second, base.Add(time.Second+time.Second), errb)); j == nil {
		t.Fatal("jump not reported")
	}
	e.Observe(sample("a", 2*time.Second, base.Add(2*time.Second), errb))
	est := e.Estimate(2 * time.Second)
	if !est.Interval.Contains(base.Add(2*time.Second)) || !est.Interval.Contains(base.Add(3*time.Second)) {
		t.Errorf("after jump and back %v does not cover both times", est.Interval)
	}
	if est.Servers[0].Jumps != 1 {
		t.Errorf("jumps %d, want 1", est.Servers[0].Jumps)
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
