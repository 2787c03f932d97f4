package txn

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meridiandb/meridian/paxos"
)

// Wound-wait through Group.Handle at one group's leader (architecture
// invariant 7). The scripts under testdata/ show the same cases step by
// step; these tests pin the details: error types, deadlines, bounds.

func TestWoundedTransactionIsAborted(t *testing.T) {
	c := newCluster(t, hOpts{})
	l := c.leader(1)
	old, young := newMeta(1), newMeta(2)
	c.ok(c.send(1, nil, readReq(young, "a/k")))
	c.ok(c.send(1, nil, scanReq(young, "a/s", "")))
	c.ok(c.send(1, nil, readReq(old, "a/k")))
	// The older transaction writes a/k (exclusive): the younger reader is
	// wounded and the commit goes ahead without waiting for LockWait.
	id := c.send(1, nil, commitReq(old, part(1, true, "a/k=o", "a/s2=o")))
	if a := c.wait(id, 50*time.Millisecond); a.err != nil {
		t.Fatal(a.err)
	}
	if l.g.locks.holds(young.ID) {
		t.Fatal("the wounded transaction kept locks")
	}
	for _, req := range []Request{readReq(young, "a/j"), commitReq(young, part(1, true, "a/j=y")), scanReq(young, "a", "b")} {
		a := c.must(c.send(1, nil, req))
		var ae *AbortError
		if !errors.Is(a.err, ErrAborted) || !errors.As(a.err, &ae) {
			t.Fatalf("%v: %v, want an *AbortError", req.Kind, a.err)
		}
		if want := "wounded by older transaction " + old.ID.String(); ae.Reason != want {
			t.Errorf("reason %q, want %q", ae.Reason, want)
		}
		if errors.Is(a.err, ErrBusy) || errors.Is(a.err, ErrTimeout) {
			t.Errorf("an abort matches other sentinels: %v", a.err)
		}
	}
}

func TestYoungerWaitsForOlder(t *testing.T) {
	c := newCluster(t, hOpts{cfg: Config{LockWait: 5 * time.Second}})
	old, young := newMeta(1), newMeta(2)
	c.ok(c.send(1, nil, readReq(old, "a/k")))
	w := c.send(1, nil, commitReq(young, part(1, false, "a/k=y")))
	// The younger reader of a key the older one is committing waits too.
	c.ok(c.send(1, nil, readReq(old, "a/m")))
	c.advance(time.Second)
	if !c.pending(w) {
		t.Fatalf("the younger writer did not wait: %+v", c.must(w))
	}
	oc := c.wait(c.send(1, nil, commitReq(old, part(1, true, "a/m=o"))), time.Second)
	if oc.err != nil {
		t.Fatal(oc.err)
	}
	a := c.wait(w, 100*time.Millisecond)
	if a.err != nil || a.resp.TS <= oc.resp.TS {
		t.Fatalf("younger commit after the older: ts %s (older %s), %v", c.rel(a.resp.TS), c.rel(oc.resp.TS), a.err)
	}
	if a.at.Sub(c.reqs[w].at) < time.Second {
		t.Fatalf("the younger commit did not wait for the older")
	}
}

func TestLockWaitTimeout(t *testing.T) {
	lockWait := 700 * time.Millisecond
	c := newCluster(t, hOpts{cfg: Config{LockWait: lockWait}})
	old, young, reader := newMeta(1), newMeta(2), newMeta(3)
	c.ok(c.send(1, nil, readReq(old, "a/k")))
	id := c.send(1, nil, commitReq(young, part(1, false, "a/k=y")))
	a := c.wait(id, 2*lockWait)
	if !errors.Is(a.err, ErrAborted) {
		t.Fatalf("waiter: %v, want ErrAborted", a.err)
	}
	if waited := a.at.Sub(c.reqs[id].at); waited < lockWait || waited > lockWait+5*time.Millisecond {
		t.Errorf("the waiter gave up after %s, want LockWait %s", waited, lockWait)
	}
	if !strings.Contains(a.err.Error(), "waited "+lockWait.String()) {
		t.Errorf("reason: %v", a.err)
	}
	// The waiting transaction was aborted with it.
	if a := c.must(c.send(1, nil, readReq(young, "a/j"))); !errors.Is(a.err, ErrAborted) {
		t.Errorf("the timed-out transaction's next read: %v", a.err)
	}
	// A locking read waiting behind a logged commit times out alike.
	c.dropPaxos = func(m paxos.Message) bool { return m.Type == paxos.MsgAccept }
	c.send(1, nil, commitReq(old, part(1, true, "a/x=o")))
	rd := c.send(1, nil, readReq(reader, "a/x"))
	a = c.wait(rd, 2*lockWait)
	if !errors.Is(a.err, ErrAborted) || a.at.Sub(c.reqs[rd].at) < lockWait {
		t.Errorf("waiting reader: %v after %s", a.err, a.at.Sub(c.reqs[rd].at))
	}
	c.dropPaxos = nil
}

