package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/tt"
)

// simNode is one simulated machine: a clock, a crash-simulating filesystem
// with a real Pebble engine on it, and a liveness epoch that invalidates
// events scheduled before a crash.
type simNode struct {
	id     NodeID
	region int
	fs     *vfs.MemFS
	eng    *kv.Engine
	clock  *tt.Sim
	up     bool
	epoch  int
	// holdWAL turns WAL syncs into no-ops: while a crash is prepared, and
	// always on a node that pipelines persistence (explicitSync), whose
	// WAL is durable only at its durable calls.
	holdWAL atomic.Bool
	// explicitSync: Pebble's own WAL syncs are withheld, and the simulator
	// decides in virtual time when what was written becomes durable
	// (durable). Otherwise Pebble's goroutine would sync pipelined writes
	// at moments of the real scheduler's choosing, and a crash would keep
	// more or less of them from run to run.
	explicitSync bool
}

// withholdSyncs makes the node's WAL durable only at durable calls, from
// now on and after restarts.
func (n *simNode) withholdSyncs() {
	n.explicitSync = true
	n.holdWAL.Store(true)
}

// durable makes everything the node's engine committed so far durable,
// as a synced commit does (a no-op unless withholdSyncs).
func (n *simNode) durable() error {
	if !n.explicitSync || n.eng == nil {
		return nil
	}
	n.holdWAL.Store(false)
	defer n.holdWAL.Store(true)
	return n.eng.SyncWAL()
}

// engineDir is where a node's engine lives on its filesystem.
const engineDir = "data"

// openEngine opens the node's engine on its filesystem.
func (n *simNode) openEngine() (*kv.Engine, error) {
	return kv.Open(engineDir, kv.Options{FS: walFS{FS: n.fs, hold: &n.holdWAL}, CacheSize: 8 << 20})
}

// crash throws away everything the node did not sync: the filesystem is
// replaced by a crash clone keeping a random prefix of the WAL's unsynced
// writes (see crashClone).
//
// Pebble writes unsynced commits to the WAL from a goroutine of its own, so
// how much of them had reached the filesystem at the crash depends on the
// scheduler, and a seed would not replay. First every commit is pushed
// into the WAL file by a synced write whose sync is withheld: the clone
// then picks its share from the same unsynced bytes every time.
func (n *simNode) crash(rng *rand.Rand) error {
	if n.eng != nil {
		n.holdWAL.Store(true)
		_ = n.eng.SyncWAL()
		n.holdWAL.Store(n.explicitSync)
	}
	clone, err := crashClone(n.fs, rng)
	if err != nil {
		return err
	}
	if n.eng != nil {
		_ = n.eng.Close()
		n.eng = nil
	}
	n.fs = clone
	n.up = false
	n.epoch++
	return nil
}

// restart reopens the engine on the crashed filesystem.
func (n *simNode) restart() error {
	eng, err := n.openEngine()
	if err != nil {
		return fmt.Errorf("node %d: reopen after crash: %w", n.id, err)
	}
	n.eng = eng
	n.up = true
	n.epoch++
	return nil
}

// now is the node's clock reading, paxos.Unhealthy when it has none.
func (n *simNode) now() tt.Interval {
	iv, err := n.clock.Now()
	if err != nil {
		return paxos.Unhealthy
	}
	return iv
}

// ticker keeps one pending tick per replica and node epoch on the loop.
type ticker struct {
	next  tt.Timestamp // the tick already scheduled, 0 if none
	epoch int          // the node epoch it was scheduled in
}

// schedule asks for fire once n's clock's earliest reaches wake (0: in
// 100 ms), unless a tick no later is already pending in this epoch. The
// tick is dropped if the node crashed in between.
func (t *ticker) schedule(loop *Loop, n *simNode, wake tt.Timestamp, fire func()) {
	at := loop.Now().Add(100 * time.Millisecond)
	if wake != 0 {
		if iv, err := n.clock.Now(); err == nil {
			// True time is at most the interval's width past earliest.
			at = wake.Add(iv.Width() + time.Microsecond)
		}
	}
	if at <= loop.Now() {
		at = loop.Now().Add(time.Microsecond)
	}
	if t.epoch == n.epoch && t.next > loop.Now() && t.next <= at {
		return
	}
	t.next, t.epoch = at, n.epoch
	ep := n.epoch
	loop.At(at, func() {
		if n.epoch != ep || !n.up {
			return
		}
		if t.next == at {
			t.next = 0
		}
		fire()
	})
}

