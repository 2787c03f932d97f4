package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiandb/meridian/sim"
)

type simTxnFlags struct {
	seeds     int
	seed      int64
	faults    string
	bug       string
	output    string
	duration  time.Duration
	placement string
	preset    string
	lease     time.Duration
	epsilon   time.Duration
	clients   int
	sweep     string
	trace     bool
	uniform   bool
}

func newSimTxnCmd() *cobra.Command {
	f := &simTxnFlags{}
	cmd := &cobra.Command{
		Use:   "txn",
		Short: "Simulate a multi-region cluster running transactions and check external consistency",
		Long: `txn runs one shard per region of a latency preset, each a Paxos group in the
chosen placement (regional: voters in the home region and a read-only replica
in every other region; spread: one voter per region), with clients in every
region running bank transfers across shards, read-modify-write registers,
real-time probes (a writer commits one key per shard in order while readers
elsewhere read them back in reverse), strong read-only audits of every
account and bounded-staleness reads. Every node collects old versions as it
runs (3 s retention, a few deletions per event), and some register writes
are deletes.

After every seed it checks: real-time order implies timestamp order, every
read returns the latest write at or below its timestamp, no lost updates, no
acknowledged write lost in the final state, and bank totals conserved.

It reports the median commit latency of cross-region two-phase commits beside
its analytic lower bound for the latency matrix and placement, and how much
of commit wait was exposed. --sweep-epsilon runs the same seeds at several
clock uncertainties and prints where commit wait starts to cost.`,
		Example: `  meridian sim txn --seeds 50 --faults all
  meridian sim txn --seeds 20 --placement spread -w json
  meridian sim txn --seeds 10 --bug no-commit-wait --epsilon 5ms
  meridian sim txn --seeds 5 --sweep-epsilon 0.5ms,2ms,10ms,50ms,100ms`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runSimTxn(cmd, f) },
	}
	fl := cmd.Flags()
	fl.IntVar(&f.seeds, "seeds", 20, "number of seeds to run (from --seed on, or from 1)")
	fl.Int64Var(&f.seed, "seed", -1, "run exactly this seed (or start --seeds here)")
	fl.StringVar(&f.faults, "faults", "", "comma-separated faults: crash, partition, net, clock, all (default none)")
	fl.StringVar(&f.bug, "bug", "", "turn on a deliberate bug to show the checker catches it: "+strings.Join(sim.TxnBugs, ", ")+" (no-commit-wait wants a large --epsilon)")
	fl.StringVarP(&f.output, "output", "w", "table", "output format: table or json")
	fl.DurationVar(&f.duration, "duration", 30*time.Second, "virtual time per seed")
	fl.StringVar(&f.placement, "placement", "regional", "replica placement: regional or spread")
	fl.StringVar(&f.preset, "latency", "global", "latency preset: "+strings.Join(sim.PresetNames(), "; "))
	fl.DurationVar(&f.lease, "lease", 2*time.Second, "leader lease duration")
	fl.DurationVar(&f.epsilon, "epsilon", time.Millisecond, "error bound of each clock sample (ε right after a sync; drift widens it until the next)")
	fl.IntVar(&f.clients, "clients", 3, "clients per region")
	fl.StringVar(&f.sweep, "sweep-epsilon", "", "comma-separated ε values to sweep (table of latency and exposed commit wait per ε)")
	fl.BoolVar(&f.trace, "trace", false, "print faults and leadership changes as they happen (use with --seed)")
	fl.BoolVar(&f.uniform, "uniform-clocks", false, "give every node the same sample error (--epsilon) and sampling instants; by default each node's error is --epsilon times a factor in [1/4, 4] and it samples at its own phase (a --sweep-epsilon run is uniform)")
	return cmd
}

