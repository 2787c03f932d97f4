package rpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/txn"
)

// ServerConfig assembles a node process.
type ServerConfig struct {
	Self   node.NodeInfo
	Engine *kv.Engine
	Clock  tt.Clock
	// Join lists addresses of nodes to introduce ourselves to.
	Join []string
	// Dial opens a connection to another node (with the cluster's
	// credentials).
	Dial   func(ctx context.Context, addr string) (*grpc.ClientConn, error)
	Logger *slog.Logger
	// GroupDefaults tunes the groups this node hosts (timeouts, queues);
	// group identity, span and lease come from the placement.
	GroupDefaults node.GroupConfig
	// Registry receives the node's Prometheus metrics (a new one if nil);
	// DebugHandler serves it on /metrics.
	Registry *prometheus.Registry
	// Netem, when set, is the latency simulator the Admin.Netem call
	// controls (in-process demo clusters).
	Netem NetemControl
	// VersionRetention and GCInterval configure version garbage
	// collection (node.Config; zero: the defaults).
	VersionRetention, GCInterval time.Duration
}

// NetemControl is the latency simulator as the admin API sees it
// (sim.Netem implements it).
type NetemControl interface {
	Partition(a, b string, oneWay bool) error
	Slow(a, b string, d time.Duration) error
	Heal()
	SetLoss(p float64) error
	Cuts() []string
	Loss() float64
}

// Server is one Meridian node as the network sees it: the client API, the
// node-to-node services and administration over a node.Node, plus the
// membership directory and the placement.
type Server struct {
	meridianpb.UnimplementedMeridianServer
	meridianpb.UnimplementedInternalServer
	meridianpb.UnimplementedAdminServer

	cfg    ServerConfig
	node   *node.Node
	peers  *Peers
	log    *slog.Logger
	health *health.Server
	met    *node.Metrics
	guard  *node.ClockGuard
	// workers run Batch calls (see workers).
	workers *workers

	mu        sync.RWMutex
	dir       map[node.NodeID]node.NodeInfo
	placement *node.Placement
	stop      chan struct{}
	stopOnce  sync.Once
}

// NewServer starts the node runtime (and the groups of a placement already
// persisted).
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Self.ID == 0 || cfg.Self.Region == "" || cfg.Self.Addr == "" {
		return nil, errors.New("rpc: node ID, region and address are required")
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("node", cfg.Self.ID), workers: newWorkers(), dir: map[node.NodeID]node.NodeInfo{cfg.Self.ID: cfg.Self},
		stop: make(chan struct{})}
	s.peers = NewPeers(cfg.Self.ID, s.clusterID, s.addrOf, cfg.Dial, s.log)
	if s.cfg.Registry == nil {
		s.cfg.Registry = prometheus.NewRegistry()
	}
	s.met = node.NewMetrics(s.cfg.Registry)
	s.health = health.NewServer()
	n, err := node.New(node.Config{ID: cfg.Self.ID, Region: cfg.Self.Region, Engine: cfg.Engine, Clock: cfg.Clock,
		Transport: s.peers, Logger: cfg.Logger, Metrics: s.met, VersionRetention: cfg.VersionRetention, GCInterval: cfg.GCInterval,
		Members: s.members})
	if err != nil {
		return nil, err
	}
	s.node = n
	s.guard = n.ClockGuard()
	s.peers.SetReceiver(n)
	p, ok, err := node.LoadPlacement(cfg.Engine)
	if err == nil && ok {
		err = s.install(p)
	}
	if err != nil {
		n.Stop() // its GC loop and any group started
		return nil, err
	}
	return s, nil
}

// Node returns the runtime.
func (s *Server) Node() *node.Node { return s.node }

