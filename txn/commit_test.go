package txn

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/tt"
)

// Single-group commits (architecture invariants 5 and 6).

func TestSingleGroupCommit(t *testing.T) {
	c := newCluster(t, hOpts{})
	l := c.leader(1)
	first := c.wait(c.send(1, nil, commitReq(newMeta(1), part(1, false, "a/x=0", "a/z=old"))), time.Second)
	c.advance(300 * time.Millisecond) // heartbeats close timestamps above the commit

	m := newMeta(2)
	if got := c.ok(c.send(1, nil, readReq(m, "a/x"))); len(got.kvs) != 1 || got.kvs[0].value != "0" {
		t.Fatalf("read %v", got.kvs)
	}
	assigned := l.g.Replica().LastAssigned()
	id := c.send(1, nil, commitReq(m, part(1, true, "a/x=1", "a/y=2", "a/z=")))
	req := c.reqs[id]
	if !c.pending(id) {
		t.Fatal("the commit was acknowledged before any commit wait")
	}
	a := c.wait(id, time.Second)
	if a.err != nil {
		t.Fatal(a.err)
	}
	s := a.resp.TS
	// Invariant 5: s >= TT.now().latest at the request, above everything
	// the group assigned before.
	if s < req.iv.Latest {
		t.Errorf("commit ts %s below TT.now().latest %s at the request", c.rel(s), c.rel(req.iv.Latest))
	}
	if s <= assigned || s <= first.resp.TS {
		t.Errorf("commit ts %s not above the previously assigned %s (earlier commit %s)", c.rel(s), c.rel(assigned), c.rel(first.resp.TS))
	}
	// Invariant 6: the answer leaves only once TT.after(s), and reports
	// the exposed wait.
	if !a.iv.After(s) || a.at <= s {
		t.Errorf("answered at true %s with clock %v, not after %s", c.rel(a.at), a.iv, c.rel(s))
	}
	if a.resp.CommitWait <= 0 || a.resp.CommitWait > 2*c.eps+c.opts.step {
		t.Errorf("exposed commit wait %s, want (0, 2ε+step]", a.resp.CommitWait)
	}
	// Every replica applies the writes at s, and nothing else.
	c.advance(300 * time.Millisecond)
	for _, r := range c.group(1).reps {
		if got := r.value("a/x", s); got != "1" {
			t.Errorf("%s: a/x at s = %q", r, got)
		}
		if got := r.value("a/x", s-1); got != "0" {
			t.Errorf("%s: a/x just below s = %q", r, got)
		}
		if got := r.value("a/y", s); got != "2" {
			t.Errorf("%s: a/y at s = %q", r, got)
		}
		if got := r.value("a/z", s); got != "" {
			t.Errorf("%s: a/z not deleted at s: %q", r, got)
		}
		if got := r.versionsOf("a/z"); !slices.Equal(got, []tt.Timestamp{first.resp.TS, s}) {
			t.Errorf("%s: a/z versions %v", r, got)
		}
	}
	if n := l.g.locks.count(); n != 0 {
		t.Errorf("%d locks held after the commit", n)
	}
}

