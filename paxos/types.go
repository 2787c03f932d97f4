package paxos

import (
	"errors"
	"fmt"
	"time"

	"github.com/meridiandb/meridian/tt"
)

// ReplicaID names a replica within its group. Zero is not a valid ID.
type ReplicaID uint64

// Ballot orders leadership attempts: by round, then by replica. The zero
// ballot is below every real one.
type Ballot struct {
	Round   uint64
	Replica ReplicaID
}

// Less reports whether b orders before c.
func (b Ballot) Less(c Ballot) bool {
	if b.Round != c.Round {
		return b.Round < c.Round
	}
	return b.Replica < c.Replica
}

// IsZero reports whether b is the zero ballot.
func (b Ballot) IsZero() bool { return b == Ballot{} }

func (b Ballot) String() string { return fmt.Sprintf("%d.%d", b.Round, b.Replica) }

// EntryType distinguishes what a log slot holds.
type EntryType uint8

const (
	// EntryNormal carries a command for the state machine.
	EntryNormal EntryType = iota
	// EntryNoop fills a slot a new leader found empty during recovery.
	EntryNoop
	// EntryBarrier is the first entry a leader proposes once it holds its
	// lease; it marks where that leader's own proposals begin (see the
	// apply rule in doc.go).
	EntryBarrier
)

func (t EntryType) String() string {
	switch t {
	case EntryNormal:
		return "normal"
	case EntryNoop:
		return "noop"
	case EntryBarrier:
		return "barrier"
	}
	return fmt.Sprintf("EntryType(%d)", uint8(t))
}

// Entry is the value of one log slot as a replica holds it.
type Entry struct {
	Index uint64
	// Ballot is the ballot at which this replica accepted the entry.
	Ballot Ballot
	// Proposer is the ballot of the leader that first proposed the value; it
	// travels with the value when later leaders re-propose it.
	Proposer Ballot
	// TS is the timestamp the proposing leader assigned (zero for no-ops).
	TS   tt.Timestamp
	Type EntryType
	// CommitWait: no replica applies the entry before TT.after(TS) (commit
	// wait, architecture invariant 6).
	CommitWait bool
	Data       []byte
}

func (e Entry) String() string {
	return fmt.Sprintf("%d@%s(%s ts=%d proposer=%s %dB)", e.Index, e.Ballot, e.Type, int64(e.TS), e.Proposer, len(e.Data))
}

// size approximates the entry's encoded size for batching limits.
func (e *Entry) size() int { return len(e.Data) + 48 }

// HardState is what a replica must persist before any message that depends
// on it leaves: the ballot it promised and how far it knows the log chosen.
type HardState struct {
	Promised Ballot
	Chosen   uint64
	// Round is the highest round this replica campaigned with. It is
	// persisted before the Prepare leaves, so a restarted replica never
	// reuses a ballot (one ballot must never propose two values for a
	// slot).
	Round uint64
}

// ApplyState is the state of the apply rule after the last applied entry.
// The runtime persists it atomically with the state machine's effects of
// that entry and passes it back at restart (Config.Applied) and with
// snapshots.
type ApplyState struct {
	// Index of the last applied entry.
	Index uint64
	// LastTS is the timestamp of the last applied non-skipped entry.
	LastTS tt.Timestamp
	// MaxProposer is the highest proposer ballot among applied entries
	// (no-ops excluded).
	MaxProposer Ballot
	// ClosedTS is the highest timestamp below which no further entry can be
	// applied: max of LastTS and every closed-timestamp promise whose index
	// has been applied (t_safe_paxos).
	ClosedTS tt.Timestamp
}

// MsgType is the kind of a Message.
type MsgType uint8

const (
	// MsgPrepare is phase 1a: a candidate asks for a promise and a lease
	// vote.
	MsgPrepare MsgType = iota + 1
	// MsgPromise is phase 1b: the answer to MsgPrepare.
	MsgPromise
	// MsgAccept is phase 2a, also the heartbeat: entries to accept, the
	// index the leader released for application, a lease renewal request
	// and a closed-timestamp promise.
	MsgAccept
	// MsgAccepted is phase 2b: the acceptor's contiguous accepted index at
	// the ballot, and its lease renewal answer.
	MsgAccepted
	// MsgRelease frees lease votes given to the sender's ballot (abdication,
	// or a failed candidacy).
	MsgRelease
	// MsgTimeoutNow asks the receiver to campaign at once (leadership
	// transfer).
	MsgTimeoutNow
	// MsgSnapshot carries a state-machine snapshot; the runtime fills
	// Payload and installs it before calling RestoreSnapshot.
	MsgSnapshot
	// MsgPreVote asks whether the receiver would promise Ballot and grant a
	// lease vote, without changing anything (etcd's pre-vote): a replica
	// that cannot win never raises anyone's promised ballot, so a
	// partitioned or lagging replica cannot unseat a healthy leader.
	MsgPreVote
	// MsgPreVoteResp answers MsgPreVote (Reject when it would refuse).
	MsgPreVoteResp
)

