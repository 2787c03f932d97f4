package node

import (
	"errors"
	"sync"

	"github.com/meridiandb/meridian/paxos"
)

// NodeID names a node of the cluster.
type NodeID uint64

// Transport carries Paxos messages between nodes. Send must not block for
// long: it may drop messages (Paxos retries), never reorder them into
// corruption. Implementations: MemTransport (in-process) and the gRPC
// transport in rpc.
type Transport interface {
	Send(to NodeID, msgs []paxos.Message)
}

// Receiver is what a transport delivers inbound messages to (a *Node).
type Receiver interface {
	Deliver(msgs []paxos.Message)
}

// MemTransport connects nodes of one process. Nodes register under their
// IDs; a node can be disconnected to simulate a crash or partition.
type MemTransport struct {
	mu    sync.RWMutex
	nodes map[NodeID]Receiver
	down  map[NodeID]bool
}

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

// ErrUnknownNode is returned when no node is registered under an ID.
var ErrUnknownNode = errors.New("node: unknown node")

// Send delivers msgs to node to, synchronously into its inboxes (which
// never block: full inboxes drop).
func (t *MemTransport) Send(to NodeID, msgs []paxos.Message) {
	t.mu.RLock()
	r := t.nodes[to]
	down := t.down[to]
	t.mu.RUnlock()
	if r == nil || down || len(msgs) == 0 {
		return
	}
	// The receiver owns what it is given: copy entry data out of the
	// sender's buffers.
	cp := make([]paxos.Message, len(msgs))
	for i, m := range msgs {
		if len(m.Entries) > 0 {
			m.Entries = append([]paxos.Entry(nil), m.Entries...)
		}
		cp[i] = m
	}
	r.Deliver(cp)
}
