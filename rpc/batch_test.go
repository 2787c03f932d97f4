package rpc

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridiandb/meridian/rpc/meridianpb"
)

// batchSession is an open Batch stream with results collected by id.
type batchSession struct {
	t      *testing.T
	stream meridianpb.Meridian_BatchClient
	next   uint64
}

func openBatch(t *testing.T, ctx context.Context, n *testNode) *batchSession {
	t.Helper()
	s, err := n.api().Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &batchSession{t: t, stream: s}
}

// do sends calls in one batch and returns their results in call order.
func (b *batchSession) do(calls ...*meridianpb.BatchCall) []*meridianpb.BatchResult {
	b.t.Helper()
	ids := map[uint64]int{}
	for i, c := range calls {
		b.next++
		c.Id = b.next
		ids[c.Id] = i
	}
	if err := b.stream.Send(&meridianpb.BatchRequest{Calls: calls}); err != nil {
		b.t.Fatalf("send: %v", err)
	}
	out := make([]*meridianpb.BatchResult, len(calls))
	for got := 0; got < len(calls); {
		resp, err := b.stream.Recv()
		if err != nil {
			b.t.Fatalf("recv after %d of %d results: %v", got, len(calls), err)
		}
		for _, r := range resp.Results {
			i, ok := ids[r.Id]
			if !ok || out[i] != nil {
				b.t.Fatalf("unexpected or repeated result id %d", r.Id)
			}
			out[i] = r
			got++
		}
	}
	return out
}

func batchCommit(req *meridianpb.CommitRequest) *meridianpb.BatchCall {
	return &meridianpb.BatchCall{Call: &meridianpb.BatchCall_Commit{Commit: req}}
}

func batchStrongGet(group uint64, key string) *meridianpb.BatchCall {
	return &meridianpb.BatchCall{Call: &meridianpb.BatchCall_SnapshotRead{SnapshotRead: &meridianpb.SnapshotReadRequest{
		Group: group, Strong: true, SingleGroup: true, Span: &meridianpb.KeySpan{Key: []byte(key)}}}}
}