func TestCommitRetryGetsSameTimestamp(t *testing.T) {
	c := newCluster(t, hOpts{})
	m := newMeta(1)
	id1 := c.send(1, nil, commitReq(m, part(1, false, "a/k=v")))
	// A retry while the first is in flight waits for the same outcome.
	id2 := c.send(1, nil, commitReq(m, part(1, false, "a/k=v")))
	a1, a2 := c.wait(id1, time.Second), c.wait(id2, time.Second)
	if a1.err != nil || a2.err != nil || a1.resp.TS != a2.resp.TS {
		t.Fatalf("in-flight retry: %v/%v, %v/%v", a1.resp.TS, a1.err, a2.resp.TS, a2.err)
	}
	ts := a1.resp.TS
	// A retry after the commit is answered from the outcome record.
	if a := c.ok(c.send(1, nil, commitReq(m, part(1, false, "a/k=v")))); a.resp.TS != ts {
		t.Fatalf("retry: ts %s, want %s", c.rel(a.resp.TS), c.rel(ts))
	}
	// And so after a leader change: the new leader applied the commit
	// entry and holds the outcome.
	c.advance(300 * time.Millisecond)
	old := c.leader(1)
	c.crash(old)
	nl := c.waitLeader(1)
	if a := c.ok(c.send(1, nil, commitReq(m, part(1, false, "a/k=v")))); a.resp.TS != ts {
		t.Fatalf("retry at the new leader %s: ts %s, want %s", nl, c.rel(a.resp.TS), c.rel(ts))
	}
	// A crashed replica restarts from its persisted records (NewGroup
	// restores the outcome), and answers the same once it leads again.
	c.restart(old)
	if _, ok := old.g.outcomes[m.ID]; !ok {
		t.Fatal("the restarted replica did not restore the outcome record")
	}
	c.advance(500 * time.Millisecond)
	c.crash(nl)
	c.waitLeader(1)
	if a := c.ok(c.send(1, nil, commitReq(m, part(1, false, "a/k=v")))); a.resp.TS != ts {
		t.Fatalf("retry at %s: ts %s, want %s", c.leader(1), c.rel(a.resp.TS), c.rel(ts))
	}
	// The write exists once, at ts, everywhere it was applied.
	for _, r := range c.group(1).reps {
		if r.down {
			continue
		}
		if got := r.versionsOf("a/k"); !slices.Equal(got, []tt.Timestamp{ts}) {
			t.Errorf("%s: versions of a/k %v, want [%s]", r, got, c.rel(ts))
		}
	}
	// New commits stay above it across the leader changes (invariant 4).
	if a := c.wait(c.send(1, nil, commitReq(newMeta(2), part(1, false, "a/k=w"))), time.Second); a.err != nil || a.resp.TS <= ts {
		t.Fatalf("a later commit: %s, %v", c.rel(a.resp.TS), a.err)
	}
}

func TestRollbackReleasesLocks(t *testing.T) {
	c := newCluster(t, hOpts{cfg: Config{LockWait: 5 * time.Second}})
	l := c.leader(1)
	old, young := newMeta(1), newMeta(2)
	c.ok(c.send(1, nil, readReq(old, "a/k")))
	c.ok(c.send(1, nil, scanReq(old, "a/s", "a/t")))
	c.ok(c.send(1, nil, scanReq(old, "a/u", "")))
	if n := l.g.locks.count(); n != 3 {
		t.Fatalf("%d locks, want 3", n)
	}
	w := c.send(1, nil, commitReq(young, part(1, false, "a/k=1", "a/s1=1", "a/zz=1")))
	c.advance(50 * time.Millisecond)
	if !c.pending(w) {
		t.Fatalf("the younger writer did not wait: %+v", c.must(w))
	}
	c.ok(c.send(1, nil, Request{Kind: ReqRollback, Txn: old}))
	if a := c.wait(w, time.Second); a.err != nil {
		t.Fatalf("the writer after the rollback: %v", a.err)
	}
	if n := l.g.locks.count(); n != 0 {
		t.Fatalf("%d locks after rollback and commit", n)
	}
	// The rolled-back transaction is over.
	a := c.must(c.send(1, nil, readReq(old, "a/j")))
	if !errors.Is(a.err, ErrAborted) || !strings.Contains(a.err.Error(), "rolled back") {
		t.Fatalf("read after rollback: %v", a.err)
	}
	// Rolling back an unknown transaction is harmless.
	c.ok(c.send(1, nil, Request{Kind: ReqRollback, Txn: newMeta(3)}))
}

func TestCommitRequestValidation(t *testing.T) {
	c := newCluster(t, hOpts{cfg: Config{MaxWrites: 2}})
	cases := map[string]Request{
		"no transaction ID":  {Kind: ReqCommit, Participants: []Participant{part(1, false, "a/k=v")}},
		"coordinator absent": commitReq(newMeta(1), part(2, false, "b/k=v")),
		"too many writes":    commitReq(newMeta(1), part(1, false, "a/1=v", "a/2=v", "a/3=v")),
		"unknown kind":       {Kind: 99, Txn: newMeta(1)},
	}
	for name, req := range cases {
		if a := c.must(c.send(1, nil, req)); !errors.Is(a.err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, a.err)
		}
	}
	// Read locks lost: the commit says it read here, the leader has none.
	if a := c.must(c.send(1, nil, commitReq(newMeta(1), part(1, true, "a/k=v")))); !errors.Is(a.err, ErrAborted) {
		t.Errorf("commit with lost read locks: %v, want ErrAborted", a.err)
	}
	// A follower refuses leader requests with a hint.
	f := c.rep(1, 2)
	a := c.must(c.send(1, f, readReq(newMeta(1), "a/k")))
	if !errors.Is(a.err, ErrNotLeader) || a.resp.Hint != 1 {
		t.Errorf("read at a follower: %v hint %d", a.err, a.resp.Hint)
	}
	// The first group stamps a missing priority and echoes it.
	m := Meta{ID: TxnID{Lo: 777}}
	r := c.ok(c.send(1, nil, readReq(m, "a/k")))
	if r.task.Priority != c.reqs[r.id].iv.Latest {
		t.Errorf("stamped priority %s, want the leader's latest %s", c.rel(r.task.Priority), c.rel(c.reqs[r.id].iv.Latest))
	}
}

