package rpc

import (
	"context"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/txn"
)

// Peers is the gRPC transport between nodes (node.Transport): one sender
// goroutine per peer keeps a client stream open, batches whatever queued
// up (Paxos and transaction messages alike) into one message, and
// reconnects after errors. Queues are
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
		go p.run(pr)
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

// conn returns a connection to the peer's current address, and the
// address.
func (p *Peers) conn(pr *peer) (*grpc.ClientConn, string, error) {
	addr := p.addr(pr.id)
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.conn != nil && pr.addr == addr {
		return pr.conn, addr, nil
	}
	if pr.conn != nil {
		_ = pr.conn.Close()
		pr.conn = nil
	}
	if addr == "" {
		return nil, "", errNoAddr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := p.dial(ctx, addr)
	if err != nil {
		return nil, "", err
	}
	pr.conn, pr.addr = c, addr
	return c, addr, nil
}

// Conn returns the connection to node id that its sender uses.
func (p *Peers) Conn(id node.NodeID) (*grpc.ClientConn, error) {
	c, _, err := p.conn(p.get(id))
	return c, err
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

// compress reports whether streams to addr are snappy-compressed: not on
// loopback, where bandwidth is memory and compression only costs CPU
// (~4% more two-group transactions on a 3-node loopback cluster without
// it).
func compress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// run keeps a client stream to pr open and sends whatever queued up, Paxos
// and transaction messages together, up to maxBatchMsgs of each per batch,
// reconnecting with backoff after errors, until the transport closes.
func (p *Peers) run(pr *peer) {
	wait := 10 * time.Millisecond
	var pm []paxos.Message
	var tm []txn.Msg
	for {
		var stream grpc.ClientStreamingClient[meridianpb.PeerBatch, meridianpb.Ack]
		// Cancelled when the stream breaks, so that gRPC releases it.
		ctx, cancel := context.WithCancel(context.Background())
		conn, addr, err := p.conn(pr)
		if err == nil {
			var opts []grpc.CallOption
			if compress(addr) {
				opts = append(opts, grpc.UseCompressor(SnappyName))
			}
			stream, err = meridianpb.NewInternalClient(conn).Peer(ctx, opts...)
		}
		if err != nil {
			cancel()
			if !p.backoff(&wait) {
				return
			}
			continue
		}
		wait = 10 * time.Millisecond
		for {
			pm, tm = pm[:0], tm[:0]
			select {
			case <-p.done:
				_, _ = stream.CloseAndRecv()
				cancel()
				return
			case m := <-pr.paxos:
				pm = append(pm, m)
			case m := <-pr.txn:
				tm = append(tm, m)
			}
			if len(pr.paxos) == 0 && len(pr.txn) == 0 {
				// Let the groups about to send run first: several groups'
				// messages then share a batch (Paxos batches grow from
				// ~1.5 messages, and fewer batches cost fewer syscalls).
				runtime.Gosched()
			}
			pm, tm = drain(pr.paxos, pm), drain(pr.txn, tm)
			if err := stream.Send(p.batch(pm, tm)); err != nil {
				p.log.Debug("stream to peer broke", "peer", pr.id, "err", err)
				break
			}
		}
		cancel()
		if !p.backoff(&wait) {
			return
		}
	}
}

// drain appends what q holds, up to maxBatchMsgs in all, without waiting.
func drain[M any](q <-chan M, ms []M) []M {
	for len(ms) < maxBatchMsgs {
		select {
		case m := <-q:
			ms = append(ms, m)
		default:
			return ms
		}
	}
	return ms
}

func (p *Peers) batch(pm []paxos.Message, tm []txn.Msg) *meridianpb.PeerBatch {
	b := &meridianpb.PeerBatch{FromNode: uint64(p.self), ClusterId: p.cluster()}
	if len(pm) > 0 {
		b.Paxos = make([][]byte, len(pm))
		for i := range pm {
			b.Paxos[i] = paxos.AppendMessage(nil, &pm[i])
		}
	}
	if len(tm) > 0 {
		b.Txn = make([]*meridianpb.TxnMsg, len(tm))
		for i, m := range tm {
			b.Txn[i] = txnMsgToPB(m)
		}
	}
	return b
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
