package paxos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Config configures a Replica. The restart fields (HardState, Entries,
// FirstIndex, Applied) come from what the runtime persisted.
type Config struct {
	Group uint64
	ID    ReplicaID
	// Voters are the voting replicas (3 or 5; 1 is allowed for tests and
	// single-node demos). Learners are non-voting read-only replicas.
	Voters   []ReplicaID
	Learners []ReplicaID

	// LeaseDuration is how long a lease vote lasts: until the voter's
	// TT.now().latest + LeaseDuration. Default 10 s (Spanner's).
	LeaseDuration time.Duration
	// HeartbeatInterval between leader heartbeats, which renew the lease and
	// advance the closed timestamp. Default LeaseDuration/10.
	HeartbeatInterval time.Duration
	// ElectionTimeout: a follower that hears nothing from a leader for a
	// random time in [ElectionTimeout, 2×ElectionTimeout) campaigns. Default
	// LeaseDuration/4.
	ElectionTimeout time.Duration
	// RetryInterval: unacknowledged accepts are resent after this long.
	// Default HeartbeatInterval.
	RetryInterval time.Duration
	// MaxInflight bounds proposed-but-unchosen entries. Default 4096.
	MaxInflight int
	// MaxMsgBytes bounds the entries carried by one Accept. Default 1 MiB.
	MaxMsgBytes int
	// MaxEntryBytes bounds one proposal. Default 4 MiB.
	MaxEntryBytes int
	// MaxPromiseEntries bounds what a Promise carries; an acceptor further
	// ahead answers Behind. It must exceed 2×MaxInflight (how far any log
	// may run past the highest chosen index), so that the most up-to-date
	// replica can always be elected. Default max(16384, 2×MaxInflight+1).
	MaxPromiseEntries int

	// Rand is the replica's only source of randomness (election jitter).
	// Required: seed it for reproducible runs.
	Rand *rand.Rand

	// Restart state.
	HardState  HardState
	Entries    []Entry // persisted log entries (any order; holes allowed)
	FirstIndex uint64  // first index still in the log; 0 means Applied.Index+1
	Applied    ApplyState

	// Bugs switches on deliberate protocol bugs for the simulator's
	// negative controls. Never set outside tests.
	Bugs Bugs
}

// Bugs are deliberate protocol violations used to prove the checkers can
// fail.
type Bugs struct {
	// LeaseOverlap: acceptors grant a new leader a lease vote without
	// waiting out the vote they gave the previous leader.
	LeaseOverlap bool
	// OwnClockApply: a replica applies a commit-wait entry once its own
	// clock says TT.after(ts), without waiting for the leader to release
	// it, so a follower whose ε is narrower than its leader's shows a
	// write before the leader has applied it.
	OwnClockApply bool
}

func (c *Config) validate() error {
	if c.ID == 0 {
		return errors.New("paxos: replica ID must be non-zero")
	}
	if c.Rand == nil {
		return errors.New("paxos: Config.Rand is required")
	}
	if len(c.Voters) == 0 {
		return errors.New("paxos: no voters")
	}
	seen := map[ReplicaID]bool{}
	for _, id := range append(slices.Clone(c.Voters), c.Learners...) {
		if id == 0 {
			return errors.New("paxos: replica ID 0 in membership")
		}
		if seen[id] {
			return fmt.Errorf("paxos: replica %d listed twice", id)
		}
		seen[id] = true
	}
	if !seen[c.ID] {
		return fmt.Errorf("paxos: replica %d is not a member", c.ID)
	}
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = 10 * time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = c.LeaseDuration / 10
	}
	if c.HeartbeatInterval*2 >= c.LeaseDuration {
		return fmt.Errorf("paxos: heartbeat interval %s must be well below the lease %s", c.HeartbeatInterval, c.LeaseDuration)
	}
	if c.ElectionTimeout <= 0 {
		c.ElectionTimeout = c.LeaseDuration / 4
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = c.HeartbeatInterval
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = 4096
	}
	if c.MaxMsgBytes <= 0 {
		c.MaxMsgBytes = 1 << 20
	}
	if c.MaxEntryBytes <= 0 {
		c.MaxEntryBytes = 4 << 20
	}
	if c.MaxPromiseEntries <= 0 {
		c.MaxPromiseEntries = max(16384, 2*c.MaxInflight+1)
	}
	if c.MaxPromiseEntries <= 2*c.MaxInflight {
		return fmt.Errorf("paxos: MaxPromiseEntries %d must exceed 2×MaxInflight (%d)", c.MaxPromiseEntries, 2*c.MaxInflight)
	}
	if c.FirstIndex == 0 {
		c.FirstIndex = c.Applied.Index + 1
	}
	if c.FirstIndex > c.Applied.Index+1 {
		return fmt.Errorf("%w: first log index %d beyond applied index %d", ErrInvalidState, c.FirstIndex, c.Applied.Index)
	}
	if c.HardState.Chosen < c.Applied.Index {
		c.HardState.Chosen = c.Applied.Index
	}
	return nil
}
