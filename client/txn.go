package client

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	"github.com/meridiandb/meridian/internal/txnid"
	"github.com/meridiandb/meridian/rpc/meridianpb"
)

// Mutation is a buffered write.
type Mutation struct {
	Key    []byte
	Value  []byte
	Delete bool
}

// Put writes value at key.
func Put(key, value []byte) Mutation { return Mutation{Key: key, Value: value} }

// Delete removes key.
func Delete(key []byte) Mutation { return Mutation{Key: key, Delete: true} }

// KeyValue is one key read, with the timestamp of its version.
type KeyValue struct {
	Key   []byte
	Value []byte
	TS    int64
}

// CommitResult describes a committed read-write transaction.
type CommitResult struct {
	// Timestamp is the commit timestamp (ns since the Unix epoch).
	Timestamp int64
	// CommitWait is how long the commit record, chosen, waited for
	// TT.after(Timestamp): the commit wait the client saw.
	CommitWait time.Duration
	// Locks, Prepare and Paxos break the rest of the coordinator's time
	// down: waiting for its write locks, the two-phase-commit prepare round
	// (zero for single-group commits), the commit record's Paxos round.
	Locks, Prepare, Paxos time.Duration
	// Participants is how many groups took part.
	Participants int
	// Attempts is how many times the function ran.
	Attempts int
}

// MaxCommitRetry bounds how long a commit whose outcome is in doubt is
// retried (the coordinator answers a repeat from its outcome record, kept
// two minutes by default); after it the commit fails with
// ErrCommitUnknown.
const MaxCommitRetry = time.Minute

// ReadWriteTransaction is a transaction in progress: reads take locks at
// each group's leader, writes are buffered until commit. Its reads and
// BufferWrite are safe to call from several goroutines at once; commit
// (the end of fn, or Commit) must come after they have returned.
type ReadWriteTransaction struct {
	c    *Client
	meta *meridianpb.TxnMeta // its ID and priority; fixed while reads run

	mu     sync.Mutex
	reads  map[uint64]uint64 // group → lock epoch of the reads there
	writes map[uint64][]*meridianpb.Mutation
	shards map[uint64]*meridianpb.ShardInfo
	lost   error // locks were lost between reads: the commit must abort
}

// newTxn starts an attempt. priority is the transaction's wound-wait
// priority, kept across its attempts: the client's clock when the first
// attempt began. Stamping it here rather than at the first group reached
// lets reads go to several groups at once with one priority everywhere
// (wound-wait stays deadlock-free only if every group orders two
// transactions the same way). It costs fairness, never safety, when the
// client's clock is off: ahead by D, its transactions lose their
// conflicts for up to D; behind by D, they win against every transaction
// begun within D after them. Client clocks are expected to be kept by NTP,
// as the transaction ID's age (drawn from the same clock) already
// assumes.
func (c *Client) newTxn(priority int64) *ReadWriteTransaction {
	return &ReadWriteTransaction{c: c, meta: &meridianpb.TxnMeta{Id: txnid.New(), Priority: priority},
		reads: map[uint64]uint64{}, writes: map[uint64][]*meridianpb.Mutation{}, shards: map[uint64]*meridianpb.ShardInfo{}}
}

