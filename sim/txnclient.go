package sim

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/tt"
	"github.com/meridiandb/meridian/txn"
	"github.com/meridiandb/meridian/txn/txnkv"
)

const (
	bankAccountsPerShard = 10
	bankInitial          = 100
	registersPerShard    = 3
	clientTimeout        = 6 * time.Second
	maxAttempts          = 8
	// maxClientSkew bounds how far a client's clock is off (uniform in
	// ±maxClientSkew): the priorities clients stamp are not in step.
	maxClientSkew = 50 * time.Millisecond
)

func bankKey(shard uint64, i int) string { return fmt.Sprintf("s%d/acct%d", shard, i) }
func regKey(shard uint64, i int) string  { return fmt.Sprintf("s%d/reg%d", shard, i) }
func probeKey(shard uint64) string       { return fmt.Sprintf("s%d/probe", shard) }
func hotKey(shard uint64) string         { return fmt.Sprintf("s%d/hot", shard) }

type tclient struct {
	id     int
	region int
	node   NodeID
	hints  map[uint64]paxos.ReplicaID
	cur    *ctxn
	seq    int
	probe  int // probe writer epoch
	// skew is how far this client's clock is off: priorities the client
	// stamps itself (parallel reads) come from it.
	skew time.Duration
}

type txnOutcome uint8

const (
	outcomeCommitted txnOutcome = iota
	outcomeAborted
	outcomeUnknown
)

// ctxn is one logical transaction a client runs (with retries).
type ctxn struct {
	c       *tclient
	rec     TxnRecord
	meta    txn.Meta
	rw      bool
	reads   []string // RW: keys to read under locks, in order
	compute func(vals map[string]ReadObs) []WriteOp
	vals    map[string]ReadObs
	epochs  map[uint64]uint64 // group → lock epoch of the reads there
	next    int               // next read
	// parallel: reads go to every group at once, as the Go client's
	// Read does, under a priority the client stamped from its own clock.
	parallel bool
	// commit bookkeeping
	commitSent tt.Timestamp
	cross      bool
	bound      time.Duration
	attempt    int
	epoch      int // bumps on every retry, to ignore stale answers
	// RO steps: run in order; each returns when it calls done.
	roSteps []func(done func())
	done    func(o txnOutcome)
}

// call is one outstanding request of a client.
type call struct {
	t      *ctxn
	epoch  int
	group  uint64
	req    txn.Request
	sent   tt.Timestamp
	tries  int
	onResp func(r txn.Response)
	onRead func(kvs []kv.KeyValue, ts tt.Timestamp)
}

func (s *txnSim) newValue(prefix string) string {
	s.valSeq++
	return fmt.Sprintf("%s%d", prefix, s.valSeq)
}

