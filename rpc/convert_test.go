package rpc

import (
	"bytes"
	"context"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meridiandb/meridian/internal/txnid"
	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/txn"
)

// The groups of the a–z split of a three-shard placement.
var testGroupRanges = [][2][]byte{{{}, []byte("i")}, {[]byte("i"), []byte("r")}, {[]byte("r"), nil}}

func wantInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("%s: %v, want InvalidArgument", what, err)
	}
}

// checkSpan checks what spanInto accepted against the limits.
func checkSpan(t *testing.T, s *meridianpb.KeySpan, req *txn.Request) {
	t.Helper()
	if s.Limit < 0 || s.Limit > MaxScanLimit {
		t.Fatalf("accepted limit %d", s.Limit)
	}
	if len(s.Key) > 0 {
		if len(s.Key) > MaxKeySize || !bytes.Equal(req.Key, s.Key) || len(s.Start) > 0 || len(s.End) > 0 || s.EndUnbounded ||
			req.Start != nil || req.End != nil {
			t.Fatalf("accepted point read %v as %+v", s, req)
		}
		return
	}
	if req.Key != nil || req.Start == nil || !bytes.Equal(req.Start, s.Start) || len(req.Start) > MaxKeySize {
		t.Fatalf("accepted range %v as start %q key %q", s, req.Start, req.Key)
	}
	if s.EndUnbounded {
		if req.End != nil || len(s.End) > 0 {
			t.Fatalf("accepted unbounded range %v with end %q", s, req.End)
		}
	} else if len(req.End) == 0 || len(req.End) > MaxKeySize || !bytes.Equal(req.End, s.End) || bytes.Compare(req.End, req.Start) <= 0 {
		t.Fatalf("accepted range %v as [%q, %q)", s, req.Start, req.End)
	}
	if req.Limit < 1 || req.Limit > MaxScanLimit || (s.Limit != 0 && req.Limit != int(s.Limit)) || req.Reverse != s.Reverse {
		t.Fatalf("accepted range %v with limit %d reverse %v", s, req.Limit, req.Reverse)
	}
}

// checkInGroup checks what spanInGroup accepted: inside [start, end).
func checkInGroup(t *testing.T, req *txn.Request, start, end []byte) {
	t.Helper()
	in := func(k []byte) bool { return bytes.Compare(k, start) >= 0 && (end == nil || bytes.Compare(k, end) < 0) }
	if req.Key != nil {
		if !in(req.Key) {
			t.Fatalf("accepted key %q in [%q, %q)", req.Key, start, end)
		}
		return
	}
	if !in(req.Start) || (end != nil && (req.End == nil || bytes.Compare(req.End, end) > 0)) {
		t.Fatalf("accepted range [%q, %q) in group [%q, %q)", req.Start, req.End, start, end)
	}
}

func FuzzSpanInto(f *testing.F) {
	f.Add([]byte("a"), []byte(nil), []byte(nil), false, int32(0), false)
	f.Add([]byte(nil), []byte("a"), []byte("b"), false, int32(10), true)
	f.Add([]byte(nil), []byte("a"), []byte(nil), true, int32(0), false)
	f.Add([]byte(nil), []byte(nil), []byte(nil), false, int32(0), false)
	f.Add([]byte(nil), []byte("b"), []byte("a"), false, int32(0), false)
	f.Add([]byte(nil), []byte("h"), []byte("s"), false, int32(MaxScanLimit), false)
	f.Add([]byte("k"), []byte("a"), []byte(nil), false, int32(-1), false)
	f.Add(bytes.Repeat([]byte("k"), MaxKeySize+1), []byte(nil), []byte(nil), false, int32(0), false)
	f.Add([]byte(nil), []byte{}, bytes.Repeat([]byte{0xff}, MaxKeySize), false, int32(MaxScanLimit+1), false)
	f.Fuzz(func(t *testing.T, key, start, end []byte, endUnbounded bool, limit int32, reverse bool) {
		s := &meridianpb.KeySpan{Key: key, Start: start, End: end, EndUnbounded: endUnbounded, Limit: limit, Reverse: reverse}
		var req txn.Request
		if err := spanInto(s, &req); err != nil {
			wantInvalid(t, "spanInto", err)
			return
		}
		checkSpan(t, s, &req)
		for _, g := range testGroupRanges {
			r := req
			if err := spanInGroup(&r, 1, g[0], g[1]); err != nil {
				wantInvalid(t, "spanInGroup", err)
				continue
			}
			checkInGroup(t, &r, g[0], g[1])
		}
	})
}

