package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridiandb/meridian/client"
	"github.com/meridiandb/meridian/rpc/meridianpb"
)

// Workload names.
const (
	WorkloadBank       = "bank"
	WorkloadRegister   = "register"
	WorkloadSequential = "sequential"
	WorkloadMonotonic  = "monotonic"
	WorkloadAppend     = "append"
	WorkloadAcked      = "acked"
)

// Workloads lists every workload.
var Workloads = []string{WorkloadBank, WorkloadRegister, WorkloadSequential, WorkloadMonotonic, WorkloadAppend, WorkloadAcked}

// recorder collects the history as operations complete.
type recorder struct {
	mu     sync.Mutex
	ops    []Op
	failed map[int]bool     // process → its last op did not succeed
	lastOK map[string]int64 // workload → latest invocation of an op that succeeded
}

func (r *recorder) add(op Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Index = len(r.ops)
	r.ops = append(r.ops, op)
	if r.failed == nil {
		r.failed, r.lastOK = map[int]bool{}, map[string]int64{}
	}
	r.failed[op.Process] = op.Type != OK
	if op.Type == OK {
		r.lastOK[op.Workload] = max(r.lastOK[op.Workload], op.Invoke)
	}
}

// progressSince reports whether every one of workloads has an op invoked
// at or after t that succeeded.
func (r *recorder) progressSince(workloads []string, t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range workloads {
		if r.lastOK[w] < t.UnixNano() {
			return false
		}
	}
	return true
}

// lastFailed reports whether process proc's last op did not succeed.
func (r *recorder) lastFailed(proc int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed[proc]
}

func (r *recorder) history() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops)
}

// runner runs the workloads' client processes against a cluster.
type runner struct {
	c    *Cluster
	cl   *client.Client
	rec  *recorder
	rcv  *recovery
	seed uint64
	uid  atomic.Int64
	// keys per workload, spread over the shards (the key space a–z is cut
	// into one shard per region).
	prefixes []string
}

func newRunner(c *Cluster, cl *client.Client, rcv *recovery, seed uint64) *runner {
	return &runner{c: c, cl: cl, rec: &recorder{}, rcv: rcv, seed: seed, prefixes: []string{"b", "k", "t", "e", "n", "w", "h", "q", "y"}}
}

// key returns the i-th key of a workload, spread over the shards.
func (r *runner) key(workload string, i int) string {
	return fmt.Sprintf("%s/%s/%d", r.prefixes[i%len(r.prefixes)], workload, i)
}

func (r *runner) next() int64 { return r.uid.Add(1) }

func now() int64 { return time.Now().UnixNano() }

// opType classifies a client error: Fail when the operation definitely did
// not happen, Info when it may have.
func opType(err error) string {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, client.ErrCommitUnknown), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, client.ErrDeadlineExceeded), errors.Is(err, client.ErrUnavailable):
		return Info
	}
	return Fail
}

// readOnlyType classifies the error of an operation that writes nothing:
// it never happened unless it succeeded.
func readOnlyType(err error) string {
	if err == nil {
		return OK
	}
	return Fail
}

func (r *runner) record(op Op, err error) {
	if err != nil {
		op.Error = err.Error()
	}
	r.rec.add(op)
}

// acked tells the recovery measure that writes to these keys, committed
// at timestamp ts, were acknowledged now.
func (r *runner) acked(ts int64, keys ...string) {
	p := r.cl.Placement()
	t := time.Now()
	for _, k := range keys {
		if g := groupOf(p, []byte(k)); g != 0 {
			r.rcv.acked(g, t, ts)
		}
	}
}

func groupOf(p *meridianpb.Placement, key []byte) uint64 {
	for _, s := range p.GetShards() {
		if bytes.Compare(key, s.Start) >= 0 && (len(s.End) == 0 || bytes.Compare(key, s.End) < 0) {
			return s.Group
		}
	}
	return 0
}

// opCtx bounds one operation.
func opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 5*time.Second)
}