// clientNext starts the client's next transaction.
func (s *txnSim) clientNext(c *tclient) {
	if c.cur != nil || s.loop.Now() >= s.quiesceAt {
		return // the run is settling before the final checks
	}
	c.seq++
	R := uint64(len(s.shards))
	pick := s.rng.IntN(100)
	switch {
	case pick < 10:
		// A look: one account in every shard under locks, writing
		// nothing, so it ends with a checked rollback.
		var keys []string
		for sh := uint64(1); sh <= R; sh++ {
			keys = append(keys, bankKey(sh, s.rng.IntN(bankAccountsPerShard)))
		}
		s.runRW(c, "look", keys, func(map[string]ReadObs) []WriteOp { return nil })
	case pick < 40:
		a := bankKey(1+s.rng.Uint64N(R), s.rng.IntN(bankAccountsPerShard))
		b := bankKey(1+s.rng.Uint64N(R), s.rng.IntN(bankAccountsPerShard))
		if a == b {
			s.think(c)
			return
		}
		amount := 1 + s.rng.IntN(20)
		s.runRW(c, "transfer", []string{a, b}, func(v map[string]ReadObs) []WriteOp {
			ba, bb := balance(v[a]), balance(v[b])
			if ba < amount {
				return nil
			}
			return []WriteOp{{Key: a, Value: s.newValue(strconv.Itoa(ba-amount) + "#t")},
				{Key: b, Value: s.newValue(strconv.Itoa(bb+amount) + "#t")}}
		})
	case pick < 55:
		k := regKey(1+s.rng.Uint64N(R), s.rng.IntN(registersPerShard))
		del := s.rng.IntN(4) == 0 // some registers are deleted, so GC meets tombstones
		s.runRW(c, "register", []string{k}, func(map[string]ReadObs) []WriteOp {
			if del {
				return []WriteOp{{Key: k, Delete: true}}
			}
			return []WriteOp{{Key: k, Value: s.newValue("r")}}
		})
	case pick < 62 && c.id%3 == 0:
		// Probe writer: one key per shard, each in its own transaction, in
		// shard order; readers elsewhere read them in reverse.
		c.probe++
		s.probeWrite(c, 1)
	case pick < 67:
		var keys []string
		for sh := uint64(R); sh >= 1; sh-- {
			keys = append(keys, probeKey(sh))
		}
		s.runStrongSingles(c, keys)
	case pick < 70:
		// A shard's hot key, read twice in a row, each read at whichever
		// replica runStrongSingles picks: the second must not see an
		// older state than the first, which a follower may have served.
		k := hotKey(1 + s.rng.Uint64N(R))
		s.runStrongSingles(c, []string{k, k, k})
	case pick < 76:
		// Blind writes of a hot key, back to back, so that some commit
		// of it is nearly always in its commit wait.
		s.hotWrite(c, hotKey(1+s.rng.Uint64N(R)), 4)
	case pick < 85:
		s.runAudit(c)
	default:
		k := regKey(1+s.rng.Uint64N(R), s.rng.IntN(registersPerShard))
		s.runStale(c, k)
	}
}

func balance(o ReadObs) int {
	if !o.Found {
		return 0
	}
	n, err := strconv.Atoi(o.Value[:strings.IndexByte(o.Value, '#')])
	if err != nil {
		return 0
	}
	return n
}

func (s *txnSim) think(c *tclient) {
	s.loop.After(int64(s.opts.ThinkTime)+s.rng.Int64N(int64(s.opts.ThinkTime)), func() { s.clientNext(c) })
}

func (s *txnSim) newTxn(c *tclient, kind TxnKind, label string) *ctxn {
	t := &ctxn{c: c, vals: map[string]ReadObs{}, epochs: map[uint64]uint64{}}
	t.rec = TxnRecord{ID: fmt.Sprintf("c%d-%d-%s", c.id, c.seq, label), Kind: kind, Invoke: s.loop.Now()}
	t.meta = txn.Meta{ID: txn.TxnID{Hi: uint64(c.id + 1), Lo: uint64(c.seq)<<8 | 1}}
	c.cur = t
	return t
}

func (s *txnSim) finishTxn(c *tclient, t *ctxn, o txnOutcome) {
	if c.cur != t {
		return
	}
	c.cur = nil
	t.epoch++
	switch o {
	case outcomeCommitted:
		t.rec.Committed = true
		t.rec.Complete = s.loop.Now()
		if t.rw {
			s.res.Committed++
		} else {
			s.res.ReadOnly++
		}
	case outcomeUnknown:
		t.rec.Unknown = true
		if t.rw {
			s.res.Unknown++
		}
	case outcomeAborted:
		if t.rw {
			s.res.Aborted++
		}
	}
	if o != outcomeAborted || t.rw {
		s.hist = append(s.hist, t.rec)
	}
	if t.done != nil {
		t.done(o) // the hook decides what comes next
		return
	}
	s.think(c)
}

// ----------------------------------------------------------------------
// Read-write transactions

func (s *txnSim) runRW(c *tclient, label string, reads []string, compute func(map[string]ReadObs) []WriteOp) {
	t := s.newTxn(c, ReadWrite, label)
	t.rw, t.reads, t.compute = true, reads, compute
	if s.rng.IntN(2) == 0 {
		t.parallel = true
		t.meta.Priority = max(1, s.loop.Now().Add(c.skew))
		s.res.ParallelRW++
	}
	s.rwStep(t)
}

