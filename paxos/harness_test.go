package paxos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridiandb/meridian/tt"
)

// tnode is a replica with in-memory "persisted" state, for protocol tests.
type tnode struct {
	id      ReplicaID
	r       *Replica
	hs      HardState
	log     map[uint64]Entry
	first   uint64
	apply   ApplyState
	applied []Applied // the state machine: every entry delivered, in order
	down    bool
	offset  time.Duration // clock offset within ε
	cfg     Config

	unhealthy bool   // the clock reports unhealthy: inputs get Unhealthy
	holding   bool   // last Lease reported Holding
	role      string // last role seen (for role traces)
}

// tnet delivers messages between tnodes in virtual time. n.now is true
// time; every replica reads it through its own clock: [now+offset-ε,
// now+offset+ε], which contains true time because |offset| <= ε.
type tnet struct {
	t      testing.TB
	nodes  map[ReplicaID]*tnode
	ids    []ReplicaID
	queue  []Message
	now    tt.Timestamp
	start  tt.Timestamp
	eps    time.Duration
	rng    *rand.Rand
	drop   func(m Message) bool
	leases []leaseRec
	// released is the highest index a leader has released for
	// application (the Chosen of an Accept it sent): a follower applies a
	// commit-wait entry only at or below it (doc.go invariant 6).
	released uint64

	// part maps a replica to its partition side; replicas on different
	// sides exchange no messages. Empty: fully connected.
	part map[ReplicaID]int
	// Network faults for stabilize (driven by rng): each delivered message
	// is duplicated with probability dup, held back for up to maxDelay of
	// virtual time with probability delay, and every delivery round is
	// shuffled when reorder is set.
	dup      float64
	delay    float64
	maxDelay time.Duration
	reorder  bool
	delayed  []delayedMsg

	// autoSnapshot installs requested snapshots at once (the runtime's job);
	// otherwise requests wait in snapReqs for the test.
	autoSnapshot bool
	snapReqs     []snapReq

	// events, when set, receives a line for every lease change, snapshot
	// request and (with traceRoles) role change.
	events     func(string)
	traceRoles bool
	// trace, when set, records every message sent and entry applied, for
	// determinism checks.
	trace *strings.Builder

	// crashBeforePersist, when set and true for a Ready, plays the runtime's
	// early send (SendBeforePersist) and then a crash before the persist:
	// the early messages leave, nothing of the Ready is persisted.
	crashBeforePersist func(nd *tnode) bool

	// afterStep, when set, runs after every step of advance (debugging).
	afterStep func()

	// failed is the first safety violation seen inside the harness
	// (commit wait, closed timestamps, apply order); reported by safetyErr.
	failed error
}

type delayedMsg struct {
	at tt.Timestamp
	m  Message
}

type snapReq struct{ from, to ReplicaID }

// leaseRec is one leader's lease in true time: [start, end], where end is
// the lease's nominal end, or the moment it abdicated.
type leaseRec struct {
	id    ReplicaID
	b     Ballot
	start tt.Timestamp // true time when first held
	end   tt.Timestamp
	// abdicated: the leader abdicated at end, ahead of its nominal end.
	abdicated bool
}

func newTnet(t testing.TB, voters, learners int, mod func(*Config)) *tnet {
	start := tt.Timestamp(1_000_000_000_000)
	n := &tnet{t: t, nodes: map[ReplicaID]*tnode{}, now: start, start: start, eps: time.Millisecond,
		rng: rand.New(rand.NewPCG(1, 2)), part: map[ReplicaID]int{}, maxDelay: 300 * time.Millisecond}
	var vs, ls []ReplicaID
	for i := 1; i <= voters; i++ {
		vs = append(vs, ReplicaID(i))
	}
	for i := voters + 1; i <= voters+learners; i++ {
		ls = append(ls, ReplicaID(i))
	}
	for _, id := range append(slices.Clone(vs), ls...) {
		cfg := Config{Group: 7, ID: id, Voters: vs, Learners: ls, LeaseDuration: 2 * time.Second,
			Rand: rand.New(rand.NewPCG(uint64(id), 99))}
		if mod != nil {
			mod(&cfg)
		}
		nd := &tnode{id: id, log: map[uint64]Entry{}, cfg: cfg}
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nd.r = r
		nd.role = r.Status().Role
		n.nodes[id] = nd
		n.ids = append(n.ids, id)
	}
	return n
}