// ReadWriteTransaction runs fn in a transaction and commits it, re-running
// fn (with backoff, keeping the transaction's priority so it eventually
// wins its conflicts) whenever the transaction aborts, until ctx ends. fn
// must be idempotent apart from its effects through t. It returns the
// commit timestamp. A transaction that wrote nothing releases its locks and
// returns a zero timestamp.
func (c *Client) ReadWriteTransaction(ctx context.Context, fn func(ctx context.Context, t *ReadWriteTransaction) error) (CommitResult, error) {
	priority := time.Now().UnixNano()
	backoff := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		t := c.newTxn(priority)
		err := fn(ctx, t)
		if err == nil {
			var res CommitResult
			res, err = t.commit(ctx)
			if err == nil {
				res.Attempts = attempt
				return res, nil
			}
		}
		if !errors.Is(err, ErrAborted) {
			t.rollback(ctx)
			return CommitResult{Attempts: attempt}, err
		}
		t.rollback(ctx)
		select {
		case <-ctx.Done():
			return CommitResult{Attempts: attempt}, ctx.Err()
		case <-time.After(backoff + time.Duration(mrand.Int64N(int64(backoff)))):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// Get reads key under a shared lock; ErrNotFound when absent.
func (t *ReadWriteTransaction) Get(ctx context.Context, key []byte) ([]byte, error) {
	s, err := t.c.shardOf(key)
	if err != nil {
		return nil, err
	}
	kvs, err := t.read(ctx, s, &meridianpb.KeySpan{Key: key})
	if err != nil {
		return nil, err
	}
	if len(kvs) == 0 {
		return nil, fmt.Errorf("%w: key %q", ErrNotFound, key)
	}
	return kvs[0].Value, nil
}

// Read reads keys under shared locks and returns the rows of those
// present, in the order asked (absent keys are left out; a key asked twice
// is read and returned twice). Keys in different groups are read in
// parallel, so a transaction touching two groups pays one read round trip
// instead of two; keys in one group are read one after another. When a
// read fails, the others stop, Read returns no rows and the error (an
// ErrAborted one if any group aborted the transaction, so that
// ReadWriteTransaction re-runs it), and the locks taken are released when
// the transaction ends.
func (t *ReadWriteTransaction) Read(ctx context.Context, keys ...[]byte) ([]KeyValue, error) {
	groups, err := t.c.groupKeys(keys)
	if err != nil {
		return nil, err
	}
	return readKeys(ctx, keys, groups, func(ctx context.Context, s *meridianpb.ShardInfo, key []byte) ([]KeyValue, error) {
		return t.read(ctx, s, &meridianpb.KeySpan{Key: key})
	})
}

// keyGroup is the keys (their indexes in a call) held by one shard.
type keyGroup struct {
	s   *meridianpb.ShardInfo
	idx []int
}

// groupKeys sorts keys by shard, the shards in order of first appearance.
func (c *Client) groupKeys(keys [][]byte) ([]keyGroup, error) {
	var groups []keyGroup
	for i, k := range keys {
		s, err := c.shardOf(k)
		if err != nil {
			return nil, err
		}
		j := slices.IndexFunc(groups, func(g keyGroup) bool { return g.s.Group == s.Group })
		if j < 0 {
			j = len(groups)
			groups = append(groups, keyGroup{s: s})
		}
		groups[j].idx = append(groups[j].idx, i)
	}
	return groups, nil
}

// readKeys reads keys with get, one key at a time per group and the groups
// in parallel, and returns the rows found in the order asked. At the
// first failure the other groups stop; the error returned is an ErrAborted
// one if any group answered so. Every read has ended when it returns, so
// a rollback that follows cannot overtake one and leave its lock behind.
func readKeys(ctx context.Context, keys [][]byte, groups []keyGroup,
	get func(ctx context.Context, s *meridianpb.ShardInfo, key []byte) ([]KeyValue, error)) ([]KeyValue, error) {
	rows := make([]*KeyValue, len(keys))
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var errMu sync.Mutex
	var firstErr error
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if firstErr == nil || errors.Is(err, ErrAborted) && !errors.Is(firstErr, ErrAborted) {
			firstErr = err
		}
		cancel() // the other groups' reads stop
	}
	readGroup := func(gi int) {
		for _, i := range groups[gi].idx {
			if ctx.Err() != nil {
				return
			}
			kvs, err := get(ctx, groups[gi].s, keys[i])
			if err != nil {
				fail(err)
				return
			}
			if len(kvs) > 0 {
				rows[i] = &kvs[0]
			}
		}
	}
	// A read skipped because the caller's context ended is a failure too,
	// not an absent key.
	ended := func() error {
		if firstErr == nil && parent.Err() != nil {
			return wrap(status.FromContextError(parent.Err()).Err())
		}
		return firstErr
	}
	// The first group is read here, the others on goroutines.
	var wg sync.WaitGroup
	for gi := 1; gi < len(groups); gi++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readGroup(gi)
		}()
	}
	if len(groups) > 0 {
		readGroup(0)
	}
	wg.Wait()
	if err := ended(); err != nil {
		return nil, err
	}
	out := make([]KeyValue, 0, len(keys))
	for _, r := range rows {
		if r != nil {
			out = append(out, *r)
		}
	}
	return out, nil
}

// Scan reads the keys of r under shared range locks, at most limit of them
// (0: the server's maximum), in key order (or reverse).
func (t *ReadWriteTransaction) Scan(ctx context.Context, r KeyRange, limit int, reverse bool) ([]KeyValue, error) {
	start, end := r.halfOpen()
	return scanShards(ctx, t.c, start, end, limit, reverse, func(ctx context.Context, s *meridianpb.ShardInfo, span *meridianpb.KeySpan) ([]KeyValue, error) {
		return t.read(ctx, s, span)
	})
}

