package paxos

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/meridiandb/meridian/internal/invariants"
	"github.com/meridiandb/meridian/tt"
)

type role uint8

const (
	roleFollower role = iota
	roleCandidate
	roleLeader
	roleLearner
)

func (r role) String() string {
	return [...]string{"follower", "candidate", "leader", "learner"}[r]
}

// vote is a lease vote this replica (as a voter) has given.
type vote struct {
	ballot Ballot
	end    tt.Timestamp // binding until TT.after(end)
}

// closedPromise is a leader's closed-timestamp promise: every entry applied
// after index has a timestamp above ts. It holds only if the leader's own
// log up to index is what was chosen, i.e. if, once index is applied, the
// highest applied proposer is at least ballot (the leader's barrier, at or
// below index, was applied); otherwise later leaders may have chosen older
// leaders' values there, and the promise is void.
type closedPromise struct {
	index  uint64
	ts     tt.Timestamp
	ballot Ballot
}

// progress is the leader's view of one other replica.
type progress struct {
	id       ReplicaID
	voter    bool
	match    uint64 // highest index known accepted at our ballot (or chosen) contiguously
	next     uint64 // next index to send
	lastSend tt.Timestamp
	// lastProgress is when match last advanced or entries were last resent
	// from match+1: with nothing for RetryInterval, resend.
	lastProgress tt.Timestamp
	// lastGapReset throttles resends triggered by gap reports.
	lastGapReset tt.Timestamp
	snapshot     bool // a snapshot is being sent
	snapshotAt   tt.Timestamp
	// snapshotWait is how long a snapshot in flight is given to arrive and
	// be installed before it is presumed lost (SnapshotSent sets it from
	// the snapshot's size): at most one snapshot is in flight to a
	// replica, and a large one is not re-sent before it could arrive.
	snapshotWait time.Duration
	snapshotIdx  uint64 // the index of the snapshot in flight (SnapshotSent)
	// lastAck is when the replica last answered, by this leader's
	// earliest, or when this leadership began if it has not yet.
	lastAck tt.Timestamp
	// announced is the released index last sent to it (Accept.Chosen).
	announced uint64
}

type candidacy struct {
	ballot   Ballot
	from     uint64
	deadline tt.Timestamp
	promises map[ReplicaID]Message
	grants   map[ReplicaID]tt.Timestamp
	pre      bool // still in pre-vote
	preOK    map[ReplicaID]bool
	preSent  tt.Timestamp // when the pre-votes last went out
}

type leadership struct {
	ballot        Ballot
	start         uint64 // first slot this leader recovered or proposed
	barrier       uint64 // index of its barrier entry
	progress      []*progress
	grants        map[ReplicaID]tt.Timestamp // voter -> latest granted request time
	leaseEnd      tt.Timestamp
	leaseReported tt.Timestamp
	lastAssigned  tt.Timestamp
	nextHeartbeat tt.Timestamp
	closed        closedPromise
	selfMatch     uint64
	abdicating    bool
	transferTo    ReplicaID
}

// Replica is one member of a Paxos group as a deterministic state machine.
// See doc.go for the protocol, its invariants and the driver loop.
// A Replica is not safe for concurrent use.
type Replica struct {
	cfg    Config
	quorum int
	voter  bool
	role   role

	// Acceptor state.
	promised    Ballot
	vote        vote
	noVoteUntil tt.Timestamp // after a restart: no vote for others before TT.after(this)
	needRestart bool         // noVoteUntil not computed yet (no healthy tick since start)

	log    *memLog
	chosen uint64
	// released is the highest index the leader lets replicas apply: every
	// commit-wait entry up to it passed the commit wait at the leader that
	// chose it (TT.after(ts) on the leader's clock, never a follower's).
	// A leader advances it with its own clock (release); a follower learns
	// it from the Chosen field of the leader's Accepts.
	released     uint64
	contig       uint64
	contigBallot Ballot
	apply        ApplyState
	promises     []closedPromise // closed-timestamp promises not yet applied, by index
	maxRound     uint64          // highest round seen anywhere
	round        uint64          // highest round we campaigned with (persisted)

	// Follower state.
	leaderHint       ReplicaID
	lastHeard        tt.Timestamp
	electionDeadline tt.Timestamp

	cand *candidacy
	lead *leadership

	// Outputs.
	msgs      []Message
	localMsgs []Message // responses to ourselves, delivered after persistence
	unstable  []Entry
	prevHS    HardState
	snapReqs  []SnapshotRequest
	lease     *Lease
	pendApply []Applied
	applyNext ApplyState // apply state after pendApply
	ready     SyncToken  // leader: its ballot and log.last as of the outstanding Ready
	waitIdx   uint64     // the entry held for commit wait, and since when
	waitFrom  tt.Timestamp
	now       tt.Interval
	healthy   bool
}

// New returns a replica restored from the persisted state in cfg.
func New(cfg Config) (*Replica, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Replica{
		cfg:         cfg,
		quorum:      len(cfg.Voters)/2 + 1,
		voter:       slices.Contains(cfg.Voters, cfg.ID),
		promised:    cfg.HardState.Promised,
		log:         newMemLog(cfg.FirstIndex),
		chosen:      cfg.HardState.Chosen,
		apply:       cfg.Applied,
		prevHS:      cfg.HardState,
		needRestart: true,
		maxRound:    max(cfg.HardState.Promised.Round, cfg.HardState.Round),
		round:       cfg.HardState.Round,
	}
	r.applyNext = r.apply
	// What was applied was released; chosen entries beyond it wait for a
	// leader to release them again (this replica may have chosen them as
	// leader before a crash, their commit wait not over).
	r.released = r.apply.Index
	if !r.voter {
		r.role = roleLearner
	}
	for _, e := range cfg.Entries {
		if e.Index >= cfg.FirstIndex {
			r.log.set(e)
		}
	}
	for i := r.apply.Index + 1; i <= r.chosen; i++ {
		if _, ok := r.log.get(i); !ok {
			return nil, fmt.Errorf("%w: chosen entry %d missing from the log", ErrInvalidState, i)
		}
	}
	if r.chosen < r.log.first-1 {
		r.chosen = r.log.first - 1
	}
	r.contig = r.chosen
	return r, nil
}

// ID returns the replica's ID.
func (r *Replica) ID() ReplicaID { return r.cfg.ID }

// Group returns the group ID.
func (r *Replica) Group() uint64 { return r.cfg.Group }

func healthy(now tt.Interval) bool { return now.Latest != 0 && now.Valid() }

// Unhealthy is the interval to pass when the clock reports unhealthy: a
// replica given it neither votes, campaigns, leads nor assigns timestamps.
var Unhealthy = tt.Interval{}

