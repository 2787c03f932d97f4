package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/tt"
)

// crashBatch describes one batch written by the crash workload.
type crashBatch struct {
	keys   int  // keys written, crashKey(i, 0..keys-1)
	synced bool // committed with sync=true and acknowledged
}

func crashKey(batch, j int) []byte { return []byte(fmt.Sprintf("b%05d/k%d", batch, j)) }

func crashValue(batch, j, size int) []byte {
	return bytes.Repeat([]byte{byte('a' + (batch+j)%26)}, size)
}

// crashWorkload writes batches to e, each with MVCC versions, a log entry,
// the hard state and a meta record, some synced, interleaved with horizon
// raises and GC. It returns the batches and the last horizon acknowledged.
func crashWorkload(t *testing.T, rng *rand.Rand, e *Engine, n int) ([]crashBatch, tt.Timestamp) {
	t.Helper()
	batches := make([]crashBatch, n)
	var horizon tt.Timestamp
	for i := range batches {
		cb := crashBatch{keys: 1 + rng.IntN(8)}
		b := e.NewBatch()
		for j := range cb.keys {
			if err := b.Put(crashKey(i, j), tt.Timestamp(i+1), crashValue(i, j, rng.IntN(4096))); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.AppendLog(1, uint64(i), []byte(fmt.Sprintf("entry %d", i))); err != nil {
			t.Fatal(err)
		}
		if err := b.SetHardState(1, []byte(fmt.Sprintf("hs %d", i))); err != nil {
			t.Fatal(err)
		}
		if err := b.SetMeta(1, []byte("last"), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		sync := rng.IntN(3) == 0
		if err := b.Commit(sync); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		cb.synced = sync
		batches[i] = cb
		switch rng.IntN(20) {
		case 0:
			horizon = tt.Timestamp(i / 2)
			if err := e.SetGCHorizon(horizon); err != nil {
				t.Fatal(err)
			}
		case 1:
			if _, err := e.GC(tt.Timestamp(i / 2)); err != nil {
				t.Fatal(err)
			}
			horizon = max(horizon, tt.Timestamp(i/2))
		}
	}
	return batches, horizon
}

// checkRecovered verifies the state of a store reopened after a crash:
// every batch is all-or-nothing, synced batches are present, the present
// batches form a prefix of the history, and the horizon did not regress.
// It returns the number of batches lost.
func checkRecovered(t *testing.T, e *Engine, batches []crashBatch, horizon tt.Timestamp) (lost int) {
	t.Helper()
	if h := e.GCHorizon(); h < horizon {
		t.Errorf("horizon %d after recovery; %d was acknowledged", h, horizon)
	}
	last := -1
	for i, cb := range batches {
		present := 0
		for j := range cb.keys {
			_, _, err := e.Get(crashKey(i, j), tt.MaxTimestamp)
			switch {
			case err == nil:
				present++
			case !errors.Is(err, ErrNotFound):
				t.Fatalf("batch %d key %d: %v", i, j, err)
			}
		}
		entries, err := e.LogEntries(1, uint64(i), uint64(i)+1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if present != 0 && present != cb.keys || (present > 0) != (len(entries) == 1) {
			t.Errorf("batch %d torn: %d of %d keys, %d log entries", i, present, cb.keys, len(entries))
		}
		if cb.synced && present == 0 {
			t.Errorf("synced batch %d lost", i)
		}
		if present > 0 {
			if last != i-1 {
				t.Errorf("batch %d present but batch %d lost: not a prefix", i, last+1)
			}
			last = i
		}
	}
	hs, err := e.HardState(1)
	switch {
	case last < 0 && !errors.Is(err, ErrNotFound):
		t.Errorf("hard state with no batch present: %q, %v", hs, err)
	case last >= 0 && (err != nil || string(hs) != fmt.Sprintf("hs %d", last)):
		t.Errorf("hard state %q, %v; want batch %d's", hs, err, last)
	}
	if _, lastIdx, ok, err := e.LogBounds(1); err != nil || ok != (last >= 0) || (ok && lastIdx != uint64(last)) {
		t.Errorf("LogBounds: last %d ok %v err %v; want %d", lastIdx, ok, err, last)
	}
	return len(batches) - (last + 1)
}

// TestCrash writes synced and unsynced batches to a crashable in-memory
// filesystem, takes a crash image keeping a random share of unsynced
// data, and checks that the store reopens cleanly with every synced batch,
// no torn batch and no hole in the history.
func TestCrash(t *testing.T) {
	base := testSeed(t)
	lossy := 0 // runs in which the crash lost unsynced batches
	for i := range *flagSeeds {
		seed := base + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			mem := vfs.NewCrashableMem()
			e, err := Open(testDir, Options{FS: mem, Logger: quietLogger{}, MemTableSize: 64 << 10})
			if err != nil {
				t.Fatal(err)
			}
			batches, horizon := crashWorkload(t, rng, e, 20+rng.IntN(80))
			crashed := mem.CrashClone(vfs.CrashCloneCfg{
				UnsyncedDataPercent: rng.IntN(101),
				RNG:                 rand.New(rand.NewPCG(seed, 2)),
			})
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}

			e2, err := Open(testDir, Options{FS: crashed, Logger: quietLogger{}, MemTableSize: 64 << 10})
			if err != nil {
				t.Fatalf("reopen after crash: %v", err)
			}
			defer e2.Close()
			if checkRecovered(t, e2, batches, horizon) > 0 {
				lossy++
			}
			// The recovered store takes writes.
			write(t, e2, true, func(b *Batch) error { return b.Put([]byte("after"), 1, []byte("crash")) })
		})
	}
	t.Logf("%d of %d crashes lost unsynced batches", lossy, *flagSeeds)
	if *flagSeeds >= 20 && lossy == 0 {
		t.Error("no crash lost anything: the test does not exercise recovery")
	}
}

