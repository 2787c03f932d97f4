package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/paxos/pebblestore"
	"github.com/meridiandb/meridian/tt"
)

// StateMachine is what a group's chosen log is applied to. Apply writes the
// effects of ents into b (the runtime adds the apply state and commits b);
// it runs on the group's goroutine. Span is the key range the group's MVCC
// data lives in, which snapshots carry (with the group's meta records).
// Restored is called after a snapshot replaced the state.
type StateMachine interface {
	Apply(b *kv.Batch, ents []paxos.Applied) error
	Span() (start, end []byte)
	Restored(st paxos.ApplyState) error
}

// GroupConfig describes one group hosted on a node.
type GroupConfig struct {
	Group    uint64
	Replica  paxos.ReplicaID            // this node's replica
	Voters   []paxos.ReplicaID          // voting replicas
	Learners []paxos.ReplicaID          // read-only replicas
	Nodes    map[paxos.ReplicaID]NodeID // where each replica lives

	Lease             time.Duration // default 10 s
	HeartbeatInterval time.Duration // default Lease/10
	ElectionTimeout   time.Duration // default Lease/4
	// CompactAfter: truncate the log once this many applied entries are in
	// it (default 10000); CompactKeep entries stay for lagging followers.
	CompactAfter, CompactKeep int
	// InboxSize bounds queued inbound messages (default 8192; beyond, they
	// are dropped and Paxos resends). ProposalQueue bounds queued proposals
	// (default 4096; beyond, Propose returns ErrBusy).
	InboxSize, ProposalQueue int
}

// Result is the outcome of a proposal that was chosen and applied.
type Result struct {
	Index uint64
	TS    tt.Timestamp
	// Applied is when the entry was applied here (after commit wait for
	// commit-wait entries); Chosen is when the leader learned it chosen.
	Chosen, Applied time.Time
}

// ErrStopped is returned when the group has been stopped.
var ErrStopped = errors.New("node: group stopped")

// ErrBusy is returned when the proposal queue is full.
var ErrBusy = errors.New("node: too many queued proposals")

type proposal struct {
	ctx        context.Context
	data       []byte
	minTS      tt.Timestamp
	commitWait bool
	idx        uint64
	ts         tt.Timestamp
	done       chan struct{}
	res        Result
	err        error
}

// Group runs one replica in its own goroutine.
type Group struct {
	cfg   GroupConfig
	node  *Node
	r     *paxos.Replica
	store *pebblestore.Store
	sm    StateMachine
	log   *slog.Logger

	inbox chan paxos.Message
	props chan *proposal
	calls chan func()
	stop  chan struct{}
	done  chan struct{}

	waiting map[uint64]*proposal
	status  atomic.Pointer[paxos.Status]
	leader  atomic.Bool
	stopped atomic.Bool
	once    sync.Once

	// Counters for status and benchmarks.
	syncs, readies, dropped atomic.Uint64
}

func (c *GroupConfig) fill() {
	if c.Lease <= 0 {
		c.Lease = 10 * time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = c.Lease / 10
	}
	if c.ElectionTimeout <= 0 {
		c.ElectionTimeout = c.Lease / 4
	}
	if c.CompactAfter <= 0 {
		c.CompactAfter = 10000
	}
	if c.CompactKeep <= 0 || c.CompactKeep > c.CompactAfter {
		c.CompactKeep = c.CompactAfter / 4
	}
	if c.InboxSize <= 0 {
		c.InboxSize = 8192
	}
	if c.ProposalQueue <= 0 {
		c.ProposalQueue = 4096
	}
}

func newGroup(n *Node, cfg GroupConfig, sm StateMachine) (*Group, error) {
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
	})
	if err != nil {
		return nil, fmt.Errorf("group %d: %w", cfg.Group, err)
	}
	g := &Group{
		cfg: cfg, node: n, r: r, store: store, sm: sm,
		log:     n.log.With("group", cfg.Group, "replica", cfg.Replica),
		inbox:   make(chan paxos.Message, cfg.InboxSize),
		props:   make(chan *proposal, cfg.ProposalQueue),
		calls:   make(chan func(), 64),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		waiting: map[uint64]*proposal{},
	}
	s := r.Status()
	g.status.Store(&s)
	return g, nil
}

// ID returns the group ID.
func (g *Group) ID() uint64 { return g.cfg.Group }

