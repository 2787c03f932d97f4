package kv

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/meridiandb/meridian/tt"
)

// gcRoundDeletes bounds a GC round: it ends after this many deletions or
// 16 times as many versions examined, whichever comes first, and commits
// its deletions.
const gcRoundDeletes = 1024

// GC removes versions that no read at or above horizon can see: for each
// key, every version older than its newest version <= horizon, and that
// newest version too if it is a tombstone. Versions newer than horizon are
// untouched. It first raises the GC horizon to horizon and persists it
// (synced), so reads below it are refused from then on; a horizon at or
// below the current one collects at the current one (the horizon only moves
// forward). It works in bounded rounds, each with its own iterator and
// unsynced batch of deletions, and deletes a tombstone only in a round after
// (or with) the deletions of every version it hides: whichever prefix of the
// rounds lands (a crash, a stopped pass), no hidden value reappears, and
// reads between rounds see what they would have seen before. It returns the
// number of versions removed.
//
// Writes at or below the horizon are the caller's responsibility: GC does
// not lock keys, so a version written at or below the horizon while GC runs
// may be collected or may shadow history. The exception is a batch that
// replaces history (ClearData, ImportSnapshotChunk): a round that raced one
// is thrown away and redone on what the batch left.
func (e *Engine) GC(horizon tt.Timestamp) (removed int, err error) {
	e.gcRunMu.Lock()
	defer e.gcRunMu.Unlock()
	p, err := e.NewGCPass(horizon, 0)
	if err != nil {
		return 0, err
	}
	for done := false; !done && err == nil; {
		done, err = p.Step()
	}
	return p.Removed(), err
}

// gcMaxRedo bounds how many times in a row a round is redone because a
// batch replacing history landed while it ran.
const gcMaxRedo = 100

// GCPass is one collection pass (see GC) driven a round at a time, for a
// caller that paces rounds or interleaves them with other work (the node
// runtime, the simulator). Run one pass at a time per engine. Abandoning a
// pass between rounds is harmless: the horizon is already raised, no round
// left a hidden value exposed, and the next pass collects the rest.
type GCPass struct {
	e            *Engine
	h            tt.Timestamp
	roundDeletes int
	st           gcState
	resume       []byte // nil when done
	removed      int
}

// NewGCPass raises the horizon as GC does and returns the pass, whose
// rounds end after roundDeletes deletions (0: the default, 1024).
func (e *Engine) NewGCPass(horizon tt.Timestamp, roundDeletes int) (*GCPass, error) {
	if err := e.acquire(); err != nil {
		return nil, err
	}
	err := e.setHorizon(horizon)
	h := e.GCHorizon()
	e.release()
	if err != nil {
		return nil, fmt.Errorf("kv: gc: %w", err)
	}
	if roundDeletes <= 0 {
		roundDeletes = gcRoundDeletes
	}
	return &GCPass{e: e, h: h, roundDeletes: roundDeletes, resume: []byte{spaceData}}, nil
}

// Horizon is the horizon the pass collects at.
func (p *GCPass) Horizon() tt.Timestamp { return p.h }

// Removed is how many versions the pass has removed so far.
func (p *GCPass) Removed() int { return p.removed }

// Step runs the next round, redoing it if a batch replacing history raced
// it, and reports whether the pass is done.
func (p *GCPass) Step() (done bool, err error) {
	if p.resume == nil {
		return true, nil
	}
	for redo := 0; ; redo++ {
		saved := p.st.clone()
		n, next, err := p.e.gcRound(p.h, p.resume, &p.st, p.roundDeletes)
		if errors.Is(err, errGCRaced) && redo < gcMaxRedo {
			p.st = saved
			continue
		}
		if err != nil {
			return false, fmt.Errorf("kv: gc at horizon %d: %w", int64(p.h), err)
		}
		p.removed += n
		p.resume = next
		return next == nil, nil
	}
}

// gcTestBeforeApply, set only by tests, runs between a GC round's scan
// and its apply.
var gcTestBeforeApply func()

// errGCRaced: a batch replacing history landed during a GC round.
var errGCRaced = errors.New("a snapshot import replaced versions during the round")

