package kv

import (
	"errors"
	"fmt"
	"log"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/internal/invariants"
	"github.com/meridiandb/meridian/tt"
)

// Default limits and sizes; see Options.
const (
	DefaultMaxKeySize      = 4096
	DefaultMaxValueSize    = 1 << 20
	DefaultMaxLogEntrySize = 64 << 20
	DefaultCacheSize       = 64 << 20
	DefaultMemTableSize    = 16 << 20
	DefaultSyncWindow      = 150 * time.Microsecond
	DefaultRowCacheSize    = 32 << 20
)

// Options configures an Engine. The zero value is valid: real disk and the
// default limits.
type Options struct {
	// FS is the filesystem Pebble runs on; nil means vfs.Default (the real
	// disk). Tests use vfs.NewMem or vfs.NewCrashableMem.
	FS vfs.FS
	// MaxKeySize bounds user keys and meta names, in bytes (default 4096).
	MaxKeySize int
	// MaxValueSize bounds MVCC values, hard state and meta values, in bytes
	// (default 1 MiB).
	MaxValueSize int
	// MaxLogEntrySize bounds Paxos log entries, in bytes (default 64 MiB).
	MaxLogEntrySize int
	// CacheSize is the size of Pebble's block cache in bytes (default
	// 64 MiB).
	CacheSize int64
	// MemTableSize is Pebble's memtable size in bytes (default 16 MiB;
	// Pebble starts small and grows to it). Larger memtables let more Paxos
	// log entries be truncated before they are flushed, but every read and
	// insert searches a deeper skiplist: measured with 64 MiB, strong reads
	// ran ~20% slower and writes no faster. Small memtables make tests
	// exercise flushes and compactions.
	MemTableSize uint64
	// SyncWindow is how long the WAL waits after a sync before the next one
	// while other synced commits are in flight, so that one fsync covers
	// the commits of several groups (default 150µs; negative: never wait).
	// A lone committer never waits: an idle node's commit latency is
	// unchanged. Measured on a 3-node loopback cluster at 64 clients: +6%
	// writes, from fewer fsyncs (each costs ~50µs of kernel CPU here).
	SyncWindow time.Duration
	// RowCacheSize bounds the memory of the newest-version cache, which
	// answers Get at MaxTimestamp (a locking read) and at timestamps at or
	// above a cached key's newest version without a Pebble seek (default
	// 32 MiB; negative: no cache). See rowCache.
	RowCacheSize int
	// Logger receives Pebble's informational and error messages. nil sends
	// errors to the standard library logger and drops informational
	// messages.
	Logger Logger
}

// Logger receives Pebble's log messages. Pebble's fatal messages arrive at
// Errorf, prefixed "fatal: "; the engine then turns the condition into an
// error wrapping ErrFailed where it can (see Engine).
type Logger interface {
	Infof(format string, args ...any)
	Errorf(format string, args ...any)
}

