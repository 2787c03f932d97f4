package paxos

import (
	"testing"
	"time"
)

// A leader cut off from every voter stops serving when its lease ends,
// names no leader to clients from then on, and steps down once a lease
// and an election timeout have passed without a quorum renewing it, while
// the others elect a leader of their own.
func TestLeaderWithoutLeaseStepsDown(t *testing.T) {
	n := newTnet(t, 3, 0, nil)
	n.propose("warm-up")
	old := n.leader()
	for _, id := range n.ids {
		if id != old.id {
			n.part[id] = 1
		}
	}
	lease, et := old.r.cfg.LeaseDuration, old.r.cfg.ElectionTimeout
	end := old.r.Status().LeaseEnd
	// Until its lease ends it still leads and serves.
	n.now = end.Add(-n.eps - time.Millisecond)
	old.r.Tick(n.interval(old))
	if !old.r.Leaseholder(n.interval(old)) || old.r.LeaderHint() != old.id {
		t.Fatalf("before its lease ended: leaseholder %v, hint %d", old.r.Leaseholder(n.interval(old)), old.r.LeaderHint())
	}
	// Past it: no longer serving, and it names no leader.
	n.now = end.Add(n.eps + time.Millisecond)
	old.r.Tick(n.interval(old))
	if old.r.Leaseholder(n.interval(old)) || old.r.LeaderHint() != 0 {
		t.Fatalf("after its lease ended: leaseholder %v, hint %d, want no lease and no hint", old.r.Leaseholder(n.interval(old)), old.r.LeaderHint())
	}
	if !old.r.IsLeader() {
		t.Fatal("stepped down before an election timeout past the lease (it may still renew)")
	}
	n.advance(lease + et)
	if old.r.IsLeader() {
		t.Fatalf("still claims to lead %s after its lease ended", lease+et)
	}
	n.stabilize()
	if l := n.waitLeader(); l == nil || l.id == old.id {
		t.Fatalf("the others elected %v", l)
	}
	n.checkSafety()
}

// A leader whose lease lapsed steps down as soon as a higher ballot asks
// it for a promise, even while its own vote for itself still binds and
// it refuses that vote.
func TestLapsedLeaderStepsDownForHigherBallot(t *testing.T) {
	for _, lapsed := range []bool{true, false} {
		n := newTnet(t, 3, 0, nil)
		n.propose("warm-up")
		l := n.leader()
		b := l.r.LeaderBallot()
		if lapsed {
			n.now = l.r.Status().LeaseEnd.Add(n.eps + time.Millisecond)
			if l.r.Leaseholder(n.interval(l)) {
				t.Fatal("lease still valid")
			}
		}
		var other ReplicaID
		for _, id := range n.ids {
			if id != l.id {
				other = id
			}
		}
		n.deliver(Message{Type: MsgPrepare, Group: 7, From: other, To: l.id, Ballot: Ballot{Round: b.Round + 1, Replica: other},
			Index: l.r.Status().Chosen + 1, LeaseReq: n.interval(l).Earliest})
		// Within its lease a higher ballot it refuses changes nothing.
		if l.r.IsLeader() == lapsed {
			t.Errorf("lease lapsed %v: after a higher ballot's Prepare, still leading %v", lapsed, l.r.IsLeader())
		}
	}
}