// observe records the time of an input and handles the restart rule.
func (r *Replica) observe(now tt.Interval) {
	r.now = now
	was := r.healthy
	r.healthy = healthy(now)
	if r.healthy && !was && !r.needRestart {
		// Timers measured while the clock was unhealthy mean nothing.
		r.resetElectionDeadline(now)
	}
	if r.healthy && r.needRestart {
		// We may have granted a vote just before a crash; it ends by our
		// latest then plus the lease, which is before latest now plus the
		// lease. Until that has passed, vote for no one. A replica that never
		// promised anything never voted (votes go only with promises), so a
		// new group elects at once.
		r.needRestart = false
		if !r.cfg.HardState.Promised.IsZero() {
			r.noVoteUntil = now.Latest.Add(r.cfg.LeaseDuration)
		}
		r.resetElectionDeadline(now)
	}
}

func (r *Replica) resetElectionDeadline(now tt.Interval) {
	if !healthy(now) {
		return // reset again when the clock recovers (observe)
	}
	et := r.cfg.ElectionTimeout
	jitter := time.Duration(r.cfg.Rand.Int64N(int64(et)))
	r.lastHeard = now.Earliest
	r.electionDeadline = now.Earliest.Add(et + jitter)
}

func (r *Replica) isVoter(id ReplicaID) bool { return slices.Contains(r.cfg.Voters, id) }

func (r *Replica) members() []ReplicaID {
	ids := append(slices.Clone(r.cfg.Voters), r.cfg.Learners...)
	slices.Sort(ids)
	return ids
}

func (r *Replica) send(m Message) {
	m.Group = r.cfg.Group
	m.From = r.cfg.ID
	if m.To == r.cfg.ID {
		r.localMsgs = append(r.localMsgs, m)
		return
	}
	r.msgs = append(r.msgs, m)
}

// storeEntry puts an entry into the log and queues it for persistence.
func (r *Replica) storeEntry(e Entry) {
	r.log.set(e)
	r.unstable = append(r.unstable, e)
}

func (r *Replica) setPromised(b Ballot) {
	if r.promised.Less(b) {
		r.promised = b
		if b.Round > r.maxRound {
			r.maxRound = b.Round
		}
	}
}

// updateContig advances the contiguous index: every slot up to contig is
// chosen or accepted at the promised ballot.
func (r *Replica) updateContig() {
	if r.contigBallot != r.promised {
		r.contigBallot = r.promised
		r.contig = r.chosen
	}
	if r.contig < r.chosen {
		r.contig = r.chosen
	}
	for {
		e, ok := r.log.get(r.contig + 1)
		if !ok || e.Ballot != r.promised {
			return
		}
		r.contig++
	}
}

// ----------------------------------------------------------------------
// Inputs

// Step feeds a message received from another replica.
func (r *Replica) Step(now tt.Interval, m Message) {
	r.observe(now)
	defer r.noteWait()
	if m.Group != r.cfg.Group || m.To != r.cfg.ID {
		return
	}
	if m.Ballot.Round > r.maxRound {
		r.maxRound = m.Ballot.Round
	}
	if m.Promised.Round > r.maxRound {
		r.maxRound = m.Promised.Round
	}
	if !r.healthy {
		// Neither lead nor campaign with an unhealthy clock.
		switch r.role {
		case roleLeader:
			r.stepDown()
		case roleCandidate:
			r.abandonCandidacy()
		}
	}
	switch m.Type {
	case MsgPrepare:
		r.handlePrepare(m)
	case MsgPromise:
		r.handlePromise(m)
	case MsgAccept:
		r.handleAccept(m)
	case MsgAccepted:
		r.handleAccepted(m)
	case MsgRelease:
		if r.vote.ballot == m.Ballot {
			r.vote = vote{}
		}
	case MsgTimeoutNow:
		if r.voter && r.healthy && r.role != roleLeader {
			if r.role == roleCandidate {
				r.abandonCandidacy()
			}
			r.campaign(false)
		}
	case MsgPreVote:
		r.handlePreVote(m)
	case MsgPreVoteResp:
		r.handlePreVoteResp(m)
	}
}

// Tick lets time pass: heartbeats, retries, elections, abdication.
func (r *Replica) Tick(now tt.Interval) {
	r.observe(now)
	defer r.noteWait()
	switch r.role {
	case roleLeader:
		r.tickLeader()
	case roleCandidate:
		if !r.healthy {
			r.abandonCandidacy()
			return
		}
		if now.Earliest >= r.cand.deadline {
			// Wait a fresh random timeout as a follower, with our vote
			// free, before trying again: campaigning again at once would
			// keep our vote busy and could duel forever.
			r.abandonCandidacy()
			return
		}
		if r.cand.pre && now.Earliest >= r.cand.preSent.Add(r.preVoteRetry()) {
			// Voters refuse a pre-vote while their vote for the old leader
			// binds; ask again rather than wait out the candidacy.
			r.sendPreVotes()
		}
	case roleFollower:
		if r.healthy && now.Earliest >= r.electionDeadline {
			if end := r.voteBoundUntil(); end != 0 {
				// Our own lease vote still binds (to a leader we no longer
				// hear): no pre-vote can succeed before it ends, ours
				// included. Campaign just after it, with a little jitter:
				// the other followers' votes end about then too.
				et := r.cfg.ElectionTimeout
				r.electionDeadline = end.Add(time.Nanosecond + time.Duration(r.cfg.Rand.Int64N(int64(et/4)+1)))
				return
			}
			r.campaign(true)
		}
	}
}

// voteBoundUntil returns, while this replica's own lease vote (or its
// restart rule) forbids voting for a new ballot, when that ends (zero when
// it does not).
func (r *Replica) voteBoundUntil() tt.Timestamp {
	var end tt.Timestamp
	if !r.now.After(r.noVoteUntil) {
		end = r.noVoteUntil
	}
	if !r.vote.ballot.IsZero() && !r.now.After(r.vote.end) {
		end = max(end, r.vote.end)
	}
	return end
}

// preVoteRetry is how often a candidate in pre-vote asks again.
func (r *Replica) preVoteRetry() time.Duration {
	return max(r.cfg.HeartbeatInterval/2, 10*time.Millisecond)
}

// sendPreVotes asks every voter that has not said yes whether it would
// promise the candidacy's ballot.
func (r *Replica) sendPreVotes() {
	c := r.cand
	c.preSent = r.now.Earliest
	for _, id := range r.cfg.Voters {
		if !c.preOK[id] {
			r.send(Message{Type: MsgPreVote, To: id, Ballot: c.ballot, Index: c.from})
		}
	}
}

// ----------------------------------------------------------------------
// Acceptor

func (r *Replica) voteFree() bool {
	if r.cfg.Bugs.LeaseOverlap {
		return true
	}
	if !r.now.After(r.noVoteUntil) {
		return false
	}
	return r.vote.ballot.IsZero() || r.now.After(r.vote.end)
}

func (r *Replica) grantVote(b Ballot) {
	r.vote = vote{ballot: b, end: r.now.Latest.Add(r.cfg.LeaseDuration)}
}

