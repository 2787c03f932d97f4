package txn

import (
	"errors"
	"testing"
	"time"

	"github.com/meridiandb/meridian/paxos"
)

// Safe time and reads at a timestamp (architecture invariants 8 and 9).
// The harness checks at every Ready that t_safe <= ClosedTS, that t_safe
// is below every prepare timestamp, and that no snapshot read is served
// above t_safe; these tests check that reads wait, and for how long.

func TestSafeTimeFollowsClosedTimestamps(t *testing.T) {
	c := newCluster(t, hOpts{groups: 2, cfg: twoPCConfig()})
	c.advance(time.Second)
	// On an idle group, heartbeats carry closed timestamps: every replica's
	// safe time trails true time by at most about a heartbeat (and may lead
	// it by the leader's uncertainty: the leader closes its latest).
	hb := c.opts.lease / 8
	for _, r := range c.group(1).reps {
		if st := r.g.SafeTime(); st < c.now.Add(-2*hb) || st > c.now.Add(2*c.eps) {
			t.Errorf("%s: safe time %s at true time %s", r, c.rel(st), c.rel(c.now))
		}
	}
	// A prepared transaction holds every replica's safe time below its
	// prepare timestamp, however far the closed timestamp runs ahead.
	m := newMeta(1)
	c.dropTxn = func(_ *hReplica, msg Msg) bool { return msg.Type == MsgDecide || msg.Type == MsgQuery }
	s := c.wait(c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, false, "b/x=2"))), time.Second).resp.TS
	c.advance(2 * time.Second)
	for _, r := range c.group(2).reps {
		p := r.g.prepared[m.ID]
		if p == nil {
			t.Fatalf("%s: not prepared", r)
		}
		if r.g.Replica().ClosedTS() <= p.rec.ts {
			t.Fatalf("%s: closed timestamp %s did not pass the prepare ts %s", r, c.rel(r.g.Replica().ClosedTS()), c.rel(p.rec.ts))
		}
		if st := r.g.SafeTime(); st != p.rec.ts-1 {
			t.Errorf("%s: safe time %s, want prepare ts - 1 = %s", r, c.rel(st), c.rel(p.rec.ts-1))
		}
		if st := r.g.Stats(); st.Prepared != 1 || st.SafeTime != p.rec.ts-1 {
			t.Errorf("%s: stats %+v", r, st)
		}
	}
	c.dropTxn = nil
	c.settle(3 * time.Second)
	c.advance(300 * time.Millisecond)
	for _, r := range c.group(2).reps {
		if st := r.g.SafeTime(); st < s {
			t.Errorf("%s: safe time %s still below the commit ts %s after the outcome", r, c.rel(st), c.rel(s))
		}
	}
}

