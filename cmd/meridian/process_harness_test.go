package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meridiandb/meridian/client"
	"github.com/meridiandb/meridian/internal/proctest"
	"github.com/meridiandb/meridian/internal/syncbuf"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/sim"
	"github.com/meridiandb/meridian/tt"
)

// A cluster of real `meridian start` processes for the fault tests: start,
// kill -9, SIGSTOP/SIGCONT and restart nodes, read their status, and run
// workloads whose history the simulator's checker (sim.CheckTxns) judges,
// with the system clock as true time (the nodes' NTP servers serve it,
// shifted only by the faults the tests inject).

// pnode is one node process.
type pnode struct {
	i                 int
	region, addr, dir string
	args              []string // flags beyond the common ones
	cmd               *exec.Cmd
	log               *syncbuf.Buffer
	conn              *grpc.ClientConn
}

func (p *pnode) start(t testing.TB, bin, join string) {
	t.Helper()
	args := []string{"start", "--insecure", "--region", p.region, "--listen", p.addr, "--data-dir", p.dir, "--log-level", "info"}
	args = append(args, p.args...)
	if join != "" {
		args = append(args, "--join", join)
	}
	p.cmd = exec.Command(bin, args...)
	if p.log == nil {
		p.log = &syncbuf.Buffer{}
	}
	fmt.Fprintf(p.log, "=== %s start %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args[1:], " "))
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (p *pnode) signal(sig syscall.Signal) {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

func (p *pnode) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies too
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_, _ = p.cmd.Process.Wait()
	}
	p.cmd = nil
}

func (p *pnode) admin(t testing.TB) meridianpb.AdminClient {
	if p.conn == nil {
		c, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		p.conn = c
	}
	return meridianpb.NewAdminClient(p.conn)
}

func (p *pnode) api(t testing.TB) meridianpb.MeridianClient {
	p.admin(t)
	return meridianpb.NewMeridianClient(p.conn)
}

func (p *pnode) status(t testing.TB) (*meridianpb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return p.admin(t).Status(ctx, &meridianpb.StatusRequest{})
}

// pcluster is a cluster of node processes, one per region.
type pcluster struct {
	t     testing.TB
	bin   string
	nodes []*pnode
	lease time.Duration
}

var processRegions = []string{"us-east1", "us-west1", "europe-west1", "asia-east1", "europe-north1"}

// startProcessCluster starts n nodes (node i with the flags args(i)),
// initializes a spread placement with 3 voters per shard and the given
// lease, and waits until every shard has a leader.
func startProcessCluster(t testing.TB, n int, lease time.Duration, args func(i int) []string) *pcluster {
	t.Helper()
	c := &pcluster{t: t, bin: proctest.Binary(t), lease: lease}
	base := t.TempDir()
	for i := 0; i < n; i++ {
		p := &pnode{i: i, region: processRegions[i], addr: freePort(t), dir: filepath.Join(base, fmt.Sprintf("n%d", i))}
		if args != nil {
			p.args = args(i)
		}
		c.nodes = append(c.nodes, p)
	}
	t.Cleanup(func() {
		for _, p := range c.nodes {
			p.kill()
			if p.conn != nil {
				_ = p.conn.Close()
			}
		}
		if t.Failed() {
			for _, p := range c.nodes {
				t.Logf("node %d (%s) log:\n%s", p.i, p.addr, tail(p.log.String(), 150))
			}
		}
		// MERIDIAN_PROCESS_LOGS=dir keeps every node's whole log there.
		if dir := os.Getenv("MERIDIAN_PROCESS_LOGS"); dir != "" {
			for _, p := range c.nodes {
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-node%d.log", strings.ReplaceAll(t.Name(), "/", "_"), p.i)), []byte(p.log.String()), 0o644)
			}
		}
	})
	for i, p := range c.nodes {
		join := ""
		if i > 0 {
			join = c.nodes[0].addr
		}
		p.start(t, c.bin, join)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command(c.bin, "init", "--insecure", "--host", c.nodes[0].addr, "--policy", "spread", "--replicas", "3",
			"--lease", lease.String()).CombinedOutput()
		if err == nil && bytes.Contains(out, []byte(fmt.Sprintf("%d nodes", n))) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("init: %v\n%s", err, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	c.waitLeaders(30 * time.Second)
	return c
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// leaders returns, for every group, the node index that reports leading it
// with its lease still valid, and whether every group has one.
func (c *pcluster) leaders() (map[uint64]int, bool) {
	out := map[uint64]int{}
	groups := map[uint64]bool{}
	for i, p := range c.nodes {
		if p.cmd == nil {
			continue
		}
		st, err := p.status(c.t)
		if err != nil {
			continue
		}
		for _, g := range st.Groups {
			groups[g.Group] = true
			if g.Role == "leader" && g.LeaseEndNs > st.Clock.LatestNs && st.Clock.Healthy {
				out[g.Group] = i
			}
		}
	}
	return out, len(groups) > 0 && len(out) == len(groups)
}

func (c *pcluster) waitLeaders(within time.Duration) map[uint64]int {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		l, ok := c.leaders()
		if ok {
			return l
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("not every group has a leader after %s: %v", within, l)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *pcluster) addrs() []string {
	var out []string
	for _, p := range c.nodes {
		out = append(out, p.addr)
	}
	return out
}

func (c *pcluster) client(ctx context.Context) *client.Client {
	c.t.Helper()
	cl, err := client.New(ctx, client.Config{Addrs: c.addrs(), Insecure: true})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// history collects what the workloads did, for sim.CheckTxns.
type history struct {
	mu   sync.Mutex
	recs []sim.TxnRecord
	seq  atomic.Int64
	// counts by outcome, for the log
	committed, unknown, failed, reads atomic.Int64
}

func (h *history) add(r sim.TxnRecord) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
}

func (h *history) value(prefix string) string { return fmt.Sprintf("%s%d", prefix, h.seq.Add(1)) }

func (h *history) check(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	recs := append([]sim.TxnRecord(nil), h.recs...)
	h.mu.Unlock()
	vs := sim.CheckTxns(recs)
	t.Logf("history: %d records (%d commits, %d unknown, %d failed attempts, %d reads); %d violations",
		len(recs), h.committed.Load(), h.unknown.Load(), h.failed.Load(), h.reads.Load(), len(vs))
	for _, v := range vs {
		t.Error(v)
	}
}

func nowTS() tt.Timestamp { return tt.FromTime(time.Now()) }

// workload runs writers and readers against the cluster until stop closes:
// single-key and two-key blind writes through the client library, and
// strong single-key reads sent to a node picked at random (a follower
// serves them at its TT.now().latest, a leader at its last timestamp),
// plus two-key strong read-only transactions.
type workload struct {
	c    *pcluster
	cl   *client.Client
	h    *history
	keys [][]byte
	// ok counts successful operations per group (writes) and reads.
	okWrites sync.Map // group → *atomic.Int64
}

func newWorkload(ctx context.Context, c *pcluster) *workload {
	w := &workload{c: c, cl: c.client(ctx), h: &history{}}
	for _, p := range []string{"b", "h", "n", "t", "x"} {
		for i := 0; i < 2; i++ {
			w.keys = append(w.keys, []byte(fmt.Sprintf("%s/reg%d", p, i)))
		}
	}
	return w
}

func (w *workload) writes(g uint64) int64 {
	v, _ := w.okWrites.LoadOrStore(g, &atomic.Int64{})
	return v.(*atomic.Int64).Load()
}

func (w *workload) run(ctx context.Context, writers, readers int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for ctx.Err() == nil {
				w.write(ctx, rng)
			}
		}(uint64(i))
	}
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 2))
			for ctx.Err() == nil {
				if rng.IntN(4) == 0 {
					w.readPair(ctx, rng)
				} else {
					w.readOne(ctx, rng)
				}
			}
		}(uint64(100 + i))
	}
	return &wg
}

