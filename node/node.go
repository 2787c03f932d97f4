package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/txn"
)

// Config configures a node.
type Config struct {
	ID        NodeID
	Region    string
	Engine    *kv.Engine
	Clock     tt.Clock
	Transport Transport
	Logger    *slog.Logger
	// Metrics, when set, receive the node's measurements.
	Metrics *Metrics
	// VersionRetention is how long overwritten and deleted versions stay
	// readable (default DefaultVersionRetention); reads further back are
	// refused once collected.
	VersionRetention time.Duration
	// GCInterval is how often versions older than the retention are
	// collected (default DefaultGCInterval; negative: never, for tests
	// that collect by calling CollectVersions).
	GCInterval time.Duration
	// Members returns the cluster's nodes, this one included, for the
	// clock guard (default: the placement's nodes, or this node alone
	// before it has one).
	Members func() []NodeID
}

// Node hosts replicas of many groups on one Pebble engine and routes
// messages between them and the transport.
type Node struct {
	id     NodeID
	region string
	eng    *kv.Engine
	clock  tt.Clock
	tr     Transport
	log    *slog.Logger
	met    *Metrics
	guard  *ClockGuard

	retention time.Duration
	gcMu      sync.Mutex         // one CollectVersions at a time
	stopGC    context.CancelFunc // ends runGC (Stop)
	gcDone    chan struct{}      // closed when runGC returns (nil: no scheduled GC)

	mu        sync.RWMutex
	groups    map[uint64]*Group
	leaders   map[uint64]NodeID // group → the node this node believes leads it
	placement *Placement
	draining  bool

	traceMu sync.Mutex
	traces  []CommitTrace // ring of the last commits coordinated here
	traceAt int
}

// CommitTrace is one commit this node coordinated, for the /debug/txn page.
type CommitTrace struct {
	Group        uint64
	Start        time.Time     // when the request reached the group
	Took         time.Duration // until the answer left
	TS           tt.Timestamp
	Participants int
	Phases       txn.Phases
	Err          error
}

const maxTraces = 200

func (n *Node) recordCommit(t CommitTrace) {
	if m := n.met; m != nil && t.Err == nil {
		kind := "single"
		if t.Participants > 1 {
			kind = "2pc"
		}
		m.CommitLatency.WithLabelValues(kind).Observe(t.Took.Seconds())
		m.CommitWait.Observe(t.Phases.CommitWait.Seconds())
	}
	n.traceMu.Lock()
	defer n.traceMu.Unlock()
	if len(n.traces) < maxTraces {
		n.traces = append(n.traces, t)
		return
	}
	n.traces[n.traceAt] = t
	n.traceAt = (n.traceAt + 1) % maxTraces
}

// RecentCommits returns the last commits coordinated here, oldest first.
func (n *Node) RecentCommits() []CommitTrace {
	n.traceMu.Lock()
	defer n.traceMu.Unlock()
	out := make([]CommitTrace, 0, len(n.traces))
	out = append(out, n.traces[n.traceAt:]...)
	return append(out, n.traces[:n.traceAt]...)
}

