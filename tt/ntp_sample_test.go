package tt

import (
	"errors"
	"testing"
	"time"

	"github.com/beevik/ntp"
)

// TestToSampleBound checks the error bound of a sample against the NTP
// arithmetic. With the client's oscillator off by r (|r| ≤ DriftBound), the
// true offset at the client's receive time lies within
// θ ± (RTT/2 + |r|·(t4−t1)): the client measures the round trip with its own
// drifting clock. Our reading comes later still, at wall. So the bound must
// be at least RTT/2 + root delay/2 + root dispersion + precision +
// DriftBound·(wall − t1).
func TestToSampleBound(t *testing.T) {
	c, err := NewNTP(NTPConfig{Servers: []string{"127.0.0.1:123"}, MaxEpsilon: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		rtt, after time.Duration // round trip; gap from receipt to our reading
	}{
		{30 * time.Microsecond, time.Microsecond},
		{50 * time.Millisecond, 100 * time.Microsecond},
		{400 * time.Millisecond, time.Millisecond},
		{900 * time.Millisecond, 200 * time.Millisecond}, // wall − t1 beyond 1 s
	} {
		t4 := t1.Add(tc.rtt)
		wall := t4.Add(tc.after)
		resp := &ntp.Response{
			ClockOffset:    3 * time.Millisecond,
			RTT:            tc.rtt,
			Precision:      100 * time.Nanosecond,
			Stratum:        2,
			Version:        4,
			ReferenceTime:  t1.Add(-time.Second),
			Time:           t1.Add(tc.rtt / 2),
			RootDelay:      2 * time.Millisecond,
			RootDispersion: time.Millisecond,
			Timestamps: ntp.ProtocolTimestamps{
				ClientXmit: t1,
				ServerRecv: t1.Add(tc.rtt/2 + 3*time.Millisecond),
				ServerXmit: t1.Add(tc.rtt/2 + 3*time.Millisecond),
				ClientRecv: t4,
			},
		}
		s, reason, err := c.toSample(queryResult{server: "127.0.0.1:123", resp: resp, local: 7 * time.Second, wall: wall})
		if err != nil {
			t.Fatalf("rtt %s: rejected (%s): %v", tc.rtt, reason, err)
		}
		min := tc.rtt/2 + time.Millisecond + time.Millisecond + 100*time.Nanosecond +
			time.Duration(DefaultDriftBound*float64(wall.Sub(t1)))
		if s.Err < min {
			t.Errorf("rtt %s: error bound %s < %s: drift over the exchange not covered", tc.rtt, s.Err, min)
		}
		if s.Err > min+10 {
			t.Errorf("rtt %s: error bound %s much larger than %s", tc.rtt, s.Err, min)
		}
		if s.Mid != FromTime(wall).Add(3*time.Millisecond) || s.Local != 7*time.Second || s.Server != "127.0.0.1:123" {
			t.Errorf("sample %+v", s)
		}
	}
	// A failed query is a rejection with its error.
	qerr := errors.New("boom")
	if _, reason, err := c.toSample(queryResult{err: qerr}); reason != RejectQuery || !errors.Is(err, qerr) {
		t.Errorf("failed query: %q %v", reason, err)
	}
}
