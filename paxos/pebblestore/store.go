// Package pebblestore persists a paxos.Replica's state in a kv.Engine: its
// hard state, log entries, first log index and apply state, under the
// group's keyspaces. The node runtime and the simulator both use it, so the
// simulator exercises the same bytes on the same Pebble as production.
package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos"
)

var (
	metaApply = []byte("paxos/apply")
	metaFirst = []byte("paxos/first")
)

// Store is one group's Paxos state in an engine. It is stateless apart from
// its names; several goroutines may use distinct Stores on one engine.
type Store struct {
	eng   *kv.Engine
	group uint64
}

// New returns the store of group in eng.
func New(eng *kv.Engine, group uint64) *Store { return &Store{eng: eng, group: group} }

// Group returns the group ID.
func (s *Store) Group() uint64 { return s.group }

// State is what a replica restarts from.
type State struct {
	HardState  paxos.HardState
	Entries    []paxos.Entry
	FirstIndex uint64
	Applied    paxos.ApplyState
}

// Load reads the persisted state of the group (all zero for a new group).
func (s *Store) Load() (State, error) {
	var st State
	if b, err := s.eng.HardState(s.group); err == nil {
		if st.HardState, err = paxos.DecodeHardState(b); err != nil {
			return st, fmt.Errorf("group %d hard state: %w", s.group, err)
		}
	} else if !errors.Is(err, kv.ErrNotFound) {
		return st, err
	}
	if b, err := s.eng.Meta(s.group, metaApply); err == nil {
		if st.Applied, err = paxos.DecodeApplyState(b); err != nil {
			return st, fmt.Errorf("group %d apply state: %w", s.group, err)
		}
	} else if !errors.Is(err, kv.ErrNotFound) {
		return st, err
	}
	if b, err := s.eng.Meta(s.group, metaFirst); err == nil {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return st, fmt.Errorf("group %d: corrupt first index", s.group)
		}
		st.FirstIndex = v
	} else if !errors.Is(err, kv.ErrNotFound) {
		return st, err
	}
	if st.FirstIndex == 0 {
		st.FirstIndex = st.Applied.Index + 1
	}
	if st.FirstIndex > st.Applied.Index+1 {
		// The truncation was persisted (synced) but the apply state write
		// before it was not: impossible, since a synced commit makes every
		// earlier commit durable. Refuse rather than guess.
		return st, fmt.Errorf("%w: group %d first index %d beyond applied %d", paxos.ErrInvalidState, s.group, st.FirstIndex, st.Applied.Index)
	}
	first, last, ok, err := s.eng.LogBounds(s.group)
	if err != nil {
		return st, err
	}
	if ok {
		lo := max(first, st.FirstIndex)
		for lo <= last {
			ents, err := s.eng.LogEntries(s.group, lo, last+1, 8<<20)
			if err != nil {
				return st, err
			}
			if len(ents) == 0 {
				break
			}
			for _, le := range ents {
				e, err := paxos.DecodeEntry(le.Data)
				if err != nil {
					return st, fmt.Errorf("group %d log entry %d: %w", s.group, le.Index, err)
				}
				if e.Index != le.Index {
					return st, fmt.Errorf("%w: group %d log key %d holds entry %d", paxos.ErrInvalidState, s.group, le.Index, e.Index)
				}
				st.Entries = append(st.Entries, e)
			}
			lo = ents[len(ents)-1].Index + 1
		}
	}
	return st, nil
}

// SaveReady writes a Ready's hard state and entries into b. Commit b with
// sync before sending the Ready's messages.
func (s *Store) SaveReady(b *kv.Batch, rd *paxos.Ready) error {
	if rd.HardState != nil {
		if err := b.SetHardState(s.group, rd.HardState.Marshal()); err != nil {
			return err
		}
	}
	var buf []byte
	for i := range rd.Entries {
		buf = paxos.AppendEntry(buf[:0], &rd.Entries[i])
		if err := b.AppendLog(s.group, rd.Entries[i].Index, buf); err != nil {
			return err
		}
	}
	return nil
}

// SaveApplyState records the apply state in b, which must also hold the
// state machine's effects of the entries it covers.
func (s *Store) SaveApplyState(b *kv.Batch, st paxos.ApplyState) error {
	return b.SetMeta(s.group, metaApply, st.Marshal())
}

// Truncate removes log entries below before and records the new first
// index. before must not exceed the persisted applied index + 1; commit b
// synced so the apply state it relies on is durable too.
func (s *Store) Truncate(b *kv.Batch, before uint64) error {
	if err := b.TruncateLog(s.group, before); err != nil {
		return err
	}
	return b.SetMeta(s.group, metaFirst, binary.AppendUvarint(nil, before))
}

// ResetLog clears the whole log and sets the first index (snapshot install).
func (s *Store) ResetLog(b *kv.Batch, first uint64) error {
	if err := b.TruncateLog(s.group, ^uint64(0)); err != nil {
		return err
	}
	return b.SetMeta(s.group, metaFirst, binary.AppendUvarint(nil, first))
}
