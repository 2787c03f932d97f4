package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/paxos/pebblestore"
	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/txn"
	"github.com/meridiandb/meridian/txn/txnkv"
)

// GroupConfig describes one group's replica hosted on a node.
type GroupConfig struct {
	Group    uint64
	Replica  paxos.ReplicaID            // this node's replica
	Voters   []paxos.ReplicaID          // voting replicas
	Learners []paxos.ReplicaID          // read-only replicas
	Nodes    map[paxos.ReplicaID]NodeID // where each replica lives
	// Start and End bound the group's keys (End nil: unbounded); snapshots
	// carry that span.
	Start, End []byte

	Lease             time.Duration // default 10 s
	HeartbeatInterval time.Duration // default Lease/10, at most 200 ms
	ElectionTimeout   time.Duration // default Lease/4, at most 1 s
	// CompactAfter: truncate the log once this many applied entries are in
	// it (default 10000); CompactKeep entries stay in any case. A leader
	// truncates no entry a replica heard from within LogKeepFor (default
	// 1 min) still needs, so that a follower away for a few seconds
	// catches up from the log rather than by snapshot, unless the log
	// then holds more than MaxLogBytes (default 64 MiB).
	CompactAfter, CompactKeep int
	LogKeepFor                time.Duration
	MaxLogBytes               int
	// InboxSize bounds queued inbound messages (default 8192; beyond, they
	// are dropped and resent). RequestQueue bounds queued client requests
	// (default 4096; beyond, requests fail with ErrBusy).
	InboxSize, RequestQueue int
	// Txn tunes the transaction layer.
	Txn txn.Config
	// PaxosBugs switches on deliberate protocol bugs, for fault tests'
	// negative controls only (meridian start --testing-bug).
	PaxosBugs paxos.Bugs
	// Preferred is the replica that should lead when it can (a voter in
	// the shard's home region, Home); a leader outside Home hands
	// leadership to it.
	Preferred paxos.ReplicaID
	Home      string
}

func (c *GroupConfig) fill() {
	if c.Lease <= 0 {
		c.Lease = 10 * time.Second
	}
	// Heartbeats carry lease renewals and closed timestamps (followers'
	// safe time lags by about one interval); the election timeout only
	// detects a silent leader: its lease must still run out before another
	// can lead, but a group with no lease (a new one, or after a clean
	// hand-off) elects within about a second.
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = min(c.Lease/10, 200*time.Millisecond)
	}
	if c.ElectionTimeout <= 0 {
		c.ElectionTimeout = min(c.Lease/4, time.Second)
	}
	if c.CompactAfter <= 0 {
		c.CompactAfter = 10000
	}
	if c.CompactKeep <= 0 || c.CompactKeep > c.CompactAfter {
		c.CompactKeep = c.CompactAfter / 4
	}
	if c.LogKeepFor <= 0 {
		c.LogKeepFor = time.Minute
	}
	if c.MaxLogBytes <= 0 {
		c.MaxLogBytes = 64 << 20
	}
	if c.InboxSize <= 0 {
		c.InboxSize = 8192
	}
	if c.RequestQueue <= 0 {
		c.RequestQueue = 4096
	}
}

// Reply is the answer to a request: the transaction layer's response, and
// for reads the key-values read and the timestamp read at.
type Reply struct {
	txn.Response
	KVs    []kv.KeyValue
	ReadTS tt.Timestamp
	Epoch  uint64 // locking reads: the lock epoch they were answered under
}

// Errors of the runtime.
var (
	ErrStopped = errors.New("node: group stopped")
	ErrBusy    = errors.New("node: too many queued requests")
)

type request struct {
	req  txn.Request
	done func(Reply)
}