// Register attaches the services to a gRPC server, with gRPC health
// (grpc.health.v1: NOT_SERVING while the clock is unhealthy or the node
// drains) and server reflection (grpcurl works).
func (s *Server) Register(gs *grpc.Server) {
	meridianpb.RegisterMeridianServer(gs, s)
	meridianpb.RegisterInternalServer(gs, s)
	meridianpb.RegisterAdminServer(gs, s)
	healthpb.RegisterHealthServer(gs, s.health)
	reflection.Register(gs)
}

// Registry returns the Prometheus registry the node's metrics are on.
func (s *Server) Registry() *prometheus.Registry { return s.cfg.Registry }

// watchHealth keeps the health status and the ε gauge current.
func (s *Server) watchHealth() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		st := healthpb.HealthCheckResponse_SERVING
		iv, err := s.cfg.Clock.Now()
		if err != nil {
			s.met.Epsilon.Set(math.NaN())
			st = healthpb.HealthCheckResponse_NOT_SERVING
		} else {
			s.met.Epsilon.Set(iv.Epsilon().Seconds())
		}
		if s.node.Draining() {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		s.health.SetServingStatus("", st)
		s.health.SetServingStatus(meridianpb.Meridian_ServiceDesc.ServiceName, st)
		select {
		case <-s.stop:
			s.health.Shutdown()
			return
		case <-t.C:
		}
	}
}

// Placement returns the placement (ok false before init).
func (s *Server) Placement() (node.Placement, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.placement == nil {
		return node.Placement{}, false
	}
	return *s.placement, true
}

// clusterID returns the cluster's ID ("" before init).
func (s *Server) clusterID() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.placement == nil {
		return ""
	}
	return s.placement.ClusterID
}

// Initialized reports whether the node has a placement.
func (s *Server) Initialized() bool {
	_, ok := s.Placement()
	return ok
}

func (s *Server) addrOf(id node.NodeID) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if n, ok := s.dir[id]; ok {
		return n.Addr
	}
	if s.placement != nil {
		if n, ok := s.placement.Node(id); ok {
			return n.Addr
		}
	}
	return ""
}

// install adopts a placement: persists it (if new) and starts this node's
// replicas.
func (s *Server) install(p node.Placement) error {
	if _, ok := p.Node(s.cfg.Self.ID); !ok {
		// Not ours: written for another cluster (reached at a reused
		// address, or a wrong --join).
		return fmt.Errorf("%w: the placement of cluster %s does not include node %d", errForeignPlacement, p.ClusterID, s.cfg.Self.ID)
	}
	s.mu.Lock()
	if s.placement != nil {
		s.mu.Unlock()
		return nil
	}
	for _, n := range p.Nodes {
		if _, ok := s.dir[n.ID]; !ok {
			s.dir[n.ID] = n
		}
	}
	s.placement = &p
	s.mu.Unlock()
	s.node.SetPlacement(p)
	if err := node.SavePlacement(s.cfg.Engine, p); err != nil {
		return err
	}
	for _, sh := range p.Shards {
		cfg, ok := sh.GroupConfig(s.cfg.Self.ID, p.Lease)
		if !ok || s.node.Group(sh.Group) != nil {
			continue
		}
		d := s.cfg.GroupDefaults
		cfg.CompactAfter, cfg.CompactKeep, cfg.InboxSize, cfg.RequestQueue, cfg.Txn = d.CompactAfter, d.CompactKeep, d.InboxSize, d.RequestQueue, d.Txn
		cfg.PaxosBugs = d.PaxosBugs
		cfg.Preferred, cfg.Home = p.Preferred(sh), sh.Home
		if _, err := s.node.AddGroup(cfg); err != nil {
			return err
		}
		s.log.Info("hosting replica", "group", sh.Group, "replica", cfg.Replica, "voter", slices.Contains(cfg.Voters, cfg.Replica))
	}
	return nil
}

