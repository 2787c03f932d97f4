package kv

import (
	"bytes"
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/meridiandb/meridian/tt"
)

// GC round bounds: a round ends after this many deletions or this many
// versions examined, whichever comes first, and commits its deletions.
const (
	gcRoundDeletes  = 1024
	gcRoundExamined = 16 << 10
)

// GC removes versions that no read at or above horizon can see: for each
// key, every version older than its newest version <= horizon, and that
// newest version too if it is a tombstone. Versions newer than horizon are
// untouched. It first raises the GC horizon to horizon and persists it
// (synced), so reads below it are refused from then on; a horizon at or
// below the current one collects at the current one (the horizon only moves
// forward). It works in bounded rounds, each with its own iterator and
// unsynced batch of deletions (losing a round in a crash is harmless: what it
// deleted is invisible above the horizon). It returns the number of versions
// removed.
//
// Writes at or below the horizon are the caller's responsibility: GC does
// not lock keys, so a version written at or below the horizon while GC runs
// may be collected or may shadow history. Snapshot import (which writes old
// versions) should not run concurrently with GC over the same range.
func (e *Engine) GC(horizon tt.Timestamp) (removed int, err error) {
	return e.GCContext(context.Background(), horizon)
}

// GCContext is GC that stops between rounds once ctx is done, returning
// what it removed so far and ctx's error. A stopped pass is harmless: the
// horizon is already raised, and the next pass collects the rest.
func (e *Engine) GCContext(ctx context.Context, horizon tt.Timestamp) (removed int, err error) {
	e.gcRunMu.Lock()
	defer e.gcRunMu.Unlock()

	if err := e.acquire(); err != nil {
		return 0, err
	}
	err = e.setHorizon(horizon)
	h := e.GCHorizon()
	e.release()
	if err != nil {
		return 0, fmt.Errorf("kv: gc: %w", err)
	}

	var st gcState
	resume := []byte{spaceData}
	for resume != nil {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		n, next, err := e.gcRound(h, resume, &st)
		removed += n
		if err != nil {
			return removed, fmt.Errorf("kv: gc at horizon %d: %w", int64(h), err)
		}
		resume = next
	}
	return removed, nil
}

// gcState carries the position within a key across GC rounds.
type gcState struct {
	prefix []byte // the key being collected
	seen   bool   // its newest version <= horizon has been passed
}

// gcRound collects from resume on, returning the number of versions
// removed and the key to resume at (nil when done).
func (e *Engine) gcRound(h tt.Timestamp, resume []byte, st *gcState) (removed int, next []byte, err error) {
	if err := e.acquire(); err != nil {
		return 0, nil, err
	}
	defer e.release()

	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: resume, UpperBound: []byte{spaceData + 1}})
	if err != nil {
		return 0, nil, err
	}
	defer closeIter(it, &err)
	pb := e.db.NewBatch()
	examined := 0
	valid := it.First()
	for valid {
		if pb.Count() >= gcRoundDeletes || examined >= gcRoundExamined {
			next = bytes.Clone(it.Key())
			break
		}
		examined++
		k := it.Key()
		prefix, vts, err := splitKey(k)
		if err != nil {
			_ = pb.Close()
			return 0, nil, err
		}
		if !bytes.Equal(prefix, st.prefix) {
			st.prefix = append(st.prefix[:0], prefix...)
			st.seen = false
		}
		switch {
		case vts > h:
			// Possibly visible to reads above the horizon: keep.
			valid = it.Next()
			continue
		case !st.seen:
			// The newest version <= h: what reads at h see. Keep a value,
			// drop a tombstone (reads at >= h find nothing either way,
			// once everything older is gone too).
			st.seen = true
			raw, err := it.ValueAndErr()
			if err != nil {
				_ = pb.Close()
				return 0, nil, err
			}
			tomb, _, err := decodeValue(raw)
			if err != nil {
				_ = pb.Close()
				return 0, nil, fmt.Errorf("version %x: %w", k, err)
			}
			if tomb {
				if err := pb.Delete(k, nil); err != nil {
					_ = pb.Close()
					return 0, nil, err
				}
			}
		default:
			// Shadowed by a version <= h: invisible at and above h.
			if err := pb.Delete(k, nil); err != nil {
				_ = pb.Close()
				return 0, nil, err
			}
		}
		valid = it.Next()
	}
	if err := it.Error(); err != nil {
		_ = pb.Close()
		return 0, nil, err
	}
	n := int(pb.Count())
	if err := e.apply(pb, false); err != nil {
		return 0, nil, err
	}
	return n, next, nil
}
