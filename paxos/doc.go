// Package paxos is one Paxos group member as a pure, deterministic state
// machine: Multi-Paxos with Spanner's TrueTime leader leases.
//
// # The rule
//
// A Replica has no goroutines and does no I/O; it never reads a clock or a
// global random source. Time enters as an argument to every input (the
// caller's tt.Interval, or Unhealthy), randomness from Config.Rand, and every
// effect leaves as data in a Ready. This lets the simulator run whole
// clusters in one goroutine from one seed, and lets the runtime in node/ own
// all the real clocks, disks and sockets.
//
// # The driver loop
//
//	for {
//		select {
//		case <-timer:            r.Tick(clock.Now())
//		case m := <-inbox:       r.Step(clock.Now(), m)
//		case p := <-proposals:   r.Propose(clock.Now(), p.data, p.minTS)
//		}
//		if r.HasReady() {
//			rd := r.Ready()
//			persist(rd.HardState, rd.Entries)      // synced, BEFORE sending
//			send(rd.Messages)
//			apply(rd.Committed, rd.ApplyState)    // effects + ApplyState atomically
//			sendSnapshots(rd.Snapshots)
//			timer.Reset(until rd.Wake)
//			r.Advance(rd)
//		}
//	}
//
// A driver may pipeline persistence instead: write the Ready without waiting
// for its sync, send what SendBeforePersist allows, call AdvanceUnsynced
// (which returns a SyncToken) and go on stepping and taking Readies; once
// the write is durable, send the Ready's other messages and call Synced with
// the token, in order. Only Synced counts a leader's own acceptance.
//
// # Protocol
//
// Phase 1 (MsgPrepare/MsgPromise) runs once per leadership over every slot
// from the candidate's first unchosen slot on; acceptors return what they
// accepted there, and the new leader re-proposes, for each slot, a value some
// acceptor knows chosen, else the value accepted at the highest ballot, else
// a no-op. Phase 2 (MsgAccept/MsgAccepted) is pipelined and batched: the
// leader streams entries, each acceptor answers with its contiguous index
// (every slot up to it chosen or accepted at the leader's ballot), and the
// leader's chosen index is the quorum-th highest of those. The leader's
// chosen index rides on later Accepts; a follower knows a slot chosen when it
// accepted it at that same ballot. Lagging replicas are resent entries from
// their contiguous index, or a snapshot when those were truncated.
// Read-only replicas (learners) receive the same stream and are never
// counted.
//
// # Leases (Spanner §4.1)
//
// A Prepare is also a lease-vote request, and a Promise is given only with a
// vote: an acceptor votes until its TT.now().latest + LeaseDuration and
// grants no vote to another ballot until TT.after() that end. Accepts and
// heartbeats renew votes. The leader's lease ends at the quorum-th largest
// request time (its TT.now().earliest at send, echoed back) plus the lease
// duration: no later, in true time, than a quorum of votes really ends.
//
// # Invariants
//
// Written as checked under `-tags invariants` and by the simulator:
//
//  1. At most one value is chosen per slot.
//  2. Lease disjointness: two leaders' lease intervals never overlap in true
//     time. A vote binds until TT.after(its end); a new leader needs a
//     quorum of votes, and any two quorums share a voter. A restarted
//     replica that ever promised grants no vote until TT.after(restart
//     latest + lease), covering a vote it may have forgotten.
//  3. Timestamps of applied entries increase strictly, across leader
//     changes too: a leader assigns timestamps at or above TT.now().latest,
//     above everything it recovered or assigned, and below its lease end;
//     leases are disjoint, so a later leader's timestamps exceed an earlier
//     leader's. Abdication waits until TT.after(s_max).
//  4. The apply rule: a chosen entry whose proposer ballot is below the
//     highest proposer ballot already applied is delivered Skipped. Such a
//     value was accepted by a minority under an old leader and re-proposed
//     by a later one; it cannot have been chosen before the newer leader's
//     phase 1 (that would have recovered it ahead of the newer leader's
//     entries), so no client ever learned it committed. Every leader starts
//     with a barrier entry, which makes the rule bite even when a leader
//     proposes nothing else, and makes invariant 3 hold for what is applied.
//  5. Closed timestamps: a leader's promise (index i, ts t) means every
//     entry applied after index i has a timestamp above t; t is at most its
//     lease end - 1 and it raises its own next timestamp above t. A replica's
//     t_safe_paxos (ApplyState.ClosedTS) is the highest promise whose index
//     it has applied with that leader's barrier among the applied entries
//     (MaxProposer at least its ballot); a leader whose barrier was not
//     chosen made its promises about a log that never was, and they are
//     void.
//  6. A replica whose clock is unhealthy neither votes, campaigns, leads nor
//     assigns timestamps.
//  7. Commit wait (architecture invariant 6): an entry proposed with
//     commitWait is applied nowhere before the leader that chose it sees
//     TT.after(ts) on its own clock and releases it: the Chosen index of
//     its Accepts stops short of the entry until then, and followers apply
//     what is released, never on their own clocks (whose ε differs).
//  8. A leader whose lease lapsed serves nothing and names no leader; it
//     steps down when a higher ballot asks it for a promise, and by itself
//     a lease and an election timeout after its lease ended.
//
// Membership is static (3 or 5 voters plus learners); the Config carries the
// sets so a later joint-consensus change has a place to live.
package paxos
