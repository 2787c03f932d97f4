package txn

import (
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meridiandb/meridian/tt"
)

// Two-phase commit across groups (architecture invariants 5–7).

func twoPCConfig() Config {
	return Config{QueryAfter: time.Second, RetryInterval: 100 * time.Millisecond, LockWait: 5 * time.Second}
}

// votesFor returns the OK votes sent for id, by participant group.
func (c *hCluster) votesFor(id TxnID) map[uint64][]tt.Timestamp {
	out := map[uint64][]tt.Timestamp{}
	for _, s := range c.sent {
		if s.m.Type == MsgVote && s.m.Txn.ID == id && s.m.OK {
			out[s.from.gid] = append(out[s.from.gid], s.m.TS)
		}
	}
	return out
}

// settle advances until no replica of any group holds a prepared
// transaction.
func (c *hCluster) settle(limit time.Duration) {
	c.t.Helper()
	ok := c.advanceUntil(limit, func() bool {
		for _, g := range c.groups {
			for _, r := range g.reps {
				if !r.down && r.g.Prepared() > 0 {
					return false
				}
			}
		}
		return true
	})
	if !ok {
		c.t.Fatalf("prepared transactions remain after %s", limit)
	}
}

func TestTwoPhaseCommit(t *testing.T) {
	c := newCluster(t, hOpts{groups: 3, cfg: twoPCConfig()})
	m := newMeta(1)
	c.ok(c.send(2, nil, readReq(m, "b/r")))
	c.ok(c.send(3, nil, scanReq(m, "c/s", "c/t")))
	id := c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, true, "b/x=2"), part(3, true, "c/x=3", "c/y=")))
	req := c.reqs[id]
	a := c.wait(id, 2*time.Second)
	if a.err != nil {
		t.Fatal(a.err)
	}
	s := a.resp.TS
	if s < req.iv.Latest {
		t.Errorf("commit ts %s below TT.now().latest %s at the request", c.rel(s), c.rel(req.iv.Latest))
	}
	// s >= every prepare timestamp, from the votes and from the prepare
	// records every participant replica logged.
	votes := c.votesFor(m.ID)
	if len(votes[2]) == 0 || len(votes[3]) == 0 {
		t.Fatalf("votes %v", votes)
	}
	for g, tss := range votes {
		for _, p := range tss {
			if p > s {
				t.Errorf("group %d voted with prepare ts %s above the commit ts %s", g, c.rel(p), c.rel(s))
			}
		}
	}
	c.settle(2 * time.Second)
	recs := c.prepares[m.ID]
	seen := map[uint64]int{}
	for _, p := range recs {
		seen[p.rep.gid]++
		if p.rec.ts > s || p.rec.ts != votes[p.rep.gid][0] {
			t.Errorf("%s: prepare record ts %s (vote %s), commit ts %s", p.rep, c.rel(p.rec.ts), c.rel(votes[p.rep.gid][0]), c.rel(s))
		}
		if p.rec.coordinator != 1 || p.rec.txn != m {
			t.Errorf("%s: prepare record %+v", p.rep, p.rec)
		}
		// The record carries the shared locks so that a new leader can
		// re-take them.
		switch p.rep.gid {
		case 2:
			if !slices.Equal(p.rec.readKeys, []string{"b/r"}) || len(p.rec.readSpans) != 0 {
				t.Errorf("%s: read locks %q %v", p.rep, p.rec.readKeys, p.rec.readSpans)
			}
		case 3:
			if len(p.rec.readKeys) != 0 || len(p.rec.readSpans) != 1 || string(p.rec.readSpans[0].end) != "c/t" {
				t.Errorf("%s: read locks %q %v", p.rep, p.rec.readKeys, p.rec.readSpans)
			}
		}
	}
	if seen[2] != 3 || seen[3] != 3 || seen[1] != 0 {
		t.Errorf("prepare records per group %v, want 3 at groups 2 and 3", seen)
	}
	// Every replica of every participant applied the writes at s.
	for _, kv := range []struct{ key, val string }{{"a/x", "1"}, {"b/x", "2"}, {"c/x", "3"}} {
		for _, r := range c.group(keyGroup(kv.key)).reps {
			if got := r.versionsOf(kv.key); !slices.Equal(got, []tt.Timestamp{s}) || r.value(kv.key, s) != kv.val {
				t.Errorf("%s: %s versions %v value %q", r, kv.key, got, r.value(kv.key, s))
			}
		}
	}
	for _, r := range c.group(3).reps {
		if vs := r.data["c/y"]; len(vs) != 1 || !vs[0].del || vs[0].ts != s {
			t.Errorf("%s: c/y %+v, want a deletion at s", r, vs)
		}
	}
	for g := uint64(1); g <= 3; g++ {
		if n := c.leader(g).g.locks.count(); n != 0 {
			t.Errorf("group %d: %d locks left", g, n)
		}
	}
	// The coordinator answers a retry from its outcome record.
	if a := c.ok(c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, true, "b/x=2"), part(3, true, "c/x=3", "c/y=")))); a.resp.TS != s {
		t.Errorf("retry: ts %s, want %s", c.rel(a.resp.TS), c.rel(s))
	}
}