func (r *Replica) handlePrepare(m Message) {
	reply := Message{Type: MsgPromise, To: m.From, Ballot: m.Ballot, LeaseReq: m.LeaseReq}
	reject := func(behind bool) {
		reply.Reject = true
		reply.Promised = r.promised
		reply.Behind = behind
		reply.Chosen = r.chosen
		r.send(reply)
	}
	if !r.voter || !r.healthy {
		reject(false)
		return
	}
	dup := m.Ballot == r.promised && r.vote.ballot == m.Ballot && !r.now.After(r.vote.end)
	if r.role == roleCandidate && r.cand.ballot.Less(m.Ballot) && r.promised.Less(m.Ballot) {
		// A higher ballot campaigns: give up ours (releasing the vote we
		// gave ourselves, which was never used) so that one of us wins.
		r.abandonCandidacy()
	}
	if !dup {
		if !r.promised.Less(m.Ballot) || !r.voteFree() {
			if r.role == roleLeader && r.lead.ballot.Less(m.Ballot) && r.now.Latest >= r.lead.leaseEnd && !r.lead.abdicating {
				// A higher ballot campaigns and our lease has lapsed: we no
				// longer lead (our own vote still binds until it ends).
				r.stepDown()
			}
			reject(false)
			return
		}
	}
	if r.aheadOf(m.Index) {
		reject(true)
		return
	}
	if r.role == roleLeader && r.lead.ballot != m.Ballot {
		r.stepDown()
	}
	if r.role == roleCandidate && r.cand.ballot != m.Ballot {
		r.abandonCandidacy()
	}
	r.setPromised(m.Ballot)
	r.grantVote(m.Ballot)
	r.updateContig()
	reply.Chosen = r.chosen
	reply.Entries = r.log.from(m.Index, r.cfg.MaxPromiseEntries)
	reply.LeaseGranted = true
	r.send(reply)
}

// aheadOf reports whether this replica knows so much more of the log than
// a candidate asking from index that the candidate should catch up first,
// or holds more of the log from index than one Promise may carry: a
// truncated report could leave out chosen slots, which the candidate would
// then overwrite.
func (r *Replica) aheadOf(index uint64) bool {
	limit := index + uint64(r.cfg.MaxPromiseEntries)
	return r.chosen >= limit || r.log.last >= limit || (r.log.first > index && r.chosen >= index)
}

func (r *Replica) handlePreVote(m Message) {
	ok := r.voter && r.healthy && r.promised.Less(m.Ballot) && r.voteFree() && !r.aheadOf(m.Index)
	r.send(Message{Type: MsgPreVoteResp, To: m.From, Ballot: m.Ballot, Reject: !ok, Promised: r.promised,
		Behind: r.aheadOf(m.Index), Chosen: r.chosen})
}

func (r *Replica) handlePreVoteResp(m Message) {
	if r.role != roleCandidate || !r.cand.pre || m.Ballot != r.cand.ballot {
		return
	}
	if m.Reject {
		if m.Behind {
			r.abandonCandidacy()
		}
		return
	}
	r.cand.preOK[m.From] = true
	if len(r.cand.preOK) >= r.quorum {
		r.startPrepare()
	}
}

func (r *Replica) handleAccept(m Message) {
	if m.Ballot.Less(r.promised) {
		r.send(Message{Type: MsgAccepted, To: m.From, Ballot: m.Ballot, Reject: true, Promised: r.promised, Index: r.contig, Chosen: r.chosen})
		return
	}
	if r.role == roleLeader && r.lead.ballot != m.Ballot {
		r.stepDown()
	}
	if r.role == roleCandidate {
		r.abandonCandidacy()
	}
	r.setPromised(m.Ballot)
	r.leaderHint = m.From
	if r.role == roleFollower || r.role == roleLearner {
		r.resetElectionDeadline(r.now)
	}
	gap := false
	limit := r.chosen + uint64(2*r.cfg.MaxInflight)
	for _, e := range m.Entries {
		if e.Index <= r.chosen || e.Index < r.log.first {
			continue
		}
		if e.Index > limit {
			break
		}
		if e.Index > r.contig+1 && !gap {
			if old, ok := r.log.get(r.contig + 1); !ok || old.Ballot != m.Ballot {
				gap = true
			}
		}
		if old, ok := r.log.get(e.Index); ok && old.Ballot == m.Ballot {
			continue // a duplicate: already accepted at this ballot
		}
		e.Ballot = m.Ballot
		r.storeEntry(e)
	}
	// Slots accepted at the leader's ballot up to its chosen index hold the
	// chosen values: a ballot proposes one value per slot.
	for r.chosen < m.Chosen {
		e, ok := r.log.get(r.chosen + 1)
		if !ok || e.Ballot != m.Ballot {
			break
		}
		r.chosen++
	}
	r.updateContig()
	// The leader's Chosen is what it released (see sendAccept): entries up
	// to it that we know chosen may be applied. Entries we know chosen
	// beyond it (chosen while we led) stay held until a leader releases
	// them.
	if !r.cfg.Bugs.OwnClockApply {
		r.released = max(r.released, min(r.chosen, m.Chosen))
	}
	if m.ClosedIndex > 0 {
		r.addPromise(closedPromise{index: m.ClosedIndex, ts: m.ClosedTS, ballot: m.Ballot})
	}
	// Behind asks the leader to resend from our contiguous index: we saw a
	// hole, or the leader has chosen slots we do not hold at its ballot.
	gap = gap || m.Chosen > r.contig
	reply := Message{Type: MsgAccepted, To: m.From, Ballot: m.Ballot, Index: r.contig, Chosen: r.chosen, LeaseReq: m.LeaseReq, Behind: gap}
	if m.LeaseReq != 0 && r.voter && r.healthy && (r.vote.ballot == m.Ballot || r.voteFree()) {
		r.grantVote(m.Ballot)
		reply.LeaseGranted = true
	}
	r.send(reply)
}

func (r *Replica) addPromise(p closedPromise) {
	if p.ts <= r.applyNext.ClosedTS {
		return
	}
	if p.index <= r.applyNext.Index {
		// Valid only if the promising leader's barrier was applied (see
		// closedPromise): then every entry applied from now on is skipped,
		// or comes from it (above ts) or from a later leader (above its
		// lease end).
		if !r.applyNext.MaxProposer.Less(p.ballot) {
			r.applyNext.ClosedTS = max(r.applyNext.ClosedTS, p.ts)
			r.apply.ClosedTS = max(r.apply.ClosedTS, p.ts)
		}
		return
	}
	i := sort.Search(len(r.promises), func(i int) bool { return r.promises[i].index >= p.index })
	for j := i; j < len(r.promises) && r.promises[j].index == p.index; j++ {
		if r.promises[j].ballot == p.ballot {
			r.promises[j].ts = max(r.promises[j].ts, p.ts)
			return
		}
	}
	r.promises = slices.Insert(r.promises, i, p)
	if len(r.promises) > 1024 {
		// Keep the list bounded: dropping the oldest promises only delays
		// the closed timestamp, never advances it wrongly.
		r.promises = r.promises[len(r.promises)-1024:]
	}
}

// ----------------------------------------------------------------------
// Candidate

