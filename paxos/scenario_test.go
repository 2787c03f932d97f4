package paxos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridiandb/meridian/tt"
)

// TestScenarios runs the protocol scenario scripts in testdata/. Each
// script starts with `replicas`; its commands drive a tnet (harness_test.go)
// in virtual time. Commands:
//
//	replicas voters=3 learners=1 lease=2s [eps=1ms] [election=500ms] [heartbeat=200ms]
//	         [max-inflight=N] [max-promise=N] [max-msg=bytes]
//	campaign <id>                 Campaign (pre-vote first); prints the replica's status
//	propose <id> data=x [commit-wait] [min-ts=+5s]
//	                              Propose at id; prints index and timestamp, or the error
//	process-ready [ids...]        handle Ready (persist, queue messages, apply); prints queued messages
//	deliver-msgs [ids...] [drop=(ids)] [type=Accept] [reverse] [dup]
//	                              step queued messages to ids (default all); those to drop= are lost;
//	                              reverse delivers in reverse order, dup delivers each twice
//	stabilize                     process readies and deliver messages until quiet
//	tick <duration>               advance virtual time in 50ms steps, ticking everyone and stabilizing
//	partition 1 | 2 3             cut the network; unnamed replicas form one more side
//	heal                          reconnect everyone
//	crash <id> / restart <id>     crash (unpersisted state is lost) / restart from persisted state only
//	clock-unhealthy <id> / clock-healthy <id>
//	clock-offset <id> <duration>  the replica's clock reads true time + offset (|offset| <= ε)
//	close-timestamp <id>          CloseTimestamp at the leader
//	abdicate <id> [to=<id>]
//	compact <id> [index=N]        truncate id's log (default: up to its applied index)
//	install-snapshot from=<id> to=<id>
//	                              copy from's state machine to to and call RestoreSnapshot
//	net [dup=0.5] [delay=0.3] [reorder] [seed=N]
//	                              network faults for stabilize and tick (no arguments: none)
//	trace-roles [off]             print role changes as events
//	status [ids...] / applied [ids...] / log [ids...]
//	check                         run the safety checks (they also run after every command)
//
// Times print relative to the start of the run (the harness's true time).
// Every command's output begins with the events it caused: lease changes,
// snapshot requests, role changes when traced.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenario scripts in testdata/")
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			s := &scenario{}
			runDD(t, path, s.run)
			if s.n != nil {
				if err := s.n.safetyErr(); err != nil {
					t.Fatalf("%s: safety: %v", path, err)
				}
			}
		})
	}
}

type scenario struct {
	n   *tnet
	out strings.Builder
}

func (s *scenario) printf(format string, args ...any) {
	fmt.Fprintf(&s.out, format, args...)
	if !strings.HasSuffix(format, "\n") {
		s.out.WriteString("\n")
	}
}

