package rpc

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridiandb/meridian/internal/txnid"
	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/txn"
)

func newMeta() *meridianpb.TxnMeta {
	return &meridianpb.TxnMeta{Id: txnid.New()}
}

func put(key, value string) *meridianpb.Mutation {
	return &meridianpb.Mutation{Key: []byte(key), Value: []byte(value)}
}

// groupOf returns the group of the shard holding key.
func groupOf(t testing.TB, p *meridianpb.Placement, key string) uint64 {
	t.Helper()
	for _, s := range p.Shards {
		if key >= string(s.Start) && (len(s.End) == 0 || key < string(s.End)) {
			return s.Group
		}
	}
	t.Fatalf("no shard holds %q", key)
	return 0
}

func shardOf(t testing.TB, p *meridianpb.Placement, group uint64) *meridianpb.ShardInfo {
	t.Helper()
	for _, s := range p.Shards {
		if s.Group == group {
			return s
		}
	}
	t.Fatalf("no group %d", group)
	return nil
}

func hosts(s *meridianpb.ShardInfo, id node.NodeID) bool {
	for _, r := range s.Replicas {
		if r.Node == uint64(id) {
			return true
		}
	}
	return false
}

// commitAt commits a single-group blind write at the group's leader,
// retrying while leadership settles.
func commitAt(t testing.TB, c *testCluster, leaders map[uint64]node.NodeID, group uint64, ms ...*meridianpb.Mutation) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := &meridianpb.CommitRequest{Coordinator: group, Txn: newMeta(), Participants: []*meridianpb.Participant{{Group: group, Writes: ms}}}
	target := c.node(leaders[group])
	for {
		resp, err := target.api().Commit(ctx, req)
		if err == nil {
			return resp.CommitTs
		}
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			t.Fatalf("commit at group %d: %v", group, err)
		}
		if h, ok := LeaderHintOf(err); ok && h.Node != 0 {
			target = c.node(node.NodeID(h.Node))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// strongGet reads key strongly at the group's leader.
func strongGet(t testing.TB, c *testCluster, leaders map[uint64]node.NodeID, group uint64, key string) *meridianpb.ReadResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	target := c.node(leaders[group])
	for {
		resp, err := target.api().SnapshotRead(ctx, &meridianpb.SnapshotReadRequest{Group: group, Strong: true, SingleGroup: true,
			Span: &meridianpb.KeySpan{Key: []byte(key)}})
		if err == nil {
			return resp
		}
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			t.Fatalf("read %q at group %d: %v", key, group, err)
		}
		if h, ok := LeaderHintOf(err); ok && h.Node != 0 {
			target = c.node(node.NodeID(h.Node))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServer runs the gRPC API of a four-node, three-region cluster.
func TestServer(t *testing.T) {
	c := newTestCluster(t, 4)
	p, leaders := c.init()
	gA, gZ := groupOf(t, p, "a"), groupOf(t, p, "z")
	if gA == gZ {
		t.Fatalf("keys a and z in one group %d", gA)
	}

	t.Run("Validation", func(t *testing.T) { testValidation(t, c, p, leaders) })
	t.Run("FollowerAnswersWithLeaderHint", func(t *testing.T) { testFollowerHint(t, c, p) })
	t.Run("TxnStreamRefusesUnknownTypes", func(t *testing.T) { testTxnStreamBadType(t, c) })
	t.Run("PaxosStreamRefusesGarbage", func(t *testing.T) { testPaxosStreamGarbage(t, c) })
	t.Run("SnappyOnTheWire", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := c.nodes[0].admin().Status(ctx, &meridianpb.StatusRequest{}, grpc.UseCompressor(SnappyName))
		if err != nil || !st.Initialized {
			t.Fatalf("status with snappy: %v %v", st, err)
		}
	})
	t.Run("InitAgain", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, n := range c.nodes {
			_, err := n.admin().Init(ctx, &meridianpb.InitRequest{Policy: node.PolicySpread, Replicas: 3, LeaseNs: int64(time.Second)})
			if status.Code(err) != codes.FailedPrecondition {
				t.Errorf("second init at node %d: %v, want FailedPrecondition", n.id, err)
			}
		}
	})
	t.Run("ReadsStayInTheirGroup", func(t *testing.T) { testReadsStayInGroup(t, c, p, leaders) })
	t.Run("StillServes", func(t *testing.T) {
		ts := commitAt(t, c, leaders, gA, put("a/still", "serving"))
		resp := strongGet(t, c, leaders, gA, "a/still")
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "serving" || resp.Kvs[0].Ts != ts || resp.ReadTs < ts {
			t.Fatalf("read after commit at %d: %v", ts, resp)
		}
	})
}

