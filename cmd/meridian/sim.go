package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/sim"
)

func newSimCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run the deterministic simulator: whole clusters in virtual time, checked, replayable by seed",
		Long: `sim runs Meridian's protocols in one goroutine in virtual time: replicas on
Pebble over a crash-simulating in-memory filesystem, a simulated WAN with the
latency presets, simulated clocks, and injected faults. Every run is decided
by its seed; every violation the checkers find prints the command that
replays it.`,
	}
	cmd.AddCommand(newSimPaxosCmd(), newSimTxnCmd())
	cmd.AddCommand(newNetemCmds()...)
	return cmd
}

type simPaxosFlags struct {
	seeds    int
	seed     int64
	faults   string
	bug      string
	output   string
	duration time.Duration
	groups   int
	voters   int
	learners int
	preset   string
	lease    time.Duration
	trace    bool
}

func newSimPaxosCmd() *cobra.Command {
	f := &simPaxosFlags{}
	cmd := &cobra.Command{
		Use:   "paxos",
		Short: "Simulate Paxos groups under faults and check them",
		Long: `paxos runs groups of Multi-Paxos replicas with TrueTime leases under a
put/get workload and checks, after every run: no slot has two chosen values
(applied logs are prefixes of each other), applied timestamps strictly
increase and lie inside their leader's lease, lease intervals of successive
leaders never overlap in true time, every key's history is linearizable
(Porcupine), and every group commits again within 5 lease periods after the
faults stop.

Faults: crash (crash a node, losing unsynced writes, restart it later),
partition (symmetric and one-way), net (loss, duplication, reordering),
clock (offsets within ε, lost time servers), or all.`,
		Example: `  meridian sim paxos --seeds 500 --faults all
  meridian sim paxos --seed 8812 --faults all --trace
  meridian sim paxos --seeds 50 --faults partition --bug lease-overlap -w json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runSimPaxos(cmd, f) },
	}
	fl := cmd.Flags()
	fl.IntVar(&f.seeds, "seeds", 100, "number of seeds to run (from --seed on, or from 1)")
	fl.Int64Var(&f.seed, "seed", -1, "run exactly this seed (or start --seeds here)")
	fl.StringVar(&f.faults, "faults", "", "comma-separated faults: crash, partition, net, clock, all (default none)")
	fl.StringVar(&f.bug, "bug", "", "turn on a deliberate protocol bug to show the checkers catch it: lease-overlap")
	fl.StringVarP(&f.output, "output", "w", "table", "output format: table or json")
	fl.DurationVar(&f.duration, "duration", 40*time.Second, "virtual time per seed")
	fl.IntVar(&f.groups, "groups", 3, "Paxos groups")
	fl.IntVar(&f.voters, "voters", 3, "voting replicas per group (1, 3 or 5)")
	fl.IntVar(&f.learners, "learners", 0, "read-only replicas per group")
	fl.StringVar(&f.preset, "latency", "global", "latency preset: "+strings.Join(sim.PresetNames(), "; "))
	fl.DurationVar(&f.lease, "lease", 2*time.Second, "leader lease duration")
	fl.BoolVar(&f.trace, "trace", false, "print faults and leadership changes as they happen (use with --seed)")
	return cmd
}

// simReport is the JSON shape of a sim run.
type simReport struct {
	Seeds      int            `json:"seeds"`
	Violations []simViolation `json:"violations"`
	Speedup    float64        `json:"speedup"`
	VirtualS   float64        `json:"virtual_seconds"`
	WallS      float64        `json:"wall_seconds"`
	Ops        int            `json:"ops"`
	Commits    int            `json:"commits"`
	Leaders    int            `json:"leader_changes"`
	Snapshots  int            `json:"snapshots"`
	Crashes    int            `json:"crashes"`
}

type simViolation struct {
	Seed    uint64 `json:"seed"`
	Message string `json:"message"`
	Replay  string `json:"replay"`
}

// seedRange is the seeds --seed and --seeds select: --seeds of them from
// --seed (default 1), or --seed alone when --seeds is not given.
func seedRange(cmd *cobra.Command, seed int64, seeds int) (first uint64, n int, err error) {
	if seeds <= 0 {
		return 0, 0, errors.New("--seeds must be positive")
	}
	if seed < 0 {
		return 1, seeds, nil
	}
	if !cmd.Flags().Changed("seeds") {
		seeds = 1
	}
	return uint64(seed), seeds, nil
}

func runSimPaxos(cmd *cobra.Command, f *simPaxosFlags) error {
	if err := outputFormat(f.output, "table", "json"); err != nil {
		return err
	}
	first, n, err := seedRange(cmd, f.seed, f.seeds)
	if err != nil {
		return err
	}
	faults := splitList(f.faults)
	out := cmd.OutOrStdout()
	replay := func(seed uint64) string { return replayCommand(cmd, "paxos", seed) }
	rep := simReport{Violations: []simViolation{}}
	start := time.Now()
	for i := 0; i < n; i++ {
		seed := first + uint64(i)
		opts := sim.PaxosOptions{Seed: seed, Groups: f.groups, Voters: f.voters, Learners: f.learners,
			Preset: f.preset, Duration: f.duration, Lease: f.lease, Faults: faults, Bug: f.bug}
		if f.trace {
			opts.Trace = func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), s) }
		}
		res, err := sim.RunPaxos(opts)
		if err != nil {
			return err
		}
		rep.Seeds++
		rep.VirtualS += res.Virtual.Seconds()
		rep.Ops += res.Ops
		rep.Commits += res.Commits
		rep.Leaders += res.LeaderChanges
		rep.Snapshots += res.Snapshots
		rep.Crashes += res.Crashes
		for _, v := range res.Violations {
			rep.Violations = append(rep.Violations, simViolation{Seed: seed, Message: v, Replay: replay(seed)})
			if f.output == "table" {
				fmt.Fprintf(out, "VIOLATION seed %d: %s\n  replay: %s\n", seed, v, replay(seed))
			}
		}
	}
	rep.WallS = time.Since(start).Seconds()
	if rep.WallS > 0 {
		rep.Speedup = rep.VirtualS / rep.WallS
	}
	if err := printSimReport(out, f.output, rep); err != nil {
		return err
	}
	if len(rep.Violations) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("%d violations", len(rep.Violations))}
	}
	return nil
}

// replayCommand rebuilds the command line that reruns one seed with every
// flag the user set that shapes the run.
func replayCommand(cmd *cobra.Command, kind string, seed uint64) string {
	parts := []string{"meridian", "sim", kind, fmt.Sprintf("--seed %d", seed)}
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		switch fl.Name {
		case "seed", "seeds", "output", "trace", "log-level", "log-format", "sweep-epsilon":
			return
		}
		parts = append(parts, fmt.Sprintf("--%s %s", fl.Name, fl.Value.String()))
	})
	return strings.Join(parts, " ")
}

func printSimReport(w io.Writer, format string, r simReport) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(r)
	}
	fmt.Fprintf(w, "seeds:          %d\n", r.Seeds)
	fmt.Fprintf(w, "violations:     %d\n", len(r.Violations))
	fmt.Fprintf(w, "virtual time:   %.0fs in %.1fs wall (%.0f virtual s per wall s)\n", r.VirtualS, r.WallS, r.Speedup)
	fmt.Fprintf(w, "client ops:     %d acknowledged, %d commits\n", r.Ops, r.Commits)
	fmt.Fprintf(w, "faults seen:    %d crashes, %d leader changes, %d snapshots sent\n", r.Crashes, r.Leaders, r.Snapshots)
	return nil
}

// newNetemCmds are the commands that change a running demo cluster's
// latency simulator.
func newNetemCmds() []*cobra.Command {
	mk := func(use, short string, args cobra.PositionalArgs, build func(args []string, oneWay bool) (*meridianpb.NetemRequest, error)) *cobra.Command {
		f := &connFlags{}
		var oneWay bool
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  args,
			RunE: func(cmd *cobra.Command, args []string) error {
				req, err := build(args, oneWay)
				if err != nil {
					return err
				}
				conn, admin, err := f.adminConn()
				if err != nil {
					return err
				}
				defer conn.Close()
				ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
				defer cancel()
				resp, err := admin.Netem(ctx, req)
				if err != nil {
					return err
				}
				cuts := "none"
				if len(resp.Cuts) > 0 {
					cuts = strings.Join(resp.Cuts, ", ")
				}
				fmt.Fprintf(cmd.OutOrStdout(), "partitions: %s; packet loss: %.1f%%\n", cuts, 100*resp.Loss)
				return nil
			},
		}
		f.register(c)
		if strings.HasPrefix(use, "partition") {
			c.Flags().BoolVar(&oneWay, "one-way", false, "lose only what the first region writes to the second (live connections stay open)")
		}
		return c
	}
	return []*cobra.Command{
		mk("partition REGION REGION", "Partition two regions of a running demo cluster (connections across are closed and refused)",
			cobra.ExactArgs(2), func(a []string, oneWay bool) (*meridianpb.NetemRequest, error) {
				return &meridianpb.NetemRequest{Action: "partition", A: a[0], B: a[1], OneWay: oneWay}, nil
			}),
		mk("slow REGION REGION DELAY", "Add a one-way delay between two regions of a running demo cluster, both ways (until heal)",
			cobra.ExactArgs(3), func(a []string, _ bool) (*meridianpb.NetemRequest, error) {
				d, err := time.ParseDuration(a[2])
				if err != nil {
					return nil, fmt.Errorf("delay %q: want a duration like 100ms", a[2])
				}
				return &meridianpb.NetemRequest{Action: "slow", A: a[0], B: a[1], DelayNs: int64(d)}, nil
			}),
		mk("heal", "Remove every partition, added delay and the packet loss of a running demo cluster", cobra.NoArgs,
			func([]string, bool) (*meridianpb.NetemRequest, error) {
				return &meridianpb.NetemRequest{Action: "heal"}, nil
			}),
		mk("loss PROBABILITY", "Set a running demo cluster's packet loss (each lost write costs a 200 ms retransmission)",
			cobra.ExactArgs(1), func(a []string, _ bool) (*meridianpb.NetemRequest, error) {
				p, err := strconv.ParseFloat(a[0], 64)
				if err != nil {
					return nil, fmt.Errorf("loss %q: want a probability like 0.05", a[0])
				}
				return &meridianpb.NetemRequest{Action: "loss", Loss: p}, nil
			}),
	}
}
