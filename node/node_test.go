package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/meridiandb/meridian/internal/chronytest"
	"github.com/meridiandb/meridian/internal/txnid"
	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/txn"
)

func quietLogger() *slog.Logger {
	if os.Getenv("MERIDIAN_TEST_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testCluster runs nodes in one process over MemTransport, each on its own
// Pebble directory; groups[g] lists the replicas of group g by node.
type testCluster struct {
	t      testing.TB
	tr     *MemTransport
	dirs   []string
	nodes  []*Node
	engs   []*kv.Engine
	groups []GroupConfig
	clock  tt.Clock
	// fs, when set, gives node i's engine its filesystem.
	fs func(i int) vfs.FS
	// node, when set, adjusts each node's configuration.
	node func(*Config)
}

func newTestCluster(t testing.TB, nodes, groups int, mod func(*GroupConfig)) *testCluster {
	return newTestClusterClock(t, tt.NewSystem(500*time.Microsecond), nodes, groups, mod)
}

func newTestClusterClock(t testing.TB, clock tt.Clock, nodes, groups int, mod func(*GroupConfig)) *testCluster {
	return newTestClusterFS(t, clock, nodes, groups, mod, nil)
}

// newTestClusterWith is newTestCluster with each node's Config adjusted.
func newTestClusterWith(t testing.TB, nodes, groups int, node func(*Config)) *testCluster {
	return newTestClusterOpts(t, tt.NewSystem(500*time.Microsecond), nodes, groups, nil, nil, node)
}

func newTestClusterFS(t testing.TB, clock tt.Clock, nodes, groups int, mod func(*GroupConfig), fs func(i int) vfs.FS) *testCluster {
	return newTestClusterOpts(t, clock, nodes, groups, mod, fs, nil)
}

func newTestClusterOpts(t testing.TB, clock tt.Clock, nodes, groups int, mod func(*GroupConfig), fs func(i int) vfs.FS, node func(*Config)) *testCluster {
	c := &testCluster{t: t, tr: NewMemTransport(), clock: clock, fs: fs, node: node}
	for g := 1; g <= groups; g++ {
		cfg := GroupConfig{Group: uint64(g), Nodes: map[paxos.ReplicaID]NodeID{}, Lease: time.Second,
			Start: []byte(fmt.Sprintf("g%d/", g)), End: []byte(fmt.Sprintf("g%d0", g))}
		for i := 1; i <= nodes; i++ {
			cfg.Voters = append(cfg.Voters, paxos.ReplicaID(i))
			cfg.Nodes[paxos.ReplicaID(i)] = NodeID(i)
		}
		if mod != nil {
			mod(&cfg)
		}
		c.groups = append(c.groups, cfg)
	}
	base := t.TempDir()
	for i := 1; i <= nodes; i++ {
		c.dirs = append(c.dirs, filepath.Join(base, fmt.Sprintf("n%d", i)))
		c.nodes = append(c.nodes, nil)
		c.engs = append(c.engs, nil)
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i + 1)
		}
	})
	return c
}

func (c *testCluster) start(i int) {
	var opts kv.Options
	if c.fs != nil {
		opts.FS = c.fs(i)
	}
	eng, err := kv.Open(c.dirs[i-1], opts)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := Config{ID: NodeID(i), Engine: eng, Clock: c.clock, Transport: c.tr, Logger: quietLogger()}
	if c.node != nil {
		c.node(&cfg)
	}
	nd, err := New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, cfg := range c.groups {
		cfg.Replica = paxos.ReplicaID(i)
		if _, err := nd.AddGroup(cfg); err != nil {
			c.t.Fatal(err)
		}
	}
	c.tr.Register(NodeID(i), nd)
	c.nodes[i-1], c.engs[i-1] = nd, eng
}

func (c *testCluster) stop(i int) {
	if c.nodes[i-1] == nil {
		return
	}
	c.tr.Unregister(NodeID(i))
	c.nodes[i-1].Stop()
	if err := c.engs[i-1].Close(); err != nil {
		c.t.Errorf("close engine %d: %v", i, err)
	}
	c.nodes[i-1], c.engs[i-1] = nil, nil
}

func (c *testCluster) leader(group uint64) *Group {
	for _, nd := range c.nodes {
		if nd == nil {
			continue
		}
		if g := nd.Group(group); g != nil && g.IsLeader() {
			return g
		}
	}
	return nil
}