// Start runs the membership loop: introduce ourselves to the join
// addresses, learn every node they know and the placement, and keep doing
// it so later nodes and address changes spread.
func (s *Server) Start() {
	s.guard.Start()
	go s.watchHealth()
	go s.watchClock()
	go func() {
		wait := 200 * time.Millisecond
		for {
			s.joinOnce()
			select {
			case <-s.stop:
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, 5*time.Second)
		}
	}()
}

func (s *Server) joinOnce() {
	targets := slices.Clone(s.cfg.Join)
	s.mu.RLock()
	for _, n := range s.dir {
		if n.ID != s.cfg.Self.ID && !slices.Contains(targets, n.Addr) {
			targets = append(targets, n.Addr)
		}
	}
	s.mu.RUnlock()
	for _, addr := range targets {
		if addr == s.cfg.Self.Addr {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := s.cfg.Dial(ctx, addr)
		if err != nil {
			cancel()
			continue
		}
		resp, err := meridianpb.NewInternalClient(conn).Join(ctx, &meridianpb.JoinRequest{Node: nodeToPB(s.cfg.Self), ClusterId: s.clusterID()})
		cancel()
		_ = conn.Close()
		if err != nil {
			s.log.Debug("join failed", "addr", addr, "err", err)
			continue
		}
		if id := s.clusterID(); id != "" && resp.Placement != nil && resp.Placement.ClusterId != id {
			continue // another cluster at a reused address
		}
		s.learn(resp.Nodes)
		if resp.Placement != nil && !s.Initialized() {
			if p, err := PlacementFromPB(resp.Placement); err == nil {
				if err := s.install(p); err != nil && !errors.Is(err, errForeignPlacement) {
					s.log.Error("installing placement", "err", err)
				}
			}
		}
	}
}

func nodeToPB(n node.NodeInfo) *meridianpb.NodeInfo {
	return &meridianpb.NodeInfo{Id: uint64(n.ID), Region: n.Region, Addr: n.Addr}
}

func (s *Server) learn(nodes []*meridianpb.NodeInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range nodes {
		if n == nil || n.Id == 0 || n.Addr == "" || n.Region == "" {
			continue
		}
		id := node.NodeID(n.Id)
		if id == s.cfg.Self.ID {
			continue
		}
		s.dir[id] = node.NodeInfo{ID: id, Region: n.Region, Addr: n.Addr}
	}
}

// RegionOf returns the region of the node at addr ("" if unknown).
func (s *Server) RegionOf(addr string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, n := range s.dir {
		if n.Addr == addr {
			return n.Region
		}
	}
	if s.placement != nil {
		for _, n := range s.placement.Nodes {
			if n.Addr == addr {
				return n.Region
			}
		}
	}
	return ""
}

// Nodes returns the directory.
func (s *Server) Nodes() []node.NodeInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]node.NodeInfo, 0, len(s.dir))
	for _, n := range s.dir {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b node.NodeInfo) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

// Close stops the membership loop, the transport and the groups (the
// engine is the caller's).
func (s *Server) Close() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.node.Stop()
	s.peers.Close()
}

// ---------------------------------------------------------------------------
// Client API

// group returns the local replica of a group, or an error pointing at its
// leader.
func (s *Server) group(id uint64) (*node.Group, error) {
	if g := s.node.Group(id); g != nil {
		return g, nil
	}
	p, ok := s.Placement()
	if !ok {
		return nil, status.Error(codes.FailedPrecondition, "the cluster is not initialized (run meridian init)")
	}
	if _, ok := p.Shard(id); !ok {
		return nil, status.Errorf(codes.NotFound, "no group %d", id)
	}
	return nil, statusError(fmt.Errorf("%w: this node hosts no replica of group %d", txn.ErrNotLeader, id), s.hint(id))
}

func (s *Server) hint(group uint64) *meridianpb.LeaderHint {
	h := &meridianpb.LeaderHint{Group: group}
	if n := s.node.LeaderNode(group); n != 0 {
		h.Node, h.Addr = uint64(n), s.addrOf(n)
		return h
	}
	if p, ok := s.Placement(); ok {
		if sh, ok := p.Shard(group); ok {
			for _, r := range sh.Replicas {
				if r.Voter {
					h.Node, h.Addr = uint64(r.Node), s.addrOf(r.Node)
					break
				}
			}
		}
	}
	return h
}