// retryRW starts the transaction over after an abort (same priority).
func (s *txnSim) retryRW(t *ctxn) {
	s.tracef("retry %s attempt %d (txn %s)", t.rec.ID, t.attempt+1, t.meta.ID)
	t.attempt++
	s.res.Aborted++
	if t.attempt >= maxAttempts {
		t.rec.Committed, t.rec.Unknown = false, false
		s.finishTxn(t.c, t, outcomeAborted)
		return
	}
	t.epoch++
	t.meta.ID.Lo = t.meta.ID.Lo&^0xff | uint64(t.attempt+1)&0xff
	t.vals, t.epochs, t.next, t.rec.Reads, t.rec.Writes, t.rec.Released = map[string]ReadObs{}, map[uint64]uint64{}, 0, nil, nil, false
	s.loop.After(int64(time.Duration(5+s.rng.IntN(20*t.attempt))*time.Millisecond), func() { s.rwStep(t) })
}

func (s *txnSim) rwStep(t *ctxn) {
	if t.c.cur != t {
		return
	}
	if t.parallel && t.next < len(t.reads) {
		s.rwParallel(t)
		return
	}
	if t.next < len(t.reads) {
		key := t.reads[t.next]
		sh := s.shardOf(key)
		s.send(t, sh.id, txn.Request{Kind: txn.ReqRead, Txn: t.meta, Key: []byte(key), Epoch: t.epochs[sh.id]}, true, func(r txn.Response) {
			s.rwFailed(t, r.Err)
		}, func(kvs []kv.KeyValue, _ tt.Timestamp) {
			obs := pointObs(key, kvs)
			t.vals[key] = obs
			t.rec.Reads = append(t.rec.Reads, obs)
			t.next++
			s.rwStep(t)
		})
		return
	}
	writes := t.compute(t.vals)
	if len(writes) == 0 {
		s.release(t)
		return
	}
	t.rec.Writes = writes
	s.commit(t)
}

// rwParallel sends the reads as the Go client's Read does: the keys of
// different groups at once, one group's keys one after another (the first
// answer there fixes the lock epoch the next ones carry). rwStep goes on
// to the writes when every group's reads have answered; a failure retries
// the transaction, and the retry's new epoch drops the others' answers.
func (s *txnSim) rwParallel(t *ctxn) {
	order, byGroup := s.groupsOf(t.reads)
	t.next = len(t.reads)
	left := len(order)
	var chain func(g uint64, keys []string)
	chain = func(g uint64, keys []string) {
		if len(keys) == 0 {
			if left--; left == 0 {
				s.rwStep(t)
			}
			return
		}
		key := keys[0]
		s.send(t, g, txn.Request{Kind: txn.ReqRead, Txn: t.meta, Key: []byte(key), Epoch: t.epochs[g]}, true, func(r txn.Response) {
			s.rwFailed(t, r.Err)
		}, func(kvs []kv.KeyValue, _ tt.Timestamp) {
			obs := pointObs(key, kvs)
			t.vals[key] = obs
			t.rec.Reads = append(t.rec.Reads, obs)
			chain(g, keys[1:])
		})
	}
	for _, g := range order {
		chain(g, byGroup[g])
	}
}

// release ends a transaction that wrote nothing as the Go client does:
// a rollback at every group it read at, each naming the lock epoch of its
// reads there, and committed (Released, with no timestamp) once every
// group confirmed its locks held; an Aborted answer retries it. The
// unchecked-release bug sends no epochs, so lost locks go unnoticed.
func (s *txnSim) release(t *ctxn) {
	t.rec.Released = true
	groups, _ := s.groupsOf(t.reads)
	left := len(groups)
	for _, g := range groups {
		req := txn.Request{Kind: txn.ReqRollback, Txn: t.meta, Epoch: t.epochs[g]}
		if s.opts.Bug == "unchecked-release" {
			req.Epoch = 0
		}
		s.send(t, g, req, true, func(r txn.Response) {
			// After a failure the retry's new epoch drops the other
			// groups' answers.
			if r.Err != nil {
				s.rwFailed(t, r.Err)
				return
			}
			if left--; left == 0 {
				t.rec.Complete = s.loop.Now()
				s.res.Released++
				s.finishTxn(t.c, t, outcomeCommitted)
			}
		}, nil)
	}
}

