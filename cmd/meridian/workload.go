package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/spf13/cobra"

	"github.com/meridiandb/meridian/client"
	"github.com/meridiandb/meridian/rpc/meridianpb"
)

type workloadFlags struct {
	conn        connFlags
	concurrency int
	duration    time.Duration
	readPercent int
	keys        int
	valueSize   int
	accounts    int
	initial     int
	staleRead   time.Duration
	crossShard  bool
	cpuProfile  string
}

func newWorkloadCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "workload", Short: "Run a load generator against a cluster"}
	f := &workloadFlags{}
	run := &cobra.Command{
		Use:   "run kv|bank",
		Short: "Run the kv or bank workload and print per-second throughput and latency",
		Long: `run drives a closed loop of --concurrency clients for --duration and prints
a row per second: elapsed, errors, ops/sec (instantaneous and cumulative) and
latency percentiles (HdrHistogram), then a summary.

  kv    point operations on --keys keys spread over every shard:
        --read-percent strong single-key reads, the rest single-key writes.
  bank  --accounts accounts spread over every shard; each operation moves
        money between two random accounts in a read-write transaction
        (cross-shard ones use two-phase commit; --cross-shard makes every
        one cross-shard); at the end a strong read-only transaction checks
        that the total is unchanged.`,
		Example: `  meridian workload run kv --insecure --host 127.0.0.1:26257 --concurrency 64 --duration 30s --read-percent 50
  meridian workload run bank --insecure --host 127.0.0.1:26257 --concurrency 16 --duration 1m`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"kv", "bank"},
		RunE: func(cmd *cobra.Command, args []string) error {
			tuneGC()
			switch args[0] {
			case "kv", "bank":
			default:
				return fmt.Errorf("unknown workload %q (have kv, bank)", args[0])
			}
			if f.concurrency <= 0 || f.duration <= 0 || f.readPercent < 0 || f.readPercent > 100 || f.keys <= 0 || f.accounts < 2 {
				return errors.New("--concurrency and --duration must be positive, --read-percent in [0,100], --keys positive, --accounts at least 2")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			c, err := f.conn.client(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			if f.cpuProfile != "" {
				pf, err := os.Create(f.cpuProfile)
				if err != nil {
					return err
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			if args[0] == "kv" {
				return runKV(ctx, cmd.OutOrStdout(), c, f)
			}
			return runBank(ctx, cmd.OutOrStdout(), c, f)
		},
	}
	f.conn.register(run)
	fl := run.Flags()
	fl.IntVar(&f.concurrency, "concurrency", 8, "concurrent clients (closed loop)")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "how long to run")
	fl.IntVar(&f.readPercent, "read-percent", 0, "kv: percentage of operations that are reads")
	fl.IntVar(&f.keys, "keys", 10000, "kv: number of distinct keys")
	fl.IntVar(&f.valueSize, "value-size", 100, "kv: bytes per value")
	fl.IntVar(&f.accounts, "accounts", 100, "bank: number of accounts")
	fl.IntVar(&f.initial, "initial", 1000, "bank: initial balance of each account")
	fl.BoolVar(&f.conn.unary, "unary", false, "send every call as its own unary gRPC call instead of over one Batch stream per node (to compare)")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write the workload client's own CPU profile to this file")
	fl.BoolVar(&f.crossShard, "cross-shard", false, "bank: always move money between accounts of two different shards (every transaction is a two-group 2PC)")
	fl.DurationVar(&f.staleRead, "stale-read", 0, "kv: serve reads with this bounded staleness at the nearest replica instead of strong reads")
	cmd.AddCommand(run)
	return cmd
}

// spreadKey returns a key for index i whose first letter spreads keys over
// every shard (shards split the key space over a–z).
func spreadKey(kind string, i int) []byte {
	return []byte(fmt.Sprintf("%c/%s/%08d", 'a'+i%26, kind, i))
}

// recorder aggregates latencies and errors, per second and overall.
type recorder struct {
	mu       sync.Mutex
	interval *hdrhistogram.Histogram
	total    *hdrhistogram.Histogram
	errs     atomic.Int64
	ops      atomic.Int64
	errKinds sync.Map
}

func newRecorder() *recorder {
	return &recorder{interval: hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3),
		total: hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)}
}