// do runs a request at the local replica and maps the outcome.
func (s *Server) do(ctx context.Context, g *node.Group, req txn.Request) (node.Reply, error) {
	rep, err := g.Do(ctx, req)
	if err == nil {
		err = rep.Err
	}
	return rep, s.replyError(g, rep, err)
}

// replyError maps a request's failure to a status, with a leader hint
// where one helps.
func (s *Server) replyError(g *node.Group, rep node.Reply, err error) error {
	if err == nil {
		return nil
	}
	var h *meridianpb.LeaderHint
	switch {
	case errors.Is(err, node.ErrStopped):
		h = s.hint(g.ID()) // this replica is gone: any guess beats none
	case errors.Is(err, txn.ErrNotLeader):
		// The leader the replica knows of, if any: a replica that knows
		// none (a leader whose lease lapsed among them) sends the client
		// nowhere, rather than back to itself or to a guess.
		if n, ok := g.Config().Nodes[rep.Hint]; ok && rep.Hint != 0 && n != s.cfg.Self.ID {
			h = &meridianpb.LeaderHint{Group: g.ID(), Node: uint64(n), Addr: s.addrOf(n)}
		}
	}
	return statusError(err, h)
}

// Read is a locking read in a read-write transaction.
func (s *Server) Read(ctx context.Context, r *meridianpb.ReadRequest) (*meridianpb.ReadResponse, error) {
	g, req, err := s.readRequest(r)
	if err != nil {
		return nil, err
	}
	rep, err := s.do(ctx, g, req)
	if err != nil {
		return nil, err
	}
	return s.readResponse(rep), nil
}

func (s *Server) readRequest(r *meridianpb.ReadRequest) (*node.Group, txn.Request, error) {
	meta, err := metaFromPB(r.Txn)
	if err != nil {
		return nil, txn.Request{}, err
	}
	req := txn.Request{Kind: txn.ReqRead, Txn: meta, Epoch: r.Epoch}
	if err := spanInto(r.Span, &req); err != nil {
		return nil, req, err
	}
	g, err := s.group(r.Group)
	if err != nil {
		return nil, req, err
	}
	if err := spanInGroup(&req, g.ID(), g.Config().Start, g.Config().End); err != nil {
		return nil, req, err
	}
	return g, req, nil
}

func (s *Server) readResponse(rep node.Reply) *meridianpb.ReadResponse {
	return &meridianpb.ReadResponse{Kvs: kvsToPB(rep.KVs), Priority: int64(rep.Priority), Epoch: rep.Epoch, ServedBy: uint64(s.cfg.Self.ID)}
}

// Commit commits a read-write transaction at its coordinator group.
func (s *Server) Commit(ctx context.Context, r *meridianpb.CommitRequest) (*meridianpb.CommitResponse, error) {
	g, req, err := s.commitRequest(r)
	if err != nil {
		return nil, err
	}
	rep, err := s.do(ctx, g, req)
	if err != nil {
		return nil, err
	}
	return commitResponse(rep), nil
}

func commitResponse(rep node.Reply) *meridianpb.CommitResponse {
	return &meridianpb.CommitResponse{CommitTs: int64(rep.TS), CommitWaitExposedNs: int64(rep.CommitWait),
		LocksNs: int64(rep.Phases.Locks), PrepareNs: int64(rep.Phases.Prepare), PaxosNs: int64(rep.Phases.Paxos)}
}