// strongRead reads key with a strong single-key read, through the client
// library or pinned to a node picked at random (a follower serves it at
// its TT.now().latest), and records nothing; node is -1 when routed.
func (r *runner) strongRead(ctx context.Context, rng *rand.Rand, key string) (val []byte, found bool, ts int64, node int, err error) {
	node = -1
	if rng.IntN(2) == 0 {
		node = rng.IntN(len(r.c.Nodes))
		api, err := r.c.API(node)
		if err != nil {
			return nil, false, 0, node, err
		}
		g := groupOf(r.cl.Placement(), []byte(key))
		resp, err := api.SnapshotRead(ctx, &meridianpb.SnapshotReadRequest{Group: g, Span: &meridianpb.KeySpan{Key: []byte(key)}, Strong: true, SingleGroup: true})
		if err != nil {
			return nil, false, 0, node, err
		}
		if len(resp.Kvs) == 0 {
			return nil, false, resp.ReadTs, node, nil
		}
		return resp.Kvs[0].Value, true, resp.ReadTs, node, nil
	}
	ro := r.cl.Single()
	v, err := ro.Get(ctx, []byte(key))
	if errors.Is(err, client.ErrNotFound) {
		return nil, false, ro.Timestamp(), node, nil
	}
	return v, err == nil, ro.Timestamp(), node, err
}

// readOp records one strong read of key (strongRead) for workload and
// returns its error.
func (r *runner) readOp(ctx context.Context, proc int, rng *rand.Rand, workload, key string) error {
	octx, cancel := opCtx(ctx)
	defer cancel()
	op := Op{Process: proc, Workload: workload, F: "read", Invoke: now()}
	v, found, ts, node, err := r.strongRead(octx, rng, key)
	op.Complete, op.Node, op.TS = now(), node, ts
	m := Mop{F: "r", Key: key, Found: found}
	if err == nil && found {
		if m.Read, err = parseValue(v); err != nil {
			err = fmt.Errorf("%s holds %q: %w", key, v, err)
		}
	}
	op.Mops, op.Type = []Mop{m}, readOnlyType(err)
	r.record(op, err)
	return err
}

// Values in the database are "<n>" or "<n>#<tag>"; only n is recorded.
func parseValue(b []byte) (int64, error) {
	s, _, _ := strings.Cut(string(b), "#")
	return strconv.ParseInt(s, 10, 64)
}

// ---------------------------------------------------------------------
// register: per-key reads, writes and compare-and-sets of unique values.

const registerKeys = 6

func (r *runner) register(ctx context.Context, proc int, rng *rand.Rand) {
	key := r.key(WorkloadRegister, rng.IntN(registerKeys))
	op := Op{Process: proc, Workload: WorkloadRegister, Node: -1, Invoke: now()}
	octx, cancel := opCtx(ctx)
	defer cancel()
	switch p := rng.IntN(10); {
	case p < 4:
		r.readOp(octx, proc, rng, WorkloadRegister, key)
	case p < 8:
		op.F = "write"
		v := r.next()
		res, err := r.cl.Apply(octx, []client.Mutation{client.Put([]byte(key), []byte(strconv.FormatInt(v, 10)))})
		op.Complete, op.Type, op.TS = now(), opType(err), res.Timestamp
		op.Mops = []Mop{{F: "w", Key: key, Value: v}}
		if err == nil {
			r.acked(op.TS, key)
		}
		r.record(op, err)
	default:
		op.F = "cas"
		v := r.next()
		var m Mop
		// done: the last attempt's body ran to its write. Attempts before
		// it were aborted (the client retries only those), so when the
		// last one stopped short, nothing was committed.
		done := false
		res, err := r.cl.ReadWriteTransaction(octx, func(ctx context.Context, t *client.ReadWriteTransaction) error {
			m, done = Mop{F: "cas", Key: key, Value: v}, false
			cur, err := t.Get(ctx, []byte(key))
			if errors.Is(err, client.ErrNotFound) {
				m.Found = false
				return errCASMismatch
			}
			if err != nil {
				return err
			}
			old, err := parseValue(cur)
			if err != nil {
				return err
			}
			m.Found, m.Read, m.Old = true, old, old
			done = true
			return t.BufferWrite(client.Put([]byte(key), []byte(strconv.FormatInt(v, 10))))
		})
		op.Complete = now()
		op.Mops = []Mop{m}
		switch {
		case errors.Is(err, errCASMismatch):
			// The key was absent: a read, and nothing written.
			op.Type, op.F, err = OK, "read", nil
			op.Mops = []Mop{{F: "r", Key: key}}
		case err != nil && !done:
			op.Type = Fail
		default:
			op.Type, op.TS = opType(err), res.Timestamp
			if err == nil {
				r.acked(op.TS, key)
			}
		}
		r.record(op, err)
	}
}

