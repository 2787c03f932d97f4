package sim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/paxos/pebblestore"
	"github.com/meridiandb/meridian/tt"
)

// PaxosOptions configures one simulated run of Paxos groups.
type PaxosOptions struct {
	Seed     uint64
	Groups   int // default 3
	Voters   int // per group, default 3 (one node per voter, spread over the regions)
	Learners int // read-only replicas per group, default 0
	// Preset names the latency matrix (default "global").
	Preset   string
	Duration time.Duration // virtual, default 30 s
	// Lease is the leader lease (default 2 s; shorter than Spanner's 10 s so
	// failovers fit in short runs).
	Lease time.Duration
	// Faults to inject: "crash", "partition", "net" (loss, duplication,
	// reordering), "clock" (offsets within ε, lost time servers). "all"
	// enables them all. Faults stop 6 lease periods before the end (or at
	// half time); every group must commit again within 5 of them.
	Faults []string
	// Bug turns on a deliberate protocol bug: "lease-overlap".
	Bug string
	// ClientsPerGroup issue puts and gets; default 3.
	ClientsPerGroup int
	// ThinkTime between a client's operations (default 100 ms).
	ThinkTime time.Duration
	// CompactEvery: truncate the log when this many applied entries sit in
	// it (default 64, small so that snapshots get exercised).
	CompactEvery int
	// Trace, when set, receives a line for every fault, crash, restart and
	// leadership change, stamped with virtual time.
	Trace func(string)
}

// FaultNames lists what PaxosOptions.Faults accepts.
var FaultNames = []string{"crash", "partition", "net", "clock"}

func (o *PaxosOptions) fill() error {
	if o.Groups <= 0 {
		o.Groups = 3
	}
	if o.Voters <= 0 {
		o.Voters = 3
	}
	if o.Voters != 1 && o.Voters != 3 && o.Voters != 5 {
		return fmt.Errorf("sim: %d voters; want 1, 3 or 5", o.Voters)
	}
	if o.Preset == "" {
		o.Preset = "global"
	}
	if o.Duration <= 0 {
		o.Duration = 30 * time.Second
	}
	if o.Lease <= 0 {
		o.Lease = 2 * time.Second
	}
	if o.ClientsPerGroup <= 0 {
		o.ClientsPerGroup = 3
	}
	if o.ThinkTime <= 0 {
		o.ThinkTime = 100 * time.Millisecond
	}
	if o.CompactEvery <= 0 {
		o.CompactEvery = 64
	}
	var fs []string
	for _, f := range o.Faults {
		if f == "all" {
			fs = append(fs, FaultNames...)
			continue
		}
		if f == "" || f == "none" {
			continue
		}
		if !slices.Contains(FaultNames, f) {
			return fmt.Errorf("sim: unknown fault %q (have %s, all)", f, strings.Join(FaultNames, ", "))
		}
		fs = append(fs, f)
	}
	o.Faults = fs
	switch o.Bug {
	case "", "lease-overlap":
	default:
		return fmt.Errorf("sim: unknown bug %q (have lease-overlap)", o.Bug)
	}
	return nil
}

// PaxosResult is what one run found.
type PaxosResult struct {
	Seed       uint64
	Violations []string
	// Virtual and wall seconds of the run.
	Virtual time.Duration
	Wall    time.Duration
	// Ops completed by clients (acknowledged puts and gets), commits
	// (applied entries at leaders), leader changes, snapshots sent.
	Ops           int
	Commits       int
	LeaderChanges int
	Snapshots     int
	Crashes       int
	Events        uint64
}

// ReplayCommand returns the command that replays this run.
func ReplayCommand(kind string, seed uint64, faults []string, bug string) string {
	cmd := fmt.Sprintf("meridian sim %s --seed %d", kind, seed)
	if len(faults) > 0 {
		cmd += " --faults " + strings.Join(faults, ",")
	}
	if bug != "" {
		cmd += " --bug " + bug
	}
	return cmd
}

type prep struct {
	node   *simNode
	group  uint64
	id     paxos.ReplicaID
	r      *paxos.Replica
	store  *pebblestore.Store
	ticker ticker
	// applied is this replica's applied history (truncated on crash to
	// what survived).
	applied []paxos.Applied
	// pending proposals by index: the client op waiting for it.
	pending map[uint64]*pop
	leader  bool
}

