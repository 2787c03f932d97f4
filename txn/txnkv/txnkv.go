// Package txnkv connects the pure transaction layer to storage: it writes a
// txn.Ready's effects into a kv batch, performs its reads, and loads the
// records a txn.Group restores from. The node runtime and the simulator
// share it, so the simulator exercises the production path.
package txnkv

import (
	"errors"
	"time"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos/pebblestore"
	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/txn"
)

// Persist writes a Ready's effects in one batch: the Paxos hard state and
// entries, and the MVCC writes, transaction records and apply state of
// what it applies. The batch is synced when the Ready says it must be (new
// entries or a new promise; a moved chosen index or applied entries alone
// need not be: they are durable in the log and replay after a crash). One
// batch rather than two saves a WAL write per Ready and keeps the log and
// what was applied from it atomic.
//
// Persist returns once the batch is applied and visible to reads. When the
// batch must be synced, sync is non-nil and blocks until it is durable (see
// kv.Batch.CommitNoSyncWait); the caller must call it exactly once, and
// must hold back what depends on the Ready's durability until it returns
// nil: the Paxos messages that SendBeforePersist does not let go early,
// and Synced (or Advance), which counts a leader's own acceptance of the
// entries. The rest of the Ready (2PC messages, reads, responses) depends
// only on chosen entries, durable on a majority that counts the leader
// only after Synced, and on volatile leader state, so it may leave before
// the sync.
func Persist(eng *kv.Engine, store *pebblestore.Store, group uint64, rd *txn.Ready) (sync func() error, err error) {
	paxosState := rd.HardState != nil || len(rd.Entries) > 0
	applied := len(rd.Committed) > 0 || len(rd.Writes) > 0 || len(rd.Meta) > 0
	if !paxosState && !applied {
		return nil, nil
	}
	b := eng.NewBatch()
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if paxosState {
		if err := store.SaveReady(b, &rd.Ready); err != nil {
			return nil, err
		}
	}
	for _, w := range rd.Writes {
		if w.Delete {
			err = b.Delete(w.Key, w.TS)
		} else {
			err = b.Put(w.Key, w.TS, w.Value)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, m := range rd.Meta {
		if m.Delete {
			err = b.DeleteMeta(group, m.Name)
		} else {
			err = b.SetMeta(group, m.Name, m.Value)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(rd.Committed) > 0 {
		if err := store.SaveApplyState(b, rd.ApplyState); err != nil {
			return nil, err
		}
	}
	if paxosState && rd.MustSync {
		return b.CommitNoSyncWait()
	}
	return nil, b.Commit(false)
}

// Read performs a read task: a point read (one result or none) or a scan.
func Read(r kv.Reader, t txn.ReadTask) ([]kv.KeyValue, error) {
	if t.Key != nil {
		v, ts, err := r.Get(t.Key, t.TS)
		if errors.Is(err, kv.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []kv.KeyValue{{Key: t.Key, Value: v, TS: ts}}, nil
	}
	return r.Scan(t.Start, t.End, t.TS, t.Limit, t.Reverse)
}

// Records loads the group's transaction records for txn.Group.Restore.
func Records(r kv.Reader, group uint64) ([][2][]byte, error) {
	var out [][2][]byte
	err := r.MetaScan(group, txn.MetaPrefix, func(name, value []byte) error {
		out = append(out, [2][]byte{append([]byte(nil), name...), append([]byte(nil), value...)})
		return nil
	})
	return out, err
}

// GCHorizon is the timestamp a node may collect versions at (the node
// runtime and the simulator share it): the clock's earliest now minus the
// retention, capped by the safe time of every replica the node hosts. The
// cap keeps kv.Engine.GC's contract that nothing is written at or below the
// horizon: every write a replica has still to apply is above its safe time
// (commits above its closed timestamp, prepared transactions above their
// prepare timestamps), so the history at and below the horizon is final,
// and a lagging replica can still serve reads at its safe time. It is 0
// when nothing may be collected (no replicas, or one that has applied
// nothing).
func GCHorizon(earliest tt.Timestamp, retention time.Duration, safeTimes []tt.Timestamp) tt.Timestamp {
	if len(safeTimes) == 0 {
		return 0
	}
	h := earliest.Add(-retention)
	for _, s := range safeTimes {
		h = min(h, s)
	}
	return max(h, 0)
}
