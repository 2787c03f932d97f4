package rpc

import (
	"bytes"
	"fmt"
	"time"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/txn"
)

// Limits enforced at the boundary, before anything reaches a group.
const (
	MaxKeySize      = 4 << 10
	MaxValueSize    = 1 << 20
	MaxWrites       = 10000
	MaxParticipants = 64
	MaxScanLimit    = 10000
	MaxMessageSize  = meridianpb.MaxMessageSize
)

func metaFromPB(m *meridianpb.TxnMeta) (txn.Meta, error) {
	if m == nil {
		return txn.Meta{}, invalid("missing transaction")
	}
	id, err := txn.TxnIDFromBytes(m.Id)
	if err != nil {
		return txn.Meta{}, invalid("%v", err)
	}
	if id.IsZero() {
		return txn.Meta{}, invalid("zero transaction ID")
	}
	if m.Priority < 0 {
		return txn.Meta{}, invalid("negative priority")
	}
	return txn.Meta{ID: id, Priority: tt.Timestamp(m.Priority)}, nil
}

func metaToPB(m txn.Meta) *meridianpb.TxnMeta {
	return &meridianpb.TxnMeta{Id: m.ID.Bytes(), Priority: int64(m.Priority)}
}

func checkKey(k []byte) error {
	if len(k) == 0 {
		return invalid("empty key")
	}
	if len(k) > MaxKeySize {
		return invalid("key of %d bytes exceeds the limit of %d", len(k), MaxKeySize)
	}
	return nil
}

func mutationsFromPB(ms []*meridianpb.Mutation) ([]txn.Mutation, error) {
	if len(ms) > MaxWrites {
		return nil, invalid("%d writes exceed the limit of %d per group", len(ms), MaxWrites)
	}
	out := make([]txn.Mutation, 0, len(ms))
	for _, m := range ms {
		if m == nil {
			return nil, invalid("nil mutation")
		}
		if err := checkKey(m.Key); err != nil {
			return nil, err
		}
		if len(m.Value) > MaxValueSize {
			return nil, invalid("value of %d bytes exceeds the limit of %d", len(m.Value), MaxValueSize)
		}
		if m.Delete && len(m.Value) > 0 {
			return nil, invalid("a delete carries no value")
		}
		out = append(out, txn.Mutation{Key: m.Key, Value: m.Value, Delete: m.Delete})
	}
	return out, nil
}

func mutationsToPB(ms []txn.Mutation) []*meridianpb.Mutation {
	out := make([]*meridianpb.Mutation, len(ms))
	for i, m := range ms {
		out[i] = &meridianpb.Mutation{Key: m.Key, Value: m.Value, Delete: m.Delete}
	}
	return out
}

// spanInto validates a key span and fills the request's read fields.
func spanInto(s *meridianpb.KeySpan, req *txn.Request) error {
	if s == nil {
		return invalid("missing key span")
	}
	if s.Limit < 0 || s.Limit > MaxScanLimit {
		return invalid("limit %d outside [0, %d]", s.Limit, MaxScanLimit)
	}
	if len(s.Key) > 0 {
		if len(s.Start) > 0 || len(s.End) > 0 || s.EndUnbounded {
			return invalid("a point read has no range")
		}
		if err := checkKey(s.Key); err != nil {
			return err
		}
		req.Key = s.Key
		return nil
	}
	if len(s.Start) > MaxKeySize || len(s.End) > MaxKeySize {
		return invalid("range bound exceeds %d bytes", MaxKeySize)
	}
	if !s.EndUnbounded && len(s.End) == 0 {
		return invalid("a range needs an end or end_unbounded")
	}
	if s.EndUnbounded && len(s.End) > 0 {
		return invalid("a range has either an end or end_unbounded, not both")
	}
	req.Start = s.Start
	if req.Start == nil {
		req.Start = []byte{}
	}
	if !s.EndUnbounded {
		req.End = s.End
		if string(req.End) <= string(req.Start) {
			return invalid("empty range [%q, %q)", req.Start, req.End)
		}
	}
	req.Limit = int(s.Limit)
	if req.Limit == 0 {
		req.Limit = MaxScanLimit
	}
	req.Reverse = s.Reverse
	return nil
}