func TestMaxWaiters(t *testing.T) {
	c := newCluster(t, hOpts{cfg: Config{MaxWaiters: 2, LockWait: 5 * time.Second}})
	holder := newMeta(1)
	// The holder's commit record is proposed but not chosen (no Accepts
	// leave): it keeps the exclusive lock on a/x, and cannot be wounded.
	c.dropPaxos = func(m paxos.Message) bool { return m.Type == paxos.MsgAccept }
	hc := c.send(1, nil, commitReq(holder, part(1, false, "a/x=h")))
	w1 := c.send(1, nil, readReq(newMeta(0), "a/x")) // older: waits, cannot wound
	w2 := c.send(1, nil, readReq(newMeta(2), "a/x"))
	busy := c.must(c.send(1, nil, readReq(newMeta(3), "a/x")))
	if !errors.Is(busy.err, ErrBusy) {
		t.Fatalf("third waiter: %v, want ErrBusy", busy.err)
	}
	// A commit refused for the same reason aborts its transaction (its
	// locks go): the client sees ErrAborted, the reason names the bound.
	bc := c.must(c.send(1, nil, commitReq(newMeta(4), part(1, false, "a/x=4"))))
	if !errors.Is(bc.err, ErrAborted) || !strings.Contains(bc.err.Error(), ErrBusy.Error()) {
		t.Fatalf("commit beyond the bound: %v", bc.err)
	}
	if st := c.leader(1).g.Stats(); st.LockWaiters != 2 {
		t.Fatalf("stats %+v, want 2 lock waiters", st)
	}
	c.dropPaxos = nil
	// The paxos leader resends its Accepts; the commit lands and the
	// waiters read it.
	hts := c.wait(hc, time.Second).resp.TS
	for _, id := range []uint64{w1, w2} {
		a := c.wait(id, time.Second)
		if a.err != nil || len(a.kvs) != 1 || a.kvs[0].ts != hts {
			t.Fatalf("waiter %d: %v %v", id, a.kvs, a.err)
		}
	}
}

// A transaction that logged its commit record or prepared is not wounded:
// the older one waits, and both succeed.
func TestLoggedOrPreparedNotWounded(t *testing.T) {
	c := newCluster(t, hOpts{groups: 2, cfg: twoPCConfig()})
	young, old := newMeta(2), newMeta(1)
	c.dropPaxos = func(m paxos.Message) bool { return m.Type == paxos.MsgAccept && m.Group == 1 }
	yc := c.send(1, nil, commitReq(young, part(1, false, "a/k=y")))
	oc := c.send(1, nil, commitReq(old, part(1, false, "a/k=o")))
	c.advance(50 * time.Millisecond)
	if !c.pending(yc) || !c.pending(oc) {
		t.Fatal("answers before the commit record was chosen")
	}
	c.dropPaxos = nil
	ya, oa := c.wait(yc, time.Second), c.wait(oc, time.Second)
	if ya.err != nil || oa.err != nil || oa.resp.TS <= ya.resp.TS {
		t.Fatalf("young %s %v, old %s %v", c.rel(ya.resp.TS), ya.err, c.rel(oa.resp.TS), oa.err)
	}

	// Prepared at group 2 (the decision is held back).
	young2, old2 := newMeta(4), newMeta(3)
	c.dropTxn = func(_ *hReplica, m Msg) bool { return m.Type == MsgDecide || m.Type == MsgQuery }
	y2 := c.wait(c.send(1, nil, commitReq(young2, part(1, false, "a/q=y"), part(2, false, "b/p=y"))), time.Second)
	if y2.err != nil {
		t.Fatal(y2.err)
	}
	o2 := c.send(2, nil, commitReq(old2, part(2, false, "b/p=o")))
	c.advance(time.Second)
	if !c.pending(o2) || c.leader(2).g.Prepared() != 1 {
		t.Fatal("the older transaction did not wait for the prepared one")
	}
	c.dropTxn = nil
	if a := c.wait(o2, 2*time.Second); a.err != nil || a.resp.TS <= y2.resp.TS {
		t.Fatalf("older after prepared: %s %v (prepared committed at %s)", c.rel(a.resp.TS), a.err, c.rel(y2.resp.TS))
	}
}

