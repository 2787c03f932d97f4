package tt

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

func TestTimestampAdd(t *testing.T) {
	const big = Timestamp(1795620000123456789)
	tests := []struct {
		name string
		t    Timestamp
		d    time.Duration
		want Timestamp
	}{
		{"zero", big, 0, big},
		{"forward", big, time.Second, big + Timestamp(time.Second)},
		{"backward", big, -time.Second, big - Timestamp(time.Second)},
		{"from zero", 0, 5, 5},
		{"to exactly min", 5, -5, MinTimestamp},
		{"below min saturates", 5, -10, MinTimestamp},
		{"far below min saturates", big, math.MinInt64, MinTimestamp},
		{"min minus one", MinTimestamp, -1, MinTimestamp},
		{"to exactly max", MaxTimestamp - 5, 5, MaxTimestamp},
		{"above max saturates", MaxTimestamp - 5, 10, MaxTimestamp},
		{"max plus one", MaxTimestamp, 1, MaxTimestamp},
		{"max plus max", MaxTimestamp, math.MaxInt64, MaxTimestamp},
		{"max minus one", MaxTimestamp, -1, MaxTimestamp - 1},
		{"min plus max", MinTimestamp, math.MaxInt64, MaxTimestamp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.t.Add(tc.d); got != tc.want {
				t.Errorf("%d.Add(%d) = %d, want %d", int64(tc.t), int64(tc.d), int64(got), int64(tc.want))
			}
		})
	}
}

// Add must be monotonic in d: a larger step never lands earlier.
func TestTimestampAddMonotonic(t *testing.T) {
	starts := []Timestamp{MinTimestamp, 1, 1000, Timestamp(time.Now().UnixNano()), MaxTimestamp - 1000, MaxTimestamp}
	steps := []time.Duration{math.MinInt64, -time.Hour, -1001, -1000, -1, 0, 1, 1000, 1001, time.Hour, math.MaxInt64}
	for _, s := range starts {
		prev := s.Add(steps[0])
		for _, d := range steps[1:] {
			got := s.Add(d)
			if got < prev {
				t.Errorf("%d.Add(%d) = %d < the result for a smaller step %d", int64(s), int64(d), int64(got), int64(prev))
			}
			if got < MinTimestamp {
				t.Errorf("%d.Add(%d) = %d below MinTimestamp", int64(s), int64(d), int64(got))
			}
			prev = got
		}
	}
}

func TestTimestampSub(t *testing.T) {
	tests := []struct {
		t, u Timestamp
		want time.Duration
	}{
		{10, 3, 7},
		{3, 10, -7},
		{5, 5, 0},
		{Timestamp(2 * time.Second), Timestamp(time.Second), time.Second},
		{MaxTimestamp, MinTimestamp, time.Duration(math.MaxInt64)},
	}
	for _, tc := range tests {
		if got := tc.t.Sub(tc.u); got != tc.want {
			t.Errorf("%d.Sub(%d) = %d, want %d", int64(tc.t), int64(tc.u), got, tc.want)
		}
		// Sub undoes Add away from the saturation points.
		if tc.t != MaxTimestamp {
			if got := tc.u.Add(tc.t.Sub(tc.u)); got != tc.t {
				t.Errorf("%d.Add(%d.Sub(%d)) = %d", int64(tc.u), int64(tc.t), int64(tc.u), int64(got))
			}
		}
	}
}

func TestTimestampNextPrev(t *testing.T) {
	tests := []struct {
		t          Timestamp
		next, prev Timestamp
	}{
		{MinTimestamp, 1, MinTimestamp},
		{1, 2, 0},
		{100, 101, 99},
		{MaxTimestamp, MaxTimestamp, MaxTimestamp - 1},
		{MaxTimestamp - 1, MaxTimestamp, MaxTimestamp - 2},
	}
	for _, tc := range tests {
		if got := tc.t.Next(); got != tc.next {
			t.Errorf("%d.Next() = %d, want %d", int64(tc.t), int64(got), int64(tc.next))
		}
		if got := tc.t.Prev(); got != tc.prev {
			t.Errorf("%d.Prev() = %d, want %d", int64(tc.t), int64(got), int64(tc.prev))
		}
	}
}

func TestTimestampMisc(t *testing.T) {
	if !Timestamp(1).Less(2) || Timestamp(2).Less(2) || Timestamp(3).Less(2) {
		t.Error("Less is not <")
	}
	if !Timestamp(0).IsZero() || Timestamp(1).IsZero() {
		t.Error("IsZero")
	}
	if got := MaxOf(3, 9, 1, 7); got != 9 {
		t.Errorf("MaxOf = %d, want 9", got)
	}
	if got := MaxOf(4); got != 4 {
		t.Errorf("MaxOf(4) = %d", got)
	}
	now := time.Now()
	ts := FromTime(now)
	if int64(ts) != now.UnixNano() {
		t.Errorf("FromTime = %d, want %d", ts, now.UnixNano())
	}
	if !ts.Time().Equal(now) || ts.Time().Location() != time.UTC {
		t.Errorf("Time() = %v, want %v in UTC", ts.Time(), now)
	}
}

