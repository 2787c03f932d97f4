package tt

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/meridiandb/meridian/internal/ntptest"
	"github.com/meridiandb/meridian/internal/syncbuf"
)

// logBuffer collects a clock's log lines; a failed test prints them.
type logBuffer struct{ syncbuf.Buffer }

// Count returns how many log lines contain s.
func (l *logBuffer) Count(s string) int { return strings.Count(l.String(), s) }

// newTestNTP returns an NTP clock with a logger into a buffer that the test
// prints if it fails, closed at the end of the test.
func newTestNTP(t *testing.T, cfg NTPConfig) (*NTP, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = time.Second
	}
	c, err := NewNTP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			t.Logf("clock log:\n%s", logs.String())
		}
	})
	return c, logs
}

// fakes starts n healthy fake servers.
func fakes(t *testing.T, n int) ([]*ntptest.Server, []string) {
	t.Helper()
	srvs := make([]*ntptest.Server, n)
	addrs := make([]string, n)
	for i := range srvs {
		srvs[i] = ntptest.Start(t, ntptest.Behavior{})
		addrs[i] = srvs[i].Addr()
	}
	return srvs, addrs
}

// checkContainsNow checks that the clock is healthy and that the system
// clock's reading (true time for these tests: the servers serve it) lies in
// the interval: read before it for Earliest and after it for Latest. It
// returns the interval read first.
func checkContainsNow(t *testing.T, c Clock, shift time.Duration) Interval {
	t.Helper()
	a, err := c.Now()
	if err != nil {
		t.Fatalf("Now: %v", err)
	}
	w := FromTime(time.Now()).Add(shift)
	b, err := c.Now()
	if err != nil {
		t.Fatalf("Now: %v", err)
	}
	if w < a.Earliest || w > b.Latest {
		t.Fatalf("time %d (system clock %+v) outside [%d, %d] (ε %s): earliest-w = %s, w-latest = %s",
			w, shift, a.Earliest, b.Latest, a.Epsilon(), a.Earliest.Sub(w), w.Sub(b.Latest))
	}
	return a
}

func checkUnhealthy(t *testing.T, c Clock) error {
	t.Helper()
	iv, err := c.Now()
	if !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("Now = %v, %v; want an error wrapping ErrUnhealthy", iv, err)
	}
	if iv != (Interval{}) {
		t.Errorf("unhealthy Now returned an interval %v", iv)
	}
	return err
}

func serverStatus(t *testing.T, c *NTP, addr string) ServerStatus {
	t.Helper()
	for _, s := range c.Status().Servers {
		if s.Server == addr {
			return s
		}
	}
	t.Fatalf("no status for %s in %+v", addr, c.Status().Servers)
	return ServerStatus{}
}

