package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiandb/meridian/client"
	"github.com/meridiandb/meridian/internal/democluster"
	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/rpc"
	"github.com/meridiandb/meridian/sim"
	"github.com/meridiandb/meridian/tt"
)

type demoFlags struct {
	ntp       string
	epsilon   time.Duration
	noShell   bool
	regions   int
	nodes     int
	matrix    string
	preset    string
	placement string
	lease     time.Duration
	region    string
}

func newDemoCmd() *cobra.Command {
	f := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start an in-process multi-region cluster with simulated WAN latency, tour it, open a shell",
		Long: `demo starts a real Meridian cluster inside this process: by default three
regions × three nodes (us-east1, us-west1, europe-west1, with the round trips
of cockroach demo --global: 66, 64 and 146 ms), Pebble on a temporary
directory, real gRPC on loopback with every connection through the latency
simulator, and one shard per region in the regional placement (its voters in
its home region, a read-only replica in each other region).

It then tours what external consistency costs and what it does not:
a single-region commit, a cross-region commit with its breakdown (prepare
round, Paxos, exposed commit wait), a strong read-only transaction, and a
bounded-stale read of another region's shard served by a local read-only
replica. Then it opens 'meridian shell' on the cluster (--no-shell exits).
Ctrl-C stops it cleanly.

The clock is the system clock with the stated --epsilon unless --ntp names
NTP servers.`,
		Example: `  meridian demo
  meridian demo --no-shell --placement spread
  meridian demo --regions 2 --nodes 1 --latency aws-atlantic`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runDemo(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.ntp, "ntp", "", "comma-separated NTP servers (host:port) to use instead of the system clock")
	fl.DurationVar(&f.epsilon, "epsilon", time.Millisecond, "assumed ε of the system clock when --ntp is not given")
	fl.BoolVar(&f.noShell, "no-shell", false, "exit after the tour instead of opening a shell")
	fl.IntVar(&f.regions, "regions", 3, "number of regions (the first N of the latency matrix)")
	fl.IntVar(&f.nodes, "nodes", 3, "nodes per region")
	fl.StringVar(&f.matrix, "latency-matrix", "", `JSON file with the round trips: {"regions": [...], "rtt_ms": [[...]], "intra_rtt_ms": 0.5}`)
	fl.StringVar(&f.preset, "latency", "global", "latency preset when no --latency-matrix: "+strings.Join(sim.PresetNames(), "; "))
	fl.StringVar(&f.placement, "placement", node.PolicyRegional, "replica placement: regional or spread")
	fl.DurationVar(&f.lease, "lease", 3*time.Second, "leader lease (Spanner's is 10 s; shorter makes failovers quick in a demo)")
	fl.StringVar(&f.region, "client-region", "", "region the tour's client and the shell run in (default the first)")
	return cmd
}

func runDemo(cmd *cobra.Command, f *demoFlags) error {
	out := cmd.OutOrStdout()
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var m sim.Matrix
	var err error
	if f.matrix != "" {
		m, err = sim.LoadMatrix(f.matrix)
	} else {
		m, err = sim.Preset(f.preset)
	}
	if err != nil {
		return err
	}
	if f.regions <= 0 || f.regions > len(m.Regions) {
		return fmt.Errorf("--regions %d: the matrix has %d regions", f.regions, len(m.Regions))
	}
	if f.nodes <= 0 || f.nodes > 9 {
		return errors.New("--nodes must be between 1 and 9")
	}
	m = m.Subset(f.regions)
	clock, closeClock, err := openClock(ctx, f.ntp, time.Second, f.epsilon, 100*time.Millisecond)
	if err != nil {
		return err
	}
	defer closeClock()
	region := f.region
	if region == "" {
		region = m.Regions[0]
	}
	if m.Region(region) < 0 {
		return fmt.Errorf("--client-region %q is not one of %v", region, m.Regions)
	}

	fmt.Fprintf(out, "Meridian demo: %d regions × %d nodes, %s placement, lease %s\n", len(m.Regions), f.nodes, f.placement, f.lease)
	fmt.Fprintf(out, "clock: %s\n", describeClock(clock))
	fmt.Fprintln(out, "latency simulator (round trips):")
	for i := range m.Regions {
		for j := i + 1; j < len(m.Regions); j++ {
			fmt.Fprintf(out, "  %-14s ↔ %-14s %6.1f ms\n", m.Regions[i], m.Regions[j], ms(m.RTT[i][j]))
		}
	}
	fmt.Fprintf(out, "  within a region            %6.1f ms\n", ms(m.IntraRTT))
	fmt.Fprintln(out, "starting the cluster…")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if slog.Default().Enabled(ctx, slog.LevelInfo) {
		logger = slog.Default()
	}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	c, err := democluster.Start(sctx, democluster.Config{Matrix: m, NodesPerRegion: f.nodes, Placement: f.placement,
		Lease: f.lease, Clock: clock, Logger: logger, HTTP: rpc.DebugHandler})
	cancel()
	if err != nil {
		return fmt.Errorf("starting the demo cluster: %w", err)
	}
	defer c.Close()
	printDemoPlacement(out, c)
	cl, err := c.Client(ctx, region)
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := tour(ctx, out, c, cl, region); err != nil {
		return err
	}
	fmt.Fprintf(out, "debug pages: http://%s/debug/txn (the last transactions as a timeline), http://%s/debug/cluster\n",
		c.Nodes[0].HTTPAddr, c.Nodes[0].HTTPAddr)
	if f.noShell {
		return nil
	}
	fmt.Fprintf(out, "\nopening a shell as a client in %s (Ctrl-D or exit to leave, Ctrl-C stops the cluster)\n", region)
	shellDone := make(chan error, 1)
	go func() { shellDone <- runShell(ctx, cl, os.Stdin, out, 10*time.Second) }()
	select {
	case err := <-shellDone:
		return err
	case <-ctx.Done():
		fmt.Fprintln(out, "\nstopping")
		return nil
	}
}