// A single-group commit in flight when its leader fails: the client's
// retry at the new leader finds the outcome if the commit record survived
// (the new leader recovered it: same timestamp as first assigned), or
// commits afresh if it did not; either way the write exists once.
func TestCommitInFlightAtLeaderFailure(t *testing.T) {
	for _, survived := range []bool{true, false} {
		name := "record lost"
		if survived {
			name = "record survived"
		}
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, hOpts{})
			old := c.leader(1)
			// Only replica 2 may accept the record, and the leader never hears
			// back: the record is on at most two logs, chosen or not, and the
			// client gets no answer.
			c.dropPaxos = func(m paxos.Message) bool {
				switch {
				case m.Type == paxos.MsgAccept && m.From == old.id:
					return !survived || m.To != 2
				case m.Type == paxos.MsgAccepted && m.To == old.id:
					return true
				}
				return false
			}
			m := newMeta(1)
			id := c.send(1, nil, commitReq(m, part(1, false, "a/k=v")))
			assigned := old.g.Replica().LastAssigned()
			c.advance(50 * time.Millisecond)
			if !c.pending(id) {
				t.Fatalf("answered: %+v", c.must(id))
			}
			c.crash(old)
			c.dropPaxos = nil
			c.waitLeader(1)
			a := c.wait(c.send(1, nil, commitReq(m, part(1, false, "a/k=v"))), time.Second)
			if a.err != nil {
				t.Fatal(a.err)
			}
			if survived != (a.resp.TS == assigned) {
				t.Errorf("retry ts %s, first assigned %s", c.rel(a.resp.TS), c.rel(assigned))
			}
			c.restart(old)
			c.advance(time.Second)
			for _, r := range c.group(1).reps {
				if got := r.versionsOf("a/k"); !slices.Equal(got, []tt.Timestamp{a.resp.TS}) {
					t.Errorf("%s: versions of a/k %v, want [%s]", r, got, c.rel(a.resp.TS))
				}
			}
		})
	}
}

// drawnAt returns an ID whose time bits say it was drawn at ts.
func drawnAt(ts tt.Timestamp, lo uint64) TxnID {
	return TxnID{Hi: uint64(int64(ts)/int64(time.Millisecond))<<16 | 0xbeef, Lo: lo}
}