// Group runs one replica (txn.Group over paxos.Replica) in its own
// goroutine.
type Group struct {
	cfg   GroupConfig
	node  *Node
	t     *txn.Group
	store *pebblestore.Store
	log   *slog.Logger

	paxosIn chan paxos.Message
	txnIn   chan txn.Msg
	reqs    chan request
	calls   chan func()
	stop    chan struct{}
	done    chan struct{}

	// Pipelined persistence: Readies written but not yet durable wait, in
	// order, in syncQ for the syncer goroutine, which waits for each sync,
	// sends the Ready's held-back Paxos messages and reports to the loop
	// on synced; pending counts the jobs the loop has not heard back of.
	syncQ      chan syncJob
	synced     chan syncDone
	syncerDone chan struct{}
	pending    int

	nextID  uint64
	waiting map[uint64]waiter

	// Leadership preference: when this replica became leader, and when it
	// last tried to hand leadership to the preferred replica.
	leaderSince, lastTransfer time.Time
	// campaignAtStart: a new group's preferred replica starts an election
	// as soon as it runs.
	campaignAtStart bool
	// strong is what single-group strong reads may use without entering
	// the loop (nil: they go through it).
	strong atomic.Pointer[txn.StrongRead]

	status      atomic.Pointer[GroupStatus]
	publishedAt time.Time // loop only
	stopped     atomic.Bool
	submitMu    sync.RWMutex // see Submit
	once        sync.Once

	// Counters for status and benchmarks.
	syncs, readies, dropped atomic.Uint64
}

// GroupStatus is a snapshot of a hosted replica for status pages.
type GroupStatus struct {
	Group   uint64
	Replica paxos.ReplicaID
	Voter   bool
	Paxos   paxos.Status
	Txn     txn.Stats
	Leader  paxos.ReplicaID
}

func newGroup(n *Node, cfg GroupConfig) (*Group, error) {
	cfg.fill()
	store := pebblestore.New(n.eng, cfg.Group)
	st, err := store.Load()
	if err != nil {
		return nil, err
	}
	r, err := paxos.New(paxos.Config{
		Group: cfg.Group, ID: cfg.Replica, Voters: cfg.Voters, Learners: cfg.Learners,
		LeaseDuration: cfg.Lease, HeartbeatInterval: cfg.HeartbeatInterval, ElectionTimeout: cfg.ElectionTimeout,
		Rand:      rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), cfg.Group<<16|uint64(cfg.Replica))),
		HardState: st.HardState, Entries: st.Entries, FirstIndex: st.FirstIndex, Applied: st.Applied,
		Bugs: cfg.PaxosBugs,
	})
	if err != nil {
		return nil, fmt.Errorf("group %d: %w", cfg.Group, err)
	}
	recs, err := txnkv.Records(n.eng, cfg.Group)
	if err != nil {
		return nil, err
	}
	tcfg := cfg.Txn
	tcfg.Start, tcfg.End = cfg.Start, cfg.End
	tg, err := txn.NewGroup(cfg.Group, r, tcfg, recs)
	if err != nil {
		return nil, err
	}
	g := &Group{
		cfg: cfg, node: n, t: tg, store: store,
		log:     n.log.With("group", cfg.Group, "replica", cfg.Replica),
		paxosIn: make(chan paxos.Message, cfg.InboxSize),
		txnIn:   make(chan txn.Msg, cfg.InboxSize),
		reqs:    make(chan request, cfg.RequestQueue),
		calls:   make(chan func(), 64),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		waiting: map[uint64]waiter{},

		syncQ:      make(chan syncJob, maxPendingSyncs),
		synced:     make(chan syncDone, maxPendingSyncs),
		syncerDone: make(chan struct{}),
	}
	// A new group's preferred replica campaigns at once rather than after
	// an election timeout: no one holds a lease yet.
	g.campaignAtStart = st.HardState.Promised.IsZero() && cfg.Preferred == cfg.Replica && slices.Contains(cfg.Voters, cfg.Replica)
	g.publish()
	return g, nil
}

// ID returns the group ID.
func (g *Group) ID() uint64 { return g.cfg.Group }

// Config returns the group's configuration.
func (g *Group) Config() GroupConfig { return g.cfg }

// Status returns the replica's state: its role, ballot and leader as of its
// last loop iteration, indexes and counters up to publishEvery older.
func (g *Group) Status() GroupStatus { return *g.status.Load() }

// publishEvery bounds how stale a published status's indexes and counters
// may be; building one for every Ready cost ~2% of a node's CPU.
const publishEvery = 10 * time.Millisecond

