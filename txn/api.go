package txn

import (
	"time"

	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/tt"
)

// ReqKind is the kind of a client request.
type ReqKind uint8

const (
	// ReqRead is a locking read inside a read-write transaction (leader).
	ReqRead ReqKind = iota + 1
	// ReqCommit commits a read-write transaction. At a single group it
	// commits directly; with several participants this group coordinates
	// two-phase commit.
	ReqCommit
	// ReqRollback releases a transaction's locks.
	ReqRollback
	// ReqStrongTS picks the timestamp of a strong read-only transaction.
	ReqStrongTS
	// ReqSnapshotRead reads at Request.TS once safe time allows (any
	// replica).
	ReqSnapshotRead
	// ReqStaleRead reads at this replica's safe time, if it is no older
	// than MaxStaleness (or MinTS); the response carries the timestamp.
	ReqStaleRead
)

// Request is a client request to one group. ID correlates the response.
type Request struct {
	ID   uint64
	Kind ReqKind
	Txn  Meta

	// Reads: a point Key, or the span [Start, End) with Limit and Reverse.
	Key, Start, End []byte
	Limit           int
	Reverse         bool

	// Commit: the participants (this group among them, with its writes).
	Participants []Participant

	// Epoch (locking reads): the epoch of the transaction's earlier reads
	// at this group, zero for its first. Rollback: nonzero asks whether the
	// reads' locks, taken in this epoch, were still held (Aborted if not).
	Epoch uint64

	// Read-only transactions.
	TS           tt.Timestamp  // ReqSnapshotRead
	MaxStaleness time.Duration // ReqStaleRead (or MinTS)
	MinTS        tt.Timestamp  // ReqStaleRead
	SingleGroup  bool          // ReqStrongTS: the transaction reads only this group
}

// Response answers a Request. For reads, the runtime performs the
// ReadTask and sends the values itself; the Response then only carries
// errors.
type Response struct {
	ID  uint64
	Err error
	// TS is the commit timestamp (ReqCommit) or the read timestamp chosen
	// (ReqStrongTS, ReqStaleRead).
	TS tt.Timestamp
	// Priority is the transaction's priority as assigned (reads at a
	// transaction's first group, when the client had none).
	Priority tt.Timestamp
	// CommitWait is the exposed commit wait: how long the commit record
	// waited, chosen, for TT.after(s).
	CommitWait time.Duration
	// Phases breaks a commit's time at the coordinator down (by its clock).
	Phases Phases
	// Hint names the replica this replica believes leads (ErrNotLeader).
	Hint paxos.ReplicaID
}

// ReadTask asks the runtime to read now, at TS, and answer request ID.
type ReadTask struct {
	ID              uint64
	Key, Start, End []byte
	Limit           int
	Reverse         bool
	TS              tt.Timestamp
	Priority        tt.Timestamp // for locking reads: the transaction's priority, echoed to the client
	Epoch           uint64       // for locking reads: the lock epoch the read was answered under
}

// MsgType is the kind of a message between group leaders.
type MsgType uint8

const (
	// MsgPrepare asks a participant to lock and log the transaction's
	// writes and vote.
	MsgPrepare MsgType = iota + 1
	// MsgVote answers Prepare: OK with the prepare timestamp, or no.
	MsgVote
	// MsgDecide carries the coordinator's decision (OK = commit at TS).
	MsgDecide
	// MsgQuery asks the coordinator group for a transaction's outcome.
	MsgQuery
	// MsgOutcome answers Query (Pending when still undecided).
	MsgOutcome
	// MsgCloseRequest asks a group's leader to close a timestamp at least
	// TS, so a replica can serve a read there (same group).
	MsgCloseRequest
)

func (t MsgType) String() string {
	switch t {
	case MsgPrepare:
		return "Prepare"
	case MsgVote:
		return "Vote"
	case MsgDecide:
		return "Decide"
	case MsgQuery:
		return "Query"
	case MsgOutcome:
		return "Outcome"
	case MsgCloseRequest:
		return "CloseRequest"
	}
	return "MsgType(?)"
}

// Msg is a message between groups (routed by the runtime to the leader of
// To, or, for MsgCloseRequest, to the leader of the sender's own group).
type Msg struct {
	Type        MsgType
	From, To    uint64
	Txn         Meta
	Writes      []Mutation
	Read        bool
	Coordinator uint64
	OK          bool
	Pending     bool
	TS          tt.Timestamp
	Epoch       uint64 // Prepare with Read: the epoch of the participant's reads
}

// Write is one MVCC write to apply at TS.
type Write struct {
	Key    []byte
	TS     tt.Timestamp
	Value  []byte
	Delete bool
}

// MetaOp puts or deletes one of the group's transaction records (kv meta).
type MetaOp struct {
	Name   []byte
	Value  []byte
	Delete bool
}

// Ready is what the group wants done. The runtime, in order: persists
// Paxos's HardState and Entries (synced; a leader's Accepts may leave
// before, see paxos.SendBeforePersist), sends Paxos Messages, commits one
// batch with Writes, Meta and the ApplyState, sends Msgs, performs Reads,
// delivers Responses, sends Snapshots, then calls Advance.
type Ready struct {
	paxos.Ready
	Writes    []Write
	Meta      []MetaOp
	Msgs      []Msg
	Reads     []ReadTask
	Responses []Response
}

// MetaPrefix is the prefix of every meta record the transaction layer
// keeps for a group; the runtime passes them back to Restore.
var MetaPrefix = []byte("txn/")

// Phases is where a commit's time went at its coordinator: waiting for its
// own write locks, the prepare round (Prepare sent to the last vote in; zero
// for single-group commits), the Paxos round of the commit record, and the
// exposed commit wait after it was chosen.
type Phases struct {
	Locks, Prepare, Paxos, CommitWait time.Duration
}
