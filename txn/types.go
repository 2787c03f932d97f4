package txn

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/meridiandb/meridian/tt"
)

// TxnID names a transaction. Clients draw it: the first 48 bits are the
// wall-clock time in milliseconds when it was drawn, the other 80 random
// (like a UUIDv7). The time lets a coordinator refuse a commit whose
// outcome record may have expired (Config.OutcomeRetention) instead of
// executing it a second time; an ID whose time bits are zero is not
// checked. Retries of a transaction after an abort keep its priority but
// may keep or renew the ID.
type TxnID struct{ Hi, Lo uint64 }

// Time is when the ID was drawn (0: unknown, or time bits past what a
// Timestamp holds).
func (id TxnID) Time() tt.Timestamp {
	ms := id.Hi >> 16
	if ms > math.MaxInt64/uint64(time.Millisecond) {
		return 0
	}
	return tt.Timestamp(int64(ms) * int64(time.Millisecond))
}

// IsZero reports whether id is the zero ID.
func (id TxnID) IsZero() bool { return id == TxnID{} }

func (id TxnID) String() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], id.Hi)
	binary.BigEndian.PutUint64(b[8:], id.Lo)
	return hex.EncodeToString(b[:])
}

// Bytes returns the ID's 16-byte big-endian form.
func (id TxnID) Bytes() []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b[:8], id.Hi)
	binary.BigEndian.PutUint64(b[8:], id.Lo)
	return b
}

// TxnIDFromBytes parses Bytes' output.
func TxnIDFromBytes(b []byte) (TxnID, error) {
	if len(b) != 16 {
		return TxnID{}, fmt.Errorf("txn: transaction ID of %d bytes, want 16", len(b))
	}
	return TxnID{Hi: binary.BigEndian.Uint64(b[:8]), Lo: binary.BigEndian.Uint64(b[8:])}, nil
}

// Meta identifies a read-write transaction and orders it for wound-wait:
// the smaller Priority (the earlier start) is the older transaction and
// wins conflicts.
type Meta struct {
	ID       TxnID
	Priority tt.Timestamp
}

// older reports whether a has priority over b.
func older(a, b Meta) bool {
	if a.Priority != b.Priority {
		return a.Priority < b.Priority
	}
	if a.ID.Hi != b.ID.Hi {
		return a.ID.Hi < b.ID.Hi
	}
	return a.ID.Lo < b.ID.Lo
}

// Mutation is one buffered write.
type Mutation struct {
	Key    []byte
	Value  []byte
	Delete bool
}

// Participant is one group a multi-group transaction touches.
type Participant struct {
	Group  uint64
	Writes []Mutation
	// Read: the transaction holds read locks at this group, which must
	// still be held when it prepares.
	Read bool
	// Epoch is the lock epoch its reads here were answered under (see
	// Epoch); required when Read is set.
	Epoch uint64
}

// An epoch names one leadership of a group: the leader's ballot, packed as
// round<<16 | replica. Locks live in the leader's memory, so a leader
// change loses them; reads answer with the epoch, and a transaction that
// read under one epoch and commits (or reads again) under another is
// aborted instead of committing on reads nobody protected.
func epochOf(round, replica uint64) uint64 { return round<<16 | replica&0xffff }

// Errors. The runtime maps them to gRPC status codes: ErrAborted → Aborted
// (the client retries the transaction), ErrNotLeader → Unavailable with a
// hint, ErrBusy → ResourceExhausted, ErrTimeout → DeadlineExceeded,
// ErrUnknownTxn → NotFound, ErrInvalid → InvalidArgument, ErrClock →
// Unavailable (another replica may serve).
var (
	ErrAborted    = errors.New("txn: aborted")
	ErrNotLeader  = errors.New("txn: not the group's leader")
	ErrBusy       = errors.New("txn: too many waiting requests")
	ErrTimeout    = errors.New("txn: timed out")
	ErrUnknownTxn = errors.New("txn: unknown transaction")
	ErrInvalid    = errors.New("txn: invalid request")
	// ErrClock: the replica's clock is unhealthy or fenced, and the
	// request needs it (a strong or bounded-staleness read picks its
	// timestamp from it).
	ErrClock = errors.New("txn: clock unhealthy or fenced")
	// ErrTooOld: a commit for a transaction drawn longer ago than its
	// outcome is kept; if it was committed before, that can no longer be
	// known, so it is not executed (FailedPrecondition).
	ErrTooOld = errors.New("txn: transaction too old to commit")
)