func TestSnapshotReadWaitsForSafeTime(t *testing.T) {
	c := newCluster(t, hOpts{cfg: Config{ReadWait: time.Second}})
	ts1 := c.wait(c.send(1, nil, commitReq(newMeta(1), part(1, false, "a/k=1"))), time.Second).resp.TS
	c.advance(100 * time.Millisecond)
	l := c.leader(1)

	// Slightly in the future: the read waits until safe time gets there.
	ts := c.iv(l).Latest.Add(50 * time.Millisecond)
	id := c.send(1, l, Request{Kind: ReqSnapshotRead, Key: []byte("a/k"), TS: ts})
	if !c.pending(id) {
		t.Fatal("a read above safe time was served at once")
	}
	a := c.wait(id, time.Second)
	if a.err != nil || a.task.TS != ts || len(a.kvs) != 1 || a.kvs[0].value != "1" || a.kvs[0].ts != ts1 {
		t.Fatalf("read: %+v %v", a.kvs, a.err)
	}
	if a.at.Sub(c.reqs[id].at) < 45*time.Millisecond {
		t.Errorf("served after %s, before safe time could reach the read timestamp", a.at.Sub(c.reqs[id].at))
	}

	// Far in the future: ErrTimeout after ReadWait.
	id = c.send(1, l, Request{Kind: ReqSnapshotRead, Key: []byte("a/k"), TS: c.now.Add(time.Hour)})
	a = c.wait(id, 2*time.Second)
	if !errors.Is(a.err, ErrTimeout) {
		t.Fatalf("read an hour ahead: %v, want ErrTimeout", a.err)
	}
	if waited := a.at.Sub(c.reqs[id].at); waited < time.Second || waited > time.Second+5*time.Millisecond {
		t.Errorf("timed out after %s, want ReadWait (1s)", waited)
	}

	// A follower cut off from its leader: safe time never reaches now.
	f := c.rep(1, 2)
	c.dropPaxos = func(m paxos.Message) bool { return m.To == f.id || m.From == f.id }
	c.advance(500 * time.Millisecond)
	mark := len(c.sent)
	id = c.send(1, f, Request{Kind: ReqSnapshotRead, Key: []byte("a/k"), TS: c.iv(f).Latest})
	a = c.wait(id, 2*time.Second)
	if !errors.Is(a.err, ErrTimeout) {
		t.Fatalf("read at a cut-off follower: %v, want ErrTimeout", a.err)
	}
	if len(c.sentOf(mark, MsgCloseRequest)) == 0 {
		t.Error("the waiting follower never asked its leader to close a timestamp")
	}
	c.dropPaxos = nil
	c.advance(300 * time.Millisecond)

	// The limit on waiting reads.
	c2 := newCluster(t, hOpts{cfg: Config{MaxWaiters: 1}})
	c2.send(1, nil, Request{Kind: ReqSnapshotRead, Key: []byte("a/k"), TS: c2.now.Add(time.Hour)})
	if a := c2.must(c2.send(1, nil, Request{Kind: ReqSnapshotRead, Key: []byte("a/k"), TS: c2.now.Add(time.Hour)})); !errors.Is(a.err, ErrBusy) {
		t.Errorf("second waiting read: %v, want ErrBusy", a.err)
	}
}

// A commit acknowledged by the coordinator is visible to any snapshot read
// at its timestamp, at any participant replica: the read waits out the
// prepared transaction, even once the closed timestamp passed it.
func TestSnapshotReadWaitsForPrepared(t *testing.T) {
	c := newCluster(t, hOpts{groups: 2, cfg: twoPCConfig()})
	m := newMeta(1)
	c.dropTxn = func(_ *hReplica, msg Msg) bool { return msg.Type == MsgDecide || msg.Type == MsgQuery }
	s := c.wait(c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, false, "b/x=2"))), time.Second).resp.TS
	c.advance(300 * time.Millisecond)
	var ids []uint64
	for _, r := range c.group(2).reps {
		ids = append(ids, c.send(2, r, Request{Kind: ReqSnapshotRead, Key: []byte("b/x"), TS: s}))
	}
	c.advance(500 * time.Millisecond)
	for i, r := range c.group(2).reps {
		if r.g.Replica().ClosedTS() < s || !c.pending(ids[i]) {
			t.Fatalf("%s: closed %s, read answered %v", r, c.rel(r.g.Replica().ClosedTS()), !c.pending(ids[i]))
		}
	}
	c.dropTxn = nil
	for i, r := range c.group(2).reps {
		a := c.wait(ids[i], 3*time.Second)
		if a.err != nil || a.rep != r || len(a.kvs) != 1 || a.kvs[0].value != "2" || a.kvs[0].ts != s {
			t.Errorf("%s: read at the commit ts: %v %v", r, a.kvs, a.err)
		}
	}
}

