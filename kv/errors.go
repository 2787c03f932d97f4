package kv

import (
	"errors"
	"fmt"
)

// Sentinel errors. Functions in this package wrap them with context; test for
// them with errors.Is.
var (
	// ErrNotFound reports that a key, log entry, hard state or meta record
	// does not exist (for MVCC reads: no version at or below the read
	// timestamp, or the newest such version is a tombstone).
	ErrNotFound = errors.New("kv: not found")
	// ErrKeyTooLarge reports a user key (or meta name) longer than
	// Options.MaxKeySize.
	ErrKeyTooLarge = errors.New("kv: key too large")
	// ErrValueTooLarge reports a value longer than Options.MaxValueSize (or
	// log entry longer than Options.MaxLogEntrySize).
	ErrValueTooLarge = errors.New("kv: value too large")
	// ErrEmptyKey reports an empty user key, which MVCC writes refuse.
	ErrEmptyKey = errors.New("kv: empty key")
	// ErrInvalidTimestamp reports a negative version timestamp on a write.
	ErrInvalidTimestamp = errors.New("kv: invalid timestamp")
	// ErrBelowGCHorizon reports a read at a timestamp below the GC horizon:
	// versions it would need may have been collected, so it is refused.
	ErrBelowGCHorizon = errors.New("kv: read timestamp below GC horizon")
	// ErrCorrupt reports stored or transferred bytes that fail validation:
	// an undecodable key or value, or a snapshot chunk whose checksum or
	// structure is wrong.
	ErrCorrupt = errors.New("kv: corrupt data")
	// ErrClosed reports use of a closed Engine, Snapshot or Batch.
	ErrClosed = errors.New("kv: closed")
	// ErrFailed reports that the engine hit an unrecoverable storage error
	// (typically a failed WAL write or fsync). The outcome of the batch that
	// hit it is unknown; every later operation except Close returns an
	// error wrapping ErrFailed. Reopen the store (after restarting the
	// process) to recover the durable state.
	ErrFailed = errors.New("kv: engine failed")
)

// maxKeyDisplay bounds how many bytes of a key error messages quote.
const maxKeyDisplay = 64

// keyString formats a key for error messages, truncating long keys.
func keyString(k []byte) string {
	if len(k) > maxKeyDisplay {
		return fmt.Sprintf("%q...(%d bytes)", k[:maxKeyDisplay], len(k))
	}
	return fmt.Sprintf("%q", k)
}

// corruptf returns an error wrapping ErrCorrupt with a formatted reason.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}