// AbortError says why a transaction was aborted; errors.Is(err,
// ErrAborted) holds.
type AbortError struct{ Reason string }

func (e *AbortError) Error() string        { return "txn: aborted: " + e.Reason }
func (e *AbortError) Is(target error) bool { return target == ErrAborted }

func aborted(format string, args ...any) error {
	return &AbortError{Reason: fmt.Sprintf(format, args...)}
}

// Config tunes a group's transaction layer.
type Config struct {
	// TxnTimeout: an active transaction idle this long is aborted
	// (abandoned). Default 10 s.
	TxnTimeout time.Duration
	// LockWait bounds how long a request waits for a lock. Default 5 s.
	LockWait time.Duration
	// MaxWaiters bounds queued lock requests. Default 4096.
	MaxWaiters int
	// CommitTimeout bounds a coordinator's wait for votes. Default 10 s.
	CommitTimeout time.Duration
	// RetryInterval between resends of Prepare messages and between a
	// prepared participant's outcome queries. Default 500 ms.
	RetryInterval time.Duration
	// QueryAfter: a prepared participant asks the coordinator for the
	// outcome once prepared this long. Default 2 s.
	QueryAfter time.Duration
	// ReadWait bounds how long a snapshot read waits for safe time.
	// Default 5 s.
	ReadWait time.Duration
	// OutcomeRetention: outcome records of transactions whose timestamp is
	// this far below the group's last applied timestamp are dropped, and a
	// coordinator refuses (ErrTooOld) commits of transactions whose ID was
	// drawn more than 3/4 of it ago and of which it knows nothing (a late
	// retry could otherwise execute twice; the quarter is slack for
	// clients' clocks). Clients stop retrying a commit well before.
	// Default 2 min.
	OutcomeRetention time.Duration
	// MaxWrites bounds a transaction's writes at one group. Default 10000.
	MaxWrites int
	// MaxKeySize and MaxValueSize bound what a write may carry, so that no
	// committed record can fail to apply. Defaults 4 KiB and 1 MiB (kv's).
	MaxKeySize, MaxValueSize int
	// Start and End bound the group's keys when set (End nil: unbounded);
	// writes and locking reads outside are refused.
	Start, End []byte
	// Bugs switch on deliberate protocol violations for the simulator's
	// negative controls.
	Bugs Bugs
}

// Bugs are deliberate violations that prove the checkers can fail.
type Bugs struct {
	// NoCommitWait: commits are applied and acknowledged without waiting
	// until TT.after(s).
	NoCommitWait bool
	// LastAppliedRead: a leader's single-group strong read picks the
	// timestamp of the last entry it applied rather than the last it
	// assigned, so a write a follower already shows can be missing.
	LastAppliedRead bool
}

func (c *Config) fill() {
	if c.TxnTimeout <= 0 {
		c.TxnTimeout = 10 * time.Second
	}
	if c.LockWait <= 0 {
		c.LockWait = 5 * time.Second
	}
	if c.MaxWaiters <= 0 {
		c.MaxWaiters = 4096
	}
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = 10 * time.Second
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = 500 * time.Millisecond
	}
	if c.QueryAfter <= 0 {
		c.QueryAfter = 2 * time.Second
	}
	if c.ReadWait <= 0 {
		c.ReadWait = 5 * time.Second
	}
	if c.OutcomeRetention <= 0 {
		c.OutcomeRetention = 2 * time.Minute
	}
	if c.MaxWrites <= 0 {
		c.MaxWrites = 10000
	}
	if c.MaxKeySize <= 0 {
		c.MaxKeySize = 4 << 10
	}
	if c.MaxValueSize <= 0 {
		c.MaxValueSize = 1 << 20
	}
}