func (n *tnet) interval(nd *tnode) tt.Interval {
	if nd.unhealthy {
		return Unhealthy
	}
	c := n.now.Add(nd.offset)
	return tt.Interval{Earliest: c.Add(-n.eps), Latest: c.Add(n.eps)}
}

// rel formats a timestamp relative to the start of the run.
func (n *tnet) rel(ts tt.Timestamp) string {
	if ts == 0 {
		return "none"
	}
	d := ts.Sub(n.start)
	if d < 0 {
		return "-" + (-d).String()
	}
	return "+" + d.String()
}

func (n *tnet) eventf(format string, args ...any) {
	if n.events != nil {
		n.events(fmt.Sprintf("%s: ", n.rel(n.now)) + fmt.Sprintf(format, args...))
	}
}

func (n *tnet) failf(format string, args ...any) {
	if n.failed == nil {
		n.failed = fmt.Errorf("at %s: %s", n.rel(n.now), fmt.Sprintf(format, args...))
	}
}

func (n *tnet) noteRole(nd *tnode) {
	role := nd.r.Status().Role
	if role != nd.role {
		if n.traceRoles {
			n.eventf("%d %s -> %s", nd.id, nd.role, role)
		}
		nd.role = role
	}
}

func (n *tnet) handleReady(nd *tnode) bool {
	if nd.down || !nd.r.HasReady() {
		return false
	}
	// The closed timestamp before this Ready: every entry applied from
	// here on must carry a timestamp above it (doc.go invariant 5).
	closedBefore := max(nd.apply.ClosedTS, nd.r.Status().Applied.ClosedTS)
	rd := nd.r.Ready()
	leading := nd.r.IsLeader()
	for _, m := range rd.Messages {
		if m.Type == MsgAccept && !m.Reject {
			n.released = max(n.released, m.Chosen)
		}
	}
	if n.crashBeforePersist != nil && n.crashBeforePersist(nd) {
		for _, m := range rd.Messages {
			if SendBeforePersist(m) && (n.drop == nil || !n.drop(m)) {
				n.queue = append(n.queue, m)
			}
		}
		if n.trace != nil {
			fmt.Fprintf(n.trace, "%d crash %d before persisting\n", int64(n.now), nd.id)
		}
		nd.down = true
		return true
	}
	if rd.HardState != nil {
		nd.hs = *rd.HardState
	}
	for _, e := range rd.Entries {
		if e.Index >= nd.first {
			nd.log[e.Index] = e
		}
	}
	for _, m := range rd.Messages {
		if n.trace != nil {
			fmt.Fprintf(n.trace, "%d send %s\n", int64(n.now), m)
		}
		if n.drop == nil || !n.drop(m) {
			n.queue = append(n.queue, m)
		}
	}
	for _, a := range rd.Committed {
		if a.Index != nd.apply.Index+1 && nd.apply.Index != 0 {
			n.t.Fatalf("replica %d applied %d after %d", nd.id, a.Index, nd.apply.Index)
		}
		// Commit wait: applied nowhere before true time passed ts; at a
		// leader, only once its own clock said TT.after(ts); at a follower
		// only once a leader released it, whatever the follower's clock.
		if a.CommitWait && (a.TS >= n.now || leading && !nd.r.now.After(a.TS)) {
			n.failf("replica %d applied commit-wait entry %d (ts %s) before TT.after(ts): true time %s",
				nd.id, a.Index, n.rel(a.TS), n.rel(n.now))
		}
		if a.CommitWait && !leading && a.Index > n.released {
			n.failf("replica %d applied commit-wait entry %d (ts %s) before a leader released it (released through %d)",
				nd.id, a.Index, n.rel(a.TS), n.released)
		}
		if !a.Skipped && a.Type != EntryNoop && a.TS <= closedBefore {
			n.failf("replica %d applied entry %d at ts %s at or below its closed timestamp %s",
				nd.id, a.Index, n.rel(a.TS), n.rel(closedBefore))
		}
		if n.trace != nil {
			fmt.Fprintf(n.trace, "%d apply %d %s skipped=%v\n", int64(n.now), nd.id, a.Entry, a.Skipped)
		}
		nd.applied = append(nd.applied, a)
		nd.apply.Index = a.Index
	}
	if len(rd.Committed) > 0 {
		if rd.ApplyState.ClosedTS < closedBefore {
			n.failf("replica %d closed timestamp went back from %s to %s", nd.id, n.rel(closedBefore), n.rel(rd.ApplyState.ClosedTS))
		}
		nd.apply = rd.ApplyState
	}
	if rd.Lease != nil {
		n.recordLease(nd, *rd.Lease)
	}
	for _, s := range rd.Snapshots {
		n.eventf("%d asks for a snapshot to be sent to %d (applied %d, log from %d)", nd.id, s.To, nd.apply.Index, nd.r.FirstIndex())
		n.snapReqs = append(n.snapReqs, snapReq{from: nd.id, to: s.To})
	}
	nd.r.Advance(rd)
	n.noteRole(nd)
	if n.autoSnapshot && len(n.snapReqs) > 0 {
		reqs := n.snapReqs
		n.snapReqs = nil
		for _, s := range reqs {
			n.installSnapshot(s.from, s.to)
		}
	}
	return true
}