func (r *Replica) campaign(pre bool) {
	if !r.voter || !r.healthy {
		return
	}
	r.maxRound++
	b := Ballot{Round: r.maxRound, Replica: r.cfg.ID}
	if !r.promised.Less(b) {
		b.Round = r.promised.Round + 1
		r.maxRound = b.Round
	}
	et := r.cfg.ElectionTimeout
	r.role = roleCandidate
	r.cand = &candidacy{
		ballot:   b,
		from:     r.chosen + 1,
		deadline: r.now.Earliest.Add(et + time.Duration(r.cfg.Rand.Int64N(int64(et)))),
		promises: map[ReplicaID]Message{},
		grants:   map[ReplicaID]tt.Timestamp{},
		preOK:    map[ReplicaID]bool{},
		pre:      pre,
	}
	if !pre {
		r.startPrepare()
		return
	}
	r.sendPreVotes()
}

// startPrepare runs phase 1 for the candidacy's ballot. The ballot's round
// is persisted (HardState.Round) before any Prepare leaves.
func (r *Replica) startPrepare() {
	c := r.cand
	c.pre = false
	r.round = max(r.round, c.ballot.Round)
	for _, id := range r.cfg.Voters {
		r.send(Message{Type: MsgPrepare, To: id, Ballot: c.ballot, Index: c.from, LeaseReq: r.now.Earliest})
	}
}

// abandonCandidacy gives up the current ballot and frees the lease votes it
// collected (it never used them).
func (r *Replica) abandonCandidacy() {
	if r.cand == nil {
		return
	}
	// In ID order: map order must not leak into the messages (replay by
	// seed).
	for _, id := range slices.Sorted(maps.Keys(r.cand.grants)) {
		r.send(Message{Type: MsgRelease, To: id, Ballot: r.cand.ballot})
	}
	if r.vote.ballot == r.cand.ballot {
		r.vote = vote{}
	}
	r.cand = nil
	r.role = roleFollower
	r.resetElectionDeadline(r.now)
}

func (r *Replica) handlePromise(m Message) {
	if r.role != roleCandidate || m.Ballot != r.cand.ballot {
		return
	}
	if m.Reject {
		if m.Behind || r.cand.ballot.Less(m.Promised) {
			r.abandonCandidacy()
		}
		return
	}
	r.cand.promises[m.From] = m
	if m.LeaseGranted {
		r.cand.grants[m.From] = m.LeaseReq
	}
	if len(r.cand.promises) >= r.quorum && len(r.cand.grants) >= r.quorum {
		r.becomeLeader()
	}
}

// ----------------------------------------------------------------------
// Leader

func (r *Replica) becomeLeader() {
	c := r.cand
	b := c.ballot
	// Recover: for each slot from c.from on, a value some responder knows
	// chosen, else the value accepted at the highest ballot, else a no-op.
	type pick struct {
		e      Entry
		chosen bool
	}
	picks := map[uint64]pick{}
	maxIdx := c.from - 1
	ids := make([]ReplicaID, 0, len(c.promises))
	for id := range c.promises {
		ids = append(ids, id)
	}
	slices.Sort(ids) // deterministic merge order
	for _, id := range ids {
		p := c.promises[id]
		for _, e := range p.Entries {
			if e.Index < c.from {
				continue
			}
			isChosen := e.Index <= p.Chosen
			cur, ok := picks[e.Index]
			switch {
			case !ok, isChosen && !cur.chosen, !cur.chosen && cur.e.Ballot.Less(e.Ballot):
				picks[e.Index] = pick{e: e, chosen: isChosen}
			}
			if invariants.Enabled && ok && isChosen && cur.chosen {
				invariants.Check(cur.e.TS == e.TS && string(cur.e.Data) == string(e.Data),
					"group %d slot %d: two different chosen values reported", r.cfg.Group, e.Index)
			}
			maxIdx = max(maxIdx, e.Index)
		}
	}
	l := &leadership{ballot: b, start: c.from, grants: c.grants}
	// We accept our own entries at b, so we must have promised it (our own
	// acceptor may have refused the vote but not the promise).
	r.setPromised(b)
	r.cand = nil
	r.role = roleLeader
	r.lead = l
	r.leaderHint = r.cfg.ID
	// Our own log may run past every slot the promises reported (values
	// accepted at older ballots, holes between them) when our own acceptor
	// was not among the promises. Phase 1 recovered none of those slots,
	// and none can have been chosen (a promise would have reported it):
	// drop them, so that the barrier follows the recovered slots and our
	// log from c.from on is exactly what we propose at b. Left in place,
	// a hole there stopped every Accept stream for good.
	r.log.truncateSuffix(maxIdx)
	for s := c.from; s <= maxIdx; s++ {
		p, ok := picks[s]
		var e Entry
		if ok {
			e = p.e
			l.lastAssigned = max(l.lastAssigned, e.TS)
		} else {
			e = Entry{Type: EntryNoop, Proposer: b}
		}
		e.Index = s
		e.Ballot = b
		r.storeEntry(e)
		if ok && p.chosen && r.chosen == s-1 {
			r.chosen = s
		}
	}
	r.updateContig()
	r.recomputeLease()
	if r.now.Latest >= l.leaseEnd {
		// The votes arrived too late to be of use.
		r.stepDown()
		return
	}
	ts := max(r.now.Latest, l.lastAssigned+1)
	if ts >= l.leaseEnd {
		r.stepDown()
		return
	}
	l.barrier = r.log.last + 1
	r.storeEntry(Entry{Index: l.barrier, Ballot: b, Proposer: b, TS: ts, Type: EntryBarrier})
	l.lastAssigned = ts
	for _, id := range r.members() {
		if id == r.cfg.ID {
			continue
		}
		// Every replica counts as heard from when the leadership begins:
		// one that was down through the election may be back in a moment,
		// and the log it needs is kept for it as for any other.
		l.progress = append(l.progress, &progress{id: id, voter: r.isVoter(id), next: c.from, lastProgress: r.now.Earliest,
			lastAck: r.now.Earliest})
	}
	r.grantVote(b)
	l.grants[r.cfg.ID] = r.now.Earliest
	r.recomputeLease()
	r.heartbeat()
}

// recomputeLease sets the lease end: the quorum-th largest of the granted
// request times plus the lease. A voter's vote ends no earlier than that in
// true time, because it granted after we sent (request time <= true send
// time <= its TT.now().latest at grant).
func (r *Replica) recomputeLease() {
	l := r.lead
	if l == nil {
		return
	}
	var reqs []tt.Timestamp
	for id, t := range l.grants {
		if r.isVoter(id) {
			reqs = append(reqs, t)
		}
	}
	var end tt.Timestamp
	if len(reqs) >= r.quorum {
		slices.Sort(reqs)
		end = reqs[len(reqs)-r.quorum].Add(r.cfg.LeaseDuration)
	}
	if end > l.leaseEnd {
		l.leaseEnd = end
	}
	if l.leaseEnd != l.leaseReported {
		l.leaseReported = l.leaseEnd
		r.lease = &Lease{Ballot: l.ballot, End: l.leaseEnd, Holding: true}
	}
}