// Status returns the replica's state as of its last loop iteration.
func (g *Group) Status() paxos.Status { return *g.status.Load() }

// IsLeader reports whether this replica led at its last loop iteration.
func (g *Group) IsLeader() bool { return g.leader.Load() }

// deliver queues an inbound message, dropping it when the inbox is full.
func (g *Group) deliver(m paxos.Message) {
	select {
	case g.inbox <- m:
	default:
		g.dropped.Add(1)
	}
}

// Propose replicates data through the group and returns once it is chosen
// and applied here (after commit wait when commitWait is set). It fails
// with a *paxos.NotLeaderError at followers, ErrBusy when the queue is
// full, paxos.ErrDropped when another value took the slot, or the
// context's error.
func (g *Group) Propose(ctx context.Context, data []byte, minTS tt.Timestamp, commitWait bool) (Result, error) {
	if g.stopped.Load() {
		return Result{}, ErrStopped
	}
	p := &proposal{ctx: ctx, data: data, minTS: minTS, commitWait: commitWait, done: make(chan struct{})}
	select {
	case g.props <- p:
	default:
		return Result{}, ErrBusy
	}
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-g.done:
		return Result{}, ErrStopped
	}
}

// Do runs fn on the group's goroutine with the replica and the current
// clock reading, and waits for it: the way callers read replica state
// consistently (e.g. lease-holder reads).
func (g *Group) Do(ctx context.Context, fn func(r *paxos.Replica, now tt.Interval)) error {
	done := make(chan struct{})
	call := func() {
		fn(g.r, g.now())
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
	defer close(g.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-g.stop:
			g.failAll(ErrStopped)
			return
		case <-timer.C:
			g.r.Tick(g.now())
		case m := <-g.inbox:
			g.step(m)
		case p := <-g.props:
			g.propose(p)
		case fn := <-g.calls:
			fn()
		}
		// Drain whatever else is ready so one Ready (one fsync) covers it.
		g.drain()
		if err := g.handleReady(); err != nil {
			g.log.Error("group stopped: storage failed", "err", err)
			g.failAll(err)
			g.stopped.Store(true)
			return
		}
		timer.Reset(g.sleep())
	}
}

// drain takes every queued input without blocking (bounded, so the timer
// still gets its turn).
func (g *Group) drain() {
	for i := 0; i < 4096; i++ {
		select {
		case m := <-g.inbox:
			g.step(m)
		case p := <-g.props:
			g.propose(p)
		case fn := <-g.calls:
			fn()
		default:
			return
		}
	}
}

func (g *Group) propose(p *proposal) {
	if p.ctx.Err() != nil {
		p.err = p.ctx.Err()
		close(p.done)
		return
	}
	idx, ts, err := g.r.Propose(g.now(), p.data, p.minTS, p.commitWait)
	if err != nil {
		p.err = err
		close(p.done)
		return
	}
	p.idx, p.ts = idx, ts
	g.waiting[idx] = p
}

