package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/paxos/pebblestore"
	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/txn"
	"github.com/meridiandb/meridian/txn/txnkv"
)

// TxnOptions configures a simulated multi-region cluster running
// transactions.
type TxnOptions struct {
	Seed uint64
	// Preset names the latency matrix (default "global"); one shard lives
	// in each region.
	Preset string
	// Placement: "regional" (a shard's voters in its home region, a
	// read-only replica in every other region) or "spread" (one voter per
	// region). Default regional.
	Placement      string
	NodesPerRegion int           // default 3
	Duration       time.Duration // virtual, default 30 s
	Lease          time.Duration // default 2 s
	// Faults as in PaxosOptions: crash, partition, net, clock, all.
	Faults []string
	// Bug: "no-commit-wait" acknowledges and applies commits without
	// waiting out the clock uncertainty; "own-clock-apply" lets replicas
	// end a commit wait on their own clocks and leaders' single-group
	// strong reads pick the last applied timestamp (before the leader's
	// release rule: a follower with a narrower ε showed a write the
	// leader's next strong read missed); "stale-fast-read" lets a leader
	// serve strong reads from its published state after its lease ended
	// and without invalidating it when it stops serving;
	// "unchecked-release" ends transactions that wrote nothing without
	// asking whether their read locks held.
	Bug string
	// ClockError is each time sample's error bound (ε right after a sync;
	// it grows with drift until the next). Default 1 ms. Unless
	// UniformClocks is set, each node's error bound is ClockError times a
	// factor drawn log-uniformly from [1/4, 4], and each node samples at
	// its own phase: replicas' ε differ at every instant, as real nodes'
	// do (a follower may see a commit wait end before its leader does).
	ClockError    time.Duration
	UniformClocks bool
	// ClientsPerRegion run the workloads; default 3.
	ClientsPerRegion int
	ThinkTime        time.Duration // default 20 ms
	Trace            func(string)
}

// TxnBugs lists the bugs TxnOptions.Bug accepts.
var TxnBugs = []string{"no-commit-wait", "own-clock-apply", "stale-fast-read", "send-before-sync", "unchecked-release"}

func (o *TxnOptions) fill() error {
	if o.Preset == "" {
		o.Preset = "global"
	}
	if o.Placement == "" {
		o.Placement = "regional"
	}
	if o.Placement != "regional" && o.Placement != "spread" {
		return fmt.Errorf("sim: placement %q: want regional or spread", o.Placement)
	}
	if o.NodesPerRegion <= 0 {
		o.NodesPerRegion = 3
	}
	if o.Duration <= 0 {
		o.Duration = 30 * time.Second
	}
	if o.Lease <= 0 {
		o.Lease = 2 * time.Second
	}
	if o.ClockError <= 0 {
		o.ClockError = time.Millisecond
	}
	if o.ClientsPerRegion <= 0 {
		o.ClientsPerRegion = 3
	}
	if o.ThinkTime <= 0 {
		o.ThinkTime = 20 * time.Millisecond
	}
	var fs []string
	for _, f := range o.Faults {
		switch {
		case f == "all":
			fs = append(fs, FaultNames...)
		case f == "" || f == "none":
		case slices.Contains(FaultNames, f):
			fs = append(fs, f)
		default:
			return fmt.Errorf("sim: unknown fault %q (have %s, all)", f, strings.Join(FaultNames, ", "))
		}
	}
	o.Faults = fs
	if o.Bug != "" && !slices.Contains(TxnBugs, o.Bug) {
		return fmt.Errorf("sim: unknown bug %q (have %s)", o.Bug, strings.Join(TxnBugs, ", "))
	}
	return nil
}

// TxnResult is what one run found and measured.
type TxnResult struct {
	Seed       uint64
	Violations []string
	Virtual    time.Duration
	Wall       time.Duration
	// Committed, Aborted (attempts that aborted, retried or not), Unknown
	// read-write transactions; ReadOnly transactions that succeeded.
	Committed, Aborted, Unknown, ReadOnly int
	// FastReads counts single-group strong reads a leader served from its
	// published state, without entering the group.
	FastReads int
	// Released counts read-write transactions that wrote nothing and
	// ended with every group confirming their locks (among Committed).
	Released int
	// ParallelRW counts read-write transactions that read every group at
	// once under a priority their client stamped from its own (skewed)
	// clock; the others read one key at a time, stamped by the first group.
	ParallelRW int
	// CommitP50 is the median commit latency (commit request to answer at
	// the client) of cross-region two-phase commits; CommitBound the median
	// of their analytic lower bounds; LocalCommitP50 the median of
	// single-group commits.
	CommitP50, CommitBound, LocalCommitP50 time.Duration
	// CommitWaitExposed is the median exposed commit wait of cross-region
	// commits; CommitWaitExposedFrac its median share of commit latency.
	CommitWaitExposed     time.Duration
	CommitWaitExposedFrac float64
	Epsilon               time.Duration // mean ε the clocks reported
	Events                uint64
	// GCRemoved counts the MVCC versions version GC removed on all nodes.
	GCRemoved int
}