func TestTimestampString(t *testing.T) {
	tests := []struct {
		t    Timestamp
		want string
	}{
		{MaxTimestamp, "max"},
		{MinTimestamp, "0"},
		{1795620000123456789, "2026-11-25T15:20:00.123456789Z (1795620000123456789)"},
		{1500000000000000000, "2017-07-14T02:40:00Z (1500000000000000000)"},
		{1, "1970-01-01T00:00:00.000000001Z (1)"},
	}
	for _, tc := range tests {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("Timestamp(%d).String() = %q, want %q", int64(tc.t), got, tc.want)
		}
		if got := fmt.Sprint(tc.t); got != tc.want {
			t.Errorf("fmt.Sprint(%d) = %q, want %q", int64(tc.t), got, tc.want)
		}
	}
}

func iv(e, l Timestamp) Interval { return Interval{Earliest: e, Latest: l} }

func TestIntervalPredicates(t *testing.T) {
	i := iv(10, 20)
	tests := []struct {
		t                       Timestamp
		after, before, contains bool
	}{
		{0, true, false, false},
		{9, true, false, false},
		{10, false, false, true}, // Earliest itself has not definitely passed
		{15, false, false, true},
		{20, false, false, true}, // Latest itself may have arrived
		{21, false, true, false},
		{MaxTimestamp, false, true, false},
	}
	for _, tc := range tests {
		if got := i.After(tc.t); got != tc.after {
			t.Errorf("%v.After(%d) = %v", i, tc.t, got)
		}
		if got := i.Before(tc.t); got != tc.before {
			t.Errorf("%v.Before(%d) = %v", i, tc.t, got)
		}
		if got := i.Contains(tc.t); got != tc.contains {
			t.Errorf("%v.Contains(%d) = %v", i, tc.t, got)
		}
		// Exactly one of after, before, contains holds.
		n := 0
		for _, b := range []bool{tc.after, tc.before, tc.contains} {
			if b {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("bad table row %+v", tc)
		}
	}
}

func TestIntervalOverlapsHull(t *testing.T) {
	tests := []struct {
		a, b     Interval
		overlaps bool
		hull     Interval
	}{
		{iv(0, 10), iv(5, 15), true, iv(0, 15)},
		{iv(0, 10), iv(10, 20), true, iv(0, 20)}, // touching: closed intervals share 10
		{iv(0, 10), iv(11, 20), false, iv(0, 20)},
		{iv(0, 10), iv(2, 3), true, iv(0, 10)}, // containment
		{iv(5, 5), iv(5, 5), true, iv(5, 5)},   // points
		{iv(5, 5), iv(6, 6), false, iv(5, 6)},
		{iv(100, 200), iv(0, 50), false, iv(0, 200)},
	}
	for _, tc := range tests {
		if got := tc.a.Overlaps(tc.b); got != tc.overlaps {
			t.Errorf("%v.Overlaps(%v) = %v", tc.a, tc.b, got)
		}
		if got := tc.b.Overlaps(tc.a); got != tc.overlaps {
			t.Errorf("%v.Overlaps(%v) = %v (not symmetric)", tc.b, tc.a, got)
		}
		if got := tc.a.Hull(tc.b); got != tc.hull {
			t.Errorf("%v.Hull(%v) = %v, want %v", tc.a, tc.b, got, tc.hull)
		}
		if got := tc.b.Hull(tc.a); got != tc.hull {
			t.Errorf("%v.Hull(%v) = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.hull)
		}
	}
}

func TestIntervalEpsilon(t *testing.T) {
	tests := []struct {
		i     Interval
		eps   time.Duration
		width time.Duration
		mid   Timestamp
		valid bool
	}{
		{iv(10, 20), 5, 10, 15, true},
		{iv(10, 10), 0, 0, 10, true},
		{iv(0, 3), 1, 3, 1, true},
		{iv(1795620000000000000, 1795620000000000000+2*Timestamp(time.Millisecond)), time.Millisecond, 2 * time.Millisecond, 1795620000000000000 + Timestamp(time.Millisecond), true},
		{iv(20, 10), -5, -10, 15, false},
		{iv(MinTimestamp, MaxTimestamp), time.Duration(math.MaxInt64 / 2), time.Duration(math.MaxInt64), MaxTimestamp / 2, true},
	}
	for _, tc := range tests {
		if got := tc.i.Epsilon(); got != tc.eps {
			t.Errorf("%v.Epsilon() = %d, want %d", tc.i, got, tc.eps)
		}
		if got := tc.i.Width(); got != tc.width {
			t.Errorf("%v.Width() = %d, want %d", tc.i, got, tc.width)
		}
		if got := tc.i.Mid(); got != tc.mid {
			t.Errorf("%v.Mid() = %d, want %d", tc.i, got, tc.mid)
		}
		if got := tc.i.Valid(); got != tc.valid {
			t.Errorf("%v.Valid() = %v", tc.i, got)
		}
	}
	if got, want := iv(10, 20).String(), "[10, 20] ε=5ns"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestErrUnhealthyWrapping(t *testing.T) {
	for _, err := range []error{errNotSynced, errEpsilon, errSyncTooOld, errClockClosed} {
		if !errors.Is(err, ErrUnhealthy) {
			t.Errorf("%v does not wrap ErrUnhealthy", err)
		}
	}
}