func (s *scenario) run(t *testing.T, c *ddCmd) string {
	s.out.Reset()
	if c.name != "replicas" && s.n == nil {
		t.Fatalf("%s: %s before replicas", c.pos, c.name)
	}
	var err error
	switch c.name {
	case "replicas":
		err = s.cmdReplicas(t, c)
	case "campaign":
		err = s.forEach(c, func(nd *tnode) error {
			nd.r.Campaign(s.n.interval(nd))
			s.n.noteRole(nd)
			s.printf("%s", s.statusLine(nd))
			return nil
		})
	case "propose":
		err = s.cmdPropose(c)
	case "process-ready":
		err = s.cmdProcessReady(c)
	case "deliver-msgs":
		err = s.cmdDeliver(c)
	case "stabilize":
		s.n.stabilize()
	case "tick":
		var d time.Duration
		if len(c.args) != 1 {
			return "usage: tick <duration>"
		}
		if d, err = time.ParseDuration(c.args[0].key); err == nil {
			s.n.advance(d)
			s.printf("now %s", s.n.rel(s.n.now))
		}
	case "partition":
		err = s.cmdPartition(c)
	case "heal":
		s.n.part = map[ReplicaID]int{}
	case "crash":
		err = s.forEach(c, func(nd *tnode) error {
			s.n.crash(nd.id)
			if nd.holding {
				s.printf("%d crashed holding the lease of ballot %s (ends %s)", nd.id, nd.r.Status().Promised, s.n.rel(nd.r.Status().LeaseEnd))
			}
			nd.holding = false
			return nil
		})
	case "restart":
		err = s.forEach(c, func(nd *tnode) error {
			s.n.restart(nd.id)
			// The restart rule is computed at the first input with a
			// healthy clock; show it right away.
			nd.r.Tick(s.n.interval(nd))
			st := nd.r.Status()
			s.printf("%d restarted: promised=%s chosen=%d applied=%d; no vote before TT.after(%s)", nd.id,
				st.Promised, st.Chosen, st.Applied.Index, s.n.rel(st.NoVoteUntil))
			return nil
		})
	case "clock-offset":
		err = s.cmdClockOffset(c)
	case "close-timestamp":
		err = s.forEach(c, func(nd *tnode) error {
			ts, idx, err := nd.r.CloseTimestamp(s.n.interval(nd))
			if err != nil {
				s.printf("%d: error: %v", nd.id, err)
				return nil
			}
			s.printf("%d: closed %s after index %d", nd.id, s.n.rel(ts), idx)
			return nil
		})
	case "clock-unhealthy", "clock-healthy":
		err = s.forEach(c, func(nd *tnode) error {
			nd.unhealthy = c.name == "clock-unhealthy"
			return nil
		})
	case "abdicate":
		err = s.forEach(c, func(nd *tnode) error {
			to, err := strconv.ParseUint(c.val("to", "0"), 10, 64)
			if err != nil {
				return err
			}
			st, smax := nd.r.Status(), nd.r.LastAssigned()
			if err := s.n.abdicate(nd, ReplicaID(to)); err != nil {
				s.printf("error: %v", err)
				return nil
			}
			s.printf("%d abdicates ballot %s at %s (reads earliest %s): s_max=%s, lease end %s",
				nd.id, st.Promised, s.n.rel(s.n.now), s.n.rel(s.n.interval(nd).Earliest), s.n.rel(smax), s.n.rel(st.LeaseEnd))
			return nil
		})
	case "compact":
		err = s.forEach(c, func(nd *tnode) error {
			idx := nd.r.Status().Applied.Index
			if v := c.val("index", ""); v != "" {
				i, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return err
				}
				idx = i
			}
			if err := s.n.compact(nd, idx); err != nil {
				s.printf("error: %v", err)
				return nil
			}
			s.printf("%d: log now starts at %d", nd.id, nd.r.FirstIndex())
			return nil
		})
	case "install-snapshot":
		err = s.cmdInstallSnapshot(c)
	case "net":
		err = s.cmdNet(c)
	case "trace-roles":
		s.n.traceRoles = !c.has("off")
	case "status":
		err = s.forEach(c, func(nd *tnode) error {
			s.printf("%s", s.statusLine(nd))
			return nil
		})
	case "applied":
		err = s.forEach(c, func(nd *tnode) error {
			for _, a := range nd.applied {
				s.printf("%d: %s", nd.id, s.fmtApplied(a))
			}
			if len(nd.applied) == 0 {
				s.printf("%d: nothing applied", nd.id)
			}
			return nil
		})
	case "log":
		err = s.forEach(c, func(nd *tnode) error {
			var idx []uint64
			for i := range nd.log {
				idx = append(idx, i)
			}
			slices.Sort(idx)
			for _, i := range idx {
				e := nd.log[i]
				s.printf("%d: %s accepted at %s", nd.id, s.fmtEntry(e), e.Ballot)
			}
			if len(idx) == 0 {
				s.printf("%d: log empty (first index %d)", nd.id, nd.r.FirstIndex())
			}
			return nil
		})
	case "check":
		if err := s.n.safetyErr(); err != nil {
			t.Fatalf("%s: safety: %v", c.pos, err)
		}
		s.printf("safe: applied logs agree, timestamps increase, %d leases disjoint", len(s.n.leases))
	default:
		t.Fatalf("%s: unknown command %q", c.pos, c.name)
	}
	if err != nil {
		t.Fatalf("%s: %s: %v", c.pos, c.raw, err)
	}
	if s.n != nil {
		if err := s.n.safetyErr(); err != nil {
			t.Fatalf("%s: after %s: safety: %v", c.pos, c.raw, err)
		}
	}
	return s.out.String()
}