type pop struct {
	histKey string
	client  *pclient
	id      int
	put     bool
	key     string
	value   string
	call    tt.Timestamp
	ts      tt.Timestamp
	index   uint64
	replica *prep
}

type pclient struct {
	id     int
	group  uint64
	region int
	node   NodeID // the client sits beside this node (same region)
	target int    // index into the group's replicas it tries first
	busy   *pop
	seq    int
}

type leaseKey struct {
	group uint64
	b     paxos.Ballot
}

type leaseRecord struct {
	group uint64
	b     paxos.Ballot
	start tt.Timestamp // true time at acquisition
	end   tt.Timestamp // lease end (true time bound)
}

type paxosSim struct {
	opts     PaxosOptions
	rng      *rand.Rand
	loop     *Loop
	net      *Network
	nodes    []*simNode
	reps     map[uint64][]*prep // group → replicas (index = replica ID - 1)
	clients  []*pclient
	hist     map[string][]kvOp // per key
	leases   map[leaseKey]*leaseRecord
	res      PaxosResult
	faultOn  bool
	debugMsg func(paxos.Message)
	start    tt.Timestamp
	healAt   tt.Timestamp
	probes   map[uint64]tt.Timestamp // group → first commit after heal
	errs     []string
	opSeq    int
}

// kvOp is one client operation for the linearizability check.
type kvOp struct {
	put    bool
	key    string
	value  string // put: written; get: read ("" = absent)
	call   tt.Timestamp
	ret    tt.Timestamp // 0: unknown outcome (never returned)
	client int
}

func groupKey(group uint64, key string) []byte { return []byte(fmt.Sprintf("g%03d/%s", group, key)) }

func groupSpan(group uint64) ([]byte, []byte) {
	p := []byte(fmt.Sprintf("g%03d/", group))
	e := append([]byte(nil), p...)
	e[len(e)-1]++
	return p, e
}

// RunPaxos runs one seed and checks it.
func RunPaxos(opts PaxosOptions) (PaxosResult, error) {
	s, err := newPaxosSim(opts)
	if err != nil {
		return PaxosResult{}, err
	}
	return s.run(), nil
}

func newPaxosSim(opts PaxosOptions) (*paxosSim, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	m, err := Preset(opts.Preset)
	if err != nil {
		return nil, err
	}
	s := &paxosSim{
		opts:   opts,
		rng:    rand.New(rand.NewPCG(opts.Seed, 0x6d65726964)),
		loop:   NewLoop(tt.Timestamp(1_800_000_000_000_000_000)),
		reps:   map[uint64][]*prep{},
		hist:   map[string][]kvOp{},
		leases: map[leaseKey]*leaseRecord{},
		probes: map[uint64]tt.Timestamp{},
	}
	s.res.Seed = opts.Seed
	s.net = NewNetwork(NetConfig{Matrix: m, Jitter: 0.1}, rand.New(rand.NewPCG(s.rng.Uint64(), 1)))
	if err := s.setup(); err != nil {
		return nil, err
	}
	s.start = s.loop.Now()
	// Faults stop with 6 lease periods left: progress must resume within 5.
	s.healAt = s.loop.Now().Add(max(opts.Duration-6*opts.Lease, opts.Duration/2))
	if len(opts.Faults) > 0 {
		s.scheduleFault()
	}
	s.loop.At(s.healAt, s.healAll)
	for _, c := range s.clients {
		c := c
		s.loop.After(int64(s.rng.Int64N(int64(opts.ThinkTime))), func() { s.clientNext(c) })
	}
	return s, nil
}

func (s *paxosSim) run() PaxosResult {
	wall := time.Now()
	s.loop.RunUntil(s.start.Add(s.opts.Duration))
	s.res.Events = s.loop.Events()
	s.res.Virtual = s.opts.Duration
	// Puts still in flight may or may not have happened.
	for _, c := range s.clients {
		if op := c.busy; op != nil && op.put {
			s.hist[op.histKey] = append(s.hist[op.histKey], kvOp{put: true, key: op.key, value: op.value, call: op.call, client: c.id})
		}
	}
	s.check()
	for _, n := range s.nodes {
		if n.eng != nil {
			_ = n.eng.Close()
		}
	}
	s.res.Wall = time.Since(wall)
	s.res.Violations = append(s.res.Violations, s.errs...)
	return s.res
}