// withDefaults returns o with zero fields replaced by defaults, or an error
// for negative limits.
func (o Options) withDefaults() (Options, error) {
	if o.MaxKeySize < 0 || o.MaxValueSize < 0 || o.MaxLogEntrySize < 0 || o.CacheSize < 0 {
		return o, fmt.Errorf("kv: negative option: MaxKeySize %d, MaxValueSize %d, MaxLogEntrySize %d, CacheSize %d",
			o.MaxKeySize, o.MaxValueSize, o.MaxLogEntrySize, o.CacheSize)
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.MaxKeySize == 0 {
		o.MaxKeySize = DefaultMaxKeySize
	}
	if o.MaxValueSize == 0 {
		o.MaxValueSize = DefaultMaxValueSize
	}
	if o.MaxLogEntrySize == 0 {
		o.MaxLogEntrySize = DefaultMaxLogEntrySize
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.SyncWindow == 0 {
		o.SyncWindow = DefaultSyncWindow
	}
	if o.RowCacheSize == 0 {
		o.RowCacheSize = DefaultRowCacheSize
	}
	if o.Logger == nil {
		o.Logger = stdLogger{}
	}
	return o, nil
}

// stdLogger is the default Logger: errors to the standard logger.
type stdLogger struct{}

func (stdLogger) Infof(string, ...any)              {}
func (stdLogger) Errorf(format string, args ...any) { log.Printf("pebble: "+format, args...) }

// fatalError is what the engine's Pebble logger panics with when Pebble
// reports a fatal condition. Pebble calls Fatalf when a commit fails in the
// WAL (its commit pipeline cannot continue) and on MANIFEST write failures;
// its default logger would exit the process.
type fatalError struct{ msg string }

func (f *fatalError) Error() string { return "pebble fatal: " + f.msg }

// pebbleLogger adapts a Logger to pebble.Logger.
type pebbleLogger struct{ l Logger }

func (p pebbleLogger) Infof(format string, args ...any)  { p.l.Infof(format, args...) }
func (p pebbleLogger) Errorf(format string, args ...any) { p.l.Errorf(format, args...) }

// Fatalf logs the message and panics with a *fatalError. On the goroutine of
// a commit or Open the engine recovers it and reports ErrFailed; on a Pebble
// background goroutine it ends the process, as Pebble's own logger would.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Errorf("fatal: %s", msg)
	panic(&fatalError{msg: msg})
}

// Stats counts commits, for benchmarks and monitoring.
type Stats struct {
	// Commits is the number of non-empty batches committed.
	Commits uint64
	// SyncedCommits is the number of those committed with sync=true, each
	// acknowledged only after the WAL was fsynced (Pebble may share one
	// fsync among concurrent committers).
	SyncedCommits uint64
}

// failure records the first unrecoverable error of an engine.
type failure struct {
	err error
	// wedged is set when Pebble panicked while holding its commit
	// pipeline's locks: closing the Pebble instance would deadlock, so
	// Close abandons it.
	wedged bool
}

// abandoned keeps wedged Pebble instances reachable for the life of the
// process. They cannot be closed, and Pebble's invariants builds exit the
// process when an unclosed DB is garbage collected.
var abandoned struct {
	sync.Mutex
	dbs []*pebble.DB
}

// Engine is Meridian's storage engine: one Pebble instance holding MVCC
// data, Paxos logs, hard state and meta records for every replica on a node.
// It is safe for concurrent use; Batches and Snapshots it creates are
// documented separately.
//
// Failure model: a WAL write or fsync error leaves Pebble unable to
// continue. Where Pebble reports it to a committer (the commit's own WAL
// write or fsync failed), the engine marks itself failed and refuses
// everything but Close with an error wrapping ErrFailed. The batch that hit
// the error may or may not be durable; reopening the store (after
// restarting the process) recovers exactly what is. Some failures Pebble
// handles by ending the process, as it intends, and the engine cannot
// intercept them: a WAL error that surfaces while Pebble rotates the WAL,
// and failed MANIFEST or fsync operations in background flushes and
// compactions. Recovery is then the same: restart and reopen. See
// errorfs_test.go for what was verified against pebble v2.1.7.
type Engine struct {
	db   *pebble.DB
	opts Options
	dir  string

	// life guards db: operations hold a reference, Close waits for them.
	life lifetime

	failed  atomic.Pointer[failure]
	horizon atomic.Int64 // tt.Timestamp; raised before it is persisted

	// gcMu serializes raising and persisting the horizon, and orders GC
	// rounds' deletions with batches that replace history. gcRunMu
	// serializes whole GC runs.
	gcMu    sync.Mutex
	gcRunMu sync.Mutex
	// rewrites counts committed batches that replaced history (ClearData,
	// snapshot imports); raised under gcMu. A GC round that sees it move
	// is redone.
	rewrites atomic.Uint64

	snapMu sync.Mutex
	snaps  map[*Snapshot]struct{}

	rows *rowCache // nil: no newest-version cache

	commits       atomic.Uint64
	syncedCommits atomic.Uint64
	// syncing counts synced commits in progress (see Options.SyncWindow).
	syncing atomic.Int64
}

// Open opens (creating if needed) the store in directory dir. An I/O error
// that Pebble reports by panicking (for example a failed fsync) is returned
// as an error; after a failed fsync, restart the process before retrying
// (the kernel may have dropped the dirty pages it failed to write).
func Open(dir string, opts Options) (*Engine, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref()
	po := &pebble.Options{
		FS:                 opts.FS,
		Cache:              cache,
		Logger:             pebbleLogger{l: opts.Logger},
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       opts.MemTableSize,
		Comparer:           comparer,
	}
	e := &Engine{opts: opts, dir: dir, snaps: make(map[*Snapshot]struct{})}
	if opts.RowCacheSize > 0 {
		e.rows = newRowCache(opts.RowCacheSize)
	}
	if opts.SyncWindow > 0 {
		// Pebble calls this after every WAL sync; while it holds syncs
		// back, commits keep landing in the WAL buffer.
		po.WALMinSyncInterval = func() time.Duration {
			if e.syncing.Load() > 1 {
				return opts.SyncWindow
			}
			return 0
		}
	}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := openPebble(dir, po)
	if err != nil {
		return nil, fmt.Errorf("kv: open %s: %w", dir, err)
	}
	e.db = db
	e.life.init()
	h, err := e.loadHorizon()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("kv: open %s: %w", dir, err), db.Close())
	}
	e.horizon.Store(int64(h))
	return e, nil
}