func (r *Replica) stepDown() {
	if r.lead != nil {
		r.lease = &Lease{Ballot: r.lead.ballot, End: r.lead.leaseEnd, Holding: false}
	}
	r.lead = nil
	r.cand = nil
	if r.leaderHint == r.cfg.ID {
		r.leaderHint = 0 // we no longer lead; don't send clients back here
	}
	if r.voter {
		r.role = roleFollower
	} else {
		r.role = roleLearner
	}
	r.resetElectionDeadline(r.now)
}

func (r *Replica) leaseValid() bool {
	return r.role == roleLeader && r.healthy && r.now.Latest < r.lead.leaseEnd && !r.lead.abdicating
}

func (r *Replica) tickLeader() {
	l := r.lead
	if !r.healthy {
		// Neither lead nor vote with an unhealthy clock. The votes we hold
		// expire by themselves.
		r.stepDown()
		return
	}
	if l.abdicating && r.now.After(l.lastAssigned) {
		for _, id := range r.cfg.Voters {
			if id != r.cfg.ID {
				r.send(Message{Type: MsgRelease, To: id, Ballot: l.ballot})
			}
		}
		if r.vote.ballot == l.ballot {
			r.vote = vote{}
		}
		to := l.transferTo
		r.stepDown()
		if to != 0 {
			r.send(Message{Type: MsgTimeoutNow, To: to})
		}
		return
	}
	if !l.abdicating && r.now.Latest >= l.leaseEnd.Add(r.cfg.ElectionTimeout) {
		// No quorum renewed the lease for a lease and an election timeout:
		// partitioned, or others have moved on. Serving stopped when the
		// lease ended; now stop claiming to lead, so that clients and
		// status see no leader here, and follow whoever leads.
		r.stepDown()
		return
	}
	if r.now.Earliest >= l.nextHeartbeat {
		r.heartbeat()
		return
	}
	for _, pr := range l.progress {
		if r.retryDue(pr) {
			r.resend(pr)
		}
		if pr.snapshot && r.now.Earliest.Sub(pr.snapshotAt) >= max(pr.snapshotWait, 10*r.cfg.RetryInterval) {
			pr.snapshot = false // presumed lost; the next send retries
		}
	}
}

// heartbeat renews the lease, closes a timestamp and sends every replica
// its pending entries (or an empty Accept).
func (r *Replica) heartbeat() {
	l := r.lead
	l.nextHeartbeat = r.now.Earliest.Add(r.cfg.HeartbeatInterval)
	if !l.abdicating && (r.vote.ballot == l.ballot || r.voteFree()) {
		r.grantVote(l.ballot)
		l.grants[r.cfg.ID] = r.now.Earliest
		r.recomputeLease()
	}
	if r.leaseValid() {
		r.closeTimestamp()
	}
	for _, pr := range l.progress {
		if r.retryDue(pr) {
			r.resend(pr)
			continue
		}
		r.sendAccept(pr, true)
	}
}

// retryDue reports whether pr has made no progress for RetryInterval while
// entries are outstanding.
func (r *Replica) retryDue(pr *progress) bool {
	return pr.match < r.log.last && r.now.Earliest.Sub(pr.lastProgress) >= r.cfg.RetryInterval
}

// resend restarts pr's stream from its contiguous index.
func (r *Replica) resend(pr *progress) {
	pr.next = pr.match + 1
	pr.lastProgress = r.now.Earliest
	r.sendAccept(pr, true)
}

// closeTimestamp promises that no entry after the current last index will
// carry a timestamp at or below min(TT.now().latest, lease end - 1).
func (r *Replica) closeTimestamp() (tt.Timestamp, uint64) {
	l := r.lead
	t := min(r.now.Latest, l.leaseEnd-1)
	if t > l.lastAssigned {
		l.lastAssigned = t
	}
	t = l.lastAssigned
	if l.closed.ts < t || l.closed.index < r.log.last {
		l.closed = closedPromise{index: r.log.last, ts: t, ballot: l.ballot}
		r.addPromise(l.closed)
	}
	return l.closed.ts, l.closed.index
}

// sendAccept sends pr the entries from pr.next (bounded), or an empty
// heartbeat when force is set and nothing is pending.
func (r *Replica) sendAccept(pr *progress, force bool) {
	l := r.lead
	if pr.next < r.log.first {
		if !pr.snapshot {
			pr.snapshot = true
			pr.snapshotAt = r.now.Earliest
			r.snapReqs = append(r.snapReqs, SnapshotRequest{To: pr.id})
		}
		if !force {
			return
		}
	}
	var ents []Entry
	if !pr.snapshot && pr.next <= r.log.last {
		hi := min(r.log.last, pr.match+uint64(r.cfg.MaxInflight))
		if pr.next <= hi {
			ents = r.log.span(pr.next, hi, r.cfg.MaxMsgBytes)
		}
	}
	if len(ents) == 0 && !force {
		return
	}
	r.release()
	announce := r.released
	if r.cfg.Bugs.OwnClockApply {
		announce = r.chosen // the old rule: followers learn what is chosen and wait on their own clocks
	}
	m := Message{Type: MsgAccept, To: pr.id, Ballot: l.ballot, Chosen: announce, Entries: ents,
		LeaseReq: r.now.Earliest, ClosedIndex: l.closed.index, ClosedTS: l.closed.ts}
	if !pr.voter || l.abdicating {
		m.LeaseReq = 0
	}
	if len(ents) > 0 {
		pr.next = ents[len(ents)-1].Index + 1
	}
	pr.lastSend = r.now.Earliest
	pr.announced = max(pr.announced, m.Chosen)
	r.send(m)
}

func (r *Replica) handleAccepted(m Message) {
	if r.role != roleLeader {
		return
	}
	l := r.lead
	if m.Reject {
		if l.ballot.Less(m.Promised) {
			r.setPromised(m.Promised)
			r.stepDown()
		}
		return
	}
	if m.Ballot != l.ballot {
		return
	}
	var pr *progress
	for _, p := range l.progress {
		if p.id == m.From {
			pr = p
		}
	}
	if pr == nil {
		return
	}
	pr.lastAck = r.now.Earliest
	if pr.snapshot && pr.snapshotIdx != 0 && m.LeaseReq > pr.snapshotAt && m.Index < pr.snapshotIdx {
		// It answered an Accept sent after the snapshot (which travels
		// before it on the same ordered stream) without having installed
		// it: the snapshot was lost, or refused. Send another now.
		pr.snapshot = false
	}
	if m.Index > pr.match {
		pr.match = m.Index
		pr.lastProgress = r.now.Earliest
		pr.snapshot = false
	}
	if pr.next <= pr.match {
		pr.next = pr.match + 1
	}
	if m.Behind && pr.next > m.Index+1 && r.now.Earliest.Sub(pr.lastGapReset) >= r.cfg.RetryInterval/4 {
		pr.lastGapReset = r.now.Earliest
		pr.next = m.Index + 1
		pr.lastProgress = r.now.Earliest
	}
	if m.LeaseGranted && pr.voter && m.LeaseReq > l.grants[m.From] {
		l.grants[m.From] = m.LeaseReq
		r.recomputeLease()
	}
	r.advanceChosen()
	r.sendAccept(pr, false)
}

