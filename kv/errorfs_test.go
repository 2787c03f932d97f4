package kv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/meridiandb/meridian/tt"
)

// What Pebble does with I/O errors, as found in pebble v2.1.7 and relied on
// by these tests:
//
//   - A failed WAL write or fsync reaches a synced committer as an error
//     from the commit pipeline, and DB.Apply then calls Logger.Fatalf
//     ("pebble: fatal commit error"), whose default implementation exits
//     the process. The engine's logger panics instead and Commit recovers,
//     reporting ErrFailed; the pipeline's locks were released, so Close
//     still closes Pebble.
//   - A write to a WAL whose background flusher already failed (an
//     unsynced commit does not wait for it) panics inside the commit
//     pipeline with its mutex held. Commit recovers and reports ErrFailed,
//     but Pebble is wedged: Close abandons the instance instead of
//     deadlocking on that mutex.
//   - A failure while rotating the WAL (closing, creating or recycling a log
//     file when a memtable fills up) panics in DB.rotateWAL while DB.mu is
//     released; the caller's deferred unlock then dies with the runtime's
//     unrecoverable "unlock of unlocked mutex". Such failures end the
//     process whatever the engine does: Pebble crashes on them by design,
//     and the store recovers on restart. TestWALErrors therefore injects
//     only into WAL writes, syncs and preallocations, and keeps its
//     workload within the first memtable so no rotation happens.
//   - Failed MANIFEST writes also call Fatalf. On the Open goroutine the
//     engine turns that into an error (TestOpenErrors injects into every
//     operation of Open); on a background goroutine (flush, compaction) it
//     ends the process, so nothing is injected after Open but WAL I/O.
//
// Either way the on-disk state is what a crash would leave, so each test
// checks the store reopened from a crash image of the underlying
// filesystem: every batch acknowledged as synced is present, and no batch
// is torn.

// walIO matches WAL data operations (not file creation, removal or
// recycling, which only WAL rotation performs).
type walIO struct{}

func (walIO) String() string { return "walIO" }
func (walIO) Evaluate(op errorfs.Op) bool {
	if ok, _ := path.Match(path.Join(testDir, "*.log"), op.Path); !ok {
		return false
	}
	switch op.Kind {
	case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData,
		errorfs.OpFileSyncTo, errorfs.OpFileFlush, errorfs.OpFilePreallocate:
		return true
	}
	return false
}

// TestWALErrors injects random errors into WAL writes, syncs and file
// operations while batches commit.
func TestWALErrors(t *testing.T) {
	base := testSeed(t)
	var failedRuns int
	for i := range *flagSeeds {
		seed := base + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			if walErrorRun(t, seed) {
				failedRuns++
			}
		})
	}
	t.Logf("%d of %d runs hit an injected error", failedRuns, *flagSeeds)
	if *flagSeeds >= 10 && failedRuns == 0 {
		t.Error("no run hit an injected error: the test exercises nothing")
	}
}

// walErrorRun runs one seed of TestWALErrors and reports whether an
// injected error failed the engine.
func walErrorRun(t *testing.T, seed uint64) (failed bool) {
	rng := rand.New(rand.NewPCG(seed, 5))
	mem := vfs.NewCrashableMem()
	inj := &errorfs.Toggle{Injector: errorfs.ErrInjected.If(errorfs.And(
		walIO{},
		errorfs.Randomly(0.002+rng.Float64()*0.05, int64(seed)),
	))}
	// The default memtable size: the first memtable (256 KiB) holds the
	// whole workload, so the WAL never rotates.
	e, err := Open(testDir, Options{FS: errorfs.Wrap(mem, inj), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	inj.On()

	// Some runs never sync, so that a failed WAL write is noticed by a later
	// commit rather than by the fsync of its own.
	syncPercent := []int{0, 50, 100}[rng.IntN(3)]
	var batches []crashBatch
	for i := range 150 {
		cb := crashBatch{keys: 1 + rng.IntN(6)}
		b := e.NewBatch()
		for j := range cb.keys {
			if err := b.Put(crashKey(i, j), tt.Timestamp(i+1), crashValue(i, j, rng.IntN(256))); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.AppendLog(1, uint64(i), []byte("entry")); err != nil {
			t.Fatal(err)
		}
		if err := b.SetHardState(1, []byte(fmt.Sprintf("hs %d", i))); err != nil {
			t.Fatal(err)
		}
		sync := rng.IntN(100) < syncPercent
		err := b.Commit(sync)
		if err != nil {
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("batch %d: %v; want ErrFailed", i, err)
			}
			batches = append(batches, cb) // outcome unknown: may be present
			failed = true
			break
		}
		cb.synced = sync
		batches = append(batches, cb)
	}
	if failed {
		// A failed engine refuses everything.
		if _, _, err := e.Get([]byte("k"), 1); !errors.Is(err, ErrFailed) {
			t.Errorf("Get after failure: %v", err)
		}
		b := e.NewBatch()
		if err := b.Put([]byte("k"), 1, nil); !errors.Is(err, ErrFailed) {
			t.Errorf("Put after failure: %v", err)
		}
		if err := b.Commit(true); !errors.Is(err, ErrFailed) {
			t.Errorf("Commit after failure: %v", err)
		}
		if err := e.Close(); !errors.Is(err, ErrFailed) {
			t.Errorf("Close after failure: %v", err)
		}
	} else if err := e.Close(); err != nil {
		// No commit failed, but an injected error may still surface when
		// Close syncs the WAL.
		t.Logf("Close: %v", err)
	}

	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(seed, 6))})
	e2, err := Open(testDir, Options{FS: crashed, Logger: quietLogger{}})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer e2.Close()
	checkRecovered(t, e2, batches, 0)
	return failed
}

