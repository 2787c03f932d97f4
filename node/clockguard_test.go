package node

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/meridiandb/meridian/tt"
)

// guardFixture is a guard over a real system clock (ε 1 ms) in a cluster
// of n nodes, self being node 1.
func guardFixture(t *testing.T, n int, hold time.Duration) (*ClockGuard, *tt.System) {
	t.Helper()
	clock := tt.NewSystem(time.Millisecond)
	var members []NodeID
	for i := 1; i <= n; i++ {
		members = append(members, NodeID(i))
	}
	g := NewClockGuard(ClockGuardConfig{Self: 1, Clock: clock, Members: func() []NodeID { return members },
		Hold: func() time.Duration { return hold }, Stable: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return g, clock
}

// reading is peer's answer shifted by off from this node's clock, over a
// 1 ms round trip ending at.
func reading(g *ClockGuard, peer NodeID, off time.Duration, state ClockState, at time.Time) PeerReading {
	mine, _ := g.Reading()
	theirs := tt.Interval{Earliest: mine.Earliest.Add(off), Latest: mine.Latest.Add(off)}
	return PeerReading{Peer: peer, Sent: mine, Received: tt.Interval{Earliest: mine.Earliest.Add(time.Millisecond), Latest: mine.Latest.Add(time.Millisecond)},
		Theirs: theirs, State: state, At: at, RTT: time.Millisecond}
}

func fenceOf(t *testing.T, c *tt.System) (tt.FenceInfo, bool) {
	t.Helper()
	return c.Fenced()
}

func TestClockGuardPeersFence(t *testing.T) {
	g, c := guardFixture(t, 3, time.Hour)
	now := time.Now()
	// One peer agrees, one disagrees by 200 ms: two of three meet, no fence.
	g.Observe(reading(g, 2, 0, ClockTrusted, now))
	g.Observe(reading(g, 3, 200*time.Millisecond, ClockTrusted, now))
	g.Evaluate(now)
	if _, ok := fenceOf(t, c); ok {
		t.Fatal("fenced with a majority (itself and node 2) agreeing")
	}
	// Both disagree: fenced, naming them.
	g.Observe(reading(g, 2, -200*time.Millisecond, ClockTrusted, now))
	g.Evaluate(now)
	f, ok := fenceOf(t, c)
	if !ok || f.Kind != tt.FencePeers || !strings.Contains(f.Reason, "node 2") || !strings.Contains(f.Reason, "node 3") {
		t.Fatalf("fence %+v %v, want one for its peers naming nodes 2 and 3", f, ok)
	}
	if _, err := c.Now(); !errors.Is(err, tt.ErrFenced) {
		t.Errorf("Now while fenced: %v", err)
	}
	if iv, st := g.Reading(); st != ClockFenced || iv.Latest == 0 {
		t.Errorf("reading while fenced: %v %s, want the candidate and fenced", iv, st)
	}
}

// Peers that are fenced, unhealthy, failed or stale are no evidence: a
// clock disagreeing only with them keeps going.
func TestClockGuardNoEvidence(t *testing.T) {
	g, c := guardFixture(t, 3, time.Hour)
	now := time.Now()
	g.Observe(reading(g, 2, time.Second, ClockFenced, now))
	g.Observe(reading(g, 3, time.Second, ClockTrusted, now.Add(-10*time.Second)))
	g.Evaluate(now)
	g.Observe(PeerReading{Peer: 3, Err: errors.New("unreachable"), At: now})
	g.Evaluate(now)
	g.Observe(reading(g, 3, time.Second, ClockUnhealthy, now))
	g.Evaluate(now)
	if f, ok := fenceOf(t, c); ok {
		t.Fatalf("fenced without evidence: %+v", f)
	}
}

// A starting node stays fenced until a majority confirms it, even when the
// others start too (unconfirmed peers count).
func TestClockGuardUnconfirmedAtStart(t *testing.T) {
	g, c := guardFixture(t, 3, time.Hour)
	g.Start()
	if f, ok := fenceOf(t, c); !ok || f.Kind != tt.FenceUnconfirmed {
		t.Fatalf("after Start: %+v %v, want unconfirmed", f, ok)
	}
	if _, st := g.Reading(); st != ClockUnconfirmed {
		t.Errorf("state %s, want unconfirmed", st)
	}
	now := time.Now()
	g.Evaluate(now)
	if _, ok := fenceOf(t, c); !ok {
		t.Fatal("confirmed with no peer heard")
	}
	g.Observe(reading(g, 3, 0, ClockUnconfirmed, now))
	g.Evaluate(now)
	if f, ok := fenceOf(t, c); ok {
		t.Fatalf("still fenced with node 3 agreeing: %+v", f)
	}
	// A single node confirms itself.
	g1, c1 := guardFixture(t, 1, time.Hour)
	g1.Start()
	if _, ok := fenceOf(t, c1); ok {
		t.Error("a one-node cluster waits for confirmation")
	}
	_ = g1
}

// A clock fenced by its peers comes back only once its time has met a
// majority for Stable and the hold has passed.
func TestClockGuardReturnAfterHold(t *testing.T) {
	g, c := guardFixture(t, 3, 5*time.Second)
	now := time.Now()
	g.Observe(reading(g, 2, time.Second, ClockTrusted, now))
	g.Observe(reading(g, 3, time.Second, ClockTrusted, now))
	g.Evaluate(now)
	f, ok := fenceOf(t, c)
	if !ok {
		t.Fatal("not fenced")
	}
	// The peers agree again (say they were the ones off, and fixed).
	for _, dt := range []time.Duration{0, 500 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second} {
		at := f.Since.Add(dt)
		g.Observe(reading(g, 2, 0, ClockTrusted, at))
		g.Observe(reading(g, 3, 0, ClockTrusted, at))
		g.Evaluate(at)
		if _, ok := fenceOf(t, c); !ok {
			t.Fatalf("unfenced %s after the fence, before the 5 s hold", dt)
		}
	}
	at := f.Since.Add(5*time.Second + time.Millisecond)
	g.Observe(reading(g, 2, 0, ClockTrusted, at))
	g.Observe(reading(g, 3, 0, ClockTrusted, at))
	g.Evaluate(at)
	if f, ok := fenceOf(t, c); ok {
		t.Fatalf("still fenced after the hold with a stable majority: %+v", f)
	}
}

// An operator's fence lifts only by an operator, and not before the hold.
func TestClockGuardOperator(t *testing.T) {
	g, c := guardFixture(t, 3, 200*time.Millisecond)
	if err := g.FenceByOperator("disk replaced"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	g.Observe(reading(g, 2, 0, ClockTrusted, now.Add(time.Minute)))
	g.Observe(reading(g, 3, 0, ClockTrusted, now.Add(time.Minute)))
	g.Evaluate(now.Add(time.Minute))
	g.Evaluate(now.Add(2 * time.Minute))
	if f, ok := fenceOf(t, c); !ok || f.Kind != tt.FenceOperator || f.Reason != "disk replaced" {
		t.Fatalf("operator's fence %+v %v", f, ok)
	}
	if err := g.UnfenceByOperator(); !errors.Is(err, ErrHold) {
		t.Fatalf("unfence before the hold: %v, want ErrHold", err)
	}
	time.Sleep(250 * time.Millisecond)
	if err := g.UnfenceByOperator(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Now(); err != nil {
		t.Errorf("after unfence: %v", err)
	}
	st := g.Status()
	if st.State != ClockTrusted || st.Fence != nil || len(st.Peers) != 2 {
		t.Errorf("status %+v", st)
	}
}

// The comparison widens by the round trip: a peer whose interval lies
// within the exchange agrees, one beyond it does not.
func TestPeerReadingAgrees(t *testing.T) {
	base := tt.Timestamp(1_800_000_000_000_000_000)
	iv := func(a, b time.Duration) tt.Interval { return tt.Interval{Earliest: base.Add(a), Latest: base.Add(b)} }
	r := PeerReading{Sent: iv(-time.Millisecond, time.Millisecond), Received: iv(49*time.Millisecond, 51*time.Millisecond)}
	for _, c := range []struct {
		theirs tt.Interval
		want   bool
	}{
		{iv(20*time.Millisecond, 22*time.Millisecond), true}, // inside the round trip
		{iv(50*time.Millisecond, 52*time.Millisecond), true},
		{iv(52*time.Millisecond, 54*time.Millisecond), false},
		{iv(-4*time.Millisecond, -2*time.Millisecond), false},
		{iv(-2*time.Millisecond, -time.Millisecond), true},
	} {
		r.Theirs = c.theirs
		if got := r.Agrees(); got != c.want {
			t.Errorf("theirs %v over [%v, %v]: agrees %v, want %v", c.theirs, r.Sent, r.Received, got, c.want)
		}
	}
}
