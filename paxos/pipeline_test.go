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