// forEach runs fn for the replicas named by the command, or all of them.
func (s *scenario) forEach(c *ddCmd, fn func(nd *tnode) error) error {
	ids, _ := c.ids()
	if len(ids) == 0 {
		ids = s.n.ids
	}
	for _, id := range ids {
		nd := s.n.nodes[id]
		if nd == nil {
			return fmt.Errorf("no replica %d", id)
		}
		if err := fn(nd); err != nil {
			return err
		}
	}
	return nil
}

func (s *scenario) cmdReplicas(t *testing.T, c *ddCmd) error {
	voters, err := strconv.Atoi(c.val("voters", "3"))
	if err != nil {
		return err
	}
	learners, err := strconv.Atoi(c.val("learners", "0"))
	if err != nil {
		return err
	}
	dur := func(k string) (time.Duration, error) {
		v := c.val(k, "")
		if v == "" {
			return 0, nil
		}
		return time.ParseDuration(v)
	}
	lease, err := dur("lease")
	if err != nil {
		return err
	}
	election, err := dur("election")
	if err != nil {
		return err
	}
	heartbeat, err := dur("heartbeat")
	if err != nil {
		return err
	}
	eps, err := dur("eps")
	if err != nil {
		return err
	}
	maxInflight, err := strconv.Atoi(c.val("max-inflight", "0"))
	if err != nil {
		return err
	}
	maxPromise, err := strconv.Atoi(c.val("max-promise", "0"))
	if err != nil {
		return err
	}
	maxMsg, err := strconv.Atoi(c.val("max-msg", "0"))
	if err != nil {
		return err
	}
	s.n = newTnet(t, voters, learners, func(cfg *Config) {
		if lease > 0 {
			cfg.LeaseDuration = lease
		}
		cfg.ElectionTimeout = election
		cfg.HeartbeatInterval = heartbeat
		cfg.MaxInflight = maxInflight
		cfg.MaxPromiseEntries = maxPromise
		cfg.MaxMsgBytes = maxMsg
	})
	if eps > 0 {
		s.n.eps = eps
	}
	s.n.events = func(line string) { s.printf("%s", line) }
	cfg := s.n.nodes[1].r.cfg
	s.printf("voters %v learners %v; lease %s, heartbeat %s, election timeout %s (+ jitter), ε %s",
		cfg.Voters, cfg.Learners, cfg.LeaseDuration, cfg.HeartbeatInterval, cfg.ElectionTimeout, s.n.eps)
	return nil
}

func (s *scenario) cmdPropose(c *ddCmd) error {
	ids, _ := c.ids()
	if len(ids) != 1 {
		return errors.New("usage: propose <id> data=x [commit-wait] [min-ts=+1s]")
	}
	nd := s.n.nodes[ids[0]]
	var minTS tt.Timestamp
	if v := c.val("min-ts", ""); v != "" {
		d, err := time.ParseDuration(strings.TrimPrefix(v, "+"))
		if err != nil {
			return err
		}
		minTS = s.n.start.Add(d)
	}
	idx, ts, err := nd.r.Propose(s.n.interval(nd), []byte(c.val("data", "")), minTS, c.has("commit-wait"))
	var nl *NotLeaderError
	switch {
	case errors.As(err, &nl):
		s.printf("%d: NotLeaderError (hint %d): %v", nd.id, nl.Hint, err)
	case err != nil:
		s.printf("%d: error: %v", nd.id, err)
	default:
		s.printf("%d: proposed at index %d with ts %s", nd.id, idx, s.n.rel(ts))
	}
	return nil
}