func (n *tnet) recordLease(nd *tnode, l Lease) {
	if l.Holding && !nd.holding {
		n.eventf("%d holds the lease for ballot %s until %s", nd.id, l.Ballot, n.rel(l.End))
	}
	if !l.Holding && nd.holding {
		n.eventf("%d gives up the lease for ballot %s (ends %s)", nd.id, l.Ballot, n.rel(l.End))
	}
	nd.holding = l.Holding
	for i := range n.leases {
		rec := &n.leases[i]
		if rec.b != l.Ballot {
			continue
		}
		if l.Holding && !rec.abdicated {
			rec.end = max(rec.end, l.End)
		}
		return
	}
	if l.Holding {
		n.leases = append(n.leases, leaseRec{id: nd.id, b: l.Ballot, start: n.now, end: l.End})
	}
}

// abdicate asks nd to abdicate. Abdication ends its lease early: the
// leader uses it no more from now on (its voters are released only after
// TT.after(s_max)), so the lease record ends now.
func (n *tnet) abdicate(nd *tnode, to ReplicaID) error {
	b := nd.r.Status().Promised
	if err := nd.r.Abdicate(n.interval(nd), to); err != nil {
		return err
	}
	for i := range n.leases {
		if rec := &n.leases[i]; rec.b == b && rec.id == nd.id {
			rec.end = min(rec.end, n.now)
			rec.abdicated = true
		}
	}
	return nil
}

// installSnapshot plays the runtime's part of the snapshot path: the
// leader's state machine at its applied index is copied to the target,
// which is then told with RestoreSnapshot.
func (n *tnet) installSnapshot(from, to ReplicaID) (bool, error) {
	src, dst := n.nodes[from], n.nodes[to]
	if src.down || dst.down || n.blocked(from, to) {
		src.r.ReportSnapshot(to, false)
		return false, errors.New("unreachable")
	}
	st := src.apply
	for i, a := range dst.applied {
		if i >= len(src.applied) {
			break
		}
		if b := src.applied[i]; a.Index != b.Index || a.TS != b.TS || string(a.Data) != string(b.Data) || a.Skipped != b.Skipped {
			n.failf("snapshot from %d to %d: state machines diverge at %d", from, to, a.Index)
		}
	}
	if !dst.r.RestoreSnapshot(n.interval(dst), st, from, src.r.Status().Promised) {
		return false, nil
	}
	// Persist what the runtime persists with an installed snapshot: the
	// state machine, the apply state, and the truncated log.
	dst.applied = slices.Clone(src.applied)
	dst.apply = st
	dst.first = st.Index + 1
	for i := range dst.log {
		if i <= st.Index {
			delete(dst.log, i)
		}
	}
	if n.trace != nil {
		fmt.Fprintf(n.trace, "%d snapshot %d->%d at %d\n", int64(n.now), from, to, st.Index)
	}
	return true, nil
}