func TestNTPConfig(t *testing.T) {
	bad := [][]string{
		nil,
		{},
		{""},
		{":123"},
		{"host:0"},
		{"host:65536"},
		{"host:abc"},
		{"a:123", "a"}, // the same server twice once normalized
	}
	for _, servers := range bad {
		if _, err := NewNTP(NTPConfig{Servers: servers}); err == nil {
			t.Errorf("NewNTP(%q) succeeded", servers)
		}
	}
	in := []string{"time.example.com", "127.0.0.1:1123", "[::1]:123"}
	c, err := NewNTP(NTPConfig{Servers: in, PollInterval: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.Config()
	if want := []string{"time.example.com:123", "127.0.0.1:1123", "[::1]:123"}; strings.Join(cfg.Servers, ",") != strings.Join(want, ",") {
		t.Errorf("servers %q, want %q", cfg.Servers, want)
	}
	if in[0] != "time.example.com" {
		t.Error("NewNTP modified the caller's slice")
	}
	if cfg.QueryTimeout != time.Second || cfg.DriftBound != DefaultDriftBound || cfg.MaxEpsilon != 100*time.Millisecond ||
		cfg.SyncDeadline != 80*time.Second || cfg.Logger == nil {
		t.Errorf("defaults %+v", cfg)
	}
	c2, _ := NewNTP(NTPConfig{Servers: in})
	// max(30 s, 8 × poll)
	if c2.Config().PollInterval != 4*time.Second || c2.Config().SyncDeadline != 32*time.Second {
		t.Errorf("defaults %+v", c2.Config())
	}
	if !strings.Contains(c.Describe(), "127.0.0.1:1123") {
		t.Errorf("Describe %q", c.Describe())
	}
	// Before the first Sync the clock is unhealthy.
	checkUnhealthy(t, c)
}

func TestNTPFakeHealthy(t *testing.T) {
	t.Parallel()
	srvs, addrs := fakes(t, 1)
	c, _ := newTestNTP(t, NTPConfig{Servers: addrs})
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	iv := checkContainsNow(t, c, 0)
	// Loopback: tens of µs, more on a loaded machine.
	if eps := iv.Epsilon(); eps <= 0 || eps > 50*time.Millisecond {
		t.Errorf("ε %s on loopback", eps)
	}
	st := serverStatus(t, c, addrs[0])
	if !st.HasSample || st.Excluded || st.Accepted != 1 || st.Rejected != 0 || st.Last.Stratum != 2 || st.Last.RTT <= 0 {
		t.Errorf("status %+v", st)
	}
	// The sample's bound: RTT/2 + precision (2^-23 s) + slack.
	if st.Last.Err < st.Last.RTT/2 || st.Last.Precision != 119*time.Nanosecond {
		t.Errorf("sample %+v", st.Last)
	}
	if got := srvs[0].Requests(); got != 1 {
		t.Errorf("server saw %d requests, want 1", got)
	}
	if s := c.Status(); s.Err != nil || s.Interval.Epsilon() <= 0 {
		t.Errorf("Status %+v", s)
	}
}

func TestNTPRootDelayDispersion(t *testing.T) {
	t.Parallel()
	srv := ntptest.Start(t, ntptest.Behavior{RootDelay: 10 * time.Millisecond, RootDispersion: 5 * time.Millisecond})
	c, _ := newTestNTP(t, NTPConfig{Servers: []string{srv.Addr()}})
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	iv := checkContainsNow(t, c, 0)
	// ε ≥ root delay/2 + root dispersion.
	if eps := iv.Epsilon(); eps < 10*time.Millisecond || eps > 60*time.Millisecond {
		t.Errorf("ε %s, want 10ms + RTT/2", eps)
	}
	st := serverStatus(t, c, srv.Addr())
	if d := st.Last.RootDelay - 10*time.Millisecond; d < 0 || d > 20*time.Microsecond {
		t.Errorf("root delay %s", st.Last.RootDelay)
	}
	if d := st.Last.RootDispersion - 5*time.Millisecond; d < 0 || d > 20*time.Microsecond {
		t.Errorf("root dispersion %s", st.Last.RootDispersion)
	}
}

func TestNTPFalseticker(t *testing.T) {
	t.Parallel()
	srvs, addrs := fakes(t, 3)
	srvs[1].Set(func(b *ntptest.Behavior) { b.Offset = time.Second })
	c, logs := newTestNTP(t, NTPConfig{Servers: addrs})
	for round := 0; round < 3; round++ {
		if err := c.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		iv := checkContainsNow(t, c, 0)
		if iv.Epsilon() > 100*time.Millisecond {
			t.Errorf("ε %s: the falseticker (1 s off) widened the interval", iv.Epsilon())
		}
		for i, a := range addrs {
			if st := serverStatus(t, c, a); st.Excluded != (i == 1) || !st.HasSample {
				t.Errorf("round %d: server %d excluded=%v", round, i, st.Excluded)
			}
		}
	}
	// Logged once, when it became excluded.
	if n := logs.Count(`msg="ntp server excluded as a falseticker`); n != 1 {
		t.Errorf("exclusion logged %d times, want 1", n)
	}
}

func TestNTPServerLossOneOfThree(t *testing.T) {
	t.Parallel()
	srvs, addrs := fakes(t, 3)
	srvs[2].Set(func(b *ntptest.Behavior) { b.Drop = true })
	c, _ := newTestNTP(t, NTPConfig{Servers: addrs, QueryTimeout: 200 * time.Millisecond})
	if err := c.Sync(context.Background()); err != nil {
		t.Fatalf("two of three answer: %v", err)
	}
	checkContainsNow(t, c, 0)
	st := serverStatus(t, c, addrs[2])
	if st.HasSample || !st.Excluded || st.Rejections[RejectQuery] != 1 || st.LastError == "" {
		t.Errorf("lost server status %+v", st)
	}
	if srvs[2].Requests() != 1 || srvs[2].Replies() != 0 {
		t.Errorf("lost server: %d requests, %d replies", srvs[2].Requests(), srvs[2].Replies())
	}
	// A second one lost: no majority.
	srvs[1].Set(func(b *ntptest.Behavior) { b.Drop = true })
	// Its last sample is still fresh: healthy until the deadline.
	if err := c.Sync(context.Background()); err != nil {
		t.Fatalf("samples still fresh: %v", err)
	}
}

func TestNTPServerLossAll(t *testing.T) {
	t.Parallel()
	srvs, addrs := fakes(t, 3)
	const deadline = 300 * time.Millisecond
	c, logs := newTestNTP(t, NTPConfig{Servers: addrs, SyncDeadline: deadline, QueryTimeout: 50 * time.Millisecond})
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	synced := time.Now()
	for _, s := range srvs {
		s.Set(func(b *ntptest.Behavior) { b.Drop = true })
	}
	// Within the deadline the old samples still bound true time.
	if err := c.Sync(context.Background()); err != nil && time.Since(synced) < deadline {
		t.Fatalf("all lost, samples fresh: %v", err)
	}
	if time.Since(synced) < deadline-20*time.Millisecond {
		checkContainsNow(t, c, 0)
	}
	time.Sleep(time.Until(synced.Add(deadline + 20*time.Millisecond)))
	// Now goes unhealthy by itself past the deadline, without a Sync.
	err := checkUnhealthy(t, c)
	if !errors.Is(err, errSyncTooOld) {
		t.Errorf("err %v, want %v", err, errSyncTooOld)
	}
	// A Sync now finds every sample stale.
	if err := c.Sync(context.Background()); !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), "no majority") {
		t.Errorf("Sync with all servers lost: %v", err)
	}
	checkUnhealthy(t, c)
	if logs.Count(`msg="clock unhealthy"`) != 1 {
		t.Errorf("the health change was not logged once:\n%s", logs.String())
	}
	// The servers come back: healthy again.
	for _, s := range srvs {
		s.Set(func(b *ntptest.Behavior) { b.Drop = false })
	}
	if err := c.Sync(context.Background()); err != nil {
		t.Fatalf("servers back: %v", err)
	}
	checkContainsNow(t, c, 0)
}