// An active transaction idle for TxnTimeout is abandoned: aborted, locks
// released; one that keeps working is not.
func TestAbandonedTransaction(t *testing.T) {
	timeout := time.Second
	c := newCluster(t, hOpts{cfg: Config{TxnTimeout: timeout, LockWait: 10 * time.Second}})
	l := c.leader(1)
	idle, busy := newMeta(1), newMeta(2)
	c.ok(c.send(1, nil, readReq(idle, "a/k")))
	c.ok(c.send(1, nil, scanReq(idle, "a/s", "a/t")))
	c.ok(c.send(1, nil, readReq(busy, "a/b0")))
	w := c.send(1, nil, commitReq(newMeta(3), part(1, false, "a/k=w", "a/s1=w")))
	for i := 1; i <= 3; i++ {
		c.advance(timeout / 2)
		c.ok(c.send(1, nil, readReq(busy, "a/b"+string(rune('0'+i)))))
	}
	a := c.must(w)
	if a.err != nil {
		t.Fatalf("the writer behind the abandoned transaction: %v", a.err)
	}
	if waited := a.at.Sub(c.reqs[w].at); waited <= timeout || waited > timeout+10*time.Millisecond {
		t.Errorf("the writer waited %s, want just over TxnTimeout %s", waited, timeout)
	}
	if l.g.locks.holds(idle.ID) {
		t.Error("the abandoned transaction holds locks")
	}
	if !l.g.locks.holds(busy.ID) {
		t.Error("the busy transaction lost its locks")
	}
	// Its client comes back within TxnTimeout of the abort: the
	// transaction stays aborted (its read of a/k is stale).
	r := c.must(c.send(1, nil, readReq(idle, "a/j")))
	if !errors.Is(r.err, ErrAborted) || !strings.Contains(r.err.Error(), "abandoned") {
		t.Fatalf("the abandoned transaction's next read: %v", r.err)
	}
	if a := c.wait(c.send(1, nil, commitReq(busy, part(1, true, "a/b0=x"))), time.Second); a.err != nil {
		t.Fatalf("the busy transaction's commit: %v", a.err)
	}
}

// A transaction's shared locks live in its group leader's volatile lock
// table. When the leader changes before the transaction prepares or
// commits, they are gone, and a commit (or prepare) with Read set must
// fail: the keys read may have been overwritten since — even when the
// transaction read again after the change (taking a new lock at the new
// leader). The lock epoch its reads carry catches it.
func TestReadLockLostAtNewLeader(t *testing.T) {
	c := newCluster(t, hOpts{})
	c.wait(c.send(1, nil, commitReq(newMeta(0), part(1, false, "a/k=0"))), time.Second)
	m := newMeta(1)
	if a := c.ok(c.send(1, nil, readReq(m, "a/k"))); a.kvs[0].value != "0" {
		t.Fatalf("read %v", a.kvs)
	}
	c.advance(300 * time.Millisecond)
	first := c.leader(1)
	c.crash(first)
	c.waitLeader(1)
	// Another transaction overwrites a/k: nothing stops it, m's lock is
	// gone with the old leader.
	if a := c.wait(c.send(1, nil, commitReq(newMeta(2), part(1, false, "a/k=other"))), time.Second); a.err != nil {
		t.Fatal(a.err)
	}
	// Reading again at the new leader is refused at once: the read carries
	// the old epoch.
	if r := c.must(c.send(1, nil, readReq(m, "a/j"))); !errors.Is(r.err, ErrAborted) {
		t.Fatalf("read under a new leader after reads under the old one: %v, want ErrAborted", r.err)
	}
	a := c.wait(c.send(1, nil, commitReq(m, part(1, true, "a/k=0+1"))), time.Second)
	if !errors.Is(a.err, ErrAborted) {
		t.Fatalf("commit on a read whose lock was lost: %v, want ErrAborted", a.err)
	}
	// A commit that skips the second read but names the old epoch is
	// refused too.
	c.restart(first)
	m2 := newMeta(3)
	c.ok(c.send(1, nil, readReq(m2, "a/k")))
	c.advance(300 * time.Millisecond)
	c.crash(c.leader(1))
	c.waitLeader(1)
	a = c.wait(c.send(1, nil, commitReq(m2, part(1, true, "a/k=x"))), time.Second)
	if !errors.Is(a.err, ErrAborted) {
		t.Fatalf("commit after the leader change: %v, want ErrAborted", a.err)
	}
}