// TestBatch: calls over a Batch stream mean what their unary counterparts
// mean, errors keep their codes and leader hints, and the stream's limits
// hold.
func TestBatch(t *testing.T) {
	c := newTestCluster(t, 3)
	p, leaders := c.init()
	gA := groupOf(t, p, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leader := c.node(leaders[gA])
	b := openBatch(t, ctx, leader)

	// A commit, then reads of it: a strong snapshot read, a locking read
	// (and the rollback of its locks) and a strong timestamp.
	meta := newMeta()
	r := b.do(batchCommit(&meridianpb.CommitRequest{Coordinator: gA, Txn: meta,
		Participants: []*meridianpb.Participant{{Group: gA, Writes: []*meridianpb.Mutation{put("a/batch", "1")}}}}))[0]
	if r.Err() != nil || r.GetCommit().GetCommitTs() == 0 {
		t.Fatalf("batched commit: %v %v", r.GetCommit(), r.Err())
	}
	ts := r.GetCommit().CommitTs
	reader := newMeta()
	rs := b.do(
		batchStrongGet(gA, "a/batch"),
		&meridianpb.BatchCall{Call: &meridianpb.BatchCall_Read{Read: &meridianpb.ReadRequest{Group: gA, Txn: reader, Span: &meridianpb.KeySpan{Key: []byte("a/batch")}}}},
		&meridianpb.BatchCall{Call: &meridianpb.BatchCall_StrongTimestamp{StrongTimestamp: &meridianpb.StrongTimestampRequest{Group: gA, SingleGroup: true}}},
		&meridianpb.BatchCall{}, // no request
		batchStrongGet(gA, "z/another-group"),
		// The same transaction ID again: the retried commit is answered
		// from its outcome record.
		batchCommit(&meridianpb.CommitRequest{Coordinator: gA, Txn: meta,
			Participants: []*meridianpb.Participant{{Group: gA, Writes: []*meridianpb.Mutation{put("a/batch", "1")}}}}),
	)
	if kvs := rs[0].GetRead().GetKvs(); rs[0].Err() != nil || len(kvs) != 1 || string(kvs[0].Value) != "1" || kvs[0].Ts != ts {
		t.Errorf("batched strong read: %v %v", rs[0].GetRead(), rs[0].Err())
	}
	if kvs := rs[1].GetRead().GetKvs(); rs[1].Err() != nil || len(kvs) != 1 || string(kvs[0].Value) != "1" {
		t.Errorf("batched locking read: %v %v", rs[1].GetRead(), rs[1].Err())
	}
	if got := rs[2].GetStrongTimestamp().GetTs(); rs[2].Err() != nil || got < ts {
		t.Errorf("batched strong timestamp %d (commit at %d): %v", got, ts, rs[2].Err())
	}
	if status.Code(rs[3].Err()) != codes.InvalidArgument || status.Code(rs[4].Err()) != codes.InvalidArgument {
		t.Errorf("an empty call and a read outside the group: %v, %v; want InvalidArgument", rs[3].Err(), rs[4].Err())
	}
	if rs[5].Err() != nil || rs[5].GetCommit().GetCommitTs() != ts {
		t.Errorf("retried commit: %v %v, want ts %d", rs[5].GetCommit(), rs[5].Err(), ts)
	}
	if r := b.do(&meridianpb.BatchCall{Call: &meridianpb.BatchCall_Rollback{Rollback: &meridianpb.RollbackRequest{Group: gA, Txn: reader}}})[0]; r.Err() != nil {
		t.Errorf("batched rollback: %v", r.Err())
	}

	// Calls whose deadline passes before their group answers get
	// DEADLINE_EXCEEDED, once: the group's later answer is dropped (b.do
	// fails on a repeated result). Timeouts count from a call's arrival, so
	// one of 1 ns has always passed: it is answered at once, never started.
	late := make([]*meridianpb.BatchCall, 100)
	for i := range late {
		late[i] = &meridianpb.BatchCall{TimeoutNs: 1, Call: &meridianpb.BatchCall_Read{Read: &meridianpb.ReadRequest{
			Group: gA, Txn: newMeta(), Span: &meridianpb.KeySpan{Key: []byte("a/batch")}}}}
		if i%2 == 1 {
			late[i].TimeoutNs = int64(100 * time.Microsecond) // either outcome, exactly once
		}
	}
	for i, r := range b.do(late...) {
		switch code := status.Code(r.Err()); {
		case i%2 == 0 && code != codes.DeadlineExceeded:
			t.Fatalf("read %d with a 1 ns deadline: %v, want DEADLINE_EXCEEDED", i, r.Err())
		case code != codes.OK && code != codes.DeadlineExceeded:
			t.Fatalf("read %d with a 100 µs deadline: %v", i, r.Err())
		}
	}
	time.Sleep(50 * time.Millisecond) // the groups' late answers arrive and are dropped

	// A rollback already past its deadline is answered so, and still run:
	// the locks it releases let a younger writer in at once rather than
	// after its lock wait.
	holder, writer := newMeta(), newMeta()
	holder.Priority, writer.Priority = 1, 2 // the writer is younger: it waits
	if r := b.do(&meridianpb.BatchCall{Call: &meridianpb.BatchCall_Read{Read: &meridianpb.ReadRequest{
		Group: gA, Txn: holder, Span: &meridianpb.KeySpan{Key: []byte("a/held")}}}})[0]; r.Err() != nil {
		t.Fatal(r.Err())
	}
	if r := b.do(&meridianpb.BatchCall{TimeoutNs: 1, Call: &meridianpb.BatchCall_Rollback{Rollback: &meridianpb.RollbackRequest{
		Group: gA, Txn: holder}}})[0]; status.Code(r.Err()) != codes.DeadlineExceeded {
		t.Fatalf("rollback with a 1 ns deadline: %v, want DEADLINE_EXCEEDED", r.Err())
	}
	w := batchCommit(&meridianpb.CommitRequest{Coordinator: gA, Txn: writer,
		Participants: []*meridianpb.Participant{{Group: gA, Writes: []*meridianpb.Mutation{put("a/held", "w")}}}})
	w.TimeoutNs = int64(2 * time.Second) // below the 5 s lock wait
	if r := b.do(w)[0]; r.Err() != nil {
		t.Fatalf("a write to the key after its holder's expired rollback: %v (the lock was kept)", r.Err())
	}

	// Many calls at once, answered in any order, each its own.
	many := make([]*meridianpb.BatchCall, 2000)
	for i := range many {
		many[i] = batchStrongGet(gA, fmt.Sprintf("a/absent-%d", i%7))
	}
	for i, r := range b.do(many...) {
		if r.Err() != nil || len(r.GetRead().GetKvs()) != 0 || r.GetRead().GetReadTs() < ts {
			t.Fatalf("call %d of 2000: %v %v", i, r.GetRead(), r.Err())
		}
	}

	// A node that does not lead answers UNAVAILABLE with the hint a unary
	// call would carry.
	for _, n := range c.nodes {
		if n.id == leader.id {
			continue
		}
		fb := openBatch(t, ctx, n)
		r := fb.do(&meridianpb.BatchCall{Call: &meridianpb.BatchCall_Read{Read: &meridianpb.ReadRequest{Group: gA, Txn: newMeta(), Span: &meridianpb.KeySpan{Key: []byte("a/batch")}}}})[0]
		if status.Code(r.Err()) != codes.Unavailable {
			t.Errorf("locking read at node %d: %v, want Unavailable", n.id, r.Err())
			continue
		}
		if h, ok := LeaderHintOf(r.Err()); !ok || h.Group != gA || h.Node == 0 || h.Addr == "" {
			t.Errorf("locking read at node %d: hint %v in %v", n.id, h, r.Err())
		}
		_ = fb.stream.CloseSend()
	}

	// Too many calls in one batch end the stream.
	over := openBatch(t, ctx, leader)
	calls := make([]*meridianpb.BatchCall, MaxBatchCalls+1)
	for i := range calls {
		calls[i] = batchStrongGet(gA, "a/batch")
	}
	if err := over.stream.Send(&meridianpb.BatchRequest{Calls: calls}); err == nil {
		_, err = over.stream.Recv()
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("a batch of %d calls: %v, want InvalidArgument", len(calls), err)
		}
	}

	// A client that closes its side gets every result, then the end.
	if err := b.stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.stream.Recv(); err != io.EOF {
		t.Errorf("after CloseSend: %v, want the end of the stream", err)
	}

	// A stopping node ends open streams UNAVAILABLE.
	last := c.nodes[len(c.nodes)-1]
	open := openBatch(t, ctx, last)
	open.do(batchStrongGet(gA, "a/batch")) // the stream is established
	last.srv.Close()
	done := make(chan error, 1)
	go func() { _, err := open.stream.Recv(); done <- err }()
	select {
	case err := <-done:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("stream at a stopping node: %v, want Unavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("a stopping node left a Batch stream open")
	}
}
