package node

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/tt"
)

// Config configures a node.
type Config struct {
	ID        NodeID
	Engine    *kv.Engine
	Clock     tt.Clock
	Transport Transport
	Logger    *slog.Logger
}

// Node hosts replicas of many groups on one Pebble engine.
type Node struct {
	id    NodeID
	eng   *kv.Engine
	clock tt.Clock
	tr    Transport
	log   *slog.Logger

	mu     sync.RWMutex
	groups map[uint64]*Group
}

// New returns a node with no groups.
func New(cfg Config) (*Node, error) {
	if cfg.ID == 0 || cfg.Engine == nil || cfg.Clock == nil || cfg.Transport == nil {
		return nil, errors.New("node: ID, Engine, Clock and Transport are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Node{id: cfg.ID, eng: cfg.Engine, clock: cfg.Clock, tr: cfg.Transport,
		log: cfg.Logger.With("node", cfg.ID), groups: map[uint64]*Group{}}, nil
}

// ID returns the node's ID.
func (n *Node) ID() NodeID { return n.id }

// Engine returns the node's storage engine.
func (n *Node) Engine() *kv.Engine { return n.eng }

// Clock returns the node's interval clock.
func (n *Node) Clock() tt.Clock { return n.clock }

// AddGroup starts hosting a replica of a group, restored from Pebble.
func (n *Node) AddGroup(cfg GroupConfig, sm StateMachine) (*Group, error) {
	if cfg.Nodes[cfg.Replica] != n.id {
		return nil, fmt.Errorf("node %d: replica %d of group %d is placed on node %d", n.id, cfg.Replica, cfg.Group, cfg.Nodes[cfg.Replica])
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.groups[cfg.Group]; ok {
		return nil, fmt.Errorf("node %d: group %d already hosted", n.id, cfg.Group)
	}
	g, err := newGroup(n, cfg, sm)
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

// Groups returns every hosted group.
func (n *Node) Groups() []*Group {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]*Group, 0, len(n.groups))
	for _, g := range n.groups {
		out = append(out, g)
	}
	return out
}

// Deliver routes inbound messages to their groups (Receiver).
func (n *Node) Deliver(msgs []paxos.Message) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, m := range msgs {
		if g := n.groups[m.Group]; g != nil {
			g.deliver(m)
		}
	}
}

// send routes outbound messages by the group's placement, batching per
// destination node.
func (n *Node) send(msgs []paxos.Message) {
	if len(msgs) == 0 {
		return
	}
	byNode := map[NodeID][]paxos.Message{}
	n.mu.RLock()
	for _, m := range msgs {
		g := n.groups[m.Group]
		if g == nil {
			continue
		}
		to, ok := g.cfg.Nodes[m.To]
		if !ok {
			continue
		}
		byNode[to] = append(byNode[to], m)
	}
	n.mu.RUnlock()
	for to, ms := range byNode {
		n.tr.Send(to, ms)
	}
}

// Stop stops every group and waits for their goroutines. The engine is the
// caller's to close.
func (n *Node) Stop() {
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

// Stop stops the group's goroutine and fails waiting proposals.
func (g *Group) Stop() {
	g.once.Do(func() {
		g.stopped.Store(true)
		close(g.stop)
	})
	<-g.done
}
