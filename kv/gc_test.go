package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/tt"
)

// rawVersions counts every stored version of key, below the GC horizon too.
func rawVersions(t *testing.T, e *Engine, key string) int {
	t.Helper()
	prefix := appendKeyPrefix(nil, []byte(key))
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

// splitFixture: key "a" has gcRoundDeletes versions, and key "b" a value at
// 1000 hidden by a tombstone at 1500. Collected at 2000, a's shadowed
// versions and b's tombstone fill the first round exactly, which ends at
// b's value.
func splitFixture(t *testing.T, e *Engine) {
	write(t, e, true, func(b *Batch) error {
		for ts := tt.Timestamp(1); ts <= gcRoundDeletes; ts++ {
			if err := b.Put([]byte("a"), ts, []byte("va")); err != nil {
				return err
			}
		}
		if err := b.Put([]byte("b"), 1000, []byte("hidden")); err != nil {
			return err
		}
		return b.Delete([]byte("b"), 1500)
	})
}

// TestGCStoppedBetweenRoundsKeepsTombstone: a pass stopped after any
// round never exposes a value a tombstone hid, and the next pass removes
// both.
func TestGCStoppedBetweenRoundsKeepsTombstone(t *testing.T) {
	for rounds := 1; rounds <= 2; rounds++ {
		t.Run(fmt.Sprintf("rounds=%d", rounds), func(t *testing.T) {
			e := openMem(t, Options{})
			splitFixture(t, e)
			p, err := e.NewGCPass(2000, 0)
			if err != nil {
				t.Fatal(err)
			}
			for r := 0; r < rounds; r++ { // then abandoned
				if _, err := p.Step(); err != nil {
					t.Fatalf("round %d: %v", r+1, err)
				}
			}
			for _, ts := range []tt.Timestamp{2000, tt.MaxTimestamp} {
				if v, _, err := e.Get([]byte("b"), ts); !errors.Is(err, ErrNotFound) {
					t.Fatalf("after %d rounds, b at %d = %q, %v; want not found", rounds, ts, v, err)
				}
			}
			if _, err := e.GC(2000); err != nil {
				t.Fatal(err)
			}
			if n := rawVersions(t, e, "b"); n != 0 {
				t.Errorf("b has %d versions after a full pass; want 0", n)
			}
			if n := rawVersions(t, e, "a"); n != 1 {
				t.Errorf("a has %d versions after a full pass; want 1", n)
			}
		})
	}
}

// TestGCCrashKeepsTombstone: whatever prefix of a pass's unsynced rounds
// survives a crash, the hidden value stays hidden.
func TestGCCrashKeepsTombstone(t *testing.T) {
	for seed := uint64(1); seed <= 100; seed++ {
		mem := vfs.NewCrashableMem()
		e, err := Open(testDir, Options{FS: mem, Logger: quietLogger{}})
		if err != nil {
			t.Fatal(err)
		}
		splitFixture(t, e)
		if _, err := e.GC(2000); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 1))
		crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		e2, err := Open(testDir, Options{FS: crashed, Logger: quietLogger{}})
		if err != nil {
			t.Fatal(err)
		}
		v, _, err := e2.Get([]byte("b"), tt.MaxTimestamp)
		_ = e2.Close()
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("seed %d: after a crash, b = %q, %v; want not found", seed, v, err)
		}
	}
}

// TestGCRoundRacingImport: a snapshot import that replaces a range while a
// GC round is between its scan and its deletions must not let the round
// delete from versions it never saw. Here the importer had collected k's
// oldest version; the exporter had not, and the round's deletions, chosen
// before the import, would have removed the tombstone and the middle
// version and left the oldest one visible.
func TestGCRoundRacingImport(t *testing.T) {
	exp, imp := openMem(t, Options{}), openMem(t, Options{})
	for _, e := range []*Engine{exp, imp} {
		put(t, e, "k", 10, "v10")
		put(t, e, "k", 20, "v20")
		del(t, e, "k", 30)
	}
	if _, err := imp.GC(25); err != nil { // collects v10 only
		t.Fatal(err)
	}
	var chunks [][]byte
	snap := exp.NewSnapshot()
	err := snap.ExportSnapshot(nil, nil, 100, 0, func(c []byte) error { chunks = append(chunks, bytes.Clone(c)); return nil })
	_ = snap.Close()
	if err != nil {
		t.Fatal(err)
	}
	imported := false
	gcTestBeforeApply = func() {
		gcTestBeforeApply = nil
		b := imp.NewBatch()
		defer b.Close()
		if err := b.ClearData(nil, nil); err != nil {
			t.Fatal(err)
		}
		for _, c := range chunks {
			if _, err := b.ImportSnapshotChunk(c); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(true); err != nil {
			t.Fatal(err)
		}
		imported = true
	}
	defer func() { gcTestBeforeApply = nil }()
	if _, err := imp.GC(40); err != nil {
		t.Fatal(err)
	}
	if !imported {
		t.Fatal("the import did not run during the round")
	}
	for _, ts := range []tt.Timestamp{40, tt.MaxTimestamp} {
		if v, vts, err := imp.Get([]byte("k"), ts); !errors.Is(err, ErrNotFound) {
			t.Errorf("k at %d = %q@%d, %v; want not found", ts, v, vts, err)
		}
	}
	if n := rawVersions(t, imp, "k"); n != 0 {
		t.Errorf("k has %d versions left; want 0", n)
	}
}
