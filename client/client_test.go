package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/rpc/meridianpb"
)

func newClient(t testing.TB, addrs []string) *Client { return newClientMode(t, addrs, false) }

// newClientMode connects with batched calls (the default) or, when unary,
// with a unary call per request.
func newClientMode(t testing.TB, addrs []string, unary bool) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, Config{Addrs: addrs, Insecure: true, Unary: unary})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustApply(t testing.TB, c *Client, ms ...Mutation) CommitResult {
	t.Helper()
	res, err := c.Apply(testCtx(t), ms)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if res.Timestamp <= 0 || res.Attempts < 1 {
		t.Fatalf("apply: %+v", res)
	}
	return res
}

// getAt reads key at a fixed timestamp ("" and false when absent).
func getAt(t testing.TB, c *Client, ts int64, key string) (string, bool) {
	t.Helper()
	ro := c.ReadOnlyTransaction().WithTimestampBound(ReadTimestamp(ts))
	defer ro.Close()
	v, err := ro.Get(testCtx(t), []byte(key))
	if errors.Is(err, ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatalf("get %q at %d: %v", key, ts, err)
	}
	if ro.Timestamp() != ts {
		t.Fatalf("read at %d reports timestamp %d", ts, ro.Timestamp())
	}
	return string(v), true
}

func TestNewNeedsAddressesAndCredentials(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, Config{Insecure: true}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("no addresses: %v", err)
	}
	if _, err := New(ctx, Config{Addrs: []string{"127.0.0.1:1"}}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("neither TLS nor Insecure: %v", err)
	}
}

// TestClient runs the client against a four-node, three-region cluster
// (three shards split at i and r, so keys starting with a and z live in
// different shards).
// TestClient runs the client's behaviour twice: over Batch streams (the
// default) and with unary calls.
func TestClient(t *testing.T) {
	for _, mode := range []struct {
		name  string
		unary bool
	}{{"Batched", false}, {"Unary", true}} {
		t.Run(mode.name, func(t *testing.T) {
			tc := newTestCluster(t, 4)
			c := newClientMode(t, tc.addrs(), mode.unary)
			s1, err1 := c.shardOf([]byte("a"))
			s2, err2 := c.shardOf([]byte("z"))
			if err1 != nil || err2 != nil || s1.Group == s2.Group {
				t.Fatalf("shards of a and z: %v %v %v %v", s1, s2, err1, err2)
			}
			t.Run("ApplyThenSingleGet", func(t *testing.T) { testApplySingle(t, c) })
			t.Run("MissingKey", func(t *testing.T) { testMissingKey(t, c) })
			t.Run("ServerErrors", func(t *testing.T) { testServerErrors(t, c) })
			t.Run("Counter", func(t *testing.T) { testCounter(t, c) })
			t.Run("CrossShardAtomic", func(t *testing.T) { testCrossShard(t, c) })
			t.Run("ParallelRead", func(t *testing.T) { testParallelRead(t, c) })
			t.Run("ParallelTransfers", func(t *testing.T) { testParallelTransfers(t, c) })
			t.Run("ReadOnlyRead", func(t *testing.T) { testReadOnlyRead(t, c) })
			t.Run("ReadOnlyConcurrentGets", func(t *testing.T) { testReadOnlyConcurrentGets(t, c) })
			t.Run("Scan", func(t *testing.T) { testScan(t, c) })
			t.Run("Staleness", func(t *testing.T) { testStaleness(t, c) })
			t.Run("ReadTimestamp", func(t *testing.T) { testReadTimestamp(t, c) })
			t.Run("ErrorRollsBack", func(t *testing.T) { testErrorRollsBack(t, c) })
			t.Run("BeginCommitRollback", func(t *testing.T) { testBegin(t, c) })
			t.Run("ReadOnlyCommitChecksLocks", func(t *testing.T) { testReadOnlyCommitChecksLocks(t, c) })
			t.Run("FollowsLeaderHints", func(t *testing.T) { testLeaderHints(t, tc, mode.unary) })
			t.Run("BeyondRetention", func(t *testing.T) { testBeyondRetention(t, tc, c) })
		})
	}
}

func testApplySingle(t *testing.T, c *Client) {
	ctx := testCtx(t)
	for i, key := range []string{"b/single", "k/single", "y/single"} { // one per shard
		val := fmt.Sprintf("value-%d", i)
		res := mustApply(t, c, Put([]byte(key), []byte(val)))
		ro := c.Single()
		v, err := ro.Get(ctx, []byte(key))
		if err != nil || string(v) != val {
			t.Fatalf("single get %q: %q %v", key, v, err)
		}
		if ro.Timestamp() < res.Timestamp {
			t.Fatalf("strong read at %d misses the commit at %d", ro.Timestamp(), res.Timestamp)
		}
		// A strong read-only transaction over several keys sees it too.
		rot := c.ReadOnlyTransaction()
		v, err = rot.Get(ctx, []byte(key))
		if err != nil || string(v) != val || rot.Timestamp() < res.Timestamp {
			t.Fatalf("read-only get %q: %q %v at %d (commit %d)", key, v, err, rot.Timestamp(), res.Timestamp)
		}
		rot.Close()
	}
	// A delete is seen as absence.
	mustApply(t, c, Delete([]byte("b/single")))
	if _, err := c.Single().Get(ctx, []byte("b/single")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
}

func testMissingKey(t *testing.T, c *Client) {
	ctx := testCtx(t)
	if _, err := c.Single().Get(ctx, []byte("b/never-written")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("single: %v, want ErrNotFound", err)
	}
	ro := c.ReadOnlyTransaction().WithTimestampBound(MaxStaleness(10 * time.Second))
	if _, err := ro.Get(ctx, []byte("z/never-written")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stale read: %v, want ErrNotFound", err)
	}
	_, err := c.ReadWriteTransaction(ctx, func(ctx context.Context, tx *ReadWriteTransaction) error {
		_, err := tx.Get(ctx, []byte("k/never-written"))
		return err
	})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("read-write: %v, want ErrNotFound", err)
	}
}