func TestSpanInto(t *testing.T) {
	var req txn.Request
	if err := spanInto(nil, &req); err == nil {
		t.Fatal("nil span accepted")
	}
	req = txn.Request{}
	if err := spanInto(&meridianpb.KeySpan{End: []byte("b")}, &req); err != nil || req.Start == nil || len(req.Start) != 0 || req.Limit != MaxScanLimit {
		t.Fatalf("range from the beginning: %v %+v", err, req)
	}
	for _, k := range []int{1, MaxKeySize} {
		req = txn.Request{}
		if err := spanInto(&meridianpb.KeySpan{Key: bytes.Repeat([]byte("k"), k)}, &req); err != nil {
			t.Fatalf("key of %d bytes: %v", k, err)
		}
	}
	// spanInGroup: end_unbounded ends at the group's end.
	req = txn.Request{Start: []byte("a")}
	if err := spanInGroup(&req, 1, []byte{}, []byte("i")); err != nil || string(req.End) != "i" {
		t.Fatalf("unbounded range in group 1: %v, end %q", err, req.End)
	}
	req = txn.Request{Start: []byte("s")}
	if err := spanInGroup(&req, 3, []byte("r"), nil); err != nil || req.End != nil {
		t.Fatalf("unbounded range in the last group: %v, end %q", err, req.End)
	}
}

func TestMutationsFromPB(t *testing.T) {
	ok := func(ms ...*meridianpb.Mutation) {
		t.Helper()
		out, err := mutationsFromPB(ms)
		if err != nil || len(out) != len(ms) {
			t.Fatalf("%d mutations: %v", len(ms), err)
		}
	}
	ok()
	ok(&meridianpb.Mutation{Key: bytes.Repeat([]byte("k"), MaxKeySize), Value: make([]byte, MaxValueSize)})
	ok(&meridianpb.Mutation{Key: []byte("k"), Delete: true})
	ok(&meridianpb.Mutation{Key: []byte("k")}) // an empty value is a value
	max := make([]*meridianpb.Mutation, MaxWrites)
	for i := range max {
		max[i] = &meridianpb.Mutation{Key: []byte("k")}
	}
	ok(max...)
	for name, ms := range map[string][]*meridianpb.Mutation{
		"nil":          {nil},
		"empty key":    {{Value: []byte("v")}},
		"long key":     {{Key: bytes.Repeat([]byte("k"), MaxKeySize+1)}},
		"long value":   {{Key: []byte("k"), Value: make([]byte, MaxValueSize+1)}},
		"delete value": {{Key: []byte("k"), Value: []byte("v"), Delete: true}},
		"too many":     append(max, &meridianpb.Mutation{Key: []byte("k")}),
		"bad in tail":  {{Key: []byte("k")}, {Key: []byte("k")}, {}},
	} {
		if _, err := mutationsFromPB(ms); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}

func FuzzMutationsFromPB(f *testing.F) {
	for _, p := range []*meridianpb.Participant{
		{},
		{Writes: []*meridianpb.Mutation{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Delete: true}}},
		{Writes: []*meridianpb.Mutation{{Value: []byte("1")}}},
		{Writes: []*meridianpb.Mutation{{Key: []byte("a"), Value: []byte("1"), Delete: true}}},
		{Writes: []*meridianpb.Mutation{{Key: bytes.Repeat([]byte("k"), MaxKeySize+1)}}},
		{Writes: []*meridianpb.Mutation{{Key: bytes.Repeat([]byte("k"), MaxKeySize)}}},
	} {
		b, err := proto.Marshal(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p meridianpb.Participant
		if proto.Unmarshal(data, &p) != nil {
			return
		}
		out, err := mutationsFromPB(p.Writes)
		if err != nil {
			wantInvalid(t, "mutationsFromPB", err)
			return
		}
		if len(out) != len(p.Writes) || len(out) > MaxWrites {
			t.Fatalf("%d mutations became %d", len(p.Writes), len(out))
		}
		for i, m := range out {
			in := p.Writes[i]
			if len(m.Key) == 0 || len(m.Key) > MaxKeySize || len(m.Value) > MaxValueSize || (m.Delete && len(m.Value) > 0) {
				t.Fatalf("accepted mutation %d: key %d bytes, value %d bytes, delete %v", i, len(m.Key), len(m.Value), m.Delete)
			}
			if !bytes.Equal(m.Key, in.Key) || !bytes.Equal(m.Value, in.Value) || m.Delete != in.Delete {
				t.Fatalf("mutation %d changed: %v → %+v", i, in, m)
			}
		}
		back := mutationsToPB(out)
		for i := range back {
			in := p.Writes[i]
			if !bytes.Equal(back[i].Key, in.Key) || !bytes.Equal(back[i].Value, in.Value) || back[i].Delete != in.Delete {
				t.Fatalf("round trip of mutation %d: %v → %v", i, p.Writes[i], back[i])
			}
		}
	})
}