// A server stepping alone is a step of the clock's only source: the clock
// fences, stays fenced while the server keeps its new time, and follows it
// only once Unfence adopts it.
func TestNTPStepSingleServerFences(t *testing.T) {
	t.Parallel()
	srvs, addrs := fakes(t, 1)
	c, logs := newTestNTP(t, NTPConfig{Servers: addrs})
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	const step = 40 * time.Millisecond
	srvs[0].Set(func(b *ntptest.Behavior) { b.Offset = step })
	if err := c.Sync(context.Background()); !errors.Is(err, ErrFenced) {
		t.Fatalf("step of %s: Sync %v, want ErrFenced", step, err)
	}
	if err := checkUnhealthy(t, c); !errors.Is(err, ErrFenced) {
		t.Errorf("Now after a step: %v, want ErrFenced", err)
	}
	st := serverStatus(t, c, addrs[0])
	if st.Jumps != 1 || !st.Jumped {
		t.Errorf("status after the step %+v", st)
	}
	f, ok := c.Fenced()
	if !ok || f.Kind != FenceStep || f.Step < step-5*time.Millisecond || f.Step > step+5*time.Millisecond || time.Since(f.Since) > time.Minute {
		t.Errorf("fence %+v %v", f, ok)
	}
	if logs.Count(`msg="ntp server stepped`) != 1 || logs.Count(`msg="clock fenced`) != 1 {
		t.Errorf("step and fence not logged once each")
	}
	// The server agrees with itself from now on: the clock stays fenced.
	for i := 0; i < 4; i++ {
		if err := c.Sync(context.Background()); !errors.Is(err, ErrFenced) {
			t.Fatalf("consistent sample %d after the step: %v, want still fenced", i+1, err)
		}
	}
	cand, err := c.Candidate()
	if err != nil || !cand.Contains(FromTime(time.Now()).Add(step)) {
		t.Errorf("candidate %v %v, want the server's new time", cand, err)
	}
	if err := c.Unfence(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Fenced(); ok {
		t.Error("still fenced after Unfence")
	}
	checkContainsNow(t, c, step)
	if err := c.Sync(context.Background()); err != nil {
		t.Fatalf("after Unfence: %v", err)
	}
}

// Every server stepping together, by a little (50 ms) or by more than the
// maximum ε (150 ms, 200 ms, 5 s), forward or back, fences the clock: the
// servers agree with each other, the oscillator does not agree with them.
func TestNTPAllServersStepFences(t *testing.T) {
	t.Parallel()
	for _, step := range []time.Duration{50 * time.Millisecond, -50 * time.Millisecond, 150 * time.Millisecond, -150 * time.Millisecond,
		200 * time.Millisecond, -200 * time.Millisecond, 5 * time.Second, -5 * time.Second} {
		srvs, addrs := fakes(t, 3)
		c, _ := newTestNTP(t, NTPConfig{Servers: addrs})
		if err := c.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, srv := range srvs {
			srv.Set(func(b *ntptest.Behavior) { b.Offset = step })
		}
		for i := 0; i < 4; i++ {
			if err := c.Sync(context.Background()); !errors.Is(err, ErrFenced) {
				t.Fatalf("step %s, round %d: %v, want ErrFenced", step, i, err)
			}
		}
		checkUnhealthy(t, c)
	}
}

// A strobe (the servers alternating between two times) fences at its
// first swing.
func TestNTPStrobeFences(t *testing.T) {
	t.Parallel()
	srvs, addrs := fakes(t, 3)
	c, _ := newTestNTP(t, NTPConfig{Servers: addrs})
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		off := time.Duration(i%2) * 200 * time.Millisecond
		for _, srv := range srvs {
			srv.Set(func(b *ntptest.Behavior) { b.Offset = off })
		}
		if err := c.Sync(context.Background()); !errors.Is(err, ErrFenced) {
			t.Fatalf("swing %d: %v, want ErrFenced", i, err)
		}
	}
}