func testValidation(t *testing.T, c *testCluster, p *meridianpb.Placement, leaders map[uint64]node.NodeID) {
	gA, gZ := groupOf(t, p, "a"), groupOf(t, p, "z")
	leaderA := c.node(leaders[gA])
	big := bytes.Repeat([]byte("k"), MaxKeySize+1)
	tooManyWrites := make([]*meridianpb.Mutation, MaxWrites+1)
	for i := range tooManyWrites {
		tooManyWrites[i] = put(fmt.Sprintf("a%05d", i), "v")
	}
	tooManyParts := make([]*meridianpb.Participant, MaxParticipants+1)
	for i := range tooManyParts {
		tooManyParts[i] = &meridianpb.Participant{Group: uint64(i + 1)}
	}
	commit := func(req *meridianpb.CommitRequest) func(context.Context, *testNode) error {
		return func(ctx context.Context, n *testNode) error { _, err := n.api().Commit(ctx, req); return err }
	}
	read := func(req *meridianpb.ReadRequest) func(context.Context, *testNode) error {
		return func(ctx context.Context, n *testNode) error { _, err := n.api().Read(ctx, req); return err }
	}
	snap := func(req *meridianpb.SnapshotReadRequest) func(context.Context, *testNode) error {
		return func(ctx context.Context, n *testNode) error { _, err := n.api().SnapshotRead(ctx, req); return err }
	}
	single := func(g uint64, ms ...*meridianpb.Mutation) *meridianpb.CommitRequest {
		return &meridianpb.CommitRequest{Coordinator: g, Txn: newMeta(), Participants: []*meridianpb.Participant{{Group: g, Writes: ms}}}
	}
	key := func(k string) *meridianpb.KeySpan { return &meridianpb.KeySpan{Key: []byte(k)} }
	cases := []struct {
		name string
		call func(context.Context, *testNode) error
		want codes.Code
	}{
		// Keys and values.
		{"commit empty key", commit(single(gA, put("", "v"))), codes.InvalidArgument},
		{"read empty key", read(&meridianpb.ReadRequest{Group: gA, Txn: newMeta(), Span: &meridianpb.KeySpan{}}), codes.InvalidArgument},
		{"commit key over 4 KiB", commit(single(gA, &meridianpb.Mutation{Key: big, Value: []byte("v")})), codes.InvalidArgument},
		{"read key over 4 KiB", read(&meridianpb.ReadRequest{Group: gA, Txn: newMeta(), Span: &meridianpb.KeySpan{Key: big}}), codes.InvalidArgument},
		{"snapshot read key over 4 KiB", snap(&meridianpb.SnapshotReadRequest{Group: gA, Strong: true, Span: &meridianpb.KeySpan{Key: big}}), codes.InvalidArgument},
		{"range bound over 4 KiB", snap(&meridianpb.SnapshotReadRequest{Group: gA, Strong: true, Span: &meridianpb.KeySpan{Start: []byte("a"), End: big}}), codes.InvalidArgument},
		{"value over 1 MiB", commit(single(gA, &meridianpb.Mutation{Key: []byte("a"), Value: make([]byte, MaxValueSize+1)})), codes.InvalidArgument},
		{"delete with a value", commit(single(gA, &meridianpb.Mutation{Key: []byte("a"), Value: []byte("v"), Delete: true})), codes.InvalidArgument},
		{"too many writes", commit(single(gA, tooManyWrites...)), codes.InvalidArgument},
		// Participants.
		{"no participants", commit(&meridianpb.CommitRequest{Coordinator: gA, Txn: newMeta()}), codes.InvalidArgument},
		{"too many participants", commit(&meridianpb.CommitRequest{Coordinator: 1, Txn: newMeta(), Participants: tooManyParts}), codes.InvalidArgument},
		{"duplicate participant groups", commit(&meridianpb.CommitRequest{Coordinator: gA, Txn: newMeta(), Participants: []*meridianpb.Participant{
			{Group: gA, Writes: []*meridianpb.Mutation{put("a", "1")}}, {Group: gA, Writes: []*meridianpb.Mutation{put("b", "2")}}}}), codes.InvalidArgument},
		{"coordinator not a participant", commit(&meridianpb.CommitRequest{Coordinator: gZ, Txn: newMeta(), Participants: []*meridianpb.Participant{
			{Group: gA, Writes: []*meridianpb.Mutation{put("a", "1")}}}}), codes.InvalidArgument},
		{"write key outside its group", commit(single(gA, put("z", "1"))), codes.InvalidArgument},
		{"read participant without a lock epoch", commit(&meridianpb.CommitRequest{Coordinator: gA, Txn: newMeta(), Participants: []*meridianpb.Participant{
			{Group: gA, Writes: []*meridianpb.Mutation{put("a", "1")}, Read: true}}}), codes.InvalidArgument},
		{"write key outside a participant's group", commit(&meridianpb.CommitRequest{Coordinator: gA, Txn: newMeta(), Participants: []*meridianpb.Participant{
			{Group: gA, Writes: []*meridianpb.Mutation{put("a", "1")}}, {Group: gZ, Writes: []*meridianpb.Mutation{put("b", "2")}}}}), codes.InvalidArgument},
		// Transactions.
		{"missing transaction", read(&meridianpb.ReadRequest{Group: gA, Span: key("a")}), codes.InvalidArgument},
		{"transaction ID of 15 bytes", read(&meridianpb.ReadRequest{Group: gA, Txn: &meridianpb.TxnMeta{Id: make([]byte, 15)}, Span: key("a")}), codes.InvalidArgument},
		{"transaction ID of 17 bytes", commit(&meridianpb.CommitRequest{Coordinator: gA, Txn: &meridianpb.TxnMeta{Id: bytes.Repeat([]byte{1}, 17)},
			Participants: []*meridianpb.Participant{{Group: gA, Writes: []*meridianpb.Mutation{put("a", "1")}}}}), codes.InvalidArgument},
		{"zero transaction ID", func(ctx context.Context, n *testNode) error {
			_, err := n.api().Rollback(ctx, &meridianpb.RollbackRequest{Group: gA, Txn: &meridianpb.TxnMeta{Id: make([]byte, 16)}})
			return err
		}, codes.InvalidArgument},
		{"negative priority", read(&meridianpb.ReadRequest{Group: gA, Txn: &meridianpb.TxnMeta{Id: newMeta().Id, Priority: -1}, Span: key("a")}), codes.InvalidArgument},
		// Spans.
		{"missing span", read(&meridianpb.ReadRequest{Group: gA, Txn: newMeta()}), codes.InvalidArgument},
		{"range without an end", read(&meridianpb.ReadRequest{Group: gA, Txn: newMeta(), Span: &meridianpb.KeySpan{Start: []byte("a")}}), codes.InvalidArgument},
		{"empty range", read(&meridianpb.ReadRequest{Group: gA, Txn: newMeta(), Span: &meridianpb.KeySpan{Start: []byte("b"), End: []byte("b")}}), codes.InvalidArgument},
		{"inverted range", snap(&meridianpb.SnapshotReadRequest{Group: gA, Strong: true, Span: &meridianpb.KeySpan{Start: []byte("c"), End: []byte("b")}}), codes.InvalidArgument},
		{"point read with a range", snap(&meridianpb.SnapshotReadRequest{Group: gA, Strong: true, Span: &meridianpb.KeySpan{Key: []byte("a"), End: []byte("b")}}), codes.InvalidArgument},
		{"negative limit", read(&meridianpb.ReadRequest{Group: gA, Txn: newMeta(), Span: &meridianpb.KeySpan{Start: []byte("a"), End: []byte("b"), Limit: -1}}), codes.InvalidArgument},
		{"limit over the maximum", snap(&meridianpb.SnapshotReadRequest{Group: gA, Strong: true, Span: &meridianpb.KeySpan{Start: []byte("a"), End: []byte("b"), Limit: MaxScanLimit + 1}}), codes.InvalidArgument},
		// Timestamp bounds.
		{"snapshot read without a bound", snap(&meridianpb.SnapshotReadRequest{Group: gA, Span: key("a")}), codes.InvalidArgument},
		{"snapshot read with two bounds", snap(&meridianpb.SnapshotReadRequest{Group: gA, Strong: true, ReadTs: 1, Span: key("a")}), codes.InvalidArgument},
		{"snapshot read with staleness and a timestamp", snap(&meridianpb.SnapshotReadRequest{Group: gA, MaxStalenessNs: 1, ExactStalenessNs: 1, Span: key("a")}), codes.InvalidArgument},
		{"negative read timestamp", snap(&meridianpb.SnapshotReadRequest{Group: gA, Strong: true, ReadTs: -5, Span: key("a")}), codes.InvalidArgument},
		{"negative staleness", snap(&meridianpb.SnapshotReadRequest{Group: gA, ExactStalenessNs: -1, Span: key("a")}), codes.InvalidArgument},
		// Unknown groups.
		{"read unknown group", read(&meridianpb.ReadRequest{Group: 99, Txn: newMeta(), Span: key("a")}), codes.NotFound},
		{"snapshot read unknown group", snap(&meridianpb.SnapshotReadRequest{Group: 99, Strong: true, Span: key("a")}), codes.NotFound},
		{"commit at unknown group", commit(single(99, put("a", "1"))), codes.NotFound},
		{"commit with an unknown participant", commit(&meridianpb.CommitRequest{Coordinator: gA, Txn: newMeta(), Participants: []*meridianpb.Participant{
			{Group: gA, Writes: []*meridianpb.Mutation{put("a", "1")}}, {Group: 99, Writes: []*meridianpb.Mutation{put("a", "2")}}}}), codes.NotFound},
		{"rollback at unknown group", func(ctx context.Context, n *testNode) error {
			_, err := n.api().Rollback(ctx, &meridianpb.RollbackRequest{Group: 99, Txn: newMeta()})
			return err
		}, codes.NotFound},
		{"strong timestamp of unknown group", func(ctx context.Context, n *testNode) error {
			_, err := n.api().StrongTimestamp(ctx, &meridianpb.StrongTimestampRequest{Group: 0})
			return err
		}, codes.NotFound},
		// Node-to-node and administration.
		{"join without an address", func(ctx context.Context, n *testNode) error {
			_, err := n.internal().Join(ctx, &meridianpb.JoinRequest{Node: &meridianpb.NodeInfo{Id: 7, Region: "r"}})
			return err
		}, codes.InvalidArgument},
		{"join from another cluster", func(ctx context.Context, n *testNode) error {
			_, err := n.internal().Join(ctx, &meridianpb.JoinRequest{Node: &meridianpb.NodeInfo{Id: 7, Region: "r", Addr: "127.0.0.1:1"}, ClusterId: "another"})
			return err
		}, codes.FailedPrecondition},
		{"install no placement", func(ctx context.Context, n *testNode) error {
			_, err := n.internal().InstallPlacement(ctx, &meridianpb.InstallPlacementRequest{})
			return err
		}, codes.InvalidArgument},
		{"install a different placement", func(ctx context.Context, n *testNode) error {
			other := &meridianpb.Placement{ClusterId: "another", Regions: []string{"r"}, LeaseNs: int64(time.Second),
				Shards: []*meridianpb.ShardInfo{{Group: 1, Policy: node.PolicySpread}}}
			_, err := n.internal().InstallPlacement(ctx, &meridianpb.InstallPlacementRequest{Placement: other})
			return err
		}, codes.FailedPrecondition},
		{"init when initialized", func(ctx context.Context, n *testNode) error {
			_, err := n.admin().Init(ctx, &meridianpb.InitRequest{Policy: "bogus", Replicas: -1})
			return err
		}, codes.FailedPrecondition},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Every node refuses the request the same way, the group's
			// leader included, and keeps serving.
			for _, n := range append([]*testNode{leaderA}, c.nodes...) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := tc.call(ctx, n)
				cancel()
				if got := status.Code(err); got != tc.want {
					t.Fatalf("node %d: %v (code %v), want %v", n.id, err, got, tc.want)
				}
				if _, ok := LeaderHintOf(err); ok {
					t.Errorf("node %d: a %v error carries a leader hint", n.id, tc.want)
				}
				ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
				_, err = n.admin().Status(ctx, &meridianpb.StatusRequest{})
				cancel()
				if err != nil {
					t.Fatalf("node %d no longer answers: %v", n.id, err)
				}
			}
		})
	}
}