// openPebble calls pebble.Open, turning a failure that Pebble reports by
// panicking (Fatalf on a failed MANIFEST write, a panic on a failed
// directory fsync) into an error. Pebble's Open releases its resources in
// deferred calls, which run while the panic unwinds.
func openPebble(dir string, po *pebble.Options) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, panicError(r)
		}
	}()
	return pebble.Open(dir, po)
}

// panicError returns the error a recovered Pebble panic reports: a
// *fatalError from the engine's logger or an I/O error Pebble panicked
// with. Anything else (a runtime error, a message about API misuse) is a
// bug, and panicError panics again with it.
func panicError(r any) error {
	switch v := r.(type) {
	case *fatalError:
		return v
	case runtime.Error:
		panic(r)
	case error:
		return v
	default:
		panic(r)
	}
}

// loadHorizon reads the persisted GC horizon (0 if never set).
func (e *Engine) loadHorizon() (tt.Timestamp, error) {
	raw, closer, err := e.db.Get(localHorizonKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return tt.MinTimestamp, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read gc horizon: %w", err)
	}
	defer closer.Close()
	return decodeHorizon(raw)
}

// Close closes the engine and every Snapshot still open on it, after
// waiting for operations in progress. Batches not yet committed can no
// longer be. Close on a closed engine returns ErrClosed. On a failed engine
// it returns the failure; if Pebble was wedged, its instance is abandoned
// (the process should restart before reopening the directory, whose lock
// it still holds). Callbacks (MetaScan, ExportSnapshot) must not call
// Close.
func (e *Engine) Close() error {
	if !e.life.close() {
		return ErrClosed
	}
	e.snapMu.Lock()
	snaps := make([]*Snapshot, 0, len(e.snaps))
	for s := range e.snaps {
		snaps = append(snaps, s)
	}
	e.snaps = nil
	e.snapMu.Unlock()
	var errs []error
	for _, s := range snaps {
		errs = append(errs, s.release())
	}

	if f := e.failed.Load(); f != nil {
		errs = append(errs, f.err)
		if f.wedged {
			abandoned.Lock()
			abandoned.dbs = append(abandoned.dbs, e.db)
			abandoned.Unlock()
			return errors.Join(errs...)
		}
	}
	errs = append(errs, closePebble(e.db))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kv: close %s: %w", e.dir, err)
	}
	return nil
}

// closePebble closes db, turning a fatal report into an error.
func closePebble(db *pebble.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(*fatalError)
			if !ok {
				panic(r)
			}
			err = f
		}
	}()
	return db.Close()
}

// acquire takes a reference on the engine and checks that it is usable.
// On success the caller must call e.release.
func (e *Engine) acquire() error {
	if !e.life.acquire() {
		return ErrClosed
	}
	if f := e.failed.Load(); f != nil {
		e.life.release()
		return f.err
	}
	return nil
}

// release drops a reference taken by acquire.
func (e *Engine) release() { e.life.release() }

// fail records r, a panic recovered from a Pebble commit, as the engine's
// failure and returns the error to report (see panicError for the panics
// it does not handle).
func (e *Engine) fail(r any) error {
	cause := panicError(r)
	// Pebble's "fatal commit error" is reported after its commit pipeline
	// released its locks, so the DB can still be closed. Any other I/O
	// panic came from inside the pipeline, whose mutex is still held.
	_, closable := r.(*fatalError)
	f := &failure{err: fmt.Errorf("%w: %w", ErrFailed, cause), wedged: !closable}
	for {
		prev := e.failed.Load()
		switch {
		case prev == nil:
			if e.failed.CompareAndSwap(nil, f) {
				e.opts.Logger.Errorf("engine %s failed: %v", e.dir, f.err)
				return f.err
			}
		case !f.wedged || prev.wedged:
			return f.err
		default:
			// Keep the first failure, but never forget that Pebble is
			// wedged.
			if e.failed.CompareAndSwap(prev, &failure{err: prev.err, wedged: true}) {
				return f.err
			}
		}
	}
}

