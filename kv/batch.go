package kv

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/meridiandb/meridian/tt"
)

// Batch collects writes that Commit applies atomically: after a crash either
// all of them are present or none. It wraps a Pebble batch and is not safe
// for concurrent use. Writes in a batch take effect in the order they were
// added (a ClearData followed by Puts keeps the Puts).
type Batch struct {
	e   *Engine
	b   *pebble.Batch // nil once committed or closed
	err error         // why b is nil from the start (engine closed or failed)

	// horizon is the GC horizon the batch raises the engine's to on commit
	// (0: none), set by ImportSnapshotChunk.
	horizon tt.Timestamp
	// rewrites: the batch replaces history (ClearData, ImportSnapshotChunk)
	// and commits in order with GC rounds (see Engine.rewrites).
	rewrites bool

	// rows and rowBuf record the versions written, for the engine's
	// newest-version cache (nil without one).
	rows   []rowWrite
	rowBuf []byte
}

// usable returns an error if the batch can no longer take writes.
func (b *Batch) usable() error {
	if b.b != nil {
		return nil
	}
	if b.err != nil {
		return b.err
	}
	return fmt.Errorf("%w: batch already committed or closed", ErrClosed)
}

// checkKey validates an MVCC user key and timestamp.
func (b *Batch) checkKey(key []byte, ts tt.Timestamp) error {
	if len(key) == 0 {
		return ErrEmptyKey
	}
	if len(key) > b.e.opts.MaxKeySize {
		return fmt.Errorf("%w: %d bytes > %d", ErrKeyTooLarge, len(key), b.e.opts.MaxKeySize)
	}
	if ts < 0 {
		return fmt.Errorf("%w: %d", ErrInvalidTimestamp, int64(ts))
	}
	return nil
}

// Put writes version ts of key with the given value, replacing a version
// at exactly ts if there is one.
func (b *Batch) Put(key []byte, ts tt.Timestamp, value []byte) error {
	if err := b.usable(); err != nil {
		return err
	}
	if err := b.checkKey(key, ts); err != nil {
		return fmt.Errorf("kv: put %s: %w", keyString(key), err)
	}
	if len(value) > b.e.opts.MaxValueSize {
		return fmt.Errorf("kv: put %s: %w: %d bytes > %d", keyString(key), ErrValueTooLarge, len(value), b.e.opts.MaxValueSize)
	}
	return b.putVersion(key, ts, false, value)
}

// Delete writes an MVCC tombstone for key at ts: reads at or above ts (up
// to the next version) find no value.
func (b *Batch) Delete(key []byte, ts tt.Timestamp) error {
	if err := b.usable(); err != nil {
		return err
	}
	if err := b.checkKey(key, ts); err != nil {
		return fmt.Errorf("kv: delete %s: %w", keyString(key), err)
	}
	return b.putVersion(key, ts, true, nil)
}

// putVersion encodes a version directly into the Pebble batch.
func (b *Batch) putVersion(key []byte, ts tt.Timestamp, tombstone bool, value []byte) error {
	vlen := 1
	if !tombstone {
		vlen += len(value)
	}
	op := b.b.SetDeferred(encodedKeyLen(key), vlen)
	appendTS(appendKeyPrefix(op.Key[:0], key), ts)
	encodeValue(op.Value, tombstone, value)
	if b.e.rows != nil && !b.rewrites { // a rewrite empties the cache instead
		w := rowWrite{ts: ts, tomb: tombstone}
		w.prefix[0] = len(b.rowBuf)
		b.rowBuf = append(b.rowBuf, op.Key[:len(op.Key)-tsLen]...)
		w.prefix[1] = len(b.rowBuf)
		w.val[0] = len(b.rowBuf)
		if !tombstone {
			b.rowBuf = append(b.rowBuf, value...)
		}
		w.val[1] = len(b.rowBuf)
		b.rows = append(b.rows, w)
	}
	return op.Finish()
}

// AppendLog stores entry index of group's log, replacing any entry already
// at that index. Entries are compressed with snappy when that pays.
func (b *Batch) AppendLog(group, index uint64, data []byte) error {
	if err := b.usable(); err != nil {
		return err
	}
	if len(data) > b.e.opts.MaxLogEntrySize {
		return fmt.Errorf("kv: append log %d/%d: %w: %d bytes > %d", group, index, ErrValueTooLarge, len(data), b.e.opts.MaxLogEntrySize)
	}
	return b.b.Set(logKey(group, index), encodeLogEntry(data), nil)
}

// TruncateLog removes the entries of group's log with index < before.
func (b *Batch) TruncateLog(group, before uint64) error {
	if err := b.usable(); err != nil {
		return err
	}
	if before == 0 {
		return nil
	}
	return b.b.DeleteRange(logKey(group, 0), logKey(group, before), nil)
}