// walFS is the node's filesystem with WAL syncs that do nothing while hold
// is set (see simNode.crash). Other files sync as always: Pebble relies on
// synced tables and manifest records.
type walFS struct {
	vfs.FS
	hold *atomic.Bool
}

func (fs walFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return walFile{File: f, hold: fs.hold}, nil
}

func (fs walFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs walFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

func (fs walFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

type walFile struct {
	vfs.File
	hold *atomic.Bool
}

func (f walFile) Sync() error {
	if f.hold.Load() {
		return nil
	}
	return f.File.Sync()
}

func (f walFile) SyncData() error {
	if f.hold.Load() {
		return nil
	}
	return f.File.SyncData()
}

func (f walFile) SyncTo(length int64) (bool, error) {
	if f.hold.Load() {
		return true, nil
	}
	return f.File.SyncTo(length)
}

// crashClone returns fs as a crash leaves it: what was synced, and of the
// newest WAL file's unsynced 4 KiB blocks a random number, in order.
//
// vfs.MemFS.CrashClone draws its random choices in map order, so the same
// seed would keep different writes from run to run; here the randomness is
// one draw from rng. Only the newest WAL can hold unsynced writes that
// matter: Pebble syncs a WAL before it moves to the next one (a sync the
// hold withholds, so older WALs are kept whole here), and syncs tables and
// manifest records before it relies on them.
func crashClone(fs *vfs.MemFS, rng *rand.Rand) (*vfs.MemFS, error) {
	synced := fs.CrashClone(vfs.CrashCloneCfg{})
	all := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(0, 0))})
	names, err := all.List(engineDir)
	if err != nil {
		return nil, err
	}
	wal := ""
	for _, name := range names {
		if strings.HasSuffix(name, ".log") && (wal == "" || name > wal) {
			wal = name
		}
	}
	if wal == "" {
		return synced, nil
	}
	// Older WALs are whole: Pebble closes a WAL, syncing it, when it
	// rotates to the next (a sync withheld here, which left their tails
	// unsynced and the image not a prefix of the writes).
	for _, name := range names {
		if strings.HasSuffix(name, ".log") && name != wal {
			p := all.PathJoin(engineDir, name)
			b, err := readMemFile(all, p)
			if err != nil {
				return nil, err
			}
			if err := writeMemFile(synced, p, b); err != nil {
				return nil, err
			}
		}
	}
	path := all.PathJoin(engineDir, wal)
	written, err := readMemFile(all, path)
	if err != nil {
		return nil, err
	}
	kept, err := readMemFile(synced, path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	const block = 4096
	var unsynced []int // offsets of the blocks that differ from the synced data
	for off := 0; off < len(written); off += block {
		w := written[off:min(off+block, len(written))]
		if off+len(w) > len(kept) || !bytes.Equal(w, kept[off:off+len(w)]) {
			unsynced = append(unsynced, off)
		}
	}
	keep := rng.IntN(len(unsynced) + 1)
	if keep == 0 {
		return synced, nil
	}
	for _, off := range unsynced[:keep] {
		w := written[off:min(off+block, len(written))]
		if grow := off + len(w) - len(kept); grow > 0 {
			kept = append(kept, make([]byte, grow)...)
		}
		copy(kept[off:], w)
	}
	if err := writeMemFile(synced, path, kept); err != nil {
		return nil, err
	}
	return synced, nil
}

// writeMemFile replaces path in fs with b, synced.
func writeMemFile(fs *vfs.MemFS, path string, b []byte) error {
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	d, err := fs.OpenDir(engineDir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func readMemFile(fs *vfs.MemFS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
