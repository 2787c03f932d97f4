// Package txnkv connects the pure transaction layer to storage: it writes a
// txn.Ready's effects into a kv batch, performs its reads, and loads the
// records a txn.Group restores from. The node runtime and the simulator
// share it, so the simulator exercises the production path.
package txnkv

import (
	"errors"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos/pebblestore"
	"github.com/meridiandb/meridian/txn"
)

// PersistPaxos writes the Ready's Paxos hard state and entries, synced
// when the Ready says it must be (a moved chosen index alone need not be),
// skipping the commit when there is nothing. It returns whether it synced.
func PersistPaxos(eng *kv.Engine, store *pebblestore.Store, rd *txn.Ready) (bool, error) {
	if rd.HardState == nil && len(rd.Entries) == 0 {
		return false, nil
	}
	b := eng.NewBatch()
	if err := store.SaveReady(b, &rd.Ready); err != nil {
		b.Close()
		return false, err
	}
	return rd.MustSync, b.Commit(rd.MustSync)
}

// Apply writes the Ready's MVCC writes, transaction records and apply
// state in one batch (unsynced: the applied entries are durable in the log
// and replay after a crash).
func Apply(eng *kv.Engine, store *pebblestore.Store, group uint64, rd *txn.Ready) error {
	if len(rd.Committed) == 0 && len(rd.Writes) == 0 && len(rd.Meta) == 0 {
		return nil
	}
	b := eng.NewBatch()
	for _, w := range rd.Writes {
		var err error
		if w.Delete {
			err = b.Delete(w.Key, w.TS)
		} else {
			err = b.Put(w.Key, w.TS, w.Value)
		}
		if err != nil {
			b.Close()
			return err
		}
	}
	for _, m := range rd.Meta {
		var err error
		if m.Delete {
			err = b.DeleteMeta(group, m.Name)
		} else {
			err = b.SetMeta(group, m.Name, m.Value)
		}
		if err != nil {
			b.Close()
			return err
		}
	}
	if len(rd.Committed) > 0 {
		if err := store.SaveApplyState(b, rd.ApplyState); err != nil {
			b.Close()
			return err
		}
	}
	return b.Commit(false)
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
