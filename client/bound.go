package client

import (
	"fmt"
	"time"
)

// TimestampBound says which timestamp a read-only transaction reads at.
type TimestampBound struct {
	kind boundKind
	d    time.Duration
	ts   int64
}

type boundKind uint8

const (
	boundStrong boundKind = iota
	boundExact
	boundMax
	boundReadTS
	boundMinTS
)

// StrongRead reads everything committed before the read started (the
// default): external consistency for reads.
func StrongRead() TimestampBound { return TimestampBound{kind: boundStrong} }

// ExactStaleness reads at exactly d in the past (TT.now().latest - d at
// the replica).
func ExactStaleness(d time.Duration) TimestampBound { return TimestampBound{kind: boundExact, d: d} }

// MaxStaleness reads at the nearest replica's safe time provided it is no
// more than d old: no leader round trip.
func MaxStaleness(d time.Duration) TimestampBound { return TimestampBound{kind: boundMax, d: d} }

// ReadTimestamp reads at exactly ts (nanoseconds since the Unix epoch, a
// commit timestamp for instance).
func ReadTimestamp(ts int64) TimestampBound { return TimestampBound{kind: boundReadTS, ts: ts} }

// MinReadTimestamp reads at the nearest replica's safe time provided it is
// at least ts.
func MinReadTimestamp(ts int64) TimestampBound { return TimestampBound{kind: boundMinTS, ts: ts} }

func (b TimestampBound) String() string {
	switch b.kind {
	case boundExact:
		return fmt.Sprintf("exactStaleness(%s)", b.d)
	case boundMax:
		return fmt.Sprintf("maxStaleness(%s)", b.d)
	case boundReadTS:
		return fmt.Sprintf("readTimestamp(%d)", b.ts)
	case boundMinTS:
		return fmt.Sprintf("minReadTimestamp(%d)", b.ts)
	}
	return "strong"
}

// KeyRange is a range of keys with closed or open ends.
type KeyRange struct {
	Start, End []byte
	Kind       RangeKind
}

// RangeKind says which ends of a KeyRange are included.
type RangeKind uint8

const (
	// ClosedOpen is [Start, End).
	ClosedOpen RangeKind = iota
	// ClosedClosed is [Start, End].
	ClosedClosed
	// OpenOpen is (Start, End).
	OpenOpen
	// OpenClosed is (Start, End].
	OpenClosed
)

// Prefix returns the range of every key starting with p.
func Prefix(p []byte) KeyRange {
	end := append([]byte(nil), p...)
	for len(end) > 0 {
		if end[len(end)-1] < 0xff {
			end[len(end)-1]++
			return KeyRange{Start: p, End: end}
		}
		end = end[:len(end)-1]
	}
	return KeyRange{Start: p} // every key from p on
}

// halfOpen returns [start, end) with end nil meaning unbounded.
func (r KeyRange) halfOpen() (start, end []byte) {
	start, end = r.Start, r.End
	if start == nil {
		start = []byte{}
	}
	if r.Kind == OpenOpen || r.Kind == OpenClosed {
		start = append(append([]byte(nil), start...), 0)
	}
	if end != nil && (r.Kind == ClosedClosed || r.Kind == OpenClosed) {
		end = append(append([]byte(nil), end...), 0)
	}
	return start, end
}