// groupsOf sorts keys by the group of their shard, the groups in order of
// first appearance.
func (s *txnSim) groupsOf(keys []string) (order []uint64, byGroup map[uint64][]string) {
	byGroup = map[uint64][]string{}
	for _, k := range keys {
		g := s.shardOf(k).id
		if _, ok := byGroup[g]; !ok {
			order = append(order, g)
		}
		byGroup[g] = append(byGroup[g], k)
	}
	return order, byGroup
}

func (s *txnSim) commit(t *ctxn) {
	byGroup := map[uint64]*txn.Participant{}
	var groups []uint64
	part := func(g uint64) *txn.Participant {
		p := byGroup[g]
		if p == nil {
			p = &txn.Participant{Group: g}
			byGroup[g] = p
			groups = append(groups, g)
		}
		return p
	}
	for _, k := range t.reads {
		p := part(s.shardOf(k).id)
		p.Read, p.Epoch = true, t.epochs[p.Group]
	}
	for _, w := range t.rec.Writes {
		p := part(s.shardOf(w.Key).id)
		p.Writes = append(p.Writes, txn.Mutation{Key: []byte(w.Key), Value: []byte(w.Value), Delete: w.Delete})
	}
	slices.Sort(groups)
	// Coordinate at the participant homed in the client's region, if any.
	coordG := groups[0]
	for _, g := range groups {
		if s.shards[g-1].home == t.c.region {
			coordG = g
		}
	}
	var parts []txn.Participant
	for _, g := range groups {
		parts = append(parts, *byGroup[g])
	}
	t.cross = len(groups) > 1
	t.bound = s.commitBound(t.c, coordG, groups)
	t.commitSent = s.loop.Now()
	epoch := t.epoch
	req := txn.Request{Kind: txn.ReqCommit, Txn: t.meta, Participants: parts}
	var send func()
	send = func() {
		if t.c.cur != t || t.epoch != epoch {
			return
		}
		s.send(t, coordG, req, true, func(r txn.Response) {
			if r.Err != nil {
				if errors.Is(r.Err, txn.ErrAborted) {
					if s.abortReasons != nil {
						s.abortReasons["commit: "+r.Err.Error()]++
					}
					s.retryRW(t)
					return
				}
				// Anything else after the commit was sent leaves the outcome
				// unknown: ask again (the coordinator answers from its
				// record), until the client's patience runs out.
				if s.loop.Now().Sub(t.commitSent) >= clientTimeout {
					s.finishTxn(t.c, t, outcomeUnknown)
					return
				}
				s.loop.After(int64(50*time.Millisecond), send)
				return
			}
			t.rec.TS = r.TS
			lat := s.loop.Now().Sub(t.commitSent)
			if t.cross {
				s.crossLat = append(s.crossLat, lat)
				s.bounds = append(s.bounds, t.bound)
				s.exposed = append(s.exposed, r.CommitWait)
				if lat > 0 {
					s.fracs = append(s.fracs, float64(r.CommitWait)/float64(lat))
				}
			} else {
				s.localLat = append(s.localLat, lat)
			}
			s.finishTxn(t.c, t, outcomeCommitted)
		}, nil)
	}
	send()
}

func (s *txnSim) rwFailed(t *ctxn, err error) {
	if s.abortReasons != nil {
		s.abortReasons[err.Error()]++
	}
	if errors.Is(err, txn.ErrAborted) || errors.Is(err, txn.ErrTimeout) || errors.Is(err, txn.ErrBusy) || errors.Is(err, txn.ErrInvalid) {
		s.retryRW(t)
		return
	}
	s.retryRW(t)
}