func (r *recorder) record(d time.Duration, err error) {
	if err != nil {
		r.errs.Add(1)
		k := err.Error()
		if i := strings.Index(k, " ("); i > 0 {
			k = k[:i] // drop the details that differ per request
		}
		if len(k) > 120 {
			k = k[:120]
		}
		v, _ := r.errKinds.LoadOrStore(k, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		return
	}
	r.ops.Add(1)
	us := max(d.Microseconds(), 1)
	r.mu.Lock()
	_ = r.interval.RecordValue(us)
	_ = r.total.RecordValue(us)
	r.mu.Unlock()
}

func ms2(us int64) string { return strconv.FormatFloat(float64(us)/1000, 'f', 1, 64) }

// drive runs op from n goroutines for d, printing a row a second.
func drive(ctx context.Context, out io.Writer, n int, d time.Duration, op func(ctx context.Context, rng *rand.Rand) error) *recorder {
	rec := newRecorder()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	end, _ := ctx.Deadline()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))
			for ctx.Err() == nil {
				start := time.Now()
				err := op(ctx, rng)
				if err != nil && (ctx.Err() != nil || !time.Now().Before(end)) {
					// Cut off by the end of the run (a server may see the
					// deadline pass a moment before this process does).
					return
				}
				rec.record(time.Since(start), err)
			}
		}(i)
	}
	fmt.Fprintln(out, "_elapsed___errors__ops/sec(inst)___ops/sec(cum)__p50(ms)__p95(ms)__p99(ms)_pMax(ms)")
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	lastT := start
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-tick.C:
			ops := rec.ops.Load()
			rec.mu.Lock()
			h := rec.interval
			rec.interval = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
			rec.mu.Unlock()
			el := now.Sub(start)
			fmt.Fprintf(out, "%7.0fs %8d %14.1f %14.1f %8s %8s %8s %8s\n", el.Seconds(), rec.errs.Load(),
				float64(ops-last)/now.Sub(lastT).Seconds(), float64(ops)/el.Seconds(),
				ms2(h.ValueAtQuantile(50)), ms2(h.ValueAtQuantile(95)), ms2(h.ValueAtQuantile(99)), ms2(h.Max()))
			last, lastT = ops, now
		}
	}
	wg.Wait()
	el := time.Since(start)
	t := rec.total
	fmt.Fprintln(out)
	fmt.Fprintln(out, "_elapsed___errors_____ops(total)___ops/sec(cum)__avg(ms)__p50(ms)__p95(ms)__p99(ms)_pMax(ms)")
	fmt.Fprintf(out, "%7.1fs %8d %14d %14.1f %8s %8s %8s %8s %8s\n", el.Seconds(), rec.errs.Load(), rec.ops.Load(),
		float64(rec.ops.Load())/el.Seconds(), ms2(int64(t.Mean())), ms2(t.ValueAtQuantile(50)), ms2(t.ValueAtQuantile(95)),
		ms2(t.ValueAtQuantile(99)), ms2(t.Max()))
	rec.errKinds.Range(func(k, v any) bool {
		fmt.Fprintf(out, "  errors: %d × %s\n", v.(*atomic.Int64).Load(), k)
		return true
	})
	return rec
}

func runKV(ctx context.Context, out io.Writer, c *client.Client, f *workloadFlags) error {
	value := []byte(strings.Repeat("x", f.valueSize))
	drive(ctx, out, f.concurrency, f.duration, func(ctx context.Context, rng *rand.Rand) error {
		key := spreadKey("kv", rng.IntN(f.keys))
		if rng.IntN(100) < f.readPercent {
			ro := c.Single()
			if f.staleRead > 0 {
				ro = c.ReadOnlyTransaction().WithTimestampBound(client.MaxStaleness(f.staleRead))
			}
			_, err := ro.Get(ctx, key)
			if errors.Is(err, client.ErrNotFound) {
				err = nil
			}
			return err
		}
		_, err := c.Apply(ctx, []client.Mutation{client.Put(key, value)})
		return err
	})
	return nil
}

