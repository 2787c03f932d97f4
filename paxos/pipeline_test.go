package paxos

import (
	"testing"
	"time"
)

// A leader that pipelines persistence counts its own acceptance of an
// entry only once Synced says the entry is durable: one follower's
// acceptance is not a majority of three before that.
func TestSyncedCountsTheLeaderOnlyWhenDurable(t *testing.T) {
	n := newTnet(t, 3, 0, nil)
	n.propose("warm-up")
	l := n.leader()
	var other ReplicaID
	for _, id := range n.ids {
		if id != l.id {
			other = id
		}
	}
	idx, _, err := l.r.Propose(n.interval(l), []byte("x"), 0, true)
	if err != nil {
		t.Fatal(err)
	}
	rd := l.r.Ready()
	for _, e := range rd.Entries {
		l.log[e.Index] = e // written, its sync in flight
	}
	tok := l.r.AdvanceUnsynced(rd)
	// Only one follower hears the Accept; its answer comes back.
	for _, m := range rd.Messages {
		if m.To == other && SendBeforePersist(m) {
			n.deliver(m)
		}
	}
	for n.handleReady(n.nodes[other]) {
	}
	for _, m := range n.queue {
		if m.To == l.id && m.Type == MsgAccepted {
			n.deliver(m)
		}
	}
	n.queue = nil
	if got := l.r.Status().Chosen; got >= idx {
		t.Fatalf("entry %d chosen (chosen index %d) with the leader's own acceptance not durable", idx, got)
	}
	// A later Ready (its own sync in flight too) applies nothing of it.
	rd = l.r.Ready()
	for _, a := range rd.Committed {
		if a.Index >= idx {
			t.Fatalf("entry %d applied before the leader's acceptance was durable", idx)
		}
		l.applied = append(l.applied, a)
	}
	n.queue = append(n.queue, rd.Messages...)
	tok2 := l.r.AdvanceUnsynced(rd)
	l.r.Synced(tok)
	l.r.Synced(tok2)
	if got := l.r.Status().Chosen; got < idx {
		t.Fatalf("after Synced: chosen index %d, want at least %d", got, idx)
	}
	n.stabilize()
	n.advance(time.Second) // heartbeats carry the chosen index to followers
	for _, id := range n.ids {
		if got := n.appliedData(id); len(got) != 2 || got[1] != "x" {
			t.Fatalf("replica %d applied %v, want [warm-up x]", id, got)
		}
	}
	n.checkSafety()
}

// A token taken under one leadership does nothing under another.
func TestSyncedIgnoresAnotherBallot(t *testing.T) {
	n := newTnet(t, 3, 0, nil)
	n.propose("warm-up")
	l := n.leader()
	if _, _, err := l.r.Propose(n.interval(l), []byte("x"), 0, true); err != nil {
		t.Fatal(err)
	}
	rd := l.r.Ready()
	tok := l.r.AdvanceUnsynced(rd)
	if tok.ballot != l.r.lead.ballot || tok.last != l.r.log.last {
		t.Fatalf("token %+v, want the leader's ballot %s and last index %d", tok, l.r.lead.ballot, l.r.log.last)
	}
	before := l.r.lead.selfMatch
	tok.ballot.Round++
	l.r.Synced(tok)
	if l.r.lead.selfMatch != before {
		t.Fatalf("a token of ballot %s moved the self match of ballot %s to %d", tok.ballot, l.r.lead.ballot, l.r.lead.selfMatch)
	}
}

// A commit-wait entry that becomes chosen in Step or Synced, with nothing
// else for a Ready to do, must still wake the leader when its wait ends:
// the leader then applies it and releases it to the followers. (The wake
// once came from the last Ready, taken before the entry was chosen; the
// leader then applied it only at its next heartbeat, while followers that
// ended the wait on their own clocks already showed it.)
func TestCommitWaitWakesWhenChosenOutsideReady(t *testing.T) {
	n := newTnet(t, 3, 0, nil)
	n.eps = 20 * time.Millisecond
	n.propose("warm-up")
	l := n.leader()
	n.advance(n.nodes[l.id].r.cfg.HeartbeatInterval) // a heartbeat has just gone
	n.stabilize()
	idx, ts, err := l.r.Propose(n.interval(l), []byte("x"), 0, true)
	if err != nil {
		t.Fatal(err)
	}
	// The leader writes its entry and sends its Accepts; the followers
	// accept.
	rd := l.r.Ready()
	for _, e := range rd.Entries {
		l.log[e.Index] = e
	}
	l.r.Advance(rd)
	for _, m := range rd.Messages {
		n.deliver(m)
	}
	for _, id := range n.ids {
		if id != l.id {
			for n.handleReady(n.nodes[id]) {
			}
		}
	}
	// The acceptances arrive: the entry is chosen inside Step.
	for _, m := range n.queue {
		if m.To == l.id {
			n.deliver(m)
		}
	}
	n.queue = nil
	if got := l.r.Status().Chosen; got < idx {
		t.Fatalf("entry %d not chosen (chosen index %d)", idx, got)
	}
	if w := l.r.NextWake(); w == 0 || w > ts+1 {
		t.Fatalf("leader's next wake-up %s, want at most the end of the commit wait of entry %d (ts %s + 1)",
			n.rel(w), idx, n.rel(ts))
	}
	// Nothing is released before the wait ends, and everything at once
	// after it.
	for _, nd := range n.nodes {
		if got := n.appliedData(nd.id); len(got) != 1 {
			t.Fatalf("replica %d applied %v before the commit wait ended", nd.id, got)
		}
	}
	n.now = ts.Add(n.eps + 1)
	l.r.Tick(n.interval(l))
	n.stabilize()
	for _, id := range n.ids {
		if got := n.appliedData(id); len(got) != 2 || got[1] != "x" {
			t.Fatalf("replica %d applied %v right after the commit wait, want [warm-up x]", id, got)
		}
	}
	n.checkSafety()
}