// commitBound is the analytic lower bound of a commit's latency: the
// client's round trip to the coordinator's leader, then for two-phase
// commit the round trip to the farthest participant leader plus its Paxos
// round, plus the coordinator's Paxos round.
func (s *txnSim) commitBound(c *tclient, coordG uint64, groups []uint64) time.Duration {
	leaderRegion := func(g uint64) int {
		sh := s.shards[g-1]
		for _, n := range sh.replicas {
			if n.up && n.reps[g].g.Replica().IsLeader() {
				return n.region
			}
		}
		return sh.home
	}
	a := leaderRegion(coordG)
	b := s.m.RoundTrip(c.region, a) + s.paxosRound(coordG, a)
	var far time.Duration
	for _, g := range groups {
		if g == coordG {
			continue
		}
		r := leaderRegion(g)
		far = max(far, s.m.RoundTrip(a, r)+s.paxosRound(g, r))
	}
	return b + far
}

// paxosRound is the round trip from a leader in region r to the nearest
// quorum of its group's voters (counting itself).
func (s *txnSim) paxosRound(g uint64, r int) time.Duration {
	sh := s.shards[g-1]
	var rtts []time.Duration
	for _, v := range sh.voters {
		n := sh.replicas[v]
		if n.region == r {
			rtts = append(rtts, s.m.IntraRTT)
		} else {
			rtts = append(rtts, s.m.RoundTrip(r, n.region))
		}
	}
	slices.Sort(rtts)
	// The leader itself is one of the voters at distance 0.
	rtts[0] = 0
	return rtts[len(rtts)/2]
}

// ----------------------------------------------------------------------
// Read-only transactions

// nearest returns the replica of a group closest to the client (one in its
// region if any, else its hinted leader).
func (s *txnSim) nearest(c *tclient, g uint64) paxos.ReplicaID {
	sh := s.shards[g-1]
	ids := make([]paxos.ReplicaID, 0, len(sh.replicas))
	for id := range sh.replicas {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if sh.replicas[id].region == c.region {
			return id
		}
	}
	return 0
}

func (s *txnSim) runAudit(c *tclient) {
	t := s.newTxn(c, ReadOnly, "audit")
	first := uint64(1 + s.rng.IntN(len(s.shards)))
	s.sendTo(t, first, s.nearest(c, first), txn.Request{Kind: txn.ReqStrongTS}, func(r txn.Response) {
		if r.Err != nil {
			s.finishTxn(c, t, outcomeAborted)
			return
		}
		t.rec.TS = r.TS
		pending := len(s.shards)
		failed := false
		for _, sh := range s.shards {
			start := []byte(fmt.Sprintf("s%d/acct", sh.id))
			end := []byte(fmt.Sprintf("s%d/acct~", sh.id))
			s.sendTo(t, sh.id, s.nearest(c, sh.id), txn.Request{Kind: txn.ReqSnapshotRead, TS: r.TS, Start: start, End: end},
				func(r txn.Response) { failed = true; pending--; s.auditDone(t, pending, failed) },
				func(kvs []kv.KeyValue, _ tt.Timestamp) {
					found := map[string]string{}
					for _, x := range kvs {
						found[string(x.Key)] = string(x.Value)
					}
					for a := 0; a < bankAccountsPerShard; a++ {
						k := bankKey(sh.id, a)
						v, ok := found[k]
						t.rec.Reads = append(t.rec.Reads, ReadObs{Key: k, Found: ok, Value: v})
					}
					pending--
					s.auditDone(t, pending, failed)
				})
		}
	}, nil)
}

func (s *txnSim) auditDone(t *ctxn, pending int, failed bool) {
	if pending > 0 {
		return
	}
	if failed {
		s.finishTxn(t.c, t, outcomeAborted)
		return
	}
	s.finishTxn(t.c, t, outcomeCommitted)
}

