package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meridiandb/meridian/client"
)

// RunConfig configures one chaos run.
type RunConfig struct {
	Cluster ClusterConfig
	Nemesis NemesisConfig
	// Workloads to run (default: all).
	Workloads []string
	// Duration is how long the nemesis acts (default 60 s); the workloads
	// then run on, healed, for Settle (default 3 leases + 2 s) before the
	// history is closed.
	Duration, Settle time.Duration
	// Clients is the number of client processes per workload (default 2);
	// sequential adds a writer per key pair, monotonic two writers.
	Clients int
	// Seed seeds the nemesis schedule (unless Nemesis.Seed is set) and
	// the workloads' choices.
	Seed uint64
	// Out is where the run's directory is created (default
	// chaos-results); the directory is Out/<UTC time>-seed<Seed>.
	Out string
	// Replay is the command that replays this run, for the summary.
	Replay string
	// Logf receives progress lines (may be nil).
	Logf func(format string, args ...any)
	// Summary, when set, receives the one-screen summary at the end.
	Summary io.Writer
}

// Result is what a run found.
type Result struct {
	// Dir is the run's directory.
	Dir      string
	Summary  Summary
	History  []Op
	Faults   []Fault
	Verdicts []Verdict
	// Interrupted: the run was cut short (its context ended); what ran
	// until then was checked.
	Interrupted bool
}

// Valid reports whether every checker passed.
func (r *Result) Valid() bool { return r.Summary.Valid() }

