package tt

import (
	"context"
	"io"
	"log/slog"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/meridiandb/meridian/internal/chronytest"
	"github.com/meridiandb/meridian/internal/ntptest"
)

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// syncedNTP returns an NTP clock synchronized once against addr.
func syncedNTP(tb testing.TB, addr string) *NTP {
	tb.Helper()
	c, err := NewNTP(NTPConfig{Servers: []string{addr}, Logger: discardLogger})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	if err := c.Sync(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return c
}

// TestNowDoesNotAllocate: Now is on every hot path (timestamps, leases,
// commit wait) and must not allocate.
func TestNowDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	srv := ntptest.Start(t, ntptest.Behavior{})
	c := syncedNTP(t, srv.Addr())
	unhealthy, _ := NewNTP(NTPConfig{Servers: []string{srv.Addr()}, Logger: discardLogger})
	now := base
	sim := NewSim(SimConfig{}, func() Timestamp { return now })
	for name, clock := range map[string]Clock{"ntp": c, "ntp-unhealthy": unhealthy, "system": NewSystem(time.Millisecond), "sim": sim} {
		if n := testing.AllocsPerRun(1000, func() { _, _ = clock.Now() }); n != 0 {
			t.Errorf("%s: Now allocates %.1f times per call", name, n)
		}
	}
}

func BenchmarkNow(b *testing.B) {
	b.Run("NTP", func(b *testing.B) {
		srv := ntptest.Start(b, ntptest.Behavior{})
		benchNow(b, syncedNTP(b, srv.Addr()))
	})
	b.Run("NTP-parallel", func(b *testing.B) {
		srv := ntptest.Start(b, ntptest.Behavior{})
		c := syncedNTP(b, srv.Addr())
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Now(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("NTP-chrony", func(b *testing.B) {
		benchNow(b, syncedNTP(b, chronytest.Start(b)))
	})
	b.Run("System", func(b *testing.B) {
		benchNow(b, NewSystem(time.Millisecond))
	})
	b.Run("Sim", func(b *testing.B) {
		now := base
		benchNow(b, NewSim(SimConfig{}, func() Timestamp { return now }))
	})
}

func benchNow(b *testing.B, c Clock) {
	if _, err := c.Now(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var sink Interval
	for i := 0; i < b.N; i++ {
		iv, err := c.Now()
		if err != nil {
			b.Fatal(err)
		}
		sink = iv
	}
	_ = sink
}

// BenchmarkEpsilonChrony measures the uncertainty the NTP clock reports
// against a real chronyd on loopback, right after each Sync, and compares it
// with the physical bound of that sample: RTT/2 + root dispersion + drift ×
// age (age: local time since the sample was taken, ~0 here). It runs at
// least 200 rounds 20 ms apart (more with -benchtime=Nx, N > 200); ns/op is
// the mean duration of one Sync.
func BenchmarkEpsilonChrony(b *testing.B) {
	addr := chronytest.Start(b)
	c, err := NewNTP(NTPConfig{Servers: []string{addr}, Logger: discardLogger})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	rounds := max(b.N, 200)
	var (
		eps, bounds, ratios, rtts []float64
		syncTotal                 time.Duration
		misses                    int
	)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < rounds; i++ {
		if i > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		start := time.Now()
		if err := c.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		syncTotal += time.Since(start)
		// Now, at a known local reading.
		local := c.local()
		iv, err := c.pub.Load().at(local, c.cfg.DriftBound, c.cfg.MaxEpsilon, c.cfg.SyncDeadline)
		if err != nil {
			b.Fatal(err)
		}
		w := FromTime(time.Now())
		iv2, _ := c.Now()
		if w < iv.Earliest || w > iv2.Latest {
			misses++
		}
		s := c.Status().Servers[0].Last
		age := local - s.Local
		bound := s.RTT/2 + s.RootDispersion + time.Duration(math.Ceil(c.cfg.DriftBound*float64(age)))
		e := iv.Epsilon()
		eps = append(eps, float64(e))
		bounds = append(bounds, float64(bound))
		ratios = append(ratios, float64(e)/float64(bound))
		rtts = append(rtts, float64(s.RTT))
	}
	b.StopTimer()
	us := func(v float64) float64 { return v / 1e3 }
	b.ReportMetric(float64(syncTotal.Nanoseconds())/float64(rounds), "ns/op")
	b.ReportMetric(us(percentile(eps, 50)), "eps-p50-us")
	b.ReportMetric(us(percentile(eps, 99)), "eps-p99-us")
	b.ReportMetric(us(percentile(bounds, 50)), "bound-p50-us")
	b.ReportMetric(us(percentile(rtts, 50)), "rtt-p50-us")
	b.ReportMetric(percentile(ratios, 50), "eps/bound-p50")
	b.ReportMetric(percentile(ratios, 99), "eps/bound-p99")
	b.ReportMetric(float64(misses), "misses")
	b.ReportMetric(float64(rounds), "rounds")
}

// percentile returns the p-th percentile (nearest rank) of v.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}