// testServerErrors: errors from the server keep their code for both
// errors.Is and status.Code.
func testServerErrors(t *testing.T, c *Client) {
	ctx := testCtx(t)
	_, err := c.Apply(ctx, []Mutation{Put(bytes.Repeat([]byte("k"), 5000), []byte("v"))})
	if !errors.Is(err, ErrInvalidArgument) || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("oversized key: %v (code %v)", err, status.Code(err))
	}
	_, err = c.Apply(ctx, []Mutation{Put([]byte("b/big"), make([]byte, 1<<20+1))})
	if !errors.Is(err, ErrInvalidArgument) || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("oversized value: %v (code %v)", err, status.Code(err))
	}
	_, err = c.Single().Get(ctx, bytes.Repeat([]byte("k"), 5000))
	if !errors.Is(err, ErrInvalidArgument) || status.Code(err) != codes.InvalidArgument || errors.Is(err, ErrNotFound) {
		t.Fatalf("oversized read key: %v (code %v)", err, status.Code(err))
	}
	if _, err := c.Apply(ctx, []Mutation{Put(nil, []byte("v"))}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty key: %v", err)
	}
}

// testCounter: eight goroutines increment one counter 25 times each in
// read-modify-write transactions; aborts are retried inside
// ReadWriteTransaction and the counter ends at exactly 200.
func testCounter(t *testing.T, c *Client) {
	ctx := testCtx(t)
	key := []byte("c/counter")
	const workers, increments = 8, 25
	var attempts, commits atomic.Int64
	var mu sync.Mutex
	var stamps []int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range increments {
				res, err := c.ReadWriteTransaction(ctx, func(ctx context.Context, tx *ReadWriteTransaction) error {
					n := 0
					v, err := tx.Get(ctx, key)
					switch {
					case errors.Is(err, ErrNotFound):
					case err != nil:
						return err
					default:
						if n, err = strconv.Atoi(string(v)); err != nil {
							return err
						}
					}
					return tx.BufferWrite(Put(key, []byte(strconv.Itoa(n+1))))
				})
				if err != nil {
					errs <- err
					return
				}
				attempts.Add(int64(res.Attempts))
				commits.Add(1)
				mu.Lock()
				stamps = append(stamps, res.Timestamp)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("increment: %v", err)
	}
	v, err := c.Single().Get(ctx, key)
	if err != nil || string(v) != strconv.Itoa(workers*increments) {
		t.Fatalf("counter = %q (%v), want %d", v, err, workers*increments)
	}
	// Every commit has its own timestamp, and the value at each is the
	// number of commits up to it.
	slices.Sort(stamps)
	for i := 1; i < len(stamps); i++ {
		if stamps[i] == stamps[i-1] {
			t.Fatalf("two increments committed at %d", stamps[i])
		}
	}
	for _, i := range []int{0, 1, len(stamps) / 2, len(stamps) - 1} {
		if v, ok := getAt(t, c, stamps[i], string(key)); !ok || v != strconv.Itoa(i+1) {
			t.Fatalf("counter at the %d-th commit (%d) = %q %v, want %d", i+1, stamps[i], v, ok, i+1)
		}
	}
	t.Logf("%d increments took %d attempts (%d retried after aborts)", commits.Load(), attempts.Load(), attempts.Load()-commits.Load())
}

