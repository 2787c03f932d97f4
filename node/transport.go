package node

import (
	"sync"
	"sync/atomic"

	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/txn"
)

// NodeID names a node of the cluster.
type NodeID uint64

// Transport carries messages between nodes. Sends must not block for
// long; they may drop (Paxos resends, two-phase commit retries and
// queries), and deliver in order per destination when they deliver. The
// gRPC transport lives in rpc; MemTransport connects nodes of one process.
type Transport interface {
	SendPaxos(to NodeID, msgs []paxos.Message)
	// SendTxn sends transaction messages from node from (the caller).
	SendTxn(from, to NodeID, msgs []txn.Msg)
}

// Receiver is what a transport delivers inbound messages to (a *Node).
type Receiver interface {
	DeliverPaxos(msgs []paxos.Message)
	// DeliverTxn hands over transaction messages sent by node from.
	DeliverTxn(from NodeID, msgs []txn.Msg)
}

// MemTransport connects nodes of one process. A node can be marked down to
// drop everything sent to it.
type MemTransport struct {
	mu    sync.RWMutex
	nodes map[NodeID]Receiver
	down  map[NodeID]bool
	// snapshots counts the snapshot messages sent (delivered or not).
	snapshots atomic.Int64
}

// Snapshots returns how many snapshot messages were sent over t.
func (t *MemTransport) Snapshots() int64 { return t.snapshots.Load() }

// NewMemTransport returns an empty in-process transport.
func NewMemTransport() *MemTransport {
	return &MemTransport{nodes: map[NodeID]Receiver{}, down: map[NodeID]bool{}}
}

// Register attaches a node.
func (t *MemTransport) Register(id NodeID, r Receiver) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nodes[id] = r
	delete(t.down, id)
}

// Unregister detaches a node; messages to it are dropped.
func (t *MemTransport) Unregister(id NodeID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.nodes, id)
}

// SetDown drops every message to id while down is true.
func (t *MemTransport) SetDown(id NodeID, down bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.down[id] = down
}

func (t *MemTransport) get(to NodeID) Receiver {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.down[to] {
		return nil
	}
	return t.nodes[to]
}

// SendPaxos delivers msgs to node to (copying entries out of the sender's
// buffers).
func (t *MemTransport) SendPaxos(to NodeID, msgs []paxos.Message) {
	for _, m := range msgs {
		if m.Type == paxos.MsgSnapshot {
			t.snapshots.Add(1)
		}
	}
	r := t.get(to)
	if r == nil || len(msgs) == 0 {
		return
	}
	cp := make([]paxos.Message, len(msgs))
	for i, m := range msgs {
		if len(m.Entries) > 0 {
			m.Entries = append([]paxos.Entry(nil), m.Entries...)
		}
		cp[i] = m
	}
	r.DeliverPaxos(cp)
}

// SendTxn delivers transaction messages to node to.
func (t *MemTransport) SendTxn(from, to NodeID, msgs []txn.Msg) {
	r := t.get(to)
	if r == nil || len(msgs) == 0 {
		return
	}
	r.DeliverTxn(from, append([]txn.Msg(nil), msgs...))
}
