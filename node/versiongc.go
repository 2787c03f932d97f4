package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/txn"
	"github.com/meridiandb/meridian/txn/txnkv"
)

// Version garbage collection. Every MVCC version a write leaves stays until
// it is collected; without collection the store grows with every write and
// compactions rewrite ever more dead versions. The node collects versions
// that no read within the retention can see, on a schedule.
const (
	// DefaultVersionRetention is how far back reads can go (Spanner's
	// default version_retention_period): stale reads, exact-timestamp
	// reads and snapshots up to an hour old keep working.
	DefaultVersionRetention = time.Hour
	// DefaultGCInterval is how often the node collects.
	DefaultGCInterval = 10 * time.Minute
)

// GCResult describes one collection pass.
type GCResult struct {
	// Horizon is the timestamp collected at: versions no read at or above
	// it can see are gone, and reads below it are refused
	// (FailedPrecondition). Zero when nothing could be collected yet.
	Horizon tt.Timestamp
	// Removed is how many versions the pass deleted.
	Removed int
	// Took is how long the pass ran.
	Took time.Duration
}

// GCHorizon is the timestamp this node may collect versions at now
// (txnkv.GCHorizon over the safe times of the replicas it hosts; 0 when
// nothing may be collected). A snapshot import may still raise the
// engine's horizon above some replica's safe time, to the exporter's;
// reads there then wait for the safe time to reach it
// (txn.Group.SetReadFloor). Even without the cap a replica's writes to one
// key land in timestamp order, under its locks, so collecting could not
// expose a hidden version; the cap is what keeps kv's contract plain.
func (n *Node) GCHorizon(ctx context.Context) (tt.Timestamp, error) {
	now, err := n.clock.Now()
	if err != nil {
		return 0, fmt.Errorf("gc horizon: %w", err)
	}
	var safe []tt.Timestamp
	for _, g := range n.Groups() {
		var s tt.Timestamp
		if err := g.Call(ctx, func(t *txn.Group, _ tt.Interval) { s = t.SafeTime() }); err != nil {
			return 0, fmt.Errorf("gc horizon: safe time of group %d: %w", g.cfg.Group, err)
		}
		safe = append(safe, s)
	}
	return txnkv.GCHorizon(now.Earliest, n.retention, safe), nil
}

// CollectVersions runs one collection pass at GCHorizon, one at a time.
// It paces itself, resting after each round as long as the round took, so
// that a pass over a large store takes at most half of a core from the
// work the node serves. It stops early, with ctx's error, when ctx ends;
// the next pass finishes the work.
func (n *Node) CollectVersions(ctx context.Context) (GCResult, error) {
	n.gcMu.Lock()
	defer n.gcMu.Unlock()
	start := time.Now()
	h, err := n.GCHorizon(ctx)
	if err != nil || h == 0 {
		return GCResult{}, err
	}
	p, err := n.eng.NewGCPass(h, 0)
	if err != nil {
		return GCResult{}, err
	}
	err = paceRounds(ctx, p)
	// The engine collects at its own horizon when that is higher (a
	// snapshot import raises it to the exporter's).
	res := GCResult{Horizon: p.Horizon(), Removed: p.Removed(), Took: time.Since(start)}
	if m := n.met; m != nil {
		m.GCRemoved.Add(float64(res.Removed))
		m.GCHorizon.Set(float64(res.Horizon) / 1e9)
	}
	return res, err
}

// paceRounds runs p to the end, resting after each round as long as it
// took, or until ctx ends.
func paceRounds(ctx context.Context, p *kv.GCPass) error {
	for {
		round := time.Now()
		done, err := p.Step()
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Since(round)):
		}
	}
}

// runGC collects every interval (±10%, so nodes started together spread
// out) until ctx ends (Stop).
func (n *Node) runGC(ctx context.Context, interval time.Duration) {
	defer close(n.gcDone)
	for {
		jitter := time.Duration(rand.Int64N(int64(interval)/5+1)) - interval/10
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval + jitter):
		}
		res, err := n.CollectVersions(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			n.log.Warn("version gc failed", "err", err, "removed", res.Removed)
		case res.Horizon != 0:
			n.log.Info("version gc", "horizon", res.Horizon, "removed", res.Removed, "took", res.Took.Round(time.Millisecond))
		}
	}
}