// One server of three stepping by a second is out-voted: it is excluded
// and the clock neither widens nor fences.
func TestNTPStepOneOfThree(t *testing.T) {
	t.Parallel()
	srvs, addrs := fakes(t, 3)
	c, _ := newTestNTP(t, NTPConfig{Servers: addrs})
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	srvs[0].Set(func(b *ntptest.Behavior) { b.Offset = time.Second })
	for round := 0; round < 4; round++ {
		if err := c.Sync(context.Background()); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		iv := checkContainsNow(t, c, 0)
		if iv.Epsilon() > 100*time.Millisecond {
			t.Errorf("round %d: ε %s: the stepped server (1 s off) widened the interval", round, iv.Epsilon())
		}
	}
	st := serverStatus(t, c, addrs[0])
	if st.Jumps != 1 || !st.Excluded {
		t.Errorf("stepped server's status %+v, want excluded", st)
	}
	for _, a := range addrs[1:] {
		if serverStatus(t, c, a).Excluded {
			t.Errorf("truthful %s excluded", a)
		}
	}
}

// An outside fence (peers, an operator) holds until Unfence.
func TestNTPExternalFence(t *testing.T) {
	t.Parallel()
	_, addrs := fakes(t, 3)
	c, logs := newTestNTP(t, NTPConfig{Servers: addrs})
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Fence(FencePeers, "disagrees with 2 of 2 peers")
	if err := checkUnhealthy(t, c); !errors.Is(err, ErrFenced) || !strings.Contains(err.Error(), "disagrees with 2 of 2 peers") {
		t.Errorf("Now after Fence: %v", err)
	}
	if err := c.Sync(context.Background()); !errors.Is(err, ErrFenced) {
		t.Errorf("Sync while fenced: %v", err)
	}
	if _, err := c.Candidate(); err != nil {
		t.Errorf("Candidate while fenced: %v", err)
	}
	if err := c.Unfence(); err != nil {
		t.Fatal(err)
	}
	checkContainsNow(t, c, 0)
	if logs.Count(`msg="clock fenced`) != 1 || logs.Count(`msg="clock unfenced`) != 1 {
		t.Errorf("fence and unfence not logged once each")
	}
}