var errCASMismatch = errors.New("chaos: compare-and-set found no value")

// ---------------------------------------------------------------------
// bank: transfers between accounts on every shard; every strong snapshot
// of all accounts sums to the total.

const (
	bankAccounts = 9
	bankInitial  = 100
)

func (r *runner) bankSetup(ctx context.Context) error {
	var ms []client.Mutation
	for i := 0; i < bankAccounts; i++ {
		ms = append(ms, client.Put([]byte(r.key(WorkloadBank, i)), []byte(strconv.Itoa(bankInitial))))
	}
	for {
		_, err := r.cl.Apply(ctx, ms)
		if err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *runner) bank(ctx context.Context, proc int, rng *rand.Rand) {
	octx, cancel := opCtx(ctx)
	defer cancel()
	op := Op{Process: proc, Workload: WorkloadBank, Node: -1, Invoke: now()}
	if rng.IntN(4) == 0 {
		op.F = "audit"
		var keys [][]byte
		for i := 0; i < bankAccounts; i++ {
			keys = append(keys, []byte(r.key(WorkloadBank, i)))
		}
		ro := r.cl.ReadOnlyTransaction()
		kvs, err := ro.Read(octx, keys...)
		op.Complete, op.TS = now(), ro.Timestamp()
		found := map[string][]byte{}
		for _, kv := range kvs {
			found[string(kv.Key)] = kv.Value
		}
		for _, k := range keys {
			m := Mop{F: "r", Key: string(k)}
			if v, ok := found[string(k)]; ok && err == nil {
				m.Found = true
				if m.Read, err = parseValue(v); err != nil {
					err = fmt.Errorf("account %s holds %q: %w", k, v, err)
				}
			}
			op.Mops = append(op.Mops, m)
		}
		op.Type = readOnlyType(err)
		r.record(op, err)
		return
	}
	op.F = "transfer"
	a, b := rng.IntN(bankAccounts), rng.IntN(bankAccounts-1)
	if b >= a {
		b++
	}
	ka, kb := r.key(WorkloadBank, a), r.key(WorkloadBank, b)
	amount := int64(1 + rng.IntN(5))
	res, err := r.cl.ReadWriteTransaction(octx, func(ctx context.Context, t *client.ReadWriteTransaction) error {
		kvs, err := t.Read(ctx, []byte(ka), []byte(kb))
		if err != nil {
			return err
		}
		bal := map[string]int64{}
		for _, kv := range kvs {
			n, err := parseValue(kv.Value)
			if err != nil {
				return fmt.Errorf("account %s holds %q: %w", kv.Key, kv.Value, err)
			}
			bal[string(kv.Key)] = n
		}
		op.Mops = []Mop{{F: "r", Key: ka, Found: true, Read: bal[ka]}, {F: "r", Key: kb, Found: true, Read: bal[kb]}}
		if bal[ka] < amount {
			return nil // nothing to move: a read-only transaction
		}
		op.Mops = append(op.Mops, Mop{F: "w", Key: ka, Value: bal[ka] - amount}, Mop{F: "w", Key: kb, Value: bal[kb] + amount})
		return t.BufferWrite(client.Put([]byte(ka), []byte(strconv.FormatInt(bal[ka]-amount, 10))),
			client.Put([]byte(kb), []byte(strconv.FormatInt(bal[kb]+amount, 10))))
	})
	op.Complete, op.Type, op.TS = now(), opType(err), res.Timestamp
	if err == nil {
		r.acked(op.TS, ka, kb)
	}
	r.record(op, err)
}

// ---------------------------------------------------------------------
// sequential: a writer writes key A of a pair, then, once acknowledged,
// key B of the pair on another shard; readers read B, then A: seeing B's
// write without A's is a violation (Jepsen's sequential test).

const sequentialPairs = 3

func (r *runner) seqKeys(pair int) (string, string) {
	// A and B on different shards: prefixes a few letters apart.
	return fmt.Sprintf("c/%s/%d-a", WorkloadSequential, pair), fmt.Sprintf("u/%s/%d-b", WorkloadSequential, pair)
}

func (r *runner) sequentialWriter(ctx context.Context, proc int, rng *rand.Rand) {
	pair := proc % sequentialPairs
	ka, kb := r.seqKeys(pair)
	v := r.next()
	for _, k := range []string{ka, kb} {
		octx, cancel := opCtx(ctx)
		op := Op{Process: proc, Workload: WorkloadSequential, F: "write", Node: -1, Invoke: now(), Mops: []Mop{{F: "w", Key: k, Value: v}}}
		res, err := r.cl.Apply(octx, []client.Mutation{client.Put([]byte(k), []byte(strconv.FormatInt(v, 10)))})
		cancel()
		op.Complete, op.Type, op.TS = now(), opType(err), res.Timestamp
		r.record(op, err)
		if err != nil {
			return // B is written only after A is acknowledged
		}
		r.acked(op.TS, k)
	}
}

func (r *runner) sequentialReader(ctx context.Context, proc int, rng *rand.Rand) {
	ka, kb := r.seqKeys(rng.IntN(sequentialPairs))
	for _, k := range []string{kb, ka} {
		if r.readOp(ctx, proc, rng, WorkloadSequential, k) != nil {
			return
		}
	}
}

// ---------------------------------------------------------------------
// monotonic: writers increment counters; strong reads of a counter, by
// any reader at any node, never go back in real time.

const monotonicKeys = 3

func (r *runner) monotonicKey(i int) string { return r.key(WorkloadMonotonic, i) }

func (r *runner) monotonicWriter(ctx context.Context, proc int, rng *rand.Rand) {
	key := r.monotonicKey(rng.IntN(monotonicKeys))
	octx, cancel := opCtx(ctx)
	defer cancel()
	op := Op{Process: proc, Workload: WorkloadMonotonic, F: "txn", Node: -1, Invoke: now()}
	tag := r.next()
	res, err := r.cl.ReadWriteTransaction(octx, func(ctx context.Context, t *client.ReadWriteTransaction) error {
		cur := int64(0)
		found := false
		v, err := t.Get(ctx, []byte(key))
		switch {
		case errors.Is(err, client.ErrNotFound):
		case err != nil:
			return err
		default:
			found = true
			if cur, err = parseValue(v); err != nil {
				return err
			}
		}
		op.Mops = []Mop{{F: "r", Key: key, Found: found, Read: cur}, {F: "w", Key: key, Value: cur + 1}}
		return t.BufferWrite(client.Put([]byte(key), []byte(fmt.Sprintf("%d#%d", cur+1, tag))))
	})
	op.Complete, op.Type, op.TS = now(), opType(err), res.Timestamp
	if err == nil {
		r.acked(op.TS, key)
	}
	r.record(op, err)
}

func (r *runner) monotonicReader(ctx context.Context, proc int, rng *rand.Rand) {
	r.readOp(ctx, proc, rng, WorkloadMonotonic, r.monotonicKey(rng.IntN(monotonicKeys)))
}

// ---------------------------------------------------------------------
// append: transactions of appends to and reads of lists on every shard
// (Elle's list-append workload).

const appendKeys = 8

func (r *runner) appendTxn(ctx context.Context, proc int, rng *rand.Rand) {
	octx, cancel := opCtx(ctx)
	defer cancel()
	n := 1 + rng.IntN(3)
	type plan struct {
		key    string
		append bool
		value  int64
	}
	var plans []plan
	for i := 0; i < n; i++ {
		p := plan{key: r.key(WorkloadAppend, rng.IntN(appendKeys)), append: rng.IntN(2) == 0}
		if p.append {
			p.value = r.next()
		}
		plans = append(plans, p)
	}
	op := Op{Process: proc, Workload: WorkloadAppend, F: "txn", Node: -1, Invoke: now()}
	res, err := r.cl.ReadWriteTransaction(octx, func(ctx context.Context, t *client.ReadWriteTransaction) error {
		op.Mops = op.Mops[:0]
		lists := map[string][]int64{}
		loaded := map[string]bool{}
		load := func(k string) ([]int64, error) {
			if loaded[k] {
				return lists[k], nil
			}
			v, err := t.Get(ctx, []byte(k))
			if errors.Is(err, client.ErrNotFound) {
				loaded[k] = true
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			l, err := parseList(v)
			if err != nil {
				return nil, fmt.Errorf("list %s holds %q: %w", k, v, err)
			}
			lists[k], loaded[k] = l, true
			return l, nil
		}
		for _, p := range plans {
			l, err := load(p.key)
			if err != nil {
				return err
			}
			if !p.append {
				op.Mops = append(op.Mops, Mop{F: "r", Key: p.key, List: slices.Clone(l)})
				continue
			}
			lists[p.key] = append(slices.Clone(l), p.value)
			op.Mops = append(op.Mops, Mop{F: "append", Key: p.key, Value: p.value})
		}
		var ms []client.Mutation
		for k, l := range lists {
			for _, p := range plans {
				if p.key == k && p.append {
					ms = append(ms, client.Put([]byte(k), []byte(formatList(l))))
					break
				}
			}
		}
		return t.BufferWrite(ms...)
	})
	op.Complete, op.Type, op.TS = now(), opType(err), res.Timestamp
	writes := false
	for _, p := range plans {
		writes = writes || p.append
	}
	if !writes && op.Type == Info {
		op.Type = Fail // a transaction that wrote nothing changed nothing
	}
	if err == nil {
		for _, p := range plans {
			if p.append {
				r.acked(op.TS, p.key)
			}
		}
	}
	r.record(op, err)
}

func formatList(l []int64) string {
	var b strings.Builder
	for i, v := range l {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(v, 10))
	}
	return b.String()
}

func parseList(b []byte) ([]int64, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var out []int64
	for _, f := range strings.Split(string(b), ",") {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// ---------------------------------------------------------------------
// acked: every acknowledged write is present after healing.

func (r *runner) ackedWrite(ctx context.Context, proc int, rng *rand.Rand) {
	v := r.next()
	key := fmt.Sprintf("%s/%s/%d", r.prefixes[int(v)%len(r.prefixes)], WorkloadAcked, v)
	octx, cancel := opCtx(ctx)
	defer cancel()
	op := Op{Process: proc, Workload: WorkloadAcked, F: "write", Node: -1, Invoke: now(), Mops: []Mop{{F: "w", Key: key, Value: v}}}
	res, err := r.cl.Apply(octx, []client.Mutation{client.Put([]byte(key), []byte(strconv.FormatInt(v, 10)))})
	op.Complete, op.Type, op.TS = now(), opType(err), res.Timestamp
	if err == nil {
		r.acked(op.TS, key)
	}
	r.record(op, err)
}

// ackedFinal reads back every key an acked-workload write touched (once
// the cluster has healed) and records the reads.
func (r *runner) ackedFinal(ctx context.Context, proc int) error {
	var keys []string
	for _, op := range r.rec.history() {
		if op.Workload == WorkloadAcked && op.F == "write" && op.Type != Fail {
			keys = append(keys, op.Mops[0].Key)
		}
	}
	for _, k := range keys {
		var err error
		for attempt := 0; attempt < 10; attempt++ {
			octx, cancel := opCtx(ctx)
			op := Op{Process: proc, Workload: WorkloadAcked, F: "final-read", Node: -1, Invoke: now()}
			ro := r.cl.Single()
			var v []byte
			v, err = ro.Get(octx, []byte(k))
			cancel()
			op.Complete, op.TS = now(), ro.Timestamp()
			m := Mop{F: "r", Key: k}
			if errors.Is(err, client.ErrNotFound) {
				err = nil
			} else if err == nil {
				m.Found = true
				m.Read, err = parseValue(v)
			}
			if err == nil {
				op.Type, op.Mops = OK, []Mop{m}
				r.record(op, nil)
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("chaos: reading back %s: %w", k, err)
		}
	}
	return nil
}