func TestStrongReadTimestamp(t *testing.T) {
	c := newCluster(t, hOpts{groups: 2, cfg: twoPCConfig()})
	c1 := c.wait(c.send(1, nil, commitReq(newMeta(1), part(1, false, "a/k=1"))), time.Second).resp.TS
	c.advance(300 * time.Millisecond)
	l := c.leader(1)

	// One group, nothing prepared, at the leader: the highest timestamp
	// the leader assigned or closed (Spanner's LastTS over every write it
	// proposed), at or above the last commit, servable at once when
	// everything proposed is applied.
	last := l.g.Replica().LastAssigned()
	a := c.ok(c.send(1, l, Request{Kind: ReqStrongTS, SingleGroup: true}))
	if a.resp.TS != last || last < c1 || last > c.now.Add(time.Second) {
		t.Errorf("strong single-group ts %s, want the last assigned %s (last commit %s)", c.rel(a.resp.TS), c.rel(last), c.rel(c1))
	}
	a = c.ok(c.send(1, l, Request{Kind: ReqSnapshotRead, Key: []byte("a/k"), SingleGroup: true}))
	if !a.read || a.task.TS != last || len(a.kvs) != 1 || a.kvs[0].value != "1" {
		t.Errorf("strong single-group read: ts %s %v", c.rel(a.task.TS), a.kvs)
	}
	// The state the runtime publishes for reads that bypass the group
	// agrees, and holds while the lease does; followers publish nothing.
	if sr, ok := l.g.StrongReadState(); !ok || sr.TS != last || sr.LeaseEnd <= c.now || sr.LeaseEnd != l.g.Replica().LeaseEnd() {
		t.Errorf("leader's strong read state %+v %v, want ts %s and its lease", sr, ok, c.rel(last))
	}
	for _, id := range []paxos.ReplicaID{2, 3} {
		if sr, ok := c.rep(1, id).g.StrongReadState(); ok {
			t.Errorf("follower %d publishes a strong read state %+v", id, sr)
		}
	}
	// Several groups, or not at the leader: TT.now().latest.
	id := c.send(1, l, Request{Kind: ReqStrongTS})
	if a := c.ok(id); a.resp.TS != c.reqs[id].iv.Latest {
		t.Errorf("strong multi-group ts %s, want latest %s", c.rel(a.resp.TS), c.rel(c.reqs[id].iv.Latest))
	}
	id = c.send(1, c.rep(1, 3), Request{Kind: ReqStrongTS, SingleGroup: true})
	if a := c.ok(id); a.resp.TS != c.reqs[id].iv.Latest {
		t.Errorf("strong ts at a follower %s, want latest %s", c.rel(a.resp.TS), c.rel(c.reqs[id].iv.Latest))
	}

	// A prepared transaction at the group: TT.now().latest, and the read
	// waits for the outcome, then sees it.
	m := newMeta(2)
	c.dropTxn = func(_ *hReplica, msg Msg) bool { return msg.Type == MsgDecide || msg.Type == MsgQuery }
	s := c.wait(c.send(1, nil, commitReq(m, part(1, false, "a/x=1"), part(2, false, "b/x=2"))), time.Second).resp.TS
	l2 := c.leader(2)
	if l2.g.Prepared() != 1 {
		t.Fatal("group 2 is not prepared")
	}
	if sr, ok := l2.g.StrongReadState(); ok {
		t.Errorf("a leader with a prepared transaction publishes a strong read state %+v", sr)
	}
	id = c.send(2, l2, Request{Kind: ReqStrongTS, SingleGroup: true})
	if a := c.ok(id); a.resp.TS != c.reqs[id].iv.Latest || a.resp.TS == l2.g.Replica().LastAppliedTS() {
		t.Errorf("strong ts with a prepared transaction %s, want latest %s", c.rel(a.resp.TS), c.rel(c.reqs[id].iv.Latest))
	}
	id = c.send(2, l2, Request{Kind: ReqSnapshotRead, Key: []byte("b/x"), SingleGroup: true})
	c.advance(200 * time.Millisecond)
	if !c.pending(id) {
		t.Fatal("the strong read did not wait for the prepared transaction")
	}
	c.dropTxn = nil
	a = c.wait(id, 3*time.Second)
	if a.err != nil || a.task.TS != c.reqs[id].iv.Latest || len(a.kvs) != 1 || a.kvs[0].ts != s {
		t.Errorf("strong read after the outcome: ts %s %v %v", c.rel(a.task.TS), a.kvs, a.err)
	}
	c.advance(300 * time.Millisecond)
	if sr, ok := l2.g.StrongReadState(); !ok || sr.TS < s {
		t.Errorf("after the outcome applied: strong read state %+v %v, want one at or above %s", sr, ok, c.rel(s))
	}
}

