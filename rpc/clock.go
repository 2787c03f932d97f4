package rpc

import (
	"context"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/tt"
)

// Clock cross-checks between nodes (node.ClockGuard, architecture
// invariant 2). Every node asks every other node of the cluster for its
// interval every clockProbeEvery, on the connection its Paxos stream uses
// (a dedicated call, so that each answer has a round trip of its own to
// widen the comparison by), and evaluates the guard's rules as often.
const (
	clockProbeEvery   = 500 * time.Millisecond
	clockProbeTimeout = 2 * time.Second
)

func stateToPB(s node.ClockState) meridianpb.ClockState {
	switch s {
	case node.ClockTrusted:
		return meridianpb.ClockState_CLOCK_STATE_TRUSTED
	case node.ClockUnconfirmed:
		return meridianpb.ClockState_CLOCK_STATE_UNCONFIRMED
	case node.ClockFenced:
		return meridianpb.ClockState_CLOCK_STATE_FENCED
	}
	return meridianpb.ClockState_CLOCK_STATE_UNHEALTHY
}

func stateFromPB(s meridianpb.ClockState) node.ClockState {
	switch s {
	case meridianpb.ClockState_CLOCK_STATE_TRUSTED:
		return node.ClockTrusted
	case meridianpb.ClockState_CLOCK_STATE_UNCONFIRMED:
		return node.ClockUnconfirmed
	case meridianpb.ClockState_CLOCK_STATE_FENCED:
		return node.ClockFenced
	}
	return node.ClockUnhealthy
}

// members returns the cluster's nodes: the placement's, or before init the
// directory's.
func (s *Server) members() []node.NodeID {
	if p, ok := s.Placement(); ok {
		ids := make([]node.NodeID, 0, len(p.Nodes))
		for _, n := range p.Nodes {
			ids = append(ids, n.ID)
		}
		return ids
	}
	var ids []node.NodeID
	for _, n := range s.Nodes() {
		ids = append(ids, n.ID)
	}
	return ids
}

// ClockCheck answers a peer's clock exchange.
func (s *Server) ClockCheck(ctx context.Context, r *meridianpb.ClockCheckRequest) (*meridianpb.ClockCheckResponse, error) {
	if id := s.clusterID(); id != "" && r.ClusterId != "" && r.ClusterId != id {
		return nil, status.Errorf(codes.FailedPrecondition, "node %d belongs to cluster %s, not %s", s.cfg.Self.ID, id, r.ClusterId)
	}
	iv, st := s.guard.Reading()
	return &meridianpb.ClockCheckResponse{EarliestNs: int64(iv.Earliest), LatestNs: int64(iv.Latest), State: stateToPB(st)}, nil
}

// watchClock probes every other member on its own goroutine and evaluates
// the guard's rules, until the server closes.
func (s *Server) watchClock() {
	probing := map[node.NodeID]bool{}
	t := time.NewTicker(clockProbeEvery)
	defer t.Stop()
	for {
		for _, id := range s.members() {
			if id != s.cfg.Self.ID && !probing[id] {
				probing[id] = true
				go s.probeClock(id)
			}
		}
		s.guard.Evaluate(time.Now())
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// probeClock exchanges intervals with peer id every clockProbeEvery.
func (s *Server) probeClock(id node.NodeID) {
	t := time.NewTicker(clockProbeEvery)
	defer t.Stop()
	for {
		if !slices.Contains(s.members(), id) {
			return
		}
		if r, ok := s.exchangeClock(id); ok {
			s.guard.Observe(r)
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// exchangeClock asks peer id for its interval, bracketed by this node's;
// ok is false when this node itself has no interval to compare.
func (s *Server) exchangeClock(id node.NodeID) (node.PeerReading, bool) {
	r := node.PeerReading{Peer: id}
	conn, err := s.peers.Conn(id)
	if err != nil {
		r.Err, r.At = err, time.Now()
		return r, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), clockProbeTimeout)
	defer cancel()
	sent, st := s.guard.Reading()
	start := time.Now()
	resp, err := meridianpb.NewInternalClient(conn).ClockCheck(ctx, &meridianpb.ClockCheckRequest{FromNode: uint64(s.cfg.Self.ID), ClusterId: s.clusterID()})
	r.At = time.Now()
	r.RTT = r.At.Sub(start)
	recv, st2 := s.guard.Reading()
	if err != nil {
		r.Err = err
		return r, true
	}
	if st == node.ClockUnhealthy || st2 == node.ClockUnhealthy {
		return r, false
	}
	r.Sent, r.Received = sent, recv
	r.Theirs = tt.Interval{Earliest: tt.Timestamp(resp.EarliestNs), Latest: tt.Timestamp(resp.LatestNs)}
	r.State = stateFromPB(resp.State)
	if !r.Theirs.Valid() || r.Theirs.Latest == 0 {
		r.State = node.ClockUnhealthy
	}
	return r, true
}

// clockStatus fills the clock part of a status answer.
func (s *Server) clockStatus() *meridianpb.ClockStatus {
	cs := &meridianpb.ClockStatus{}
	if d, ok := s.cfg.Clock.(tt.Describer); ok {
		cs.Source = d.Describe()
	}
	if iv, err := s.cfg.Clock.Now(); err != nil {
		cs.Error = err.Error()
	} else {
		cs.Healthy, cs.EarliestNs, cs.LatestNs, cs.EpsilonNs = true, int64(iv.Earliest), int64(iv.Latest), int64(iv.Epsilon())
	}
	gs := s.guard.Status()
	cs.State = stateToPB(gs.State)
	if f := gs.Fence; f != nil {
		cs.FenceKind, cs.FenceReason, cs.FencedSinceNs, cs.HoldLeftNs = f.Kind.String(), f.Reason, f.Since.UnixNano(), int64(gs.HoldLeft)
	}
	for _, p := range gs.Peers {
		cp := &meridianpb.ClockPeer{Node: uint64(p.Peer), AgeNs: int64(time.Since(p.At)), RttNs: int64(p.RTT)}
		if p.Err != nil {
			cp.Error = p.Err.Error()
		} else {
			cp.Agrees, cp.State, cp.EarliestNs, cp.LatestNs = p.Agrees(), stateToPB(p.State), int64(p.Theirs.Earliest), int64(p.Theirs.Latest)
		}
		cs.Peers = append(cs.Peers, cp)
	}
	return cs
}

// ClockFence fences this node's clock, or lifts its fence, for an
// operator.
func (s *Server) ClockFence(ctx context.Context, r *meridianpb.ClockFenceRequest) (*meridianpb.ClockStatus, error) {
	var err error
	if r.Unfence {
		err = s.guard.UnfenceByOperator()
	} else {
		err = s.guard.FenceByOperator(r.Reason)
	}
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	s.log.Warn("clock fence changed by an operator", "unfence", r.Unfence, "reason", r.Reason)
	return s.clockStatus(), nil
}
