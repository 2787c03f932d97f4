// Package tt is Meridian's TrueTime: an interval clock whose Now reports
// [earliest, latest], an interval guaranteed to contain true (absolute) time
// while the clock's assumptions hold.
//
// Invariants (architecture invariants 1 and 2):
//
//  1. Now returns [earliest, latest] with earliest <= true time <= latest
//     while the assumptions hold: every NTP sample bounds true time by
//     RTT/2 + root delay/2 + root dispersion + precision, the local
//     oscillator drifts by at most the configured bound (default 200 µs/s)
//     and elapsed time is read from the monotonic clock. Samples from several
//     servers are intersected with Marzullo's algorithm so that a minority of
//     falsetickers is out-voted.
//  2. A clock whose ε exceeds its configured maximum, whose servers disagree
//     with no majority, or which has not synchronised within its deadline is
//     unhealthy: Now returns an error (ErrUnhealthy) instead of an interval.
//     Callers stop granting leases and assigning timestamps. Unavailable,
//     never wrong.
package tt

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Timestamp is a point in true time: nanoseconds since the Unix epoch (UTC).
// Commit timestamps, lease bounds and MVCC versions are Timestamps.
type Timestamp int64

const (
	// MinTimestamp is the smallest valid timestamp.
	MinTimestamp Timestamp = 0
	// MaxTimestamp is the largest timestamp; reading at MaxTimestamp reads
	// the newest version of every key.
	MaxTimestamp Timestamp = math.MaxInt64
)

// FromTime converts a time.Time to a Timestamp.
func FromTime(t time.Time) Timestamp { return Timestamp(t.UnixNano()) }

// Time returns the timestamp as a UTC time.Time.
func (t Timestamp) Time() time.Time { return time.Unix(0, int64(t)).UTC() }

// Add returns t+d, saturating at MinTimestamp and MaxTimestamp.
func (t Timestamp) Add(d time.Duration) Timestamp {
	s := int64(t) + int64(d)
	if d > 0 && s < int64(t) {
		return MaxTimestamp
	}
	if d < 0 && (s > int64(t) || s < int64(MinTimestamp)) {
		// Underflow of int64, or a result before MinTimestamp (0).
		return MinTimestamp
	}
	return Timestamp(s)
}

// Sub returns the duration t-u.
func (t Timestamp) Sub(u Timestamp) time.Duration { return time.Duration(int64(t) - int64(u)) }

// Next returns the smallest timestamp greater than t.
func (t Timestamp) Next() Timestamp {
	if t == MaxTimestamp {
		return t
	}
	return t + 1
}

// Prev returns the largest timestamp smaller than t.
func (t Timestamp) Prev() Timestamp {
	if t == MinTimestamp {
		return t
	}
	return t - 1
}

// Less reports whether t < u.
func (t Timestamp) Less(u Timestamp) bool { return t < u }

// IsZero reports whether t is the zero timestamp.
func (t Timestamp) IsZero() bool { return t == 0 }

// String formats t as RFC 3339 with nanoseconds, followed by the raw value,
// e.g. "2026-11-25T15:20:00.123456789Z (1795620000123456789)".
func (t Timestamp) String() string {
	switch t {
	case MaxTimestamp:
		return "max"
	case MinTimestamp:
		return "0"
	}
	return fmt.Sprintf("%s (%d)", t.Time().Format(time.RFC3339Nano), int64(t))
}

// MaxOf returns the largest of its arguments.
func MaxOf(t Timestamp, ts ...Timestamp) Timestamp {
	for _, u := range ts {
		if u > t {
			t = u
		}
	}
	return t
}

// Interval is a TrueTime reading: true time lies in [Earliest, Latest].
type Interval struct {
	Earliest Timestamp
	Latest   Timestamp
}

// Epsilon returns the interval's half-width, the clock's uncertainty ε.
func (i Interval) Epsilon() time.Duration {
	return time.Duration((int64(i.Latest) - int64(i.Earliest)) / 2)
}

// Width returns Latest-Earliest (2ε).
func (i Interval) Width() time.Duration { return i.Latest.Sub(i.Earliest) }

// Mid returns the midpoint of the interval.
func (i Interval) Mid() Timestamp {
	return i.Earliest + Timestamp((int64(i.Latest)-int64(i.Earliest))/2)
}

// After reports whether t has definitely passed: t < Earliest. This is
// Spanner's TT.after(t), used for commit wait and lease expiry.
func (i Interval) After(t Timestamp) bool { return t < i.Earliest }

// Before reports whether t has definitely not arrived: t > Latest. This is
// Spanner's TT.before(t).
func (i Interval) Before(t Timestamp) bool { return t > i.Latest }

// Contains reports whether t lies in [Earliest, Latest].
func (i Interval) Contains(t Timestamp) bool { return i.Earliest <= t && t <= i.Latest }

// Valid reports whether Earliest <= Latest.
func (i Interval) Valid() bool { return i.Earliest <= i.Latest }

// Overlaps reports whether the two intervals share a point.
func (i Interval) Overlaps(j Interval) bool { return i.Earliest <= j.Latest && j.Earliest <= i.Latest }

// Hull returns the smallest interval containing both i and j.
func (i Interval) Hull(j Interval) Interval {
	return Interval{Earliest: min(i.Earliest, j.Earliest), Latest: max(i.Latest, j.Latest)}
}

func (i Interval) String() string {
	return fmt.Sprintf("[%d, %d] ε=%s", int64(i.Earliest), int64(i.Latest), i.Epsilon())
}

// ErrUnhealthy is returned (wrapped, with the reason) by Clock.Now when the
// clock cannot bound true time within its configured limits. Test for it
// with errors.Is.
var ErrUnhealthy = errors.New("tt: clock unhealthy")

// Clock is an interval clock. Now returns an interval containing true time,
// or an error wrapping ErrUnhealthy; a caller must not use the interval when
// the error is non-nil. Implementations are safe for concurrent use.
type Clock interface {
	Now() (Interval, error)
}

// Waiter is implemented by clocks that can block until a timestamp has
// definitely passed (commit wait). Clocks in virtual time (the simulator)
// do not implement it; their callers schedule a timer instead.
type Waiter interface {
	// WaitUntilAfter blocks until Now().After(t), the clock becomes
	// unhealthy, or the deadline/cancel channel fires.
	WaitUntilAfter(t Timestamp, cancel <-chan struct{}) error
}