func FuzzMetaFromPB(f *testing.F) {
	f.Add(txnid.New(), int64(0), false)
	f.Add(txnid.New(), int64(time.Now().UnixNano()), false)
	f.Add(make([]byte, 16), int64(1), false)
	f.Add([]byte("short"), int64(1), false)
	f.Add(make([]byte, 17), int64(1), false)
	f.Add(txnid.New(), int64(-1), false)
	f.Add([]byte(nil), int64(0), true)
	f.Fuzz(func(t *testing.T, id []byte, priority int64, missing bool) {
		var m *meridianpb.TxnMeta
		if !missing {
			m = &meridianpb.TxnMeta{Id: id, Priority: priority}
		}
		meta, err := metaFromPB(m)
		if err != nil {
			wantInvalid(t, "metaFromPB", err)
			return
		}
		if missing || len(id) != 16 || bytes.Equal(id, make([]byte, 16)) || priority < 0 {
			t.Fatalf("accepted meta id %x priority %d (missing %v)", id, priority, missing)
		}
		back := metaToPB(meta)
		if !bytes.Equal(back.Id, id) || back.Priority != priority || meta.ID.IsZero() {
			t.Fatalf("round trip: %x/%d → %v", id, priority, back)
		}
	})
}

// sameMsg compares transaction messages, nil and empty byte slices alike.
func sameMsg(a, b txn.Msg) bool {
	if len(a.Writes) != len(b.Writes) {
		return false
	}
	for i := range a.Writes {
		x, y := a.Writes[i], b.Writes[i]
		if !bytes.Equal(x.Key, y.Key) || !bytes.Equal(x.Value, y.Value) || x.Delete != y.Delete {
			return false
		}
	}
	a.Writes, b.Writes = nil, nil
	return reflect.DeepEqual(a, b)
}

func FuzzTxnMsgFromPB(f *testing.F) {
	meta := metaToPB(txn.Meta{ID: newTxnID(), Priority: 42})
	for _, m := range []*meridianpb.TxnMsg{
		{},
		{Type: uint32(txn.MsgPrepare), From: 1, To: 2, Txn: meta, Writes: []*meridianpb.Mutation{{Key: []byte("a"), Value: []byte("v")}}, Read: true, Coordinator: 1, Epoch: 7},
		{Type: uint32(txn.MsgVote), From: 2, To: 1, Txn: meta, Ok: true, Ts: 12345},
		{Type: uint32(txn.MsgOutcome), Txn: meta, Pending: true},
		{Type: uint32(txn.MsgCloseRequest), From: 3, To: 3, Ts: 99},
		{Type: uint32(txn.MsgCloseRequest) + 1, Txn: meta},
		{Type: uint32(txn.MsgDecide), Txn: &meridianpb.TxnMeta{Id: []byte("short")}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p meridianpb.TxnMsg
		if proto.Unmarshal(data, &p) != nil {
			return
		}
		m, err := txnMsgFromPB(&p)
		if err != nil {
			return
		}
		if m.Type < txn.MsgPrepare || m.Type > txn.MsgCloseRequest || uint32(m.Type) != p.Type {
			t.Fatalf("accepted message type %d", p.Type)
		}
		if p.Txn != nil && len(p.Txn.Id) > 0 && !bytes.Equal(m.Txn.ID.Bytes(), p.Txn.Id) {
			t.Fatalf("accepted transaction ID %x as %v", p.Txn.Id, m.Txn.ID)
		}
		if len(m.Writes) != len(p.Writes) {
			t.Fatalf("%d writes became %d", len(p.Writes), len(m.Writes))
		}
		// What the transport sends back decodes to the same message.
		b, err := proto.Marshal(txnMsgToPB(m))
		if err != nil {
			t.Fatal(err)
		}
		var q meridianpb.TxnMsg
		if err := proto.Unmarshal(b, &q); err != nil {
			t.Fatal(err)
		}
		m2, err := txnMsgFromPB(&q)
		if err != nil || !sameMsg(m, m2) {
			t.Fatalf("round trip: %+v → %+v (%v)", m, m2, err)
		}
	})
}

// fakePeerStream feeds batches to Server.Peer.
type fakePeerStream struct {
	grpc.ServerStream
	batches []*meridianpb.PeerBatch
	closed  bool
}

func (s *fakePeerStream) Context() context.Context { return context.Background() }

func (s *fakePeerStream) Recv() (*meridianpb.PeerBatch, error) {
	if len(s.batches) == 0 {
		return nil, io.EOF
	}
	b := s.batches[0]
	s.batches = s.batches[1:]
	return b, nil
}

func (s *fakePeerStream) SendAndClose(*meridianpb.Ack) error { s.closed = true; return nil }