// sleep returns how long to wait before the next tick: until the clock's
// earliest reaches the replica's wake time, capped so health changes and
// lost timers are noticed.
func (g *Group) sleep() time.Duration {
	const maxSleep = 50 * time.Millisecond
	w := g.r.NextWake()
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

// handleReady runs the Ready contract until the replica has nothing more.
func (g *Group) handleReady() error {
	for g.r.HasReady() {
		rd := g.r.Ready()
		g.readies.Add(1)
		// A leader's Accepts go out first: followers' fsyncs overlap ours.
		early, late := splitEarly(rd.Messages)
		g.node.send(early)
		if rd.HardState != nil || len(rd.Entries) > 0 {
			b := g.node.eng.NewBatch()
			if err := g.store.SaveReady(b, &rd); err != nil {
				b.Close()
				return err
			}
			if err := b.Commit(true); err != nil {
				return err
			}
			g.syncs.Add(1)
		}
		g.node.send(late)
		if len(rd.Committed) > 0 {
			if err := g.apply(rd.Committed, rd.ApplyState); err != nil {
				return err
			}
		}
		st := g.r.Status().Applied
		if len(rd.Committed) > 0 {
			st = rd.ApplyState
		}
		for _, s := range rd.Snapshots {
			g.sendSnapshot(s.To, st)
		}
		if rd.Lease != nil {
			g.log.Debug("lease", "ballot", rd.Lease.Ballot, "end", rd.Lease.End, "holding", rd.Lease.Holding)
		}
		g.r.Advance(rd)
	}
	s := g.r.Status()
	g.status.Store(&s)
	if lead := g.r.IsLeader(); lead != g.leader.Load() {
		g.leader.Store(lead)
		g.log.Info("leadership changed", "leader", lead, "ballot", s.Promised)
	}
	return nil
}

func (g *Group) apply(ents []paxos.Applied, st paxos.ApplyState) error {
	b := g.node.eng.NewBatch()
	if g.sm != nil {
		if err := g.sm.Apply(b, ents); err != nil {
			b.Close()
			return fmt.Errorf("apply: %w", err)
		}
	}
	if err := g.store.SaveApplyState(b, st); err != nil {
		b.Close()
		return err
	}
	// Unsynced: the entries are durable in the log; a crash replays them.
	if err := b.Commit(false); err != nil {
		return err
	}
	now := time.Now()
	for _, a := range ents {
		p := g.waiting[a.Index]
		if p == nil {
			continue
		}
		delete(g.waiting, a.Index)
		if a.Skipped || a.TS != p.ts || a.Type != paxos.EntryNormal {
			p.err = paxos.ErrDropped
		} else {
			p.res = Result{Index: a.Index, TS: a.TS, Applied: now}
		}
		close(p.done)
	}
	if st.Index >= g.r.FirstIndex()+uint64(g.cfg.CompactAfter) {
		before := st.Index - uint64(g.cfg.CompactKeep) + 1
		tb := g.node.eng.NewBatch()
		if err := g.store.Truncate(tb, before); err != nil {
			tb.Close()
			return err
		}
		// Synced: it also makes every earlier apply batch durable.
		if err := tb.Commit(true); err != nil {
			return err
		}
		if err := g.r.Compact(before - 1); err != nil {
			return err
		}
	}
	return nil
}

func (g *Group) failAll(err error) {
	for idx, p := range g.waiting {
		p.err = err
		close(p.done)
		delete(g.waiting, idx)
	}
	for {
		select {
		case p := <-g.props:
			p.err = err
			close(p.done)
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
	g.r.Step(g.now(), m)
}

// sendSnapshot ships the state machine at st (just applied, so the engine
// holds exactly that state) to a replica whose entries were truncated.
func (g *Group) sendSnapshot(to paxos.ReplicaID, st paxos.ApplyState) {
	if g.sm == nil {
		g.r.ReportSnapshot(to, false)
		return
	}
	snap := g.node.eng.NewSnapshot()
	defer snap.Close()
	start, end := g.sm.Span()
	payload, err := g.store.ExportSnapshot(snap, start, end, st)
	if err != nil {
		g.log.Warn("snapshot export failed", "to", to, "err", err)
		g.r.ReportSnapshot(to, false)
		return
	}
	g.log.Info("sending snapshot", "to", to, "index", st.Index, "bytes", len(payload))
	s := g.r.Status()
	g.node.send([]paxos.Message{{Type: paxos.MsgSnapshot, Group: g.cfg.Group, From: g.cfg.Replica, To: to,
		Ballot: s.Promised, Index: st.Index, Snapshot: st, Payload: payload}})
	g.r.ReportSnapshot(to, true)
}

func (g *Group) installSnapshot(m paxos.Message) error {
	if g.sm == nil {
		return errors.New("no state machine")
	}
	st, err := pebblestore.SnapshotState(m.Payload)
	if err != nil {
		return err
	}
	cur := g.r.Status()
	if st.Index <= cur.Chosen || st.Index <= cur.Applied.Index {
		return nil // stale: we already have it
	}
	start, end := g.sm.Span()
	b := g.node.eng.NewBatch()
	st, horizon, err := g.store.InstallSnapshot(b, start, end, m.Payload)
	if err != nil {
		b.Close()
		return err
	}
	if err := b.Commit(true); err != nil {
		return err
	}
	if horizon > g.node.eng.GCHorizon() {
		if err := g.node.eng.SetGCHorizon(horizon); err != nil {
			return err
		}
	}
	if err := g.sm.Restored(st); err != nil {
		return err
	}
	g.r.RestoreSnapshot(g.now(), st, m.From, m.Ballot)
	g.log.Info("installed snapshot", "from", m.From, "index", st.Index)
	return nil
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