// testCrossShard: a transaction writing in two shards commits atomically:
// a snapshot sees both writes or neither, at any timestamp.
func testCrossShard(t *testing.T, c *Client) {
	ctx := testCtx(t)
	ka, kz := []byte("a/xfer"), []byte("z/xfer")
	var prev int64
	for round := 1; round <= 5; round++ {
		val := []byte(strconv.Itoa(round))
		res, err := c.ReadWriteTransaction(ctx, func(ctx context.Context, tx *ReadWriteTransaction) error {
			// Read both (locks in both shards), then write both.
			for _, k := range [][]byte{ka, kz} {
				if _, err := tx.Get(ctx, k); err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
			}
			return tx.BufferWrite(Put(ka, val), Put(kz, val))
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if res.Timestamp <= prev {
			t.Fatalf("round %d committed at %d, not after %d", round, res.Timestamp, prev)
		}
		prev = res.Timestamp
		for _, at := range []struct {
			ts   int64
			want string // "" : absent
		}{{res.Timestamp, string(val)}, {res.Timestamp - 1, map[bool]string{true: "", false: strconv.Itoa(round - 1)}[round == 1]}} {
			ro := c.ReadOnlyTransaction().WithTimestampBound(ReadTimestamp(at.ts))
			var got []string
			for _, k := range [][]byte{ka, kz} {
				v, err := ro.Get(ctx, k)
				switch {
				case errors.Is(err, ErrNotFound):
					got = append(got, "")
				case err != nil:
					t.Fatalf("read %q at %d: %v", k, at.ts, err)
				default:
					got = append(got, string(v))
				}
			}
			if got[0] != at.want || got[1] != at.want {
				t.Fatalf("round %d at %d (commit %d): a=%q z=%q, want both %q", round, at.ts, res.Timestamp, got[0], got[1], at.want)
			}
			// A scan over both shards in one snapshot agrees.
			kvs, err := ro.Scan(ctx, KeyRange{Start: ka, End: kz, Kind: ClosedClosed}, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			found := 0
			for _, kv := range kvs {
				if bytes.Equal(kv.Key, ka) || bytes.Equal(kv.Key, kz) {
					found++
					if string(kv.Value) != at.want || kv.TS > at.ts {
						t.Fatalf("scan at %d: %q=%q@%d", at.ts, kv.Key, kv.Value, kv.TS)
					}
				}
			}
			if (at.want == "") != (found == 0) || (found != 0 && found != 2) {
				t.Fatalf("scan at %d found %d of the two keys", at.ts, found)
			}
			ro.Close()
		}
		// A strong snapshot, too.
		ro := c.ReadOnlyTransaction()
		va, erra := ro.Get(ctx, ka)
		vz, errz := ro.Get(ctx, kz)
		if erra != nil || errz != nil || string(va) != string(val) || string(vz) != string(val) || ro.Timestamp() < res.Timestamp {
			t.Fatalf("strong read after round %d: %q %q (%v %v) at %d", round, va, vz, erra, errz, ro.Timestamp())
		}
	}
}

// testParallelRead: Read returns the present keys of both shards, in the
// order asked, under locks that hold until the commit; Gets from several
// goroutines share one transaction.
func testParallelRead(t *testing.T, c *Client) {
	ctx := testCtx(t)
	mustApply(t, c, Put([]byte("a/par1"), []byte("a1")), Put([]byte("a/par2"), []byte("a2")), Put([]byte("z/par1"), []byte("z1")))
	tx := c.Begin()
	rows, err := tx.Read(ctx, []byte("z/par1"), []byte("a/absent"), []byte("a/par1"), []byte("z/absent"), []byte("a/par2"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, string(r.Key)+"="+string(r.Value))
		if r.TS <= 0 {
			t.Fatalf("%s read without its version's timestamp", r.Key)
		}
	}
	if want := []string{"z/par1=z1", "a/par1=a1", "a/par2=a2"}; !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	// Concurrent Gets on one transaction (the race detector watches).
	var wg sync.WaitGroup
	for _, k := range []string{"a/par1", "z/par1", "a/par2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tx.Get(ctx, []byte(k)); err != nil {
				t.Errorf("get %s: %v", k, err)
			}
		}()
	}
	wg.Wait()
	if err := tx.BufferWrite(Put([]byte("a/par1"), []byte("a1'")), Put([]byte("z/par1"), []byte("z1'"))); err != nil {
		t.Fatal(err)
	}
	// The read locks hold: a write to a read key waits for the commit.
	quick, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := c.Apply(quick, []Mutation{Put([]byte("z/absent"), []byte("late"))}); err == nil {
		t.Fatal("a write to a key the transaction read committed while it held the lock")
	}
	res, err := tx.Commit(ctx)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	for k, want := range map[string]string{"a/par1": "a1'", "z/par1": "z1'"} {
		if v, ok := getAt(t, c, res.Timestamp, k); !ok || v != want {
			t.Fatalf("%s at the commit: %q, want %q", k, v, want)
		}
	}
	if v, ok := getAt(t, c, res.Timestamp, "z/absent"); ok {
		t.Fatalf("z/absent at the commit: %q, want absent", v)
	}
}

// testReadOnlyRead: a read-only transaction's Read returns the present
// keys of both shards in the order asked, all from one snapshot, under
// every kind of bound.
func testReadOnlyRead(t *testing.T, c *Client) {
	ctx := testCtx(t)
	first := mustApply(t, c, Put([]byte("a/ror"), []byte("1")), Put([]byte("z/ror"), []byte("1")))
	second := mustApply(t, c, Put([]byte("a/ror"), []byte("2")), Put([]byte("z/ror"), []byte("2")))
	keys := [][]byte{[]byte("z/ror"), []byte("a/absent-ror"), []byte("a/ror")}
	for _, tc := range []struct {
		name  string
		bound TimestampBound
		want  string // both keys' value
	}{
		{"strong", StrongRead(), "2"},
		{"at the first commit", ReadTimestamp(first.Timestamp), "1"},
		{"at the second commit", ReadTimestamp(second.Timestamp), "2"},
		{"max staleness", MaxStaleness(time.Hour), ""},
		{"exact staleness", ExactStaleness(time.Millisecond), ""},
	} {
		ro := c.ReadOnlyTransaction().WithTimestampBound(tc.bound)
		rows, err := ro.Read(ctx, keys...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		ts := ro.Timestamp()
		if len(rows) != 2 || string(rows[0].Key) != "z/ror" || string(rows[1].Key) != "a/ror" {
			t.Fatalf("%s: read %v, want z/ror then a/ror", tc.name, showKVs(rows))
		}
		if rows[0].TS > ts || rows[1].TS > ts || ts == 0 {
			t.Fatalf("%s: versions at %d and %d read at %d", tc.name, rows[0].TS, rows[1].TS, ts)
		}
		// One snapshot: both keys were written together.
		if string(rows[0].Value) != string(rows[1].Value) || tc.want != "" && string(rows[0].Value) != tc.want {
			t.Fatalf("%s: z=%q a=%q at %d, want both %q", tc.name, rows[0].Value, rows[1].Value, ts, tc.want)
		}
		if tc.bound.kind == boundStrong && ts < second.Timestamp {
			t.Fatalf("strong read at %d, before the commit at %d", ts, second.Timestamp)
		}
		ro.Close()
		// A context that ended is an error, never keys read as absent.
		ended, cancel := context.WithCancel(ctx)
		cancel()
		for _, ks := range [][][]byte{keys, keys[2:]} {
			ro := c.ReadOnlyTransaction().WithTimestampBound(tc.bound)
			if rows, err := ro.Read(ended, ks...); status.Code(err) != codes.Canceled {
				t.Fatalf("%s: read of %d keys with an ended context: %v %v, want CANCELED", tc.name, len(ks), showKVs(rows), err)
			}
		}
	}
}

// testReadOnlyConcurrentGets: Gets from several goroutines at once on a
// fresh read-only transaction read one snapshot: the first read picks the
// timestamp while the others wait for it. A writer keeps committing both
// keys together, so two timestamps would show as two values.
func testReadOnlyConcurrentGets(t *testing.T, c *Client) {
	ctx := testCtx(t)
	mustApply(t, c, Put([]byte("a/rocg"), []byte("0")), Put([]byte("z/rocg"), []byte("0")))
	stop := make(chan struct{})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			v := []byte(strconv.Itoa(i))
			if _, err := c.Apply(ctx, []Mutation{Put([]byte("a/rocg"), v), Put([]byte("z/rocg"), v)}); err != nil {
				t.Errorf("writer: %v", err)
				return
			}
		}
	}()
	defer func() { close(stop); <-wrote }()
	for i := range 200 {
		bound, name := StrongRead(), "strong"
		if i%2 == 1 {
			bound, name = ExactStaleness(time.Millisecond), "exact staleness"
		}
		ro := c.ReadOnlyTransaction().WithTimestampBound(bound)
		var vals [2][]byte
		var rows []KeyValue
		var errs [3]error
		var endedErr error
		ended, cancel := context.WithCancel(ctx)
		cancel()
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j, read := range []func(){
			func() { vals[0], errs[0] = ro.Get(ctx, []byte("a/rocg")) },
			func() { vals[1], errs[1] = ro.Get(ctx, []byte("z/rocg")) },
			// Both groups in one call: a strong one picks its timestamp first.
			func() { rows, errs[2] = ro.Read(ctx, []byte("z/rocg"), []byte("a/rocg")) },
			// A read whose context ended fails, and hands the turn on if it had it.
			func() { _, endedErr = ro.Get(ended, []byte("z/rocg")) },
		} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if j < 3 {
					<-start
				}
				read()
			}()
		}
		close(start)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil || errs[2] != nil {
			t.Fatalf("round %d: %v %v %v", i, errs[0], errs[1], errs[2])
		}
		if status.Code(endedErr) != codes.Canceled {
			t.Fatalf("round %d: a read with an ended context returned %v, want CANCELED", i, endedErr)
		}
		if len(rows) != 2 || string(vals[0]) != string(vals[1]) || string(rows[0].Value) != string(vals[0]) || string(rows[1].Value) != string(vals[0]) {
			t.Fatalf("round %d (%s): concurrent first reads saw a=%s z=%s and %v, more than one snapshot", i, name, vals[0], vals[1], showKVs(rows))
		}
	}
}