func (s *scenario) cmdProcessReady(c *ddCmd) error {
	return s.forEach(c, func(nd *tnode) error {
		if nd.down {
			return nil
		}
		q := len(s.n.queue)
		s.n.handleReady(nd)
		for _, m := range s.n.queue[q:] {
			s.printf("%d queued %s", nd.id, s.fmtMsg(m))
		}
		return nil
	})
}

func (s *scenario) cmdDeliver(c *ddCmd) error {
	to, _ := c.ids()
	drop, err := c.idList("drop")
	if err != nil {
		return err
	}
	typ := c.val("type", "")
	var keep, again []Message
	q := s.n.queue
	s.n.queue = nil
	if c.has("reverse") {
		slices.Reverse(q)
	}
	for _, m := range q {
		if typ != "" && m.Type.String() != typ {
			keep = append(keep, m)
			continue
		}
		switch {
		case slices.Contains(drop, m.To):
			s.printf("dropped %s", s.fmtMsg(m))
		case len(to) > 0 && !slices.Contains(to, m.To):
			keep = append(keep, m)
		case s.n.deliver(m):
			s.printf("delivered %s", s.fmtMsg(m))
			if c.has("dup") {
				again = append(again, m)
			}
		default:
			s.printf("lost %s (recipient down or cut off)", s.fmtMsg(m))
		}
	}
	for _, m := range again {
		if s.n.deliver(m) {
			s.printf("delivered again %s", s.fmtMsg(m))
		}
	}
	// Messages generated while delivering (local responses come via
	// Ready) stay queued behind the kept ones.
	s.n.queue = append(keep, s.n.queue...)
	return nil
}

func (s *scenario) cmdClockOffset(c *ddCmd) error {
	if len(c.args) != 2 {
		return errors.New("usage: clock-offset <id> <duration>")
	}
	id, err := strconv.ParseUint(c.args[0].key, 10, 64)
	if err != nil {
		return err
	}
	d, err := time.ParseDuration(c.args[1].key)
	if err != nil {
		return err
	}
	if d > s.n.eps || d < -s.n.eps {
		return fmt.Errorf("offset %s beyond ε %s: the interval would not contain true time", d, s.n.eps)
	}
	nd := s.n.nodes[ReplicaID(id)]
	nd.offset = d
	iv := s.n.interval(nd)
	s.printf("%d reads [%s, %s] at true time %s", nd.id, s.n.rel(iv.Earliest), s.n.rel(iv.Latest), s.n.rel(s.n.now))
	return nil
}

func (s *scenario) cmdPartition(c *ddCmd) error {
	fields := strings.Fields(c.raw)[1:]
	part := map[ReplicaID]int{}
	side := 1
	for _, f := range fields {
		if f == "|" {
			side++
			continue
		}
		id, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return fmt.Errorf("bad replica %q", f)
		}
		part[ReplicaID(id)] = side
	}
	// Unnamed replicas share side 0.
	for _, id := range s.n.ids {
		if _, ok := part[id]; !ok {
			part[id] = 0
		}
	}
	s.n.part = part
	return nil
}

func (s *scenario) cmdInstallSnapshot(c *ddCmd) error {
	from, err := strconv.ParseUint(c.val("from", ""), 10, 64)
	if err != nil {
		return err
	}
	to, err := strconv.ParseUint(c.val("to", ""), 10, 64)
	if err != nil {
		return err
	}
	st := s.n.nodes[ReplicaID(from)].apply
	ok, err := s.n.installSnapshot(ReplicaID(from), ReplicaID(to))
	switch {
	case err != nil:
		s.printf("snapshot %d->%d failed: %v", from, to, err)
	case !ok:
		s.printf("snapshot %d->%d at index %d ignored (not ahead of what %d knows chosen)", from, to, st.Index, to)
	default:
		s.printf("snapshot %d->%d installed at index %d (last ts %s, max proposer %s, closed %s)", from, to, st.Index,
			s.n.rel(st.LastTS), st.MaxProposer, s.n.rel(st.ClosedTS))
	}
	return nil
}