// TestCheckedRollback: a transaction that wrote nothing ends with a
// rollback naming its reads' lock epoch; the group answers Aborted unless
// the locks were still held in that epoch (released either way).
func TestCheckedRollback(t *testing.T) {
	c := newCluster(t, hOpts{})
	c.wait(c.send(1, nil, commitReq(newMeta(0), part(1, false, "a/k=0"))), time.Second)
	rollback := func(m Meta) error {
		return c.must(c.send(1, nil, Request{Kind: ReqRollback, Txn: m, Epoch: c.epochs[epochKey{m.ID, 1}]})).err
	}
	// Held: the check passes and the locks go.
	held := newMeta(5)
	c.ok(c.send(1, nil, readReq(held, "a/k")))
	if err := rollback(held); err != nil {
		t.Fatalf("checked rollback with the locks held: %v", err)
	}
	if c.leader(1).g.locks.holds(held.ID) {
		t.Fatal("the checked rollback kept the locks")
	}
	// Wounded: an older writer took the lock.
	young, old := newMeta(7), newMeta(6)
	c.ok(c.send(1, nil, readReq(young, "a/k")))
	if a := c.wait(c.send(1, nil, commitReq(old, part(1, false, "a/k=old"))), time.Second); a.err != nil {
		t.Fatal(a.err)
	}
	if err := rollback(young); !errors.Is(err, ErrAborted) {
		t.Fatalf("checked rollback after a wound: %v, want ErrAborted", err)
	}
	// Lost with the leader.
	m := newMeta(8)
	c.ok(c.send(1, nil, readReq(m, "a/k")))
	c.advance(300 * time.Millisecond)
	c.crash(c.leader(1))
	c.waitLeader(1)
	if err := rollback(m); !errors.Is(err, ErrAborted) {
		t.Fatalf("checked rollback after a leader change: %v, want ErrAborted", err)
	}
	// A plain rollback (no epoch) of the same answers as before.
	if err := c.must(c.send(1, nil, Request{Kind: ReqRollback, Txn: m})).err; err != nil {
		t.Fatalf("plain rollback: %v", err)
	}
}

// TestReadAfterExpiredTombstone: a read naming the epoch of an earlier
// answered read, for a transaction the group no longer knows (aborted, its
// tombstone expired), is refused: served, it would start the transaction
// afresh in the same epoch, and the checked rollback would pass.
func TestReadAfterExpiredTombstone(t *testing.T) {
	c := newCluster(t, hOpts{cfg: Config{TxnTimeout: time.Second}})
	young, old := newMeta(7), newMeta(6)
	c.ok(c.send(1, nil, readReq(young, "a/k")))
	if a := c.wait(c.send(1, nil, commitReq(old, part(1, false, "a/k=old"))), time.Second); a.err != nil {
		t.Fatal(a.err)
	}
	c.advance(3 * time.Second) // the wound's tombstone expires
	if _, known := c.leader(1).g.txns[young.ID]; known {
		t.Fatal("the tombstone is still there")
	}
	if r := c.must(c.send(1, nil, readReq(young, "a/j"))); !errors.Is(r.err, ErrAborted) {
		t.Fatalf("read after the tombstone expired: %v, want ErrAborted", r.err)
	}
	if err := c.must(c.send(1, nil, Request{Kind: ReqRollback, Txn: young, Epoch: c.epochs[epochKey{young.ID, 1}]})).err; !errors.Is(err, ErrAborted) {
		t.Fatalf("checked rollback: %v, want ErrAborted", err)
	}
}