func (s *paxosSim) tracef(format string, args ...any) {
	if s.opts.Trace != nil {
		s.opts.Trace(fmt.Sprintf("%9.3fs ", float64(s.loop.Now()-s.start)/1e9) + fmt.Sprintf(format, args...))
	}
}

func (s *paxosSim) violation(format string, args ...any) {
	if len(s.errs) < 50 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
}

func (s *paxosSim) setup() error {
	nNodes := s.opts.Voters + s.opts.Learners
	regions := len(s.net.cfg.Matrix.Regions)
	for i := 0; i < nNodes; i++ {
		n := &simNode{id: NodeID(i + 1), region: i % regions, fs: vfs.NewCrashableMem(), up: true}
		s.net.Place(n.id, n.region)
		drift := (s.rng.Float64()*2 - 1) * 0.5 * tt.DefaultDriftBound
		n.clock = tt.NewSim(tt.SimConfig{Drift: drift, SyncInterval: 5 * time.Second, SampleErr: time.Millisecond,
			Seed: s.rng.Uint64(), SyncDeadline: 20 * time.Second}, s.loop.Now)
		eng, err := n.openEngine()
		if err != nil {
			return err
		}
		n.eng = eng
		s.nodes = append(s.nodes, n)
	}
	var voters, learners []paxos.ReplicaID
	for i := 1; i <= s.opts.Voters; i++ {
		voters = append(voters, paxos.ReplicaID(i))
	}
	for i := s.opts.Voters + 1; i <= nNodes; i++ {
		learners = append(learners, paxos.ReplicaID(i))
	}
	for g := uint64(1); g <= uint64(s.opts.Groups); g++ {
		for i, n := range s.nodes {
			p := &prep{node: n, group: g, id: paxos.ReplicaID(i + 1), store: pebblestore.New(n.eng, g), pending: map[uint64]*pop{}}
			s.reps[g] = append(s.reps[g], p)
			if err := s.startReplica(p, voters, learners); err != nil {
				return err
			}
		}
		for c := 0; c < s.opts.ClientsPerGroup; c++ {
			node := s.nodes[(c+int(g))%s.opts.Voters]
			s.clients = append(s.clients, &pclient{id: len(s.clients), group: g, region: node.region, node: node.id, target: s.rng.IntN(nNodes)})
		}
	}
	return nil
}

func (s *paxosSim) startReplica(p *prep, voters, learners []paxos.ReplicaID) error {
	p.store = pebblestore.New(p.node.eng, p.group)
	st, err := p.store.Load()
	if err != nil {
		return fmt.Errorf("node %d group %d: load: %w", p.node.id, p.group, err)
	}
	cfg := paxos.Config{
		Group: p.group, ID: p.id, Voters: voters, Learners: learners,
		LeaseDuration: s.opts.Lease, HeartbeatInterval: s.opts.Lease / 8, ElectionTimeout: s.opts.Lease / 4,
		RetryInterval: 300 * time.Millisecond,
		Rand:          rand.New(rand.NewPCG(s.rng.Uint64(), uint64(p.id))),
		HardState:     st.HardState, Entries: st.Entries, FirstIndex: st.FirstIndex, Applied: st.Applied,
		Bugs: paxos.Bugs{LeaseOverlap: s.opts.Bug == "lease-overlap"},
	}
	r, err := paxos.New(cfg)
	if err != nil {
		return fmt.Errorf("node %d group %d: %w", p.node.id, p.group, err)
	}
	p.r = r
	// What survived the crash was applied up to st.Applied.Index.
	keep := 0
	for keep < len(p.applied) && p.applied[keep].Index <= st.Applied.Index {
		keep++
	}
	p.applied = p.applied[:keep]
	p.pending = map[uint64]*pop{}
	p.leader = false
	p.ticker.next = 0
	s.tick(p)
	return nil
}

func (s *paxosSim) tick(p *prep) {
	if !p.node.up {
		return
	}
	p.r.Tick(p.node.now())
	s.process(p)
}