func (s *scenario) cmdNet(c *ddCmd) error {
	parse := func(k string) (float64, error) { return strconv.ParseFloat(c.val(k, "0"), 64) }
	var err error
	if s.n.dup, err = parse("dup"); err != nil {
		return err
	}
	if s.n.delay, err = parse("delay"); err != nil {
		return err
	}
	s.n.reorder = c.has("reorder")
	seed, err := strconv.ParseUint(c.val("seed", "1"), 10, 64)
	if err != nil {
		return err
	}
	s.n.rng = rand.New(rand.NewPCG(seed, 7))
	return nil
}

func (s *scenario) statusLine(nd *tnode) string {
	if nd.down {
		return fmt.Sprintf("%d: down (persisted promised=%s chosen=%d applied=%d)", nd.id, nd.hs.Promised, nd.hs.Chosen, nd.apply.Index)
	}
	st := nd.r.Status()
	var b strings.Builder
	fmt.Fprintf(&b, "%d: %s promised=%s chosen=%d applied=%d", nd.id, st.Role, st.Promised, st.Chosen, st.Applied.Index)
	if nd.unhealthy {
		b.WriteString(" clock=unhealthy")
	}
	if st.Role == "leader" {
		fmt.Fprintf(&b, " lease-end=%s", s.n.rel(st.LeaseEnd))
		if nd.r.Leaseholder(s.n.interval(nd)) {
			b.WriteString(" (leaseholder)")
		} else {
			b.WriteString(" (no valid lease)")
		}
	} else if st.Leader != 0 {
		fmt.Fprintf(&b, " leader-hint=%d", st.Leader)
	}
	if !st.VoteBallot.IsZero() {
		fmt.Fprintf(&b, " vote=%s until %s", st.VoteBallot, s.n.rel(st.VoteEnd))
	}
	if st.NoVoteUntil != 0 {
		fmt.Fprintf(&b, " no-vote-until=%s", s.n.rel(st.NoVoteUntil))
	}
	fmt.Fprintf(&b, " closed=%s", s.n.rel(st.Applied.ClosedTS))
	return b.String()
}

func (s *scenario) fmtEntry(e Entry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.Index, e.Type)
	if e.Type == EntryNormal {
		fmt.Fprintf(&b, " %q", e.Data)
	}
	if e.Type != EntryNoop {
		fmt.Fprintf(&b, " ts=%s", s.n.rel(e.TS))
	}
	fmt.Fprintf(&b, " proposer=%s", e.Proposer)
	if e.CommitWait {
		b.WriteString(" commit-wait")
	}
	return b.String()
}

func (s *scenario) fmtApplied(a Applied) string {
	if a.Skipped {
		return s.fmtEntry(a.Entry) + " SKIPPED"
	}
	return s.fmtEntry(a.Entry)
}

func (s *scenario) fmtMsg(m Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d->%d %s b=%s", m.From, m.To, m.Type, m.Ballot)
	switch m.Type {
	case MsgPrepare, MsgPreVote:
		fmt.Fprintf(&b, " from=%d", m.Index)
	case MsgAccept:
		fmt.Fprintf(&b, " chosen=%d", m.Chosen)
	case MsgAccepted:
		fmt.Fprintf(&b, " index=%d chosen=%d", m.Index, m.Chosen)
	case MsgPromise, MsgPreVoteResp:
		fmt.Fprintf(&b, " chosen=%d", m.Chosen)
	}
	if m.Reject {
		fmt.Fprintf(&b, " REJECT(promised=%s", m.Promised)
		if m.Behind {
			b.WriteString(" behind")
		}
		b.WriteString(")")
	} else if m.Behind {
		b.WriteString(" behind")
	}
	if len(m.Entries) > 0 {
		var es []string
		for _, e := range m.Entries {
			switch e.Type {
			case EntryNormal:
				es = append(es, fmt.Sprintf("%d:%q@%s", e.Index, e.Data, e.Ballot))
			default:
				es = append(es, fmt.Sprintf("%d:%s@%s", e.Index, e.Type, e.Ballot))
			}
		}
		fmt.Fprintf(&b, " entries=[%s]", strings.Join(es, " "))
	}
	if m.LeaseGranted {
		b.WriteString(" lease-vote")
	}
	return b.String()
}