// A coordinator that knows nothing of a transaction drawn longer ago than
// 3/4 of OutcomeRetention refuses to commit it: had it committed before,
// its outcome might have expired, and executing it again would apply it
// twice.
func TestCommitOfTooOldTransaction(t *testing.T) {
	c := newCluster(t, hOpts{cfg: Config{OutcomeRetention: 4 * time.Second}})
	if id := drawnAt(c.now, 1); id.Time() != c.now {
		t.Fatalf("drawnAt: time %s, want %s", c.rel(id.Time()), c.rel(c.now))
	}
	old := Meta{ID: drawnAt(c.now.Add(-3500*time.Millisecond), 1)}
	if a := c.wait(c.send(1, nil, commitReq(old, part(1, false, "a/old=1"))), time.Second); !errors.Is(a.err, ErrTooOld) {
		t.Fatalf("commit of a transaction drawn 3.5s ago: %v, want ErrTooOld", a.err)
	}
	// Drawn 2.5s ago: still accepted.
	if a := c.wait(c.send(1, nil, commitReq(Meta{ID: drawnAt(c.now.Add(-2500*time.Millisecond), 2)}, part(1, false, "a/recent=1"))), time.Second); a.err != nil {
		t.Fatalf("commit of a transaction drawn 2.5s ago: %v", a.err)
	}
	// A fresh transaction commits; a retry is answered from its outcome
	// for as long as that is kept, even once the ID is too old to commit
	// anew.
	m := Meta{ID: drawnAt(c.now, 3)}
	first := c.wait(c.send(1, nil, commitReq(m, part(1, false, "a/k=1"))), time.Second)
	if first.err != nil {
		t.Fatal(first.err)
	}
	c.advance(300 * time.Millisecond)
	for _, r := range c.group(1).reps {
		if o, ok, err := outcomeIn(r.meta, m.ID); !ok || err != nil || !o.commit || o.ts != first.resp.TS {
			t.Errorf("%s: stored outcome %+v (found %v), %v; want commit at %s", r, o, ok, err, c.rel(first.resp.TS))
		}
	}
	c.advance(3200 * time.Millisecond)
	if a := c.ok(c.send(1, nil, commitReq(m, part(1, false, "a/k=1")))); a.resp.TS != first.resp.TS {
		t.Fatalf("retry within retention: ts %s, want %s", c.rel(a.resp.TS), c.rel(first.resp.TS))
	}
	// Past the retention (a later commit moves the applied timestamp on
	// and expires the outcome), the retry is refused, not executed.
	c.advance(time.Second)
	c.wait(c.send(1, nil, commitReq(Meta{ID: drawnAt(c.now, 4)}, part(1, false, "a/later=1"))), time.Second)
	if _, ok := c.leader(1).g.outcomes[m.ID]; ok {
		t.Fatal("the outcome was not expired")
	}
	c.advance(300 * time.Millisecond)
	for _, r := range c.group(1).reps {
		if o, ok, err := outcomeIn(r.meta, m.ID); ok || err != nil {
			t.Errorf("%s: the expired outcome's record is still stored: %+v, %v", r, o, err)
		}
	}
	if a := c.wait(c.send(1, nil, commitReq(m, part(1, false, "a/k=1"))), time.Second); !errors.Is(a.err, ErrTooOld) {
		t.Fatalf("retry after the outcome expired: %v, want ErrTooOld", a.err)
	}
	c.advance(300 * time.Millisecond)
	for _, r := range c.group(1).reps {
		if got := r.versionsOf("a/k"); !slices.Equal(got, []tt.Timestamp{first.resp.TS}) {
			t.Errorf("%s: versions of a/k %v, want one at %s", r, got, c.rel(first.resp.TS))
		}
		if got := r.versionsOf("a/old"); len(got) != 0 {
			t.Errorf("%s: the refused commit wrote a/old at %v", r, got)
		}
	}
	// IDs without a time are not checked.
	if a := c.wait(c.send(1, nil, commitReq(Meta{ID: TxnID{Hi: 7, Lo: 7}}, part(1, false, "a/untimed=1"))), time.Second); a.err != nil {
		t.Fatalf("commit of an ID without a time: %v", a.err)
	}
}

// Commits handled before one Ready share one Paxos entry and its
// timestamp, and each applies as if alone.
func TestCommitsShareAnEntry(t *testing.T) {
	c := newCluster(t, hOpts{})
	l := c.leader(1)
	before := l.g.Replica().Status().LastIndex
	ids := c.sendTogether(1, nil,
		commitReq(newMeta(1), part(1, false, "a/x=1")),
		commitReq(newMeta(2), part(1, false, "a/y=2")),
		commitReq(newMeta(3), part(1, false, "a/z=3")))
	var ts tt.Timestamp
	for i, id := range ids {
		a := c.wait(id, time.Second)
		if a.err != nil {
			t.Fatal(a.err)
		}
		if i > 0 && a.resp.TS != ts {
			t.Fatalf("commit %d at %s, the first at %s: one entry, one timestamp", i, c.rel(a.resp.TS), c.rel(ts))
		}
		ts = a.resp.TS
	}
	if got := l.g.Replica().Status().LastIndex - before; got != 1 {
		t.Fatalf("three commits took %d entries, want 1", got)
	}
	c.advance(300 * time.Millisecond)
	for _, r := range c.group(1).reps {
		for k, v := range map[string]string{"a/x": "1", "a/y": "2", "a/z": "3"} {
			if got := r.value(k, ts); got != v {
				t.Errorf("%s: %s at %s = %q, want %q", r, k, c.rel(ts), got, v)
			}
		}
	}
	// A conflicting pair cannot share an entry: the second waits for the
	// first's lock and commits above it.
	ids = c.sendTogether(1, nil,
		commitReq(newMeta(4), part(1, false, "a/x=4")),
		commitReq(newMeta(5), part(1, false, "a/x=5")))
	first, second := c.wait(ids[0], time.Second), c.wait(ids[1], time.Second)
	if first.err != nil || second.err != nil {
		t.Fatalf("conflicting commits: %v, %v", first.err, second.err)
	}
	if first.resp.TS == second.resp.TS {
		t.Fatalf("two writes of a/x committed at one timestamp %s", c.rel(first.resp.TS))
	}
}