// compact truncates nd's log (in memory and persisted) up to index.
func (n *tnet) compact(nd *tnode, index uint64) error {
	if err := nd.r.Compact(index); err != nil {
		return err
	}
	nd.first = max(nd.first, index+1)
	for i := range nd.log {
		if i <= index {
			delete(nd.log, i)
		}
	}
	return nil
}

// blocked reports whether a partition separates a and b.
func (n *tnet) blocked(a, b ReplicaID) bool {
	return len(n.part) > 0 && n.part[a] != n.part[b]
}

// deliver steps m into its recipient unless it is down or cut off.
func (n *tnet) deliver(m Message) bool {
	nd := n.nodes[m.To]
	if nd == nil || nd.down || n.blocked(m.From, m.To) {
		return false
	}
	nd.r.Step(n.interval(nd), m)
	n.noteRole(nd)
	return true
}

// stabilize delivers messages and handles readies until nothing moves.
func (n *tnet) stabilize() {
	for i := 0; i < 100000; i++ {
		moved := false
		for _, id := range n.ids {
			if n.handleReady(n.nodes[id]) {
				moved = true
			}
		}
		if len(n.queue) > 0 {
			q := n.queue
			n.queue = nil
			if n.reorder {
				n.rng.Shuffle(len(q), func(i, j int) { q[i], q[j] = q[j], q[i] })
			}
			for _, m := range q {
				if n.delay > 0 && n.rng.Float64() < n.delay {
					d := time.Duration(n.rng.Int64N(int64(n.maxDelay)) + 1)
					n.delayed = append(n.delayed, delayedMsg{at: n.now.Add(d), m: m})
					continue
				}
				n.deliver(m)
				if n.dup > 0 && n.rng.Float64() < n.dup {
					// A duplicate arrives later, after other traffic.
					n.delayed = append(n.delayed, delayedMsg{at: n.now.Add(time.Duration(n.rng.Int64N(int64(n.maxDelay)) + 1)), m: m})
				}
			}
			moved = true
		}
		if !moved {
			return
		}
	}
	n.t.Fatal("no quiescence")
}

// releaseDelayed moves held-back messages whose time has come to the queue.
func (n *tnet) releaseDelayed() {
	if len(n.delayed) == 0 {
		return
	}
	keep := n.delayed[:0]
	for _, d := range n.delayed {
		if d.at <= n.now {
			n.queue = append(n.queue, d.m)
		} else {
			keep = append(keep, d)
		}
	}
	n.delayed = keep
}

// advance moves time forward in steps, ticking every live replica.
func (n *tnet) advance(d time.Duration) {
	step := 50 * time.Millisecond
	for d > 0 {
		s := min(step, d)
		n.now = n.now.Add(s)
		d -= s
		n.releaseDelayed()
		for _, id := range n.ids {
			nd := n.nodes[id]
			if !nd.down {
				nd.r.Tick(n.interval(nd))
				n.noteRole(nd)
			}
		}
		n.stabilize()
		if n.afterStep != nil {
			n.afterStep()
		}
	}
}

func (n *tnet) leader() *tnode {
	var l *tnode
	for _, id := range n.ids {
		nd := n.nodes[id]
		if !nd.down && nd.r.IsLeader() && nd.r.Leaseholder(n.interval(nd)) {
			if l != nil {
				n.t.Fatalf("two leaseholders: %d and %d", l.id, nd.id)
			}
			l = nd
		}
	}
	return l
}

func (n *tnet) waitLeader() *tnode {
	for i := 0; i < 400; i++ {
		if l := n.leader(); l != nil {
			return l
		}
		n.advance(50 * time.Millisecond)
	}
	n.t.Fatal("no leader elected")
	return nil
}

func (n *tnet) crash(id ReplicaID) { n.nodes[id].down = true }

// restart rebuilds the replica from its persisted state only.
func (n *tnet) restart(id ReplicaID) {
	nd := n.nodes[id]
	cfg := nd.cfg
	cfg.HardState = nd.hs
	cfg.Applied = nd.apply
	cfg.FirstIndex = nd.first
	cfg.Entries = nil
	for _, e := range nd.log {
		cfg.Entries = append(cfg.Entries, e)
	}
	cfg.Rand = rand.New(rand.NewPCG(uint64(id), uint64(n.now)))
	r, err := New(cfg)
	if err != nil {
		n.t.Fatalf("restart %d: %v", id, err)
	}
	nd.r = r
	nd.down = false
	nd.holding = false
	nd.role = r.Status().Role
}