// Version GC in the simulation: every node collects about once a virtual
// second at the horizon a node computes (txnkv.GCHorizon). The retention
// is short so that collection runs alongside the faults, snapshots and
// crashes of a run.
const (
	// SimRetention is the version retention of simulated nodes.
	SimRetention = 3 * time.Second
	simGCEvery   = time.Second
	// simGCRoundDeletes bounds a simulated GC round's deletions.
	simGCRoundDeletes = 4
	// simSyncInterval is how often a simulated node samples its time
	// master.
	simSyncInterval = 5 * time.Second
)

type tnode struct {
	simNode
	reps map[uint64]*trep // group → replica on this node
	// hint caches who leads each group, as this node last heard.
	hint map[uint64]paxos.ReplicaID
	// crashMid, when set, crashes the node for that long at its next Ready
	// that writes entries or follows one still syncing, once the Ready's
	// early outputs have left.
	crashMid time.Duration
	// lastSync is when the node's latest scheduled WAL sync completes.
	lastSync tt.Timestamp
	// gcBusy: a version GC pass is running a round at a time (collect).
	gcBusy bool
}

type trep struct {
	node   *tnode
	group  uint64
	id     paxos.ReplicaID
	g      *txn.Group
	store  *pebblestore.Store
	ticker ticker
	led    bool
	// toldPromised and toldAccepted are the highest ballot this replica
	// promised and the highest index it reported accepted (Promise and
	// Accepted messages it sent): after any crash it must still know
	// them, or Paxos counted votes that are gone.
	toldPromised paxos.Ballot
	toldAccepted uint64
	// pending counts Readies written whose sync has not completed.
	pending int
	// strong is the state single-group strong reads are served from
	// without entering the group, published as the node runtime does
	// (nil: such reads go through Handle).
	strong *txn.StrongRead
}

type shard struct {
	id       uint64
	home     int
	replicas map[paxos.ReplicaID]*tnode
	voters   []paxos.ReplicaID
	learners []paxos.ReplicaID
}

type txnSim struct {
	opts      TxnOptions
	rng       *rand.Rand
	loop      *Loop
	net       *Network
	m         Matrix
	nodes     []*tnode
	shards    []*shard
	clients   []*tclient
	hist      []TxnRecord
	res       TxnResult
	start     tt.Timestamp
	healAt    tt.Timestamp
	quiesceAt tt.Timestamp // clients start nothing new after this
	reqSeq    uint64
	waiting   map[uint64]*call // request ID → the client call awaiting it
	errs      []string
	valSeq    int

	crossLat, localLat, bounds, exposed []time.Duration
	fracs                               []float64
	epsSum                              time.Duration
	epsN                                int
	abortReasons                        map[string]int
	debugTxn                            func(id string) bool
}

// RunTxn runs one seed of the transaction simulation and checks it.
func RunTxn(opts TxnOptions) (TxnResult, error) {
	s, err := newTxnSim(opts)
	if err != nil {
		return TxnResult{}, err
	}
	return s.run(), nil
}

func newTxnSim(opts TxnOptions) (*txnSim, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	m, err := Preset(opts.Preset)
	if err != nil {
		return nil, err
	}
	s := &txnSim{opts: opts, m: m, rng: rand.New(rand.NewPCG(opts.Seed, 0x74786e)),
		loop: NewLoop(tt.Timestamp(1_800_000_000_000_000_000)), waiting: map[uint64]*call{}}
	s.res.Seed = opts.Seed
	s.net = NewNetwork(NetConfig{Matrix: m, Jitter: 0.05}, rand.New(rand.NewPCG(s.rng.Uint64(), 2)))
	if err := s.setup(); err != nil {
		return nil, err
	}
	s.start = s.loop.Now()
	s.healAt = s.start.Add(max(opts.Duration-6*opts.Lease, opts.Duration/2))
	// The last seconds let every started transaction finish (participants
	// resolve, in-flight commits answer) before the final state is read.
	s.quiesceAt = s.start.Add(opts.Duration - min(opts.Duration/4, 2*clientTimeout))
	if len(opts.Faults) > 0 {
		s.scheduleFault()
	}
	s.loop.At(s.healAt, s.healAll)
	s.loop.After(int64(500*time.Millisecond), func() {
		s.initBank(func() {
			s.tracef("accounts created; clients start")
			for _, c := range s.clients {
				c := c
				s.loop.After(s.rng.Int64N(int64(opts.ThinkTime)), func() { s.clientNext(c) })
			}
		})
	})
	return s, nil
}