// inOpen reports whether the calling goroutine is inside pebble.Open,
// which tells Open's own filesystem operations apart from those of the
// background work (flushes, table stats, file deletion) it starts.
func inOpen() bool {
	var pcs [256]uintptr
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs[:])])
	for {
		f, more := frames.Next()
		if f.Function == "github.com/cockroachdb/pebble/v2.Open" {
			return true
		}
		if !more {
			return false
		}
	}
}

// openOpInjector fails the index-th filesystem operation that pebble.Open
// performs itself (counting from 0). It counts those operations, and how
// many of them came before the first operation of background work.
type openOpInjector struct {
	index    int64 // -1: never fail
	n        atomic.Int64
	beforeBg atomic.Int64 // -1 until background work starts
}

func newOpenOpInjector(index int64) *openOpInjector {
	o := &openOpInjector{index: index}
	o.beforeBg.Store(-1)
	return o
}

func (o *openOpInjector) String() string { return fmt.Sprintf("openOp(%d)", o.index) }

func (o *openOpInjector) MaybeError(errorfs.Op) error {
	if !inOpen() {
		o.beforeBg.CompareAndSwap(-1, o.n.Load())
		return nil
	}
	if o.n.Add(1)-1 == o.index {
		return errorfs.ErrInjected
	}
	return nil
}

// TestOpenErrors fails each filesystem operation of Open in turn, on a new
// store and on one with data in sstables and a WAL to replay. Open must
// return an error or succeed, never panic, and the store must afterwards
// open cleanly with its data intact.
//
// Only Open's own operations fail, and only those before Open starts
// background work. Background work would turn a failed MANIFEST write into
// a process exit (see above); and in pebble v2.1.7, once Open has flushed
// the replayed WAL (which can start a compaction), a later failure makes
// Open return an error while that compaction still runs against the file
// cache Open's cleanup closes, crashing the process (integer divide by zero
// in fileCacheKey.Shard). After an injected failure the store is reopened
// from an image with all written data (a process restart): the failed
// operation may have been an fsync, after which Pebble promises nothing
// about a machine crash.
func TestOpenErrors(t *testing.T) {
	for _, existing := range []bool{false, true} {
		t.Run(fmt.Sprintf("existing=%v", existing), func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			var batches []crashBatch
			if existing {
				e, err := Open(testDir, Options{FS: mem, Logger: quietLogger{}, MemTableSize: 64 << 10})
				if err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(1, 2))
				batches, _ = crashWorkload(t, rng, e, 60)
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
				for i := range batches {
					batches[i].synced = true // closed cleanly: all durable
				}
			}
			// Count the operations of a clean Open before background work.
			counter := newOpenOpInjector(-1)
			e, err := Open(testDir, Options{FS: errorfs.Wrap(mem.CrashClone(vfs.CrashCloneCfg{}), counter), Logger: quietLogger{}})
			if err != nil {
				t.Fatal(err)
			}
			ops := counter.n.Load()
			if bg := counter.beforeBg.Load(); bg >= 0 {
				ops = bg
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			var failures int
			for i := range ops {
				fs := mem.CrashClone(vfs.CrashCloneCfg{})
				e, err := Open(testDir, Options{FS: errorfs.Wrap(fs, newOpenOpInjector(i)), Logger: quietLogger{}})
				if err != nil {
					failures++
				} else if err := e.Close(); err != nil {
					t.Errorf("op %d: Close after successful Open: %v", i, err)
				}
				restarted := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(uint64(i), 7))})
				e2, err := Open(testDir, Options{FS: restarted, Logger: quietLogger{}})
				if err != nil {
					t.Fatalf("op %d: reopen after injected error: %v", i, err)
				}
				checkRecovered(t, e2, batches, 0)
				if err := e2.Close(); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%d of %d injected operations failed Open", failures, ops)
			if failures == 0 {
				t.Error("no injected error failed Open")
			}
		})
	}
}