// testParallelTransfers: concurrent transfers that read both accounts at
// once (one in each shard) keep the total, and none deadlocks: every group
// orders them by the priority the client stamped.
func testParallelTransfers(t *testing.T, c *Client) {
	ctx := testCtx(t)
	const accounts, initial = 3, 100
	key := func(i int) []byte { return []byte(fmt.Sprintf("%c/ptx%d", "az"[i%2], i)) }
	var init []Mutation
	for i := 0; i < 2*accounts; i++ {
		init = append(init, Put(key(i), []byte(strconv.Itoa(initial))))
	}
	mustApply(t, c, init...)
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range 10 {
				a, b := 2*rng.IntN(accounts), 2*rng.IntN(accounts)+1 // a in shard a, b in shard z
				if rng.IntN(2) == 0 {
					a, b = b, a
				}
				began := time.Now()
				_, err := c.ReadWriteTransaction(ctx, func(ctx context.Context, tx *ReadWriteTransaction) error {
					rows, err := tx.Read(ctx, key(a), key(b))
					if err != nil {
						return err
					}
					if len(rows) != 2 {
						return fmt.Errorf("read %d rows of 2", len(rows))
					}
					va, _ := strconv.Atoi(string(rows[0].Value))
					vb, _ := strconv.Atoi(string(rows[1].Value))
					return tx.BufferWrite(Put(key(a), []byte(strconv.Itoa(va-1))), Put(key(b), []byte(strconv.Itoa(vb+1))))
				})
				if err != nil {
					t.Errorf("transfer %d→%d: %v", a, b, err)
					return
				}
				// Two groups ordering the transfers differently would
				// deadlock them until a lock wait (5 s) gives up.
				if took := time.Since(began); took >= 5*time.Second {
					t.Errorf("transfer %d→%d took %v: a lock wait ran out", a, b, took)
				}
			}
		}()
	}
	wg.Wait()
	ro := c.ReadOnlyTransaction()
	defer ro.Close()
	sum := 0
	for i := 0; i < 2*accounts; i++ {
		v, err := ro.Get(ctx, key(i))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(string(v))
		sum += n
	}
	if sum != 2*accounts*initial {
		t.Fatalf("accounts sum to %d, want %d", sum, 2*accounts*initial)
	}
}