// runStrongSingles reads keys one after another, each as its own strong
// single-group read-only transaction, half of them at the group's leader
// (as the client last heard) and half at a replica picked at random, as
// the Go client's strong reads land when it does not know the leader: a
// follower or read-only replica serves them at its own TT.now().latest.
func (s *txnSim) runStrongSingles(c *tclient, keys []string) {
	if len(keys) == 0 {
		s.think(c)
		return
	}
	key := keys[0]
	t := s.newTxn(c, ReadOnly, "probe-read")
	sh := s.shardOf(key)
	var at paxos.ReplicaID
	if s.rng.IntN(2) == 0 {
		ids := append(slices.Clone(sh.voters), sh.learners...)
		at = ids[s.rng.IntN(len(ids))]
	}
	s.sendTo(t, sh.id, at, txn.Request{Kind: txn.ReqSnapshotRead, Key: []byte(key), SingleGroup: true},
		func(txn.Response) { s.finishTxn(c, t, outcomeAborted) },
		func(kvs []kv.KeyValue, ts tt.Timestamp) {
			obs := pointObs(key, kvs)
			t.rec.Reads = append(t.rec.Reads, obs)
			t.rec.TS = ts
			c.cur = nil
			t.rec.Committed, t.rec.Complete = true, s.loop.Now()
			s.res.ReadOnly++
			s.hist = append(s.hist, t.rec)
			c.seq++
			s.runStrongSingles(c, keys[1:])
		})
}

func (s *txnSim) runStale(c *tclient, key string) {
	t := s.newTxn(c, ReadOnly, "stale")
	t.rec.Stale = true
	sh := s.shardOf(key)
	s.sendTo(t, sh.id, s.nearest(c, sh.id), txn.Request{Kind: txn.ReqStaleRead, Key: []byte(key), MaxStaleness: 5 * time.Second},
		func(txn.Response) { s.finishTxn(c, t, outcomeAborted) },
		func(kvs []kv.KeyValue, ts tt.Timestamp) {
			obs := pointObs(key, kvs)
			t.rec.Reads = append(t.rec.Reads, obs)
			t.rec.TS = ts
			s.finishTxn(c, t, outcomeCommitted)
		})
}

// probeWrite commits the probe key of shard i, then of i+1, ... each in
// its own transaction (blind writes).
func (s *txnSim) probeWrite(c *tclient, i uint64) {
	if int(i) > len(s.shards) {
		s.think(c)
		return
	}
	key := probeKey(i)
	val := s.newValue(fmt.Sprintf("p%d-%d-", c.id, c.probe))
	t := s.newTxn(c, ReadWrite, "probe-write")
	t.rw = true
	t.rec.Writes = []WriteOp{{Key: key, Value: val}}
	t.compute = func(map[string]ReadObs) []WriteOp { return t.rec.Writes }
	s.commit(t)
	// Chain: when this transaction finishes (committed), write the next.
	s.afterFinish(t, func(o txnOutcome) {
		if o == outcomeCommitted {
			c.seq++
			s.probeWrite(c, i+1)
			return
		}
		s.think(c)
	})
}

// hotWrite commits n blind writes of key, one after another.
func (s *txnSim) hotWrite(c *tclient, key string, n int) {
	if n == 0 {
		s.think(c)
		return
	}
	t := s.newTxn(c, ReadWrite, "hot-write")
	t.rw = true
	t.rec.Writes = []WriteOp{{Key: key, Value: s.newValue("h")}}
	t.compute = func(map[string]ReadObs) []WriteOp { return t.rec.Writes }
	s.commit(t)
	s.afterFinish(t, func(o txnOutcome) {
		if o == outcomeCommitted {
			c.seq++
			s.hotWrite(c, key, n-1)
			return
		}
		s.think(c)
	})
}

// afterFinish runs fn when t finishes, replacing the client's think step.
func (s *txnSim) afterFinish(t *ctxn, fn func(o txnOutcome)) { t.done = fn }

// ----------------------------------------------------------------------
// Sending requests and receiving answers

// send routes a request to the group's leader (as the client last heard).
func (s *txnSim) send(t *ctxn, g uint64, req txn.Request, leader bool, onResp func(txn.Response), onRead func([]kv.KeyValue, tt.Timestamp)) {
	s.sendTo(t, g, 0, req, onResp, onRead)
}