// process drives a replica's Ready until it has none, exactly as the node
// runtime does: persist (synced), send, apply (with the apply state), then
// advance.
func (s *paxosSim) process(p *prep) {
	n := p.node
	for p.r.HasReady() && n.up {
		rd := p.r.Ready()
		for _, m := range rd.Messages {
			if paxos.SendBeforePersist(m) {
				s.send(n, m)
			}
		}
		b := n.eng.NewBatch()
		if err := p.store.SaveReady(b, &rd); err != nil {
			s.violation("node %d: save ready: %v", n.id, err)
		}
		if !b.Empty() {
			if err := b.Commit(rd.MustSync); err != nil {
				s.violation("node %d: persist: %v", n.id, err)
			}
		} else {
			b.Close()
		}
		for _, m := range rd.Messages {
			if !paxos.SendBeforePersist(m) {
				s.send(n, m)
			}
		}
		if len(rd.Committed) > 0 {
			s.apply(p, rd.Committed, rd.ApplyState)
		}
		st := p.r.Status().Applied
		if len(rd.Committed) > 0 {
			st = rd.ApplyState
		}
		for _, sr := range rd.Snapshots {
			s.sendSnapshot(p, sr.To, st)
		}
		if rd.Lease != nil {
			s.recordLease(p, *rd.Lease)
		}
		p.r.Advance(rd)
	}
	if n.up {
		p.ticker.schedule(s.loop, p.node, p.r.NextWake(), func() { s.tick(p) })
		lead := p.r.IsLeader()
		if lead && !p.leader {
			s.res.LeaderChanges++
			s.tracef("group %d: replica %d leads (ballot %s)", p.group, p.id, p.r.Status().Promised)
		}
		if !lead && p.leader {
			s.tracef("group %d: replica %d stops leading", p.group, p.id)
		}
		p.leader = lead
	}
}

func (s *paxosSim) recordLease(p *prep, l paxos.Lease) {
	if !l.Holding {
		return
	}
	k := leaseKey{p.group, l.Ballot}
	rec := s.leases[k]
	if rec == nil {
		rec = &leaseRecord{group: p.group, b: l.Ballot, start: s.loop.Now()}
		s.leases[k] = rec
	}
	rec.end = max(rec.end, l.End)
}

func (s *paxosSim) apply(p *prep, ents []paxos.Applied, st paxos.ApplyState) {
	n := p.node
	b := n.eng.NewBatch()
	for _, a := range ents {
		if a.Type == paxos.EntryNormal && !a.Skipped {
			key, val, ok := decodePut(a.Data)
			if !ok {
				s.violation("group %d entry %d: undecodable command", p.group, a.Index)
				continue
			}
			if err := b.Put(groupKey(p.group, key), a.TS, []byte(val)); err != nil {
				s.violation("apply: %v", err)
			}
		}
		p.applied = append(p.applied, a)
		if p.r.IsLeader() && a.Type == paxos.EntryNormal && !a.Skipped {
			s.res.Commits++
			if s.loop.Now() >= s.healAt {
				if _, ok := s.probes[p.group]; !ok {
					s.probes[p.group] = s.loop.Now()
				}
			}
		}
		if op := p.pending[a.Index]; op != nil {
			delete(p.pending, a.Index)
			ok := a.Type == paxos.EntryNormal && !a.Skipped && a.TS == op.ts
			s.reply(op, ok, "")
		}
	}
	if err := p.store.SaveApplyState(b, st); err != nil {
		s.violation("apply state: %v", err)
	}
	if err := b.Commit(false); err != nil {
		s.violation("node %d: apply: %v", n.id, err)
	}
	if st.Index >= p.r.FirstIndex()+uint64(s.opts.CompactEvery) {
		before := st.Index - uint64(s.opts.CompactEvery)/2
		tb := n.eng.NewBatch()
		if err := p.store.Truncate(tb, before); err == nil {
			if err := tb.Commit(true); err == nil {
				_ = p.r.Compact(before - 1)
			}
		}
	}
}

func encodePut(key, value string) []byte {
	b := binary.AppendUvarint(nil, uint64(len(key)))
	b = append(b, key...)
	return append(b, value...)
}

func decodePut(b []byte) (string, string, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return "", "", false
	}
	return string(b[k : k+int(n)]), string(b[k+int(n):]), true
}

func (s *paxosSim) send(from *simNode, m paxos.Message) {
	if s.debugMsg != nil {
		s.debugMsg(m)
	}
	to := s.nodes[int(m.To)-1]
	for _, d := range s.net.Delays(from.id, to.id) {
		ep := to.epoch
		m := m
		s.loop.At(s.loop.Now().Add(d), func() {
			if to.epoch != ep || !to.up {
				return
			}
			p := s.reps[m.Group][int(m.To)-1]
			if m.Type == paxos.MsgSnapshot {
				s.installSnapshot(p, m)
				return
			}
			p.r.Step(to.now(), m)
			s.process(p)
		})
	}
}