// TestNoteEpoch: the first answer's lock epoch holds for a group; answers
// from another leadership poison the transaction, and its commit aborts.
func TestNoteEpoch(t *testing.T) {
	c := &Client{}
	tx := c.newTxn(1)
	tx.shards[7] = &meridianpb.ShardInfo{Group: 7}
	tx.reads[7] = 0
	if err := tx.noteEpoch(7, 41); err != nil || tx.reads[7] != 41 {
		t.Fatalf("first answer: %v, epoch %d", err, tx.reads[7])
	}
	if err := tx.noteEpoch(7, 41); err != nil {
		t.Fatalf("same epoch again: %v", err)
	}
	if err := tx.noteEpoch(7, 42); !errors.Is(err, ErrAborted) {
		t.Fatalf("another leadership's answer: %v, want ErrAborted", err)
	}
	if tx.reads[7] != 41 {
		t.Fatalf("the epoch moved to %d", tx.reads[7])
	}
	// Even with nothing written the commit reports it: the reads it
	// returned were not all protected.
	if _, _, err := tx.commitRequest(); !errors.Is(err, ErrAborted) {
		t.Fatalf("read-only commit after lost locks: %v, want ErrAborted", err)
	}
	tx.writes[7] = []*meridianpb.Mutation{{Key: []byte("k")}}
	if _, _, err := tx.commitRequest(); !errors.Is(err, ErrAborted) {
		t.Fatalf("commit after lost locks: %v, want ErrAborted", err)
	}
}