func (s *Server) commitRequest(r *meridianpb.CommitRequest) (*node.Group, txn.Request, error) {
	meta, err := metaFromPB(r.Txn)
	if err != nil {
		return nil, txn.Request{}, err
	}
	if len(r.Participants) == 0 || len(r.Participants) > MaxParticipants {
		return nil, txn.Request{}, invalid("%d participants (want 1 to %d)", len(r.Participants), MaxParticipants)
	}
	req := txn.Request{Kind: txn.ReqCommit, Txn: meta}
	seen := map[uint64]bool{}
	for _, p := range r.Participants {
		if p == nil || seen[p.Group] {
			return nil, req, invalid("participants must name distinct groups")
		}
		seen[p.Group] = true
		ws, err := mutationsFromPB(p.Writes)
		if err != nil {
			return nil, req, err
		}
		if p.Read && p.Epoch == 0 {
			return nil, req, invalid("participant %d read without a lock epoch", p.Group)
		}
		req.Participants = append(req.Participants, txn.Participant{Group: p.Group, Writes: ws, Read: p.Read, Epoch: p.Epoch})
	}
	if !seen[r.Coordinator] {
		return nil, req, invalid("the coordinator group %d is not a participant", r.Coordinator)
	}
	if p, ok := s.Placement(); ok {
		for _, part := range req.Participants {
			sh, ok := p.Shard(part.Group)
			if !ok {
				return nil, req, status.Errorf(codes.NotFound, "no group %d", part.Group)
			}
			for _, w := range part.Writes {
				if !sh.Contains(w.Key) {
					return nil, req, invalid("key %q is not in group %d's range", w.Key, part.Group)
				}
			}
		}
	}
	g, err := s.group(r.Coordinator)
	if err != nil {
		return nil, req, err
	}
	return g, req, nil
}

// Rollback releases a transaction's locks at one group.
func (s *Server) Rollback(ctx context.Context, r *meridianpb.RollbackRequest) (*meridianpb.RollbackResponse, error) {
	g, req, err := s.rollbackRequest(r)
	if err != nil {
		return nil, err
	}
	if _, err := s.do(ctx, g, req); err != nil {
		return nil, err
	}
	return &meridianpb.RollbackResponse{}, nil
}

func (s *Server) rollbackRequest(r *meridianpb.RollbackRequest) (*node.Group, txn.Request, error) {
	meta, err := metaFromPB(r.Txn)
	if err != nil {
		return nil, txn.Request{}, err
	}
	g, err := s.group(r.Group)
	if err != nil {
		return nil, txn.Request{}, err
	}
	return g, txn.Request{Kind: txn.ReqRollback, Txn: meta, Epoch: r.Epoch}, nil
}

// SnapshotRead is a lock-free read at any replica.
func (s *Server) SnapshotRead(ctx context.Context, r *meridianpb.SnapshotReadRequest) (*meridianpb.ReadResponse, error) {
	req := txn.Request{Kind: txn.ReqSnapshotRead}
	if err := spanInto(r.Span, &req); err != nil {
		return nil, err
	}
	bounds := 0
	switch {
	case r.ReadTs > 0:
		bounds++
		req.TS = tt.Timestamp(r.ReadTs)
	}
	if r.Strong {
		bounds++
		req.SingleGroup = r.SingleGroup
	}
	if r.MaxStalenessNs > 0 || r.MinReadTs > 0 {
		bounds++
		req.Kind = txn.ReqStaleRead
		req.MaxStaleness = time.Duration(r.MaxStalenessNs)
		req.MinTS = tt.Timestamp(r.MinReadTs)
	}
	if r.ExactStalenessNs > 0 {
		bounds++
		iv, err := s.cfg.Clock.Now()
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "clock: %v", err)
		}
		req.TS = iv.Latest.Add(-time.Duration(r.ExactStalenessNs))
	}
	if bounds != 1 || r.ReadTs < 0 || r.MaxStalenessNs < 0 || r.MinReadTs < 0 || r.ExactStalenessNs < 0 {
		return nil, invalid("give exactly one timestamp bound (read_ts, strong, max_staleness/min_read_ts or exact_staleness)")
	}
	g, err := s.group(r.Group)
	if err != nil {
		return nil, err
	}
	if err := spanInGroup(&req, g.ID(), g.Config().Start, g.Config().End); err != nil {
		return nil, err
	}
	if req.Kind == txn.ReqSnapshotRead && req.TS == 0 && req.SingleGroup {
		// The leader serves a single-group strong read on this goroutine
		// when it can (no round through the group's loop).
		kvs, ts, ok, err := g.StrongRead(txn.ReadTask{Key: req.Key, Start: req.Start, End: req.End, Limit: req.Limit, Reverse: req.Reverse})
		if ok {
			if err != nil {
				return nil, statusError(err, nil)
			}
			return &meridianpb.ReadResponse{Kvs: kvsToPB(kvs), ReadTs: int64(ts), ServedBy: uint64(s.cfg.Self.ID)}, nil
		}
	}
	rep, err := s.do(ctx, g, req)
	if err != nil {
		return nil, err
	}
	return &meridianpb.ReadResponse{Kvs: kvsToPB(rep.KVs), ReadTs: int64(rep.ReadTS), ServedBy: uint64(s.cfg.Self.ID)}, nil
}