// New returns a node with no groups.
func New(cfg Config) (*Node, error) {
	if cfg.ID == 0 || cfg.Engine == nil || cfg.Clock == nil || cfg.Transport == nil {
		return nil, errors.New("node: ID, Engine, Clock and Transport are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.VersionRetention <= 0 {
		cfg.VersionRetention = DefaultVersionRetention
	}
	if cfg.GCInterval == 0 {
		cfg.GCInterval = DefaultGCInterval
	}
	n := &Node{id: cfg.ID, region: cfg.Region, eng: cfg.Engine, clock: cfg.Clock, tr: cfg.Transport, met: cfg.Metrics,
		log: cfg.Logger.With("node", cfg.ID), groups: map[uint64]*Group{}, leaders: map[uint64]NodeID{},
		retention: cfg.VersionRetention, stopGC: func() {}}
	members := cfg.Members
	if members == nil {
		members = n.placementMembers
	}
	n.guard = NewClockGuard(ClockGuardConfig{Self: cfg.ID, Clock: cfg.Clock, Members: members, Hold: n.clockHold,
		Logger: n.log, Metrics: cfg.Metrics})
	if cfg.GCInterval > 0 {
		var ctx context.Context
		ctx, n.stopGC = context.WithCancel(context.Background())
		n.gcDone = make(chan struct{})
		go n.runGC(ctx, cfg.GCInterval)
	}
	return n, nil
}

// ID returns the node's ID.
func (n *Node) ID() NodeID { return n.id }

// Region returns the node's region.
func (n *Node) Region() string { return n.region }

// Engine returns the node's storage engine.
func (n *Node) Engine() *kv.Engine { return n.eng }

// Clock returns the node's interval clock.
func (n *Node) Clock() tt.Clock { return n.clock }

// ClockGuard returns the guard that cross-checks the node's clock with its
// peers' (the transport feeds it).
func (n *Node) ClockGuard() *ClockGuard { return n.guard }

// placementMembers returns the placement's nodes (this node alone before
// it has one).
func (n *Node) placementMembers() []NodeID {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.placement == nil {
		return []NodeID{n.id}
	}
	ids := make([]NodeID, 0, len(n.placement.Nodes))
	for _, x := range n.placement.Nodes {
		ids = append(ids, x.ID)
	}
	return ids
}

// clockHoldMargin is added to the lease for the hold of a fenced clock:
// drift over a lease (200 µs/s × 10 s = 2 ms) and message delays are far
// below it.
const clockHoldMargin = time.Second

// clockHold is how long a fenced clock stays fenced at least: the
// cluster's lease (the default lease before a placement) plus a margin.
// Every lease vote, lease and timestamp the node issued lay within a lease
// of being issued.
func (n *Node) clockHold() time.Duration {
	lease := 10 * time.Second
	n.mu.RLock()
	if n.placement != nil && n.placement.Lease > 0 {
		lease = n.placement.Lease
	}
	n.mu.RUnlock()
	return lease + clockHoldMargin
}

// Draining reports whether the node is shutting down.
func (n *Node) Draining() bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.draining
}

// AddGroup starts hosting a replica of a group, restored from Pebble.
func (n *Node) AddGroup(cfg GroupConfig) (*Group, error) {
	if cfg.Nodes[cfg.Replica] != n.id {
		return nil, fmt.Errorf("node %d: replica %d of group %d is placed on node %d", n.id, cfg.Replica, cfg.Group, cfg.Nodes[cfg.Replica])
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.groups[cfg.Group]; ok {
		return nil, fmt.Errorf("node %d: group %d already hosted", n.id, cfg.Group)
	}
	g, err := newGroup(n, cfg)
	if err != nil {
		return nil, err
	}
	n.groups[cfg.Group] = g
	go g.run()
	return g, nil
}

// Group returns the hosted group, or nil.
func (n *Node) Group(id uint64) *Group {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.groups[id]
}

// Groups returns every hosted group, by ID.
func (n *Node) Groups() []*Group {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]*Group, 0, len(n.groups))
	for _, g := range n.groups {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b *Group) int { return int(a.cfg.Group) - int(b.cfg.Group) })
	return out
}

// DeliverPaxos routes inbound Paxos messages to their groups.
func (n *Node) DeliverPaxos(msgs []paxos.Message) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, m := range msgs {
		if g := n.groups[m.Group]; g != nil {
			g.deliverPaxos(m)
		}
	}
}

// DeliverTxn routes inbound transaction messages to the local replica of
// their destination group, and learns from them: every message but a close
// request comes from the leader of its sending group.
func (n *Node) DeliverTxn(from NodeID, msgs []txn.Msg) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range msgs {
		if m.Type != txn.MsgCloseRequest && from != 0 {
			n.leaders[m.From] = from
		}
		if g := n.groups[m.To]; g != nil {
			g.deliverTxn(m)
		}
	}
}

