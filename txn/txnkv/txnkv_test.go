package txnkv

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/paxos/pebblestore"
	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/txn"
)

// Persist makes a Ready's writes visible before its sync, and syncs
// exactly the Readies that carry Paxos state that must be durable.
func TestPersistSyncsOnlyWhatMustBeDurable(t *testing.T) {
	mem := vfs.NewCrashableMem()
	eng, err := kv.Open("data", kv.Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	store := pebblestore.New(eng, 7)
	b := paxos.Ballot{Round: 1, Replica: 1}

	// New entries: visible at once, durable once sync returns.
	rd := txn.Ready{Ready: paxos.Ready{
		HardState: &paxos.HardState{Promised: b, Round: 1},
		MustSync:  true,
		Entries:   []paxos.Entry{{Index: 1, Ballot: b, Proposer: b, Type: paxos.EntryNoop}},
	}}
	before := eng.Stats()
	sync, err := Persist(eng, store, 7, &rd)
	if err != nil || sync == nil {
		t.Fatalf("entries: sync %v, err %v; want a sync to wait for", sync != nil, err)
	}
	st, err := store.Load()
	if err != nil || len(st.Entries) != 1 || st.HardState.Promised != b {
		t.Fatalf("before the sync: %+v, %v; want the entry and the promise visible", st, err)
	}
	if err := sync(); err != nil {
		t.Fatal(err)
	}
	if got := eng.Stats().SyncedCommits - before.SyncedCommits; got != 1 {
		t.Fatalf("%d synced commits, want 1", got)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	eng2, err := kv.Open("data", kv.Options{FS: crashed})
	if err != nil {
		t.Fatal(err)
	}
	st, err = pebblestore.New(eng2, 7).Load()
	eng2.Close()
	if err != nil || len(st.Entries) != 1 || st.HardState.Promised != b {
		t.Fatalf("after a crash: %+v, %v; want the synced entry and promise", st, err)
	}

	// A moved chosen index and applied writes alone need no sync.
	rd = txn.Ready{Ready: paxos.Ready{HardState: &paxos.HardState{Promised: b, Round: 1, Chosen: 1}},
		Writes: []txn.Write{{Key: []byte("k"), TS: 5, Value: []byte("v")}}}
	before = eng.Stats()
	if sync, err := Persist(eng, store, 7, &rd); err != nil || sync != nil {
		t.Fatalf("chosen index and writes: sync %v, err %v; want none", sync != nil, err)
	}
	if got := eng.Stats().SyncedCommits - before.SyncedCommits; got != 0 {
		t.Fatalf("%d synced commits, want 0", got)
	}
	if v, _, err := eng.Get([]byte("k"), 10); err != nil || string(v) != "v" {
		t.Fatalf("applied write: %q, %v", v, err)
	}

	// An empty Ready writes nothing.
	if sync, err := Persist(eng, store, 7, &txn.Ready{}); err != nil || sync != nil {
		t.Fatalf("empty Ready: sync %v, err %v", sync != nil, err)
	}
}

func TestGCHorizon(t *testing.T) {
	const now = tt.Timestamp(100 * time.Second)
	for _, c := range []struct {
		safe []tt.Timestamp
		want tt.Timestamp
	}{
		{nil, 0}, // no replicas: nothing to collect
		{[]tt.Timestamp{now}, now - tt.Timestamp(time.Minute)},                                // the retention binds
		{[]tt.Timestamp{now, tt.Timestamp(20 * time.Second)}, tt.Timestamp(20 * time.Second)}, // a lagging replica binds
		{[]tt.Timestamp{now, 0}, 0}, // one that applied nothing
	} {
		if got := GCHorizon(now, time.Minute, c.safe); got != c.want {
			t.Errorf("GCHorizon(%d, 1m, %v) = %d; want %d", now, c.safe, got, c.want)
		}
	}
	if got := GCHorizon(tt.Timestamp(time.Second), time.Minute, []tt.Timestamp{tt.Timestamp(time.Second)}); got != 0 {
		t.Errorf("a retention longer than the clock's reading: %d; want 0", got)
	}
}