func (c *RunConfig) fill() error {
	if len(c.Workloads) == 0 {
		c.Workloads = Workloads
	}
	for _, w := range c.Workloads {
		if !slices.Contains(Workloads, w) {
			return fmt.Errorf("chaos: unknown workload %q (have %s)", w, strings.Join(Workloads, ", "))
		}
	}
	if c.Duration <= 0 {
		c.Duration = time.Minute
	}
	if c.Clients <= 0 {
		c.Clients = 2
	}
	if c.Nemesis.Seed == 0 {
		c.Nemesis.Seed = c.Seed
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.Cluster.Logf == nil {
		c.Cluster.Logf = c.Logf
	}
	if err := c.Nemesis.fill(); err != nil {
		return err
	}
	if err := c.Cluster.fill(); err != nil {
		return err
	}
	if c.Settle <= 0 {
		c.Settle = 3*c.Cluster.Lease + 2*time.Second
	}
	return nil
}

// settleGrace is how much longer than Settle the workloads may take to
// complete operations again after healing before liveness fails.
const settleGrace = 30 * time.Second

// worker is one client process of a workload.
type worker struct {
	workload string
	step     func(ctx context.Context, proc int, rng *rand.Rand)
}

// workers lists the client processes of the configured workloads.
func (c *RunConfig) workers(r *runner) []worker {
	var ws []worker
	add := func(n int, workload string, step func(context.Context, int, *rand.Rand)) {
		for i := 0; i < n; i++ {
			ws = append(ws, worker{workload: workload, step: step})
		}
	}
	for _, w := range c.Workloads {
		switch w {
		case WorkloadBank:
			add(c.Clients, w, r.bank)
		case WorkloadRegister:
			add(c.Clients, w, r.register)
		case WorkloadSequential:
			add(sequentialPairs, w, r.sequentialWriter)
			add(c.Clients, w, r.sequentialReader)
		case WorkloadMonotonic:
			add(2, w, r.monotonicWriter)
			add(c.Clients, w, r.monotonicReader)
		case WorkloadAppend:
			add(c.Clients, w, r.appendTxn)
		case WorkloadAcked:
			add(c.Clients, w, r.ackedWrite)
		}
	}
	return ws
}

// Run starts a cluster, runs the workloads under the nemesis for
// cfg.Duration, heals, lets the workloads run on for cfg.Settle, reads
// back what the acked workload wrote, checks the history and writes the
// run's directory. The error is for runs that could not be carried out
// (a cluster that would not start); a history the checkers reject is a
// Result whose Valid is false.
func Run(ctx context.Context, cfg RunConfig) (*Result, error) {
	if cfg.Out == "" {
		cfg.Out = "chaos-results"
	}
	started := time.Now().UTC()
	name := fmt.Sprintf("%s-seed%d", started.Format("20060102T150405Z"), cfg.Seed)
	dir := filepath.Join(cfg.Out, name)
	ownData := cfg.Cluster.Dir == ""
	if ownData {
		cfg.Cluster.Dir = filepath.Join(dir, "data")
	}
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logf := cfg.Logf
	logf("chaos: run %s: %d nodes, %d regions, %s placement, nemesis %s, workloads %s, %s",
		name, cfg.Cluster.Nodes, cfg.Cluster.Regions, cfg.Cluster.Placement,
		strings.Join(cfg.Nemesis.Families, ","), strings.Join(cfg.Workloads, ","), cfg.Duration)

	c, err := StartCluster(ctx, cfg.Cluster)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cl, err := client.New(ctx, client.Config{Addrs: c.Addrs(), Insecure: true})
	if err != nil {
		return nil, fmt.Errorf("chaos: connecting: %w", err)
	}
	defer cl.Close()

	rcv := newRecovery()
	r := newRunner(c, cl, rcv, cfg.Seed)
	if slices.Contains(cfg.Workloads, WorkloadBank) {
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := r.bankSetup(sctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("chaos: opening the bank accounts: %w", err)
		}
	}

	// The workloads.
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	for i, w := range cfg.workers(r) {
		wg.Add(1)
		go func(proc int, w worker) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(proc)+1))
			for wctx.Err() == nil {
				w.step(wctx, proc, rng)
				// An op that failed fast (no leader yet, a refused
				// connection) is not retried in a tight loop.
				if r.rec.lastFailed(proc) {
					sleepUntil(wctx, time.Now().Add(100*time.Millisecond))
				}
			}
		}(i, w)
	}

	// The nemesis, then the settle period.
	nem := &nemesis{c: c, cfg: cfg.Nemesis, rng: rand.New(rand.NewPCG(cfg.Nemesis.Seed, 0x6e656d)), rec: rcv, log: logf}
	begin := time.Now()
	nem.run(ctx, begin.Add(cfg.Duration))
	healed := time.Now()
	logf("chaos: healed after %s and %d faults; settling for %s", healed.Sub(begin).Round(time.Millisecond), len(nem.Faults()), cfg.Settle)
	sleepUntil(ctx, healed.Add(cfg.Settle))
	// A loaded machine may take longer than Settle to come back (a full
	// restart replays every log): up to settleGrace more, until every
	// workload has completed an operation after healing.
	for deadline := time.Now().Add(settleGrace); time.Now().Before(deadline) && ctx.Err() == nil; {
		if r.rec.progressSince(cfg.Workloads, healed) {
			break
		}
		sleepUntil(ctx, time.Now().Add(250*time.Millisecond))
	}
	stopWorkers()
	wg.Wait()
	interrupted := ctx.Err() != nil
	if interrupted {
		// What ran so far is still checked and written.
		logf("chaos: interrupted: checking the history so far")
		ctx = context.WithoutCancel(ctx)
	}

	// Liveness after healing, then the acked read-back.
	var extra []Verdict
	lctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	_, lerr := c.WaitLeaders(lctx, time.Minute)
	cancel()
	if slices.Contains(cfg.Workloads, WorkloadAcked) && lerr == nil {
		actx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		lerr = r.ackedFinal(actx, len(cfg.workers(r)))
		cancel()
	}
	history := r.rec.history()
	live := checkLiveness(history, cfg.Workloads, healed, lerr)
	if interrupted {
		// No settle period ran: progress after healing cannot be judged.
		live.Anomalies = slices.DeleteFunc(live.Anomalies, func(a Anomaly) bool { return a.Kind == "stalled-workload" })
		live.Valid, live.Note = len(live.Anomalies) == 0, "interrupted: progress after healing not judged"
	}
	extra = append(extra, live, checkCrashes(c.Crashes()))

	verdicts := append(Check(history), extra...)
	faults := nem.Faults()
	rcv.fill(faults)

	res := &Result{Dir: dir, History: history, Faults: faults, Verdicts: verdicts, Interrupted: interrupted}
	if interrupted {
		name += " (interrupted)"
	}
	res.Summary = Summary{
		Name: name, Seed: int64(cfg.Seed), Duration: time.Since(begin).Round(time.Millisecond),
		Nodes:     len(c.Nodes),
		Placement: fmt.Sprintf("%s, %d regions", cfg.Cluster.Placement, cfg.Cluster.Regions),
		Workloads: CountWorkloads(history), Verdicts: verdicts, Faults: faults, Replay: cfg.Replay,
	}
	c.Close() // the logs are complete once the processes are gone
	logs := map[string][]byte{}
	for _, n := range c.Nodes {
		logs[n.Name()] = n.Log()
	}
	werr := WriteRunDir(dir, RunFiles{History: history, Faults: faults, Verdicts: verdicts, Summary: res.Summary, Logs: logs,
		Title: fmt.Sprintf("chaos %s: %s", name, strings.Join(cfg.Nemesis.Families, ", "))})
	if werr != nil {
		logf("chaos: writing %s: %v", dir, werr)
	}
	if res.Valid() {
		// The data directories are only worth their space when something
		// is to be investigated.
		if ownData {
			os.RemoveAll(cfg.Cluster.Dir)
		}
	}
	if cfg.Summary != nil {
		WriteSummary(cfg.Summary, res.Summary)
		fmt.Fprintf(cfg.Summary, "results: %s\n", dir)
	}
	return res, nil
}