// IsLeader reports whether this replica led at its last loop iteration.
func (g *Group) IsLeader() bool { return g.status.Load().Paxos.Role == "leader" }

func (g *Group) publish() {
	g.publishStatus(g.t.Replica().Status())
}

func (g *Group) publishStatus(ps paxos.Status) {
	r := g.t.Replica()
	g.publishedAt = time.Now()
	st := GroupStatus{Group: g.cfg.Group, Replica: g.cfg.Replica, Paxos: ps, Txn: g.t.Stats(), Leader: r.LeaderHint()}
	for _, v := range g.cfg.Voters {
		if v == g.cfg.Replica {
			st.Voter = true
		}
	}
	g.status.Store(&st)
}

func (g *Group) deliverPaxos(m paxos.Message) {
	select {
	case g.paxosIn <- m:
	default:
		g.dropped.Add(1)
	}
}

func (g *Group) deliverTxn(m txn.Msg) {
	select {
	case g.txnIn <- m:
	default:
		g.dropped.Add(1)
	}
}

// Submit hands a request to the group. done receives the reply exactly
// once: on the group's goroutine, or at once on the caller's if the group
// has stopped (ErrStopped) or its queue is full (ErrBusy), as Reply.Err.
// done must not block and must not call Submit: it runs on the goroutine
// every request, message and apply of the group waits for, or on the
// caller's while Submit holds the lock a stop waits for.
func (g *Group) Submit(req txn.Request, done func(Reply)) {
	// submitMu orders this check and the send with the stop: a request
	// queued before the group stopped is answered by failAll.
	g.submitMu.RLock()
	defer g.submitMu.RUnlock()
	if g.stopped.Load() {
		done(Reply{Response: txn.Response{Err: ErrStopped}})
		return
	}
	select {
	case g.reqs <- request{req: req, done: done}:
	default:
		done(Reply{Response: txn.Response{Err: fmt.Errorf("%w: %d waiting at group %d", ErrBusy, len(g.reqs), g.cfg.Group)}})
	}
}

// Do hands a request to the group and waits for its reply. ErrStopped and
// ErrBusy come back as the error, the transaction layer's errors as
// Reply.Err.
func (g *Group) Do(ctx context.Context, req txn.Request) (Reply, error) {
	ch := make(chan Reply, 1)
	g.Submit(req, func(r Reply) { ch <- r })
	select {
	case rep := <-ch:
		if errors.Is(rep.Err, ErrStopped) || errors.Is(rep.Err, ErrBusy) {
			return Reply{}, rep.Err
		}
		return rep, nil
	case <-ctx.Done():
		return Reply{}, ctx.Err()
	}
}

// markStopped stops Submit from queueing; failAll then answers what was
// queued before.
func (g *Group) markStopped() {
	g.submitMu.Lock()
	g.stopped.Store(true)
	g.submitMu.Unlock()
}

// Call runs fn on the group's goroutine with the transaction group and the
// clock reading, and waits for it.
func (g *Group) Call(ctx context.Context, fn func(t *txn.Group, now tt.Interval)) error {
	done := make(chan struct{})
	call := func() {
		fn(g.t, g.now())
		close(done)
	}
	select {
	case g.calls <- call:
	case <-ctx.Done():
		return ctx.Err()
	case <-g.done:
		return ErrStopped
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-g.done:
		return ErrStopped
	}
}

func (g *Group) now() tt.Interval {
	iv, err := g.node.clock.Now()
	if err != nil {
		return paxos.Unhealthy
	}
	return iv
}