func (w *workload) write(ctx context.Context, rng *rand.Rand) {
	keys := [][]byte{w.keys[rng.IntN(len(w.keys))]}
	if rng.IntN(3) == 0 {
		if k := w.keys[rng.IntN(len(w.keys))]; !bytes.Equal(k, keys[0]) {
			keys = append(keys, k)
		}
	}
	rec := sim.TxnRecord{ID: w.h.value("w"), Kind: sim.ReadWrite}
	var ms []client.Mutation
	for _, k := range keys {
		v := w.h.value("v")
		rec.Writes = append(rec.Writes, sim.WriteOp{Key: string(k), Value: v})
		ms = append(ms, client.Put(k, []byte(v)))
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rec.Invoke = nowTS()
	res, err := w.cl.ReadWriteTransaction(tctx, func(ctx context.Context, t *client.ReadWriteTransaction) error {
		return t.BufferWrite(ms...)
	})
	rec.Complete = nowTS()
	switch {
	case err == nil:
		rec.Committed, rec.TS = true, tt.Timestamp(res.Timestamp)
		w.h.committed.Add(1)
		p := w.cl.Placement()
		for _, k := range keys {
			v, _ := w.okWrites.LoadOrStore(groupOf(p, k), &atomic.Int64{})
			v.(*atomic.Int64).Add(1)
		}
	case errors.Is(err, client.ErrCommitUnknown) || ctx.Err() != nil:
		rec.Unknown, rec.Complete = true, 0
		w.h.unknown.Add(1)
	default:
		// Definitely not committed (aborted after retries, refused).
		w.h.failed.Add(1)
		time.Sleep(10 * time.Millisecond)
	}
	w.h.add(rec)
}

// readOne sends a strong single-key read to a node picked at random.
func (w *workload) readOne(ctx context.Context, rng *rand.Rand) {
	k := w.keys[rng.IntN(len(w.keys))]
	p := w.c.nodes[rng.IntN(len(w.c.nodes))]
	if p.cmd == nil {
		return
	}
	g := groupOf(w.cl.Placement(), k)
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rec := sim.TxnRecord{ID: w.h.value("r"), Kind: sim.ReadOnly, Invoke: nowTS()}
	resp, err := p.api(w.c.t).SnapshotRead(rctx, &meridianpb.SnapshotReadRequest{Group: g, Span: &meridianpb.KeySpan{Key: k}, Strong: true, SingleGroup: true})
	if err != nil {
		time.Sleep(5 * time.Millisecond)
		return // an RO that failed read nothing
	}
	rec.Complete, rec.Committed, rec.TS = nowTS(), true, tt.Timestamp(resp.ReadTs)
	obs := sim.ReadObs{Key: string(k)}
	if len(resp.Kvs) > 0 {
		obs.Found, obs.Value = true, string(resp.Kvs[0].Value)
	}
	rec.Reads = []sim.ReadObs{obs}
	w.h.reads.Add(1)
	w.h.add(rec)
}

// readPair reads two keys of different groups in one strong read-only
// transaction through the client library.
func (w *workload) readPair(ctx context.Context, rng *rand.Rand) {
	a, b := w.keys[rng.IntN(len(w.keys))], w.keys[rng.IntN(len(w.keys))]
	if bytes.Equal(a, b) {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	rec := sim.TxnRecord{ID: w.h.value("r"), Kind: sim.ReadOnly, Invoke: nowTS()}
	ro := w.cl.ReadOnlyTransaction()
	kvs, err := ro.Read(rctx, a, b)
	if err != nil {
		time.Sleep(5 * time.Millisecond)
		return
	}
	rec.Complete, rec.Committed, rec.TS = nowTS(), true, tt.Timestamp(ro.Timestamp())
	found := map[string]string{}
	for _, kv := range kvs {
		found[string(kv.Key)] = string(kv.Value)
	}
	for _, k := range [][]byte{a, b} {
		v, ok := found[string(k)]
		rec.Reads = append(rec.Reads, sim.ReadObs{Key: string(k), Found: ok, Value: v})
	}
	w.h.reads.Add(1)
	w.h.add(rec)
}

// waitCaughtUp waits until node i has applied, in every group it hosts,
// all but a few entries of what the group's leader has applied.
func (c *pcluster) waitCaughtUp(i int, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		leaders, _ := c.leaders()
		behind := false
		st, err := c.nodes[i].status(c.t)
		if err != nil {
			behind = true
		} else {
			for _, g := range st.Groups {
				l, ok := leaders[g.Group]
				if !ok {
					behind = true
					continue
				}
				lst, err := c.nodes[l].status(c.t)
				if err != nil {
					behind = true
					continue
				}
				for _, lg := range lst.Groups {
					if lg.Group == g.Group && g.AppliedIndex+50 < lg.AppliedIndex {
						behind = true
					}
				}
			}
		}
		if !behind {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node %d not caught up within %s", i, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// groupsLedBy returns the groups node i leads (as it reports).
func (c *pcluster) groupsLedBy(i int) []uint64 {
	st, err := c.nodes[i].status(c.t)
	if err != nil {
		return nil
	}
	var gs []uint64
	for _, g := range st.Groups {
		if g.Role == "leader" {
			gs = append(gs, g.Group)
		}
	}
	sort.Slice(gs, func(a, b int) bool { return gs[a] < gs[b] })
	return gs
}