// apply commits a Pebble batch, recording stats, and consumes it: the
// caller must not use or close pb afterwards. The caller holds a reference.
// A Pebble panic (its reaction to WAL failures) fails the engine; the batch
// is then left to the garbage collector rather than closed, because the
// commit pipeline may still reference it and Close would recycle it.
func (e *Engine) apply(pb *pebble.Batch, sync bool) (err error) {
	if pb.Empty() {
		return pb.Close()
	}
	defer func() {
		if r := recover(); r != nil {
			err = e.fail(r)
			return
		}
		err = errors.Join(err, pb.Close())
	}()
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
		e.syncing.Add(1)
		defer e.syncing.Add(-1)
	}
	if err := pb.Commit(wo); err != nil {
		return err
	}
	e.commits.Add(1)
	if sync {
		e.syncedCommits.Add(1)
	}
	return nil
}

// applyNoSyncWait is apply with sync in two halves: it returns once pb is
// in the memtable and visible; wait returns once the WAL has synced it and
// consumes pb. When the first half fails, pb is consumed and wait is nil.
func (e *Engine) applyNoSyncWait(pb *pebble.Batch) (wait func() error, err error) {
	if pb.Empty() {
		return func() error { return nil }, pb.Close()
	}
	e.syncing.Add(1)
	defer func() {
		if r := recover(); r != nil {
			e.syncing.Add(-1)
			wait, err = nil, e.fail(r)
		}
	}()
	if err := e.db.ApplyNoSyncWait(pb, pebble.Sync); err != nil {
		e.syncing.Add(-1)
		return nil, err // pebble does not reuse a batch whose commit failed
	}
	e.commits.Add(1)
	return func() (err error) {
		defer e.syncing.Add(-1)
		defer func() {
			if r := recover(); r != nil {
				err = e.fail(r)
				return
			}
			err = errors.Join(err, pb.Close())
		}()
		if err := pb.SyncWait(); err != nil {
			return err
		}
		e.syncedCommits.Add(1)
		return nil
	}, nil
}

// Stats returns commit counters.
func (e *Engine) Stats() Stats {
	return Stats{Commits: e.commits.Load(), SyncedCommits: e.syncedCommits.Load()}
}

// GCHorizon returns the current GC horizon: reads below it are refused.
func (e *Engine) GCHorizon() tt.Timestamp { return tt.Timestamp(e.horizon.Load()) }

// raiseHorizonLocked raises the cached horizon to h and adds its persistent
// record to pb, if h is above the current horizon. The caller holds e.gcMu.
// The cache is raised before the batch commits: refusing a read early is
// always safe, serving one from collected history is not.
func (e *Engine) raiseHorizonLocked(pb *pebble.Batch, h tt.Timestamp) (raised bool, err error) {
	cur := e.GCHorizon()
	if h <= cur {
		return false, nil
	}
	if err := pb.Set(localHorizonKey, encodeHorizon(h), nil); err != nil {
		return false, err
	}
	invariants.Check(h > cur, "gc horizon moves backwards: %d -> %d", cur, h)
	e.horizon.Store(int64(h))
	return true, nil
}

// SetGCHorizon raises the GC horizon to h and persists it (synced). A value
// at or below the current horizon is ignored: the horizon only moves
// forward. It does not collect versions; GC does.
func (e *Engine) SetGCHorizon(h tt.Timestamp) error {
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	return e.setHorizon(h)
}

// setHorizon is SetGCHorizon for a caller holding a reference.
func (e *Engine) setHorizon(h tt.Timestamp) error {
	e.gcMu.Lock()
	defer e.gcMu.Unlock()
	pb := e.db.NewBatch()
	if _, err := e.raiseHorizonLocked(pb, h); err != nil {
		_ = pb.Close()
		return err
	}
	if err := e.apply(pb, true); err != nil {
		return fmt.Errorf("kv: persist gc horizon %d: %w", int64(h), err)
	}
	return nil
}

// NewBatch returns an empty batch that commits to e.
func (e *Engine) NewBatch() *Batch {
	if err := e.acquire(); err != nil {
		return &Batch{e: e, err: err}
	}
	defer e.release()
	return &Batch{e: e, b: e.db.NewBatch()}
}

// SyncWAL waits until everything committed so far, synced or not, is
// written to the WAL and the WAL is synced.
func (e *Engine) SyncWAL() error {
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	pb := e.db.NewBatch()
	if err := pb.LogData(nil, nil); err != nil {
		return errors.Join(err, pb.Close())
	}
	return e.apply(pb, true)
}

