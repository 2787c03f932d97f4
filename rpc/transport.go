package rpc

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/txn"
)

// Peers is the gRPC transport between nodes (node.Transport): one sender
// goroutine per peer and kind keeps a client stream open, batches whatever
// queued up into one message, and reconnects after errors. Queues are
// bounded; when one is full messages are dropped (Paxos resends).
type Peers struct {
	self    node.NodeID
	cluster func() string // this node's cluster ID, stamped on every batch
	addr    func(node.NodeID) string
	dial    func(ctx context.Context, addr string) (*grpc.ClientConn, error)
	recv    node.Receiver
	log     *slog.Logger

	mu    sync.Mutex
	peers map[node.NodeID]*peer
	done  chan struct{}
	once  sync.Once
}

type peer struct {
	id    node.NodeID
	paxos chan paxos.Message
	txn   chan txn.Msg
	mu    sync.Mutex
	addr  string
	conn  *grpc.ClientConn
}

const (
	paxosQueue   = 16384
	txnQueue     = 4096
	maxBatchMsgs = 1024
)

// NewPeers returns a transport. addr resolves a node's address; dial opens
// a connection (with the cluster's credentials).
func NewPeers(self node.NodeID, cluster func() string, addr func(node.NodeID) string, dial func(ctx context.Context, addr string) (*grpc.ClientConn, error), log *slog.Logger) *Peers {
	return &Peers{self: self, cluster: cluster, addr: addr, dial: dial, log: log, peers: map[node.NodeID]*peer{}, done: make(chan struct{})}
}

// SetReceiver attaches the local node (messages to self are delivered
// directly).
func (p *Peers) SetReceiver(r node.Receiver) { p.recv = r }

func (p *Peers) get(id node.NodeID) *peer {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.peers[id]
	if pr == nil {
		pr = &peer{id: id, paxos: make(chan paxos.Message, paxosQueue), txn: make(chan txn.Msg, txnQueue)}
		p.peers[id] = pr
		go p.runPaxos(pr)
		go p.runTxn(pr)
	}
	return pr
}

// SendPaxos queues Paxos messages for node to.
func (p *Peers) SendPaxos(to node.NodeID, msgs []paxos.Message) {
	if to == p.self {
		if p.recv != nil {
			p.recv.DeliverPaxos(msgs)
		}
		return
	}
	pr := p.get(to)
	for _, m := range msgs {
		select {
		case pr.paxos <- m:
		default: // full: drop, Paxos resends
		}
	}
}

// SendTxn queues transaction messages for node to.
func (p *Peers) SendTxn(from, to node.NodeID, msgs []txn.Msg) {
	if to == p.self {
		if p.recv != nil {
			p.recv.DeliverTxn(from, msgs)
		}
		return
	}
	pr := p.get(to)
	for _, m := range msgs {
		select {
		case pr.txn <- m:
		default:
		}
	}
}

// conn returns a connection to the peer's current address.
func (p *Peers) conn(pr *peer) (*grpc.ClientConn, error) {
	addr := p.addr(pr.id)
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.conn != nil && pr.addr == addr {
		return pr.conn, nil
	}
	if pr.conn != nil {
		_ = pr.conn.Close()
		pr.conn = nil
	}
	if addr == "" {
		return nil, errNoAddr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := p.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	pr.conn, pr.addr = c, addr
	return c, nil
}

type noAddrError struct{}

func (noAddrError) Error() string { return "rpc: peer address unknown" }

var errNoAddr = noAddrError{}

func (p *Peers) backoff(d *time.Duration) bool {
	select {
	case <-p.done:
		return false
	case <-time.After(*d):
	}
	*d = min(*d*2, time.Second)
	return true
}

func (p *Peers) runPaxos(pr *peer) {
	open := func(c *grpc.ClientConn) (grpc.ClientStreamingClient[meridianpb.PaxosBatch, meridianpb.Ack], error) {
		return meridianpb.NewInternalClient(c).Paxos(context.Background(), grpc.UseCompressor(SnappyName))
	}
	runSender(p, pr, "paxos", pr.paxos, open, func(ms []paxos.Message) *meridianpb.PaxosBatch {
		b := &meridianpb.PaxosBatch{ClusterId: p.cluster(), Msgs: make([][]byte, len(ms))}
		for i := range ms {
			b.Msgs[i] = paxos.AppendMessage(nil, &ms[i])
		}
		return b
	})
}

func (p *Peers) runTxn(pr *peer) {
	open := func(c *grpc.ClientConn) (grpc.ClientStreamingClient[meridianpb.TxnBatch, meridianpb.Ack], error) {
		return meridianpb.NewInternalClient(c).Txn(context.Background(), grpc.UseCompressor(SnappyName))
	}
	runSender(p, pr, "txn", pr.txn, open, func(ms []txn.Msg) *meridianpb.TxnBatch {
		b := &meridianpb.TxnBatch{FromNode: uint64(p.self), ClusterId: p.cluster(), Msgs: make([]*meridianpb.TxnMsg, len(ms))}
		for i, m := range ms {
			b.Msgs[i] = txnMsgToPB(m)
		}
		return b
	})
}

// runSender keeps a client stream to pr open and sends what queues up on q,
// up to maxBatchMsgs messages per batch, reconnecting with backoff after
// errors, until the transport closes.
func runSender[M, B any](p *Peers, pr *peer, kind string, q <-chan M,
	open func(*grpc.ClientConn) (grpc.ClientStreamingClient[B, meridianpb.Ack], error), batch func([]M) *B) {
	wait := 10 * time.Millisecond
	var ms []M
	for {
		var stream grpc.ClientStreamingClient[B, meridianpb.Ack]
		conn, err := p.conn(pr)
		if err == nil {
			stream, err = open(conn)
		}
		if err != nil {
			if !p.backoff(&wait) {
				return
			}
			continue
		}
		wait = 10 * time.Millisecond
		for {
			select {
			case <-p.done:
				_, _ = stream.CloseAndRecv()
				return
			case m := <-q:
				ms = append(ms[:0], m)
			}
		drain:
			for len(ms) < maxBatchMsgs {
				select {
				case m := <-q:
					ms = append(ms, m)
				default:
					break drain
				}
			}
			if err := stream.Send(batch(ms)); err != nil {
				p.log.Debug(kind+" stream to peer broke", "peer", pr.id, "err", err)
				break
			}
		}
		if !p.backoff(&wait) {
			return
		}
	}
}

// Close stops every sender and closes the connections.
func (p *Peers) Close() {
	p.once.Do(func() { close(p.done) })
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.peers {
		pr.mu.Lock()
		if pr.conn != nil {
			_ = pr.conn.Close()
		}
		pr.mu.Unlock()
	}
}