// A participant that lost the transaction's read locks (its leader
// changed) votes no; everyone aborts and releases the locks.
func TestTwoPhaseVoteNoAbortsEveryone(t *testing.T) {
	c := newCluster(t, hOpts{groups: 3, cfg: twoPCConfig()})
	m := newMeta(1)
	c.ok(c.send(2, nil, readReq(m, "b/r")))
	c.crash(c.leader(2))
	c.waitLeader(2)
	// Hold group 2's vote back until group 3 has prepared, so the abort
	// also reaches a prepared participant.
	c.dropTxn = func(_ *hReplica, msg Msg) bool { return msg.Type == MsgPrepare && msg.To == 2 }
	id := c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, true, "b/x=2"), part(3, false, "c/x=3")))
	if !c.advanceUntil(time.Second, func() bool { return c.leader(3).g.Prepared() == 1 }) {
		t.Fatal("group 3 did not prepare")
	}
	c.dropTxn = nil
	a := c.wait(id, time.Second)
	if !errors.Is(a.err, ErrAborted) {
		t.Fatalf("commit: %v, want ErrAborted", a.err)
	}
	no := false
	for _, s := range c.sent {
		if s.m.Type == MsgVote && s.from.gid == 2 && !s.m.OK {
			no = true
		}
	}
	if !no {
		t.Fatal("group 2 never voted no")
	}
	c.settle(2 * time.Second)
	for _, g := range c.groups {
		for _, r := range g.reps {
			for _, k := range []string{"a/x", "b/x", "c/x"} {
				if len(r.data[k]) > 0 {
					t.Errorf("%s: %s was written: %v", r, k, r.data[k])
				}
			}
		}
	}
	// The locks are gone: a younger transaction writes the same keys at
	// once.
	y := newMeta(2)
	if a := c.wait(c.send(1, nil, commitReq(y, part(1, false, "a/x=y"), part(3, false, "c/x=y"))), time.Second); a.err != nil {
		t.Fatalf("a later writer: %v", a.err)
	}
	for g := uint64(1); g <= 3; g++ {
		if n := c.leader(g).g.locks.count(); n != 0 {
			t.Errorf("group %d: %d locks left", g, n)
		}
	}
}

// The coordinator's leader fails after its commit record is chosen and
// before the participants hear: they learn the commit by asking the new
// leader, and never guess in between.
func TestCoordinatorFailsAfterCommitRecord(t *testing.T) {
	c := newCluster(t, hOpts{groups: 2, cfg: twoPCConfig()})
	m := newMeta(1)
	c.dropTxn = func(_ *hReplica, msg Msg) bool { return msg.Type == MsgDecide }
	id := c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, false, "b/x=2")))
	a := c.wait(id, time.Second)
	if a.err != nil {
		t.Fatal(a.err)
	}
	s := a.resp.TS
	c.advance(300 * time.Millisecond) // group 1's followers apply the commit record
	for _, r := range c.group(1).reps {
		if o, ok := r.g.outcomes[m.ID]; !ok || !o.commit || o.ts != s {
			t.Fatalf("%s: outcome %+v %v", r, o, ok)
		}
	}
	c.crash(c.leader(1))
	c.dropTxn = nil
	mark := len(c.sent)
	// Until group 1 has a leader again the participant stays prepared,
	// asking.
	for c.leader(1) == nil {
		for _, r := range c.group(2).reps {
			if r.g.Prepared() != 1 {
				t.Fatalf("%s resolved without an answer from the coordinator", r)
			}
		}
		c.advance(10 * time.Millisecond)
		if c.now.Sub(hStart) > 20*time.Second {
			t.Fatal("no new coordinator leader")
		}
	}
	c.settle(3 * time.Second)
	var queries, outcomes, decides int
	for _, sm := range c.sent[mark:] {
		switch {
		case sm.m.Type == MsgQuery && sm.from.gid == 2 && sm.m.To == 1:
			queries++
		case sm.m.Type == MsgOutcome && sm.from.gid == 1:
			outcomes++
			if !sm.m.OK || sm.m.Pending || sm.m.TS != s {
				t.Errorf("outcome %+v, want commit at %s", sm.m, c.rel(s))
			}
		case sm.m.Type == MsgDecide:
			decides++
		}
	}
	if queries == 0 || outcomes == 0 || decides != 0 {
		t.Errorf("queries %d, outcomes %d, decides %d: the participant should learn by querying", queries, outcomes, decides)
	}
	for _, r := range c.group(2).reps {
		if got := r.versionsOf("b/x"); !slices.Equal(got, []tt.Timestamp{s}) {
			t.Errorf("%s: b/x versions %v, want [%s]", r, got, c.rel(s))
		}
	}
	if a := c.ok(c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, false, "b/x=2")))); a.resp.TS != s {
		t.Errorf("retry at the new coordinator leader: %s, want %s", c.rel(a.resp.TS), c.rel(s))
	}
}