// StrongTimestamp picks a strong read-only transaction's timestamp.
func (s *Server) StrongTimestamp(ctx context.Context, r *meridianpb.StrongTimestampRequest) (*meridianpb.StrongTimestampResponse, error) {
	g, err := s.group(r.Group)
	if err != nil {
		return nil, err
	}
	rep, err := s.do(ctx, g, txn.Request{Kind: txn.ReqStrongTS, SingleGroup: r.SingleGroup})
	if err != nil {
		return nil, err
	}
	return &meridianpb.StrongTimestampResponse{Ts: int64(rep.TS)}, nil
}

// Locate returns the placement and the leaders this node knows.
func (s *Server) Locate(ctx context.Context, _ *meridianpb.LocateRequest) (*meridianpb.LocateResponse, error) {
	p, ok := s.Placement()
	if !ok {
		return nil, status.Error(codes.FailedPrecondition, "the cluster is not initialized (run meridian init)")
	}
	pb := PlacementToPB(p)
	for _, n := range pb.Nodes {
		n.Addr = s.addrOf(node.NodeID(n.Id))
	}
	resp := &meridianpb.LocateResponse{Placement: pb}
	for _, sh := range p.Shards {
		if n := s.node.KnownLeader(sh.Group); n != 0 {
			resp.Leaders = append(resp.Leaders, &meridianpb.LeaderInfo{Group: sh.Group, Node: uint64(n)})
		}
	}
	return resp, nil
}

// ---------------------------------------------------------------------------
// Between nodes

// Peer receives a peer node's stream of batches. A batch with a message
// that does not decode is refused whole: nothing of it is delivered.
func (s *Server) Peer(stream meridianpb.Internal_PeerServer) error {
	return receive(s, stream.Recv, func() error { return stream.SendAndClose(&meridianpb.Ack{}) }, func(b *meridianpb.PeerBatch) error {
		if err := s.sameCluster(b.ClusterId); err != nil {
			return err
		}
		pm := make([]paxos.Message, 0, len(b.Paxos))
		for _, raw := range b.Paxos {
			m, err := paxos.DecodeMessage(raw)
			if err != nil {
				return status.Errorf(codes.InvalidArgument, "paxos message: %v", err)
			}
			pm = append(pm, m)
		}
		tm := make([]txn.Msg, 0, len(b.Txn))
		for _, raw := range b.Txn {
			m, err := txnMsgFromPB(raw)
			if err != nil {
				return status.Errorf(codes.InvalidArgument, "txn message: %v", err)
			}
			tm = append(tm, m)
		}
		if len(pm) > 0 {
			s.node.DeliverPaxos(pm)
		}
		if len(tm) > 0 {
			s.node.DeliverTxn(node.NodeID(b.FromNode), tm)
		}
		return nil
	})
}