// sendTo routes a request to a given replica (0: the group's leader).
func (s *txnSim) sendTo(t *ctxn, g uint64, replica paxos.ReplicaID, req txn.Request, onResp func(txn.Response), onRead func([]kv.KeyValue, tt.Timestamp)) {
	s.reqSeq++
	req.ID = s.reqSeq
	cl := &call{t: t, epoch: t.epoch, group: g, req: req, onResp: onResp, onRead: onRead}
	if replica != 0 {
		cl.tries = -1 // pinned replica
		t.c.hints[g*1000+uint64(replica)] = replica
	}
	s.waiting[req.ID] = cl
	cl.sent = s.loop.Now()
	s.dispatchTo(cl, replica)
	// A call unanswered for the client timeout ends the transaction with
	// an unknown outcome (read-write, commit sent) or an abort.
	s.loop.After(int64(clientTimeout), func() {
		if s.waiting[req.ID] != cl {
			return
		}
		delete(s.waiting, req.ID)
		if t.c.cur != t || t.epoch != cl.epoch {
			return
		}
		if req.Kind == txn.ReqCommit {
			s.finishTxn(t.c, t, outcomeUnknown)
			return
		}
		if t.rw {
			s.retryRW(t)
			return
		}
		s.finishTxn(t.c, t, outcomeAborted)
	})
}

func (s *txnSim) dispatch(cl *call) { s.dispatchTo(cl, 0) }

func (s *txnSim) dispatchTo(cl *call, replica paxos.ReplicaID) {
	c := cl.t.c
	sh := s.shards[cl.group-1]
	id := replica
	if id == 0 {
		id = c.hints[cl.group]
	}
	if id == 0 {
		id = sh.voters[s.rng.IntN(len(sh.voters))]
	}
	to := sh.replicas[id]
	delays := s.net.Delays(c.node, to.id)
	if len(delays) == 0 {
		return // lost: the client's timeout decides
	}
	ep := to.epoch
	s.loop.At(s.loop.Now().Add(delays[0]), func() {
		if !to.up || to.epoch != ep {
			return
		}
		rep := to.reps[cl.group]
		if s.debugTxn != nil && s.debugTxn(cl.t.rec.ID) {
			s.tracef("REQ %s %v kind=%d key=%s group=%d node=%d leader=%v", cl.t.rec.ID, cl.req.Txn.ID, cl.req.Kind, cl.req.Key, cl.group, to.id, rep.g.Replica().IsLeader())
		}
		if r := cl.req; r.Kind == txn.ReqSnapshotRead && r.TS == 0 && r.SingleGroup && rep.strong != nil &&
			to.now().Latest != 0 && (to.now().Latest < rep.strong.LeaseEnd || s.opts.Bug == "stale-fast-read") &&
			rep.strong.TS >= to.eng.GCHorizon() {
			// The runtime's fast path: the leader serves the read from its
			// published state, without entering the group.
			task := txn.ReadTask{ID: r.ID, Key: r.Key, Start: r.Start, End: r.End, Limit: r.Limit, Reverse: r.Reverse, TS: rep.strong.TS}
			kvs, err := txnkv.Read(to.eng, task)
			s.res.FastReads++
			s.answerRead(rep, task, kvs, err)
			return
		}
		rep.g.SetReadFloor(to.eng.GCHorizon())
		rep.g.Handle(to.now(), cl.req)
		s.process(rep)
	})
}

// answer delivers a response from rep to the waiting call.
func (s *txnSim) answer(rep *trep, r txn.Response) {
	cl := s.waiting[r.ID]
	if cl == nil {
		return
	}
	if s.debugTxn != nil && s.debugTxn(cl.t.rec.ID) {
		s.tracef("RESP %s kind=%d node=%d ts=%d err=%v", cl.t.rec.ID, cl.req.Kind, rep.node.id, r.TS, r.Err)
	}
	s.deliver(rep, cl, func() {
		if errors.Is(r.Err, txn.ErrNotLeader) {
			c := cl.t.c
			if r.Hint != 0 {
				c.hints[cl.group] = r.Hint
			} else {
				delete(c.hints, cl.group)
			}
			cl.tries++
			if cl.tries < 20 {
				s.loop.After(int64(10*time.Millisecond), func() {
					if s.waiting[r.ID] == cl {
						s.dispatchTo(cl, 0)
					}
				})
				return
			}
		}
		delete(s.waiting, r.ID)
		if r.Priority != 0 && cl.t.meta.Priority == 0 {
			cl.t.meta.Priority = r.Priority
		}
		cl.onResp(r)
	})
}