// newBareServer is a server over an in-memory engine, never started and
// never initialized: it hosts no group, so delivered messages go nowhere.
func newBareServer(tb testing.TB) *Server {
	eng, err := kv.Open("", kv.Options{FS: vfs.NewMem(), CacheSize: 1 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{Self: node.NodeInfo{ID: 1, Region: "r", Addr: "127.0.0.1:1"}, Engine: eng,
		Clock: tt.NewSystem(500 * time.Microsecond), Dial: testDial, Logger: testLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		srv.Close()
		_ = eng.Close()
	})
	return srv
}

func FuzzPeerBatch(f *testing.F) {
	msgs := []paxos.Message{
		{Type: paxos.MsgPrepare, Group: 1, From: 1, To: 2, Ballot: paxos.Ballot{Round: 3, Replica: 1}},
		{Type: paxos.MsgAccept, Group: 2, From: 1, To: 3, Index: 9, Chosen: 8, Entries: []paxos.Entry{{Index: 9, TS: 5, CommitWait: true, Data: []byte("x")}},
			LeaseReq: tt.Timestamp(time.Now().UnixNano()), ClosedIndex: 8, ClosedTS: 77},
		{Type: paxos.MsgAccepted, Group: 3, From: 2, To: 1, Reject: true, Behind: true},
		{Type: paxos.MsgSnapshot, Group: 1, From: 1, To: 2, Payload: []byte("snapshot"), Snapshot: paxos.ApplyState{Index: 5, LastTS: 6}},
		{Type: paxos.MsgPreVoteResp, Group: 1, From: 2, To: 1},
	}
	for _, m := range msgs {
		raw := paxos.AppendMessage(nil, &m)
		f.Add(raw)
		b, _ := proto.Marshal(&meridianpb.PeerBatch{Paxos: [][]byte{raw, raw}})
		f.Add(b)
		f.Add(raw[:len(raw)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	srv := newBareServer(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// One message, as the stream carries it.
		if m, err := paxos.DecodeMessage(data); err == nil {
			enc := paxos.AppendMessage(nil, &m)
			m2, err := paxos.DecodeMessage(enc)
			if err != nil {
				t.Fatalf("re-encoded message does not decode: %v", err)
			}
			if enc2 := paxos.AppendMessage(nil, &m2); !bytes.Equal(enc, enc2) {
				t.Fatalf("encoding not stable: %x → %x", enc, enc2)
			}
		}
		// The server's stream path: the bytes as one message, and as a
		// whole batch.
		batches := [][][]byte{{data}}
		var pb meridianpb.PeerBatch
		if proto.Unmarshal(data, &pb) == nil && len(pb.Txn) == 0 {
			batches = append(batches, pb.Paxos)
		}
		for _, msgs := range batches {
			bad := false
			for _, raw := range msgs {
				if _, err := paxos.DecodeMessage(raw); err != nil {
					bad = true
				}
			}
			stream := &fakePeerStream{batches: []*meridianpb.PeerBatch{{Paxos: msgs}}}
			err := srv.Peer(stream)
			switch {
			case bad && status.Code(err) != codes.InvalidArgument:
				t.Fatalf("undecodable batch: %v, want InvalidArgument", err)
			case !bad && (err != nil || !stream.closed):
				t.Fatalf("valid batch: %v (closed %v)", err, stream.closed)
			}
		}
	})
}

func TestPlacementRoundTrip(t *testing.T) {
	nodes := []node.NodeInfo{{ID: 1, Region: "us-east1", Addr: "a:1"}, {ID: 2, Region: "us-west1", Addr: "b:1"}, {ID: 3, Region: "europe-west1", Addr: "c:1"}}
	p, err := node.ComputePlacement(nodes, node.PlacementSpec{Policy: node.PolicySpread, Replicas: 3, Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p.ClusterID = "test-cluster"
	back, err := PlacementFromPB(PlacementToPB(p))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, p) {
		t.Fatalf("round trip:\n%+v\n%+v", p, back)
	}
	if !samePlacement(p, back) {
		t.Fatal("samePlacement says no")
	}
	if _, err := PlacementFromPB(nil); err == nil {
		t.Fatal("nil placement accepted")
	}
	noLease := PlacementToPB(p)
	noLease.LeaseNs = 0
	if _, err := PlacementFromPB(noLease); err == nil || !strings.Contains(err.Error(), "lease") {
		t.Fatalf("placement without a lease: %v", err)
	}
	noID := PlacementToPB(p)
	noID.ClusterId = ""
	if _, err := PlacementFromPB(noID); err == nil {
		t.Fatal("placement without a cluster ID accepted")
	}
}

// newTxnID draws a fresh transaction ID as a client would.
func newTxnID() txn.TxnID {
	id, _ := txn.TxnIDFromBytes(txnid.New()) // 16 bytes: never an error
	return id
}