// commit runs a blind-write transaction, retrying at whichever replica
// leads until it commits.
func (c *testCluster) commit(ctx context.Context, coord uint64, parts ...txn.Participant) (Reply, error) {
	meta := txn.Meta{ID: newTxnID()}
	for {
		if g := c.leader(coord); g != nil {
			rep, err := g.Do(ctx, txn.Request{Kind: txn.ReqCommit, Txn: meta, Participants: parts})
			if err == nil && rep.Err == nil {
				return rep, nil
			}
			if err == nil {
				err = rep.Err
			}
			if !errors.Is(err, txn.ErrNotLeader) && !errors.Is(err, ErrStopped) && !errors.Is(err, ErrBusy) {
				return rep, err
			}
		}
		select {
		case <-ctx.Done():
			return Reply{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func put(group uint64, key, value string) txn.Participant {
	return txn.Participant{Group: group, Writes: []txn.Mutation{{Key: []byte(fmt.Sprintf("g%d/%s", group, key)), Value: []byte(value)}}}
}

func (c *testCluster) waitValue(i int, group uint64, key, want string) {
	deadline := time.Now().Add(10 * time.Second)
	k := []byte(fmt.Sprintf("g%d/%s", group, key))
	for time.Now().Before(deadline) {
		v, _, err := c.engs[i-1].Get(k, tt.MaxTimestamp)
		if err == nil && string(v) == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("node %d never applied %s=%s", i, k, want)
}

func TestGroupCommitsAndFailsOver(t *testing.T) {
	c := newTestCluster(t, 3, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lastTS tt.Timestamp
	for i := 0; i < 30; i++ {
		rep, err := c.commit(ctx, 1, put(1, fmt.Sprintf("k%d", i%5), fmt.Sprintf("v%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if rep.TS <= lastTS {
			t.Fatalf("timestamp %d not above %d", rep.TS, lastTS)
		}
		lastTS = rep.TS
		// Commit wait: the answer came only once the timestamp passed.
		if iv, _ := c.clock.Now(); !iv.After(rep.TS) {
			t.Fatalf("answered before TT.after(%d): now %v", rep.TS, iv)
		}
	}
	for i := 1; i <= 3; i++ {
		c.waitValue(i, 1, "k4", "v29")
	}
	old := c.leader(1)
	leaderNode := int(old.node.ID())
	c.stop(leaderNode)
	if _, err := c.commit(ctx, 1, put(1, "k0", "after-failover")); err != nil {
		t.Fatal(err)
	}
	c.start(leaderNode)
	c.waitValue(leaderNode, 1, "k0", "after-failover")
	if _, err := c.commit(ctx, 1, put(1, "k1", "after-restart")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		c.waitValue(i, 1, "k1", "after-restart")
	}
}

// catchUpAfterAbsence stops a follower of group 1, commits 62 writes
// without it, restarts it and waits until it has them all.
func catchUpAfterAbsence(ctx context.Context, t *testing.T, c *testCluster) {
	t.Helper()
	if _, err := c.commit(ctx, 1, put(1, "a", "0")); err != nil {
		t.Fatal(err)
	}
	follower := 0
	for i, nd := range c.nodes {
		if !nd.Group(1).IsLeader() {
			follower = i + 1
			break
		}
	}
	c.stop(follower)
	for i := 0; i < 60; i++ {
		if _, err := c.commit(ctx, 1, put(1, fmt.Sprintf("k%d", i), "x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.commit(ctx, 1, put(1, "a", "last")); err != nil {
		t.Fatal(err)
	}
	c.start(follower)
	c.waitValue(follower, 1, "a", "last")
	c.waitValue(follower, 1, "k0", "x")
}

// A follower away for longer than the leader keeps the log for (here: a
// log bound of one byte) catches up by snapshot.
func TestGroupSnapshotCatchUp(t *testing.T) {
	c := newTestCluster(t, 3, 1, func(cfg *GroupConfig) { cfg.CompactAfter, cfg.CompactKeep, cfg.MaxLogBytes = 20, 5, 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	catchUpAfterAbsence(ctx, t, c)
	if c.tr.Snapshots() == 0 {
		t.Fatal("no snapshot was sent: the follower replayed the log the leader should have truncated")
	}
}

// A follower away briefly catches up from the leader's log, not by a
// snapshot: the leader keeps what a replica heard from within LogKeepFor
// still needs, however far CompactAfter would truncate.
func TestGroupCatchUpFromLog(t *testing.T) {
	c := newTestCluster(t, 3, 1, func(cfg *GroupConfig) { cfg.CompactAfter, cfg.CompactKeep = 20, 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	catchUpAfterAbsence(ctx, t, c)
	if n := c.tr.Snapshots(); n != 0 {
		t.Fatalf("%d snapshots sent to a follower away for 62 commits", n)
	}
	// The leader truncates once the follower has caught up.
	l := c.leader(1)
	for i := 0; i < 30; i++ {
		if _, err := c.commit(ctx, 1, put(1, fmt.Sprintf("m%d", i), "y")); err != nil {
			t.Fatal(err)
		}
	}
	if first := l.Status().Paxos.First; first <= 1 {
		t.Errorf("the leader's log still starts at %d after the follower caught up", first)
	}
}

func TestTwoPhaseCommitAcrossGroups(t *testing.T) {
	c := newTestCluster(t, 3, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := c.commit(ctx, 1, put(1, "x", "1"), put(2, "y", "2"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		c.waitValue(i, 1, "x", "1")
		c.waitValue(i, 2, "y", "2")
		for _, k := range [][]byte{[]byte("g1/x"), []byte("g2/y")} {
			_, ts, err := c.engs[i-1].Get(k, tt.MaxTimestamp)
			if err != nil || ts != rep.TS {
				t.Fatalf("node %d: %s at %d (err %v), want the commit timestamp %d", i, k, ts, err, rep.TS)
			}
		}
	}
}

// BenchmarkGroupCommit: single-group transactions (one blind write) through
// the whole write path (locks, Paxos on real Pebble with synced, batched
// writes, apply, commit wait) on a 3-replica group in one process, with 1
// and 64 concurrent clients; reports commits/s and p50/p99 latency. The
// clock is NTP against a chronyd on loopback (polled every second, as
// `meridian start` does), so commit wait is what a node pays.
func BenchmarkGroupCommit(b *testing.B) {
	addr := chronytest.Start(b)
	clock, err := tt.NewNTP(tt.NTPConfig{Servers: []string{addr}, PollInterval: time.Second, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	if err := clock.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	clock.Start()
	defer clock.Close()
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			c := newTestClusterClock(b, clock, 3, 1, func(cfg *GroupConfig) { cfg.Lease = 5 * time.Second })
			ctx := context.Background()
			if _, err := c.commit(ctx, 1, put(1, "warm", "up")); err != nil {
				b.Fatal(err)
			}
			leader := c.leader(1)
			value := string(make([]byte, 100))
			var mu sync.Mutex
			lat := make([]time.Duration, 0, b.N)
			var wg sync.WaitGroup
			per := (b.N + clients - 1) / clients
			b.ResetTimer()
			start := time.Now()
			for p := 0; p < clients; p++ {
				wg.Add(1)
				go func(p int) {
					defer wg.Done()
					local := make([]time.Duration, 0, per)
					for i := 0; i < per; i++ {
						t0 := time.Now()
						rep, err := leader.Do(ctx, txn.Request{Kind: txn.ReqCommit, Txn: txn.Meta{ID: newTxnID()},
							Participants: []txn.Participant{put(1, fmt.Sprintf("k%d-%d", p, i), value)}})
						if err == nil {
							err = rep.Err
						}
						if err != nil {
							b.Error(err)
							return
						}
						local = append(local, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, local...)
					mu.Unlock()
				}(p)
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			if len(lat) > 0 {
				b.ReportMetric(float64(len(lat))/el.Seconds(), "commits/s")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(leader.syncs.Load())/float64(len(lat)), "fsyncs/commit")
				if iv, err := clock.Now(); err == nil {
					b.ReportMetric(float64(iv.Latest.Sub(iv.Earliest).Microseconds())/2, "eps-us")
				}
			}
		})
	}
}

// A leader serves single-group strong reads from the state it publishes
// after each Ready, without entering its loop: every acknowledged commit is
// visible to a read that starts after the acknowledgement, followers never
// serve that way, and a draining leader stops at once.
func TestStrongReadFastPath(t *testing.T) {
	c := newTestCluster(t, 3, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := []byte("g1/fast")
	fast := 0
	for i := 0; i < 50; i++ {
		want := fmt.Sprintf("v%d", i)
		rep, err := c.commit(ctx, 1, put(1, "fast", want))
		if err != nil {
			t.Fatal(err)
		}
		l := c.leader(1)
		if l == nil {
			continue
		}
		kvs, ts, ok, err := l.StrongRead(txn.ReadTask{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue // e.g. the lease is being renewed; the slow path serves
		}
		fast++
		if ts < rep.TS || len(kvs) != 1 || string(kvs[0].Value) != want {
			t.Fatalf("read after commit %d at %d: ts %d, %v", i, rep.TS, ts, kvs)
		}
	}
	if fast < 40 {
		t.Fatalf("only %d of 50 reads took the fast path", fast)
	}
	l := c.leader(1)
	for _, nd := range c.nodes {
		if g := nd.Group(1); g != l {
			if _, _, ok, _ := g.StrongRead(txn.ReadTask{Key: key}); ok {
				t.Fatalf("follower on node %d served a fast strong read", nd.id)
			}
		}
	}
	l.node.Drain(ctx)
	if _, _, ok, _ := l.StrongRead(txn.ReadTask{Key: key}); ok {
		t.Fatal("a drained leader served a fast strong read")
	}
}

// newTxnID draws a fresh transaction ID as a client would.
func newTxnID() txn.TxnID {
	id, _ := txn.TxnIDFromBytes(txnid.New()) // 16 bytes: never an error
	return id
}

// walSyncs matches fsyncs of WAL files.
type walSyncs struct{}

func (walSyncs) String() string { return "walSyncs" }
func (walSyncs) Evaluate(op errorfs.Op) bool {
	if filepath.Ext(op.Path) != ".log" {
		return false
	}
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		return true
	}
	return false
}

// A leader whose fsync fails stops its group: the commits waiting on it
// fail instead of hanging, nothing it could not make durable is
// acknowledged, and the other replicas elect a leader and go on.
func TestGroupStopsOnSyncFailure(t *testing.T) {
	toggles := map[int]*errorfs.Toggle{}
	c := newTestClusterFS(t, tt.NewSystem(500*time.Microsecond), 3, 1, nil, func(i int) vfs.FS {
		toggles[i] = &errorfs.Toggle{Injector: errorfs.ErrInjected.If(walSyncs{})}
		return errorfs.Wrap(vfs.Default, toggles[i])
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.commit(ctx, 1, put(1, "a", "1")); err != nil {
		t.Fatal(err)
	}
	l := c.leader(1)
	bad := int(l.node.ID())
	toggles[bad].On()
	// Commits at the failing leader end with an error, never an
	// acknowledgement and never a hang.
	var acked []string
	for i := 0; i < 20 && !l.stopped.Load(); i++ {
		v := fmt.Sprint(i)
		rep, err := l.Do(ctx, txn.Request{Kind: txn.ReqCommit, Txn: txn.Meta{ID: newTxnID()},
			Participants: []txn.Participant{put(1, "b", v)}})
		if err == nil && rep.Err == nil {
			acked = append(acked, v) // in flight before the failure was seen
		}
	}
	if !l.stopped.Load() {
		t.Fatal("the group kept running on a failed engine")
	}
	t.Logf("%d commits acknowledged while the failure was being noticed", len(acked))
	if ctx.Err() != nil {
		t.Fatal("requests to the failed group hung")
	}
	// The failed node leaves; the others elect a leader and commit, and
	// what was acknowledged survived.
	c.tr.Unregister(NodeID(bad))
	c.nodes[bad-1].Stop()
	_ = c.engs[bad-1].Close() // reports the failure
	c.nodes[bad-1], c.engs[bad-1] = nil, nil
	if _, err := c.commit(ctx, 1, put(1, "c", "after")); err != nil {
		t.Fatalf("after the leader's engine failed: %v", err)
	}
	for i := 1; i <= 3; i++ {
		if i == bad {
			continue
		}
		c.waitValue(i, 1, "c", "after")
		if len(acked) > 0 {
			c.waitValue(i, 1, "b", acked[len(acked)-1])
		}
	}
}

// TestSubmitAnsweredAcrossStop: requests submitted while a node stops are
// each answered exactly once (committed, or failed with ErrStopped, or
// refused with ErrBusy), and after the stop at once with ErrStopped.
func TestSubmitAnsweredAcrossStop(t *testing.T) {
	c := newTestCluster(t, 3, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.commit(ctx, 1, put(1, "g1/warm", "x")); err != nil {
		t.Fatal(err)
	}
	g := c.leader(1)
	var answered, submitted atomic.Int64
	var twice, stopped atomic.Bool
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stopped.Load(); i++ {
				var once atomic.Bool
				submitted.Add(1)
				g.Submit(txn.Request{Kind: txn.ReqCommit, Txn: txn.Meta{ID: newTxnID()},
					Participants: []txn.Participant{put(1, fmt.Sprintf("g1/k%d-%d", w, i), "v")}}, func(Reply) {
					if once.Swap(true) {
						twice.Store(true)
					}
					answered.Add(1)
				})
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	for i, nd := range c.nodes {
		if nd != nil && nd.Group(1) == g {
			c.stop(i + 1)
		}
	}
	stopped.Store(true)
	wg.Wait()
	if twice.Load() {
		t.Fatal("a request was answered twice")
	}
	if a, s := answered.Load(), submitted.Load(); a != s {
		t.Fatalf("%d of %d submitted requests answered", a, s)
	}
	var got error
	g.Submit(txn.Request{Kind: txn.ReqRollback, Txn: txn.Meta{ID: newTxnID()}}, func(r Reply) { got = r.Err })
	if !errors.Is(got, ErrStopped) {
		t.Fatalf("submit after stop: %v, want ErrStopped at once", got)
	}
}