// gcState carries the position within a key across GC rounds.
type gcState struct {
	prefix []byte // the key being collected
	seen   bool   // its newest version <= horizon has been passed
	// tomb is that newest version when it is a tombstone: deleted once
	// the key's older versions are (when the next key starts, or at the
	// end), never before them.
	tomb []byte
}

func (st gcState) clone() gcState {
	return gcState{prefix: bytes.Clone(st.prefix), seen: st.seen, tomb: bytes.Clone(st.tomb)}
}

// gcRound collects from resume on, returning the number of versions
// removed and the key to resume at (nil when done). It fails with
// errGCRaced, deleting nothing, if a batch replacing history committed
// after it began; st is then the caller's to restore.
func (e *Engine) gcRound(h tt.Timestamp, resume []byte, st *gcState, maxDeletes int) (removed int, next []byte, err error) {
	if err := e.acquire(); err != nil {
		return 0, nil, err
	}
	defer e.release()

	gen := e.rewrites.Load()
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: resume, UpperBound: []byte{spaceData + 1}})
	if err != nil {
		return 0, nil, err
	}
	defer closeIter(it, &err)
	pb := e.db.NewBatch()
	fail := func(err error) (int, []byte, error) {
		_ = pb.Close()
		return 0, nil, err
	}
	// The keys deleted from, for the newest-version cache.
	var rowBuf []byte
	var rows []rowWrite
	note := func(prefix []byte) {
		if e.rows != nil {
			rowBuf, rows = noteKey(rowBuf, rows, prefix)
		}
	}
	flushTomb := func() error {
		if st.tomb != nil {
			note(st.prefix)
		}
		return st.flushTomb(pb)
	}
	examined := 0
	valid := it.First()
	for valid {
		if int(pb.Count()) >= maxDeletes || examined >= 16*maxDeletes {
			next = bytes.Clone(it.Key())
			break
		}
		examined++
		k := it.Key()
		prefix, vts, err := splitKey(k)
		if err != nil {
			return fail(err)
		}
		if !bytes.Equal(prefix, st.prefix) {
			if err := flushTomb(); err != nil {
				return fail(err)
			}
			st.prefix = append(st.prefix[:0], prefix...)
			st.seen = false
		}
		switch {
		case vts > h:
			// Possibly visible to reads above the horizon: keep.
			valid = it.Next()
			continue
		case !st.seen:
			// The newest version <= h: what reads at h see. Keep a value;
			// drop a tombstone (reads at >= h find nothing either way),
			// but only after everything older is gone.
			st.seen = true
			raw, err := it.ValueAndErr()
			if err != nil {
				return fail(err)
			}
			tomb, _, err := decodeValue(raw)
			if err != nil {
				return fail(fmt.Errorf("version %x: %w", k, err))
			}
			if tomb {
				st.tomb = append(st.tomb[:0], k...)
			}
		default:
			// Shadowed by a version <= h: invisible at and above h.
			note(prefix)
			if err := pb.Delete(k, nil); err != nil {
				return fail(err)
			}
		}
		valid = it.Next()
	}
	if err := it.Error(); err != nil {
		return fail(err)
	}
	if next == nil {
		// The end of the data: the last key's versions are all visited.
		if err := flushTomb(); err != nil {
			return fail(err)
		}
	}
	n := int(pb.Count())
	if gcTestBeforeApply != nil {
		gcTestBeforeApply()
	}
	// Apply unless a batch replacing history (a snapshot import) landed
	// since the iterator was opened: these deletions were chosen from
	// versions it may have replaced. gcMu orders the check and the apply
	// with such batches' commits.
	e.gcMu.Lock()
	defer e.gcMu.Unlock()
	if e.rewrites.Load() != gen {
		return fail(errGCRaced)
	}
	if len(rows) > 0 {
		e.rows.begin(rowBuf, rows)
		defer e.rows.finish(rowBuf, rows, false)
	}
	if err := e.apply(pb, false); err != nil {
		return 0, nil, err
	}
	return n, next, nil
}

// flushTomb adds the pending tombstone's deletion to pb.
func (st *gcState) flushTomb(pb *pebble.Batch) error {
	if st.tomb == nil {
		return nil
	}
	err := pb.Delete(st.tomb, nil)
	st.tomb = nil
	return err
}
