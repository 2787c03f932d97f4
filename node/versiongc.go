package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/txn"
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

// GCHorizon is the timestamp this node may collect versions at now: the
// clock's earliest now minus the retention, capped by every hosted
// replica's safe time. The cap keeps kv.Engine.GC's contract that nothing
// is written at or below the horizon: every write a replica has still to
// apply is above its safe time (commits above its closed timestamp,
// prepared transactions above their prepare timestamps), so the history at
// and below the horizon is final, and a lagging replica can still serve
// reads at its safe time. (Even without the cap a replica's writes to one
// key land in timestamp order, under its locks, so collecting could not
// expose a hidden version; the cap is what keeps the contract plain.) A
// snapshot import may still raise the engine's horizon above some
// replica's safe time, to the exporter's; reads there then wait for the
// safe time to reach it (txn.Group.SetReadFloor). It is 0 when nothing may
// be collected (no replicas, or one that has applied nothing).
func (n *Node) GCHorizon(ctx context.Context) (tt.Timestamp, error) {
	now, err := n.clock.Now()
	if err != nil {
		return 0, fmt.Errorf("gc horizon: %w", err)
	}
	h := now.Earliest - tt.Timestamp(n.retention)
	groups := n.Groups()
	if len(groups) == 0 || h <= 0 {
		return 0, nil
	}
	for _, g := range groups {
		var safe tt.Timestamp
		if err := g.Call(ctx, func(t *txn.Group, _ tt.Interval) { safe = t.SafeTime() }); err != nil {
			return 0, fmt.Errorf("gc horizon: safe time of group %d: %w", g.cfg.Group, err)
		}
		h = min(h, safe)
	}
	return max(h, 0), nil
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
	for done := false; !done && err == nil; {
		round := time.Now()
		if done, err = p.Step(); done || err != nil {
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(time.Since(round)):
		}
	}
	// The engine collects at its own horizon when that is higher (a
	// snapshot import raises it to the exporter's).
	res := GCResult{Horizon: p.Horizon(), Removed: p.Removed(), Took: time.Since(start)}
	if m := n.met; m != nil {
		m.GCRemoved.Add(float64(res.Removed))
		m.GCHorizon.Set(float64(res.Horizon) / 1e9)
	}
	return res, err
}

// runGC collects every interval (±10%, so nodes started together spread
// out) until the node stops.
func (n *Node) runGC(interval time.Duration) {
	defer close(n.gcDone)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-n.stopGC
		cancel()
	}()
	for {
		jitter := time.Duration(rand.Int64N(int64(interval)/5+1)) - interval/10
		select {
		case <-n.stopGC:
			return
		case <-time.After(interval + jitter):
		}
		res, err := n.CollectVersions(ctx)
		switch {
		case errors.Is(err, context.Canceled):
			return
		case err != nil:
			n.log.Warn("version gc failed", "err", err, "removed", res.Removed)
		case res.Horizon != 0:
			n.log.Info("version gc", "horizon", res.Horizon, "removed", res.Removed, "took", res.Took.Round(time.Millisecond))
		}
	}
}
