package sim

import (
	"fmt"
	"math/rand/v2"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/kv"
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
}

func openEngine(fs vfs.FS) (*kv.Engine, error) {
	return kv.Open("data", kv.Options{FS: fs, CacheSize: 8 << 20})
}

// crash throws away everything the node did not sync: the filesystem is
// replaced by a crash clone keeping a random share of unsynced writes.
func (n *simNode) crash(rng *rand.Rand) error {
	clone := n.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))})
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
	eng, err := openEngine(n.fs)
	if err != nil {
		return fmt.Errorf("node %d: reopen after crash: %w", n.id, err)
	}
	n.eng = eng
	n.up = true
	n.epoch++
	return nil
}
