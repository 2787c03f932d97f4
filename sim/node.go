package sim

import (
	"fmt"
	"math/rand/v2"
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