func bankKey(i int) []byte { return spreadKey("bank", i) }

// groupOf is the group whose shard holds key (0 if none does).
func groupOf(p *meridianpb.Placement, key []byte) uint64 {
	for _, s := range p.GetShards() {
		if bytes.Compare(key, s.Start) >= 0 && (len(s.End) == 0 || bytes.Compare(key, s.End) < 0) {
			return s.Group
		}
	}
	return 0
}

func runBank(ctx context.Context, out io.Writer, c *client.Client, f *workloadFlags) error {
	// Create the accounts (idempotent: existing accounts are kept).
	for i := 0; i < f.accounts; i += 50 {
		i := i
		_, err := c.ReadWriteTransaction(ctx, func(ctx context.Context, t *client.ReadWriteTransaction) error {
			for a := i; a < min(i+50, f.accounts); a++ {
				_, err := t.Get(ctx, bankKey(a))
				if errors.Is(err, client.ErrNotFound) {
					if err := t.BufferWrite(client.Put(bankKey(a), []byte(strconv.Itoa(f.initial)))); err != nil {
						return err
					}
					continue
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("creating accounts: %w", err)
		}
	}
	fmt.Fprintf(out, "bank: %d accounts, %d each\n", f.accounts, f.initial)
	groups := make([]uint64, f.accounts)
	distinct := map[uint64]bool{}
	for i := range groups {
		groups[i] = groupOf(c.Placement(), bankKey(i))
		distinct[groups[i]] = true
	}
	if f.crossShard && len(distinct) < 2 {
		return errors.New("--cross-shard needs accounts in at least two shards")
	}
	drive(ctx, out, f.concurrency, f.duration, func(ctx context.Context, rng *rand.Rand) error {
		a, b := rng.IntN(f.accounts), rng.IntN(f.accounts)
		for b == a || (f.crossShard && groups[a] == groups[b]) {
			b = rng.IntN(f.accounts)
		}
		amount := 1 + rng.IntN(10)
		_, err := c.ReadWriteTransaction(ctx, func(ctx context.Context, t *client.ReadWriteTransaction) error {
			// Both accounts in one call: their groups are read in parallel.
			rows, err := t.Read(ctx, bankKey(a), bankKey(b))
			if err != nil {
				return err
			}
			if len(rows) != 2 {
				return fmt.Errorf("%w: account %d or %d is missing", client.ErrNotFound, a, b)
			}
			ba, _ := strconv.Atoi(string(rows[0].Value))
			bb, _ := strconv.Atoi(string(rows[1].Value))
			if ba < amount {
				return nil
			}
			return t.BufferWrite(client.Put(bankKey(a), []byte(strconv.Itoa(ba-amount))),
				client.Put(bankKey(b), []byte(strconv.Itoa(bb+amount))))
		})
		return err
	})
	sum, n, err := bankTotal(context.Background(), c, f.accounts)
	if err != nil {
		return fmt.Errorf("checking the total: %w", err)
	}
	want := f.accounts * f.initial
	fmt.Fprintf(out, "bank check: %d accounts sum to %d (want %d): ", n, sum, want)
	if sum != want || n != f.accounts {
		fmt.Fprintln(out, "VIOLATED")
		return errors.New("bank invariant violated")
	}
	fmt.Fprintln(out, "ok")
	return nil
}

// bankTotal sums every account in one strong read-only transaction.
func bankTotal(ctx context.Context, c *client.Client, accounts int) (sum, n int, err error) {
	ro := c.ReadOnlyTransaction()
	defer ro.Close()
	for l := 0; l < 26; l++ {
		kvs, err := ro.Scan(ctx, client.Prefix([]byte(fmt.Sprintf("%c/bank/", 'a'+l))), 0, false)
		if err != nil {
			return 0, 0, err
		}
		for _, x := range kvs {
			v, err := strconv.Atoi(string(x.Value))
			if err != nil {
				return 0, 0, fmt.Errorf("account %s holds %q", x.Key, x.Value)
			}
			sum += v
			n++
		}
	}
	return sum, n, nil
}