// newClusterID returns 128 random bits in hex.
func newClusterID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// sameCluster refuses a batch from a node of another cluster (say, a node
// of an old cluster still running on a reused address): its messages
// would otherwise reach groups that share its group IDs. A node not yet
// initialized hosts no groups and drops whatever arrives.
func (s *Server) sameCluster(sender string) error {
	if mine := s.clusterID(); mine != "" && sender != mine {
		return status.Errorf(codes.FailedPrecondition, "batch from cluster %q, this node is in cluster %q", sender, mine)
	}
	return nil
}

// receive runs a node-to-node stream: each batch from recv goes to handle
// until the peer closes the stream (then closed answers it) or handle
// fails. Once this server closes, the next batch ends the stream
// Unavailable: peers send at least every heartbeat, so a graceful stop
// does not wait long on peers that keep their streams open (and the
// caller cuts off what remains).
func receive[T any](s *Server, recv func() (T, error), closed func() error, handle func(T) error) error {
	for {
		v, err := recv()
		if err == io.EOF {
			return closed()
		}
		if err != nil {
			return err
		}
		select {
		case <-s.stop:
			return status.Error(codes.Unavailable, "node stopping")
		default:
		}
		if err := handle(v); err != nil {
			return err
		}
	}
}

// Join adds the caller to the directory and returns what we know.
func (s *Server) Join(ctx context.Context, r *meridianpb.JoinRequest) (*meridianpb.JoinResponse, error) {
	if r.Node == nil || r.Node.Id == 0 || r.Node.Addr == "" || r.Node.Region == "" {
		return nil, invalid("join needs the node's ID, region and address")
	}
	switch mine := s.clusterID(); {
	case mine != "" && r.ClusterId != "" && r.ClusterId != mine:
		return nil, status.Errorf(codes.FailedPrecondition, "node %d belongs to cluster %s, this is cluster %s", r.Node.Id, r.ClusterId, mine)
	case mine == "" && r.ClusterId != "":
		// An initialized node of some cluster found us (perhaps at a reused
		// address): we join clusters through our own --join targets only.
	default:
		s.learn([]*meridianpb.NodeInfo{r.Node})
	}
	resp := &meridianpb.JoinResponse{}
	for _, n := range s.Nodes() {
		resp.Nodes = append(resp.Nodes, nodeToPB(n))
	}
	if p, ok := s.Placement(); ok {
		resp.Placement = PlacementToPB(p)
	}
	return resp, nil
}