// A bounded-staleness read at a follower is served there, at its safe
// time, without asking the leader.
func TestStaleReadAtFollower(t *testing.T) {
	c := newCluster(t, hOpts{})
	ts1 := c.wait(c.send(1, nil, commitReq(newMeta(1), part(1, false, "a/k=1"))), time.Second).resp.TS
	c.advance(time.Second)
	for _, f := range []*hReplica{c.rep(1, 2), c.rep(1, 3)} {
		safe := f.g.SafeTime()
		mark, served := len(c.sent), f.served
		id := c.send(1, f, Request{Kind: ReqStaleRead, Key: []byte("a/k"), MaxStaleness: 10 * time.Second})
		a, ok := c.answer(id)
		if !ok {
			t.Fatalf("%s: the stale read waited", f)
		}
		if a.err != nil || a.rep != f || f.served != served+1 || a.task.TS != safe || len(a.kvs) != 1 || a.kvs[0].ts != ts1 {
			t.Errorf("%s: stale read at %s (safe %s) by %s: %v %v", f, c.rel(a.task.TS), c.rel(safe), a.rep, a.kvs, a.err)
		}
		if len(c.sent) != mark {
			t.Errorf("%s: the stale read sent %d messages", f, len(c.sent)-mark)
		}
		// MinTS below safe time: still safe time.
		id = c.send(1, f, Request{Kind: ReqStaleRead, Key: []byte("a/k"), MinTS: ts1})
		if a := c.ok(id); a.task.TS != f.g.SafeTime() {
			t.Errorf("%s: stale read with MinTS at %s, want safe time", f, c.rel(a.task.TS))
		}
	}
	// Staleness bounds tighter than the follower's lag make it wait for a
	// closed timestamp, not read older data.
	f := c.rep(1, 3)
	id := c.send(1, f, Request{Kind: ReqStaleRead, Key: []byte("a/k"), MaxStaleness: time.Nanosecond})
	a := c.wait(id, time.Second)
	if a.err != nil || a.task.TS < c.reqs[id].iv.Latest.Add(-time.Nanosecond) {
		t.Errorf("tight stale read at %s (request latest %s): %v", c.rel(a.task.TS), c.rel(c.reqs[id].iv.Latest), a.err)
	}
}

// A snapshot read above a follower's safe time asks the leader to close a
// timestamp (MsgCloseRequest) instead of waiting for the next heartbeat.
func TestFollowerReadCloseRequest(t *testing.T) {
	c := newCluster(t, hOpts{lease: 4 * time.Second}) // heartbeats every 500 ms
	c.wait(c.send(1, nil, commitReq(newMeta(1), part(1, false, "a/k=1"))), time.Second)
	c.advance(100 * time.Millisecond)
	// Replica 3's clock is behind the leader's: what it asks for, the
	// leader can close at once.
	f := c.rep(1, 3)
	ts := c.iv(f).Latest
	if f.g.SafeTime() >= ts {
		t.Fatalf("safe time %s already at %s", c.rel(f.g.SafeTime()), c.rel(ts))
	}
	mark := len(c.sent)
	id := c.send(1, f, Request{Kind: ReqSnapshotRead, Key: []byte("a/k"), TS: ts})
	a, ok := c.answer(id)
	if !ok {
		t.Fatal("the read waited although the leader could close its timestamp at once")
	}
	if a.err != nil || a.rep != f || a.task.TS != ts || a.at != c.reqs[id].at {
		t.Errorf("read: %+v", a)
	}
	reqs := c.sentOf(mark, MsgCloseRequest)
	if len(reqs) != 1 || reqs[0].from != f || reqs[0].m.To != 1 || reqs[0].m.TS != ts {
		t.Errorf("close requests %+v", reqs)
	}
	// Without the close request, the read waits for the next heartbeat.
	c.dropTxn = func(_ *hReplica, m Msg) bool { return m.Type == MsgCloseRequest }
	ts = c.iv(f).Latest.Add(time.Millisecond)
	id = c.send(1, f, Request{Kind: ReqSnapshotRead, Key: []byte("a/k"), TS: ts})
	if !c.pending(id) {
		t.Fatal("served without a closed timestamp")
	}
	a = c.wait(id, 2*time.Second)
	if a.err != nil || a.task.TS != ts || a.at.Sub(c.reqs[id].at) < 10*time.Millisecond {
		t.Errorf("read without close requests: after %s, %v", a.at.Sub(c.reqs[id].at), a.err)
	}
}