// testFollowerHint: a node that does not lead a group answers UNAVAILABLE
// with a LeaderHint naming the leader (a replica's own view) or, at a node
// without a replica, a voter of the group.
func testFollowerHint(t *testing.T, c *testCluster, p *meridianpb.Placement) {
	checked := 0
	for _, sh := range p.Shards {
		key := append(append([]byte(nil), sh.Start...), 'a')
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			before := c.waitLeaders(ctx, p)
			leader := c.node(before[sh.Group])
			type answer struct {
				n    *testNode
				what string
				err  error
			}
			var answers []answer
			for _, n := range c.nodes {
				if n.id == leader.id {
					continue
				}
				_, err := n.api().Read(ctx, &meridianpb.ReadRequest{Group: sh.Group, Txn: newMeta(), Span: &meridianpb.KeySpan{Key: key}})
				answers = append(answers, answer{n, "Read", err})
				_, err = n.api().Commit(ctx, &meridianpb.CommitRequest{Coordinator: sh.Group, Txn: newMeta(),
					Participants: []*meridianpb.Participant{{Group: sh.Group, Writes: []*meridianpb.Mutation{{Key: key, Value: []byte("v")}}}}})
				answers = append(answers, answer{n, "Commit", err})
			}
			after := c.waitLeaders(ctx, p)
			cancel()
			if after[sh.Group] != before[sh.Group] && attempt < 5 {
				continue // leadership moved while we asked: ask again
			}
			for _, a := range answers {
				n, name, err := a.n, a.what, a.err
				if status.Code(err) != codes.Unavailable {
					t.Errorf("%s of group %d at node %d (hosts a replica: %v): %v, want Unavailable", name, sh.Group, n.id, hosts(sh, n.id), err)
					continue
				}
				h, ok := LeaderHintOf(err)
				if !ok {
					t.Errorf("%s of group %d at node %d: no leader hint in %v", name, sh.Group, n.id, err)
					continue
				}
				if h.Group != sh.Group {
					t.Errorf("hint for group %d, want %d", h.Group, sh.Group)
				}
				if hosts(sh, n.id) {
					// A replica knows its leader.
					if node.NodeID(h.Node) != leader.id || h.Addr != leader.addr {
						t.Errorf("%s of group %d at follower %d: hint %v, want node %d at %s", name, sh.Group, n.id, h, leader.id, leader.addr)
					}
				} else if !hosts(sh, node.NodeID(h.Node)) || h.Addr != c.node(node.NodeID(h.Node)).addr {
					// A node without a replica names a voter (the leader
					// if it heard of it) and its address.
					t.Errorf("%s of group %d at non-replica %d: hint %v names no voter of the group", name, sh.Group, n.id, h)
				}
				checked++
			}
			break
		}
	}
	if checked == 0 {
		t.Fatal("nothing checked")
	}
}

