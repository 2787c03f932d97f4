package paxos

import (
	"fmt"
	"math/rand/v2"
	"slices"
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
	applied []Applied
	down    bool
	offset  time.Duration // clock offset within ε
	cfg     Config
}

// tnet delivers messages between tnodes in virtual time.
type tnet struct {
	t      *testing.T
	nodes  map[ReplicaID]*tnode
	ids    []ReplicaID
	queue  []Message
	now    tt.Timestamp
	eps    time.Duration
	rng    *rand.Rand
	drop   func(m Message) bool
	leases []leaseRec
}

type leaseRec struct {
	id    ReplicaID
	b     Ballot
	start tt.Timestamp // true time when first held
	end   tt.Timestamp
}

func newTnet(t *testing.T, voters, learners int, mod func(*Config)) *tnet {
	n := &tnet{t: t, nodes: map[ReplicaID]*tnode{}, now: tt.Timestamp(1_000_000_000_000), eps: time.Millisecond, rng: rand.New(rand.NewPCG(1, 2))}
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
		n.nodes[id] = nd
		n.ids = append(n.ids, id)
	}
	return n
}

func (n *tnet) interval(nd *tnode) tt.Interval {
	c := n.now.Add(nd.offset)
	return tt.Interval{Earliest: c.Add(-n.eps), Latest: c.Add(n.eps)}
}

func (n *tnet) handleReady(nd *tnode) bool {
	if nd.down || !nd.r.HasReady() {
		return false
	}
	rd := nd.r.Ready()
	if rd.HardState != nil {
		nd.hs = *rd.HardState
	}
	for _, e := range rd.Entries {
		nd.log[e.Index] = e
	}
	for _, m := range rd.Messages {
		if n.drop == nil || !n.drop(m) {
			n.queue = append(n.queue, m)
		}
	}
	for _, a := range rd.Committed {
		if a.Index != nd.apply.Index+1 && nd.apply.Index != 0 {
			n.t.Fatalf("replica %d applied %d after %d", nd.id, a.Index, nd.apply.Index)
		}
		nd.applied = append(nd.applied, a)
		nd.apply.Index = a.Index
	}
	if len(rd.Committed) > 0 {
		nd.apply = rd.ApplyState
	}
	if rd.Lease != nil && rd.Lease.Holding {
		n.recordLease(nd.id, *rd.Lease)
	}
	nd.r.Advance(rd)
	return true
}

func (n *tnet) recordLease(id ReplicaID, l Lease) {
	for i := range n.leases {
		if n.leases[i].b == l.Ballot {
			n.leases[i].end = max(n.leases[i].end, l.End)
			return
		}
	}
	n.leases = append(n.leases, leaseRec{id: id, b: l.Ballot, start: n.now, end: l.End})
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
			for _, m := range q {
				nd := n.nodes[m.To]
				if nd == nil || nd.down {
					continue
				}
				nd.r.Step(n.interval(nd), m)
			}
			moved = true
		}
		if !moved {
			return
		}
	}
	n.t.Fatal("no quiescence")
}

// advance moves time forward in steps, ticking every live replica.
func (n *tnet) advance(d time.Duration) {
	step := 50 * time.Millisecond
	for d > 0 {
		s := min(step, d)
		n.now = n.now.Add(s)
		d -= s
		for _, id := range n.ids {
			nd := n.nodes[id]
			if !nd.down {
				nd.r.Tick(n.interval(nd))
			}
		}
		n.stabilize()
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

// checkSafety verifies applied logs are prefixes of each other, timestamps
// strictly increase, and leases never overlapped.
func (n *tnet) checkSafety() {
	var longest []Applied
	for _, id := range n.ids {
		a := n.nodes[id].applied
		if len(a) > len(longest) {
			longest = a
		}
	}
	for _, id := range n.ids {
		a := n.nodes[id].applied
		for i := range a {
			if a[i].Index != longest[i].Index || string(a[i].Data) != string(longest[i].Data) || a[i].TS != longest[i].TS || a[i].Skipped != longest[i].Skipped {
				n.t.Fatalf("replica %d diverges at %d: %v vs %v", id, a[i].Index, a[i].Entry, longest[i].Entry)
			}
		}
	}
	var last tt.Timestamp
	for _, a := range longest {
		if a.Type == EntryNoop || a.Skipped {
			continue
		}
		if a.TS <= last {
			n.t.Fatalf("timestamp %d at %d not above %d", a.TS, a.Index, last)
		}
		last = a.TS
	}
	for i := 0; i < len(n.leases); i++ {
		for j := i + 1; j < len(n.leases); j++ {
			a, b := n.leases[i], n.leases[j]
			if a.start <= b.end && b.start <= a.end {
				n.t.Fatalf("leases overlap: %+v and %+v", a, b)
			}
		}
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