func TestNTPHugeRTT(t *testing.T) {
	t.Parallel()
	srv := ntptest.Start(t, ntptest.Behavior{Delay: 300 * time.Millisecond})
	c, _ := newTestNTP(t, NTPConfig{Servers: []string{srv.Addr()}, MaxEpsilon: 100 * time.Millisecond})
	if err := c.Sync(context.Background()); !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("Sync with a 300ms round trip: %v, want unhealthy", err)
	}
	checkUnhealthy(t, c)
	st := serverStatus(t, c, srv.Addr())
	if st.Rejections[RejectTooWide] != 1 || st.Rejected != 1 || st.HasSample || !strings.Contains(st.LastError, "rtt") {
		t.Errorf("status %+v", st)
	}
}

func TestNTPHugeRTTOneOfThree(t *testing.T) {
	t.Parallel()
	srvs, addrs := fakes(t, 3)
	srvs[1].Set(func(b *ntptest.Behavior) { b.Delay = 300 * time.Millisecond })
	c, _ := newTestNTP(t, NTPConfig{Servers: addrs, MaxEpsilon: 100 * time.Millisecond})
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkContainsNow(t, c, 0)
	if st := serverStatus(t, c, addrs[1]); st.Rejections[RejectTooWide] != 1 || !st.Excluded {
		t.Errorf("slow server %+v", st)
	}
}

// rejectCase is a fault that makes every answer of the server rejected.
type rejectCase struct {
	name    string
	b       ntptest.Behavior
	reasons []string // accepted rejection reasons
	errText string   // in LastError, if set
}

var rejectCases = []rejectCase{
	{"kiss RATE", ntptest.Behavior{KissCode: "RATE"}, []string{RejectKiss}, "RATE"},
	{"kiss DENY", ntptest.Behavior{KissCode: "DENY"}, []string{RejectKiss}, "DENY"},
	{"stratum 16", ntptest.Behavior{Stratum: 16}, []string{RejectStratum}, ""},
	{"stratum 200", ntptest.Behavior{Stratum: 200}, []string{RejectStratum}, ""},
	{"leap alarm", ntptest.Behavior{Leap: 3}, []string{RejectLeap}, ""},
	{"garbage", ntptest.Behavior{Garbage: true}, []string{RejectQuery, RejectMalformed}, ""},
	{"truncated to 20", ntptest.Behavior{TruncateTo: 20}, []string{RejectQuery, RejectMalformed}, ""},
	{"truncated to 47", ntptest.Behavior{TruncateTo: 47}, []string{RejectQuery, RejectMalformed}, ""},
	{"truncated to 1", ntptest.Behavior{TruncateTo: 1}, []string{RejectQuery, RejectMalformed}, ""},
	{"dispersion 17s", ntptest.Behavior{RootDispersion: 17 * time.Second}, []string{RejectInvalid}, ""},
	{"dispersion 1s", ntptest.Behavior{RootDispersion: time.Second}, []string{RejectTooWide}, ""},
}

// A server whose every answer is rejected leaves the clock unhealthy when it
// is the only one, and is out-voted when two good servers agree. Nothing
// panics.
func TestNTPRejected(t *testing.T) {
	for _, tc := range rejectCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := ntptest.Start(t, tc.b)
			c, _ := newTestNTP(t, NTPConfig{Servers: []string{srv.Addr()}, QueryTimeout: 300 * time.Millisecond})
			for round := 1; round <= 2; round++ {
				if err := c.Sync(context.Background()); !errors.Is(err, ErrUnhealthy) {
					t.Fatalf("round %d: Sync = %v, want unhealthy", round, err)
				}
				checkUnhealthy(t, c)
				st := serverStatus(t, c, srv.Addr())
				n := uint64(0)
				for _, r := range tc.reasons {
					n += st.Rejections[r]
				}
				if n != uint64(round) || st.Rejected != uint64(round) || st.HasSample || st.Accepted != 0 {
					t.Fatalf("round %d: status %+v, want %d rejections as %q", round, st, round, tc.reasons)
				}
				if !strings.Contains(st.LastError, tc.errText) {
					t.Errorf("last error %q does not mention %q", st.LastError, tc.errText)
				}
			}
			if srv.Replies() != 2 {
				t.Errorf("server replied %d times, want 2", srv.Replies())
			}

			// Out-voted by two good servers.
			_, good := fakes(t, 2)
			c3, _ := newTestNTP(t, NTPConfig{Servers: append(good, srv.Addr()), QueryTimeout: 300 * time.Millisecond})
			if err := c3.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkContainsNow(t, c3, 0)
			if st := serverStatus(t, c3, srv.Addr()); !st.Excluded || st.Rejected != 1 {
				t.Errorf("faulty server among good ones: %+v", st)
			}
		})
	}
}