// advanceChosen moves the chosen index to the highest slot a quorum of
// voters has accepted at our ballot (or knows chosen).
func (r *Replica) advanceChosen() {
	l := r.lead
	matches := []uint64{}
	if r.voter {
		matches = append(matches, l.selfMatch)
	}
	for _, pr := range l.progress {
		if pr.voter {
			matches = append(matches, pr.match)
		}
	}
	if len(matches) < r.quorum {
		return
	}
	slices.Sort(matches)
	c := matches[len(matches)-r.quorum]
	if c > r.chosen && c <= r.log.last {
		r.chosen = c
	}
}

// ----------------------------------------------------------------------
// Proposals and reads

// Propose appends a command at the leader. The entry's timestamp is at
// least minTS, at least TT.now().latest, above every timestamp the group
// assigned before, and inside the lease. It returns the slot and the
// timestamp; the command is chosen when it comes back in Ready.Committed at
// that index (or is reported Skipped or never comes back if leadership is
// lost).
func (r *Replica) Propose(now tt.Interval, data []byte, minTS tt.Timestamp, commitWait bool) (uint64, tt.Timestamp, error) {
	r.observe(now)
	if err := r.canPropose(len(data)); err != nil {
		return 0, 0, err
	}
	l := r.lead
	ts := max(now.Latest, l.lastAssigned+1, minTS)
	if ts >= l.leaseEnd {
		return 0, 0, ErrNoLease
	}
	idx := r.log.last + 1
	r.storeEntry(Entry{Index: idx, Ballot: l.ballot, Proposer: l.ballot, TS: ts, Type: EntryNormal, CommitWait: commitWait, Data: data})
	l.lastAssigned = ts
	return idx, ts, nil
}

func (r *Replica) canPropose(size int) error {
	switch {
	case r.role == roleLearner:
		return ErrLearner
	case r.role != roleLeader:
		return &NotLeaderError{Hint: r.leaderHint}
	case !r.healthy:
		return ErrClock
	case r.lead.abdicating:
		return ErrAbdicating
	case !r.leaseValid():
		return ErrNoLease
	case size > r.cfg.MaxEntryBytes:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, r.cfg.MaxEntryBytes)
	case r.log.last-r.chosen >= uint64(r.cfg.MaxInflight):
		return ErrBusy
	}
	return nil
}

// Leaseholder reports whether this replica holds a valid lease at now and
// has applied everything chosen before its leadership (its barrier): it may
// serve reads without a quorum round.
func (r *Replica) Leaseholder(now tt.Interval) bool {
	r.observe(now)
	return r.leaseValid() && r.apply.Index >= r.lead.barrier
}

// LeaseEnd is the end of this replica's lease as leader (0 when it does
// not lead or is abdicating).
func (r *Replica) LeaseEnd() tt.Timestamp {
	if r.role != roleLeader || r.lead.abdicating {
		return 0
	}
	return r.lead.leaseEnd
}

// ClosedTS returns t_safe_paxos as of the entries handed out for
// application so far (including the outstanding Ready's): no entry applied
// later carries a timestamp at or below it.
func (r *Replica) ClosedTS() tt.Timestamp { return max(r.apply.ClosedTS, r.applyNext.ClosedTS) }

// LastAppliedTS returns the timestamp of the last non-skipped entry handed
// out for application (including the outstanding Ready's).
func (r *Replica) LastAppliedTS() tt.Timestamp { return max(r.apply.LastTS, r.applyNext.LastTS) }

// LastAssigned returns the highest timestamp this leader assigned or
// promised (zero when not leader).
func (r *Replica) LastAssigned() tt.Timestamp {
	if r.lead == nil {
		return 0
	}
	return r.lead.lastAssigned
}

// CloseTimestamp (leader only) promises that every entry proposed from now
// on carries a timestamp above the returned one, which is at least
// min(now.latest, lease end - 1). Once the returned index is applied, the
// closed timestamp (ApplyState.ClosedTS) reaches it everywhere the promise
// travels. Returns ErrNoLease without a valid lease.
func (r *Replica) CloseTimestamp(now tt.Interval) (tt.Timestamp, uint64, error) {
	r.observe(now)
	if err := r.canPropose(0); err != nil && err != ErrBusy {
		return 0, 0, err
	}
	prev := r.lead.closed
	ts, idx := r.closeTimestamp()
	if r.lead.closed != prev {
		// Tell the replicas now rather than at the next heartbeat: someone
		// is waiting to read there.
		for _, pr := range r.lead.progress {
			r.sendAccept(pr, true)
		}
	}
	return ts, idx, nil
}

// Abdicate makes the leader stop proposing, wait until TT.after(s_max) (the
// highest timestamp it assigned or promised), release its lease votes and
// step down; when transferTo is a voter, that replica is told to campaign.
func (r *Replica) Abdicate(now tt.Interval, transferTo ReplicaID) error {
	r.observe(now)
	if r.role != roleLeader {
		return &NotLeaderError{Hint: r.leaderHint}
	}
	r.lead.abdicating = true
	if transferTo != r.cfg.ID && r.isVoter(transferTo) {
		r.lead.transferTo = transferTo
	}
	r.lease = &Lease{Ballot: r.lead.ballot, End: r.lead.leaseEnd, Holding: false}
	r.tickLeader()
	return nil
}

// Campaign makes a follower start an election now (tests, transfers).
func (r *Replica) Campaign(now tt.Interval) {
	r.observe(now)
	if r.role == roleFollower {
		r.campaign(true)
	}
}

// ----------------------------------------------------------------------
// Snapshots and truncation

// Compact drops log entries at or below index, which must be applied. The
// runtime truncates its persisted log the same way.
func (r *Replica) Compact(index uint64) error {
	if index > r.apply.Index {
		return fmt.Errorf("paxos: cannot compact to %d beyond applied %d", index, r.apply.Index)
	}
	r.log.truncatePrefix(index)
	return nil
}

// FirstIndex returns the first index still in the log.
func (r *Replica) FirstIndex() uint64 { return r.log.first }

// RestoreSnapshot tells the replica that the runtime installed a snapshot of
// the state machine at st (taken from the leader). Log slots at or below
// st.Index are dropped and the replica reports its new position to the
// leader. A snapshot not ahead of what the replica knows chosen is ignored
// and false is returned.
func (r *Replica) RestoreSnapshot(now tt.Interval, st ApplyState, from ReplicaID, b Ballot) bool {
	r.observe(now)
	if st.Index <= r.chosen || st.Index <= r.applyNext.Index {
		return false
	}
	r.log.truncatePrefix(st.Index)
	if r.log.first < st.Index+1 {
		r.log.reset(st.Index + 1)
	}
	r.chosen = st.Index
	r.released = max(r.released, st.Index)
	r.apply = st
	r.applyNext = st
	r.pendApply = nil
	r.unstable = slices.DeleteFunc(r.unstable, func(e Entry) bool { return e.Index <= st.Index })
	i := 0
	for i < len(r.promises) && r.promises[i].index <= st.Index {
		i++
	}
	r.promises = r.promises[i:]
	r.updateContig()
	if b == r.promised {
		r.send(Message{Type: MsgAccepted, To: from, Ballot: b, Index: r.contig, Chosen: r.chosen})
	}
	return true
}