// testScan checks scans over the shard boundaries (i and r) against a
// model: one full snapshot scan at a fixed timestamp.
func testScan(t *testing.T, c *Client) {
	ctx := testCtx(t)
	keys := []string{"h", "h\x00", "h\xff", "h\xff\xff", "i", "i\x00", "i1", "m", "q\xff", "r", "r\x00", "r1", "s"}
	var ms []Mutation
	for i, k := range keys {
		ms = append(ms, Put([]byte(k), []byte(fmt.Sprintf("v%d", i))))
	}
	res := mustApply(t, c, ms...)
	snap := func() *ReadOnlyTransaction {
		return c.ReadOnlyTransaction().WithTimestampBound(ReadTimestamp(res.Timestamp))
	}
	all, err := snap().Scan(ctx, KeyRange{}, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		j := slices.IndexFunc(all, func(kv KeyValue) bool { return string(kv.Key) == k })
		if j < 0 || string(all[j].Value) != fmt.Sprintf("v%d", i) || all[j].TS != res.Timestamp {
			t.Fatalf("full scan lacks %q=v%d@%d: %v", k, i, res.Timestamp, all)
		}
	}
	if !slices.IsSortedFunc(all, func(a, b KeyValue) int { return bytes.Compare(a.Key, b.Key) }) {
		t.Fatal("full scan out of order")
	}
	rev, err := snap().Scan(ctx, KeyRange{}, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(rev)
	if !sameKVs(rev, all) {
		t.Fatalf("reverse full scan differs")
	}
	model := func(r KeyRange, limit int, reverse bool) []KeyValue {
		var out []KeyValue
		for _, kv := range all {
			k := kv.Key
			in := r.Start == nil || bytes.Compare(k, r.Start) > 0 || (bytes.Equal(k, r.Start) && (r.Kind == ClosedOpen || r.Kind == ClosedClosed))
			in = in && (r.End == nil || bytes.Compare(k, r.End) < 0 || (bytes.Equal(k, r.End) && (r.Kind == ClosedClosed || r.Kind == OpenClosed)))
			if in {
				out = append(out, kv)
			}
		}
		if reverse {
			slices.Reverse(out)
		}
		if limit > 0 && len(out) > limit {
			out = out[:limit]
		}
		return out
	}
	bounds := [][]byte{nil, []byte("a"), []byte("h"), []byte("h\xff"), []byte("i"), []byte("i\x00"), []byte("m"), []byte("r"), []byte("r\x00"), []byte("s"), []byte("zzz")}
	rng := rand.New(rand.NewPCG(11, 12))
	type scanCase struct {
		r       KeyRange
		limit   int
		reverse bool
	}
	var cases []scanCase
	for _, kind := range []RangeKind{ClosedOpen, ClosedClosed, OpenOpen, OpenClosed} {
		// Across both boundaries, exactly on them, and unbounded.
		cases = append(cases,
			scanCase{KeyRange{Start: []byte("h"), End: []byte("r"), Kind: kind}, 0, false},
			scanCase{KeyRange{Start: []byte("h"), End: []byte("r"), Kind: kind}, 0, true},
			scanCase{KeyRange{Start: []byte("i"), End: []byte("s"), Kind: kind}, 3, false},
			scanCase{KeyRange{Start: []byte("i"), End: []byte("s"), Kind: kind}, 3, true},
			scanCase{KeyRange{Start: []byte("h\xff"), Kind: kind}, 0, true},
			scanCase{KeyRange{End: []byte("i"), Kind: kind}, 2, true},
		)
	}
	for range 80 {
		lo, hi := bounds[rng.IntN(len(bounds))], bounds[rng.IntN(len(bounds))]
		if lo != nil && hi != nil && bytes.Compare(lo, hi) > 0 {
			lo, hi = hi, lo
		}
		cases = append(cases, scanCase{KeyRange{Start: lo, End: hi, Kind: RangeKind(rng.IntN(4))}, []int{0, 1, 2, 5}[rng.IntN(4)], rng.IntN(2) == 0})
	}
	for _, sc := range cases {
		want := model(sc.r, sc.limit, sc.reverse)
		got, err := snap().Scan(ctx, sc.r, sc.limit, sc.reverse)
		if err != nil {
			t.Fatalf("scan %s limit %d reverse %v: %v", showRange(sc.r), sc.limit, sc.reverse, err)
		}
		if !sameKVs(got, want) {
			t.Fatalf("scan %s limit %d reverse %v:\n got %s\nwant %s", showRange(sc.r), sc.limit, sc.reverse, showKVs(got), showKVs(want))
		}
	}
	// Empty ranges read nothing.
	for _, r := range []KeyRange{
		{Start: []byte("m"), End: []byte("m"), Kind: ClosedOpen},
		{Start: []byte("m"), End: []byte("m"), Kind: OpenOpen},
		{Start: []byte("m"), End: []byte("m\x00"), Kind: OpenOpen},
		{Start: []byte("s"), End: []byte("h"), Kind: ClosedClosed},
	} {
		got, err := snap().Scan(ctx, r, 0, false)
		if err != nil || len(got) != 0 {
			t.Errorf("empty range %s: %s %v", showRange(r), showKVs(got), err)
		}
	}
	// The same ranges in a read-write transaction (locking reads of the
	// latest data, which no one changes meanwhile).
	latest := 0
	for _, sc := range cases[:24] {
		want := model(sc.r, sc.limit, sc.reverse)
		_, err := c.ReadWriteTransaction(ctx, func(ctx context.Context, tx *ReadWriteTransaction) error {
			got, err := tx.Scan(ctx, sc.r, sc.limit, sc.reverse)
			if err != nil {
				return err
			}
			if !sameKVs(got, want) {
				return fmt.Errorf("locking scan %s limit %d reverse %v:\n got %s\nwant %s", showRange(sc.r), sc.limit, sc.reverse, showKVs(got), showKVs(want))
			}
			latest++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if latest == 0 {
		t.Fatal("no locking scan ran")
	}
	// A strong scan across shards picks one timestamp, after the write.
	ro := c.ReadOnlyTransaction()
	got, err := ro.Scan(ctx, KeyRange{Start: []byte("h"), End: []byte("s"), Kind: ClosedClosed}, 0, false)
	if err != nil || !sameKVs(got, model(KeyRange{Start: []byte("h"), End: []byte("s"), Kind: ClosedClosed}, 0, false)) || ro.Timestamp() < res.Timestamp {
		t.Fatalf("strong scan at %d: %s %v", ro.Timestamp(), showKVs(got), err)
	}
}

func sameKVs(a, b []KeyValue) bool {
	return slices.EqualFunc(a, b, func(x, y KeyValue) bool {
		return bytes.Equal(x.Key, y.Key) && bytes.Equal(x.Value, y.Value) && x.TS == y.TS
	})
}

func showKVs(kvs []KeyValue) string {
	var b bytes.Buffer
	for _, kv := range kvs {
		fmt.Fprintf(&b, "%q ", kv.Key)
	}
	return "[" + b.String() + "]"
}

func showRange(r KeyRange) string {
	l, h := "[", "]"
	if r.Kind == OpenOpen || r.Kind == OpenClosed {
		l = "("
	}
	if r.Kind == ClosedOpen || r.Kind == OpenOpen {
		h = ")"
	}
	return fmt.Sprintf("%s%q, %q%s", l, r.Start, r.End, h)
}

func testStaleness(t *testing.T, c *Client) {
	ctx := testCtx(t)
	key := []byte("d/stale")
	res := mustApply(t, c, Put(key, []byte("old enough")))
	// Wait until the write is 300 ms old.
	time.Sleep(time.Until(time.Unix(0, res.Timestamp).Add(300 * time.Millisecond)))

	before := time.Now().UnixNano()
	ro := c.ReadOnlyTransaction().WithTimestampBound(MaxStaleness(10 * time.Second))
	_, err := ro.Get(ctx, key)
	if err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatalf("max staleness: %v", err)
	}
	// (Safe time can lead the wall clock by up to ε, 500 µs here.)
	if ts := ro.Timestamp(); ts <= 0 || ts > time.Now().UnixNano()+int64(time.Millisecond) || ts < before-int64(10*time.Second)-int64(time.Millisecond) {
		t.Fatalf("max staleness read at %d, now %d", ts, time.Now().UnixNano())
	}
	// Several reads of one bounded-stale transaction share its timestamp.
	first := ro.Timestamp()
	if _, err := ro.Get(ctx, []byte("z/stale-other")); !errors.Is(err, ErrNotFound) || ro.Timestamp() != first {
		t.Fatalf("second read: %v at %d (first at %d)", err, ro.Timestamp(), first)
	}

	for _, d := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond} {
		before := time.Now().UnixNano()
		ro := c.ReadOnlyTransaction().WithTimestampBound(ExactStaleness(d))
		v, err := ro.Get(ctx, key)
		after := time.Now().UnixNano()
		if err != nil || string(v) != "old enough" {
			t.Fatalf("exact staleness %s: %q %v", d, v, err)
		}
		// TT.now().latest - d at the replica: within ε (500 µs) of wall
		// time - d, taken while the read ran.
		if ts := ro.Timestamp(); ts < before-int64(d)-int64(time.Millisecond) || ts > after-int64(d)+int64(time.Millisecond) {
			t.Fatalf("exact staleness %s read at %d, want in [%d, %d]", d, ts, before-int64(d), after-int64(d))
		}
	}
	// Exactly stale past the write: not there yet.
	ro = c.ReadOnlyTransaction().WithTimestampBound(ExactStaleness(time.Since(time.Unix(0, res.Timestamp)) + time.Second))
	if _, err := ro.Get(ctx, key); !errors.Is(err, ErrNotFound) || ro.Timestamp() >= res.Timestamp {
		t.Fatalf("exact staleness before the write: %v at %d (write at %d)", err, ro.Timestamp(), res.Timestamp)
	}

	// MinReadTimestamp: at least the commit, so the write is seen.
	res2 := mustApply(t, c, Put(key, []byte("newer")))
	ro = c.ReadOnlyTransaction().WithTimestampBound(MinReadTimestamp(res2.Timestamp))
	v, err := ro.Get(ctx, key)
	if err != nil || string(v) != "newer" || ro.Timestamp() < res2.Timestamp {
		t.Fatalf("min read timestamp %d: %q %v at %d", res2.Timestamp, v, err, ro.Timestamp())
	}
}

func testReadTimestamp(t *testing.T, c *Client) {
	key := "e/versions"
	r1 := mustApply(t, c, Put([]byte(key), []byte("one")))
	r2 := mustApply(t, c, Put([]byte(key), []byte("two")))
	r3 := mustApply(t, c, Delete([]byte(key)))
	if !(r1.Timestamp < r2.Timestamp && r2.Timestamp < r3.Timestamp) {
		t.Fatalf("commit timestamps %d %d %d", r1.Timestamp, r2.Timestamp, r3.Timestamp)
	}
	for _, at := range []struct {
		ts   int64
		want string
		ok   bool
	}{
		{r1.Timestamp - 1, "", false},
		{r1.Timestamp, "one", true},
		{r2.Timestamp - 1, "one", true},
		{r2.Timestamp, "two", true},
		{r3.Timestamp - 1, "two", true},
		{r3.Timestamp, "", false},
	} {
		if v, ok := getAt(t, c, at.ts, key); v != at.want || ok != at.ok {
			t.Errorf("at %d: %q %v, want %q %v", at.ts, v, ok, at.want, at.ok)
		}
	}
}

// testErrorRollsBack: a function returning an error ends the transaction
// and releases its locks at once.
func testErrorRollsBack(t *testing.T, c *Client) {
	ctx := testCtx(t)
	keys := [][]byte{[]byte("f/locked"), []byte("x/locked")}
	mustApply(t, c, Put(keys[0], []byte("0")), Put(keys[1], []byte("0")))
	boom := errors.New("boom")
	res, err := c.ReadWriteTransaction(ctx, func(ctx context.Context, tx *ReadWriteTransaction) error {
		for _, k := range keys {
			if _, err := tx.Get(ctx, k); err != nil {
				return err
			}
		}
		if err := tx.BufferWrite(Put(keys[0], []byte("never")), Put(keys[1], []byte("never"))); err != nil {
			return err
		}
		return fmt.Errorf("giving up: %w", boom)
	})
	if !errors.Is(err, boom) || res.Attempts != 1 || res.Timestamp != 0 {
		t.Fatalf("failed transaction: %+v %v", res, err)
	}
	// A younger transaction would wait up to the lock wait (5 s) behind
	// locks still held: it must get them at once.
	quick, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	tx := c.Begin()
	for _, k := range keys {
		v, err := tx.Get(quick, k)
		if err != nil || string(v) != "0" {
			t.Fatalf("reading %q after the rollback: %q %v", k, v, err)
		}
	}
	if err := tx.BufferWrite(Put(keys[0], []byte("1")), Put(keys[1], []byte("1"))); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Commit(quick); err != nil {
		t.Fatalf("commit after the rollback: %v", err)
	}
}

func testBegin(t *testing.T, c *Client) {
	ctx := testCtx(t)
	// Commit.
	tx := c.Begin()
	if _, err := tx.Get(ctx, []byte("g/begin")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get: %v", err)
	}
	if err := tx.BufferWrite(Put([]byte("g/begin"), []byte("committed")), Put([]byte("w/begin"), []byte("committed"))); err != nil {
		t.Fatal(err)
	}
	res, err := tx.Commit(ctx)
	if err != nil || res.Timestamp <= 0 || res.Attempts != 1 {
		t.Fatalf("commit: %+v %v", res, err)
	}
	for _, k := range []string{"g/begin", "w/begin"} {
		if v, ok := getAt(t, c, res.Timestamp, k); !ok || v != "committed" {
			t.Fatalf("%s at the commit: %q %v", k, v, ok)
		}
	}
	// Rollback: nothing written, locks released.
	tx = c.Begin()
	if _, err := tx.Get(ctx, []byte("g/begin")); err != nil {
		t.Fatal(err)
	}
	if err := tx.BufferWrite(Put([]byte("g/begin"), []byte("rolled back"))); err != nil {
		t.Fatal(err)
	}
	tx.Rollback(ctx)
	quick, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res2, err := c.Apply(quick, []Mutation{Put([]byte("g/begin"), []byte("after"))})
	if err != nil {
		t.Fatalf("write after rollback: %v", err)
	}
	if v, ok := getAt(t, c, res2.Timestamp-1, "g/begin"); !ok || v != "committed" {
		t.Fatalf("the rolled back write is visible: %q", v)
	}
	// A transaction that only read commits nothing.
	tx = c.Begin()
	if _, err := tx.Get(ctx, []byte("g/begin")); err != nil {
		t.Fatal(err)
	}
	if res, err := tx.Commit(ctx); err != nil || res.Timestamp != 0 {
		t.Fatalf("read-only commit: %+v %v", res, err)
	}
	if _, err := c.Apply(quick, []Mutation{Put([]byte("g/begin"), []byte("again"))}); err != nil {
		t.Fatalf("write after a read-only commit: %v", err)
	}
}

// testReadOnlyCommitChecksLocks: a transaction that only read, at two
// groups, commits only if its locks at both were still held: here an
// older writer wounds it at the first group between its reads, so the
// values it saw were never protected together.
func testReadOnlyCommitChecksLocks(t *testing.T, c *Client) {
	ctx := testCtx(t)
	mustApply(t, c, Put([]byte("a/rocheck"), []byte("1")), Put([]byte("z/rocheck"), []byte("1")))
	old := c.Begin()
	time.Sleep(time.Millisecond) // a younger priority
	young := c.Begin()
	if _, err := young.Get(ctx, []byte("a/rocheck")); err != nil {
		t.Fatal(err)
	}
	if err := old.BufferWrite(Put([]byte("a/rocheck"), []byte("2")), Put([]byte("z/rocheck"), []byte("2"))); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Commit(ctx); err != nil {
		t.Fatalf("the older writer: %v", err)
	}
	if v, err := young.Get(ctx, []byte("z/rocheck")); err != nil || string(v) != "2" {
		t.Fatalf("young reads z after the write: %q %v", v, err)
	}
	// It saw a=1 and z=2, which no serial order gives.
	if res, err := young.Commit(ctx); !errors.Is(err, ErrAborted) {
		t.Fatalf("read-only commit after losing a lock: %+v %v, want ErrAborted", res, err)
	}
	// Without the wound, the same shape commits.
	tx := c.Begin()
	for _, k := range []string{"a/rocheck", "z/rocheck"} {
		if _, err := tx.Get(ctx, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := tx.Commit(ctx); err != nil || res.Timestamp != 0 {
		t.Fatalf("read-only commit: %+v %v", res, err)
	}
	// A commit whose context ended fails, and still lets the locks go: a
	// writer gets them well before the transaction would time out (10 s).
	tx = c.Begin()
	if _, err := tx.Read(ctx, []byte("a/rocheck"), []byte("z/rocheck")); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := tx.Commit(ended); err == nil {
		t.Fatal("a read-only commit with an ended context succeeded")
	}
	if rows, err := c.Begin().Read(ended, []byte("a/rocheck"), []byte("z/rocheck")); status.Code(err) != codes.Canceled {
		t.Fatalf("read with an ended context: %v %v, want CANCELED", showKVs(rows), err)
	}
	quick, cancelQuick := context.WithTimeout(ctx, 3*time.Second)
	defer cancelQuick()
	if _, err := c.Apply(quick, []Mutation{Put([]byte("a/rocheck"), []byte("3")), Put([]byte("z/rocheck"), []byte("3"))}); err != nil {
		t.Fatalf("a write after the failed read-only commit: %v (its locks were kept)", err)
	}
}

// testLeaderHints: a client that knows only a node leading nothing, and
// believes the wrong nodes lead, still gets everything done by following
// the hints of UNAVAILABLE answers.
func testLeaderHints(t *testing.T, tc *testCluster, unary bool) {
	ctx := testCtx(t)
	leaders, err := tc.waitLeaders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var idle *testNode
	for _, n := range tc.nodes {
		if !slices.Contains(slices.Collect(maps.Values(leaders)), n.id) {
			idle = n
			break
		}
	}
	if idle == nil {
		t.Fatalf("every node leads a group: %v", leaders)
	}
	c := newClientMode(t, []string{idle.addr}, unary)
	// Make it believe the idle node (or a follower) leads every group.
	c.mu.Lock()
	for _, sh := range c.placement.Shards {
		c.leaders[sh.Group] = uint64(idle.id)
		if !slices.ContainsFunc(sh.Replicas, func(r *meridianpb.ReplicaInfo) bool { return r.Node == uint64(idle.id) }) {
			// A node without a replica answers with its best guess;
			// a follower with the leader.
			for _, r := range sh.Replicas {
				if node.NodeID(r.Node) != leaders[sh.Group] {
					c.leaders[sh.Group] = r.Node
					break
				}
			}
		}
	}
	c.mu.Unlock()
	keys := []string{"b/hint", "k/hint", "y/hint"}
	var ms []Mutation
	for _, k := range keys {
		ms = append(ms, Put([]byte(k), []byte("followed")))
	}
	res, err := c.Apply(ctx, ms)
	if err != nil {
		t.Fatalf("apply through hints: %v", err)
	}
	for _, k := range keys {
		ro := c.Single()
		if v, err := ro.Get(ctx, []byte(k)); err != nil || string(v) != "followed" || ro.Timestamp() < res.Timestamp {
			t.Fatalf("get %s through hints: %q %v", k, v, err)
		}
	}
	// Locking reads need each group's leader.
	_, err = c.ReadWriteTransaction(ctx, func(ctx context.Context, tx *ReadWriteTransaction) error {
		for _, k := range keys {
			if v, err := tx.Get(ctx, []byte(k)); err != nil || string(v) != "followed" {
				return fmt.Errorf("locking read of %s through hints: %q %w", k, v, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The client learned the leaders (unless leadership moved meanwhile).
	now, err := tc.waitLeaders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for g, n := range now {
		if c.leaders[g] != uint64(n) && leaders[g] == n {
			t.Errorf("client believes node %d leads group %d; it is %d", c.leaders[g], g, n)
		}
	}
}

// testBeyondRetention: once the nodes have collected versions (at the
// default one-hour retention), a read further back fails with
// ErrFailedPrecondition; one within the retention still works.
func testBeyondRetention(t *testing.T, tc *testCluster, c *Client) {
	ctx := testCtx(t)
	for _, nd := range tc.nodes {
		if _, err := nd.srv.Node().CollectVersions(ctx); err != nil {
			t.Fatalf("node %d: collect: %v", nd.id, err)
		}
	}
	now := time.Now().UnixNano()
	for _, key := range []string{"b/old", "y/old"} { // two shards
		ro := c.ReadOnlyTransaction().WithTimestampBound(ReadTimestamp(now - int64(2*time.Hour)))
		_, err := ro.Get(ctx, []byte(key))
		ro.Close()
		if !errors.Is(err, ErrFailedPrecondition) {
			t.Errorf("read of %q two hours back: %v; want ErrFailedPrecondition", key, err)
		}
		if _, ok := getAt(t, c, now-int64(30*time.Minute), key); ok {
			t.Errorf("%q found half an hour back", key)
		}
	}
}
