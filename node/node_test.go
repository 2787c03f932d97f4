package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/tt"
)

// putSM applies "key=value" puts at the entry's timestamp under a prefix.
type putSM struct{ prefix []byte }

func encodePut(k, v string) []byte {
	b := binary.AppendUvarint(nil, uint64(len(k)))
	return append(append(b, k...), v...)
}

func (s putSM) Apply(b *kv.Batch, ents []paxos.Applied) error {
	for _, a := range ents {
		if a.Type != paxos.EntryNormal || a.Skipped {
			continue
		}
		n, k := binary.Uvarint(a.Data)
		if k <= 0 || uint64(len(a.Data)-k) < n {
			return fmt.Errorf("bad command at %d", a.Index)
		}
		key := append(append([]byte(nil), s.prefix...), a.Data[k:k+int(n)]...)
		if err := b.Put(key, a.TS, a.Data[k+int(n):]); err != nil {
			return err
		}
	}
	return nil
}

func (s putSM) Span() ([]byte, []byte) {
	end := append([]byte(nil), s.prefix...)
	end[len(end)-1]++
	return s.prefix, end
}

func (putSM) Restored(paxos.ApplyState) error { return nil }

type testCluster struct {
	t     testing.TB
	tr    *MemTransport
	dirs  []string
	nodes []*Node
	engs  []*kv.Engine
	cfg   GroupConfig
	clock tt.Clock
}