// spanInGroup checks a read against its group's key range [start, end)
// (end nil: unbounded) and bounds an end_unbounded range by the group's
// end. A node keeps all its groups in one engine: a read beyond its group
// would return another group's data without that group's locks or safe
// time.
func spanInGroup(req *txn.Request, group uint64, start, end []byte) error {
	in := func(k []byte) bool { return bytes.Compare(k, start) >= 0 && (end == nil || bytes.Compare(k, end) < 0) }
	if req.Key != nil {
		if !in(req.Key) {
			return invalid("key %q is not in group %d's range", req.Key, group)
		}
		return nil
	}
	if !in(req.Start) {
		return invalid("range start %q is not in group %d's range", req.Start, group)
	}
	if req.End == nil {
		req.End = end
	} else if end != nil && bytes.Compare(req.End, end) > 0 {
		return invalid("range end %q is beyond group %d's range", req.End, group)
	}
	return nil
}

func kvsToPB(kvs []kv.KeyValue) []*meridianpb.KeyValue {
	out := make([]*meridianpb.KeyValue, len(kvs))
	for i, x := range kvs {
		out[i] = &meridianpb.KeyValue{Key: x.Key, Value: x.Value, Ts: int64(x.TS)}
	}
	return out
}

func txnMsgToPB(m txn.Msg) *meridianpb.TxnMsg {
	return &meridianpb.TxnMsg{Type: uint32(m.Type), From: m.From, To: m.To, Txn: metaToPB(m.Txn), Writes: mutationsToPB(m.Writes),
		Read: m.Read, Coordinator: m.Coordinator, Ok: m.OK, Pending: m.Pending, Ts: int64(m.TS), Epoch: m.Epoch}
}

func txnMsgFromPB(p *meridianpb.TxnMsg) (txn.Msg, error) {
	m := txn.Msg{Type: txn.MsgType(p.Type), From: p.From, To: p.To, Read: p.Read, Coordinator: p.Coordinator,
		OK: p.Ok, Pending: p.Pending, TS: tt.Timestamp(p.Ts), Epoch: p.Epoch}
	if p.Type < uint32(txn.MsgPrepare) || p.Type > uint32(txn.MsgCloseRequest) { // before MsgType's uint8 truncates it
		return m, fmt.Errorf("unknown transaction message type %d", p.Type)
	}
	if p.Txn != nil {
		id, err := txn.TxnIDFromBytes(p.Txn.Id)
		if err != nil && len(p.Txn.Id) > 0 {
			return m, err
		}
		m.Txn = txn.Meta{ID: id, Priority: tt.Timestamp(p.Txn.Priority)}
	}
	for _, w := range p.Writes {
		m.Writes = append(m.Writes, txn.Mutation{Key: w.Key, Value: w.Value, Delete: w.Delete})
	}
	return m, nil
}

// PlacementToPB converts a placement for the wire.
func PlacementToPB(p node.Placement) *meridianpb.Placement {
	out := &meridianpb.Placement{Regions: p.Regions, LeaseNs: int64(p.Lease), ClusterId: p.ClusterID}
	for _, n := range p.Nodes {
		out.Nodes = append(out.Nodes, &meridianpb.NodeInfo{Id: uint64(n.ID), Region: n.Region, Addr: n.Addr})
	}
	for _, s := range p.Shards {
		ps := &meridianpb.ShardInfo{Group: s.Group, Start: s.Start, End: s.End, Home: s.Home, Policy: s.Policy}
		for _, r := range s.Replicas {
			ps.Replicas = append(ps.Replicas, &meridianpb.ReplicaInfo{Id: uint64(r.ID), Node: uint64(r.Node), Voter: r.Voter})
		}
		out.Shards = append(out.Shards, ps)
	}
	return out
}

// PlacementFromPB converts a placement from the wire.
func PlacementFromPB(p *meridianpb.Placement) (node.Placement, error) {
	if p == nil {
		return node.Placement{}, fmt.Errorf("missing placement")
	}
	out := node.Placement{Regions: p.Regions, Lease: time.Duration(p.LeaseNs), ClusterID: p.ClusterId}
	for _, n := range p.Nodes {
		out.Nodes = append(out.Nodes, node.NodeInfo{ID: node.NodeID(n.Id), Region: n.Region, Addr: n.Addr})
	}
	for _, s := range p.Shards {
		si := node.ShardInfo{Group: s.Group, Start: s.Start, End: s.End, Home: s.Home, Policy: s.Policy}
		if si.Start == nil {
			si.Start = []byte{}
		}
		if len(si.End) == 0 {
			si.End = nil
		}
		for _, r := range s.Replicas {
			si.Replicas = append(si.Replicas, node.ReplicaInfo{ID: paxos.ReplicaID(r.Id), Node: node.NodeID(r.Node), Voter: r.Voter})
		}
		out.Shards = append(out.Shards, si)
	}
	if out.Lease <= 0 {
		return out, fmt.Errorf("placement without a lease")
	}
	if out.ClusterID == "" {
		return out, fmt.Errorf("placement without a cluster ID")
	}
	return out, nil
}
