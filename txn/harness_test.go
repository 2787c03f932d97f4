package txn

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/tt"
)

// An in-memory cluster of transaction groups for protocol tests, in the
// manner of paxos's tnet: every group is three replicas, each a txn.Group
// over a paxos.Replica, driven through the Ready contract in one goroutine
// and in virtual time.
//
//   - c.now is true time; replica r reads [now+offset-ε, now+offset+ε]
//     (|offset| < ε, so the interval holds true time).
//   - Paxos messages and txn Msgs are delivered with zero latency by
//     stabilize, unless a filter drops them; txn Msgs go to the replica that
//     currently leads the destination group (none: dropped, the sender
//     retries, as with a runtime that has no leader to route to).
//   - What a runtime persists is kept per replica (hard state, log, apply
//     state, meta records, MVCC versions), so a replica can crash and
//     restart from it through paxos.New and NewGroup.
//   - ReadTasks run against the replica's MVCC map; Responses and read
//     results are collected per request ID.
//
// The harness checks, at every Ready, what must hold whatever the test
// does: commit wait for every acknowledged commit and every applied
// commit-wait entry, writes only below true time, t_safe ≤ ClosedTS and
// below every prepare timestamp, snapshot reads only at or below t_safe, at
// most one answer per request. Violations are collected in c.failed and
// fail the test in Cleanup (a negative control reads them instead).

// hStart is virtual true time at the start of every run.
const hStart = tt.Timestamp(1_700_000_000_000_000_000)

type hOpts struct {
	groups int           // default 1
	cfg    Config        // the txn layer's config for every group
	lease  time.Duration // default 2 s
	eps    time.Duration // default 1 ms
	step   time.Duration // advance's tick granularity, default 1 ms
	// offsets of replicas 1..3's clocks (each below eps); default
	// 0, +eps/4, -eps/4.
	offsets []time.Duration
	// noElect: do not make replica 1 of every group its leader at start.
	noElect bool
}

type version struct {
	ts    tt.Timestamp
	value []byte
	del   bool
}

type kvPair struct {
	key, value string
	ts         tt.Timestamp
}

type hReplica struct {
	c      *hCluster
	gid    uint64
	id     paxos.ReplicaID
	g      *Group
	pcfg   paxos.Config
	down   bool
	offset time.Duration
	// unhealthy: its clock gives no interval (paxos.Unhealthy).
	unhealthy bool

	// What the runtime persisted.
	hs    paxos.HardState
	log   map[uint64]paxos.Entry
	apply paxos.ApplyState
	meta  map[string][]byte
	data  map[string][]version // key → versions, ascending timestamps

	// served counts ReadTasks performed here (tests of local reads).
	served int
}

func (r *hReplica) String() string { return fmt.Sprintf("g%d/r%d", r.gid, r.id) }

type hGroup struct {
	id   uint64
	reps []*hReplica
}

// answer is what came back for one request.
type answer struct {
	id   uint64
	rep  *hReplica
	at   tt.Timestamp // true time when it left
	iv   tt.Interval  // the answering replica's clock then
	err  error
	resp Response
	read bool // a ReadTask was performed (no Response)
	// ballot is the answering replica's promised ballot then: a client
	// that sees it change between reads at a group knows its locks there
	// may be gone.
	ballot paxos.Ballot
	task   ReadTask
	kvs    []kvPair
}

type epochKey struct {
	id    TxnID
	group uint64
}

type reqInfo struct {
	req Request
	rep *hReplica
	at  tt.Timestamp
	iv  tt.Interval
}

type sentMsg struct {
	from *hReplica
	m    Msg
	at   tt.Timestamp
}

type prepObs struct {
	rep *hReplica
	rec record
}