func (t *ReadWriteTransaction) read(ctx context.Context, s *meridianpb.ShardInfo, span *meridianpb.KeySpan) ([]KeyValue, error) {
	t.mu.Lock()
	t.shards[s.Group] = s
	epoch, readBefore := t.reads[s.Group]
	if !readBefore {
		t.reads[s.Group] = 0 // rolled back on failure even before an answer
	}
	t.mu.Unlock()
	var resp *meridianpb.ReadResponse
	err := t.c.invoke(ctx, s, toLeader, func(ctx context.Context, cl meridianpb.MeridianClient) error {
		var err error
		resp, err = cl.Read(ctx, &meridianpb.ReadRequest{Group: s.Group, Txn: t.meta, Span: span, Epoch: epoch})
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := t.noteEpoch(s.Group, resp.Epoch); err != nil {
		return nil, err
	}
	return kvsFromPB(resp.Kvs), nil
}

// noteEpoch records the lock epoch a read at group was served in. The
// first answer sets it and later reads send it, so a group that changed
// leaders (and lost the locks) refuses them. Reads sent at once before
// any answer carry no epoch; if their answers disagree, the locks of one
// leadership are gone, and the transaction can only abort: committing
// with either epoch could pass over a lost lock.
func (t *ReadWriteTransaction) noteEpoch(group, epoch uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch prev := t.reads[group]; {
	case prev == 0:
		t.reads[group] = epoch
	case prev != epoch && t.lost == nil:
		t.lost = fmt.Errorf("%w: group %d changed leaders between this transaction's reads", ErrAborted, group)
	}
	return t.lost
}

// BufferWrite buffers mutations; they are written at commit.
func (t *ReadWriteTransaction) BufferWrite(ms ...Mutation) error {
	for _, m := range ms {
		s, err := t.c.shardOf(m.Key)
		if err != nil {
			return err
		}
		t.mu.Lock()
		t.shards[s.Group] = s
		t.writes[s.Group] = append(t.writes[s.Group], &meridianpb.Mutation{Key: m.Key, Value: m.Value, Delete: m.Delete})
		t.mu.Unlock()
	}
	return nil
}

func (t *ReadWriteTransaction) commit(ctx context.Context) (CommitResult, error) {
	req, coord, err := t.commitRequest()
	if err != nil {
		return CommitResult{}, err
	}
	if req == nil {
		// Nothing written: release the locks, checking that every group
		// still held them, so the reads fn saw were protected together.
		if err := t.release(ctx, true); err != nil {
			return CommitResult{}, err
		}
		return CommitResult{}, nil
	}
	// An ambiguous failure (the coordinator's leader went away) is
	// retried: the coordinator group answers a repeated commit from its
	// outcome record.
	first := time.Now()
	inDoubt := false
	for {
		var resp *meridianpb.CommitResponse
		err := t.c.invoke(ctx, coord, toLeader, func(ctx context.Context, cl meridianpb.MeridianClient) error {
			var err error
			resp, err = cl.Commit(ctx, req)
			return err
		})
		if err == nil {
			return CommitResult{Timestamp: resp.CommitTs, CommitWait: time.Duration(resp.CommitWaitExposedNs),
				Locks: time.Duration(resp.LocksNs), Prepare: time.Duration(resp.PrepareNs), Paxos: time.Duration(resp.PaxosNs),
				Participants: len(req.Participants)}, nil
		}
		// A definite answer ends it; a lost leader or connection is
		// retried (the coordinator answers a repeat from its outcome
		// record).
		if inDoubt && errors.Is(err, ErrFailedPrecondition) {
			// The coordinator no longer knows (the transaction is older
			// than its outcome records).
			return CommitResult{}, fmt.Errorf("%w: %w", ErrCommitUnknown, err)
		}
		if errors.Is(err, ErrAborted) || errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrFailedPrecondition) {
			return CommitResult{}, err
		}
		if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrDeadlineExceeded) && !errors.Is(err, ErrResourceExhausted) {
			// An internal failure at the coordinator: the commit may or
			// may not have been proposed, and asking again would likely
			// fail the same way.
			return CommitResult{}, fmt.Errorf("%w: %w", ErrCommitUnknown, err)
		}
		inDoubt = true
		if ctx.Err() != nil || time.Since(first) > MaxCommitRetry {
			return CommitResult{}, fmt.Errorf("%w: %w", ErrCommitUnknown, err)
		}
		select {
		case <-ctx.Done():
			return CommitResult{}, fmt.Errorf("%w: %w", ErrCommitUnknown, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// commitRequest builds the commit request and picks its coordinator; a
// nil request when the transaction wrote nothing.
func (t *ReadWriteTransaction) commitRequest() (*meridianpb.CommitRequest, *meridianpb.ShardInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lost != nil {
		return nil, nil, t.lost
	}
	if len(t.writes) == 0 {
		return nil, nil, nil
	}
	groups := make([]uint64, 0, len(t.shards))
	for g := range t.shards {
		if _, read := t.reads[g]; read || len(t.writes[g]) > 0 {
			groups = append(groups, g)
		}
	}
	slices.Sort(groups)
	// Coordinate at a written group homed in our region if there is one:
	// the client's round trip to the coordinator stays local.
	coord := groups[0]
	for _, g := range groups {
		if len(t.writes[g]) > 0 {
			coord = g
			break
		}
	}
	for _, g := range groups {
		if len(t.writes[g]) > 0 && t.shards[g].Home == t.c.cfg.Region {
			coord = g
			break
		}
	}
	req := &meridianpb.CommitRequest{Coordinator: coord, Txn: t.meta}
	for _, g := range groups {
		epoch, read := t.reads[g]
		if read && epoch == 0 {
			return nil, nil, fmt.Errorf("%w: a read at group %d never answered", ErrAborted, g)
		}
		req.Participants = append(req.Participants, &meridianpb.Participant{Group: g, Writes: t.writes[g], Read: read, Epoch: epoch})
	}
	if len(t.reads) == 0 {
		// Nothing locked under the ID yet: draw it now, so that the age
		// a coordinator checks counts from the commit, not from when fn
		// started buffering.
		t.meta.Id = txnid.New()
	}
	return req, t.shards[coord], nil
}

// rollback releases the locks taken at every group read (best effort).
func (t *ReadWriteTransaction) rollback(ctx context.Context) { _ = t.release(ctx, false) }

// release releases the locks taken at every group read. With check, each
// group also confirms that the locks were still held in the epoch they
// were taken in, and the first failure is returned (ErrAborted when locks
// were lost); every group is released either way (a checked call that
// failed otherwise, say because ctx ended, is followed by a plain one).
func (t *ReadWriteTransaction) release(ctx context.Context, check bool) error {
	t.mu.Lock()
	type held struct {
		s     *meridianpb.ShardInfo
		epoch uint64
	}
	read := make(map[uint64]held, len(t.reads))
	for g, epoch := range t.reads {
		read[g] = held{t.shards[g], epoch}
	}
	t.mu.Unlock()
	var first error
	for g, h := range read {
		req := &meridianpb.RollbackRequest{Group: g, Txn: t.meta}
		if check {
			if h.epoch == 0 && first == nil {
				first = fmt.Errorf("%w: a read at group %d never answered", ErrAborted, g)
			}
			req.Epoch = h.epoch
		}
		// A plain release is best effort, even after ctx ended; a checked
		// one is the commit and has the commit's context.
		call := func(ctx context.Context, req *meridianpb.RollbackRequest) error {
			return t.c.invoke(ctx, h.s, toLeader, func(ctx context.Context, cl meridianpb.MeridianClient) error {
				_, err := cl.Rollback(ctx, req)
				return err
			})
		}
		var err error
		if check {
			err = call(ctx, req)
		}
		if !check || err != nil && !errors.Is(err, ErrAborted) {
			bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = call(bctx, &meridianpb.RollbackRequest{Group: g, Txn: t.meta})
			cancel()
		}
		if check && err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Apply writes mutations atomically in one transaction (retried on abort)
// and returns the commit timestamp.
func (c *Client) Apply(ctx context.Context, ms []Mutation) (CommitResult, error) {
	return c.ReadWriteTransaction(ctx, func(ctx context.Context, t *ReadWriteTransaction) error {
		return t.BufferWrite(ms...)
	})
}

// ---------------------------------------------------------------------------
// Read-only transactions

// ReadOnlyTransaction reads a consistent snapshot without locks. All its
// reads share one timestamp, chosen by the first read per its bound. Its
// methods are safe to call from several goroutines at once: while the
// first read picks the timestamp, the others wait for it.
type ReadOnlyTransaction struct {
	c      *Client
	bound  TimestampBound
	single bool

	mu       sync.Mutex // concurrent reads share these
	ts       int64
	fixing   chan struct{} // non-nil while a read picks ts; closed when it is done
	servedBy uint64
}

// fixTS returns whether the caller is to pick the transaction's timestamp
// (ts is still zero and no other read is picking it); the caller then
// calls fixed when done, whether it succeeded or not. Otherwise it waits
// for the read picking it, and returns false once ts is set.
func (ro *ReadOnlyTransaction) fixTS(ctx context.Context) (bool, error) {
	for {
		ro.mu.Lock()
		if ro.ts == 0 && ro.bound.kind == boundReadTS {
			ro.ts = ro.bound.ts // nothing to pick: concurrent reads need not wait
		}
		if ro.ts != 0 {
			ro.mu.Unlock()
			return false, nil
		}
		if ro.fixing == nil {
			ro.fixing = make(chan struct{})
			ro.mu.Unlock()
			return true, nil
		}
		wait := ro.fixing
		ro.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return false, wrap(status.FromContextError(ctx.Err()).Err())
		}
	}
}

// fixed ends the caller's turn at picking the timestamp (see fixTS): ts, if
// nonzero, is the timestamp picked; if it failed, a waiting read takes
// the turn.
func (ro *ReadOnlyTransaction) fixed(ts int64) {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	if ro.ts == 0 {
		ro.ts = ts
	}
	close(ro.fixing)
	ro.fixing = nil
}

// ServedBy returns the node that served the transaction's last read.
func (ro *ReadOnlyTransaction) ServedBy() uint64 {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	return ro.servedBy
}

// Single returns a single-use strong read-only transaction (one read).
func (c *Client) Single() *ReadOnlyTransaction {
	return &ReadOnlyTransaction{c: c, bound: StrongRead(), single: true}
}

// ReadOnlyTransaction returns a read-only transaction (strong unless
// WithTimestampBound says otherwise).
func (c *Client) ReadOnlyTransaction() *ReadOnlyTransaction {
	return &ReadOnlyTransaction{c: c, bound: StrongRead()}
}

// WithTimestampBound sets the bound; call it before the first read.
func (ro *ReadOnlyTransaction) WithTimestampBound(b TimestampBound) *ReadOnlyTransaction {
	ro.bound = b
	return ro
}

// Timestamp returns the timestamp the transaction reads at: zero before
// its first read succeeded (under ReadTimestamp, the bound's once a read
// was made).
func (ro *ReadOnlyTransaction) Timestamp() int64 {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	return ro.ts
}

// Close ends the transaction (nothing is held).
func (ro *ReadOnlyTransaction) Close() {}

// Get reads key; ErrNotFound when absent.
func (ro *ReadOnlyTransaction) Get(ctx context.Context, key []byte) ([]byte, error) {
	s, err := ro.c.shardOf(key)
	if err != nil {
		return nil, err
	}
	kvs, err := ro.read(ctx, s, &meridianpb.KeySpan{Key: key}, true)
	if err != nil {
		return nil, err
	}
	if len(kvs) == 0 {
		return nil, fmt.Errorf("%w: key %q", ErrNotFound, key)
	}
	return kvs[0].Value, nil
}

// Read reads keys at the transaction's timestamp and returns the rows of
// those present, in the order asked (absent keys are left out). Keys in
// different groups are read in parallel once the timestamp is fixed: until
// then the first read to go picks it (a strong one, for all the groups)
// and the others wait for it.
func (ro *ReadOnlyTransaction) Read(ctx context.Context, keys ...[]byte) ([]KeyValue, error) {
	groups, err := ro.c.groupKeys(keys)
	if err != nil {
		return nil, err
	}
	return readKeys(ctx, keys, groups, func(ctx context.Context, s *meridianpb.ShardInfo, key []byte) ([]KeyValue, error) {
		return ro.read(ctx, s, &meridianpb.KeySpan{Key: key}, len(groups) == 1)
	})
}

// Scan reads the keys of r at the transaction's timestamp.
func (ro *ReadOnlyTransaction) Scan(ctx context.Context, r KeyRange, limit int, reverse bool) ([]KeyValue, error) {
	start, end := r.halfOpen()
	shards := ro.c.shardsOf(start, end)
	return scanShards(ctx, ro.c, start, end, limit, reverse, func(ctx context.Context, s *meridianpb.ShardInfo, span *meridianpb.KeySpan) ([]KeyValue, error) {
		return ro.read(ctx, s, span, len(shards) == 1)
	})
}

func (ro *ReadOnlyTransaction) read(ctx context.Context, s *meridianpb.ShardInfo, span *meridianpb.KeySpan, singleGroup bool) ([]KeyValue, error) {
	req := &meridianpb.SnapshotReadRequest{Group: s.Group, Span: span}
	r := toNearest
	fix, err := ro.fixTS(ctx)
	if err != nil {
		return nil, err
	}
	picked := int64(0)
	if fix {
		defer func() { ro.fixed(picked) }()
	}
	switch ts := ro.Timestamp(); {
	case ts != 0:
		req.ReadTs = ts
	case ro.bound.kind == boundStrong:
		// Strong: one round trip picks the timestamp and reads there; a
		// single-use read of one group at its leader's last commit, any
		// other at a timestamp every group can serve (TT.now().latest),
		// which the transaction's other reads then use.
		req.Strong, req.SingleGroup = true, singleGroup && ro.single
		r = toAnyReplica
	case ro.bound.kind == boundExact:
		req.ExactStalenessNs = int64(ro.bound.d)
	case ro.bound.kind == boundMax:
		req.MaxStalenessNs = int64(ro.bound.d)
	case ro.bound.kind == boundReadTS:
		req.ReadTs = ro.bound.ts
	case ro.bound.kind == boundMinTS:
		req.MinReadTs = ro.bound.ts
	}
	var resp *meridianpb.ReadResponse
	err = ro.c.invoke(ctx, s, r, func(ctx context.Context, cl meridianpb.MeridianClient) error {
		var err error
		resp, err = cl.SnapshotRead(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	picked = resp.ReadTs
	ro.mu.Lock()
	ro.servedBy = resp.ServedBy
	ro.mu.Unlock()
	return kvsFromPB(resp.Kvs), nil
}

// scanShards scans [start, end) shard by shard (in the scan's order),
// stopping at limit.
func scanShards(ctx context.Context, c *Client, start, end []byte, limit int, reverse bool,
	read func(ctx context.Context, s *meridianpb.ShardInfo, span *meridianpb.KeySpan) ([]KeyValue, error)) ([]KeyValue, error) {
	if end != nil && string(start) >= string(end) {
		return nil, nil // an empty range (the server refuses to scan one)
	}
	shards := c.shardsOf(start, end)
	if reverse {
		slices.Reverse(shards)
	}
	var out []KeyValue
	for _, s := range shards {
		span := &meridianpb.KeySpan{Start: start, Reverse: reverse}
		if string(s.Start) > string(start) {
			span.Start = s.Start
		}
		switch {
		case len(s.End) > 0 && (end == nil || string(s.End) < string(end)):
			span.End = s.End
		case end == nil:
			span.EndUnbounded = true
		default:
			span.End = end
		}
		if limit > 0 {
			span.Limit = int32(limit - len(out))
		}
		kvs, err := read(ctx, s, span)
		if err != nil {
			return out, err
		}
		out = append(out, kvs...)
		if limit > 0 && len(out) >= limit {
			return out[:limit], nil
		}
	}
	return out, nil
}

func kvsFromPB(kvs []*meridianpb.KeyValue) []KeyValue {
	out := make([]KeyValue, len(kvs))
	for i, x := range kvs {
		out[i] = KeyValue{Key: x.Key, Value: x.Value, TS: x.Ts}
	}
	return out
}

// Begin starts an interactive read-write transaction (the shell's): no
// automatic retry; call Commit or Rollback.
func (c *Client) Begin() *ReadWriteTransaction { return c.newTxn(time.Now().UnixNano()) }

// Commit commits an interactive transaction.
func (t *ReadWriteTransaction) Commit(ctx context.Context) (CommitResult, error) {
	res, err := t.commit(ctx)
	if err != nil && errors.Is(err, ErrAborted) {
		t.rollback(ctx)
	}
	res.Attempts = 1
	return res, err
}

// Rollback abandons an interactive transaction, releasing its locks.
func (t *ReadWriteTransaction) Rollback(ctx context.Context) { t.rollback(ctx) }