// sendPaxos routes a group's outbound messages by its placement, one batch
// per destination node.
func (n *Node) sendPaxos(g *Group, msgs []paxos.Message) {
	if len(msgs) == 0 {
		return
	}
	if len(msgs) == 1 {
		if to, ok := g.cfg.Nodes[msgs[0].To]; ok {
			n.tr.SendPaxos(to, msgs)
		}
		return
	}
	byNode := map[NodeID][]paxos.Message{}
	for _, m := range msgs {
		if to, ok := g.cfg.Nodes[m.To]; ok {
			byNode[to] = append(byNode[to], m)
		}
	}
	for to, ms := range byNode {
		n.tr.SendPaxos(to, ms)
	}
}

// sendTxn routes transaction messages to the node believed to lead each
// destination group.
func (n *Node) sendTxn(from *Group, msgs []txn.Msg) {
	for _, m := range msgs {
		to := n.LeaderNode(m.To)
		if to == 0 {
			continue
		}
		n.tr.SendTxn(n.id, to, []txn.Msg{m})
	}
}

// KnownLeader is the node this node believes leads group (its own
// replica's view, else the last hint it learned), or 0: unlike
// LeaderNode it never guesses.
func (n *Node) KnownLeader(group uint64) NodeID {
	n.mu.RLock()
	g := n.groups[group]
	cached := n.leaders[group]
	n.mu.RUnlock()
	if g != nil {
		if st := g.Status(); st.Leader != 0 {
			if node, ok := g.cfg.Nodes[st.Leader]; ok {
				return node
			}
		}
	}
	return cached
}

// LeaderNode is where to send group's leader-bound messages: the known
// leader, else a guess among its voters (0 only without a placement).
func (n *Node) LeaderNode(group uint64) NodeID {
	if known := n.KnownLeader(group); known != 0 {
		return known
	}
	// Nothing known: try one of the group's voters; a wrong guess is
	// dropped there and the sender's retry guesses again.
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.placement != nil {
		if sh, ok := n.placement.Shard(group); ok {
			var voters []NodeID
			for _, r := range sh.Replicas {
				if r.Voter {
					voters = append(voters, r.Node)
				}
			}
			if len(voters) > 0 {
				return voters[rand.IntN(len(voters))]
			}
		}
	}
	return 0
}

// SetPlacement tells the node the cluster's placement, for routing to
// groups it does not host.
func (n *Node) SetPlacement(p Placement) {
	n.mu.Lock()
	n.placement = &p
	n.mu.Unlock()
}

// SetLeader records that node leads group (learned from a reply or a
// message).
func (n *Node) SetLeader(group uint64, node NodeID) {
	n.mu.Lock()
	n.leaders[group] = node
	n.mu.Unlock()
}

// Drain hands off leadership where it can and waits (bounded by ctx) until
// no local replica leads, then marks the node draining. Each leader waits
// until TT.after of the last timestamp it assigned before it releases its
// lease votes, and names another voter to take over.
func (n *Node) Drain(ctx context.Context) {
	n.mu.Lock()
	n.draining = true
	n.mu.Unlock()
	for _, g := range n.Groups() {
		if !g.IsLeader() {
			continue
		}
		target := paxos.ReplicaID(0)
		for _, v := range g.cfg.Voters {
			if v != g.cfg.Replica {
				target = v
				break
			}
		}
		_ = g.Call(ctx, func(t *txn.Group, now tt.Interval) {
			if err := t.Replica().Abdicate(now, target); err == nil {
				n.log.Info("abdicating", "group", g.cfg.Group, "to", target)
			}
		})
	}
	for ctx.Err() == nil {
		leading := false
		for _, g := range n.Groups() {
			leading = leading || g.IsLeader()
		}
		if !leading {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Stop stops every group and waits for their goroutines. The engine is the
// caller's to close.
func (n *Node) Stop() {
	n.stopGC()
	if n.gcDone != nil {
		<-n.gcDone
	}
	n.mu.Lock()
	gs := make([]*Group, 0, len(n.groups))
	for _, g := range n.groups {
		gs = append(gs, g)
	}
	n.groups = map[uint64]*Group{}
	n.mu.Unlock()
	for _, g := range gs {
		g.Stop()
	}
}