// A strong single-group read at the leader while a commit is in its commit
// wait (chosen, released to no one yet) reads at or above the commit's
// timestamp and waits for it (invariant 9). Read below it, as at the last
// applied write, it could miss a write a follower shows once released,
// and be serialized before a commit elsewhere that completed before the
// read began.
func TestStrongReadWaitsForProposedWrites(t *testing.T) {
	for _, bug := range []bool{false, true} {
		c := newCluster(t, hOpts{cfg: Config{Bugs: Bugs{LastAppliedRead: bug}}, eps: 5 * time.Millisecond})
		c.wait(c.send(1, nil, commitReq(newMeta(1), part(1, false, "a/k=1"))), time.Second)
		c.advance(300 * time.Millisecond)
		l := c.leader(1)
		w := c.send(1, l, commitReq(newMeta(2), part(1, false, "a/k=2")))
		if !c.pending(w) {
			t.Fatal("the commit was answered before its commit wait")
		}
		r := c.send(1, l, Request{Kind: ReqSnapshotRead, Key: []byte("a/k"), SingleGroup: true})
		if bug {
			// The old choice: answered at once, below the commit.
			if a := c.ok(r); len(a.kvs) != 1 || a.kvs[0].value != "1" {
				t.Errorf("with LastAppliedRead: %v, want the old value at once", a.kvs)
			}
			continue
		}
		if !c.pending(r) {
			t.Fatalf("the strong read was answered during the commit wait of a write proposed before it: %v", c.must(r).kvs)
		}
		s := c.wait(w, time.Second).resp.TS
		a := c.wait(r, time.Second)
		if a.err != nil || a.task.TS < s || len(a.kvs) != 1 || a.kvs[0].value != "2" {
			t.Errorf("strong read after the commit wait: ts %s (commit %s) %v %v", c.rel(a.task.TS), c.rel(s), a.kvs, a.err)
		}
	}
}

// A replica whose clock is unhealthy or fenced serves no read that takes
// its timestamp or its staleness bound from the clock (ErrClock, which the
// runtime answers Unavailable so the client goes elsewhere); a read at a
// timestamp the client gives needs no clock and is served.
func TestReadsNeedingTheClock(t *testing.T) {
	c := newCluster(t, hOpts{})
	s := c.wait(c.send(1, nil, commitReq(newMeta(1), part(1, false, "a/k=1"))), time.Second).resp.TS
	c.advance(300 * time.Millisecond)
	f := c.rep(1, 3)
	f.unhealthy = true
	for _, req := range []Request{
		{Kind: ReqSnapshotRead, Key: []byte("a/k"), SingleGroup: true},
		{Kind: ReqSnapshotRead, Key: []byte("a/k")},
		{Kind: ReqStrongTS},
		{Kind: ReqStaleRead, Key: []byte("a/k"), MaxStaleness: time.Second},
	} {
		if a := c.must(c.send(1, f, req)); !errors.Is(a.err, ErrClock) {
			t.Errorf("request kind %d with MaxStaleness %s at a replica without a clock: %v %v, want ErrClock", req.Kind, req.MaxStaleness, a.kvs, a.err)
		}
	}
	a := c.wait(c.send(1, f, Request{Kind: ReqSnapshotRead, Key: []byte("a/k"), TS: s}), time.Second)
	if a.err != nil || len(a.kvs) != 1 || a.kvs[0].value != "1" {
		t.Errorf("read at a given timestamp without a clock: %v %v", a.kvs, a.err)
	}
	a = c.wait(c.send(1, f, Request{Kind: ReqStaleRead, Key: []byte("a/k"), MinTS: s}), time.Second)
	if a.err != nil || len(a.kvs) != 1 || a.kvs[0].value != "1" {
		t.Errorf("read at a minimum timestamp without a clock: %v %v", a.kvs, a.err)
	}
}