// checkLiveness judges what happens after the nemesis has healed
// everything: every group elects a leader and every workload (those that
// ran, and those named in workloads) completes operations of its own
// again (the acked read-back does not count). err is the failure to find
// leaders or read back the acked writes.
func checkLiveness(ops []Op, workloads []string, healed time.Time, err error) Verdict {
	stats := map[string]int{}
	var as []Anomaly
	if err != nil {
		as = append(as, Anomaly{Kind: "no-recovery", Message: err.Error()})
	}
	okAfter := map[string]int{}
	seen := map[string]bool{}
	for _, w := range workloads {
		seen[w] = true
	}
	for _, op := range ops {
		seen[op.Workload] = true
		if op.Type == OK && op.Invoke >= healed.UnixNano() && op.F != "final-read" {
			okAfter[op.Workload]++
		}
	}
	var ws []string
	for w := range seen {
		ws = append(ws, w)
	}
	sort.Strings(ws)
	for _, w := range ws {
		stats["ok-after-heal/"+w] = okAfter[w]
		if okAfter[w] == 0 {
			as = append(as, Anomaly{Kind: "stalled-workload",
				Message: fmt.Sprintf("workload %s completed no operation after the faults were healed", w)})
		}
	}
	return verdict("liveness", as, stats)
}

// checkCrashes judges the node processes: none may exit without being
// killed (a panic, a failed invariant assertion, a fatal error); the
// node's log in the run directory says why.
func checkCrashes(crashes []Crash) Verdict {
	var as []Anomaly
	for _, c := range crashes {
		as = append(as, Anomaly{Kind: "process-exited",
			Message: fmt.Sprintf("%s exited on its own at %s: %s (see logs/%s.log)", c.Node,
				time.Unix(0, c.At).UTC().Format(time.RFC3339Nano), c.Err, c.Node)})
	}
	return verdict("processes", as, map[string]int{"crashes": len(crashes)})
}

// Recheck judges a finished run again from its directory (history.jsonl
// and faults.json), with the checkers of this build: after a checker is
// improved, old runs can be judged again. Liveness is judged from the
// history alone (healing is taken to be the end of the last fault); the
// node processes' exits are not recorded there and are not judged.
func Recheck(dir string) (*Result, error) {
	f, err := os.Open(filepath.Join(dir, historyFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	history, err := ReadHistory(f)
	if err != nil {
		return nil, fmt.Errorf("chaos: %s: %w", f.Name(), err)
	}
	var faults []Fault
	if b, err := os.ReadFile(filepath.Join(dir, faultsFile)); err == nil {
		if err := json.Unmarshal(b, &faults); err != nil {
			return nil, fmt.Errorf("chaos: %s: %w", faultsFile, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var healed int64
	for _, f := range faults {
		healed = max(healed, f.End, f.Start)
	}
	verdicts := append(Check(history), checkLiveness(history, nil, time.Unix(0, healed), nil))
	res := &Result{Dir: dir, History: history, Faults: faults, Verdicts: verdicts}
	res.Summary = Summary{Name: filepath.Base(dir) + " (rechecked)", Workloads: CountWorkloads(history), Verdicts: verdicts, Faults: faults}
	if _, seed, ok := strings.Cut(filepath.Base(dir), "-seed"); ok {
		res.Summary.Seed, _ = strconv.ParseInt(seed, 10, 64)
	}
	if len(history) > 0 {
		first, last := history[0].Invoke, int64(0)
		for _, op := range history {
			first, last = min(first, op.Invoke), max(last, op.Invoke, op.Complete)
		}
		res.Summary.Duration = time.Duration(last - first)
	}
	return res, nil
}