// SnapshotSent tells the leader that a snapshot of the state at index is
// on its way to a replica and how long it may take to arrive and be
// installed (from its size); until then, or until the replica answers a
// later Accept without having installed it, no other is sent to it.
func (r *Replica) SnapshotSent(to ReplicaID, index uint64, wait time.Duration) {
	if r.lead == nil {
		return
	}
	for _, pr := range r.lead.progress {
		if pr.id == to {
			pr.snapshotWait, pr.snapshotIdx = wait, index
			pr.snapshotAt = r.now.Earliest
		}
	}
}

// FollowerProgress is what a leader knows of another replica.
type FollowerProgress struct {
	ID    ReplicaID
	Voter bool
	// Match is the highest index known accepted or chosen there.
	Match uint64
	// LastAck is when it last answered, by the leader's earliest (when
	// the leadership began, if it has not answered since).
	LastAck tt.Timestamp
	// Snapshot is set while a snapshot is on its way to it.
	Snapshot bool
}

// Followers returns, at a leader, what it knows of every other replica
// (nil elsewhere).
func (r *Replica) Followers() []FollowerProgress {
	if r.lead == nil {
		return nil
	}
	out := make([]FollowerProgress, 0, len(r.lead.progress))
	for _, pr := range r.lead.progress {
		out = append(out, FollowerProgress{ID: pr.id, Voter: pr.voter, Match: pr.match, LastAck: pr.lastAck, Snapshot: pr.snapshot})
	}
	return out
}

// LogBytes returns about how many bytes the in-memory log holds.
func (r *Replica) LogBytes() int { return r.log.bytes }

// ReportSnapshot tells the leader that sending a snapshot to a replica
// finished (ok) or failed; a failed one is retried.
func (r *Replica) ReportSnapshot(to ReplicaID, ok bool) {
	if r.lead == nil {
		return
	}
	for _, pr := range r.lead.progress {
		if pr.id == to && !ok {
			pr.snapshot = false
		}
	}
}

// ----------------------------------------------------------------------
// Ready / Advance

// HasReady reports whether Ready would return anything to do.
func (r *Replica) HasReady() bool {
	return r.hardState() != r.prevHS || len(r.unstable) > 0 || len(r.msgs) > 0 || len(r.localMsgs) > 0 ||
		(r.chosen > r.applyNext.Index && r.applyable()) || len(r.snapReqs) > 0 || r.lease != nil || len(r.pendApply) > 0
}

// applyable reports whether the next chosen entry may be applied now.
func (r *Replica) applyable() bool {
	e, ok := r.log.get(r.applyNext.Index + 1)
	if !ok {
		return false
	}
	if r.role == roleLeader && e.CommitWait && e.Index > r.released && r.healthy && r.now.After(e.TS) {
		return true // release (in Ready) lets it go
	}
	return r.mayApply(e)
}

func (r *Replica) hardState() HardState {
	return HardState{Promised: r.promised, Chosen: r.chosen, Round: r.round}
}

// Ready returns the pending work. See the Ready type for the contract.
func (r *Replica) Ready() Ready {
	if r.role == roleLeader {
		// Batch every proposal since the last Ready into one Accept per
		// replica; a replica that has not heard of entries released since
		// (their commit wait over) hears of them now, so that it can apply
		// them without waiting for the next heartbeat.
		r.release()
		for _, pr := range r.lead.progress {
			if pr.next <= r.log.last {
				r.sendAccept(pr, false)
			}
			if pr.announced < r.released && !pr.snapshot {
				r.sendAccept(pr, true)
			}
		}
	}
	rd := Ready{}
	if hs := r.hardState(); hs != r.prevHS {
		rd.HardState = &hs
		rd.MustSync = hs.Promised != r.prevHS.Promised || hs.Round != r.prevHS.Round
	}
	rd.MustSync = rd.MustSync || len(r.unstable) > 0
	rd.Entries = r.unstable
	rd.Messages = r.msgs
	rd.Snapshots = r.snapReqs
	rd.Lease = r.lease
	r.buildApply()
	rd.Committed = r.pendApply
	rd.ApplyState = r.applyNext
	rd.Wake = r.wake()
	r.ready = SyncToken{}
	if r.role == roleLeader {
		r.ready = SyncToken{ballot: r.lead.ballot, last: r.log.last}
	}
	return rd
}

// buildApply moves newly chosen entries into pendApply, deciding the apply
// rule for each.
func (r *Replica) buildApply() {
	r.release()
	st := r.applyNext
	for st.Index < r.chosen {
		e, ok := r.log.get(st.Index + 1)
		if !ok {
			break
		}
		if !r.mayApply(e) {
			// Commit wait: hold this entry (and, in order, the rest) until
			// TT.after(e.TS). wake asks for a tick then.
			if r.waitIdx != e.Index {
				r.waitIdx, r.waitFrom = e.Index, r.now.Earliest
			}
			break
		}
		a := Applied{Entry: *e}
		if r.waitIdx == e.Index {
			if r.healthy {
				a.CommitWaited = r.now.Earliest.Sub(r.waitFrom)
			}
			r.waitIdx = 0
		}
		if e.Type != EntryNoop {
			if e.Proposer.Less(st.MaxProposer) {
				// A value from a superseded leader, re-proposed after a newer
				// leader's entries: it was never chosen before that leader's
				// phase 1, so no client learned it committed. Skip it.
				a.Skipped = true
			} else {
				invariants.Check(e.TS > st.LastTS, "group %d entry %d: timestamp %d not above previous %d",
					r.cfg.Group, e.Index, int64(e.TS), int64(st.LastTS))
				st.MaxProposer = e.Proposer
				st.LastTS = e.TS
			}
		}
		st.Index++
		st.ClosedTS = max(st.ClosedTS, st.LastTS)
		for len(r.promises) > 0 && r.promises[0].index <= st.Index {
			if !st.MaxProposer.Less(r.promises[0].ballot) { // else void: see closedPromise
				st.ClosedTS = max(st.ClosedTS, r.promises[0].ts)
			}
			r.promises = r.promises[1:]
		}
		r.pendApply = append(r.pendApply, a)
	}
	r.applyNext = st
}

// release advances, at the leader, the index it lets replicas apply: over
// chosen entries, stopping at the first commit-wait entry whose timestamp
// has not passed on its clock (Spanner §4.1.2: the coordinator leader
// waits until TT.after(s) before allowing any replica to apply the commit
// record). Followers learn it from Accepts; their own clocks, whose ε
// differs from the leader's, play no part.
func (r *Replica) release() {
	if r.role != roleLeader {
		return
	}
	for r.released < r.chosen {
		e, ok := r.log.get(r.released + 1)
		if !ok || e.CommitWait && (!r.healthy || !r.now.After(e.TS)) {
			return
		}
		r.released++
	}
}

