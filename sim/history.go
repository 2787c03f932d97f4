package sim

import "github.com/meridiandb/meridian/tt"

// TxnKind distinguishes read-write from read-only transactions in a
// history.
type TxnKind uint8

const (
	// ReadWrite transactions take locks and commit at a timestamp.
	ReadWrite TxnKind = iota
	// ReadOnly transactions read a snapshot at a timestamp, lock-free.
	ReadOnly
)

// ReadObs is one key a transaction read and what it saw.
type ReadObs struct {
	Key   string
	Found bool
	Value string // every value written in a run is unique, so it names its writer
}

// WriteOp is one key a read-write transaction wrote.
type WriteOp struct {
	Key    string
	Value  string // unique across the run
	Delete bool
}

// TxnRecord is one transaction as a client observed it, with virtual true
// times. The external-consistency checker takes a slice of them.
type TxnRecord struct {
	ID   string
	Kind TxnKind
	// Invoke is when the client began the transaction; Complete when it
	// learned the outcome (zero when it never did).
	Invoke, Complete tt.Timestamp
	// Committed: the client was told the transaction committed (RW) or the
	// reads succeeded (RO). Unknown: the outcome was never learned (a
	// timeout, a lost reply): it may or may not have committed. A record
	// with neither is a definite abort and is ignored except for its reads,
	// which must still have been consistent when they were returned... a
	// definite abort's reads are ignored.
	Committed bool
	Unknown   bool
	// Stale marks a bounded-staleness read-only transaction: its snapshot
	// must be consistent, but it is exempt from real-time order (it may
	// deliberately read in the past).
	Stale bool
	// Released marks a read-write transaction that wrote nothing: it ended
	// with a checked rollback, Committed when every group it read at
	// confirmed its locks had held. It has no timestamp (TS is zero), but
	// its reads must agree on one (check (e)).
	Released bool
	// TS is the commit timestamp (RW) or the read timestamp (RO); zero
	// when unknown.
	TS     tt.Timestamp
	Reads  []ReadObs
	Writes []WriteOp
}