// A server that was good and starts sending kisses keeps its last sample
// until the deadline and is then dropped.
func TestNTPKissAfterGood(t *testing.T) {
	t.Parallel()
	srvs, addrs := fakes(t, 1)
	c, _ := newTestNTP(t, NTPConfig{Servers: addrs, SyncDeadline: 200 * time.Millisecond})
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	synced := time.Now()
	srvs[0].Set(func(b *ntptest.Behavior) { b.KissCode = "RATE" })
	err := c.Sync(context.Background())
	if time.Since(synced) < 150*time.Millisecond && err != nil {
		t.Fatalf("kissed while the last sample is fresh: %v", err)
	}
	time.Sleep(time.Until(synced.Add(220 * time.Millisecond)))
	if err := c.Sync(context.Background()); !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("only kisses past the deadline: %v", err)
	}
	checkUnhealthy(t, c)
	if st := serverStatus(t, c, addrs[0]); st.Rejections[RejectKiss] != 2 {
		t.Errorf("status %+v", st)
	}
}

func TestNTPContextDeadline(t *testing.T) {
	t.Parallel()
	srv := ntptest.Start(t, ntptest.Behavior{Drop: true})
	c, _ := newTestNTP(t, NTPConfig{Servers: []string{srv.Addr()}, QueryTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := c.Sync(ctx); !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("Sync = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Sync ignored the context deadline: took %s", d)
	}
	// An expired context: no query at all.
	if err := c.Sync(ctx); !errors.Is(err, ErrUnhealthy) {
		t.Fatalf("Sync = %v", err)
	}
	if st := serverStatus(t, c, srv.Addr()); st.Rejections[RejectQuery] != 2 {
		t.Errorf("status %+v", st)
	}
}

func TestNTPPollLoopFake(t *testing.T) {
	t.Parallel()
	srvs, addrs := fakes(t, 3)
	c, _ := newTestNTP(t, NTPConfig{Servers: addrs, PollInterval: 20 * time.Millisecond})
	c.Start()
	c.Start() // idempotent
	waitHealthy(t, c, 2*time.Second)
	checkContainsNow(t, c, 0)
	for srvs[0].Requests() < 3 {
		time.Sleep(5 * time.Millisecond)
	}
	c.Close()
	c.Close() // idempotent
	err := checkUnhealthy(t, c)
	if !errors.Is(err, errClockClosed) {
		t.Errorf("after Close: %v", err)
	}
	// No more polls after Close.
	n := srvs[0].Requests()
	time.Sleep(60 * time.Millisecond)
	if m := srvs[0].Requests(); m != n {
		t.Errorf("polled %d times after Close", m-n)
	}
	// A Sync after Close does not revive the clock.
	_ = c.Sync(context.Background())
	checkUnhealthy(t, c)
}

// Close racing with a Sync in flight, from the poll loop or from another
// goroutine: Now must report the clock closed afterwards, whatever the
// interleaving.
func TestNTPCloseRacesSync(t *testing.T) {
	t.Parallel()
	_, addrs := fakes(t, 1)
	for i := 0; i < 30; i++ {
		c, _ := newTestNTP(t, NTPConfig{Servers: addrs, PollInterval: time.Millisecond})
		if err := c.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.Start()
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = c.Sync(context.Background())
		}()
		time.Sleep(time.Duration(i*20) * time.Microsecond)
		c.Close()
		<-done
		if _, err := c.Now(); !errors.Is(err, errClockClosed) {
			t.Fatalf("iteration %d: Now after Close = %v, want %v", i, err, errClockClosed)
		}
	}
}

func waitHealthy(t *testing.T, c Clock, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, err := c.Now()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clock not healthy within %s: %v", within, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
