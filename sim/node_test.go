package sim

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A crash keeps what was synced, older WALs whole (Pebble synced them when
// it moved to the next), and a prefix of the newest WAL's unsynced blocks,
// the same ones for the same random source.
func TestCrashCloneKeepsSyncedAndAPrefix(t *testing.T) {
	fs := vfs.NewCrashableMem()
	if err := fs.MkdirAll(engineDir, 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := fs.OpenDir("")
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Sync(); err != nil {
		t.Fatal(err)
	}
	write := func(name string, synced, unsynced []byte) {
		f, err := fs.Create(fs.PathJoin(engineDir, name), vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(synced); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(unsynced); err != nil {
			t.Fatal(err)
		}
	}
	d, err := fs.OpenDir(engineDir)
	if err != nil {
		t.Fatal(err)
	}
	block := func(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }
	write("000001.log", block('a', 4096), block('x', 100))       // older WAL
	write("000007.log", block('b', 6000), block('c', 3*4096+10)) // newest WAL
	write("000005.sst", block('s', 10), block('t', 4096))
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for seed := uint64(0); seed < 40; seed++ {
		var first []byte
		for run := 0; run < 3; run++ {
			clone, err := crashClone(fs, rand.New(rand.NewPCG(seed, 1)))
			if err != nil {
				t.Fatal(err)
			}
			older := append(block('a', 4096), block('x', 100)...)
			for name, want := range map[string][]byte{"000001.log": older, "000005.sst": block('s', 10)} {
				if got, err := readMemFile(clone, clone.PathJoin(engineDir, name)); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s: %d bytes (%v), want %d", name, len(got), err, len(want))
				}
			}
			wal, err := readMemFile(clone, clone.PathJoin(engineDir, "000007.log"))
			if err != nil {
				t.Fatal(err)
			}
			full := append(block('b', 6000), block('c', 3*4096+10)...)
			if len(wal) < 6000 || !bytes.Equal(wal, full[:len(wal)]) {
				t.Fatalf("seed %d: the newest WAL is %d bytes, not its synced data and a prefix of the rest", seed, len(wal))
			}
			if run == 0 {
				first = wal
				seen[len(wal)] = true
			} else if !bytes.Equal(wal, first) {
				t.Fatalf("seed %d: run %d kept %d bytes, run 0 kept %d", seed, run, len(wal), len(first))
			}
		}
	}
	// Unsynced blocks start at 4096 (the one holding the synced tail) and
	// every prefix of them is kept for some seed.
	for _, n := range []int{6000, 8192, 12288, 16384, 18298} {
		if !seen[n] {
			t.Errorf("no seed kept %d bytes of the newest WAL (kept: %v)", n, seen)
		}
	}
}

// Running the same seeds twice in one process gives the same results: a
// failure's replay command reproduces it.
func TestTxnSeedsReplay(t *testing.T) {
	run := func() []TxnResult {
		var out []TxnResult
		for seed := uint64(1); seed <= 6; seed++ {
			res, err := RunTxn(TxnOptions{Seed: seed, Faults: []string{"all"}, Duration: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			res.Wall = 0
			out = append(out, res)
		}
		return out
	}
	a, b := run(), run()
	for i := range a {
		if a[i].Committed != b[i].Committed || a[i].Aborted != b[i].Aborted || a[i].ReadOnly != b[i].ReadOnly ||
			a[i].Events != b[i].Events || a[i].CommitP50 != b[i].CommitP50 {
			t.Errorf("seed %d ran differently: %+v, then %+v", a[i].Seed, a[i], b[i])
		}
	}
}