// sendSnapshot exports the group's state at the leader's applied index and
// ships it as one message, with the same code the node runtime uses.
func (s *paxosSim) sendSnapshot(p *prep, to paxos.ReplicaID, st paxos.ApplyState) {
	n := p.node
	snap := n.eng.NewSnapshot()
	defer snap.Close()
	start, end := groupSpan(p.group)
	payload, err := p.store.ExportSnapshot(snap, start, end, st)
	if err != nil {
		s.violation("node %d: export snapshot: %v", n.id, err)
		p.r.ReportSnapshot(to, false)
		return
	}
	s.res.Snapshots++
	s.send(n, paxos.Message{Type: paxos.MsgSnapshot, Group: p.group, From: p.id, To: to,
		Ballot: p.r.Status().Promised, Index: st.Index, Snapshot: st, Payload: payload})
	// As the runtime: the leader gives it time to arrive (from its size).
	p.r.SnapshotSent(to, st.Index, pebblestore.SnapshotWait(len(payload)))
}

func (s *paxosSim) installSnapshot(p *prep, m paxos.Message) {
	n := p.node
	st, err := pebblestore.SnapshotState(m.Payload)
	if err != nil {
		s.violation("snapshot: %v", err)
		return
	}
	cur := p.r.Status()
	if st.Index <= cur.Chosen || st.Index <= cur.Applied.Index {
		return
	}
	b := n.eng.NewBatch()
	start, end := groupSpan(p.group)
	if _, _, err := p.store.InstallSnapshot(b, start, end, m.Payload); err != nil {
		s.violation("snapshot install: %v", err)
		b.Close()
		return
	}
	if err := b.Commit(true); err != nil {
		s.violation("snapshot commit: %v", err)
		return
	}
	if p.r.RestoreSnapshot(n.now(), st, m.From, m.Ballot) {
		// The replica's applied history jumps: record a marker (the entries
		// were checked where they were applied).
		p.applied = append(p.applied, paxos.Applied{Entry: paxos.Entry{Index: st.Index, Type: paxos.EntryNoop}, Skipped: true})
	}
	s.process(p)
}

// ----------------------------------------------------------------------
// Clients

func (s *paxosSim) clientNext(c *pclient) {
	s.opSeq++
	op := &pop{client: c, id: s.opSeq, put: s.rng.IntN(2) == 0, key: fmt.Sprintf("k%d", s.rng.IntN(3)), call: s.loop.Now()}
	op.histKey = string(groupKey(c.group, op.key))
	if op.put {
		op.value = fmt.Sprintf("v%d", op.id)
	}
	c.busy = op
	s.clientSend(c, op, 0)
	// Unknown outcome after a timeout: record and move on.
	timeout := 2 * s.opts.Lease
	s.loop.After(int64(timeout), func() {
		if c.busy != op {
			return
		}
		c.busy = nil
		if op.put {
			s.hist[op.histKey] = append(s.hist[op.histKey], kvOp{put: true, key: op.key, value: op.value, call: op.call, client: c.id})
		}
		c.target = s.rng.IntN(len(s.nodes))
		s.loop.After(int64(s.opts.ThinkTime), func() { s.clientNext(c) })
	})
}

func (s *paxosSim) clientSend(c *pclient, op *pop, hops int) {
	if c.busy != op || hops > 8 {
		return
	}
	p := s.reps[c.group][c.target]
	delays := s.net.Delays(c.node, p.node.id)
	for _, d := range delays[:min(1, len(delays))] {
		ep := p.node.epoch
		s.loop.At(s.loop.Now().Add(d), func() {
			if !p.node.up || p.node.epoch != ep {
				return
			}
			s.serve(p, op, hops)
		})
	}
}

func (s *paxosSim) serve(p *prep, op *pop, hops int) {
	now := p.node.now()
	c := op.client
	redirect := func() {
		hint := p.r.LeaderHint()
		if hint != 0 && hint != p.id {
			c.target = int(hint) - 1
		} else {
			c.target = s.rng.IntN(len(s.nodes))
		}
		s.loop.After(int64(20*time.Millisecond), func() { s.clientSend(c, op, hops+1) })
	}
	if !p.r.Leaseholder(now) {
		redirect()
		return
	}
	if !op.put {
		v, _, err := p.node.eng.Get(groupKey(p.group, op.key), tt.MaxTimestamp)
		val := ""
		if err == nil {
			val = string(v)
		} else if !errors.Is(err, kv.ErrNotFound) {
			s.violation("get: %v", err)
		}
		op.value = val
		op.replica = p
		s.reply(op, true, val)
		return
	}
	idx, ts, err := p.r.Propose(now, encodePut(op.key, op.value), 0, true)
	if err != nil {
		redirect()
		return
	}
	op.index, op.ts, op.replica = idx, ts, p
	p.pending[idx] = op
	s.process(p)
}