// mayApply reports whether the chosen entry e, the next to apply, may be
// applied now: commit-wait entries only once released (invariant 6).
func (r *Replica) mayApply(e *Entry) bool {
	if !e.CommitWait || e.Index <= r.released {
		return true
	}
	// The negative control: a replica ends the commit wait on its own
	// clock (a follower with a narrower ε applies first).
	return r.cfg.Bugs.OwnClockApply && r.healthy && r.now.After(e.TS)
}

// NextWake returns when the replica next wants a Tick: once
// TT.now().earliest >= the returned timestamp (zero: no timer wanted).
func (r *Replica) NextWake() tt.Timestamp { return r.wake() }

func (r *Replica) wake() tt.Timestamp {
	var w tt.Timestamp
	set := func(t tt.Timestamp) {
		if t != 0 && (w == 0 || t < w) {
			w = t
		}
	}
	switch r.role {
	case roleLeader:
		l := r.lead
		set(l.nextHeartbeat)
		if l.abdicating {
			set(l.lastAssigned + 1)
		}
		for _, pr := range l.progress {
			if pr.match < r.log.last {
				set(pr.lastSend.Add(r.cfg.RetryInterval))
			}
		}
	case roleCandidate:
		set(r.cand.deadline)
		if r.cand.pre {
			set(r.cand.preSent.Add(r.preVoteRetry()))
		}
	case roleFollower:
		set(r.electionDeadline)
	}
	if r.needRestart {
		set(1)
	}
	// Commit wait: the next entry to apply may be chosen and held until
	// TT.after(its timestamp). Computed from the log, not from the last
	// Ready: the entry can become chosen in Step or Synced with nothing
	// else to do, and its wait must still end on time rather than at
	// the next unrelated input (a leader then lagged its followers by up
	// to a heartbeat).
	if e, ok := r.heldEntry(); ok {
		set(e.TS + 1)
	}
	return w
}

// heldEntry returns the next entry to apply when it is chosen but held by
// commit wait at this replica.
func (r *Replica) heldEntry() (*Entry, bool) {
	if r.chosen <= r.applyNext.Index {
		return nil, false
	}
	e, ok := r.log.get(r.applyNext.Index + 1)
	if !ok || !e.CommitWait || e.Index <= r.released || (r.healthy && r.now.After(e.TS)) {
		return nil, false
	}
	return e, true
}

// noteWait starts timing the commit wait of a chosen entry held at the
// head of the apply queue (Applied.CommitWaited), as soon as an input
// makes it chosen.
func (r *Replica) noteWait() {
	if e, ok := r.heldEntry(); ok && r.waitIdx != e.Index {
		r.waitIdx, r.waitFrom = e.Index, r.now.Earliest
	}
}

// Advance acknowledges that rd was handled: its state persisted, its
// messages sent, its committed entries applied.
func (r *Replica) Advance(rd Ready) { r.Synced(r.AdvanceUnsynced(rd)) }

// SyncToken is what AdvanceUnsynced leaves for Synced: the part of a
// Ready's acknowledgement that needs the Ready durable.
type SyncToken struct {
	ballot Ballot // the leadership the Ready was taken under (zero: none)
	last   uint64 // the leader's last log index then
	local  []Message
}

// AdvanceUnsynced acknowledges rd as written (readable from storage) but
// not yet durable, so that persistence can be pipelined: the driver may
// step the replica and take and write further Readies while rd's sync is
// in flight. It does everything Advance does except what needs rd durable:
// a leader counting its own acceptance of rd's entries, and delivering the
// messages it sent itself. Those happen in Synced(tok), which the driver
// calls once rd is durable, with the tokens in the order AdvanceUnsynced
// returned them. Until then the driver must hold back the Messages that
// SendBeforePersist does not let go early.
func (r *Replica) AdvanceUnsynced(rd Ready) SyncToken {
	if rd.HardState != nil {
		r.prevHS = *rd.HardState
	}
	r.unstable = r.unstable[len(rd.Entries):]
	if len(r.unstable) == 0 {
		r.unstable = nil
	}
	r.msgs = r.msgs[len(rd.Messages):]
	if len(r.msgs) == 0 {
		r.msgs = nil
	}
	r.snapReqs = r.snapReqs[len(rd.Snapshots):]
	if rd.Lease == r.lease {
		r.lease = nil
	}
	if n := len(rd.Committed); n > 0 {
		r.apply = rd.ApplyState
		r.pendApply = r.pendApply[n:]
		if len(r.pendApply) == 0 {
			r.pendApply = nil
		}
	}
	tok := r.ready
	tok.local, r.localMsgs = r.localMsgs, nil
	return tok
}

// Synced tells the replica that the Ready tok came from, and every Ready
// before it, is durable.
func (r *Replica) Synced(tok SyncToken) {
	defer r.noteWait()
	if r.role == roleLeader && tok.ballot == r.lead.ballot && tok.last > r.lead.selfMatch {
		// Our own entries up to tok.last are persisted at our ballot.
		r.lead.selfMatch = tok.last
		r.advanceChosen()
	}
	for _, m := range tok.local {
		r.Step(r.now, m)
	}
}

// ----------------------------------------------------------------------
// Status

// Status is a snapshot of a replica's state for operators and tests.
type Status struct {
	ID        ReplicaID
	Role      string
	Promised  Ballot
	Leader    ReplicaID
	Chosen    uint64
	Applied   ApplyState
	LastIndex uint64
	First     uint64
	LeaseEnd  tt.Timestamp
	// VoteEnd is when this replica's own lease vote ends (zero if none),
	// and VoteBallot whom it went to.
	VoteEnd    tt.Timestamp
	VoteBallot Ballot
	// NoVoteUntil: after a restart, no vote before TT.after(this).
	NoVoteUntil tt.Timestamp
}

// Status returns the replica's current state.
func (r *Replica) Status() Status {
	s := Status{ID: r.cfg.ID, Role: r.role.String(), Promised: r.promised, Leader: r.leaderHint,
		Chosen: r.chosen, Applied: r.apply, LastIndex: r.log.last, First: r.log.first, VoteEnd: r.vote.end,
		VoteBallot: r.vote.ballot, NoVoteUntil: r.noVoteUntil}
	if r.lead != nil {
		s.LeaseEnd = r.lead.leaseEnd
		s.Leader = r.cfg.ID
	}
	return s
}

// LeaderBallot returns the ballot this replica leads with (zero when it
// does not lead).
func (r *Replica) LeaderBallot() Ballot {
	if r.lead == nil {
		return Ballot{}
	}
	return r.lead.ballot
}

// IsLeader reports whether the replica currently believes it leads.
func (r *Replica) IsLeader() bool { return r.role == roleLeader }

// LeaderHint returns the replica last known to lead (zero if unknown).
func (r *Replica) LeaderHint() ReplicaID {
	if r.role == roleLeader {
		if !r.leaseValid() {
			return 0 // leading without a lease: no one is known to serve
		}
		return r.cfg.ID
	}
	return r.leaderHint
}