func (g *Group) run() {
	go g.syncer()
	defer func() {
		// Every written Ready's sync is still waited for (the engine
		// cannot close before), but nothing more is sent or applied.
		close(g.syncQ)
		<-g.syncerDone
		close(g.done)
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	failed := func(err error) {
		g.log.Error("group stopped: storage failed", "err", err)
		g.markStopped()
		g.failAll(err)
	}
	if g.campaignAtStart {
		g.t.Replica().Campaign(g.now())
		if err := g.handleReady(); err != nil {
			failed(err)
			return
		}
	}
	for {
		var err error
		select {
		case <-g.stop:
			g.failAll(ErrStopped)
			return
		case <-timer.C:
			g.t.Tick(g.now())
		case m := <-g.paxosIn:
			g.step(m)
		case m := <-g.txnIn:
			g.t.Receive(g.now(), m)
		case r := <-g.reqs:
			g.handle(r)
		case fn := <-g.calls:
			fn()
		case d := <-g.synced:
			err = g.onSynced(d)
		}
		// Drain whatever else is ready so one Ready covers it.
		if err == nil && len(g.paxosIn)+len(g.txnIn)+len(g.reqs)+len(g.calls)+len(g.synced) == 0 {
			runtime.Gosched()
		}
		if err == nil {
			err = g.drain()
		}
		if err == nil {
			err = g.handleReady()
		}
		if err != nil {
			failed(err)
			return
		}
		timer.Reset(g.sleep())
	}
}

func (g *Group) drain() error {
	for i := 0; i < 4096; i++ {
		select {
		case m := <-g.paxosIn:
			g.step(m)
		case m := <-g.txnIn:
			g.t.Receive(g.now(), m)
		case r := <-g.reqs:
			g.handle(r)
		case fn := <-g.calls:
			fn()
		case d := <-g.synced:
			if err := g.onSynced(d); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}

// maxPendingSyncs bounds the Readies written but not yet durable.
const maxPendingSyncs = 64

// syncJob is a Ready written to Pebble whose durability is awaited.
type syncJob struct {
	sync    func() error // nil: it had nothing to sync (it follows one that had)
	late    []paxos.Message
	tok     paxos.SyncToken
	entries int
}

type syncDone struct {
	tok paxos.SyncToken
	err error
}

// syncer waits for each written Ready's sync in order, then sends its
// held-back Paxos messages (promises, acceptances) and hands its token
// back to the loop. After a failed sync nothing more leaves; every later
// sync is still waited for, so the engine can close.
func (g *Group) syncer() {
	defer close(g.syncerDone)
	var failed error
	for job := range g.syncQ {
		if job.sync != nil {
			if err := job.sync(); err != nil {
				failed = cmp.Or(failed, err) // the first failure
			} else {
				g.syncs.Add(1)
				if m := g.node.met; m != nil {
					m.Fsyncs.Inc()
					m.PaxosBatch.Observe(float64(job.entries))
				}
			}
		}
		if failed != nil {
			g.synced <- syncDone{err: failed}
			continue
		}
		g.node.sendPaxos(g, job.late)
		g.synced <- syncDone{tok: job.tok}
	}
}

// onSynced hands a durable Ready's token to the replica.
func (g *Group) onSynced(d syncDone) error {
	g.pending--
	if d.err != nil {
		return d.err
	}
	g.t.Synced(d.tok)
	return nil
}

// waiter is a request in the group, waiting for its reply.
type waiter struct {
	done  func(Reply)
	kind  txn.ReqKind
	start time.Time
	parts int
}

func (g *Group) handle(r request) {
	g.nextID++
	r.req.ID = g.nextID
	g.waiting[r.req.ID] = waiter{done: r.done, kind: r.req.Kind, start: time.Now(), parts: len(r.req.Participants)}
	g.t.SetReadFloor(g.node.eng.GCHorizon())
	g.t.Handle(g.now(), r.req)
}

func (g *Group) reply(id uint64, rep Reply) {
	w, ok := g.waiting[id]
	if !ok {
		return
	}
	delete(g.waiting, id)
	if m := g.node.met; m != nil {
		outcome := "ok"
		switch {
		case errors.Is(rep.Err, txn.ErrAborted):
			outcome = "aborted"
			m.Aborts.Inc()
		case rep.Err != nil:
			outcome = "error"
		}
		m.Requests.WithLabelValues(kindName(w.kind), outcome).Inc()
	}
	if w.kind == txn.ReqCommit {
		g.node.recordCommit(CommitTrace{Group: g.cfg.Group, Start: w.start, Took: time.Since(w.start), TS: rep.TS,
			Participants: w.parts, Phases: rep.Phases, Err: rep.Err})
	}
	w.done(rep)
}

// sleep returns how long to wait before the next tick: until the clock's
// earliest reaches the group's wake time, capped so health changes and
// lost timers are noticed.
func (g *Group) sleep() time.Duration {
	const maxSleep = 50 * time.Millisecond
	w := g.t.NextWake()
	if w == 0 {
		return maxSleep
	}
	iv, err := g.node.clock.Now()
	if err != nil {
		return 10 * time.Millisecond
	}
	d := w.Sub(iv.Earliest)
	if d < 0 {
		return 0
	}
	return min(d, maxSleep)
}

// publishStrong publishes what single-group strong reads may use without
// entering the loop (see txn.Group.StrongReadState). It runs only where
// Pebble holds everything the replica has handed out for application; the
// state is withdrawn before every Ready is taken, so that nothing the Ready
// decides (a proposal's timestamp, a write released to the followers, a
// lost lease, a prepared transaction) leaves while a read can still use
// the state published before it.
func (g *Group) publishStrong() {
	if s, ok := g.t.StrongReadState(); ok {
		g.strong.Store(&s)
	} else {
		g.strong.Store(nil)
	}
}

// StrongRead serves a single-group strong read on the caller's goroutine
// when the group's last published state allows it (this replica leads with
// a valid lease and nothing prepared); ok false means the read must go
// through Do.
func (g *Group) StrongRead(task txn.ReadTask) (kvs []kv.KeyValue, ts tt.Timestamp, ok bool, err error) {
	s := g.strong.Load()
	if s == nil {
		return nil, 0, false, nil
	}
	iv, cerr := g.node.clock.Now()
	if cerr != nil || iv.Latest >= s.LeaseEnd || s.TS < g.node.eng.GCHorizon() {
		// Past the lease, or GC passed the timestamp since it was
		// published: through Do, which picks a fresh one.
		return nil, 0, false, nil
	}
	task.TS = s.TS
	kvs, err = txnkv.Read(g.node.eng, task)
	if m := g.node.met; m != nil {
		outcome := "ok"
		if err != nil {
			outcome = "error"
		}
		m.Requests.WithLabelValues("snapshot_read", outcome).Inc()
	}
	return kvs, s.TS, true, err
}

// handleReady runs the txn.Ready contract until the group has nothing more.
func (g *Group) handleReady() error {
	if g.t.HasReady() {
		g.strong.Store(nil)
	}
	// The published strong-read state (StrongReadState) keeps above the
	// GC horizon.
	g.t.SetReadFloor(g.node.eng.GCHorizon())
	for g.t.HasReady() {
		rd := g.t.Ready()
		g.readies.Add(1)
		// A leader's Accepts go out first: followers' fsyncs overlap ours.
		early, late := splitEarly(rd.Messages)
		g.node.sendPaxos(g, early)
		sync, err := txnkv.Persist(g.node.eng, g.store, g.cfg.Group, &rd)
		if err != nil {
			return err
		}
		g.publishStrong()
		// What depends only on chosen entries and volatile state leaves
		// now, one fsync sooner (see txnkv.Persist).
		g.node.sendTxn(g, rd.Msgs)
		for _, task := range rd.Reads {
			kvs, err := txnkv.Read(g.node.eng, task)
			g.reply(task.ID, Reply{Response: txn.Response{ID: task.ID, Err: err, Priority: task.Priority}, KVs: kvs, ReadTS: task.TS, Epoch: task.Epoch})
		}
		for _, resp := range rd.Responses {
			g.reply(resp.ID, Reply{Response: resp})
		}
		if sync == nil && g.pending == 0 {
			// Nothing to wait for, nothing in flight before it.
			g.node.sendPaxos(g, late)
			g.t.Advance(rd)
		} else {
			// The loop goes on while the sync is in flight: more input
			// joins the next Ready and the next fsync.
			for g.pending >= maxPendingSyncs {
				if err := g.onSynced(<-g.synced); err != nil {
					if sync != nil {
						_ = sync()
					}
					return err
				}
			}
			g.pending++
			g.syncQ <- syncJob{sync: sync, late: late, tok: g.t.AdvanceUnsynced(rd), entries: len(rd.Entries)}
		}
		st := g.t.Replica().Status().Applied
		if len(rd.Committed) > 0 {
			st = rd.ApplyState
		}
		for _, s := range rd.Snapshots {
			g.sendSnapshot(s.To, st)
		}
		if rd.Lease != nil {
			g.log.Debug("lease", "ballot", rd.Lease.Ballot, "end", rd.Lease.End, "holding", rd.Lease.Holding)
		}
		if err := g.maybeCompact(st); err != nil {
			return err
		}
	}
	prev := g.status.Load()
	was, now := prev.Paxos, g.t.Replica().Status()
	changed := now.Role != was.Role || now.Promised != was.Promised || g.t.Replica().LeaderHint() != prev.Leader
	if changed || time.Since(g.publishedAt) >= publishEvery {
		g.publishStatus(now)
	}
	if now.Role != was.Role || now.Promised != was.Promised {
		g.log.Debug("paxos role", "role", now.Role, "promised", now.Promised, "was", was.Role)
	}
	if lead, wasLeader := now.Role == "leader", was.Role == "leader"; lead != wasLeader {
		g.log.Info("leadership changed", "leader", lead, "ballot", now.Promised)
		if m := g.node.met; m != nil {
			m.LeaderChanges.Inc()
		}
		if lead {
			g.leaderSince = time.Now()
		}
	}
	g.maybeTransfer()
	return nil
}

// maybeTransfer hands leadership to the preferred replica (in the shard's
// home region) once this replica has led for a while, at most once every
// ten leases so that an unreachable preferred replica costs little.
func (g *Group) maybeTransfer() {
	p := g.cfg.Preferred
	if p == 0 || p == g.cfg.Replica || g.node.region == g.cfg.Home || !g.IsLeader() || g.node.Draining() {
		return
	}
	now := time.Now()
	if now.Sub(g.leaderSince) < 2*g.cfg.HeartbeatInterval || now.Sub(g.lastTransfer) < 10*g.cfg.Lease {
		return
	}
	if why := g.transferBlocked(p); why != "" {
		g.log.Debug("not handing leadership home", "to", p, "why", why)
		return
	}
	g.lastTransfer = now
	if err := g.t.Replica().Abdicate(g.now(), p); err == nil {
		g.log.Info("handing leadership to the home region's replica", "to", p)
	}
}

// transferBlocked says why leadership may not go to replica p now (empty:
// it may): p must have answered within two heartbeats, hold every chosen
// entry, need no snapshot, and run on a node whose clock its peers trust.
// A hand-off to a dead, lagging or fenced replica leaves the group without
// a leader until an election.
func (g *Group) transferBlocked(p paxos.ReplicaID) string {
	r := g.t.Replica()
	iv := g.now()
	for _, f := range r.Followers() {
		if f.ID != p {
			continue
		}
		switch {
		case f.LastAck == 0 || iv.Latest == 0 || iv.Earliest.Sub(f.LastAck) > 2*g.cfg.HeartbeatInterval:
			return "it has not answered lately"
		case f.Snapshot || f.Match < r.Status().Chosen:
			return "it is behind"
		case !g.node.guard.PeerTrusted(g.cfg.Nodes[p]):
			return "its node's clock is not trusted"
		}
		return ""
	}
	return "no progress known"
}

func (g *Group) maybeCompact(st paxos.ApplyState) error {
	r := g.t.Replica()
	if st.Index < r.FirstIndex()+uint64(g.cfg.CompactAfter) {
		return nil
	}
	before := st.Index - uint64(g.cfg.CompactKeep) + 1
	if r.LogBytes() <= g.cfg.MaxLogBytes {
		// Keep what a replica heard from lately still needs.
		iv := g.now()
		for _, f := range r.Followers() {
			if f.LastAck != 0 && iv.Latest != 0 && iv.Earliest.Sub(f.LastAck) <= g.cfg.LogKeepFor && !f.Snapshot {
				before = min(before, f.Match+1)
			}
		}
	}
	if before <= r.FirstIndex() {
		return nil
	}
	b := g.node.eng.NewBatch()
	if err := g.store.Truncate(b, before); err != nil {
		b.Close()
		return err
	}
	// Synced: it also makes every earlier (unsynced) apply batch durable.
	if err := b.Commit(true); err != nil {
		return err
	}
	return r.Compact(before - 1)
}

// splitEarly separates the messages that may leave before the persist.
func splitEarly(msgs []paxos.Message) (early, late []paxos.Message) {
	for _, m := range msgs {
		if paxos.SendBeforePersist(m) {
			early = append(early, m)
		} else {
			late = append(late, m)
		}
	}
	return early, late
}

func (g *Group) failAll(err error) {
	for id, w := range g.waiting {
		delete(g.waiting, id)
		w.done(Reply{Response: txn.Response{ID: id, Err: err}})
	}
	for {
		select {
		case r := <-g.reqs:
			r.done(Reply{Response: txn.Response{Err: err}})
		default:
			return
		}
	}
}

func (g *Group) step(m paxos.Message) {
	if m.Type == paxos.MsgSnapshot {
		if err := g.installSnapshot(m); err != nil {
			g.log.Warn("snapshot not installed", "from", m.From, "err", err)
		}
		return
	}
	g.t.Step(g.now(), m)
}

// sendSnapshot ships the state at st (just applied, so the engine holds
// exactly that state) to a replica whose entries were truncated.
func (g *Group) sendSnapshot(to paxos.ReplicaID, st paxos.ApplyState) {
	r := g.t.Replica()
	snap := g.node.eng.NewSnapshot()
	defer snap.Close()
	payload, err := g.store.ExportSnapshot(snap, g.cfg.Start, g.cfg.End, st)
	if err != nil {
		g.log.Warn("snapshot export failed", "to", to, "err", err)
		r.ReportSnapshot(to, false)
		return
	}
	wait := pebblestore.SnapshotWait(len(payload))
	g.log.Info("sending snapshot", "to", to, "index", st.Index, "bytes", len(payload), "presumed_lost_after", wait)
	g.node.sendPaxos(g, []paxos.Message{{Type: paxos.MsgSnapshot, Group: g.cfg.Group, From: g.cfg.Replica, To: to,
		Ballot: r.Status().Promised, Index: st.Index, Snapshot: st, Payload: payload}})
	r.SnapshotSent(to, st.Index, wait)
}

func (g *Group) installSnapshot(m paxos.Message) error {
	st, err := pebblestore.SnapshotState(m.Payload)
	if err != nil {
		return err
	}
	r := g.t.Replica()
	cur := r.Status()
	if st.Index <= cur.Chosen || st.Index <= cur.Applied.Index {
		g.log.Info("snapshot not installed: this replica already holds its index", "from", m.From, "index", st.Index,
			"chosen", cur.Chosen, "applied", cur.Applied.Index)
		return nil
	}
	b := g.node.eng.NewBatch()
	if _, _, err := g.store.InstallSnapshot(b, g.cfg.Start, g.cfg.End, m.Payload); err != nil {
		b.Close()
		return err
	}
	if err := b.Commit(true); err != nil {
		return err
	}
	recs, err := txnkv.Records(g.node.eng, g.cfg.Group)
	if err != nil {
		return err
	}
	if err := g.t.Restore(recs); err != nil {
		return err
	}
	r.RestoreSnapshot(g.now(), st, m.From, m.Ballot)
	g.log.Info("installed snapshot", "from", m.From, "index", st.Index)
	return nil
}

// Stop stops the group's goroutine; waiting requests fail with ErrStopped.
func (g *Group) Stop() {
	g.once.Do(func() {
		g.markStopped()
		close(g.stop)
	})
	<-g.done
}

func kindName(k txn.ReqKind) string {
	switch k {
	case txn.ReqRead:
		return "read"
	case txn.ReqCommit:
		return "commit"
	case txn.ReqRollback:
		return "rollback"
	case txn.ReqStrongTS:
		return "strong_ts"
	case txn.ReqSnapshotRead:
		return "snapshot_read"
	case txn.ReqStaleRead:
		return "stale_read"
	}
	return "other"
}