// reply sends the outcome back to the client over the network.
func (s *paxosSim) reply(op *pop, ok bool, val string) {
	c := op.client
	p := op.replica
	delays := s.net.Delays(p.node.id, c.node)
	if len(delays) == 0 {
		return // lost: the client times out (unknown outcome)
	}
	s.loop.At(s.loop.Now().Add(delays[0]), func() {
		if c.busy != op {
			return
		}
		c.busy = nil
		if ok {
			s.hist[op.histKey] = append(s.hist[op.histKey], kvOp{put: op.put, key: op.key, value: val + op.valueIfPut(), call: op.call, ret: s.loop.Now(), client: c.id})
			s.res.Ops++
		}
		// A definite failure never happened: leave it out of the history.
		s.loop.After(int64(s.opts.ThinkTime), func() { s.clientNext(c) })
	})
}

func (op *pop) valueIfPut() string {
	if op.put {
		return op.value
	}
	return ""
}

// ----------------------------------------------------------------------
// Faults

func (s *paxosSim) scheduleFault() {
	gap := time.Duration(500+s.rng.IntN(2500)) * time.Millisecond
	s.loop.After(int64(gap), func() {
		if s.loop.Now() >= s.healAt {
			return
		}
		s.injectFault()
		s.scheduleFault()
	})
}

func (s *paxosSim) injectFault() {
	f := s.opts.Faults[s.rng.IntN(len(s.opts.Faults))]
	dur := time.Duration(300+s.rng.IntN(4000)) * time.Millisecond
	switch f {
	case "crash":
		n := s.nodes[s.rng.IntN(len(s.nodes))]
		if !n.up {
			return
		}
		s.tracef("crash node %d for %s", n.id, dur)
		s.crashNode(n)
		s.loop.After(int64(dur), func() { s.restartNode(n) })
	case "partition":
		ids := []NodeID{}
		for _, n := range s.nodes {
			ids = append(ids, n.id)
		}
		s.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		k := 1 + s.rng.IntN(len(ids)-1)
		sym := s.rng.IntN(3) != 0
		s.tracef("partition %v | %v symmetric=%v for %s", ids[:k], ids[k:], sym, dur)
		s.net.Cut(ids[:k], ids[k:], sym)
		s.loop.After(int64(dur), func() { s.tracef("heal partitions"); s.net.Heal() })
	case "net":
		loss, dup, reorder := s.rng.Float64()*0.2, s.rng.Float64()*0.1, s.rng.Float64()*0.3
		s.tracef("network faults loss=%.2f dup=%.2f reorder=%.2f for %s", loss, dup, reorder, dur)
		s.net.SetFaults(loss, dup, reorder)
		s.loop.After(int64(dur), func() { s.net.SetFaults(0, 0, 0) })
	case "clock":
		n := s.nodes[s.rng.IntN(len(s.nodes))]
		if s.rng.IntN(2) == 0 {
			// An offset inside ε: the master's samples shift, still truthful.
			b := time.Duration((s.rng.Float64()*2 - 1) * float64(900*time.Microsecond))
			s.tracef("clock bias %s on node %d for %s", b, n.id, dur)
			n.clock.SetBias(b)
			s.loop.After(int64(dur), func() { n.clock.SetBias(0) })
		} else {
			// The time master is lost long enough for ε to grow past the
			// deadline: the node's clock turns unhealthy.
			s.tracef("time master lost on node %d for %s", n.id, dur+25*time.Second)
			n.clock.SetLost(true)
			s.loop.After(int64(dur+25*time.Second), func() { s.tracef("time master back on node %d", n.id); n.clock.SetLost(false) })
		}
	}
}

func (s *paxosSim) crashNode(n *simNode) {
	s.res.Crashes++
	_ = n.crash(s.rng)
	for g := range s.reps {
		p := s.reps[g][int(n.id)-1]
		// Clients waiting on this replica will time out.
		p.pending = map[uint64]*pop{}
	}
}