func (s *txnSim) answerRead(rep *trep, task txn.ReadTask, kvs []kv.KeyValue, err error) {
	cl := s.waiting[task.ID]
	if cl == nil {
		return
	}
	if s.debugTxn != nil && s.debugTxn(cl.t.rec.ID) {
		s.tracef("READ %s key=%s node=%d kvs=%v err=%v", cl.t.rec.ID, task.Key, rep.node.id, kvs, err)
	}
	s.deliver(rep, cl, func() {
		delete(s.waiting, task.ID)
		if task.Priority != 0 && cl.t.meta.Priority == 0 {
			cl.t.meta.Priority = task.Priority
		}
		if task.Epoch != 0 && cl.t.epochs != nil {
			switch prev := cl.t.epochs[cl.group]; {
			case prev == 0:
				cl.t.epochs[cl.group] = task.Epoch
			case prev != task.Epoch:
				// Served by another leadership than an earlier read
				// there: those locks are gone (the Go client's noteEpoch).
				cl.onResp(txn.Response{ID: task.ID, Err: fmt.Errorf("%w: group %d changed leaders between reads", txn.ErrAborted, cl.group)})
				return
			}
		}
		if err != nil {
			cl.onResp(txn.Response{ID: task.ID, Err: err})
			return
		}
		cl.onRead(kvs, task.TS)
	})
}

// deliver carries an answer from the replica's node back to the client.
func (s *txnSim) deliver(rep *trep, cl *call, fn func()) {
	c := cl.t.c
	delays := s.net.Delays(rep.node.id, c.node)
	if len(delays) == 0 {
		return
	}
	s.loop.At(s.loop.Now().Add(delays[0]), func() {
		if c.cur != cl.t || cl.t.epoch != cl.epoch {
			delete(s.waiting, cl.req.ID)
			return
		}
		if cl.t.rw && cl.req.Kind == txn.ReqCommit && c.hints != nil {
			// The coordinator answered: it leads its group.
			c.hints[cl.group] = rep.id
		}
		fn()
	})
}

// initBank creates every shard's accounts, one blind-write transaction per
// shard, before the clients start; then calls start.
func (s *txnSim) initBank(start func()) {
	pending := len(s.shards)
	for _, sh := range s.shards {
		c := &tclient{id: 1000 + int(sh.id), region: sh.home, node: s.shards[sh.id-1].replicas[s.shards[sh.id-1].voters[0]].id,
			hints: map[uint64]paxos.ReplicaID{}}
		var try func()
		try = func() {
			c.seq++
			var writes []WriteOp
			for a := 0; a < bankAccountsPerShard; a++ {
				writes = append(writes, WriteOp{Key: bankKey(sh.id, a), Value: fmt.Sprintf("%d#init-s%d-a%d-%d", bankInitial, sh.id, a, c.seq)})
			}
			t := s.newTxn(c, ReadWrite, "init")
			t.rw = true
			t.rec.Writes = writes
			t.compute = func(map[string]ReadObs) []WriteOp { return writes }
			t.done = func(o txnOutcome) {
				if o == outcomeCommitted {
					pending--
					if pending == 0 {
						start()
					}
					return
				}
				s.loop.After(int64(100*time.Millisecond), try)
			}
			s.commit(t)
		}
		try()
	}
}

// pointObs is what a point read of key that returned kvs observed.
func pointObs(key string, kvs []kv.KeyValue) ReadObs {
	if len(kvs) == 0 {
		return ReadObs{Key: key}
	}
	return ReadObs{Key: key, Found: true, Value: string(kvs[0].Value)}
}
