package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meridiandb/meridian/internal/ntptest"
	"github.com/meridiandb/meridian/internal/proctest"
	"github.com/meridiandb/meridian/rpc/meridianpb"
)

// TestProcessesClockFaults runs three `meridian start` processes, each on
// three fake NTP servers of its own that the test controls, under writers
// and strong readers (single-key reads sent to any node, two-key read-only
// transactions), and bends one node's time sources at a time, always the
// node leading a shard:
//
//   - every server of the node steps by ±50 ms, ±150 ms, ±200 ms or ±5 s,
//     or strobes ±200 ms: the node fences its clock at its next poll
//     (architecture invariant 2) and says why in its status; for one step
//     of each size and the strobe, it answers health checks NOT_SERVING and
//     leads nothing, and the shards it led keep taking writes through their
//     other replicas once its lease has run out; when
//     its sources give the true time again it returns, only after the hold
//     and with its peers' confirmation;
//   - its servers keep a wrong time (+300 ms): it stays fenced, however
//     well they agree with each other;
//   - it loses all its servers for 4 s: it keeps its interval (widening by
//     the drift bound) and does not fence;
//   - it restarts with lying servers: its peers never confirm it, and it
//     stays fenced until its servers tell the time again.
//
// The whole history must be externally consistent (sim.CheckTxns: real-time
// order across keys, latest-write reads, no lost update).
func TestProcessesClockFaults(t *testing.T) {
	proctest.Skip(t)
	const lease = 2 * time.Second
	ntps := make([][]*ntptest.Server, 3)
	c := startProcessCluster(t, 3, lease, func(i int) []string {
		var addrs []string
		for j := 0; j < 3; j++ {
			s := ntptest.Start(t, ntptest.Behavior{})
			ntps[i] = append(ntps[i], s)
			addrs = append(addrs, s.Addr())
		}
		return []string{"--ntp", strings.Join(addrs, ","), "--ntp-poll", "250ms", "--max-epsilon", "100ms"}
	})
	set := func(i int, f func(*ntptest.Behavior)) {
		for _, s := range ntps[i] {
			s.Set(f)
		}
	}
	honest := func(b *ntptest.Behavior) { b.Offset, b.Drop = 0, false }
	clock := func(i int) *meridianpb.ClockStatus {
		st, err := c.nodes[i].status(t)
		if err != nil {
			return nil
		}
		return st.Clock
	}
	waitClock := func(i int, within time.Duration, what string, ok func(*meridianpb.ClockStatus) bool) *meridianpb.ClockStatus {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			if cs := clock(i); cs != nil && ok(cs) {
				return cs
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: %s not within %s; clock %+v", i, what, within, clock(i))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	fencedAs := func(kind string) func(*meridianpb.ClockStatus) bool {
		return func(cs *meridianpb.ClockStatus) bool { return !cs.Healthy && cs.FenceKind == kind }
	}
	trusted := func(cs *meridianpb.ClockStatus) bool {
		return cs.Healthy && cs.FenceKind == "" && cs.State == meridianpb.ClockState_CLOCK_STATE_TRUSTED
	}
	for i := range c.nodes {
		waitClock(i, 10*time.Second, "trusted at start", trusted)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newWorkload(ctx, c)
	wg := w.run(ctx, 4, 4)
	defer wg.Wait()
	defer cancel()
	time.Sleep(time.Second)

	// checkFenced checks what a fenced node shows, and that every shard
	// takes writes while it is fenced (after its lease ran out).
	checkFenced := func(i int, name string) {
		t.Helper()
		// Health follows the clock within its polling period (250 ms).
		var h *healthpb.HealthCheckResponse
		var err error
		for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			hctx, hcancel := context.WithTimeout(ctx, time.Second)
			h, err = healthpb.NewHealthClient(c.nodes[i].conn).Check(hctx, &healthpb.HealthCheckRequest{})
			hcancel()
			if err == nil && h.Status == healthpb.HealthCheckResponse_NOT_SERVING {
				break
			}
		}
		if err != nil || h.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("%s: node %d's health while fenced: %v %v, want NOT_SERVING", name, i, h, err)
		}
		time.Sleep(lease + time.Second)
		if gs := c.groupsLedBy(i); len(gs) > 0 {
			t.Errorf("%s: fenced node %d leads groups %v", name, i, gs)
		}
		before := map[uint64]int64{}
		for g := uint64(1); g <= 3; g++ {
			before[g] = w.writes(g)
		}
		time.Sleep(1500 * time.Millisecond)
		for g := uint64(1); g <= 3; g++ {
			if w.writes(g) == before[g] {
				t.Errorf("%s: group %d took no write in 1.5 s while node %d was fenced", name, g, i)
			}
		}
	}

	type fault struct {
		name  string
		apply func(i int) (stop func())
	}
	step := func(d time.Duration) fault {
		return fault{fmt.Sprintf("step %+v", d), func(i int) func() {
			set(i, func(b *ntptest.Behavior) { b.Offset = d })
			return func() {}
		}}
	}
	strobe := fault{"strobe ±200ms", func(i int) func() {
		done := make(chan struct{})
		go func() {
			for k := 0; ; k++ {
				off := 200 * time.Millisecond
				if k%2 == 1 {
					off = -off
				}
				set(i, func(b *ntptest.Behavior) { b.Offset = off })
				select {
				case <-done:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
		return func() { close(done) }
	}}
	for k, f := range []fault{step(50 * time.Millisecond), step(-50 * time.Millisecond), step(150 * time.Millisecond),
		step(-150 * time.Millisecond), step(200 * time.Millisecond), step(-200 * time.Millisecond), step(5 * time.Second),
		step(-5 * time.Second), strobe} {
		leaders := c.waitLeaders(15 * time.Second)
		victim := leaders[uint64(k%3+1)]
		t.Logf("%s on node %d (leads %v)", f.name, victim, c.groupsLedBy(victim))
		stop := f.apply(victim)
		cs := waitClock(victim, 3*time.Second, f.name+": fenced for a step", fencedAs("step"))
		if !strings.Contains(cs.FenceReason, "beyond what the local oscillator allows") {
			t.Errorf("%s: fence reason %q", f.name, cs.FenceReason)
		}
		if k%2 == 0 {
			// Every other fault (one of each size, and the strobe) also
			// checks that the shards carry on without the fenced node:
			// that waits out a lease.
			checkFenced(victim, f.name)
		}
		stop()
		set(victim, honest)
		start := time.Now()
		waitClock(victim, lease+12*time.Second, f.name+": the fence lifted once the sources are right again", trusted)
		t.Logf("%s: node %d trusted again %s after its sources were fixed", f.name, victim, time.Since(start).Round(100*time.Millisecond))
	}

	// Sources that stay wrong: fenced for good, whatever they agree on.
	victim := c.waitLeaders(15 * time.Second)[1]
	set(victim, func(b *ntptest.Behavior) { b.Offset = 300 * time.Millisecond })
	waitClock(victim, 3*time.Second, "fenced for a lasting step", fencedAs("step"))
	time.Sleep(lease + 6*time.Second) // past the hold and the stability window
	if cs := clock(victim); cs == nil || cs.Healthy || cs.FenceKind != "step" {
		t.Errorf("node %d trusted its time sources again while they kept a wrong time: %+v", victim, cs)
	}
	set(victim, honest)
	waitClock(victim, 8*time.Second, "trusted once its sources are right", trusted)

	// Loss of every server: no step, no fence; the interval widens.
	victim = c.waitLeaders(15 * time.Second)[2]
	set(victim, func(b *ntptest.Behavior) { b.Drop = true })
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if cs := clock(victim); cs == nil || !cs.Healthy {
			t.Fatalf("node %d without its servers for less than 4 s: %+v, want a healthy, widening interval", victim, cs)
		}
	}
	set(victim, honest)

	// A restart with lying servers: the peers never confirm it.
	victim = c.waitLeaders(15 * time.Second)[3]
	c.nodes[victim].kill()
	set(victim, func(b *ntptest.Behavior) { b.Offset = 400 * time.Millisecond })
	c.nodes[victim].start(t, c.bin, c.nodes[(victim+1)%3].addr)
	waitClock(victim, 10*time.Second, "unconfirmed after a restart with lying servers", fencedAs("unconfirmed"))
	time.Sleep(3 * time.Second)
	if cs := clock(victim); cs == nil || cs.Healthy {
		t.Errorf("node %d restarted 400 ms off and was confirmed: %+v", victim, cs)
	} else if len(cs.Peers) == 0 || cs.Peers[0].Agrees {
		t.Errorf("node %d's peers: %+v, want disagreeing", victim, cs.Peers)
	}
	set(victim, honest)
	waitClock(victim, 5*time.Second, "confirmed once its servers are right", trusted)
	c.waitLeaders(15 * time.Second)
	time.Sleep(time.Second)

	cancel()
	wg.Wait()
	w.h.check(t)
}