func (s *txnSim) tracef(format string, args ...any) {
	if s.opts.Trace != nil {
		s.opts.Trace(fmt.Sprintf("%9.3fs ", float64(s.loop.Now()-s.start)/1e9) + fmt.Sprintf(format, args...))
	}
}

func (s *txnSim) violation(format string, args ...any) {
	if len(s.errs) < 50 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
}

func (s *txnSim) setup() error {
	R := len(s.m.Regions)
	for r := 0; r < R; r++ {
		for i := 0; i < s.opts.NodesPerRegion; i++ {
			n := &tnode{simNode: simNode{id: NodeID(len(s.nodes) + 1), region: r, fs: vfs.NewCrashableMem(), up: true},
				reps: map[uint64]*trep{}, hint: map[uint64]paxos.ReplicaID{}}
			n.withholdSyncs()
			s.net.Place(n.id, r)
			drift := (s.rng.Float64()*2 - 1) * 0.5 * tt.DefaultDriftBound
			sampleErr, phase := s.opts.ClockError, time.Duration(0)
			if !s.opts.UniformClocks {
				sampleErr = time.Duration(float64(sampleErr) * math.Pow(4, 2*s.rng.Float64()-1))
				phase = time.Duration(s.rng.Int64N(int64(simSyncInterval)))
			}
			n.clock = tt.NewSim(tt.SimConfig{Drift: drift, SyncInterval: simSyncInterval, SyncPhase: phase, SampleErr: sampleErr,
				Seed: s.rng.Uint64(), SyncDeadline: 20 * time.Second, MaxEpsilon: 100*time.Millisecond + 16*s.opts.ClockError}, s.loop.Now)
			eng, err := n.openEngine()
			if err != nil {
				return err
			}
			n.eng = eng
			s.nodes = append(s.nodes, n)
		}
	}
	nodeAt := func(region, i int) *tnode { return s.nodes[region*s.opts.NodesPerRegion+i%s.opts.NodesPerRegion] }
	for r := 0; r < R; r++ {
		sh := &shard{id: uint64(r + 1), home: r, replicas: map[paxos.ReplicaID]*tnode{}}
		next := paxos.ReplicaID(1)
		if s.opts.Placement == "regional" {
			for i := 0; i < min(3, s.opts.NodesPerRegion); i++ {
				sh.voters = append(sh.voters, next)
				sh.replicas[next] = nodeAt(r, i)
				next++
			}
			for o := 0; o < R; o++ {
				if o != r {
					sh.learners = append(sh.learners, next)
					sh.replicas[next] = nodeAt(o, r) // spread learner load over the region's nodes
					next++
				}
			}
		} else {
			for o := 0; o < R; o++ {
				sh.voters = append(sh.voters, next)
				sh.replicas[next] = nodeAt((r+o)%R, r)
				next++
			}
		}
		s.shards = append(s.shards, sh)
	}
	for _, sh := range s.shards {
		for id, n := range sh.replicas {
			rep := &trep{node: n, group: sh.id, id: id}
			n.reps[sh.id] = rep
		}
	}
	for _, n := range s.nodes {
		if err := s.startNode(n); err != nil {
			return err
		}
	}
	for r := 0; r < R; r++ {
		for c := 0; c < s.opts.ClientsPerRegion; c++ {
			n := nodeAt(r, c)
			s.clients = append(s.clients, &tclient{id: len(s.clients), region: r, node: n.id, hints: map[uint64]paxos.ReplicaID{},
				skew: time.Duration(s.rng.Int64N(int64(2*maxClientSkew))) - maxClientSkew})
		}
	}
	return nil
}

func (s *txnSim) shardOf(key string) *shard {
	i, _ := strconv.Atoi(key[1:strings.IndexByte(key, '/')])
	return s.shards[i-1]
}