// InstallPlacement adopts the placement init wrote.
func (s *Server) InstallPlacement(ctx context.Context, r *meridianpb.InstallPlacementRequest) (*meridianpb.Ack, error) {
	p, err := PlacementFromPB(r.Placement)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if cur, ok := s.Placement(); ok {
		if !samePlacement(cur, p) {
			return nil, status.Error(codes.FailedPrecondition, "this node already has a different placement")
		}
		return &meridianpb.Ack{}, nil
	}
	if err := s.install(p); err != nil {
		if errors.Is(err, errForeignPlacement) {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		return nil, status.Errorf(codes.Internal, "install: %v", err)
	}
	return &meridianpb.Ack{}, nil
}

var errForeignPlacement = errors.New("rpc: foreign placement")

func samePlacement(a, b node.Placement) bool {
	pa, pb := PlacementToPB(a), PlacementToPB(b)
	if len(pa.Shards) != len(pb.Shards) {
		return false
	}
	for i := range pa.Shards {
		if pa.Shards[i].String() != pb.Shards[i].String() {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// Administration

// Init computes the placement over every node that has joined and installs
// it everywhere.
func (s *Server) Init(ctx context.Context, r *meridianpb.InitRequest) (*meridianpb.InitResponse, error) {
	if s.Initialized() {
		return nil, status.Error(codes.FailedPrecondition, "the cluster is already initialized")
	}
	spec := node.PlacementSpec{Policy: r.Policy, Replicas: int(r.Replicas), ShardsPerRegion: int(r.ShardsPerRegion), Lease: time.Duration(r.LeaseNs)}
	if spec.Replicas < 0 || spec.ShardsPerRegion < 0 || r.LeaseNs < 0 || r.ShardsPerRegion > 64 {
		return nil, invalid("bad init parameters")
	}
	s.joinOnce()
	p, err := node.ComputePlacement(s.Nodes(), spec)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	p.ClusterID = newClusterID()
	pb := PlacementToPB(p)
	for _, n := range p.Nodes {
		if n.ID == s.cfg.Self.ID {
			continue
		}
		if err := s.push(ctx, n.Addr, pb); err != nil {
			return nil, status.Errorf(codes.Unavailable, "installing the placement on node %d (%s): %v", n.ID, n.Addr, err)
		}
	}
	if err := s.install(p); err != nil {
		return nil, status.Errorf(codes.Internal, "install: %v", err)
	}
	s.log.Info("cluster initialized", "shards", len(p.Shards), "nodes", len(p.Nodes), "policy", spec.Policy)
	return &meridianpb.InitResponse{Placement: pb}, nil
}

func (s *Server) push(ctx context.Context, addr string, pb *meridianpb.Placement) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := s.cfg.Dial(cctx, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = meridianpb.NewInternalClient(conn).InstallPlacement(cctx, &meridianpb.InstallPlacementRequest{Placement: pb})
	return err
}

// Status reports the node, its clock and its replicas.
func (s *Server) Status(ctx context.Context, _ *meridianpb.StatusRequest) (*meridianpb.StatusResponse, error) {
	resp := &meridianpb.StatusResponse{Node: nodeToPB(s.cfg.Self), Initialized: s.Initialized(), Draining: s.node.Draining()}
	resp.Clock = s.clockStatus()
	for _, g := range s.node.Groups() {
		st := g.Status()
		gs := &meridianpb.GroupStatus{Group: st.Group, Replica: uint64(st.Replica), Role: st.Paxos.Role, Ballot: st.Paxos.Promised.String(),
			LeaseEndNs: int64(st.Paxos.LeaseEnd), AppliedIndex: st.Paxos.Applied.Index, SafeTimeNs: int64(st.Txn.SafeTime),
			Prepared: int32(st.Txn.Prepared), ActiveTxns: int32(st.Txn.Active), Locks: int32(st.Txn.Locks), Voter: st.Voter}
		if st.Leader != 0 {
			gs.LeaderNode = uint64(g.Config().Nodes[st.Leader])
		}
		resp.Groups = append(resp.Groups, gs)
	}
	return resp, nil
}

// Netem changes the demo cluster's latency simulator.
func (s *Server) Netem(ctx context.Context, r *meridianpb.NetemRequest) (*meridianpb.NetemResponse, error) {
	ne := s.cfg.Netem
	if ne == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node runs on a real network: there is no latency simulator to change")
	}
	var err error
	switch r.Action {
	case "partition":
		err = ne.Partition(r.A, r.B, r.OneWay)
	case "heal":
		ne.Heal()
	case "loss":
		err = ne.SetLoss(r.Loss)
	case "slow":
		err = ne.Slow(r.A, r.B, time.Duration(r.DelayNs))
	case "status", "":
	default:
		return nil, invalid("unknown action %q (partition, heal, loss, slow, status)", r.Action)
	}
	if err != nil {
		return nil, invalid("%v", err)
	}
	s.log.Info("latency simulator changed", "action", r.Action, "a", r.A, "b", r.B, "one_way", r.OneWay, "loss", r.Loss,
		"delay", time.Duration(r.DelayNs))
	return &meridianpb.NetemResponse{Cuts: ne.Cuts(), Loss: ne.Loss()}, nil
}