// The coordinator's leader fails before logging a commit record: the
// prepared participants ask the new leader, which logs an abort record, and
// everyone learns abort.
func TestCoordinatorFailsBeforeCommitRecord(t *testing.T) {
	c := newCluster(t, hOpts{groups: 3, cfg: twoPCConfig()})
	m := newMeta(1)
	c.dropTxn = func(_ *hReplica, msg Msg) bool { return msg.Type == MsgVote }
	id := c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, false, "b/x=2"), part(3, false, "c/x=3")))
	c.advance(300 * time.Millisecond)
	for _, g := range []uint64{2, 3} {
		for _, r := range c.group(g).reps {
			if r.g.Prepared() != 1 {
				t.Fatalf("%s: not prepared", r)
			}
		}
	}
	c.crash(c.leader(1))
	c.dropTxn = nil
	nl := c.waitLeader(1)
	c.settle(5 * time.Second)
	if !c.pending(id) {
		t.Errorf("the crashed coordinator answered: %+v", c.must(id))
	}
	// The new leader logged the abort: every replica of group 1 holds it.
	for _, r := range c.group(1).reps {
		if r.down {
			continue
		}
		o, ok, err := outcomeIn(r.meta, m.ID)
		if err != nil || !ok || o.commit {
			t.Errorf("%s: outcome record %+v (found %v), %v; want abort", r, o, ok, err)
		}
	}
	for _, sm := range c.sent {
		if sm.m.Type == MsgOutcome && sm.m.Txn.ID == m.ID && !sm.m.Pending && sm.m.OK {
			t.Errorf("a commit outcome was sent: %+v", sm.m)
		}
	}
	for _, g := range c.groups {
		for _, r := range g.reps {
			for _, k := range []string{"a/x", "b/x", "c/x"} {
				if len(r.data[k]) > 0 {
					t.Errorf("%s: %s written: %v", r, k, r.data[k])
				}
			}
		}
	}
	// The client's retry learns the abort; the locks are free.
	if a := c.must(c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, false, "b/x=2"), part(3, false, "c/x=3")))); !errors.Is(a.err, ErrAborted) {
		t.Errorf("retry at the new leader %s: %v, want ErrAborted", nl, a.err)
	}
	y := newMeta(2)
	if a := c.wait(c.send(2, nil, commitReq(y, part(2, false, "b/x=y"), part(3, false, "c/x=y"))), time.Second); a.err != nil {
		t.Fatalf("a later writer: %v", a.err)
	}
}