func shardSpan(id uint64) ([]byte, []byte) {
	p := []byte(fmt.Sprintf("s%d/", id))
	e := append([]byte(nil), p...)
	e[len(e)-1]++
	return p, e
}

func (s *txnSim) startNode(n *tnode) error {
	for _, gid := range sortedKeys(n.reps) {
		rep := n.reps[gid]
		sh := s.shards[gid-1]
		rep.store = pebblestore.New(n.eng, gid)
		st, err := rep.store.Load()
		if err != nil {
			return fmt.Errorf("node %d group %d: %w", n.id, gid, err)
		}
		s.checkRemembers(n, rep, st)
		r, err := paxos.New(paxos.Config{Group: gid, ID: rep.id, Voters: sh.voters, Learners: sh.learners,
			Bugs:          paxos.Bugs{OwnClockApply: s.opts.Bug == "own-clock-apply"},
			LeaseDuration: s.opts.Lease, HeartbeatInterval: s.opts.Lease / 8, ElectionTimeout: s.opts.Lease / 4,
			RetryInterval: 300 * time.Millisecond, Rand: rand.New(rand.NewPCG(s.rng.Uint64(), uint64(rep.id))),
			HardState: st.HardState, Entries: st.Entries, FirstIndex: st.FirstIndex, Applied: st.Applied})
		if err != nil {
			return err
		}
		recs, err := txnkv.Records(n.eng, gid)
		if err != nil {
			return err
		}
		g, err := txn.NewGroup(gid, r, txn.Config{Bugs: txn.Bugs{NoCommitWait: s.opts.Bug == "no-commit-wait", LastAppliedRead: s.opts.Bug == "own-clock-apply"},
			QueryAfter: time.Second, RetryInterval: 300 * time.Millisecond, LockWait: 2 * time.Second, TxnTimeout: 5 * time.Second}, recs)
		if err != nil {
			return err
		}
		rep.g, rep.ticker.next, rep.led, rep.pending = g, 0, false, 0
		s.tick(rep)
	}
	return nil
}