// TestCrashDuringConcurrentWrites takes the crash image while goroutines
// are committing, so the image catches the WAL mid-write.
func TestCrashDuringConcurrentWrites(t *testing.T) {
	base := testSeed(t)
	for i := range max(*flagSeeds/4, 1) {
		seed := base + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			e, err := Open(testDir, Options{FS: mem, Logger: quietLogger{}, MemTableSize: 64 << 10})
			if err != nil {
				t.Fatal(err)
			}
			const writers, perWriter = 4, 60
			// acked[w] is the number of writer w's batches acknowledged
			// as synced before the crash image was taken.
			var acked [writers]atomic.Int64
			crashAt := make(chan struct{})
			done := make(chan int, writers)
			for w := range writers {
				go func() {
					n := 0
					defer func() { done <- w }()
					for k := range perWriter {
						select {
						case <-crashAt:
							return
						default:
						}
						b := e.NewBatch()
						for j := range 4 {
							_ = b.Put([]byte(fmt.Sprintf("w%d/%03d/%d", w, k, j)), 1, crashValue(k, j, 512))
						}
						if err := b.Commit(true); err != nil {
							t.Errorf("writer %d: %v", w, err)
							return
						}
						n++
						acked[w].Store(int64(n))
					}
				}()
			}
			rng := rand.New(rand.NewPCG(seed, 3))
			for e.Stats().SyncedCommits < uint64(10+rng.IntN(writers*perWriter/2)) {
				// Let the writers make progress.
				if _, _, err := e.Get([]byte("x"), 1); !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
			}
			// Snapshot the acknowledgements before the image: every batch
			// counted here was acknowledged before CrashClone started.
			var before [writers]int
			for w := range writers {
				before[w] = int(acked[w].Load())
			}
			crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(seed, 4))})
			close(crashAt)
			for range writers {
				<-done
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			e2, err := Open(testDir, Options{FS: crashed, Logger: quietLogger{}})
			if err != nil {
				t.Fatalf("reopen after crash: %v", err)
			}
			defer e2.Close()
			for w := range writers {
				for k := range perWriter {
					present := 0
					for j := range 4 {
						if _, _, err := e2.Get([]byte(fmt.Sprintf("w%d/%03d/%d", w, k, j)), 1); err == nil {
							present++
						}
					}
					if present != 0 && present != 4 {
						t.Errorf("writer %d batch %d torn: %d of 4", w, k, present)
					}
					if k < before[w] && present == 0 {
						t.Errorf("writer %d batch %d acknowledged as synced but lost", w, k)
					}
				}
			}
		})
	}
}

// openCrashable opens an engine on a crashable in-memory filesystem with
// one version of "k" in an open batch.
func openCrashable(t *testing.T) (*vfs.MemFS, *Engine, *Batch) {
	t.Helper()
	mem := vfs.NewCrashableMem()
	e, err := Open(testDir, Options{FS: mem, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	b := e.NewBatch()
	if err := b.Put([]byte("k"), 5, []byte("v")); err != nil {
		t.Fatal(err)
	}
	return mem, e, b
}

// checkK fails unless e holds "v" at 5 for "k".
func checkK(t *testing.T, e *Engine, when string) {
	t.Helper()
	if v, ts, err := e.Get([]byte("k"), 10); err != nil || string(v) != "v" || ts != 5 {
		t.Fatalf("%s: %q at %d, %v; want \"v\" at 5", when, v, ts, err)
	}
}

// crashAndReopen closes e and reopens what a crash would have left of mem:
// only what was synced.
func crashAndReopen(t *testing.T, mem *vfs.MemFS, e *Engine) *Engine {
	t.Helper()
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e2, err := Open(testDir, Options{FS: crashed, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e2.Close() })
	return e2
}

// SyncWAL makes unsynced commits durable.
func TestSyncWAL(t *testing.T) {
	mem, e, b := openCrashable(t)
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	before := e.Stats()
	if err := e.SyncWAL(); err != nil {
		t.Fatal(err)
	}
	if got := e.Stats().SyncedCommits - before.SyncedCommits; got != 1 {
		t.Fatalf("SyncWAL made %d synced commits, want 1", got)
	}
	e2 := crashAndReopen(t, mem, e)
	checkK(t, e2, "after the crash")
	e2.Close()
	if err := e2.SyncWAL(); !errors.Is(err, ErrClosed) {
		t.Fatalf("SyncWAL on a closed engine: %v, want ErrClosed", err)
	}
}

func TestCommitNoSyncWait(t *testing.T) {
	mem, e, b := openCrashable(t)
	before := e.Stats()
	wait, err := b.CommitNoSyncWait()
	if err != nil {
		t.Fatal(err)
	}
	checkK(t, e, "visible before the fsync is waited for")
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if got := e.Stats().SyncedCommits - before.SyncedCommits; got != 1 {
		t.Fatalf("%d synced commits, want 1", got)
	}
	e2 := crashAndReopen(t, mem, e)
	checkK(t, e2, "after the crash")
	// An empty batch waits for nothing; a closed engine refuses.
	if wait, err := e2.NewBatch().CommitNoSyncWait(); err != nil || wait() != nil {
		t.Fatalf("empty batch: %v", err)
	}
	b = e2.NewBatch()
	e2.Close()
	if _, err := b.CommitNoSyncWait(); !errors.Is(err, ErrClosed) {
		t.Fatalf("commit on a closed engine: %v, want ErrClosed", err)
	}
}