// NewSnapshot returns a consistent, read-only view of the engine as of now.
// Close it when done; Engine.Close closes snapshots left open. On a closed
// or failed engine every method of the returned Snapshot fails.
func (e *Engine) NewSnapshot() *Snapshot {
	if err := e.acquire(); err != nil {
		s := &Snapshot{err: err}
		s.life.init()
		s.life.closeNow()
		return s
	}
	defer e.release()
	s := &Snapshot{e: e, snap: e.db.NewSnapshot()}
	s.life.init()
	// Load the horizon after the snapshot exists: GC raises the horizon
	// before deleting anything, so every deletion the snapshot can see is
	// covered by the horizon loaded here.
	s.horizon = e.GCHorizon()
	e.snapMu.Lock()
	e.snaps[s] = struct{}{}
	e.snapMu.Unlock()
	return s
}

// forgetSnapshot removes s from the set Close releases.
func (e *Engine) forgetSnapshot(s *Snapshot) {
	e.snapMu.Lock()
	delete(e.snaps, s)
	e.snapMu.Unlock()
}

// view returns the engine's reader over the live DB.
func (e *Engine) view() view {
	return view{r: e.db, horizon: e.GCHorizon}
}

// Get implements Reader. It answers from the newest-version cache when it
// can, and fills the cache from reads at MaxTimestamp.
func (e *Engine) Get(key []byte, ts tt.Timestamp) ([]byte, tt.Timestamp, error) {
	if err := e.acquire(); err != nil {
		return nil, 0, err
	}
	defer e.release()
	if e.rows == nil || len(key) == 0 {
		return e.view().get(key, ts)
	}
	prefix := appendKeyPrefix(make([]byte, 0, encodedKeyLen(key)), key)
	if val, valTS, found, ok := e.rows.lookup(prefix, ts); ok {
		// After the lookup, as view.newIter checks after opening its
		// iterator.
		if h := e.GCHorizon(); ts < h {
			return nil, 0, belowHorizon(ts, h)
		}
		if !found {
			return nil, 0, ErrNotFound
		}
		return val, valTS, nil
	}
	if ts != tt.MaxTimestamp {
		return e.view().getPrefix(key, prefix, ts)
	}
	gen := e.rows.generation(prefix)
	v, err := e.view().version(key, prefix, ts)
	if err != nil {
		return nil, 0, err
	}
	e.rows.fill(prefix, gen, v.ts, v.found, v.val)
	if !v.found {
		return nil, 0, ErrNotFound
	}
	return v.val, v.ts, nil
}

// Scan implements Reader.
func (e *Engine) Scan(start, end []byte, ts tt.Timestamp, limit int, reverse bool) ([]KeyValue, error) {
	if err := e.acquire(); err != nil {
		return nil, err
	}
	defer e.release()
	return e.view().scan(start, end, ts, limit, reverse)
}

// LogEntries implements Reader.
func (e *Engine) LogEntries(group, lo, hi uint64, maxBytes int) ([]LogEntry, error) {
	if err := e.acquire(); err != nil {
		return nil, err
	}
	defer e.release()
	return e.view().logEntries(group, lo, hi, maxBytes)
}

// LogBounds implements Reader.
func (e *Engine) LogBounds(group uint64) (first, last uint64, ok bool, err error) {
	if err := e.acquire(); err != nil {
		return 0, 0, false, err
	}
	defer e.release()
	return e.view().logBounds(group)
}

// HardState implements Reader.
func (e *Engine) HardState(group uint64) ([]byte, error) {
	if err := e.acquire(); err != nil {
		return nil, err
	}
	defer e.release()
	return e.view().hardState(group)
}

// Meta implements Reader.
func (e *Engine) Meta(group uint64, name []byte) ([]byte, error) {
	if err := e.acquire(); err != nil {
		return nil, err
	}
	defer e.release()
	return e.view().meta(group, name)
}

// MetaScan implements Reader. fn runs while the engine is held open; it must
// not call Close.
func (e *Engine) MetaScan(group uint64, prefix []byte, fn func(name, value []byte) error) error {
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	return e.view().metaScan(group, prefix, fn)
}

// ExportSnapshot implements Reader. The export reads one consistent view of
// the engine. emit runs while the engine is held open; it must not call
// Close.
func (e *Engine) ExportSnapshot(start, end []byte, ts tt.Timestamp, chunkBytes int, emit func(chunk []byte) error) error {
	if err := e.acquire(); err != nil {
		return err
	}
	defer e.release()
	return e.view().exportSnapshot(start, end, ts, chunkBytes, emit)
}

var _ Reader = (*Engine)(nil)