// simTxnReport is the JSON shape of a transaction simulation.
type simTxnReport struct {
	Seeds                 int            `json:"seeds"`
	Violations            []simViolation `json:"violations"`
	Placement             string         `json:"placement"`
	Committed             int            `json:"committed"`
	Aborted               int            `json:"aborted_attempts"`
	Unknown               int            `json:"unknown"`
	ReadOnly              int            `json:"read_only"`
	FastReads             int            `json:"fast_strong_reads"`
	ParallelRW            int            `json:"parallel_read_txns"`
	Released              int            `json:"released_txns"`
	GCRemoved             int            `json:"gc_versions_removed"`
	CommitP50Ms           float64        `json:"commit_p50_ms"`
	CommitBoundMs         float64        `json:"commit_bound_ms"`
	LocalCommitP50Ms      float64        `json:"local_commit_p50_ms"`
	CommitWaitExposedMs   float64        `json:"commit_wait_exposed_ms"`
	CommitWaitExposedFrac float64        `json:"commit_wait_exposed_fraction"`
	EpsilonMs             float64        `json:"epsilon_ms"`
	Speedup               float64        `json:"speedup"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func runSimTxn(cmd *cobra.Command, f *simTxnFlags) error {
	if err := outputFormat(f.output, "table", "json"); err != nil {
		return err
	}
	first, n, err := seedRange(cmd, f.seed, f.seeds)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	faults := splitList(f.faults)
	run := func(eps time.Duration) (simTxnReport, error) {
		rep := simTxnReport{Violations: []simViolation{}, Placement: f.placement}
		var p50, bound, local, exposed, frac, epsv []float64
		var virt, wall time.Duration
		for i := 0; i < n; i++ {
			seed := first + uint64(i)
			opts := sim.TxnOptions{Seed: seed, Placement: f.placement, Preset: f.preset, Duration: f.duration,
				Lease: f.lease, Faults: faults, Bug: f.bug, ClockError: eps, ClientsPerRegion: f.clients,
				UniformClocks: f.sweep != "" || f.uniform}
			if f.trace {
				opts.Trace = func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), s) }
			}
			res, err := sim.RunTxn(opts)
			if err != nil {
				return rep, err
			}
			rep.Seeds++
			rep.Committed += res.Committed
			rep.Aborted += res.Aborted
			rep.Unknown += res.Unknown
			rep.ReadOnly += res.ReadOnly
			rep.FastReads += res.FastReads
			rep.ParallelRW += res.ParallelRW
			rep.Released += res.Released
			rep.GCRemoved += res.GCRemoved
			virt += res.Virtual
			wall += res.Wall
			if res.CommitP50 > 0 {
				p50 = append(p50, ms(res.CommitP50))
				bound = append(bound, ms(res.CommitBound))
				exposed = append(exposed, ms(res.CommitWaitExposed))
				frac = append(frac, res.CommitWaitExposedFrac)
			}
			if res.LocalCommitP50 > 0 {
				local = append(local, ms(res.LocalCommitP50))
			}
			epsv = append(epsv, ms(res.Epsilon))
			for _, v := range res.Violations {
				replay := replayCommand(cmd, "txn", seed)
				if eps != f.epsilon {
					replay += fmt.Sprintf(" --epsilon %s", eps)
				}
				rep.Violations = append(rep.Violations, simViolation{Seed: seed, Message: v, Replay: replay})
				if f.output == "table" {
					fmt.Fprintf(out, "VIOLATION seed %d: %s\n  replay: %s\n", seed, v, replay)
				}
			}
		}
		rep.CommitP50Ms, rep.CommitBoundMs, rep.LocalCommitP50Ms = medianF(p50), medianF(bound), medianF(local)
		rep.CommitWaitExposedMs, rep.CommitWaitExposedFrac, rep.EpsilonMs = medianF(exposed), medianF(frac), medianF(epsv)
		if wall > 0 {
			rep.Speedup = virt.Seconds() / wall.Seconds()
		}
		return rep, nil
	}

	if f.sweep != "" {
		var rows []simTxnReport
		violations := 0
		for _, v := range splitList(f.sweep) {
			eps, err := time.ParseDuration(v)
			if err != nil || eps <= 0 {
				return fmt.Errorf("--sweep-epsilon %q: not a positive duration", v)
			}
			rep, err := run(eps)
			if err != nil {
				return err
			}
			violations += len(rep.Violations)
			rows = append(rows, rep)
		}
		if err := printSweep(out, f.output, rows); err != nil {
			return err
		}
		if violations > 0 {
			return &exitError{code: 2, err: fmt.Errorf("%d violations", violations)}
		}
		return nil
	}
	rep, err := run(f.epsilon)
	if err != nil {
		return err
	}
	if f.output == "json" {
		if err := json.NewEncoder(out).Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "seeds:                 %d (%s placement, %.0f virtual s per wall s)\n", rep.Seeds, rep.Placement, rep.Speedup)
		fmt.Fprintf(out, "violations:            %d\n", len(rep.Violations))
		fmt.Fprintf(out, "transactions:          %d committed, %d aborted attempts (retried), %d unknown, %d read-only (%d strong reads served from a leader's published state)\n",
			rep.Committed, rep.Aborted, rep.Unknown, rep.ReadOnly, rep.FastReads)
		fmt.Fprintf(out, "parallel reads:        %d read-write transactions read all their groups at once, under client-stamped priorities\n", rep.ParallelRW)
		fmt.Fprintf(out, "wrote nothing:         %d committed read-write transactions wrote nothing (checked rollback)\n", rep.Released)
		fmt.Fprintf(out, "version gc:            %d versions removed (retention %s virtual)\n", rep.GCRemoved, sim.SimRetention)
		fmt.Fprintf(out, "cross-region commit:   p50 %.1f ms, analytic lower bound %.1f ms (ratio %.2f)\n",
			rep.CommitP50Ms, rep.CommitBoundMs, ratio(rep.CommitP50Ms, rep.CommitBoundMs))
		fmt.Fprintf(out, "single-group commit:   p50 %.1f ms\n", rep.LocalCommitP50Ms)
		fmt.Fprintf(out, "exposed commit wait:   p50 %.2f ms (%.1f%% of commit latency), clock ε %.2f ms\n",
			rep.CommitWaitExposedMs, 100*rep.CommitWaitExposedFrac, rep.EpsilonMs)
	}
	if len(rep.Violations) > 0 {
		return &exitError{code: 2, err: fmt.Errorf("%d violations", len(rep.Violations))}
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func printSweep(w io.Writer, format string, rows []simTxnReport) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(rows)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ε(ms)\tcommit p50(ms)\tbound(ms)\tratio\texposed wait(ms)\texposed %\tlocal commit p50(ms)\tviolations\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%.2f\t%.1f\t%.1f\t%.2f\t%.2f\t%.1f\t%.1f\t%d\t\n", r.EpsilonMs, r.CommitP50Ms, r.CommitBoundMs,
			ratio(r.CommitP50Ms, r.CommitBoundMs), r.CommitWaitExposedMs, 100*r.CommitWaitExposedFrac, r.LocalCommitP50Ms, len(r.Violations))
	}
	return tw.Flush()
}