func (n *tnet) propose(data string) (uint64, tt.Timestamp) {
	l := n.waitLeader()
	idx, ts, err := l.r.Propose(n.interval(l), []byte(data), 0, true)
	if err != nil {
		n.t.Fatalf("propose %q at %d: %v", data, l.id, err)
	}
	n.stabilize()
	return idx, ts
}

// safetyErr verifies that applied logs are prefixes of each other (the
// same entries, timestamps and skip decisions), that applied timestamps
// strictly increase, that leases never overlapped, and reports any
// violation the harness saw while handling readies.
func (n *tnet) safetyErr() error {
	if n.failed != nil {
		return n.failed
	}
	var longest []Applied
	for _, id := range n.ids {
		a := n.nodes[id].applied
		if len(a) > len(longest) {
			longest = a
		}
	}
	for _, id := range n.ids {
		a := n.nodes[id].applied
		if len(a) > 0 && len(longest) > 0 && a[0].Index != longest[0].Index {
			return fmt.Errorf("replica %d applied from %d, another from %d", id, a[0].Index, longest[0].Index)
		}
		for i := range a {
			if a[i].Index != longest[i].Index || a[i].Type != longest[i].Type || string(a[i].Data) != string(longest[i].Data) ||
				a[i].TS != longest[i].TS || a[i].Skipped != longest[i].Skipped || a[i].Proposer != longest[i].Proposer {
				return fmt.Errorf("replica %d diverges at %d: %v skipped=%v vs %v skipped=%v", id, a[i].Index,
					a[i].Entry, a[i].Skipped, longest[i].Entry, longest[i].Skipped)
			}
		}
	}
	var last tt.Timestamp
	for _, a := range longest {
		if a.Type == EntryNoop || a.Skipped {
			continue
		}
		if a.TS <= last {
			return fmt.Errorf("timestamp %d at %d not above %d", a.TS, a.Index, last)
		}
		last = a.TS
	}
	for i := 0; i < len(n.leases); i++ {
		for j := i + 1; j < len(n.leases); j++ {
			a, b := n.leases[i], n.leases[j]
			if a.start <= b.end && b.start <= a.end {
				return fmt.Errorf("leases overlap: %d (ballot %s) [%s, %s] and %d (ballot %s) [%s, %s]",
					a.id, a.b, n.rel(a.start), n.rel(a.end), b.id, b.b, n.rel(b.start), n.rel(b.end))
			}
		}
	}
	return nil
}

func (n *tnet) checkSafety() {
	n.t.Helper()
	if err := n.safetyErr(); err != nil {
		n.t.Fatal(err)
	}
}

func (n *tnet) appliedData(id ReplicaID) []string {
	var out []string
	for _, a := range n.nodes[id].applied {
		if a.Type == EntryNormal && !a.Skipped {
			out = append(out, string(a.Data))
		}
	}
	return out
}

func TestElectProposeApply(t *testing.T) {
	n := newTnet(t, 3, 1, nil)
	for i := 0; i < 10; i++ {
		n.propose(fmt.Sprintf("v%d", i))
	}
	n.advance(time.Second)
	for _, id := range n.ids {
		if got := n.appliedData(id); len(got) != 10 {
			t.Fatalf("replica %d applied %v", id, got)
		}
	}
	n.checkSafety()
}

func TestLeaderFailover(t *testing.T) {
	n := newTnet(t, 3, 0, nil)
	n.propose("a")
	n.propose("b")
	old := n.waitLeader()
	n.crash(old.id)
	n.advance(5 * time.Second)
	l := n.waitLeader()
	if l.id == old.id {
		t.Fatal("crashed leader still leads")
	}
	n.propose("c")
	n.restart(old.id)
	n.advance(5 * time.Second)
	n.propose("d")
	n.advance(time.Second)
	for _, id := range n.ids {
		if got := n.appliedData(id); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
			t.Fatalf("replica %d applied %v", id, got)
		}
	}
	n.checkSafety()
}