func sortedKeys[V any](m map[uint64]V) []uint64 {
	ks := make([]uint64, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (s *txnSim) tick(rep *trep) {
	if !rep.node.up {
		return
	}
	now := rep.node.now()
	if now.Latest != 0 {
		s.epsSum += now.Epsilon()
		s.epsN++
	}
	rep.g.Tick(now)
	s.process(rep)
}

// process runs the txn.Ready contract exactly as the node runtime does,
// persistence pipelined: a Ready's sync completes later in virtual time
// (syncLater), and the replica goes on meanwhile.
func (s *txnSim) process(rep *trep) {
	n := rep.node
	// As the runtime: the published state goes before a Ready is taken.
	if rep.g.HasReady() && s.opts.Bug != "stale-fast-read" {
		rep.strong = nil
	}
	rep.g.SetReadFloor(n.eng.GCHorizon())
	for rep.g.HasReady() && n.up {
		rd := rep.g.Ready()
		// A crash planned for this point strikes after the Ready's early
		// outputs, before its sync, or while an earlier Ready's sync is
		// in flight.
		midCrash := n.crashMid > 0 && (rep.pending > 0 || rd.MustSync && (rd.HardState != nil || len(rd.Entries) > 0))
		early := func(m paxos.Message) bool {
			return paxos.SendBeforePersist(m) || s.opts.Bug == "send-before-sync"
		}
		var late []paxos.Message
		for _, m := range rd.Messages {
			if early(m) {
				s.sendPaxos(n, m)
			} else {
				late = append(late, m)
			}
		}
		sync, err := txnkv.Persist(n.eng, rep.store, rep.group, &rd)
		if err == nil && sync != nil {
			// Pebble's sync is withheld (withholdSyncs): this returns at
			// once, and the batch is durable only at syncLater's event.
			err = sync()
		}
		if err != nil {
			s.violation("node %d: persist: %v", n.id, err)
		}
		if sr, ok := rep.g.StrongReadState(); ok {
			rep.strong = &sr
		} else if s.opts.Bug != "stale-fast-read" {
			rep.strong = nil
		}
		// What the runtime sends before the sync (see txnkv.Persist).
		for _, m := range rd.Msgs {
			s.sendTxnMsg(n, m)
		}
		for _, t := range rd.Reads {
			kvs, err := txnkv.Read(n.eng, t)
			s.answerRead(rep, t, kvs, err)
		}
		for _, r := range rd.Responses {
			s.answer(rep, r)
		}
		if midCrash {
			s.tracef("crash node %d (%s) before a Ready of group %d is durable", n.id, s.m.Regions[n.region], rep.group)
			s.crashNode(n, n.crashMid)
			return
		}
		if sync == nil && rep.pending == 0 {
			for _, m := range late {
				s.sendPaxos(n, m)
			}
			rep.g.Advance(rd)
		} else {
			s.syncLater(rep, sync != nil, late, rep.g.AdvanceUnsynced(rd))
		}
		st := rep.g.Replica().Status().Applied
		if len(rd.Committed) > 0 {
			st = rd.ApplyState
		}
		for _, sr := range rd.Snapshots {
			s.sendSnapshot(rep, sr.To, st)
		}
		if st.Index > rep.g.Replica().FirstIndex()+256 {
			before := st.Index - 128
			b := n.eng.NewBatch()
			if err := rep.store.Truncate(b, before); err == nil && b.Commit(true) == nil && n.durable() == nil {
				_ = rep.g.Replica().Compact(before - 1)
			}
		}
	}
	if n.up {
		if lead := rep.g.Replica().IsLeader(); lead != rep.led {
			rep.led = lead
			if lead {
				s.tracef("group %d: replica %d (node %d, %s) leads", rep.group, rep.id, n.id, s.m.Regions[n.region])
			}
		}
		if lead := rep.g.Replica().LeaderHint(); lead != 0 {
			n.hint[rep.group] = lead
		}
		rep.ticker.schedule(s.loop, &rep.node.simNode, rep.g.NextWake(), func() { s.tick(rep) })
	}
}

// syncLater completes a written Ready's sync after a simulated fsync, in
// order with the node's other syncs: then (unless the node crashed first)
// what it wrote is durable, its held-back Paxos messages leave, and the
// replica hears Synced. A sync makes everything written before it durable,
// as one WAL does.
func (s *txnSim) syncLater(rep *trep, needSync bool, late []paxos.Message, tok paxos.SyncToken) {
	n := rep.node
	rep.pending++
	at := max(s.loop.Now().Add(time.Duration(100+s.rng.IntN(1900))*time.Microsecond), n.lastSync)
	n.lastSync = at
	epoch := n.epoch
	s.loop.At(at, func() {
		if !n.up || n.epoch != epoch {
			return
		}
		if needSync {
			if err := n.durable(); err != nil {
				s.violation("node %d: sync: %v", n.id, err)
				return
			}
		}
		for _, m := range late {
			s.sendPaxos(n, m)
		}
		rep.pending--
		rep.g.Synced(tok)
		s.process(rep)
	})
}

func (s *txnSim) sendPaxos(from *tnode, m paxos.Message) {
	if rep := from.reps[m.Group]; !m.Reject && (m.Type == paxos.MsgPromise || m.Type == paxos.MsgAccepted) {
		if rep.toldPromised.Less(m.Ballot) {
			rep.toldPromised = m.Ballot
		}
		if m.Type == paxos.MsgAccepted {
			rep.toldAccepted = max(rep.toldAccepted, m.Index)
		}
	}
	to := s.shards[m.Group-1].replicas[m.To]
	for _, d := range s.net.Delays(from.id, to.id) {
		ep := to.epoch
		m := m
		s.loop.At(s.loop.Now().Add(d), func() {
			if to.epoch != ep || !to.up {
				return
			}
			rep := to.reps[m.Group]
			if m.Type == paxos.MsgSnapshot {
				s.installSnapshot(rep, m)
				return
			}
			rep.g.Step(to.now(), m)
			s.process(rep)
		})
	}
}

// sendTxnMsg routes a message to the node this node believes leads the
// destination group.
func (s *txnSim) sendTxnMsg(from *tnode, m txn.Msg) {
	sh := s.shards[m.To-1]
	id := from.hint[m.To]
	if id == 0 {
		id = sh.voters[s.rng.IntN(len(sh.voters))]
	}
	to := sh.replicas[id]
	for _, d := range s.net.Delays(from.id, to.id) {
		ep := to.epoch
		s.loop.At(s.loop.Now().Add(d), func() {
			if to.epoch != ep || !to.up {
				return
			}
			rep := to.reps[m.To]
			if !rep.g.Replica().IsLeader() {
				// Not the leader: pass the hint back so the sender's next try
				// goes to the right place.
				if h := rep.g.Replica().LeaderHint(); h != 0 {
					from.hint[m.To] = h
				} else {
					from.hint[m.To] = sh.voters[s.rng.IntN(len(sh.voters))]
				}
			}
			// Whoever answers from a group leads it.
			to.hint[m.From] = from.reps[m.From].leaderOr(to.hint[m.From])
			rep.g.Receive(to.now(), m)
			s.process(rep)
		})
	}
}

func (r *trep) leaderOr(def paxos.ReplicaID) paxos.ReplicaID {
	if r == nil {
		return def
	}
	if h := r.g.Replica().LeaderHint(); h != 0 {
		return h
	}
	return def
}

func (s *txnSim) sendSnapshot(rep *trep, to paxos.ReplicaID, st paxos.ApplyState) {
	n := rep.node
	snap := n.eng.NewSnapshot()
	defer snap.Close()
	start, end := shardSpan(rep.group)
	payload, err := rep.store.ExportSnapshot(snap, start, end, st)
	if err != nil {
		s.violation("node %d: export snapshot: %v", n.id, err)
		rep.g.Replica().ReportSnapshot(to, false)
		return
	}
	s.sendPaxos(n, paxos.Message{Type: paxos.MsgSnapshot, Group: rep.group, From: rep.id, To: to,
		Ballot: rep.g.Replica().Status().Promised, Index: st.Index, Snapshot: st, Payload: payload})
	// As the runtime: the leader gives it time to arrive (from its size).
	rep.g.Replica().SnapshotSent(to, st.Index, pebblestore.SnapshotWait(len(payload)))
}

func (s *txnSim) installSnapshot(rep *trep, m paxos.Message) {
	n := rep.node
	st, err := pebblestore.SnapshotState(m.Payload)
	if err != nil {
		s.violation("snapshot: %v", err)
		return
	}
	cur := rep.g.Replica().Status()
	if st.Index <= cur.Chosen || st.Index <= cur.Applied.Index {
		return
	}
	start, end := shardSpan(rep.group)
	b := n.eng.NewBatch()
	if _, _, err := rep.store.InstallSnapshot(b, start, end, m.Payload); err != nil {
		b.Close()
		s.violation("snapshot install: %v", err)
		return
	}
	if err := b.Commit(true); err != nil {
		s.violation("snapshot commit: %v", err)
		return
	}
	if err := n.durable(); err != nil {
		s.violation("snapshot sync: %v", err)
		return
	}
	recs, err := txnkv.Records(n.eng, rep.group)
	if err == nil {
		err = rep.g.Restore(recs)
	}
	if err != nil {
		s.violation("snapshot restore: %v", err)
		return
	}
	rep.g.Replica().RestoreSnapshot(n.now(), st, m.From, m.Ballot)
	s.process(rep)
}

// ----------------------------------------------------------------------
// Running and checking

// scheduleGC collects n's versions about every simGCEvery, while the run
// lasts.
func (s *txnSim) scheduleGC(n *tnode) {
	s.loop.After(int64(simGCEvery/2)+s.rng.Int64N(int64(simGCEvery)), func() {
		s.collect(n)
		s.scheduleGC(n)
	})
}

// collect starts a version GC pass on n at the horizon a node computes,
// and runs it a round at a time, one event per round 0.5–2 ms apart, so
// that rounds interleave with the node's applies, snapshot installs and
// crashes. Rounds are small (simGCRoundDeletes) so passes span rounds. A
// crash abandons the pass, as stopping a node does.
func (s *txnSim) collect(n *tnode) {
	if !n.up {
		return
	}
	now := n.now()
	if now.Latest == 0 {
		return // no healthy clock: no horizon
	}
	var safe []tt.Timestamp
	for _, gid := range sortedKeys(n.reps) {
		safe = append(safe, n.reps[gid].g.SafeTime())
	}
	h := txnkv.GCHorizon(now.Earliest, SimRetention, safe)
	if h == 0 || n.gcBusy { // nothing to collect, or a pass under way
		return
	}
	p, err := n.eng.NewGCPass(h, simGCRoundDeletes)
	if err != nil {
		s.violation("node %d: gc at %d: %v", n.id, h, err)
		return
	}
	n.gcBusy = true
	ep := n.epoch
	var step func()
	step = func() {
		if !n.up || n.epoch != ep {
			s.tracef("gc node %d at %d: abandoned by a crash after %d versions", n.id, p.Horizon(), p.Removed())
			n.gcBusy = false
			return
		}
		before := p.Removed()
		done, err := p.Step()
		s.res.GCRemoved += p.Removed() - before
		if err != nil {
			s.violation("node %d: gc at %d: %v", n.id, p.Horizon(), err)
		}
		if done || err != nil {
			s.tracef("gc node %d at %d: %d versions removed", n.id, p.Horizon(), p.Removed())
			n.gcBusy = false
			return
		}
		s.loop.After(int64(500*time.Microsecond)+s.rng.Int64N(int64(1500*time.Microsecond)), step)
	}
	step()
}

func (s *txnSim) run() TxnResult {
	wall := time.Now()
	for _, n := range s.nodes {
		s.scheduleGC(n)
	}
	end := s.start.Add(s.opts.Duration)
	s.loop.RunUntil(end)
	// Let what is in flight finish (clients start nothing new): commits
	// answer, participants resolve, so the final state is settled.
	for deadline := end.Add(15 * time.Second); s.loop.Now() < deadline && !s.settled(); {
		s.loop.RunUntil(s.loop.Now().Add(100 * time.Millisecond))
	}
	// Transactions still in flight: unknown outcome.
	for _, c := range s.clients {
		if c.cur != nil {
			s.finishTxn(c, c.cur, outcomeUnknown)
		}
	}
	s.res.Events = s.loop.Events()
	s.res.Virtual = s.opts.Duration
	s.check()
	for _, n := range s.nodes {
		if n.eng != nil {
			_ = n.eng.Close()
		}
	}
	s.res.Wall = time.Since(wall)
	s.res.CommitP50 = median(s.crossLat)
	s.res.LocalCommitP50 = median(s.localLat)
	s.res.CommitBound = median(s.bounds)
	s.res.CommitWaitExposed = median(s.exposed)
	if len(s.fracs) > 0 {
		sort.Float64s(s.fracs)
		s.res.CommitWaitExposedFrac = s.fracs[len(s.fracs)/2]
	}
	if s.epsN > 0 {
		s.res.Epsilon = s.epsSum / time.Duration(s.epsN)
	}
	s.res.Violations = append(s.res.Violations, s.errs...)
	return s.res
}

// settled reports whether no client transaction is in flight and no
// participant holds a prepared transaction.
func (s *txnSim) settled() bool {
	for _, c := range s.clients {
		if c.cur != nil {
			return false
		}
	}
	for _, sh := range s.shards {
		for _, n := range sh.replicas {
			if n.up && n.reps[sh.id].g.Prepared() > 0 {
				return false
			}
		}
	}
	return true
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	c := slices.Clone(d)
	slices.Sort(c)
	return c[len(c)/2]
}

func (s *txnSim) check() {
	for _, v := range CheckTxns(s.hist) {
		s.violation("%s", v)
	}
	var accounts []string
	for _, sh := range s.shards {
		for a := 0; a < bankAccountsPerShard; a++ {
			accounts = append(accounts, bankKey(sh.id, a))
		}
	}
	for _, v := range CheckBank(s.hist, accounts, int64(len(accounts))*bankInitial) {
		s.violation("%s", v)
	}
	// Final state, read at each shard's leader once everything settled.
	final := map[string]string{}
	for _, sh := range s.shards {
		var leader *trep
		for _, n := range sh.replicas {
			if n.up && n.reps[sh.id].g.Replica().IsLeader() {
				leader = n.reps[sh.id]
			}
		}
		if leader == nil {
			s.violation("shard %d: no leader at the end of the run", sh.id)
			continue
		}
		start, end := shardSpan(sh.id)
		kvs, err := leader.node.eng.Scan(start, end, tt.MaxTimestamp, 0, false)
		if err != nil {
			s.violation("final scan: %v", err)
			continue
		}
		for _, x := range kvs {
			final[string(x.Key)] = string(x.Value)
		}
	}
	for _, v := range CheckFinal(s.hist, final) {
		s.violation("final state: %s", v)
	}
}

// ----------------------------------------------------------------------
// Faults (as in the Paxos simulation)

func (s *txnSim) scheduleFault() {
	gap := time.Duration(500+s.rng.IntN(2500)) * time.Millisecond
	s.loop.After(int64(gap), func() {
		if s.loop.Now() >= s.healAt {
			return
		}
		s.injectFault()
		s.scheduleFault()
	})
}

func (s *txnSim) injectFault() {
	f := s.opts.Faults[s.rng.IntN(len(s.opts.Faults))]
	dur := time.Duration(300+s.rng.IntN(4000)) * time.Millisecond
	switch f {
	case "crash":
		n := s.nodes[s.rng.IntN(len(s.nodes))]
		if !n.up || n.crashMid > 0 {
			return
		}
		if s.rng.IntN(2) == 0 {
			// Crash between a Ready's commit and its sync, the window in
			// which the runtime has sent what depends only on chosen
			// entries; a node with nothing to sync crashes plainly 2 s later.
			s.tracef("crash node %d (%s) at its next synced Ready, for %s", n.id, s.m.Regions[n.region], dur)
			n.crashMid = dur
			epoch := n.epoch
			s.loop.After(int64(2*time.Second), func() {
				if n.up && n.epoch == epoch && n.crashMid > 0 && s.loop.Now() < s.healAt {
					s.tracef("crash node %d (%s) for %s", n.id, s.m.Regions[n.region], dur)
					s.crashNode(n, dur)
				}
			})
			return
		}
		s.tracef("crash node %d (%s) for %s", n.id, s.m.Regions[n.region], dur)
		s.crashNode(n, dur)
	case "partition":
		ids := make([]NodeID, 0, len(s.nodes))
		for _, n := range s.nodes {
			ids = append(ids, n.id)
		}
		s.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		k := 1 + s.rng.IntN(len(ids)-1)
		sym := s.rng.IntN(3) != 0
		s.tracef("partition %v | %v symmetric=%v for %s", ids[:k], ids[k:], sym, dur)
		s.net.Cut(ids[:k], ids[k:], sym)
		s.loop.After(int64(dur), func() { s.net.Heal() })
	case "net":
		loss, dup, reorder := s.rng.Float64()*0.1, s.rng.Float64()*0.05, s.rng.Float64()*0.2
		s.tracef("network faults loss=%.2f dup=%.2f reorder=%.2f for %s", loss, dup, reorder, dur)
		s.net.SetFaults(loss, dup, reorder)
		s.loop.After(int64(dur), func() { s.net.SetFaults(0, 0, 0) })
	case "clock":
		n := s.nodes[s.rng.IntN(len(s.nodes))]
		if s.rng.IntN(2) == 0 {
			b := time.Duration((s.rng.Float64()*2 - 1) * 0.9 * float64(s.opts.ClockError))
			s.tracef("clock bias %s on node %d for %s", b, n.id, dur)
			n.clock.SetBias(b)
			s.loop.After(int64(dur), func() { n.clock.SetBias(0) })
		} else {
			s.tracef("time master lost on node %d", n.id)
			n.clock.SetLost(true)
			s.loop.After(int64(dur+25*time.Second), func() { n.clock.SetLost(false) })
		}
	}
}

// checkRemembers reports a replica that restarted without a promise or an
// acceptance it had sent: what Paxos counted must survive a crash.
func (s *txnSim) checkRemembers(n *tnode, rep *trep, st pebblestore.State) {
	if st.HardState.Promised.Less(rep.toldPromised) {
		s.violation("node %d group %d restarted having promised %s, but had told a peer %s",
			n.id, rep.group, st.HardState.Promised, rep.toldPromised)
	}
	known := max(st.Applied.Index, st.FirstIndex-1)
	if k := len(st.Entries); k > 0 {
		known = max(known, st.Entries[k-1].Index)
	}
	if known < rep.toldAccepted {
		s.violation("node %d group %d restarted knowing entries through %d, but had told its leader it accepted through %d",
			n.id, rep.group, known, rep.toldAccepted)
	}
}

// crashNode crashes n and restarts it after dur.
func (s *txnSim) crashNode(n *tnode, dur time.Duration) {
	n.crashMid = 0
	_ = n.crash(s.rng)
	s.loop.After(int64(dur), func() { s.restartNode(n) })
}

func (s *txnSim) restartNode(n *tnode) {
	if n.up {
		return
	}
	s.tracef("restart node %d", n.id)
	if err := n.restart(); err != nil {
		s.violation("%v", err)
		return
	}
	for _, rep := range n.reps {
		rep.node = n
	}
	if err := s.startNode(n); err != nil {
		s.violation("restart node %d: %v", n.id, err)
	}
}

func (s *txnSim) healAll() {
	s.tracef("heal everything")
	s.net.Heal()
	s.net.SetFaults(0, 0, 0)
	for _, n := range s.nodes {
		n.crashMid = 0
		n.clock.SetBias(0)
		n.clock.SetLost(false)
		if !n.up {
			s.restartNode(n)
		}
	}
}

var errClientTimeout = errors.New("client timeout")