type hCluster struct {
	t      testing.TB
	opts   hOpts
	now    tt.Timestamp
	eps    time.Duration
	groups []*hGroup

	pq []paxos.Message
	tq []sentMsg

	// Filters: return true to drop.
	dropPaxos func(m paxos.Message) bool
	dropTxn   func(from *hReplica, m Msg) bool

	nextID   uint64
	reqs     map[uint64]reqInfo
	answers  map[uint64]answer
	epochs   map[epochKey]uint64 // lock epoch of each transaction's first read per group
	arrivals []uint64            // request IDs in the order their answers arrived
	sent     []sentMsg           // every txn Msg sent, in order
	prepares map[TxnID][]prepObs
	trace    strings.Builder

	failed []string
}

func newCluster(t testing.TB, o hOpts) *hCluster {
	if o.groups == 0 {
		o.groups = 1
	}
	if o.lease == 0 {
		o.lease = 2 * time.Second
	}
	if o.eps == 0 {
		o.eps = time.Millisecond
	}
	if o.step == 0 {
		o.step = time.Millisecond
	}
	if o.offsets == nil {
		o.offsets = []time.Duration{0, o.eps / 4, -o.eps / 4}
	}
	c := &hCluster{t: t, opts: o, now: hStart, eps: o.eps, reqs: map[uint64]reqInfo{},
		answers: map[uint64]answer{}, prepares: map[TxnID][]prepObs{}, epochs: map[epochKey]uint64{}}
	for gid := uint64(1); gid <= uint64(o.groups); gid++ {
		hg := &hGroup{id: gid}
		voters := []paxos.ReplicaID{1, 2, 3}
		for _, id := range voters {
			r := &hReplica{c: c, gid: gid, id: id, offset: o.offsets[id-1], log: map[uint64]paxos.Entry{},
				meta: map[string][]byte{}, data: map[string][]version{}}
			r.pcfg = paxos.Config{Group: gid, ID: id, Voters: voters, LeaseDuration: o.lease,
				HeartbeatInterval: o.lease / 8, ElectionTimeout: o.lease / 4, RetryInterval: 100 * time.Millisecond}
			r.start()
			hg.reps = append(hg.reps, r)
		}
		c.groups = append(c.groups, hg)
	}
	t.Cleanup(func() {
		if len(c.failed) > 0 || t.Failed() {
			lines := strings.Split(strings.TrimRight(c.trace.String(), "\n"), "\n")
			t.Logf("last %d trace lines:\n%s", min(len(lines), 60), strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
		if len(c.failed) > 0 {
			t.Errorf("harness invariant violations:\n%s", strings.Join(c.failed, "\n"))
		}
	})
	if !o.noElect {
		for _, g := range c.groups {
			c.elect(g.id, 1)
		}
	}
	return c
}

// start builds the replica from its persisted state (a fresh one at first).
func (r *hReplica) start() {
	c := r.c
	cfg := r.pcfg
	cfg.Rand = rand.New(rand.NewPCG(r.gid*10+uint64(r.id), uint64(c.now)))
	cfg.HardState = r.hs
	cfg.Applied = r.apply
	cfg.FirstIndex = 1 // the harness never truncates its logs
	for _, i := range sortedKeys(r.log) {
		cfg.Entries = append(cfg.Entries, r.log[i])
	}
	p, err := paxos.New(cfg)
	if err != nil {
		c.t.Fatalf("%s: paxos.New: %v", r, err)
	}
	var recs [][2][]byte
	for _, name := range sortedKeys(r.meta) {
		recs = append(recs, [2][]byte{[]byte(name), r.meta[name]})
	}
	g, err := NewGroup(r.gid, p, c.opts.cfg, recs)
	if err != nil {
		c.t.Fatalf("%s: NewGroup: %v", r, err)
	}
	r.g = g
	r.down = false
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}

func (c *hCluster) failf(format string, args ...any) {
	c.t.Helper()
	c.failed = append(c.failed, fmt.Sprintf("at %s: ", c.rel(c.now))+fmt.Sprintf(format, args...))
}

// rel formats a timestamp relative to the start of the run.
func (c *hCluster) rel(ts tt.Timestamp) string {
	switch ts {
	case 0:
		return "0"
	case tt.MaxTimestamp:
		return "max"
	}
	d := ts.Sub(hStart)
	if d < 0 {
		return "-" + (-d).String()
	}
	return "+" + d.String()
}

func (c *hCluster) tracef(format string, args ...any) {
	fmt.Fprintf(&c.trace, "%s ", c.rel(c.now))
	fmt.Fprintf(&c.trace, format, args...)
	c.trace.WriteByte('\n')
}

func (c *hCluster) group(gid uint64) *hGroup { return c.groups[gid-1] }

func (c *hCluster) rep(gid uint64, id paxos.ReplicaID) *hReplica { return c.group(gid).reps[id-1] }

func (c *hCluster) iv(r *hReplica) tt.Interval {
	if r.unhealthy {
		return paxos.Unhealthy
	}
	t := c.now.Add(r.offset)
	return tt.Interval{Earliest: t.Add(-c.eps), Latest: t.Add(c.eps)}
}

// ----------------------------------------------------------------------
// The Ready contract

// process handles r's Readies until it has none, in the contract's order.
func (c *hCluster) process(r *hReplica) bool {
	moved := false
	for !r.down && r.g.HasReady() {
		moved = true
		rd := r.g.Ready()
		iv := c.iv(r)
		// Persist (synced) before sending.
		if rd.HardState != nil {
			r.hs = *rd.HardState
		}
		for _, e := range rd.Entries {
			r.log[e.Index] = e
		}
		for _, m := range rd.Messages {
			if c.dropPaxos == nil || !c.dropPaxos(m) {
				c.pq = append(c.pq, m)
			}
		}
		// One batch: writes, meta, apply state.
		// Commit wait (invariant 6): a leader applies a commit-wait entry
		// once its own clock says TT.after(ts); a follower once the leader
		// released it, whatever its own clock says; anywhere only after
		// true time passed ts.
		leading := r.g.Replica().IsLeader()
		for _, a := range rd.Committed {
			if !a.CommitWait || a.Skipped || c.opts.cfg.Bugs.NoCommitWait {
				continue
			}
			if leading && !iv.After(a.TS) || a.TS >= c.now {
				c.failf("%s applied commit-wait entry %d (ts %s) before TT.after(ts): earliest %s, true time %s", r, a.Index, c.rel(a.TS), c.rel(iv.Earliest), c.rel(c.now))
			}
		}
		for _, w := range rd.Writes {
			if w.TS >= c.now && !c.opts.cfg.Bugs.NoCommitWait {
				c.failf("%s applied a write of %q at %s, not below true time", r, w.Key, c.rel(w.TS))
			}
			r.put(w)
		}
		for _, m := range rd.Meta {
			if m.Delete {
				delete(r.meta, string(m.Name))
				continue
			}
			r.meta[string(m.Name)] = slices.Clone(m.Value)
			if bytes.HasPrefix(m.Name, []byte("txn/prep/")) {
				rec, err := unmarshalRecord(m.Value)
				if err != nil {
					c.failf("%s: undecodable prepare record: %v", r, err)
				} else {
					c.prepares[rec.txn.ID] = append(c.prepares[rec.txn.ID], prepObs{rep: r, rec: rec})
				}
			}
		}
		if len(rd.Committed) > 0 {
			r.apply = rd.ApplyState
		}
		for _, m := range rd.Msgs {
			c.sent = append(c.sent, sentMsg{from: r, m: m, at: c.now})
			c.tracef("%s sends %s to group %d txn %x ok=%v pending=%v ts=%s", r, m.Type, m.To, m.Txn.ID.Lo, m.OK, m.Pending, c.rel(m.TS))
			if c.dropTxn == nil || !c.dropTxn(r, m) {
				c.tq = append(c.tq, sentMsg{from: r, m: m, at: c.now})
			}
		}
		safe := r.g.SafeTime()
		for _, task := range rd.Reads {
			if task.TS != tt.MaxTimestamp && task.TS > safe {
				c.failf("%s served a read at %s above its safe time %s", r, c.rel(task.TS), c.rel(safe))
			}
			r.served++
			c.record(answer{id: task.ID, rep: r, at: c.now, iv: iv, read: true, task: task, kvs: r.read(task)})
		}
		for _, resp := range rd.Responses {
			c.record(answer{id: resp.ID, rep: r, at: c.now, iv: iv, err: resp.Err, resp: resp})
		}
		if len(rd.Snapshots) > 0 {
			c.failf("%s asked for snapshots, but the harness never truncates logs", r)
		}
		r.g.Advance(rd)
		c.checkReplica(r)
	}
	return moved
}

func (c *hCluster) record(a answer) {
	info, ok := c.reqs[a.id]
	if !ok {
		c.failf("%s answered unknown request %d", a.rep, a.id)
		return
	}
	a.ballot = a.rep.g.Replica().Status().Promised
	if prev, dup := c.answers[a.id]; dup {
		c.failf("request %d answered twice: by %s (%v) and by %s (%v)", a.id, prev.rep, prev.err, a.rep, a.err)
		return
	}
	if info.req.Kind == ReqCommit && a.err == nil && !c.opts.cfg.Bugs.NoCommitWait && !a.iv.After(a.resp.TS) {
		c.failf("%s acknowledged commit %d at %s before TT.after: its clock reads %v", a.rep, a.id, c.rel(a.resp.TS), a.iv)
	}
	c.answers[a.id] = a
	c.arrivals = append(c.arrivals, a.id)
	if a.read && info.req.Kind == ReqRead && a.task.Epoch != 0 {
		k := epochKey{info.req.Txn.ID, a.rep.g.ID()}
		if _, seen := c.epochs[k]; !seen {
			c.epochs[k] = a.task.Epoch
		}
	}
	switch {
	case a.read:
		c.tracef("%s read %d at %s: %v", a.rep, a.id, c.rel(a.task.TS), a.kvs)
	default:
		c.tracef("%s answers %d: ts=%s err=%v", a.rep, a.id, c.rel(a.resp.TS), a.err)
	}
}

// checkReplica checks the safe-time invariants (architecture invariant 8).
func (c *hCluster) checkReplica(r *hReplica) {
	safe := r.g.SafeTime()
	if closed := r.g.Replica().ClosedTS(); safe > closed {
		c.failf("%s: safe time %s above its closed timestamp %s", r, c.rel(safe), c.rel(closed))
	}
	for id, p := range r.g.prepared {
		if safe >= p.rec.ts {
			c.failf("%s: safe time %s not below the prepare timestamp %s of %s", r, c.rel(safe), c.rel(p.rec.ts), id)
		}
	}
}

func (r *hReplica) put(w Write) {
	vs := r.data[string(w.Key)]
	i := sort.Search(len(vs), func(i int) bool { return vs[i].ts >= w.TS })
	if i < len(vs) && vs[i].ts == w.TS {
		if !bytes.Equal(vs[i].value, w.Value) || vs[i].del != w.Delete {
			r.c.failf("%s: two different versions of %q at %s", r, w.Key, r.c.rel(w.TS))
		}
		return
	}
	vs = slices.Insert(vs, i, version{ts: w.TS, value: slices.Clone(w.Value), del: w.Delete})
	r.data[string(w.Key)] = vs
}

// get returns the version of key visible at ts.
func (r *hReplica) get(key string, ts tt.Timestamp) (version, bool) {
	vs := r.data[key]
	i := sort.Search(len(vs), func(i int) bool { return vs[i].ts > ts })
	if i == 0 || vs[i-1].del {
		return version{}, false
	}
	return vs[i-1], true
}

// read performs a ReadTask against the MVCC map.
func (r *hReplica) read(t ReadTask) []kvPair {
	if t.Key != nil {
		if v, ok := r.get(string(t.Key), t.TS); ok {
			return []kvPair{{key: string(t.Key), value: string(v.value), ts: v.ts}}
		}
		return nil
	}
	keys := sortedKeys(r.data)
	if t.Reverse {
		slices.Reverse(keys)
	}
	var out []kvPair
	for _, k := range keys {
		if k < string(t.Start) || len(t.End) > 0 && k >= string(t.End) {
			continue
		}
		if v, ok := r.get(k, t.TS); ok {
			out = append(out, kvPair{key: k, value: string(v.value), ts: v.ts})
			if t.Limit > 0 && len(out) >= t.Limit {
				break
			}
		}
	}
	return out
}

// ----------------------------------------------------------------------
// Delivery and time

func (c *hCluster) stabilize() {
	for i := 0; i < 10000; i++ {
		moved := false
		for _, g := range c.groups {
			for _, r := range g.reps {
				if c.process(r) {
					moved = true
				}
			}
		}
		if len(c.pq) > 0 {
			q := c.pq
			c.pq = nil
			for _, m := range q {
				r := c.rep(m.Group, m.To)
				if r.down {
					continue
				}
				r.g.Step(c.iv(r), m)
			}
			moved = true
		}
		if len(c.tq) > 0 {
			q := c.tq
			c.tq = nil
			for _, sm := range q {
				r := c.leaderOf(sm.m.To)
				if r == nil {
					c.tracef("no leader in group %d for %s: dropped", sm.m.To, sm.m.Type)
					continue
				}
				r.g.Receive(c.iv(r), sm.m)
			}
			moved = true
		}
		if !moved {
			return
		}
	}
	c.t.Fatal("harness: no quiescence")
}

// leaderOf returns the live replica of gid that believes it leads (the one
// with the highest ballot if several do), or nil.
func (c *hCluster) leaderOf(gid uint64) *hReplica {
	var l *hReplica
	for _, r := range c.group(gid).reps {
		if r.down || !r.g.Replica().IsLeader() {
			continue
		}
		if l == nil || l.g.Replica().Status().Promised.Less(r.g.Replica().Status().Promised) {
			l = r
		}
	}
	return l
}

// leader returns gid's replica that leads, holds its lease and has applied
// its barrier (it serves requests), or nil.
func (c *hCluster) leader(gid uint64) *hReplica {
	l := c.leaderOf(gid)
	if l == nil || !l.g.Replica().Leaseholder(c.iv(l)) {
		return nil
	}
	return l
}

// advance moves true time forward by d in steps, ticking every live
// replica and delivering everything after each step.
func (c *hCluster) advance(d time.Duration) {
	for d > 0 {
		s := min(c.opts.step, d)
		c.now = c.now.Add(s)
		d -= s
		for _, g := range c.groups {
			for _, r := range g.reps {
				if !r.down {
					r.g.Tick(c.iv(r))
				}
			}
		}
		c.stabilize()
	}
}

// advanceUntil advances in steps until cond holds or limit passes; it
// reports whether cond held.
func (c *hCluster) advanceUntil(limit time.Duration, cond func() bool) bool {
	end := c.now.Add(limit)
	for !cond() {
		if c.now >= end {
			return false
		}
		c.advance(c.opts.step)
	}
	return true
}

// elect makes replica id of gid campaign and waits until it serves.
func (c *hCluster) elect(gid uint64, id paxos.ReplicaID) *hReplica {
	c.t.Helper()
	r := c.rep(gid, id)
	r.g.Replica().Campaign(c.iv(r))
	c.stabilize()
	if !c.advanceUntil(10*time.Second, func() bool { return c.leader(gid) == r }) {
		c.t.Fatalf("%s did not become a serving leader", r)
	}
	return r
}

// waitLeader advances until gid has a serving leader.
func (c *hCluster) waitLeader(gid uint64) *hReplica {
	c.t.Helper()
	if !c.advanceUntil(20*time.Second, func() bool { return c.leader(gid) != nil }) {
		c.t.Fatalf("group %d elected no serving leader", gid)
	}
	return c.leader(gid)
}

// crash stops a replica: it loses everything but its persisted state.
func (c *hCluster) crash(r *hReplica) {
	c.tracef("crash %s", r)
	r.down = true
}

// restart rebuilds a crashed replica from its persisted state.
func (c *hCluster) restart(r *hReplica) {
	c.tracef("restart %s", r)
	r.start()
	c.stabilize()
}

// ----------------------------------------------------------------------
// Requests

// send hands req to replica rep (nil: the serving leader of gid) and
// delivers everything that follows. It returns the request's ID.
func (c *hCluster) send(gid uint64, rep *hReplica, req Request) uint64 {
	c.t.Helper()
	return c.sendTogether(gid, rep, req)[0]
}

// sendTogether hands every request to the replica before the group's next
// Ready, as a runtime draining its queue does.
func (c *hCluster) sendTogether(gid uint64, rep *hReplica, reqs ...Request) []uint64 {
	c.t.Helper()
	if rep == nil {
		rep = c.leader(gid)
		if rep == nil {
			c.t.Fatalf("group %d has no serving leader", gid)
		}
	}
	var ids []uint64
	for _, req := range reqs {
		c.nextID++
		req.ID = c.nextID
		// Like a client: carry the lock epoch earlier reads were answered
		// under, on later reads and on commit.
		if req.Kind == ReqRead && req.Epoch == 0 {
			req.Epoch = c.epochs[epochKey{req.Txn.ID, gid}]
		}
		if req.Kind == ReqCommit {
			req.Participants = append([]Participant(nil), req.Participants...)
			for i := range req.Participants {
				p := &req.Participants[i]
				if p.Read && p.Epoch == 0 {
					p.Epoch = c.epochs[epochKey{req.Txn.ID, p.Group}]
				}
			}
		}
		iv := c.iv(rep)
		c.reqs[req.ID] = reqInfo{req: req, rep: rep, at: c.now, iv: iv}
		c.tracef("request %d kind %d to %s txn %x", req.ID, req.Kind, rep, req.Txn.ID.Lo)
		rep.g.Handle(iv, req)
		ids = append(ids, req.ID)
	}
	c.stabilize()
	return ids
}

func (c *hCluster) answer(id uint64) (answer, bool) {
	a, ok := c.answers[id]
	return a, ok
}

// must returns the answer to id, failing the test if there is none.
func (c *hCluster) must(id uint64) answer {
	c.t.Helper()
	a, ok := c.answers[id]
	if !ok {
		c.t.Fatalf("request %d (%+v) has no answer", id, c.reqs[id].req.Kind)
	}
	return a
}

// ok returns the answer to id, failing the test on an error.
func (c *hCluster) ok(id uint64) answer {
	c.t.Helper()
	a := c.must(id)
	if a.err != nil {
		c.t.Fatalf("request %d failed: %v", id, a.err)
	}
	return a
}

func (c *hCluster) pending(id uint64) bool {
	_, ok := c.answers[id]
	return !ok
}

// wait advances until id is answered (or limit passes) and returns it.
func (c *hCluster) wait(id uint64, limit time.Duration) answer {
	c.t.Helper()
	if !c.advanceUntil(limit, func() bool { return !c.pending(id) }) {
		c.t.Fatalf("request %d not answered within %s", id, limit)
	}
	return c.answers[id]
}

// sentOf returns the txn Msgs of type typ sent since index from.
func (c *hCluster) sentOf(from int, typ MsgType) []sentMsg {
	var out []sentMsg
	for _, s := range c.sent[from:] {
		if s.m.Type == typ {
			out = append(out, s)
		}
	}
	return out
}

// ----------------------------------------------------------------------
// Request builders

var txnSeq uint64

// newMeta returns a transaction with priority hStart+prio ms (smaller is
// older).
func newMeta(prio int) Meta {
	txnSeq++
	return Meta{ID: TxnID{Hi: 0x7465737400000000, Lo: txnSeq}, Priority: hStart.Add(time.Duration(prio) * time.Millisecond)}
}

func readReq(m Meta, key string) Request {
	return Request{Kind: ReqRead, Txn: m, Key: []byte(key)}
}

func scanReq(m Meta, start, end string) Request {
	r := Request{Kind: ReqRead, Txn: m, Start: []byte(start)}
	if end != "" {
		r.End = []byte(end)
	}
	return r
}

// muts parses "k=v" pairs ("k=" deletes).
func muts(kvs ...string) []Mutation {
	var out []Mutation
	for _, s := range kvs {
		k, v, _ := strings.Cut(s, "=")
		if v == "" {
			out = append(out, Mutation{Key: []byte(k), Delete: true})
			continue
		}
		out = append(out, Mutation{Key: []byte(k), Value: []byte(v)})
	}
	return out
}

func commitReq(m Meta, parts ...Participant) Request {
	return Request{Kind: ReqCommit, Txn: m, Participants: parts}
}

func part(g uint64, read bool, kvs ...string) Participant {
	return Participant{Group: g, Read: read, Writes: muts(kvs...)}
}

// value returns the value of key visible at ts on r ("" if none).
func (r *hReplica) value(key string, ts tt.Timestamp) string {
	v, ok := r.get(key, ts)
	if !ok {
		return ""
	}
	return string(v.value)
}

// versionsOf returns the timestamps at which key has versions on r.
func (r *hReplica) versionsOf(key string) []tt.Timestamp {
	var out []tt.Timestamp
	for _, v := range r.data[key] {
		out = append(out, v.ts)
	}
	return out
}

// ----------------------------------------------------------------------
// Harness self-tests

// TestHarnessDeterministic runs the same two-phase commit with a
// coordinator failover twice and compares the traces.
func TestHarnessDeterministic(t *testing.T) {
	run := func() string {
		txnSeq = 0
		c := newCluster(t, hOpts{groups: 2, cfg: Config{QueryAfter: 500 * time.Millisecond, RetryInterval: 100 * time.Millisecond}})
		m := newMeta(1)
		c.ok(c.send(2, nil, readReq(m, "b/x")))
		c.dropTxn = func(_ *hReplica, m Msg) bool { return m.Type == MsgDecide }
		id := c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, true, "b/x=2")))
		c.wait(id, time.Second)
		c.advance(300 * time.Millisecond) // the followers apply the commit record
		c.crash(c.leader(1))
		c.dropTxn = nil
		c.waitLeader(1)
		c.advanceUntil(5*time.Second, func() bool { return c.rep(2, 1).g.Prepared() == 0 })
		c.advance(200 * time.Millisecond)
		return c.trace.String()
	}
	a, b := run(), run()
	if a != b {
		t.Fatalf("two runs differ:\n%s\n----\n%s", a, b)
	}
	if !strings.Contains(a, "sends Query") || !strings.Contains(a, "sends Outcome") {
		t.Fatalf("the scenario did not exercise the outcome query:\n%s", a)
	}
}

// TestHarnessDetectsMissingCommitWait is the negative control: with
// Bugs.NoCommitWait the harness's commit-wait and true-time checks fire.
func TestHarnessDetectsMissingCommitWait(t *testing.T) {
	c := newCluster(&quietTB{TB: t}, hOpts{cfg: Config{Bugs: Bugs{NoCommitWait: true}}})
	c.opts.cfg.Bugs.NoCommitWait = false // the checks look for the real rule
	id := c.send(1, nil, commitReq(newMeta(1), part(1, false, "a/k=v")))
	a := c.ok(id)
	if a.iv.After(a.resp.TS) {
		t.Fatalf("the commit waited although commit wait is off")
	}
	if len(c.failed) == 0 {
		t.Fatal("the harness did not notice a commit acknowledged before TT.after(s)")
	}
	c.failed = nil
}

// quietTB swallows Cleanup so a negative control can inspect c.failed.
type quietTB struct{ testing.TB }

func (q *quietTB) Cleanup(func()) {}