func printDemoPlacement(out io.Writer, c *democluster.Cluster) {
	p := c.Placement()
	region := map[node.NodeID]string{}
	for _, n := range p.Nodes {
		region[n.ID] = n.Region
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tKEYS\tHOME\tVOTERS IN\tREAD-ONLY REPLICAS IN")
	for _, s := range p.Shards {
		var voters, learners []string
		for _, r := range s.Replicas {
			if r.Voter {
				voters = append(voters, region[r.Node])
			} else {
				learners = append(learners, region[r.Node])
			}
		}
		end := "∞"
		if s.End != nil {
			end = fmt.Sprintf("%q", s.End)
		}
		fmt.Fprintf(tw, "%d\t[%q, %s)\t%s\t%s\t%s\n", s.Group, s.Start, end, s.Home, strings.Join(compact(voters), ", "), strings.Join(learners, ", "))
	}
	_ = tw.Flush()
}

// compact folds repeated region names: "us-east1 ×3".
func compact(names []string) []string {
	var out []string
	for i := 0; i < len(names); {
		j := i
		for j < len(names) && names[j] == names[i] {
			j++
		}
		if j-i > 1 {
			out = append(out, fmt.Sprintf("%s ×%d", names[i], j-i))
		} else {
			out = append(out, names[i])
		}
		i = j
	}
	return out
}

// TourResult is what the tour measured; the end-to-end test checks it
// against what the physics demands.
type TourResult struct {
	LocalCommit, CrossCommit, StrongRead, StaleRead, StrongRemoteRead time.Duration
	Cross                                                             client.CommitResult
	Local                                                             client.CommitResult
	LocalShard, RemoteShard                                           node.ShardInfo
	StaleServedBy                                                     node.NodeID
}

// keyIn returns a key inside shard s.
func keyIn(s node.ShardInfo, name string) []byte {
	start := string(s.Start)
	if start == "" {
		start = "a"
	}
	return []byte(start + "/demo/" + name)
}

func tour(ctx context.Context, out io.Writer, c *democluster.Cluster, cl *client.Client, region string) (TourResult, error) {
	var r TourResult
	p := c.Placement()
	found := false
	for _, s := range p.Shards {
		if s.Home == region && !found {
			r.LocalShard, found = s, true
		}
	}
	if !found {
		r.LocalShard = p.Shards[0]
	}
	// The remote shard: the one homed farthest from us.
	far := time.Duration(-1)
	for _, s := range p.Shards {
		if s.Group == r.LocalShard.Group {
			continue
		}
		if d := c.Netem.OneWay(region, s.Home); d > far {
			far, r.RemoteShard = d, s
		}
	}
	if far < 0 {
		return r, errors.New("the tour needs at least two shards (two regions)")
	}
	fmt.Fprintf(out, "\ntour (client in %s; shard %d homed here, shard %d homed in %s)\n", region, r.LocalShard.Group, r.RemoteShard.Group, r.RemoteShard.Home)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tLATENCY\tWHAT HAPPENED")
	row := func(step string, d time.Duration, what string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", step, fmtMs(d), what)
	}
	localKey, remoteKey := keyIn(r.LocalShard, "balance"), keyIn(r.RemoteShard, "balance")
	// Warm up routes and connections (first requests dial through the
	// simulator and learn leaders).
	for _, k := range [][]byte{localKey, remoteKey} {
		if _, err := cl.Apply(ctx, []client.Mutation{client.Put(k, []byte("0"))}); err != nil {
			return r, fmt.Errorf("warming up: %w", err)
		}
	}

	start := time.Now()
	res, err := cl.Apply(ctx, []client.Mutation{client.Put(localKey, []byte("100"))})
	if err != nil {
		return r, fmt.Errorf("single-region commit: %w", err)
	}
	r.LocalCommit, r.Local = time.Since(start), res
	row("1. single-region commit", r.LocalCommit, fmt.Sprintf("shard %d: Paxos %s, exposed commit wait %s, at %s",
		r.LocalShard.Group, fmtMs(res.Paxos), fmtMs(res.CommitWait), tt.Timestamp(res.Timestamp)))

	start = time.Now()
	res, err = cl.ReadWriteTransaction(ctx, func(ctx context.Context, t *client.ReadWriteTransaction) error {
		return t.BufferWrite(client.Put(localKey, []byte("90")), client.Put(remoteKey, []byte("10")))
	})
	if err != nil {
		return r, fmt.Errorf("cross-region commit: %w", err)
	}
	r.CrossCommit, r.Cross = time.Since(start), res
	row("2. cross-region commit", r.CrossCommit, fmt.Sprintf("two-phase commit over shards %d and %d: prepare round %s, commit-record Paxos %s, exposed commit wait %s",
		r.LocalShard.Group, r.RemoteShard.Group, fmtMs(res.Prepare), fmtMs(res.Paxos), fmtMs(res.CommitWait)))

	start = time.Now()
	ro := cl.ReadOnlyTransaction()
	a, err := ro.Get(ctx, localKey)
	if err == nil {
		var b []byte
		b, err = ro.Get(ctx, remoteKey)
		if err == nil && (string(a) != "90" || string(b) != "10") {
			err = fmt.Errorf("read %s and %s, want 90 and 10", a, b)
		}
	}
	if err != nil {
		return r, fmt.Errorf("strong read-only transaction: %w", err)
	}
	r.StrongRead = time.Since(start)
	row("3. strong read-only txn", r.StrongRead, fmt.Sprintf("both shards at one timestamp %s, lock-free: saw the cross-region commit", tt.Timestamp(ro.Timestamp())))

	start = time.Now()
	single := cl.Single()
	if _, err := single.Get(ctx, remoteKey); err != nil {
		return r, fmt.Errorf("strong read: %w", err)
	}
	r.StrongRemoteRead = time.Since(start)
	row(fmt.Sprintf("4. strong read, %s shard", r.RemoteShard.Home), r.StrongRemoteRead, "one round trip to its leader, which reads at the last timestamp it assigned (LastTS)")

	stale := cl.ReadOnlyTransaction().WithTimestampBound(client.MaxStaleness(10 * time.Second))
	// The local read-only replica may need a moment to learn the newest
	// closed timestamp; the bound is 10 s.
	start = time.Now()
	v, err := stale.Get(ctx, remoteKey)
	if err != nil && !errors.Is(err, client.ErrNotFound) {
		return r, fmt.Errorf("bounded-stale read: %w", err)
	}
	r.StaleRead = time.Since(start)
	r.StaleServedBy = node.NodeID(stale.ServedBy())
	servedRegion := "?"
	if n, ok := p.Node(r.StaleServedBy); ok {
		servedRegion = n.Region
	}
	row(fmt.Sprintf("5. stale read (≤10s), %s shard", r.RemoteShard.Home), r.StaleRead,
		fmt.Sprintf("served in %s by its read-only replica at %s (%s old), value %q: no WAN round trip",
			servedRegion, tt.Timestamp(stale.Timestamp()), time.Since(tt.Timestamp(stale.Timestamp()).Time()).Round(time.Millisecond), v))
	if err := tw.Flush(); err != nil {
		return r, err
	}
	rtt := c.Netem.Matrix().RoundTrip(c.Netem.Matrix().Region(region), c.Netem.Matrix().Region(r.RemoteShard.Home))
	fmt.Fprintf(out, "\nthe WAN round trip %s ↔ %s is %s: the cross-region commit pays it for the prepare round;\n", region, r.RemoteShard.Home, fmtMs(rtt))
	fmt.Fprintf(out, "commit wait (2ε) overlaps the commit record's Paxos round and is exposed only where ε exceeds it.\n")
	return r, nil
}

func fmtMs(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