// testTxnStreamBadType: a batch with an unknown message type is refused
// whole, and nothing of it is delivered.
func testTxnStreamBadType(t *testing.T, c *testCluster) {
	n := c.nodes[0]
	const fakeGroup, fakeNode = 777, 4242
	cluster := n.srv.clusterID()
	send := func(msgs ...*meridianpb.TxnMsg) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := n.internal().Peer(ctx)
		if err != nil {
			return err
		}
		if err := stream.Send(&meridianpb.PeerBatch{Txn: msgs, FromNode: fakeNode, ClusterId: cluster}); err != nil {
			_, err = stream.CloseAndRecv()
			return err
		}
		_, err = stream.CloseAndRecv()
		return err
	}
	// A harmless message (a Query to a group nobody hosts) that, when
	// delivered, teaches the node that fakeNode leads fakeGroup.
	probe := &meridianpb.TxnMsg{Type: uint32(txn.MsgQuery), From: fakeGroup, To: 99, Txn: newMeta()}
	// (256+k must not pass for type k once truncated to MsgType's byte.)
	for _, typ := range []uint32{0, uint32(txn.MsgCloseRequest) + 1, 255, 256 + uint32(txn.MsgQuery), 1<<20 + uint32(txn.MsgDecide), 1 << 20} {
		err := send(probe, &meridianpb.TxnMsg{Type: typ, From: fakeGroup, To: 99, Txn: newMeta()})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("type %d: %v, want InvalidArgument", typ, err)
		}
	}
	if err := send(probe, &meridianpb.TxnMsg{Type: uint32(txn.MsgDecide), From: fakeGroup, To: 99, Txn: &meridianpb.TxnMeta{Id: []byte("short")}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad transaction ID: %v, want InvalidArgument", err)
	}
	// A valid batch from another cluster (or from a sender that names
	// none) is refused too.
	for _, other := range []string{"another", ""} {
		cluster = other
		if err := send(probe); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("batch from cluster %q: %v, want FailedPrecondition", other, err)
		}
	}
	cluster = n.srv.clusterID()
	if got := n.srv.Node().KnownLeader(fakeGroup); got != 0 {
		t.Fatalf("a refused batch was delivered: the node learned leader %d of group %d", got, fakeGroup)
	}
	// The probe alone is delivered.
	if err := send(probe); err != nil {
		t.Fatalf("valid batch: %v", err)
	}
	if got := n.srv.Node().KnownLeader(fakeGroup); got != fakeNode {
		t.Fatalf("after a valid batch the node believes %d leads group %d, want %d", got, fakeGroup, fakeNode)
	}
}