// SetHardState replaces group's hard state.
func (b *Batch) SetHardState(group uint64, data []byte) error {
	if err := b.usable(); err != nil {
		return err
	}
	if len(data) > b.e.opts.MaxValueSize {
		return fmt.Errorf("kv: set hard state %d: %w: %d bytes > %d", group, ErrValueTooLarge, len(data), b.e.opts.MaxValueSize)
	}
	return b.b.Set(groupKey(spaceHardState, group), data, nil)
}

// SetMeta sets group's meta record name to value.
func (b *Batch) SetMeta(group uint64, name, value []byte) error {
	if err := b.usable(); err != nil {
		return err
	}
	if len(name) > b.e.opts.MaxKeySize {
		return fmt.Errorf("kv: set meta %s: %w: %d bytes > %d", keyString(name), ErrKeyTooLarge, len(name), b.e.opts.MaxKeySize)
	}
	if len(value) > b.e.opts.MaxValueSize {
		return fmt.Errorf("kv: set meta %s: %w: %d bytes > %d", keyString(name), ErrValueTooLarge, len(value), b.e.opts.MaxValueSize)
	}
	return b.b.Set(metaKey(group, name), value, nil)
}

// DeleteMeta removes group's meta record name (a no-op if absent).
func (b *Batch) DeleteMeta(group uint64, name []byte) error {
	if err := b.usable(); err != nil {
		return err
	}
	return b.b.Delete(metaKey(group, name), nil)
}

// ClearData deletes every version of every key in [start, end) (nil or
// empty start: from the first key; nil or empty end: unbounded) with one
// range deletion.
func (b *Batch) ClearData(start, end []byte) error {
	if err := b.usable(); err != nil {
		return err
	}
	lower, upper := dataLowerBound(start), dataUpperBound(end)
	if bytes.Compare(lower, upper) >= 0 {
		return nil // empty range
	}
	b.rewrites = true
	return b.b.DeleteRange(lower, upper, nil)
}

// ClearMeta deletes every meta record of group.
func (b *Batch) ClearMeta(group uint64) error {
	if err := b.usable(); err != nil {
		return err
	}
	return b.b.DeleteRange(groupKey(spaceMeta, group), groupEnd(spaceMeta, group), nil)
}

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool { return b.b == nil || b.b.Empty() }

// Count returns the number of writes in the batch.
func (b *Batch) Count() int {
	if b.b == nil {
		return 0
	}
	return int(b.b.Count())
}

// Commit applies the batch atomically and closes it. With sync it returns
// only after the WAL holds the batch durably (pebble.Sync); without, a crash
// may lose it (but never part of it). Committing an empty batch does
// nothing. An error wrapping ErrFailed means the outcome is unknown and the
// engine is unusable.
func (b *Batch) Commit(sync bool) error {
	wait, err := b.commit(sync, false)
	if err != nil {
		return err
	}
	return wait()
}

// CommitNoSyncWait is Commit(true) in two halves. It returns once the batch
// is applied and visible to reads, before the WAL's fsync; wait blocks until
// the batch is durable and reports what Commit would have. Until wait
// returns nil a crash may lose the batch (never part of it), so nothing
// that depends on its durability may leave before. When err is nil, wait
// must be called exactly once: the engine cannot close while a wait is
// pending.
func (b *Batch) CommitNoSyncWait() (wait func() error, err error) {
	return b.commit(true, true)
}

func (b *Batch) commit(sync, noWait bool) (wait func() error, err error) {
	if err := b.usable(); err != nil {
		return nil, err
	}
	e := b.e
	if err := e.acquire(); err != nil {
		b.Close()
		return nil, err
	}
	release := func(err error) error {
		e.release()
		if err != nil {
			return fmt.Errorf("kv: commit: %w", err)
		}
		return nil
	}
	if b.horizon > 0 || b.rewrites {
		// Raise the horizon in the same atomic write as the imported
		// versions, serialized with GC and SetGCHorizon; tell GC rounds
		// in progress that history changed under them.
		e.gcMu.Lock()
		defer e.gcMu.Unlock()
		if _, err := e.raiseHorizonLocked(b.b, b.horizon); err != nil {
			b.Close()
			return nil, release(err)
		}
		if b.rewrites {
			e.rewrites.Add(1)
		}
	}
	pb := b.b
	b.b = nil // apply consumes it
	// The newest-version cache learns of the versions before the commit
	// returns (see rowCache).
	if c := e.rows; c != nil && b.rewrites {
		c.beginRewrite()
		defer c.endRewrite()
	} else if c != nil && len(b.rows) > 0 {
		c.begin(b.rowBuf, b.rows)
		defer func() { c.finish(b.rowBuf, b.rows, err == nil) }()
	}
	if !noWait {
		err := e.apply(pb, sync)
		return func() error { return nil }, release(err)
	}
	synced, err := e.applyNoSyncWait(pb)
	if err != nil {
		return nil, release(err)
	}
	return func() error { return release(synced()) }, nil
}

// Close discards the batch if it was not committed. It is safe to call more
// than once.
func (b *Batch) Close() {
	if b.b == nil {
		return
	}
	_ = b.b.Close()
	b.b = nil
}
