package txn

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/tt"
)

type txnStatus uint8

const (
	stActive     txnStatus = iota // reading, taking shared locks
	stCommitting                  // single-group commit or coordinator commit in progress
	stPreparing                   // participant: locking / prepare record proposed
	stPrepared                    // participant: prepare record applied, vote sent
	stAborted                     // wounded, timed out, rolled back or voted no
)

// txnState is the leader's volatile view of a transaction at this group.
type txnState struct {
	meta       Meta
	status     txnStatus
	lastActive tt.Timestamp
	reason     string
	readHere   bool
	reqs       []uint64 // single-group commit: client requests waiting
	// logged: a commit record is proposed (the outcome is out of our hands)
	// or the transaction is prepared here: it can no longer be wounded.
	logged bool
}

// woundable reports whether an older transaction may abort t to take its
// locks: until t logged a commit record or prepared, it can still abort
// (a coordinator tells its participants; a participant votes no).
func (t *txnState) woundable() bool {
	return t.status != stAborted && t.status != stPrepared && !t.logged
}

// waiter is a request blocked on locks.
type waiter struct {
	meta     Meta
	req      lockReq
	deadline tt.Timestamp
	grant    func()
	fail     func(error)
}

// prop is a record the leader proposed and waits to see applied.
type prop struct {
	data       []byte // the marshaled record
	minTS      tt.Timestamp
	commitWait bool
	applied    func(a paxos.Applied)
	failed     func(err error)
}

// entryProps are the proposals one entry carries, in record order, and the
// timestamp the entry was proposed at.
type entryProps struct {
	ts    tt.Timestamp
	props []*prop
}

// Proposals made while handling one batch of inputs share entries (see
// flushProposals), up to these limits per entry.
const (
	maxBatchRecords = 256
	maxBatchBytes   = 256 << 10
)

// prepared is a participant's prepared transaction, from its applied
// prepare record (every replica keeps these: they bound t_safe_tm).
type prepared struct {
	rec       record // kind recPrepare; rec.ts is the prepare timestamp
	since     tt.Timestamp
	lastQuery tt.Timestamp
	resolving bool // leader: a resolve record is proposed
}

// coord is a coordinator's volatile state for one two-phase commit.
type coord struct {
	meta     Meta
	reqs     []uint64 // client requests waiting for the outcome
	parts    []Participant
	own      *Participant
	votes    map[uint64]tt.Timestamp
	deadline tt.Timestamp
	lastSend tt.Timestamp
	phase    coordPhase
	// Timing (by this replica's clock's earliest): request arrival, own
	// locks taken, votes all in, commit record proposed.
	started, locked, voted, proposed tt.Timestamp
}

type coordPhase uint8

const (
	cpLocking coordPhase = iota
	cpVoting
	cpCommitting
	cpAborting
)

type pendingRead struct {
	task     ReadTask
	deadline tt.Timestamp
}

// Group is one replica's transaction layer over its Paxos replica: a pure,
// deterministic state machine like paxos.Replica (time comes in with every
// input; effects leave in Ready). At the leader it runs the lock table,
// single-group commits, the coordinator and participant sides of two-phase
// commit, and timestamp choice for read-only transactions; at every
// replica it applies the log (writes, prepared set, outcomes) and serves
// snapshot reads once safe time allows.
type Group struct {
	cfg Config
	id  uint64
	r   *paxos.Replica

	locks    *lockTable
	txns     map[TxnID]*txnState
	waits    []*waiter
	coords   map[TxnID]*coord
	pending  []*prop                // proposed since the last Ready
	props    map[uint64]*entryProps // by log index
	prepared map[TxnID]*prepared
	outcomes map[TxnID]outcome
	outcomeQ []queuedOutcome // outcomes in the order recorded, for expiry
	chunks   []chunkRef      // persisted outcome chunks, oldest first
	chunk    outcomeChunk    // outcomes recorded in this Ready, not yet out
	applying uint64          // log index of the entry being applied
	reads    []*pendingRead

	leading    bool
	lastClose  tt.Timestamp
	readFloor  tt.Timestamp // see SetReadFloor
	now        tt.Interval
	retrying   bool
	retryAgain bool

	out Ready
}

// NewGroup wraps a replica. records are the group's persisted transaction
// records (kv meta under MetaPrefix), as name/value pairs.
func NewGroup(id uint64, r *paxos.Replica, cfg Config, records [][2][]byte) (*Group, error) {
	cfg.fill()
	g := &Group{cfg: cfg, id: id, r: r, locks: newLockTable(), txns: map[TxnID]*txnState{},
		coords: map[TxnID]*coord{}, props: map[uint64]*entryProps{}}
	if err := g.Restore(records); err != nil {
		return nil, err
	}
	return g, nil
}