func testPaxosStreamGarbage(t *testing.T, c *testCluster) {
	n := c.nodes[0]
	valid := paxos.AppendMessage(nil, &paxos.Message{Type: paxos.MsgAccept, Group: 777, From: 1, To: 2})
	for _, raw := range [][]byte{nil, {0xff}, valid[:len(valid)-1], append(append([]byte(nil), valid...), 0)} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stream, err := n.internal().Peer(ctx)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		_ = stream.Send(&meridianpb.PeerBatch{Paxos: [][]byte{valid, raw}, ClusterId: n.srv.clusterID()})
		_, err = stream.CloseAndRecv()
		cancel()
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("paxos batch with %x: %v, want InvalidArgument", raw, err)
		}
	}
	for _, other := range []string{"another", ""} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stream, err := n.internal().Peer(ctx)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		_ = stream.Send(&meridianpb.PeerBatch{Paxos: [][]byte{valid}, ClusterId: other})
		_, err = stream.CloseAndRecv()
		cancel()
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("paxos batch from cluster %q: %v, want FailedPrecondition", other, err)
		}
	}
}

// testReadsStayInGroup: a group answers only for its own keys. A node
// hosting several groups keeps them in one Pebble engine, so a read that
// names the wrong group must be refused, not answered from another group's
// data without that group's locks or safe time; an end_unbounded range
// ends at the group's end.
func testReadsStayInGroup(t *testing.T, c *testCluster, p *meridianpb.Placement, leaders map[uint64]node.NodeID) {
	gA, gZ := groupOf(t, p, "a"), groupOf(t, p, "z")
	commitAt(t, c, leaders, gA, put("a/own-group", "mine"))
	commitAt(t, c, leaders, gZ, put("z/other-group", "secret"))
	cases := []struct {
		name string
		span *meridianpb.KeySpan
		want codes.Code
	}{
		{"point in another group", &meridianpb.KeySpan{Key: []byte("z/other-group")}, codes.InvalidArgument},
		{"range past the group's end", &meridianpb.KeySpan{Start: []byte("a"), End: []byte("zz")}, codes.InvalidArgument},
		{"range in another group", &meridianpb.KeySpan{Start: []byte("z"), End: []byte("zz")}, codes.InvalidArgument},
		{"both an end and unbounded", &meridianpb.KeySpan{Start: []byte("a"), End: []byte("b"), EndUnbounded: true}, codes.InvalidArgument},
		{"unbounded from another group", &meridianpb.KeySpan{Start: []byte("z"), EndUnbounded: true}, codes.InvalidArgument},
		{"unbounded", &meridianpb.KeySpan{Start: []byte("a"), EndUnbounded: true}, codes.OK},
		{"unbounded reverse", &meridianpb.KeySpan{Start: []byte("a"), EndUnbounded: true, Reverse: true, Limit: 1}, codes.OK},
		{"range inside", &meridianpb.KeySpan{Start: []byte("a"), End: shardOf(t, p, gA).End}, codes.OK},
	}
	for _, tc := range cases {
		check := func(kind string, resp *meridianpb.ReadResponse, err error) {
			t.Helper()
			if status.Code(err) != tc.want {
				t.Errorf("%s %s %v at group %d: %v, want %v", kind, tc.name, tc.span, gA, err, tc.want)
				return
			}
			if err != nil {
				return
			}
			own := false
			for _, kv := range resp.Kvs {
				if groupOf(t, p, string(kv.Key)) != gA {
					t.Errorf("%s %s %v at group %d returned group %d's key %q", kind, tc.name, tc.span, gA, groupOf(t, p, string(kv.Key)), kv.Key)
				}
				own = own || string(kv.Key) == "a/own-group"
			}
			if !own {
				t.Errorf("%s %s %v at group %d: a/own-group missing from %v", kind, tc.name, tc.span, gA, resp.Kvs)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		la := c.node(c.waitLeaders(ctx, p)[gA])
		resp, err := la.api().SnapshotRead(ctx, &meridianpb.SnapshotReadRequest{Group: gA, Strong: true, Span: tc.span})
		check("snapshot read", resp, err)
		meta := newMeta()
		resp, err = la.api().Read(ctx, &meridianpb.ReadRequest{Group: gA, Txn: meta, Span: tc.span})
		check("locking read", resp, err)
		_, _ = la.api().Rollback(ctx, &meridianpb.RollbackRequest{Group: gA, Txn: meta})
		cancel()
	}
}

// TestInitAndLocate: before init the API refuses with FailedPrecondition;
// init works once.
func TestInitAndLocate(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		if _, err := n.api().Locate(ctx, &meridianpb.LocateRequest{}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("locate before init at node %d: %v, want FailedPrecondition", n.id, err)
		}
		if _, err := n.api().Read(ctx, &meridianpb.ReadRequest{Group: 1, Txn: newMeta(), Span: &meridianpb.KeySpan{Key: []byte("a")}}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("read before init at node %d: %v, want FailedPrecondition", n.id, err)
		}
		st, err := n.admin().Status(ctx, &meridianpb.StatusRequest{})
		if err != nil || st.Initialized || len(st.Groups) != 0 {
			t.Errorf("status before init at node %d: %v %v", n.id, st, err)
		}
	}
	if _, err := c.nodes[1].admin().Init(ctx, &meridianpb.InitRequest{Policy: "nonsense"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("init with an unknown policy: %v, want FailedPrecondition", err)
	}
	if _, err := c.nodes[1].admin().Init(ctx, &meridianpb.InitRequest{Replicas: -3}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("init with negative replicas: %v, want InvalidArgument", err)
	}
	p, leaders := c.init()
	if len(p.Shards) != 3 || len(p.Nodes) != 3 || p.LeaseNs != int64(time.Second) || p.ClusterId == "" {
		t.Fatalf("placement: %v", p)
	}
	for _, n := range c.nodes {
		if _, err := n.admin().Init(ctx, &meridianpb.InitRequest{}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("init twice at node %d: %v, want FailedPrecondition", n.id, err)
		}
		loc, err := n.api().Locate(ctx, &meridianpb.LocateRequest{})
		if err != nil {
			t.Fatalf("locate at node %d: %v", n.id, err)
		}
		if len(loc.Placement.Shards) != 3 || loc.Placement.ClusterId != p.ClusterId {
			t.Errorf("locate at node %d: %v", n.id, loc.Placement)
		}
		for _, pn := range loc.Placement.Nodes {
			if pn.Addr != c.node(node.NodeID(pn.Id)).addr {
				t.Errorf("locate at node %d: node %d at %q, want %q", n.id, pn.Id, pn.Addr, c.node(node.NodeID(pn.Id)).addr)
			}
		}
		// Every node hosts every group (three nodes, three replicas), so
		// it names the leaders it sees.
		for _, l := range loc.Leaders {
			if node.NodeID(l.Node) != leaders[l.Group] {
				t.Logf("locate at node %d: group %d led by %d, status says %d (leadership moved?)", n.id, l.Group, l.Node, leaders[l.Group])
			}
		}
	}
	gA := groupOf(t, p, "a")
	ts := commitAt(t, c, leaders, gA, put("after-init", "ok"))
	if ts <= 0 {
		t.Fatalf("commit timestamp %d", ts)
	}
}