func (t MsgType) String() string {
	switch t {
	case MsgPrepare:
		return "Prepare"
	case MsgPromise:
		return "Promise"
	case MsgAccept:
		return "Accept"
	case MsgAccepted:
		return "Accepted"
	case MsgRelease:
		return "Release"
	case MsgTimeoutNow:
		return "TimeoutNow"
	case MsgSnapshot:
		return "Snapshot"
	case MsgPreVote:
		return "PreVote"
	case MsgPreVoteResp:
		return "PreVoteResp"
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// Message is the one message shape replicas exchange. Fields unused by a
// type are zero.
type Message struct {
	Type   MsgType
	Group  uint64
	From   ReplicaID
	To     ReplicaID
	Ballot Ballot

	// Reject: the receiver refused (stale ballot, busy vote, unhealthy
	// clock, or Behind). Promised then carries its promised ballot.
	Reject   bool
	Promised Ballot
	// Behind (on a rejected Promise): the acceptor knows much more of the
	// log than the candidate; the candidate should catch up first.
	Behind bool

	// Index: Prepare → first slot the candidate asks about; Promise and
	// Accepted → the acceptor's contiguous index (chosen, or accepted at
	// Ballot); Snapshot → the snapshot's index.
	Index uint64
	// Chosen: Accept → the index the leader released (chosen, and every
	// commit-wait entry up to it past its commit wait on the leader's
	// clock: followers apply up to it); Promise → the acceptor's chosen
	// index.
	Chosen  uint64
	Entries []Entry

	// LeaseReq is the requester's TT.now().earliest when it sent the
	// request (Prepare, Accept); replies echo it with LeaseGranted.
	LeaseReq     tt.Timestamp
	LeaseGranted bool

	// ClosedIndex/ClosedTS (Accept): every entry applied after index
	// ClosedIndex has a timestamp above ClosedTS.
	ClosedIndex uint64
	ClosedTS    tt.Timestamp

	// Snapshot (MsgSnapshot): the apply state the payload corresponds to.
	Snapshot ApplyState
	// Payload is opaque to paxos: the runtime's snapshot bytes.
	Payload []byte
}

func (m Message) String() string {
	s := fmt.Sprintf("%s %d→%d b=%s idx=%d chosen=%d", m.Type, m.From, m.To, m.Ballot, m.Index, m.Chosen)
	if m.Reject {
		s += fmt.Sprintf(" REJECT(promised=%s behind=%v)", m.Promised, m.Behind)
	}
	if len(m.Entries) > 0 {
		s += fmt.Sprintf(" entries=%d..%d", m.Entries[0].Index, m.Entries[len(m.Entries)-1].Index)
	}
	if m.LeaseGranted {
		s += " lease-granted"
	}
	return s
}

// Lease describes this replica's leadership lease.
type Lease struct {
	Ballot Ballot
	// End: the lease is valid while TT.now().latest < End.
	End tt.Timestamp
	// Holding is false once the leader stepped down or abdicated.
	Holding bool
}

// SnapshotRequest asks the runtime to send a state-machine snapshot to a
// replica whose needed entries were truncated from the log.
type SnapshotRequest struct {
	To ReplicaID
}

// Applied is a chosen entry delivered for application.
type Applied struct {
	Entry
	// Skipped entries must not change the state machine: their value was
	// recovered from a superseded leader after a newer leader's entries
	// were applied (see the apply rule in doc.go). Their proposers fail.
	Skipped bool
	// CommitWaited is the exposed commit wait: how long this replica held
	// the chosen entry until TT.after(TS) (zero when it was already past).
	CommitWaited time.Duration
}

// Ready collects everything the replica wants done. The caller must, in
// order: persist HardState and Entries (synced), send Messages, apply
// Committed (persisting ApplyState atomically with their effects), send
// Snapshots, then call Advance. The one exception: messages for which
// SendBeforePersist is true may leave before the persist, so a leader's
// disk write overlaps its followers'. (Or AdvanceUnsynced after a write
// whose sync is in flight, then, once it is durable, the other messages
// and Synced: see the package documentation.)
type Ready struct {
	HardState *HardState
	// MustSync is false when the only change to persist is the chosen
	// index (which a restarted replica can learn again): the runtime may
	// then write without an fsync.
	MustSync  bool
	Entries   []Entry
	Messages  []Message
	Committed []Applied
	// ApplyState is the state after applying Committed; valid when
	// Committed is non-empty.
	ApplyState ApplyState
	Snapshots  []SnapshotRequest
	// Lease is set when this replica's lease changed.
	Lease *Lease
	// Wake: call Tick once TT.now().earliest >= Wake (or sooner).
	Wake tt.Timestamp
}

// Errors returned by Propose and friends.
var (
	ErrNoLease      = errors.New("paxos: leader holds no valid lease yet")
	ErrBusy         = errors.New("paxos: too many proposals in flight")
	ErrTooLarge     = errors.New("paxos: entry too large")
	ErrClock        = errors.New("paxos: clock unhealthy")
	ErrDropped      = errors.New("paxos: proposal dropped")
	ErrLearner      = errors.New("paxos: read-only replica cannot propose")
	ErrAbdicating   = errors.New("paxos: leader is abdicating")
	ErrInvalidState = errors.New("paxos: invalid persisted state")
)

// NotLeaderError is returned by proposals at a replica that is not the
// leader; Hint names the leader it last heard from (zero if unknown).
type NotLeaderError struct {
	Hint ReplicaID
}

func (e *NotLeaderError) Error() string {
	if e.Hint == 0 {
		return "paxos: not leader (leader unknown)"
	}
	return fmt.Sprintf("paxos: not leader (try replica %d)", e.Hint)
}

// ErrNotLeader matches every *NotLeaderError with errors.Is.
var ErrNotLeader = errors.New("paxos: not leader")

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// SendBeforePersist reports whether m may be sent before its Ready's state is
// persisted. A leader's Accept depends on nothing in the Ready: its entries
// count for the leader only after Advance, and the promise of its ballot
// that made it leader was persisted before the Promise that counted.
func SendBeforePersist(m Message) bool { return m.Type == MsgAccept }