// Restore replaces the replicated transaction state (prepared set and
// outcomes) with records, in name order as kv keeps them, after a restart
// or a snapshot install.
func (g *Group) Restore(records [][2][]byte) error {
	g.prepared = map[TxnID]*prepared{}
	g.outcomes = map[TxnID]outcome{}
	g.outcomeQ = nil
	g.chunks = nil
	g.chunk = outcomeChunk{}
	for _, kv := range records {
		name, val := kv[0], kv[1]
		switch {
		case hasPrefix(name, "txn/prep/"):
			rec, err := unmarshalRecord(val)
			if err != nil || rec.kind != recPrepare {
				return fmt.Errorf("txn: group %d: prepared record %x: %w", g.id, name, ErrCorruptRecord)
			}
			g.prepared[rec.txn.ID] = &prepared{rec: rec}
		case hasPrefix(name, outcomeChunkPrefix):
			// Chunks come in name order, oldest first: a later outcome for
			// the same transaction replaces an earlier one.
			c, err := unmarshalOutcomeChunk(name, val)
			if err != nil {
				return fmt.Errorf("txn: group %d: outcome record %x: %w", g.id, name, err)
			}
			for _, o := range c.outs {
				g.outcomes[o.id] = o.outcome
				g.outcomeQ = append(g.outcomeQ, queuedOutcome{id: o.id, ts: o.ts})
			}
			g.chunks = append(g.chunks, chunkRef{index: c.index, maxTS: c.maxTS()})
		}
	}
	slices.SortFunc(g.outcomeQ, func(a, b queuedOutcome) int { return cmp.Compare(a.ts, b.ts) })
	if g.leading {
		g.loseLeadership()
	}
	return nil
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

// Replica returns the underlying Paxos replica.
func (g *Group) Replica() *paxos.Replica { return g.r }

// ID returns the group ID.
func (g *Group) ID() uint64 { return g.id }

// ----------------------------------------------------------------------
// Inputs

// Step feeds a Paxos message.
func (g *Group) Step(now tt.Interval, m paxos.Message) {
	g.now = now
	g.r.Step(now, m)
	g.after()
}

// Tick lets time pass: Paxos timers, lock and transaction timeouts, vote
// resends, outcome queries, read deadlines.
func (g *Group) Tick(now tt.Interval) {
	g.now = now
	g.r.Tick(now)
	g.after()
	if g.leading {
		g.tickLeader()
	}
	g.tickReads()
}

// after reacts to leadership changes caused by the last input.
func (g *Group) after() {
	lead := g.r.IsLeader()
	switch {
	case lead && !g.leading:
		g.leading = true
		// Prepared transactions keep their locks under the new leader.
		for _, id := range sortedIDs(g.prepared) {
			g.relock(g.prepared[id])
		}
	case !lead && g.leading:
		g.loseLeadership()
	}
}

// relock gives a prepared transaction its locks (shared on what it read
// here, exclusive on what it writes) in this leader's lock table: it held
// them under the leader that logged its prepare record, and must hold them
// until its outcome. Nothing here can hold conflicting locks: a new leader
// serves no request before it applied every entry chosen before it, this
// prepare record among them.
func (g *Group) relock(p *prepared) {
	id := p.rec.txn.ID
	for _, k := range p.rec.readKeys {
		g.locks.grant(id, lockReq{keys: []string{k}})
	}
	for i := range p.rec.readSpans {
		sp := p.rec.readSpans[i]
		g.locks.grant(id, lockReq{span: &sp})
	}
	g.locks.grant(id, lockReq{exclusive: true, keys: writeKeys(p.rec.writes)})
	g.txns[id] = &txnState{meta: p.rec.txn, status: stPrepared, lastActive: g.now.Earliest, logged: true}
	p.since, p.lastQuery, p.resolving = g.now.Earliest, 0, false
}

func (g *Group) loseLeadership() {
	g.leading = false
	err := g.notLeader()
	for _, w := range g.waits {
		w.fail(err)
	}
	g.waits = nil
	// In index and ID order: what fails here leaves in Ready, and the
	// group's output must not depend on map order.
	for _, idx := range slices.Sorted(maps.Keys(g.props)) {
		for _, p := range g.props[idx].props {
			p.failed(err)
		}
		delete(g.props, idx)
	}
	for _, id := range sortedIDs(g.coords) {
		for _, req := range g.coords[id].reqs {
			g.respond(Response{ID: req, Err: err, Hint: g.r.LeaderHint()})
		}
		delete(g.coords, id)
	}
	for _, id := range sortedIDs(g.txns) {
		for _, req := range g.txns[id].reqs {
			g.respond(Response{ID: req, Err: err, Hint: g.r.LeaderHint()})
		}
	}
	g.locks = newLockTable()
	g.txns = map[TxnID]*txnState{}
	for _, p := range g.prepared {
		p.resolving = false
	}
}

func (g *Group) notLeader() error {
	return fmt.Errorf("%w (group %d, try replica %d)", ErrNotLeader, g.id, g.r.LeaderHint())
}

func (g *Group) respond(r Response) { g.out.Responses = append(g.out.Responses, r) }

func (g *Group) sendMsg(m Msg) {
	m.From = g.id
	g.out.Msgs = append(g.out.Msgs, m)
}

// epoch returns the lock epoch of this leadership (zero when not leading).
func (g *Group) epoch() uint64 {
	b := g.r.LeaderBallot()
	return epochOf(b.Round, uint64(b.Replica))
}

// serving reports whether this replica may serve leader requests now: it
// holds a valid lease and has applied everything chosen before it led.
func (g *Group) serving() bool { return g.leading && g.r.Leaseholder(g.now) }

// Handle takes a client request.
func (g *Group) Handle(now tt.Interval, req Request) {
	g.now = now
	g.after()
	switch req.Kind {
	case ReqSnapshotRead:
		g.snapshotRead(req)
		return
	case ReqStaleRead:
		g.staleRead(req)
		return
	case ReqStrongTS:
		g.strongTS(req)
		return
	}
	if !g.serving() {
		g.respond(Response{ID: req.ID, Err: g.notLeader(), Hint: g.r.LeaderHint()})
		return
	}
	if req.Txn.ID.IsZero() {
		g.respond(Response{ID: req.ID, Err: fmt.Errorf("%w: missing transaction ID", ErrInvalid)})
		return
	}
	if req.Txn.Priority == 0 {
		// The first group a transaction reaches stamps its priority (its
		// start time for wound-wait); the client keeps it across retries.
		req.Txn.Priority = g.now.Latest
	}
	switch req.Kind {
	case ReqRead:
		g.lockingRead(req)
	case ReqCommit:
		g.commit(req)
	case ReqRollback:
		g.rollback(req)
	default:
		g.respond(Response{ID: req.ID, Err: fmt.Errorf("%w: unknown request kind %d", ErrInvalid, req.Kind)})
	}
}

// Receive takes a message from another group's leader.
func (g *Group) Receive(now tt.Interval, m Msg) {
	g.now = now
	g.after()
	if m.Type == MsgCloseRequest {
		if g.serving() {
			_, _, _ = g.r.CloseTimestamp(now)
		}
		return
	}
	if !g.serving() {
		return // the sender retries; the runtime routes to the leader it knows
	}
	switch m.Type {
	case MsgPrepare:
		g.onPrepare(m)
	case MsgVote:
		g.onVote(m)
	case MsgDecide:
		g.onDecide(m.Txn.ID, m.OK, m.TS)
	case MsgQuery:
		g.onQuery(m)
	case MsgOutcome:
		if !m.Pending {
			g.onDecide(m.Txn.ID, m.OK, m.TS)
		}
	}
}

// ----------------------------------------------------------------------
// Transactions and locks (leader)

func (g *Group) txn(meta Meta) *txnState {
	t := g.txns[meta.ID]
	if t == nil {
		t = &txnState{meta: meta}
		g.txns[meta.ID] = t
	}
	t.lastActive = g.now.Earliest
	return t
}

// abortTxn aborts a transaction that has not logged a commit or prepare:
// its locks go and its waiting requests fail. It is idempotent, and safe to
// reach again from the failure callbacks it runs.
func (g *Group) abortTxn(t *txnState, reason string) {
	if t.status == stAborted {
		return
	}
	t.status = stAborted
	t.reason = reason
	// The tombstone lives TxnTimeout from now, not from the last request:
	// an abandoned transaction was already idle that long, and would
	// otherwise lose its tombstone at the next tick and carry on, its
	// read locks gone, as a fresh transaction.
	t.lastActive = g.now.Earliest
	g.locks.release(t.meta.ID)
	var failed []*waiter
	kept := g.waits[:0]
	for _, w := range g.waits {
		if w.meta.ID == t.meta.ID {
			failed = append(failed, w)
			continue
		}
		kept = append(kept, w)
	}
	g.waits = kept
	err := aborted("%s", reason)
	for _, w := range failed {
		w.fail(err)
	}
	for _, req := range t.reqs {
		g.respond(Response{ID: req, Err: err})
	}
	t.reqs = nil
	if c := g.coords[t.meta.ID]; c != nil && c.phase < cpCommitting {
		g.abortCoord(c, reason)
	}
	g.retryWaiters()
}

// acquire takes req's locks for meta under wound-wait: an older requester
// wounds younger holders that have not prepared; a younger one waits, in
// a bounded queue, until LockWait passes.
func (g *Group) acquire(meta Meta, req lockReq, grant func(), fail func(error)) {
	if g.tryAcquire(meta, req) {
		grant()
		return
	}
	if len(g.waits) >= g.cfg.MaxWaiters {
		fail(fmt.Errorf("%w: %d requests already wait for locks at group %d", ErrBusy, len(g.waits), g.id))
		return
	}
	g.waits = append(g.waits, &waiter{meta: meta, req: req, deadline: g.now.Earliest.Add(g.cfg.LockWait), grant: grant, fail: fail})
}

// tryAcquire grants req if no conflict remains after wounding what may be
// wounded.
func (g *Group) tryAcquire(meta Meta, req lockReq) bool {
	blockers := g.locks.blockers(meta.ID, req)
	if len(blockers) == 0 {
		g.locks.grant(meta.ID, req)
		return true
	}
	wait := false
	for _, b := range blockers {
		bt := g.txns[b]
		if bt == nil {
			wait = true
			continue
		}
		if older(meta, bt.meta) && bt.woundable() {
			g.abortTxn(bt, fmt.Sprintf("wounded by older transaction %s", meta.ID))
			continue
		}
		wait = true
	}
	if wait {
		return false
	}
	if len(g.locks.blockers(meta.ID, req)) > 0 {
		return false
	}
	g.locks.grant(meta.ID, req)
	return true
}

// retryWaiters grants, in arrival order, every waiter that can now go. A
// grant or a wound may re-enter it; the outer call then simply goes round
// again.
func (g *Group) retryWaiters() {
	if g.retrying {
		g.retryAgain = true
		return
	}
	g.retrying = true
	defer func() { g.retrying = false }()
	for progress := true; progress; {
		progress = false
		g.retryAgain = false
		for _, w := range slices.Clone(g.waits) {
			if !slices.Contains(g.waits, w) {
				continue // failed meanwhile
			}
			if t := g.txns[w.meta.ID]; t != nil && t.status == stAborted {
				continue
			}
			if g.tryAcquire(w.meta, w.req) {
				if i := slices.Index(g.waits, w); i >= 0 {
					g.waits = slices.Delete(g.waits, i, i+1)
				}
				w.grant()
				progress = true
			}
		}
		progress = progress || g.retryAgain
	}
}

func (g *Group) release(id TxnID) {
	if g.locks.holds(id) {
		g.locks.release(id)
		g.retryWaiters()
	}
}

func (g *Group) lockingRead(req Request) {
	if req.Epoch != 0 && g.txns[req.Txn.ID] == nil {
		// An earlier read here was answered (it gave the epoch), yet the
		// transaction is unknown: it was aborted and its tombstone has
		// expired. Serving the read would start it afresh in the same
		// epoch, and a later check would find locks held that do not
		// cover the earlier read.
		g.respond(Response{ID: req.ID, Err: aborted("read locks at group %d were lost (the transaction was aborted here)", g.id)})
		return
	}
	t := g.txn(req.Txn)
	if t.status == stAborted {
		g.respond(Response{ID: req.ID, Err: aborted("%s", t.reason)})
		return
	}
	if t.status != stActive {
		g.respond(Response{ID: req.ID, Err: fmt.Errorf("%w: transaction %s is committing", ErrInvalid, req.Txn.ID)})
		return
	}
	if req.Epoch != 0 && req.Epoch != g.epoch() {
		g.abortTxn(t, fmt.Sprintf("read locks at group %d were lost with a leader change", g.id))
		g.respond(Response{ID: req.ID, Err: aborted("%s", t.reason)})
		return
	}
	var lr lockReq
	if req.Key != nil {
		if !g.inSpan(req.Key) {
			g.respond(Response{ID: req.ID, Err: fmt.Errorf("%w: key %q is outside group %d's range", ErrInvalid, req.Key, g.id)})
			return
		}
		lr = lockReq{keys: []string{string(req.Key)}}
	} else {
		lr = lockReq{span: &keySpan{start: req.Start, end: req.End}}
		if req.End != nil && len(req.End) == 0 {
			lr.span.end = nil
		}
	}
	t.readHere = true
	task := ReadTask{ID: req.ID, Key: req.Key, Start: req.Start, End: req.End, Limit: req.Limit, Reverse: req.Reverse,
		TS: tt.MaxTimestamp, Priority: req.Txn.Priority, Epoch: g.epoch()}
	g.acquire(req.Txn, lr, func() {
		// Under the lock the latest applied version is the one to read:
		// every applied write passed commit wait, and prepared writes
		// hold exclusive locks we just waited out.
		g.out.Reads = append(g.out.Reads, task)
	}, func(err error) { g.respond(Response{ID: req.ID, Err: err}) })
}

// readsHeld reports whether the read locks a transaction took here in the
// given epoch are still held: this leadership, and locks in the table.
func (g *Group) readsHeld(t *txnState, id TxnID, epoch uint64) bool {
	return t != nil && epoch == g.epoch() && g.locks.holds(id)
}

func (g *Group) rollback(req Request) {
	t := g.txns[req.Txn.ID]
	// A transaction that wrote nothing asks, as it lets go, whether its
	// read locks here survived: if every group says so, they were all held
	// together once its last read was answered, and its reads are
	// serializable. (Locks die with a leadership or a wound.)
	held := g.readsHeld(t, req.Txn.ID, req.Epoch) && t.status == stActive
	if t != nil && (t.status == stActive || t.status == stAborted) {
		g.abortTxn(t, "rolled back")
	}
	if req.Epoch != 0 && !held {
		g.respond(Response{ID: req.ID, Err: aborted("read locks at group %d were lost (leader change, wound or timeout)", g.id)})
		return
	}
	g.respond(Response{ID: req.ID})
}

// validWrites checks a group's writes against the limits (and, for this
// group's own writes, its key range), so that no committed record can fail
// to apply.
func (g *Group) validWrites(ws []Mutation, own bool) error {
	if len(ws) > g.cfg.MaxWrites {
		return fmt.Errorf("%w: %d writes, limit %d", ErrInvalid, len(ws), g.cfg.MaxWrites)
	}
	for _, w := range ws {
		switch {
		case len(w.Key) == 0:
			return fmt.Errorf("%w: empty key", ErrInvalid)
		case len(w.Key) > g.cfg.MaxKeySize:
			return fmt.Errorf("%w: key of %d bytes, limit %d", ErrInvalid, len(w.Key), g.cfg.MaxKeySize)
		case len(w.Value) > g.cfg.MaxValueSize:
			return fmt.Errorf("%w: value of %d bytes, limit %d", ErrInvalid, len(w.Value), g.cfg.MaxValueSize)
		case own && !g.inSpan(w.Key):
			return fmt.Errorf("%w: key %q is outside group %d's range", ErrInvalid, w.Key, g.id)
		}
	}
	return nil
}

func (g *Group) inSpan(k []byte) bool {
	return (g.cfg.Start == nil || bytes.Compare(k, g.cfg.Start) >= 0) && (g.cfg.End == nil || bytes.Compare(k, g.cfg.End) < 0)
}

func writeKeys(ws []Mutation) []string {
	ks := make([]string, 0, len(ws))
	for _, w := range ws {
		ks = append(ks, string(w.Key))
	}
	slices.Sort(ks)
	return slices.Compact(ks)
}

// ----------------------------------------------------------------------
// Commit

func (g *Group) commit(req Request) {
	var own *Participant
	others := 0
	for i := range req.Participants {
		p := &req.Participants[i]
		if p.Group == g.id {
			own = p
		} else {
			others++
		}
		if err := g.validWrites(p.Writes, p.Group == g.id); err != nil {
			g.respond(Response{ID: req.ID, Err: fmt.Errorf("group %d: %w", p.Group, err)})
			return
		}
	}
	if own == nil {
		g.respond(Response{ID: req.ID, Err: fmt.Errorf("%w: the coordinator group %d must be a participant", ErrInvalid, g.id)})
		return
	}
	// A retried commit learns the recorded outcome.
	if o, ok := g.outcomes[req.Txn.ID]; ok {
		g.respondOutcome(req.ID, o, 0)
		return
	}
	if c := g.coords[req.Txn.ID]; c != nil {
		c.reqs = append(c.reqs, req.ID)
		return
	}
	t := g.txns[req.Txn.ID]
	if t == nil && g.tooOld(req.Txn.ID) {
		g.respond(Response{ID: req.ID, Err: fmt.Errorf("%w: %s was drawn at %s, more than %s ago; if it committed before, that is no longer known",
			ErrTooOld, req.Txn.ID, req.Txn.ID.Time(), g.cfg.OutcomeRetention*3/4)})
		return
	}
	if own.Read && (t == nil || own.Epoch != g.epoch() || !g.locks.holds(req.Txn.ID) && t.status != stAborted) {
		if t != nil {
			g.abortTxn(t, "read locks lost")
		}
		g.respond(Response{ID: req.ID, Err: aborted("read locks at group %d were lost (leader change or timeout)", g.id)})
		return
	}
	t = g.txn(req.Txn)
	switch t.status {
	case stAborted:
		g.respond(Response{ID: req.ID, Err: aborted("%s", t.reason)})
		return
	case stActive:
	case stCommitting:
		t.reqs = append(t.reqs, req.ID) // a retried commit waits for the same outcome
		return
	default:
		g.respond(Response{ID: req.ID, Err: fmt.Errorf("%w: transaction %s is a participant of another commit", ErrInvalid, req.Txn.ID)})
		return
	}
	if others == 0 {
		g.commitSingle(req, t, own.Writes)
		return
	}
	c := &coord{meta: req.Txn, reqs: []uint64{req.ID}, own: own, votes: map[uint64]tt.Timestamp{},
		deadline: g.now.Earliest.Add(g.cfg.CommitTimeout), started: g.now.Earliest}
	for _, p := range req.Participants {
		if p.Group != g.id {
			c.parts = append(c.parts, p)
		}
	}
	g.coords[req.Txn.ID] = c
	t.status = stCommitting
	g.acquire(req.Txn, lockReq{exclusive: true, keys: writeKeys(own.Writes)}, func() {
		c.phase = cpVoting
		c.locked = g.now.Earliest
		g.sendPrepares(c)
	}, func(err error) { g.abortCoord(c, err.Error()) })
}

func (g *Group) commitWait() bool { return !g.cfg.Bugs.NoCommitWait }

func (g *Group) commitSingle(req Request, t *txnState, writes []Mutation) {
	t.status = stCommitting
	t.reqs = append(t.reqs, req.ID)
	started := g.now.Earliest
	g.acquire(req.Txn, lockReq{exclusive: true, keys: writeKeys(writes)}, func() {
		rec := record{kind: recCommit, txn: req.Txn, writes: writes}
		t.logged = true
		proposed := g.now.Earliest
		g.propose(rec, 0, g.commitWait(), func(a paxos.Applied) {
			ph := Phases{Locks: proposed.Sub(started), CommitWait: a.CommitWaited,
				Paxos: max(0, g.now.Earliest.Sub(proposed)-a.CommitWaited)}
			for _, id := range t.reqs {
				g.respond(Response{ID: id, TS: a.TS, CommitWait: a.CommitWaited, Phases: ph})
			}
			t.reqs = nil
		}, func(err error) {
			if errors.Is(err, ErrNotLeader) {
				return // loseLeadership answers; the entry may still commit: the client asks the next leader
			}
			g.abortTxn(t, err.Error())
		})
	}, func(err error) { g.abortTxn(t, err.Error()) })
}

// propose logs rec through Paxos; applied runs when the entry is applied
// (the record's effects already taken), failed when it never will be.
func (g *Group) propose(rec record, minTS tt.Timestamp, commitWait bool, applied func(paxos.Applied), failed func(error)) {
	g.pending = append(g.pending, &prop{data: rec.marshal(), minTS: minTS, commitWait: commitWait, applied: applied, failed: failed})
}

// flushProposals hands the records proposed since the last Ready to Paxos,
// several to an entry: an entry's fixed costs (its log key, its place in
// Accepts and acknowledgements, its apply bookkeeping) are then paid once
// for many transactions. Records share their entry's timestamp, the
// largest of their minimums; two records that could conflict never meet in
// one entry, since both hold their locks until applied. Order is kept, and
// an entry holds commit-wait records only or none, so a resolve or prepare
// never waits out a commit's timestamp.
func (g *Group) flushProposals() {
	pend := g.pending
	g.pending = nil
	for len(pend) > 0 {
		n, size := 1, len(pend[0].data)
		for n < len(pend) && n < maxBatchRecords && pend[n].commitWait == pend[0].commitWait &&
			size+len(pend[n].data) <= maxBatchBytes {
			size += len(pend[n].data)
			n++
		}
		g.proposeEntry(pend[:n])
		pend = pend[n:]
	}
}

func (g *Group) proposeEntry(ps []*prop) {
	data := ps[0].data
	minTS := ps[0].minTS
	if len(ps) > 1 {
		recs := make([][]byte, len(ps))
		for i, p := range ps {
			recs[i] = p.data
			minTS = max(minTS, p.minTS)
		}
		data = marshalBatch(recs)
	}
	idx, ts, err := g.r.Propose(g.now, data, minTS, ps[0].commitWait)
	if err != nil {
		if errors.Is(err, paxos.ErrNotLeader) {
			err = g.notLeader()
		} else if errors.Is(err, paxos.ErrBusy) {
			err = fmt.Errorf("%w: %v", ErrBusy, err)
		}
		for _, p := range ps {
			p.failed(err)
		}
		return
	}
	g.props[idx] = &entryProps{ts: ts, props: ps}
}

// finish forgets a transaction whose fate is sealed and releases its locks.
func (g *Group) finish(id TxnID) {
	delete(g.txns, id)
	g.release(id)
}

func (g *Group) respondOutcome(reqID uint64, o outcome, waited time.Duration) {
	if o.commit {
		g.respond(Response{ID: reqID, TS: o.ts, CommitWait: waited})
	} else {
		g.respond(Response{ID: reqID, Err: aborted("the coordinator decided to abort")})
	}
}

// ----------------------------------------------------------------------
// Two-phase commit: coordinator

func (g *Group) sendPrepares(c *coord) {
	c.lastSend = g.now.Earliest
	for _, p := range c.parts {
		if _, ok := c.votes[p.Group]; ok {
			continue
		}
		g.sendMsg(Msg{Type: MsgPrepare, To: p.Group, Txn: c.meta, Writes: p.Writes, Read: p.Read, Epoch: p.Epoch, Coordinator: g.id})
	}
}

func (g *Group) onVote(m Msg) {
	c := g.coords[m.Txn.ID]
	if c == nil || c.phase != cpVoting {
		return
	}
	if !m.OK {
		g.abortCoord(c, fmt.Sprintf("participant group %d voted no", m.From))
		return
	}
	c.votes[m.From] = m.TS
	if len(c.votes) < len(c.parts) {
		return
	}
	// Invariant 5: s >= TT.now().latest (Propose), >= every prepare
	// timestamp (minTS), > every timestamp this group assigned (Propose).
	var maxPrep tt.Timestamp
	for _, ts := range c.votes {
		maxPrep = max(maxPrep, ts)
	}
	c.phase = cpCommitting
	c.voted, c.proposed = g.now.Earliest, g.now.Earliest
	if t := g.txns[c.meta.ID]; t != nil {
		t.logged = true
	}
	parts := make([]uint64, 0, len(c.parts))
	for _, p := range c.parts {
		parts = append(parts, p.Group)
	}
	rec := record{kind: recCoordCommit, txn: c.meta, writes: c.own.Writes, participants: parts}
	g.propose(rec, maxPrep, g.commitWait(), func(paxos.Applied) {
		// applyEntry answered the clients and told the participants.
	}, func(err error) {
		if errors.Is(err, ErrNotLeader) {
			return // loseLeadership answers the clients; the outcome is the next leader's to tell
		}
		g.abortCoord(c, "commit record not logged: "+err.Error())
	})
}

// abortCoord aborts a two-phase commit that has not logged its commit
// record: participants are told, the client answered, own locks released.
func (g *Group) abortCoord(c *coord, reason string) {
	if c.phase >= cpCommitting {
		return
	}
	c.phase = cpAborting
	delete(g.coords, c.meta.ID)
	for _, p := range c.parts {
		g.sendMsg(Msg{Type: MsgDecide, To: p.Group, Txn: c.meta, OK: false})
	}
	for _, req := range c.reqs {
		g.respond(Response{ID: req, Err: aborted("%s", reason)})
	}
	if t := g.txns[c.meta.ID]; t != nil {
		g.abortTxn(t, reason)
	}
}

func (g *Group) onQuery(m Msg) {
	id := m.Txn.ID
	if o, ok := g.outcomes[id]; ok {
		g.sendMsg(Msg{Type: MsgOutcome, To: m.From, Txn: m.Txn, OK: o.commit, TS: o.ts})
		return
	}
	if c := g.coords[id]; c != nil {
		g.sendMsg(Msg{Type: MsgOutcome, To: m.From, Txn: m.Txn, Pending: true})
		return
	}
	// No record and no coordinator here: this leader applied everything
	// chosen before it (its barrier), so no commit record can appear. Log
	// the abort so every later answer agrees.
	if t := g.txns[id]; t != nil && t.status == stCommitting {
		g.sendMsg(Msg{Type: MsgOutcome, To: m.From, Txn: m.Txn, Pending: true})
		return
	}
	rec := record{kind: recCoordAbort, txn: m.Txn}
	g.propose(rec, 0, false, func(paxos.Applied) {}, func(error) {})
}

// ----------------------------------------------------------------------
// Two-phase commit: participant

func (g *Group) onPrepare(m Msg) {
	id := m.Txn.ID
	if p := g.prepared[id]; p != nil {
		// Already prepared: vote again with the same timestamp.
		g.sendMsg(Msg{Type: MsgVote, To: m.Coordinator, Txn: m.Txn, OK: true, TS: p.rec.ts})
		return
	}
	no := func(reason string) {
		g.sendMsg(Msg{Type: MsgVote, To: m.Coordinator, Txn: m.Txn, OK: false})
		_ = reason
	}
	if err := g.validWrites(m.Writes, true); err != nil {
		no(err.Error())
		return
	}
	t := g.txns[id]
	if m.Read && !g.readsHeld(t, id, m.Epoch) {
		if t != nil {
			g.abortTxn(t, "read locks lost before prepare")
		}
		no("read locks lost")
		return
	}
	t = g.txn(m.Txn)
	switch t.status {
	case stAborted:
		no(t.reason)
		return
	case stPreparing, stPrepared:
		return // in progress; the vote follows
	case stCommitting:
		no("already committing")
		return
	}
	t.status = stPreparing
	g.acquire(m.Txn, lockReq{exclusive: true, keys: writeKeys(m.Writes)}, func() {
		rec := record{kind: recPrepare, txn: m.Txn, writes: m.Writes, coordinator: m.Coordinator}
		rec.readKeys, rec.readSpans = g.locks.shared(id)
		g.propose(rec, 0, false, func(a paxos.Applied) {
			if t.status == stAborted {
				no("aborted while preparing") // applyEntry already resolves it as aborted
				return
			}
			g.sendMsg(Msg{Type: MsgVote, To: m.Coordinator, Txn: m.Txn, OK: true, TS: a.TS})
		}, func(err error) {
			if errors.Is(err, ErrNotLeader) {
				return
			}
			g.abortTxn(t, "prepare not logged: "+err.Error())
			no(err.Error())
		})
	}, func(err error) {
		g.abortTxn(t, err.Error())
		no(err.Error())
	})
}

// onDecide resolves a transaction this group is a participant of.
func (g *Group) onDecide(id TxnID, commit bool, ts tt.Timestamp) {
	p := g.prepared[id]
	if p == nil {
		// Not prepared (yet): an abort ends whatever is in progress.
		if t := g.txns[id]; t != nil && !commit && (t.status == stActive || t.status == stPreparing) {
			g.abortTxn(t, "the coordinator decided to abort")
		}
		return
	}
	if p.resolving {
		return
	}
	p.resolving = true
	rec := record{kind: recResolve, txn: p.rec.txn, commit: commit, ts: ts}
	var minTS tt.Timestamp
	if commit {
		minTS = ts
	}
	g.propose(rec, minTS, false, func(paxos.Applied) {}, func(error) { p.resolving = false })
}

// ----------------------------------------------------------------------
// Applying the log (every replica)

func (g *Group) applyEntry(a paxos.Applied) {
	g.applying = a.Index
	ep := g.props[a.Index]
	if ep != nil {
		delete(g.props, a.Index)
	}
	if a.Type != paxos.EntryNormal || a.Skipped {
		ep.fail(aborted("the proposal was superseded (leader change)"))
		return
	}
	recs, err := unmarshalRecords(a.Data)
	if err != nil {
		// A record we cannot read was written by a newer or broken
		// version: stop rather than diverge.
		panic(fmt.Sprintf("txn: group %d entry %d: %v", g.id, a.Index, err))
	}
	if ep != nil && (ep.ts != a.TS || len(ep.props) != len(recs)) {
		ep.fail(aborted("the proposal was superseded (leader change)"))
		ep = nil
	}
	for i, rec := range recs {
		g.applyRecord(a, rec)
		if ep != nil {
			ep.props[i].applied(a)
		}
	}
	g.expireOutcomes(a.TS)
}

// fail fails every proposal of the entry (none when ep is nil).
func (ep *entryProps) fail(err error) {
	if ep == nil {
		return
	}
	for _, p := range ep.props {
		p.failed(err)
	}
}

// applyRecord applies one record of entry a.
func (g *Group) applyRecord(a paxos.Applied, rec record) {
	switch rec.kind {
	case recCommit:
		g.applyWrites(rec.writes, a.TS)
		g.putOutcome(rec.txn.ID, outcome{commit: true, ts: a.TS})
		if g.leading {
			g.finish(rec.txn.ID)
		}
	case recCoordCommit:
		g.applyWrites(rec.writes, a.TS)
		g.putOutcome(rec.txn.ID, outcome{commit: true, ts: a.TS})
		if g.leading {
			c := g.coords[rec.txn.ID]
			delete(g.coords, rec.txn.ID)
			if c != nil {
				ph := Phases{Locks: c.locked.Sub(c.started), Prepare: c.voted.Sub(c.locked), CommitWait: a.CommitWaited}
				ph.Paxos = max(0, g.now.Earliest.Sub(c.proposed)-a.CommitWaited)
				for _, req := range c.reqs {
					g.respond(Response{ID: req, TS: a.TS, CommitWait: a.CommitWaited, Phases: ph})
				}
			}
			for _, p := range rec.participants {
				g.sendMsg(Msg{Type: MsgDecide, To: p, Txn: rec.txn, OK: true, TS: a.TS})
			}
			g.finish(rec.txn.ID)
		}
	case recCoordAbort:
		if _, ok := g.outcomes[rec.txn.ID]; !ok {
			g.putOutcome(rec.txn.ID, outcome{commit: false, ts: a.TS})
		}
		if g.leading {
			if c := g.coords[rec.txn.ID]; c != nil {
				g.abortCoord(c, "aborted")
			}
			if t := g.txns[rec.txn.ID]; t != nil && t.status != stCommitting {
				g.abortTxn(t, "aborted")
			}
		}
	case recPrepare:
		if _, done := g.outcomes[rec.txn.ID]; done {
			break
		}
		rec.ts = a.TS
		p := &prepared{rec: rec, since: g.now.Earliest}
		g.prepared[rec.txn.ID] = p
		g.out.Meta = append(g.out.Meta, MetaOp{Name: prepName(rec.txn.ID), Value: rec.marshal()})
		if g.leading {
			switch t := g.txns[rec.txn.ID]; {
			case t == nil:
				// Logged under an earlier leader and recovered by us: take
				// its locks now.
				g.relock(p)
			case t.status == stAborted:
				// Aborted while the record was in flight: resolve it.
				g.onDecide(rec.txn.ID, false, 0)
			default:
				t.status = stPrepared
				t.logged = true
			}
		}
	case recResolve:
		p := g.prepared[rec.txn.ID]
		if p == nil {
			break
		}
		delete(g.prepared, rec.txn.ID)
		g.out.Meta = append(g.out.Meta, MetaOp{Name: prepName(rec.txn.ID), Delete: true})
		if rec.commit {
			g.applyWrites(p.rec.writes, rec.ts)
		}
		if g.leading {
			g.finish(rec.txn.ID)
		}
	}
}

func (g *Group) applyWrites(ws []Mutation, ts tt.Timestamp) {
	for _, w := range ws {
		g.out.Writes = append(g.out.Writes, Write{Key: w.Key, TS: ts, Value: w.Value, Delete: w.Delete})
	}
}

// tooOld reports whether a transaction this group knows nothing about was
// drawn so long ago that its outcome record, had it committed here, might
// have expired.
func (g *Group) tooOld(id TxnID) bool {
	drawn := id.Time()
	if drawn == 0 || !paxosHealthy(g.now) {
		return false
	}
	return drawn < g.now.Earliest.Add(-g.cfg.OutcomeRetention*3/4)
}

func (g *Group) putOutcome(id TxnID, o outcome) {
	g.outcomes[id] = o
	g.outcomeQ = append(g.outcomeQ, queuedOutcome{id: id, ts: o.ts})
	if len(g.chunk.outs) == 0 {
		g.chunk.index = g.applying
	}
	g.chunk.outs = append(g.chunk.outs, chunkOutcome{id, o})
}

// flushOutcomes writes the outcomes recorded since the last Ready as one
// chunk record.
func (g *Group) flushOutcomes() {
	if len(g.chunk.outs) == 0 {
		return
	}
	g.chunks = append(g.chunks, chunkRef{index: g.chunk.index, maxTS: g.chunk.maxTS()})
	g.out.Meta = append(g.out.Meta, MetaOp{Name: outcomeChunkName(g.chunk.index), Value: g.chunk.marshal()})
	g.chunk = outcomeChunk{}
}

type queuedOutcome struct {
	id TxnID
	ts tt.Timestamp
}

// chunkRef is a persisted outcome chunk: its name and newest outcome.
type chunkRef struct {
	index uint64
	maxTS tt.Timestamp
}

// expireOutcomes drops outcome records far below the applied timestamp, in
// the order they were recorded (amortized O(1) per entry). It depends only
// on the log, so every replica drops the same ones.
func (g *Group) expireOutcomes(applied tt.Timestamp) {
	horizon := applied.Add(-g.cfg.OutcomeRetention)
	for len(g.outcomeQ) > 0 && g.outcomeQ[0].ts < horizon {
		q := g.outcomeQ[0]
		g.outcomeQ = g.outcomeQ[1:]
		if o, ok := g.outcomes[q.id]; ok && o.ts == q.ts {
			delete(g.outcomes, q.id)
		}
	}
	// A chunk goes once all its outcomes have: chunks hold outcomes of
	// consecutive entries, whose timestamps rise with the log.
	for len(g.chunks) > 0 && g.chunks[0].maxTS < horizon {
		g.out.Meta = append(g.out.Meta, MetaOp{Name: outcomeChunkName(g.chunks[0].index), Delete: true})
		g.chunks = g.chunks[1:]
	}
}

// ----------------------------------------------------------------------
// Reads at a timestamp (every replica)

// SafeTime returns t_safe = min(t_safe_paxos, t_safe_tm): the highest
// timestamp this replica can serve reads at (invariant 8).
func (g *Group) SafeTime() tt.Timestamp {
	safe := g.r.ClosedTS()
	for _, p := range g.prepared {
		safe = min(safe, p.rec.ts-1)
	}
	return safe
}

// Prepared returns how many transactions are prepared here.
func (g *Group) Prepared() int { return len(g.prepared) }

func (g *Group) snapshotRead(req Request) {
	ts := req.TS
	if ts == 0 {
		// Strong read in one round trip: pick the timestamp here.
		var err error
		ts, err = g.pickStrong(req.SingleGroup)
		if err != nil {
			g.respond(Response{ID: req.ID, Err: err, Hint: g.r.LeaderHint()})
			return
		}
	}
	g.readAt(ReadTask{ID: req.ID, Key: req.Key, Start: req.Start, End: req.End, Limit: req.Limit, Reverse: req.Reverse, TS: ts})
}

func (g *Group) readAt(task ReadTask) {
	if task.TS <= g.SafeTime() {
		g.out.Reads = append(g.out.Reads, task)
		return
	}
	if len(g.reads) >= g.cfg.MaxWaiters {
		g.respond(Response{ID: task.ID, Err: fmt.Errorf("%w: %d reads already wait for safe time", ErrBusy, len(g.reads))})
		return
	}
	g.reads = append(g.reads, &pendingRead{task: task, deadline: g.now.Earliest.Add(g.cfg.ReadWait)})
	g.askClose(task.TS)
}

// askClose gets the leader to close a timestamp so safe time can pass ts.
func (g *Group) askClose(ts tt.Timestamp) {
	if g.leading {
		_, _, _ = g.r.CloseTimestamp(g.now)
		return
	}
	if g.now.Earliest.Sub(g.lastClose) < 20*time.Millisecond {
		return
	}
	g.lastClose = g.now.Earliest
	g.sendMsg(Msg{Type: MsgCloseRequest, To: g.id, TS: ts})
}

// SetReadFloor tells the group that versions below ts may be collected
// (the store's GC horizon, which only rises): it never picks a read
// timestamp below it. A single-group strong read at an idle group would
// otherwise pick the group's last write, which falls below the horizon once
// the group has been idle longer than the version retention.
func (g *Group) SetReadFloor(ts tt.Timestamp) { g.readFloor = max(g.readFloor, ts) }

// singleStrongTS is a single-group strong read's timestamp at a serving
// leader with nothing prepared (invariant 9): the highest timestamp the
// leader has assigned or closed (Spanner's LastTS, taken over every write
// it proposed, not only those applied), and the read waits until
// everything proposed up to it is applied. A write still in its commit
// wait or its Paxos round may already be shown by a follower (released),
// and may sit below a commit another group acknowledged before this read
// began; a read below it would be serialized before that commit though it
// started after. Every write proposed after this pick gets a higher
// timestamp than the true time of the pick, so the snapshot stays valid up
// to a time after every commit that completed before the read. When the
// pick is below the read floor, the safe time (every timestamp from the
// pick up to the safe time reads the same state), or the floor itself if
// the safe time is below it too (the read then waits for it).
func (g *Group) singleStrongTS() tt.Timestamp {
	last := g.r.LastAssigned()
	if g.cfg.Bugs.LastAppliedRead {
		last = g.r.LastAppliedTS()
	}
	ts := max(last, 1)
	if ts < g.readFloor {
		ts = max(g.readFloor, g.SafeTime())
	}
	return ts
}

// pickStrong chooses a strong read timestamp (invariant 9): the leader's
// last assigned timestamp at a single group's leader with nothing prepared
// (singleStrongTS), else TT.now().latest.
func (g *Group) pickStrong(single bool) (tt.Timestamp, error) {
	if single && g.serving() && len(g.prepared) == 0 {
		return g.singleStrongTS(), nil
	}
	if !paxosHealthy(g.now) {
		return 0, fmt.Errorf("%w: cannot pick a strong read timestamp at group %d", ErrClock, g.id)
	}
	return g.now.Latest, nil
}

// StrongRead is what a single-group strong read may use without entering
// the group: the timestamp pickStrong would choose, valid while
// TT.now().latest is below LeaseEnd.
type StrongRead struct {
	TS, LeaseEnd tt.Timestamp
}

// StrongReadState returns the StrongRead a single-group strong read at this
// replica would get as of its last input, and whether it would be served at
// once (the replica is the serving leader, nothing is prepared, and safe
// time covers the timestamp). The runtime publishes it after applying
// each Ready and before answering anything, so that reads can bypass the
// group's goroutine: until the next input no acknowledged commit can be
// missing below TS, and the lease keeps other leaders from committing.
func (g *Group) StrongReadState() (StrongRead, bool) {
	if !g.serving() || len(g.prepared) > 0 {
		return StrongRead{}, false
	}
	ts := g.singleStrongTS()
	if ts > g.SafeTime() {
		return StrongRead{}, false
	}
	return StrongRead{TS: ts, LeaseEnd: g.r.LeaseEnd()}, true
}

func paxosHealthy(now tt.Interval) bool { return now.Latest != 0 && now.Valid() }

func (g *Group) strongTS(req Request) {
	ts, err := g.pickStrong(req.SingleGroup)
	g.respond(Response{ID: req.ID, TS: ts, Err: err})
}

func (g *Group) staleRead(req Request) {
	safe := g.SafeTime()
	min := req.MinTS
	if req.MaxStaleness > 0 {
		if !paxosHealthy(g.now) {
			// Without a clock the staleness cannot be bounded.
			g.respond(Response{ID: req.ID, Err: fmt.Errorf("%w: cannot bound the staleness of a read at group %d", ErrClock, g.id)})
			return
		}
		min = max(min, g.now.Latest.Add(-req.MaxStaleness))
	}
	ts := max(safe, min, g.readFloor)
	g.readAt(ReadTask{ID: req.ID, Key: req.Key, Start: req.Start, End: req.End, Limit: req.Limit, Reverse: req.Reverse, TS: ts})
}

func (g *Group) tickReads() {
	if len(g.reads) == 0 {
		return
	}
	safe := g.SafeTime()
	kept := g.reads[:0]
	var wantClose tt.Timestamp
	for _, r := range g.reads {
		switch {
		case r.task.TS <= safe:
			g.out.Reads = append(g.out.Reads, r.task)
		case g.now.Earliest > r.deadline:
			g.respond(Response{ID: r.task.ID, Err: fmt.Errorf("%w: safe time %d did not reach the read timestamp %d in %s",
				ErrTimeout, safe, r.task.TS, g.cfg.ReadWait)})
		default:
			kept = append(kept, r)
			wantClose = max(wantClose, r.task.TS)
		}
	}
	g.reads = kept
	if wantClose != 0 {
		g.askClose(wantClose)
	}
}

// ----------------------------------------------------------------------
// Timers (leader)

func (g *Group) tickLeader() {
	now := g.now.Earliest
	// Lock waits that ran out.
	var expired []*waiter
	kept := g.waits[:0]
	for _, w := range g.waits {
		if now > w.deadline {
			expired = append(expired, w)
			continue
		}
		kept = append(kept, w)
	}
	g.waits = kept
	for _, w := range expired {
		reason := fmt.Sprintf("waited %s for locks at group %d", g.cfg.LockWait, g.id)
		w.fail(aborted("%s", reason))
		if t := g.txns[w.meta.ID]; t != nil && (t.status == stActive || t.status == stCommitting || t.status == stPreparing) {
			g.abortTxn(t, reason)
		}
	}
	// Abandoned transactions.
	for _, id := range sortedIDs(g.txns) {
		t := g.txns[id]
		idle := now.Sub(t.lastActive)
		switch {
		case t.status == stActive && idle > g.cfg.TxnTimeout:
			g.abortTxn(t, fmt.Sprintf("abandoned: idle for %s", idle.Round(time.Millisecond)))
		case t.status == stAborted && idle > g.cfg.TxnTimeout:
			delete(g.txns, id) // the tombstone served its purpose
		}
	}
	// Coordinators: resend prepares, give up after the commit timeout.
	for _, id := range sortedIDs(g.coords) {
		c := g.coords[id]
		if c.phase != cpVoting {
			continue
		}
		if now > c.deadline {
			g.abortCoord(c, fmt.Sprintf("no votes within %s", g.cfg.CommitTimeout))
			continue
		}
		if now.Sub(c.lastSend) >= g.cfg.RetryInterval {
			g.sendPrepares(c)
		}
	}
	// Prepared participants ask the coordinator for the outcome.
	for _, id := range sortedIDs(g.prepared) {
		p := g.prepared[id]
		if p.resolving || now.Sub(p.since) < g.cfg.QueryAfter || now.Sub(p.lastQuery) < g.cfg.RetryInterval {
			continue
		}
		p.lastQuery = now
		g.sendMsg(Msg{Type: MsgQuery, To: p.rec.coordinator, Txn: p.rec.txn})
	}
	g.retryWaiters()
}

// sortedIDs returns m's keys in ID order, so that iteration over a map
// stays deterministic.
func sortedIDs[V any](m map[TxnID]V) []TxnID {
	ids := make([]TxnID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sortIDs(ids)
	return ids
}

// ----------------------------------------------------------------------
// Ready / Advance

// HasReady reports whether Ready would return anything.
func (g *Group) HasReady() bool {
	return g.r.HasReady() || len(g.pending) > 0 || len(g.out.Msgs) > 0 || len(g.out.Reads) > 0 || len(g.out.Responses) > 0 ||
		len(g.out.Writes) > 0 || len(g.out.Meta) > 0
}

// Ready returns the pending work; see the Ready type for the contract.
func (g *Group) Ready() Ready {
	g.flushProposals()
	prd := g.r.Ready()
	for _, a := range prd.Committed {
		g.applyEntry(a)
	}
	g.flushOutcomes()
	// Leadership may have changed with this Ready's inputs; and applying
	// may have made reads servable.
	g.after()
	g.tickReads()
	rd := g.out
	rd.Ready = prd
	g.out = Ready{}
	return rd
}

// Advance acknowledges rd, persisted and durable.
func (g *Group) Advance(rd Ready) {
	g.r.Advance(rd.Ready)
	g.after()
}

// AdvanceUnsynced acknowledges rd as written but not yet durable, for a
// runtime that pipelines persistence; Synced(tok) follows once it is
// durable (see paxos.Replica.AdvanceUnsynced). Until then the runtime holds
// back the Paxos messages that SendBeforePersist does not let go early;
// rd's other outputs depend only on chosen entries and volatile state.
func (g *Group) AdvanceUnsynced(rd Ready) paxos.SyncToken {
	tok := g.r.AdvanceUnsynced(rd.Ready)
	g.after()
	return tok
}

// Synced tells the group that the Ready tok came from, and every Ready
// before it, is durable.
func (g *Group) Synced(tok paxos.SyncToken) {
	g.r.Synced(tok)
	g.after()
}

// NextWake returns when the group next wants a Tick (see paxos).
func (g *Group) NextWake() tt.Timestamp {
	w := g.r.NextWake()
	soon := func(t tt.Timestamp) {
		if t != 0 && (w == 0 || t < w) {
			w = t
		}
	}
	if len(g.reads) > 0 || len(g.waits) > 0 || len(g.coords) > 0 {
		soon(g.now.Earliest.Add(10 * time.Millisecond))
	}
	if g.leading && (len(g.prepared) > 0 || len(g.txns) > 0) {
		soon(g.now.Earliest.Add(g.cfg.RetryInterval))
	}
	return w
}

// Stats is a summary for status pages.
type Stats struct {
	Prepared, Active, Coordinating, LockWaiters, ReadWaiters, Locks int
	SafeTime                                                        tt.Timestamp
}

// Stats returns the group's transaction-layer counters.
func (g *Group) Stats() Stats {
	return Stats{Prepared: len(g.prepared), Active: len(g.txns), Coordinating: len(g.coords),
		LockWaiters: len(g.waits), ReadWaiters: len(g.reads), Locks: g.locks.count(), SafeTime: g.SafeTime()}
}