func (s *paxosSim) restartNode(n *simNode) {
	if n.up {
		return
	}
	s.tracef("restart node %d", n.id)
	if err := n.restart(); err != nil {
		s.violation("%v", err)
		return
	}
	var voters, learners []paxos.ReplicaID
	for i := 1; i <= s.opts.Voters; i++ {
		voters = append(voters, paxos.ReplicaID(i))
	}
	for i := s.opts.Voters + 1; i <= len(s.nodes); i++ {
		learners = append(learners, paxos.ReplicaID(i))
	}
	for _, g := range s.groupIDs() {
		p := s.reps[g][int(n.id)-1]
		p.node = n
		if err := s.startReplica(p, voters, learners); err != nil {
			s.violation("%v", err)
		}
	}
}

func (s *paxosSim) groupIDs() []uint64 {
	var gs []uint64
	for g := range s.reps {
		gs = append(gs, g)
	}
	slices.Sort(gs)
	return gs
}

func (s *paxosSim) healAll() {
	s.tracef("heal everything")
	s.net.Heal()
	s.net.SetFaults(0, 0, 0)
	for _, n := range s.nodes {
		n.clock.SetBias(0)
		n.clock.SetLost(false)
		if !n.up {
			s.restartNode(n)
		}
	}
}

// ----------------------------------------------------------------------
// Checks

func (s *paxosSim) check() {
	for _, g := range s.groupIDs() {
		s.checkGroupLogs(g)
		if t, ok := s.probes[g]; !ok || t.Sub(s.healAt) > 5*s.opts.Lease {
			s.violation("group %d: no commit within 5 lease periods (%s) after faults healed", g, 5*s.opts.Lease)
		}
	}
	s.checkLeases()
	keys := make([]string, 0, len(s.hist))
	for k := range s.hist {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := checkRegister(s.hist[k]); err != nil {
			s.violation("key %s: %v", k, err)
		}
	}
}

// checkGroupLogs: applied logs are prefixes of each other (so no slot has
// two chosen values), and applied timestamps strictly increase and lie
// inside their proposer's lease.
func (s *paxosSim) checkGroupLogs(g uint64) {
	byIndex := map[uint64]paxos.Applied{}
	for _, p := range s.reps[g] {
		for _, a := range p.applied {
			if a.Skipped && a.Type == paxos.EntryNoop && a.Data == nil && a.TS == 0 {
				continue // snapshot marker
			}
			prev, ok := byIndex[a.Index]
			if !ok {
				byIndex[a.Index] = a
				continue
			}
			if prev.TS != a.TS || !bytes.Equal(prev.Data, a.Data) || prev.Type != a.Type || prev.Skipped != a.Skipped {
				s.violation("group %d slot %d: replicas applied different values (%v vs %v)", g, a.Index, prev.Entry, a.Entry)
			}
		}
	}
	idx := make([]uint64, 0, len(byIndex))
	for i := range byIndex {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var last tt.Timestamp
	for _, i := range idx {
		a := byIndex[i]
		if a.Type == paxos.EntryNoop || a.Skipped {
			continue
		}
		if a.TS <= last {
			s.violation("group %d slot %d: timestamp %d not above the previous applied %d", g, i, a.TS, last)
		}
		last = a.TS
		if rec := s.leases[leaseKey{g, a.Proposer}]; rec != nil {
			if a.TS >= rec.end || a.TS < rec.start {
				s.violation("group %d slot %d: timestamp %d outside its leader %s's lease [%d, %d)", g, i, a.TS, a.Proposer, rec.start, rec.end)
			}
		}
	}
}

// checkLeases: two leaders' lease intervals never overlap in true time.
func (s *paxosSim) checkLeases() {
	var recs []*leaseRecord
	for _, r := range s.leases {
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].group != recs[j].group {
			return recs[i].group < recs[j].group
		}
		return recs[i].start < recs[j].start
	})
	var held *leaseRecord // the record with the latest end so far in the group
	for _, b := range recs {
		if held != nil && held.group == b.group && b.start <= held.end {
			s.violation("group %d: leases overlap: %s held until %d, %s acquired at %d (%s early)",
				b.group, held.b, held.end, b.b, b.start, held.end.Sub(b.start))
		}
		if held == nil || held.group != b.group || b.end > held.end {
			held = b
		}
	}
}