// A participant's leader fails while the transaction is prepared there:
// the new leader re-takes its shared and exclusive locks (conflicting
// requests wait, even older ones) and still applies the outcome.
func TestParticipantLeaderFailsWhilePrepared(t *testing.T) {
	c := newCluster(t, hOpts{groups: 2, cfg: twoPCConfig()})
	older := newMeta(0) // older than m: it would wound m if it could
	m := newMeta(1)
	c.ok(c.send(2, nil, readReq(m, "b/r")))
	c.dropTxn = func(_ *hReplica, msg Msg) bool { return msg.Type == MsgDecide || msg.Type == MsgQuery }
	id := c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, true, "b/w=2")))
	s := c.wait(id, time.Second).resp.TS
	c.advance(300 * time.Millisecond) // followers apply the prepare record
	old := c.leader(2)
	c.crash(old)
	nl := c.waitLeader(2)
	keys, spans := nl.g.locks.shared(m.ID)
	if !slices.Equal(keys, []string{"b/r"}) || len(spans) != 0 {
		t.Fatalf("new leader %s: shared locks %q %v, want [b/r]", nl, keys, spans)
	}
	if h := nl.g.locks.held[m.ID]; h == nil || !slices.Equal(h.writes, []string{"b/w"}) {
		t.Fatalf("new leader %s: exclusive locks %+v, want [b/w]", nl, h)
	}
	if st := nl.g.txns[m.ID]; st == nil || st.status != stPrepared || st.woundable() {
		t.Fatalf("new leader's view of the prepared transaction: %+v", st)
	}
	// A reader of the prepared write and a writer of the prepared read
	// both wait, although the reader is older.
	rd := c.send(2, nil, readReq(older, "b/w"))
	wr := c.send(2, nil, commitReq(newMeta(2), part(2, false, "b/r=new")))
	c.advance(200 * time.Millisecond)
	if !c.pending(rd) || !c.pending(wr) {
		t.Fatalf("conflicting requests did not wait: %v %v", c.answers[rd], c.answers[wr])
	}
	// The participant asks again once QueryAfter passed since it
	// re-took the transaction, learns the commit and applies it.
	c.dropTxn = nil
	got := c.wait(rd, 3*time.Second)
	if got.err != nil || len(got.kvs) != 1 || got.kvs[0].value != "2" || got.kvs[0].ts != s {
		t.Fatalf("the waiting reader got %v %v, want b/w=2@%s", got.kvs, got.err, c.rel(s))
	}
	if a := c.wait(wr, time.Second); a.err != nil || a.resp.TS <= s {
		t.Fatalf("the waiting writer: %s %v", c.rel(a.resp.TS), a.err)
	}
	// The crashed replica restarts, catches up and applies the same.
	c.restart(old)
	c.advance(500 * time.Millisecond)
	for _, r := range c.group(2).reps {
		if got := r.versionsOf("b/w"); !slices.Equal(got, []tt.Timestamp{s}) || r.g.Prepared() != 0 {
			t.Errorf("%s: b/w versions %v (want [%s]), prepared %d", r, got, c.rel(s), r.g.Prepared())
		}
	}
}

// Every replica of a participant group restarts while the transaction is
// prepared: the prepared set comes back from the persisted records
// (NewGroup → Restore), bounds safe time, and is resolved.
func TestParticipantGroupRestartsWhilePrepared(t *testing.T) {
	c := newCluster(t, hOpts{groups: 2, cfg: twoPCConfig()})
	m := newMeta(1)
	c.dropTxn = func(_ *hReplica, msg Msg) bool { return msg.Type == MsgDecide || msg.Type == MsgQuery }
	s := c.wait(c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, false, "b/x=2"))), time.Second).resp.TS
	c.advance(300 * time.Millisecond)
	var prepTS tt.Timestamp
	for _, r := range c.group(2).reps {
		p := r.g.prepared[m.ID]
		if p == nil {
			t.Fatalf("%s: not prepared", r)
		}
		prepTS = p.rec.ts
		c.crash(r)
	}
	c.advance(time.Second)
	for _, r := range c.group(2).reps {
		c.restart(r)
		p := r.g.prepared[m.ID]
		if p == nil || p.rec.ts != prepTS || !slices.Equal(writeKeys(p.rec.writes), []string{"b/x"}) {
			t.Fatalf("%s: restored prepared transaction %+v", r, p)
		}
		if st := r.g.SafeTime(); st >= prepTS {
			t.Fatalf("%s: safe time %s not below the restored prepare ts %s", r, c.rel(st), c.rel(prepTS))
		}
	}
	c.dropTxn = nil
	c.waitLeader(2)
	c.settle(5 * time.Second)
	c.advance(300 * time.Millisecond)
	for _, r := range c.group(2).reps {
		if got := r.versionsOf("b/x"); !slices.Equal(got, []tt.Timestamp{s}) {
			t.Errorf("%s: b/x versions %v, want [%s]", r, got, c.rel(s))
		}
		if _, ok := r.meta[string(prepName(m.ID))]; ok {
			t.Errorf("%s: the prepare record was not deleted", r)
		}
	}
}

