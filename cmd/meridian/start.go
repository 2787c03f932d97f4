package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/rpc"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/sim"
	"github.com/meridiandb/meridian/tt"
)

type startFlags struct {
	region    string
	listen    string
	advertise string
	join      string
	dataDir   string
	insecure  bool
	certsDir  string
	ntp       string
	epsilon   time.Duration
	maxEps    time.Duration
	ntpPoll   time.Duration
	drain     time.Duration
	http      string
	retention time.Duration
	gcEvery   time.Duration
	netem     string
	bug       string
}

// testingBugs are the deliberate protocol bugs `start --testing-bug`
// switches on, so that a fault suite run against them shows its checkers
// catch what the simulator's negative controls catch.
var testingBugs = []string{"no-commit-wait", "own-clock-apply"}

func newStartCmd() *cobra.Command {
	f := &startFlags{}
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Start a node: join the cluster, host the replicas the placement gives it, serve clients",
		Long: `start runs a Meridian node until it is interrupted. The node keeps its data
(its identity, the placement, every replica's Paxos log and MVCC data) in
--data-dir and restarts from it alone. It introduces itself to the --join
addresses, learns the other nodes and, once 'meridian init' has run, the
placement, and starts the replicas placed on it.

On SIGINT or SIGTERM it drains: its leaders wait out the timestamps they
assigned, release their lease votes and hand leadership to another voter;
then it stops.`,
		Example: `  meridian start --insecure --region us-east1 --listen 127.0.0.1:26257 --data-dir /tmp/m1
  meridian start --insecure --region us-west1 --listen 127.0.0.1:26258 --join 127.0.0.1:26257 --data-dir /tmp/m2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runStart(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.region, "region", "", "the region this node is in (required)")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:26257", "address to serve gRPC on")
	fl.StringVar(&f.advertise, "advertise", "", "address other nodes and clients reach this node at (default --listen)")
	fl.StringVar(&f.join, "join", "", "comma-separated addresses of nodes to join")
	fl.StringVar(&f.dataDir, "data-dir", "", "directory for this node's data (required)")
	fl.BoolVar(&f.insecure, "insecure", false, "serve and dial plaintext gRPC instead of mutual TLS")
	fl.StringVar(&f.certsDir, "certs-dir", "certs", "directory with ca.crt and node.crt/node.key (mutual TLS)")
	fl.StringVar(&f.ntp, "ntp", "", "comma-separated NTP servers (host:port) for the interval clock; empty: the system clock with --epsilon")
	fl.DurationVar(&f.epsilon, "epsilon", 5*time.Millisecond, "assumed ε of the system clock when --ntp is not given")
	fl.DurationVar(&f.ntpPoll, "ntp-poll", time.Second, "how often to query the --ntp servers; between queries ε grows by the drift bound (200 µs/s), so commit wait grows with this")
	fl.DurationVar(&f.maxEps, "max-epsilon", 100*time.Millisecond, "ε above which the clock counts as unhealthy (the node then neither leads nor votes)")
	fl.DurationVar(&f.drain, "drain-timeout", 10*time.Second, "how long to wait for leadership hand-off on shutdown")
	fl.DurationVar(&f.retention, "version-retention", node.DefaultVersionRetention, "how long overwritten and deleted versions stay readable: stale, exact-timestamp and snapshot reads further back are refused once collected")
	fl.DurationVar(&f.gcEvery, "gc-interval", node.DefaultGCInterval, "how often versions older than --version-retention are collected")
	fl.StringVar(&f.http, "http", "", "address for the HTTP server: /metrics (Prometheus), /debug/txn, /debug/cluster, /debug/pprof/; empty: none")
	fl.StringVar(&f.netem, "netem", "", "for fault tests: comma-separated regions of the cluster; run this node's connections to other nodes through the latency simulator (no added latency), so that `meridian sim partition|slow|loss|heal --host` can cut, slow or lose them")
	fl.StringVar(&f.bug, "testing-bug", "", "for fault tests' negative controls only: switch on a deliberate protocol bug ("+strings.Join(testingBugs, ", ")+")")
	_ = fl.MarkHidden("testing-bug")
	return cmd
}

// openClock returns the interval clock the flags ask for.
func openClock(ctx context.Context, ntp string, poll, epsilon, maxEps time.Duration) (tt.Clock, func(), error) {
	if servers := splitList(ntp); len(servers) > 0 {
		c, err := tt.NewNTP(tt.NTPConfig{Servers: servers, PollInterval: poll, MaxEpsilon: maxEps, Logger: slog.Default()})
		if err != nil {
			return nil, nil, err
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = c.Sync(sctx)
		cancel()
		if err != nil {
			slog.Warn("clock not healthy yet; the node will not lead or vote until it is", "err", err)
		}
		c.Start()
		return c, c.Close, nil
	}
	slog.Warn("using the system clock with an assumed ε; pass --ntp for a measured bound", "epsilon", epsilon)
	return tt.NewSystem(epsilon), func() {}, nil
}

func dialInsecure(ctx context.Context, addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, meridianpb.DialOptions(insecure.NewCredentials())...)
}

func runStart(cmd *cobra.Command, f *startFlags) error {
	if f.region == "" || f.dataDir == "" {
		return errors.New("--region and --data-dir are required")
	}
	if f.retention <= 0 || f.gcEvery <= 0 {
		return errors.New("--version-retention and --gc-interval must be positive")
	}
	var defaults node.GroupConfig
	switch f.bug {
	case "":
	case "no-commit-wait":
		defaults.Txn.Bugs.NoCommitWait = true
	case "own-clock-apply":
		defaults.PaxosBugs.OwnClockApply, defaults.Txn.Bugs.LastAppliedRead = true, true
	default:
		return fmt.Errorf("--testing-bug %q: want one of %s", f.bug, strings.Join(testingBugs, ", "))
	}
	if f.bug != "" {
		slog.Warn("running with a deliberate protocol bug: this node breaks external consistency on purpose", "bug", f.bug)
	}
	var ne *sim.Netem
	var srvRef atomic.Pointer[rpc.Server]
	if f.netem != "" {
		m, err := zeroMatrix(splitList(f.netem))
		if err != nil {
			return fmt.Errorf("--netem: %w", err)
		}
		if m.Region(f.region) < 0 {
			return fmt.Errorf("--netem %s does not list this node's region %q", f.netem, f.region)
		}
		ne = sim.NewNetem(m, 0)
		slog.Warn("connections to other nodes go through the latency simulator (--netem): for fault tests", "regions", m.Regions)
	}
	regionOf := func(addr string) string {
		if s := srvRef.Load(); s != nil {
			return s.RegionOf(addr)
		}
		return ""
	}
	withNetem := func(opts []grpc.DialOption) []grpc.DialOption {
		if ne == nil {
			return opts
		}
		return append(opts, grpc.WithContextDialer(ne.Dialer(f.region, regionOf)))
	}
	tuneGC()
	serverOpts := rpc.ServerOptions()
	dial := func(ctx context.Context, addr string) (*grpc.ClientConn, error) {
		return grpc.NewClient(addr, withNetem(meridianpb.DialOptions(insecure.NewCredentials()))...)
	}
	if !f.insecure {
		stls, err := rpc.ServerTLS(f.certsDir)
		if err != nil {
			return fmt.Errorf("%w (create certificates with meridian cert, or pass --insecure)", err)
		}
		ctls, err := rpc.NodeClientTLS(f.certsDir)
		if err != nil {
			return err
		}
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(stls)))
		dial = func(ctx context.Context, addr string) (*grpc.ClientConn, error) {
			return grpc.NewClient(addr, withNetem(meridianpb.DialOptions(credentials.NewTLS(ctls)))...)
		}
	}
	if f.advertise == "" {
		f.advertise = f.listen
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(f.dataDir, 0o755); err != nil {
		return err
	}
	eng, err := kv.Open(filepath.Join(f.dataDir, "pebble"), kv.Options{})
	if err != nil {
		return fmt.Errorf("opening the store: %w", err)
	}
	defer eng.Close()
	id, err := node.LoadOrCreateID(eng)
	if err != nil {
		return err
	}
	clock, closeClock, err := openClock(ctx, f.ntp, f.ntpPoll, f.epsilon, f.maxEps)
	if err != nil {
		return err
	}
	defer closeClock()
	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return err
	}
	cfg := rpc.ServerConfig{
		Self:   node.NodeInfo{ID: node.NodeID(id), Region: f.region, Addr: f.advertise},
		Engine: eng, Clock: clock, Join: splitList(f.join), Dial: dial, Logger: slog.Default(),
		VersionRetention: f.retention, GCInterval: f.gcEvery, GroupDefaults: defaults,
	}
	if ne != nil {
		lis = ne.Listener(lis, f.region)
		cfg.Netem = ne
	}
	srv, err := rpc.NewServer(cfg)
	if err != nil {
		return err
	}
	srvRef.Store(srv)
	gs := grpc.NewServer(serverOpts...)
	srv.Register(gs)
	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	srv.Start()
	if f.http != "" {
		hl, err := net.Listen("tcp", f.http)
		if err != nil {
			return err
		}
		hs := &http.Server{Handler: rpc.DebugHandler(srv), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = hs.Serve(hl) }()
		defer hs.Close()
	}
	fmt.Fprintf(cmd.OutOrStdout(), "node %d started\n  region:   %s\n  listen:   %s (advertised %s)\n  data dir: %s\n  clock:    %s\n  initialized: %v\n",
		id, f.region, lis.Addr(), f.advertise, f.dataDir, describeClock(clock), srv.Initialized())
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		srv.Close()
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), "draining…")
	dctx, cancel := context.WithTimeout(context.Background(), f.drain)
	srv.Node().Drain(dctx)
	cancel()
	// Stop the node (its streams to peers end, and peers' streams to it
	// are answered Unavailable), then let in-flight calls finish; a call
	// that does not is cut off.
	srv.Close()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		gs.Stop()
	}
	fmt.Fprintln(cmd.OutOrStdout(), "stopped")
	return nil
}

// tuneGC sets the garbage collector's target to 300% unless GOGC says
// otherwise: allocation-heavy paths (gRPC, protobuf) then spend ~7% less
// CPU collecting. The heap may grow to 4× the live data, which the
// 2-minute outcome records dominate under load (~190 MiB at 16k writes/s);
// GOMEMLIMIT still bounds memory when set.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(300)
	}
}

func describeClock(c tt.Clock) string {
	if d, ok := c.(tt.Describer); ok {
		return d.Describe()
	}
	return "unknown"
}

// zeroMatrix is a latency matrix over regions with no latency: the
// simulator's partitions, delays and loss on real processes.
func zeroMatrix(regions []string) (sim.Matrix, error) {
	m := sim.Matrix{Regions: regions}
	for range regions {
		m.RTT = append(m.RTT, make([]time.Duration, len(regions)))
	}
	return m, m.Validate()
}