func quietLogger() *slog.Logger {
	if os.Getenv("MERIDIAN_TEST_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newTestCluster(t testing.TB, n int, mod func(*GroupConfig)) *testCluster {
	c := &testCluster{t: t, tr: NewMemTransport(), clock: tt.NewSystem(500 * time.Microsecond)}
	c.cfg = GroupConfig{Group: 1, Nodes: map[paxos.ReplicaID]NodeID{}, Lease: time.Second}
	for i := 1; i <= n; i++ {
		c.cfg.Voters = append(c.cfg.Voters, paxos.ReplicaID(i))
		c.cfg.Nodes[paxos.ReplicaID(i)] = NodeID(i)
	}
	if mod != nil {
		mod(&c.cfg)
	}
	base := t.TempDir()
	for i := 1; i <= n; i++ {
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
	eng, err := kv.Open(c.dirs[i-1], kv.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	nd, err := New(Config{ID: NodeID(i), Engine: eng, Clock: c.clock, Transport: c.tr, Logger: quietLogger()})
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := c.cfg
	cfg.Replica = paxos.ReplicaID(i)
	if _, err := nd.AddGroup(cfg, putSM{prefix: []byte("t/")}); err != nil {
		c.t.Fatal(err)
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

// propose retries at whichever replica leads until the proposal applies.
func (c *testCluster) propose(ctx context.Context, data []byte) (Result, error) {
	for {
		for _, nd := range c.nodes {
			if nd == nil {
				continue
			}
			g := nd.Group(1)
			if !g.IsLeader() {
				continue
			}
			res, err := g.Propose(ctx, data, 0, true)
			if err == nil {
				return res, nil
			}
			if !errors.Is(err, paxos.ErrNotLeader) && !errors.Is(err, paxos.ErrNoLease) &&
				!errors.Is(err, paxos.ErrDropped) && !errors.Is(err, ErrStopped) && !errors.Is(err, ErrBusy) {
				return res, err
			}
		}
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (c *testCluster) waitValue(i int, key, want string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		v, _, err := c.engs[i-1].Get([]byte("t/"+key), tt.MaxTimestamp)
		if err == nil && string(v) == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("node %d never applied %s=%s", i, key, want)
}

func TestGroupReplicatesAndFailsOver(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lastTS tt.Timestamp
	for i := 0; i < 50; i++ {
		res, err := c.propose(ctx, encodePut(fmt.Sprintf("k%d", i%5), fmt.Sprintf("v%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if res.TS <= lastTS {
			t.Fatalf("timestamp %d not above %d", res.TS, lastTS)
		}
		lastTS = res.TS
		// Commit wait: the entry applied only once its timestamp passed.
		if iv, _ := c.clock.Now(); !iv.After(res.TS) {
			t.Fatalf("applied before TT.after(%d): now %v", res.TS, iv)
		}
	}
	for i := 1; i <= 3; i++ {
		c.waitValue(i, "k4", "v49")
	}
	// Stop the leader; the others elect a new one and keep going.
	var leader int
	for i, nd := range c.nodes {
		if nd.Group(1).IsLeader() {
			leader = i + 1
		}
	}
	c.stop(leader)
	if _, err := c.propose(ctx, encodePut("k0", "after-failover")); err != nil {
		t.Fatal(err)
	}
	// Restart the old leader from Pebble alone: it catches up.
	c.start(leader)
	c.waitValue(leader, "k0", "after-failover")
	if _, err := c.propose(ctx, encodePut("k1", "after-restart")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		c.waitValue(i, "k1", "after-restart")
	}
}

func TestGroupSnapshotCatchUp(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *GroupConfig) { cfg.CompactAfter, cfg.CompactKeep = 20, 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.propose(ctx, encodePut("a", "0")); err != nil {
		t.Fatal(err)
	}
	// A follower goes away while the log moves far past what is kept.
	follower := 0
	for i, nd := range c.nodes {
		if !nd.Group(1).IsLeader() {
			follower = i + 1
			break
		}
	}
	c.stop(follower)
	for i := 0; i < 100; i++ {
		if _, err := c.propose(ctx, encodePut(fmt.Sprintf("k%d", i), "x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.propose(ctx, encodePut("a", "last")); err != nil {
		t.Fatal(err)
	}
	c.start(follower)
	c.waitValue(follower, "a", "last")
	c.waitValue(follower, "k0", "x")
	if first := c.nodes[follower-1].Group(1).Status().First; first <= 1 {
		t.Errorf("follower log starts at %d: it replayed instead of installing a snapshot", first)
	}
}

// BenchmarkGroupPropose: a 3-replica group in one process on real Pebble
// (synced, batched), with 1 and 64 concurrent proposers; reports
// proposals/s and p50/p99 latency. commitwait=true adds the wait out of the
// clock's uncertainty (2ε = 1 ms here) that transactions pay.
func BenchmarkGroupPropose(b *testing.B) {
	for _, bc := range []struct {
		proposers int
		wait      bool
	}{{1, false}, {64, false}, {1, true}, {64, true}} {
		proposers := bc.proposers
		b.Run(fmt.Sprintf("proposers=%d/commitwait=%v", proposers, bc.wait), func(b *testing.B) {
			c := newTestCluster(b, 3, func(cfg *GroupConfig) { cfg.Lease = 5 * time.Second })
			ctx := context.Background()
			if _, err := c.propose(ctx, encodePut("warm", "up")); err != nil {
				b.Fatal(err)
			}
			var leader *Group
			for _, nd := range c.nodes {
				if nd.Group(1).IsLeader() {
					leader = nd.Group(1)
				}
			}
			value := make([]byte, 100)
			var mu sync.Mutex
			lat := make([]time.Duration, 0, b.N)
			var wg sync.WaitGroup
			per := (b.N + proposers - 1) / proposers
			b.ResetTimer()
			start := time.Now()
			for p := 0; p < proposers; p++ {
				wg.Add(1)
				go func(p int) {
					defer wg.Done()
					local := make([]time.Duration, 0, per)
					for i := 0; i < per; i++ {
						t0 := time.Now()
						if _, err := leader.Propose(ctx, encodePut(fmt.Sprintf("k%d-%d", p, i), string(value)), 0, bc.wait); err != nil {
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
				b.ReportMetric(float64(len(lat))/el.Seconds(), "proposals/s")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(leader.syncs.Load()), "leader-fsyncs")
			}
		})
	}
}