// A participant that only read at a group still prepares there (its read
// locks must hold until the outcome), and the locks go with the outcome.
func TestTwoPhaseReadOnlyParticipant(t *testing.T) {
	c := newCluster(t, hOpts{groups: 2, cfg: twoPCConfig()})
	m := newMeta(1)
	c.ok(c.send(2, nil, readReq(m, "b/r")))
	c.dropTxn = func(_ *hReplica, msg Msg) bool { return msg.Type == MsgDecide || msg.Type == MsgQuery }
	s := c.wait(c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, true))), time.Second).resp.TS
	l2 := c.leader(2)
	if l2.g.Prepared() != 1 {
		t.Fatal("the read-only participant did not prepare")
	}
	w := c.send(2, nil, commitReq(newMeta(2), part(2, false, "b/r=w")))
	c.advance(300 * time.Millisecond)
	if !c.pending(w) {
		t.Fatal("a writer of the prepared transaction's read did not wait")
	}
	c.dropTxn = nil
	if a := c.wait(w, 3*time.Second); a.err != nil || a.resp.TS <= s {
		t.Fatalf("the writer: %s %v", c.rel(a.resp.TS), a.err)
	}
	c.settle(time.Second)
	if n := l2.g.locks.count(); n != 0 {
		t.Errorf("%d locks left", n)
	}
}

// Restore (a snapshot install, or a restart) replaces the replicated
// transaction state; a leader gives up its volatile state and re-takes the
// prepared transactions' locks at its next input.
func TestRestoreRelocks(t *testing.T) {
	c := newCluster(t, hOpts{groups: 2, cfg: twoPCConfig()})
	m := newMeta(1)
	c.ok(c.send(2, nil, scanReq(m, "b/s", "")))
	c.dropTxn = func(_ *hReplica, msg Msg) bool { return msg.Type == MsgDecide || msg.Type == MsgQuery }
	c.wait(c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, true, "b/x=2"))), time.Second)
	c.advance(300 * time.Millisecond)
	l := c.leader(2)
	c.ok(c.send(2, nil, readReq(newMeta(5), "b/unrelated"))) // volatile state Restore drops
	var recs [][2][]byte
	for _, name := range sortedKeys(l.meta) {
		recs = append(recs, [2][]byte{[]byte(name), l.meta[name]})
	}
	if err := l.g.Restore(recs); err != nil {
		t.Fatal(err)
	}
	if n := l.g.locks.count(); n != 0 || len(l.g.txns) != 0 {
		t.Fatalf("after Restore: %d locks, %d transactions", n, len(l.g.txns))
	}
	c.advance(c.opts.step) // the next input: still the leader, it re-takes the locks
	_, spans := l.g.locks.shared(m.ID)
	if len(spans) != 1 || string(spans[0].start) != "b/s" || spans[0].end != nil {
		t.Fatalf("re-taken span locks %v", spans)
	}
	if h := l.g.locks.held[m.ID]; h == nil || len(h.writes) != 1 || h.writes[0] != "b/x" {
		t.Fatalf("re-taken exclusive locks %+v", h)
	}
	// A follower restored from records without the transaction forgets it;
	// corrupt records are refused.
	f := c.rep(2, 3)
	if err := f.g.Restore(nil); err != nil || f.g.Prepared() != 0 {
		t.Fatalf("Restore(nil): %v, prepared %d", err, f.g.Prepared())
	}
	if err := f.g.Restore([][2][]byte{{prepName(m.ID), []byte{1, 2, 3}}}); !errors.Is(err, ErrCorruptRecord) {
		t.Fatalf("corrupt prepare record: %v", err)
	}
	for _, bad := range [][2][]byte{
		{outcomeChunkName(7), []byte{9}},
		{outcomeChunkName(7), nil},
		{outcomeChunkName(7), append(make([]byte, 16), 2, 2)},
		{outcomeChunkName(7), append(make([]byte, 16), 1, 0x80)},
		{[]byte("txn/out/short"), append(make([]byte, 16), 1, 2)},
	} {
		if err := f.g.Restore([][2][]byte{bad}); !errors.Is(err, ErrCorruptRecord) {
			t.Fatalf("corrupt outcome record %x=%x: %v", bad[0], bad[1], err)
		}
	}
	if err := f.g.Restore(recs); err != nil || f.g.Prepared() != 1 {
		t.Fatalf("Restore(records): %v, prepared %d", err, f.g.Prepared())
	}
	c.dropTxn = nil
	c.settle(3 * time.Second)
}

// outcomeIn finds id's latest outcome among a replica's persisted outcome
// chunks.
func outcomeIn(meta map[string][]byte, id TxnID) (o outcome, found bool, err error) {
	names := make([]string, 0, len(meta))
	for name := range meta {
		if strings.HasPrefix(name, outcomeChunkPrefix) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		c, err := unmarshalOutcomeChunk([]byte(name), meta[name])
		if err != nil {
			return o, false, err
		}
		for _, co := range c.outs {
			if co.id == id {
				o, found = co.outcome, true
			}
		}
	}
	return o, found, nil
}
