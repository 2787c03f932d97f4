package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/txn"
)

// countVersions counts the versions of key in eng, at any timestamp.
func countVersions(t *testing.T, eng *kv.Engine, key []byte) int {
	t.Helper()
	n := 0
	for ts := tt.MaxTimestamp; ; {
		_, vts, err := eng.Get(key, ts)
		if errors.Is(err, kv.ErrNotFound) || errors.Is(err, kv.ErrBelowGCHorizon) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		ts = vts - 1
	}
}

// TestVersionGC: a node collects the versions older than its retention,
// keeps what reads at and above the horizon see, refuses reads below it;
// and a replica that has not applied everything caps the horizon at its
// safe time, so no version a later apply could still need is collected.
func TestVersionGC(t *testing.T) {
	// Every node must collect within the retention of the fresh commit
	// below (or its horizon passes it): ample for a loaded CI machine.
	const retention = 1500 * time.Millisecond
	c := newTestClusterWith(t, 3, 2, func(cfg *Config) { cfg.VersionRetention, cfg.GCInterval = retention, -1 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ts []tt.Timestamp
	for i := 0; i < 10; i++ {
		rep, err := c.commit(ctx, 1, put(1, "k", fmt.Sprintf("v%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, rep.TS)
	}
	// A key written and then deleted in group 2: both versions go.
	if _, err := c.commit(ctx, 2, put(2, "d", "x")); err != nil {
		t.Fatal(err)
	}
	del := txn.Participant{Group: 2, Writes: []txn.Mutation{{Key: []byte("g2/d"), Delete: true}}}
	if _, err := c.commit(ctx, 2, del); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		c.waitValue(i, 1, "k", "v9")
	}
	time.Sleep(retention + 50*time.Millisecond)
	fresh, err := c.commit(ctx, 1, put(1, "k", "v10"))
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("g1/k")
	for i := 1; i <= 3; i++ {
		c.waitValue(i, 1, "k", "v10")
		var res GCResult
		for res.Horizon <= ts[9] {
			if ctx.Err() != nil {
				t.Fatalf("node %d: horizon %d never passed the last old version %d", i, res.Horizon, ts[9])
			}
			if res, err = c.nodes[i-1].CollectVersions(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if res.Horizon >= fresh.TS {
			t.Fatalf("node %d collected at %d, above the version written %v ago at %d", i, res.Horizon, retention, fresh.TS)
		}
		eng := c.engs[i-1]
		// v9 is what reads at the horizon see; v10 is above it.
		if n := countVersions(t, eng, key); n != 2 {
			t.Errorf("node %d: %d versions of %s left; want 2", i, n, key)
		}
		if v, _, err := eng.Get(key, res.Horizon); err != nil || string(v) != "v9" {
			t.Errorf("node %d: read at the horizon = %q, %v; want v9", i, v, err)
		}
		if _, _, err := eng.Get([]byte("g2/d"), tt.MaxTimestamp); !errors.Is(err, kv.ErrNotFound) {
			t.Errorf("node %d: deleted key: %v", i, err)
		}
		if _, _, err := eng.Get([]byte("g2/d"), res.Horizon); !errors.Is(err, kv.ErrNotFound) {
			t.Errorf("node %d: deleted key at the horizon: %v", i, err)
		}
		// Reads below the horizon are refused, through the group too.
		rep, err := c.nodes[i-1].Group(1).Do(ctx, txn.Request{Kind: txn.ReqSnapshotRead, Key: key, TS: ts[5]})
		if err == nil {
			err = rep.Err
		}
		if !errors.Is(err, kv.ErrBelowGCHorizon) {
			t.Errorf("node %d: snapshot read below the horizon: %v", i, err)
		}
		if res.Removed < 11 {
			t.Errorf("node %d: removed %d versions; want at least 11 (v0..v8, and d's value and tombstone)", i, res.Removed)
		}
	}

	// Group 2 has been idle since before the horizon: its strong reads,
	// which would pick its last write's timestamp, pick one above the
	// horizon instead, through the group and on the fast path.
	ld := c.leader(2)
	if ld == nil {
		t.Fatal("group 2 has no leader")
	}
	for i := 0; i < 2; i++ {
		rep, err := ld.Do(ctx, txn.Request{Kind: txn.ReqSnapshotRead, Key: []byte("g2/d"), SingleGroup: true})
		if err == nil {
			err = rep.Err
		}
		if err != nil || len(rep.KVs) != 0 || rep.ReadTS < ld.node.eng.GCHorizon() {
			t.Fatalf("strong read of idle group 2: %v, %d values at %d (horizon %d)", err, len(rep.KVs), rep.ReadTS, ld.node.eng.GCHorizon())
		}
		if kvs, ts, ok, err := ld.StrongRead(txn.ReadTask{Key: []byte("g2/d")}); ok && (err != nil || len(kvs) != 0) {
			t.Fatalf("fast strong read of idle group 2: %v, %d values at %d", err, len(kvs), ts)
		}
	}

	// A follower cut off from the leader stops applying: its safe time,
	// and so its horizon, stay below what it has not applied.
	cut := 0
	for i := 1; i <= 3 && cut == 0; i++ {
		if g := c.nodes[i-1].Group(1); !g.IsLeader() && !c.nodes[i-1].Group(2).IsLeader() {
			cut = i
		}
	}
	if cut == 0 { // two leaders on three nodes leave one
		t.Fatal("every node leads a group")
	}
	c.tr.SetDown(NodeID(cut), true)
	missed, err := c.commit(ctx, 1, put(1, "k", "v11"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(retention + 50*time.Millisecond)
	res, err := c.nodes[cut-1].CollectVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Horizon >= missed.TS {
		t.Fatalf("cut-off node %d collected at %d, at or above the commit at %d it has not applied", cut, res.Horizon, missed.TS)
	}
	c.tr.SetDown(NodeID(cut), false)
	c.waitValue(cut, 1, "k", "v11")
}

// TestScheduledVersionGC: with an interval set, every node collects on its
// own, and stops cleanly, mid-pass or not.
func TestScheduledVersionGC(t *testing.T) {
	c := newTestClusterWith(t, 3, 1, func(cfg *Config) { cfg.VersionRetention, cfg.GCInterval = 200*time.Millisecond, 50*time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := c.commit(ctx, 1, put(1, "k", "v0"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 20; i++ {
		if _, err := c.commit(ctx, 1, put(1, "k", fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		for c.engs[i-1].GCHorizon() <= first.TS {
			if ctx.Err() != nil {
				t.Fatalf("node %d never collected past %d (horizon %d)", i, first.TS, c.engs[i-1].GCHorizon())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, _, err := c.engs[i-1].Get([]byte("g1/k"), first.TS); !errors.Is(err, kv.ErrBelowGCHorizon) {
			t.Errorf("node %d: read at the first version after collection: %v", i, err)
		}
	}
	done := make(chan struct{})
	go func() {
		for i := 1; i <= 3; i++ {
			c.stop(i)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("nodes did not stop within 10 s with version GC scheduled")
	}
}
