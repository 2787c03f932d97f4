package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/sim"
	"github.com/meridiandb/meridian/tt"
)

type demoFlags struct {
	ntp     string
	epsilon time.Duration
	noShell bool
	dir     string
}

func newDemoCmd() *cobra.Command {
	f := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "A guided tour of what Meridian does, on this machine, with nothing to set up",
		Long: `demo walks through Meridian's layers as they exist today:

  1. the interval clock (TrueTime): the system clock with a stated, unmeasured
     ε by default, or NTP servers with --ntp;
  2. the MVCC store on Pebble: versions at timestamps, reads in the past,
     tombstones, scans and version GC, on a temporary directory;
  3. Paxos groups with TrueTime leases across three simulated regions
     (us-east1, us-west1, europe-west1), run in virtual time by the
     deterministic simulator under crashes and partitions, and checked.

The networked multi-region cluster and the interactive shell come with later
work; --no-shell is accepted so scripts can already pass it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runDemo(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.ntp, "ntp", "", "comma-separated NTP servers (host:port) to use instead of the system clock")
	fl.DurationVar(&f.epsilon, "epsilon", 5*time.Millisecond, "assumed ε of the system clock when --ntp is not given")
	fl.BoolVar(&f.noShell, "no-shell", false, "exit after the tour instead of opening a shell")
	fl.StringVar(&f.dir, "dir", "", "directory for the demo's Pebble store (default: a temporary directory, removed afterwards)")
	return cmd
}

func runDemo(cmd *cobra.Command, f *demoFlags) error {
	out := cmd.OutOrStdout()
	fmt.Fprintln(out, "Meridian demo")
	fmt.Fprintln(out, "=============")
	fmt.Fprintln(out)

	// 1. The clock.
	fmt.Fprintln(out, "1. The interval clock")
	var clock tt.Clock
	if servers := splitList(f.ntp); len(servers) > 0 {
		c, err := tt.NewNTP(tt.NTPConfig{Servers: servers})
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Sync(cmd.Context()); err != nil {
			return fmt.Errorf("NTP: %w", err)
		}
		clock = c
		if err := printClock(out, "table", ntpReport(c)); err != nil {
			return err
		}
	} else {
		c := tt.NewSystem(f.epsilon)
		clock = c
		if err := printClock(out, "table", systemReport(c)); err != nil {
			return err
		}
		fmt.Fprintln(out, "   (no NTP server given: ε is assumed, not measured; try --ntp host:port)")
		fmt.Fprintln(out)
	}

	// 2. MVCC on Pebble.
	fmt.Fprintln(out, "2. Multi-version storage on Pebble")
	dir := f.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "meridian-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	if err := mvccTour(out, dir, clock); err != nil {
		return err
	}

	// 3. Paxos groups in the simulator.
	fmt.Fprintln(out, "3. Paxos groups with TrueTime leases, three regions, in the simulator")
	res, err := sim.RunPaxos(sim.PaxosOptions{Seed: 1, Faults: []string{"crash", "partition"}, Duration: 30 * time.Second})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "   regions\tus-east1, us-west1, europe-west1 (RTT 66/64/146 ms)\n")
	fmt.Fprintf(tw, "   groups\t3 × 3 replicas, 2 s leases, Pebble on a crash-simulating filesystem\n")
	fmt.Fprintf(tw, "   virtual time\t%s in %s of wall time\n", res.Virtual, res.Wall.Round(time.Millisecond))
	fmt.Fprintf(tw, "   faults\t%d node crashes and random partitions\n", res.Crashes)
	fmt.Fprintf(tw, "   work done\t%d client operations acknowledged, %d commits, %d leader changes, %d snapshots\n",
		res.Ops, res.Commits, res.LeaderChanges, res.Snapshots)
	fmt.Fprintf(tw, "   checks\tchosen values agree, timestamps increase inside leases, leases disjoint, linearizable: ")
	if len(res.Violations) == 0 {
		fmt.Fprintf(tw, "all passed\n")
	} else {
		fmt.Fprintf(tw, "%d VIOLATIONS (replay: %s)\n", len(res.Violations), sim.ReplayCommand("paxos", 1, []string{"crash", "partition"}, "")+" --duration 30s")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out)
	if !f.noShell {
		fmt.Fprintln(out, "The interactive shell needs the networked cluster, which is not built yet; exiting.")
	}
	if len(res.Violations) > 0 {
		return errors.New("the simulator found violations")
	}
	return nil
}

// mvccTour writes a few versions and reads them back at several timestamps.
func mvccTour(out io.Writer, dir string, clock tt.Clock) error {
	eng, err := kv.Open(dir, kv.Options{})
	if err != nil {
		return err
	}
	defer eng.Close()
	iv, err := clock.Now()
	if err != nil {
		return err
	}
	t0 := iv.Latest
	at := func(d time.Duration) tt.Timestamp { return t0.Add(d) }
	steps := []struct {
		what string
		do   func(b *kv.Batch) error
	}{
		{"put account/alice = 100 at t0", func(b *kv.Batch) error { return b.Put([]byte("account/alice"), at(0), []byte("100")) }},
		{"put account/bob   =  50 at t0", func(b *kv.Batch) error { return b.Put([]byte("account/bob"), at(0), []byte("50")) }},
		{"put account/alice =  70 at t0+10ms", func(b *kv.Batch) error { return b.Put([]byte("account/alice"), at(10*time.Millisecond), []byte("70")) }},
		{"put account/bob   =  80 at t0+10ms", func(b *kv.Batch) error { return b.Put([]byte("account/bob"), at(10*time.Millisecond), []byte("80")) }},
		{"delete account/bob at t0+20ms", func(b *kv.Batch) error { return b.Delete([]byte("account/bob"), at(20*time.Millisecond)) }},
	}
	for _, s := range steps {
		b := eng.NewBatch()
		if err := s.do(b); err != nil {
			b.Close()
			return err
		}
		if err := b.Commit(true); err != nil {
			return err
		}
		fmt.Fprintf(out, "   %s  (synced batch)\n", s.what)
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "   READ AT\tSCAN account/ → (key=value@version)")
	for _, d := range []time.Duration{-time.Millisecond, 0, 10 * time.Millisecond, 20 * time.Millisecond} {
		kvs, err := eng.Scan([]byte("account/"), []byte("account0"), at(d), 0, false)
		if err != nil {
			return err
		}
		row := ""
		for _, x := range kvs {
			row += fmt.Sprintf("%s=%s@%s  ", x.Key, x.Value, relT0(x.TS.Sub(t0)))
		}
		if row == "" {
			row = "(nothing yet)"
		}
		fmt.Fprintf(tw, "   %s\t%s\n", relT0(d), row)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	removed, err := eng.GC(at(15 * time.Millisecond))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n   GC below t0+15ms removed %d versions no read at or above it can see;\n", removed)
	if _, _, err := eng.Get([]byte("account/alice"), at(0)); errors.Is(err, kv.ErrBelowGCHorizon) {
		fmt.Fprintf(out, "   a read at t0 is now refused: %v\n", err)
	}
	v, ts, err := eng.Get([]byte("account/alice"), at(15*time.Millisecond))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   a read at t0+15ms still sees account/alice=%s (version %s)\n\n", v, relT0(ts.Sub(t0)))
	return nil
}

// relT0 formats an offset from the tour's first timestamp: t0, t0+10ms.
func relT0(d time.Duration) string {
	switch {
	case d == 0:
		return "t0"
	case d > 0:
		return "t0+" + d.String()
	}
	return "t0" + d.String()
}
