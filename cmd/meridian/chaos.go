package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/meridiandb/meridian/chaos"
)

func newChaosCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run the fault suite: real processes, faults, checked histories",
		Long: `chaos runs Meridian as it is deployed, as separate 'meridian start'
processes on loopback, each on NTP servers of its own, and injects faults
while client workloads run: kill -9 and SIGSTOP, partitions and added
latency between regions, clock steps, strobes and silence, faults of
whichever node leads a group, full restarts. It then heals everything,
checks the whole history and writes a directory of results.`,
	}
	cmd.AddCommand(newChaosRunCmd(), newChaosCheckCmd())
	return cmd
}

type chaosRunFlags struct {
	duration  time.Duration
	settle    time.Duration
	nodes     int
	regions   int
	placement string
	lease     time.Duration
	uncertain time.Duration
	nemesis   string
	workloads string
	clients   int
	seed      uint64
	out       string
	bug       string
	hold, gap string
}

func newChaosRunCmd() *cobra.Command {
	f := &chaosRunFlags{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run workloads under a seeded fault schedule and check the history",
		Long: `run starts --nodes 'meridian start' processes (this binary) spread over
--regions regions, initializes them, and runs the workloads for --duration
while the nemesis injects faults from the chosen families, one at a time,
each held for a few seconds and healed before the next. After the last
fault it heals everything, lets the workloads run on for --settle, reads
back every acknowledged write, and checks the history.

Nemesis families (--nemesis, comma-separated, or all):
  process      kill -9 a node and restart it; SIGSTOP and SIGCONT it
  partition    a region cut from the rest, a one-way cut, or a bridge
  latency      100-300 ms more between two regions
  clock        a node's NTP servers step (±50 ms, ±150 ms, ±250 ms, 5 s),
               strobe, or fall silent (lies the node must fence itself for)
  clock-skew   every node's clock off by 50-90% of --uncertainty, ahead or
               behind (honest disagreement, which commit wait covers)
  leader       kill, stop or clock-step the node that leads a group now
  leader-kill  kill -9 the node that leads a group now, restart it at heal
  restart      every node killed, then all restarted

Workloads (--workloads, comma-separated, or all):
  bank        transfers across shards; every strong snapshot sums to the total
  register    reads, writes, compare-and-set per key; linearizable (Porcupine)
  sequential  A then B written on two shards; no reader sees B without A
  monotonic   counters; strong reads never go back in real time
  append      list-append transactions; no dependency cycles (Elle)
  acked       every acknowledged write is there after healing

Results go to --out/<time>-seed<N>/: history.jsonl, faults.json, one
check-<checker>.json per checker (anomalies with the ops they involve),
summary.txt, timeline.svg/png and the node logs; README.md there says what
each file is. The summary is printed at the end; an invalid run exits with
status 2 and prints the command that replays its fault schedule.`,
		Example: `  meridian chaos run
  meridian chaos run --duration 30m
  meridian chaos run --nemesis leader-kill --workloads bank,acked --duration 10m
  meridian chaos run --nemesis clock --seed 7 --duration 2m
  meridian chaos run --nemesis clock-skew --uncertainty 20ms --bug no-commit-wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runChaos(cmd, f) },
	}
	fl := cmd.Flags()
	fl.DurationVar(&f.duration, "duration", time.Minute, "how long the nemesis acts")
	fl.DurationVar(&f.settle, "settle", 0, "how long the workloads run on after healing (default 3 leases + 2s)")
	fl.IntVar(&f.nodes, "nodes", 3, "meridian processes, spread round-robin over the regions")
	fl.IntVar(&f.regions, "regions", 3, "regions (one shard each)")
	fl.StringVar(&f.placement, "placement", "spread", "replica placement: spread (each shard on nodes in several regions) or regional")
	fl.DurationVar(&f.lease, "lease", 2*time.Second, "leader lease")
	fl.DurationVar(&f.uncertain, "uncertainty", 2*time.Millisecond, "root dispersion the nodes' NTP servers report: the clock uncertainty within which clocks may skew")
	fl.StringVar(&f.nemesis, "nemesis", "all", "nemesis families: "+strings.Join(chaos.Families, ", ")+", or all")
	fl.StringVar(&f.workloads, "workloads", "all", "workloads: "+strings.Join(chaos.Workloads, ", ")+", or all")
	fl.IntVar(&f.clients, "clients", 2, "client processes per workload")
	fl.Uint64Var(&f.seed, "seed", 0, "seed of the fault schedule and workloads (default: from the time)")
	fl.StringVar(&f.out, "out", "chaos-results", "directory under which each run's results are written")
	fl.StringVar(&f.bug, "bug", "", "start the nodes with a deliberate bug, to show the checkers catch it: no-commit-wait, own-clock-apply")
	fl.StringVar(&f.hold, "hold", "3s-7s", "how long each fault lasts: a duration or a range MIN-MAX")
	fl.StringVar(&f.gap, "gap", "2s-5s", "calm between two faults: a duration or a range MIN-MAX")
	return cmd
}

func parseRange(s string) ([2]time.Duration, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := time.ParseDuration(lo)
	if err != nil {
		return [2]time.Duration{}, fmt.Errorf("%q: %w", s, err)
	}
	b := a
	if isRange {
		if b, err = time.ParseDuration(hi); err != nil {
			return [2]time.Duration{}, fmt.Errorf("%q: %w", s, err)
		}
	}
	if a <= 0 || b < a {
		return [2]time.Duration{}, fmt.Errorf("%q: want a positive duration or MIN-MAX with MIN <= MAX", s)
	}
	return [2]time.Duration{a, b}, nil
}

// listOrAll is a comma-separated flag value, or every item for "all".
func listOrAll(s string, all []string) []string {
	if s == "" || s == "all" {
		return all
	}
	return splitList(s)
}

func runChaos(cmd *cobra.Command, f *chaosRunFlags) error {
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the meridian binary: %w", err)
	}
	hold, err := parseRange(f.hold)
	if err != nil {
		return fmt.Errorf("--hold %w", err)
	}
	gap, err := parseRange(f.gap)
	if err != nil {
		return fmt.Errorf("--gap %w", err)
	}
	seed := f.seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano()%1_000_000) + 1
	}
	if f.bug != "" && f.bug != "no-commit-wait" && f.bug != "own-clock-apply" {
		return fmt.Errorf("--bug %q: want no-commit-wait or own-clock-apply", f.bug)
	}
	out := cmd.OutOrStdout()
	cfg := chaos.RunConfig{
		Cluster: chaos.ClusterConfig{Binary: bin, Nodes: f.nodes, Regions: f.regions, Placement: f.placement,
			Lease: f.lease, Uncertainty: f.uncertain, Bug: f.bug},
		Nemesis:   chaos.NemesisConfig{Families: listOrAll(f.nemesis, chaos.Families), Hold: hold, Gap: gap},
		Workloads: listOrAll(f.workloads, chaos.Workloads),
		Duration:  f.duration, Settle: f.settle, Clients: f.clients, Seed: seed, Out: f.out,
		Replay:  chaosReplay(cmd, seed),
		Summary: out,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
		},
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := chaos.Run(ctx, cfg)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("interrupted")
		}
		return err
	}
	slog.Debug("chaos run done", "dir", res.Dir)
	if res.Interrupted && res.Valid() {
		return &exitError{code: 130, err: fmt.Errorf("interrupted; the history until then is valid (results in %s)", res.Dir)}
	}
	if !res.Valid() {
		return &exitError{code: 2, err: fmt.Errorf("invalid history: %s (results in %s)", strings.Join(res.Summary.Invalid(), ", "), res.Dir)}
	}
	return nil
}

// chaosReplay is the command that reruns a chaos run's schedule: the same
// seed and every flag the user set that shapes the run.
func chaosReplay(cmd *cobra.Command, seed uint64) string {
	parts := []string{"meridian", "chaos", "run", fmt.Sprintf("--seed %d", seed)}
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		switch fl.Name {
		case "seed", "out", "log-level", "log-format":
			return
		}
		parts = append(parts, fmt.Sprintf("--%s %s", fl.Name, fl.Value.String()))
	})
	return strings.Join(parts, " ")
}

func newChaosCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check DIR",
		Short: "Judge a finished run again from its results directory",
		Long: `check reads a run's history.jsonl and faults.json and runs this build's
checkers on them, printing the summary (the directory is not changed): after
a checker improves, old runs can be judged again. Liveness is judged from the
history alone; node process exits are not recorded there. Exits with status 2
when the history is invalid.`,
		Example: `  meridian chaos check chaos-results/20261207T070206Z-seed2026`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := chaos.Recheck(args[0])
			if err != nil {
				return err
			}
			if err := chaos.WriteSummary(cmd.OutOrStdout(), res.Summary); err != nil {
				return err
			}
			if !res.Valid() {
				return &exitError{code: 2, err: fmt.Errorf("invalid history: %s", strings.Join(res.Summary.Invalid(), ", "))}
			}
			return nil
		},
	}
}
