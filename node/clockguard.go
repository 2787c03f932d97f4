package node

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meridiandb/meridian/tt"
)

// ClockState is how a node's clock stands, as it tells its peers.
type ClockState uint8

const (
	// ClockTrusted: healthy, and not fenced.
	ClockTrusted ClockState = iota + 1
	// ClockUnconfirmed: fenced at start-up until a majority of the
	// cluster confirms its time; it has issued nothing yet.
	ClockUnconfirmed
	// ClockFenced: fenced for a step, a disagreement with its peers, or
	// by an operator. Its reading is what its sources say (the candidate).
	ClockFenced
	// ClockUnhealthy: no interval at all (not synchronized, ε too wide).
	ClockUnhealthy
)

func (s ClockState) String() string {
	switch s {
	case ClockTrusted:
		return "trusted"
	case ClockUnconfirmed:
		return "unconfirmed"
	case ClockFenced:
		return "fenced"
	case ClockUnhealthy:
		return "unhealthy"
	}
	return fmt.Sprintf("ClockState(%d)", uint8(s))
}

// PeerReading is one clock exchange with a peer: the peer's interval,
// bracketed by this node's own readings when it asked and when the answer
// came back.
type PeerReading struct {
	Peer NodeID
	// Sent and Received are this node's intervals (its candidate while
	// fenced) when it asked and when the answer arrived.
	Sent, Received tt.Interval
	// Theirs and State are what the peer answered.
	Theirs tt.Interval
	State  ClockState
	// At is when the answer arrived; RTT how long the exchange took.
	At  time.Time
	RTT time.Duration
	// Err is set when the exchange failed (the rest is then unset).
	Err error
}

// Agrees reports whether the peer's interval meets this node's over the
// exchange. True time at the peer's reading lay between the asking and the
// answer, so if both clocks are right the peer's interval meets
// [Sent.Earliest, Received.Latest]: this widens the check by the round
// trip, and a slow or paused peer can only make it looser, never fail it.
func (r PeerReading) Agrees() bool {
	return r.Theirs.Overlaps(tt.Interval{Earliest: r.Sent.Earliest, Latest: r.Received.Latest})
}

// counts reports whether the reading is evidence about this node's clock:
// a fresh answer from a peer whose own clock gives an interval and is not
// fenced (a fenced peer's time is in doubt: it counts neither way).
func (r PeerReading) counts(now time.Time, fresh time.Duration) bool {
	return r.Err == nil && now.Sub(r.At) <= fresh && (r.State == ClockTrusted || r.State == ClockUnconfirmed)
}

// ClockGuardConfig configures a ClockGuard.
type ClockGuardConfig struct {
	Self  NodeID
	Clock tt.Clock
	// Members returns the cluster's nodes, this one included.
	Members func() []NodeID
	// Hold returns how long a clock fenced for a step or a disagreement
	// stays fenced at least (see ClockGuard).
	Hold func() time.Duration
	// Fresh: readings older than this count for nothing. Default 3 s.
	Fresh time.Duration
	// Stable: a fenced clock's candidate must agree with a majority for
	// this long before the fence lifts. Default 2 s.
	Stable  time.Duration
	Logger  *slog.Logger
	Metrics *Metrics
}

// ClockGuard cross-checks the node's clock with its peers' (architecture
// invariant 2). The transport exchanges intervals with every peer and
// hands the readings to Observe; Evaluate then decides:
//
//   - A trusted clock whose interval meets those of fewer than a majority
//     of the cluster (counting itself), while some peer's interval does
//     not meet it, fences itself (tt.FencePeers). With no evidence against
//     it (peers unreachable, fenced or unhealthy) it stays as it is.
//   - A clock fenced at start-up (tt.FenceUnconfirmed, set by Start when
//     the node belongs to a cluster of several) is released as soon as a
//     majority confirms it: it has issued nothing.
//   - A clock fenced for a step or a disagreement returns only when its
//     candidate (what its sources say now) has met the intervals of a
//     majority of the cluster for Stable, and Hold has passed since it
//     fenced: every lease vote it gave, lease it held and timestamp it
//     assigned under the old time lay within a lease of being issued, and
//     the fenced node issues nothing, so once a lease has passed on its
//     monotonic clock nothing it issued binds any more, whatever its old
//     time was. Its sources agreeing with each other is never enough.
//   - An operator's fence (tt.FenceOperator) lifts only by an operator.
//
// A clock that does not implement tt.Fencer is only reported on.
type ClockGuard struct {
	cfg    ClockGuardConfig
	fencer tt.Fencer

	mu       sync.Mutex
	readings map[NodeID]PeerReading
	agreeAt  time.Time // fenced: since when the candidate has met a majority (zero: not now)
	seen     time.Time // Since of the last fence counted in the metrics
}

// NewClockGuard returns a guard over cfg.Clock.
func NewClockGuard(cfg ClockGuardConfig) *ClockGuard {
	if cfg.Fresh <= 0 {
		cfg.Fresh = 3 * time.Second
	}
	if cfg.Stable <= 0 {
		cfg.Stable = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Hold == nil {
		cfg.Hold = func() time.Duration { return 0 }
	}
	g := &ClockGuard{cfg: cfg, readings: map[NodeID]PeerReading{}}
	g.fencer, _ = cfg.Clock.(tt.Fencer)
	return g
}

// Start fences a clock that belongs to a cluster of several nodes until a
// majority of them confirms its time.
func (g *ClockGuard) Start() {
	if g.fencer != nil && len(g.cfg.Members()) > 1 {
		g.fencer.Fence(tt.FenceUnconfirmed, "its time is not confirmed yet by a majority of the cluster's nodes")
	}
}

// Reading returns what this node tells its peers: its interval (the
// candidate while fenced) and its state.
func (g *ClockGuard) Reading() (tt.Interval, ClockState) {
	iv, err := g.cfg.Clock.Now()
	if err == nil {
		return iv, ClockTrusted
	}
	if g.fencer == nil {
		return tt.Interval{}, ClockUnhealthy
	}
	f, fenced := g.fencer.Fenced()
	if !fenced {
		return tt.Interval{}, ClockUnhealthy
	}
	cand, err := g.fencer.Candidate()
	if err != nil {
		return tt.Interval{}, ClockUnhealthy
	}
	if f.Kind == tt.FenceUnconfirmed {
		return cand, ClockUnconfirmed
	}
	return cand, ClockFenced
}

// Observe records a reading of peer r.Peer (replacing its last one).
func (g *ClockGuard) Observe(r PeerReading) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.readings[r.Peer] = r
}

// tally counts, among the cluster's other nodes, the fresh readings that
// agree and disagree, and names the disagreeing peers.
func (g *ClockGuard) tally(now time.Time, members []NodeID) (agree, disagree int, against []string) {
	for _, id := range members {
		if id == g.cfg.Self {
			continue
		}
		r, ok := g.readings[id]
		if !ok || !r.counts(now, g.cfg.Fresh) {
			continue
		}
		if r.Agrees() {
			agree++
			continue
		}
		disagree++
		mine := tt.Interval{Earliest: r.Sent.Earliest, Latest: r.Received.Latest}
		against = append(against, fmt.Sprintf("node %d reads %s, ours over the %s round trip %s (apart by %s)",
			id, r.Theirs, r.RTT.Round(time.Microsecond), mine, gap(r.Theirs, mine)))
	}
	return agree, disagree, against
}

// gap is how far apart two disjoint intervals are (zero if they meet).
func gap(a, b tt.Interval) time.Duration {
	switch {
	case a.Latest < b.Earliest:
		return b.Earliest.Sub(a.Latest)
	case b.Latest < a.Earliest:
		return a.Earliest.Sub(b.Latest)
	}
	return 0
}

// Evaluate applies the rules of ClockGuard to the readings held at now.
func (g *ClockGuard) Evaluate(now time.Time) {
	if g.fencer == nil {
		return
	}
	members := g.cfg.Members()
	g.mu.Lock()
	agree, disagree, against := g.tally(now, members)
	quorum := len(members)/2 + 1
	f, fenced := g.fencer.Fenced()
	if fenced && !f.Since.Equal(g.seen) {
		g.seen = f.Since
		if g.cfg.Metrics != nil {
			g.cfg.Metrics.ClockFences.WithLabelValues(f.Kind.String()).Inc()
		}
	}
	confirmed := 1+agree >= quorum
	if !fenced || !confirmed {
		g.agreeAt = time.Time{}
	} else if g.agreeAt.IsZero() {
		g.agreeAt = now
	}
	agreeFor := now.Sub(g.agreeAt)
	g.mu.Unlock()
	if g.cfg.Metrics != nil {
		fencedNow := 0.0
		if fenced {
			fencedNow = 1
		}
		g.cfg.Metrics.ClockFenced.Set(fencedNow)
		g.cfg.Metrics.ClockPeersAgreeing.Set(float64(agree))
		g.cfg.Metrics.ClockPeersDisagreeing.Set(float64(disagree))
	}

	switch {
	case !fenced:
		if disagree > 0 && !confirmed {
			reason := fmt.Sprintf("its interval meets those of %d of the cluster's %d nodes (itself included), fewer than a majority: %s",
				1+agree, len(members), strings.Join(against, "; "))
			g.fencer.Fence(tt.FencePeers, reason)
		}
	case f.Kind == tt.FenceOperator:
	case f.Kind == tt.FenceUnconfirmed:
		if confirmed {
			g.unfence(f, fmt.Sprintf("confirmed by %d of the cluster's %d nodes", 1+agree, len(members)))
		}
	default:
		hold := g.cfg.Hold()
		if confirmed && agreeFor >= g.cfg.Stable && now.Sub(f.Since) >= hold {
			g.unfence(f, fmt.Sprintf("its sources' time met a majority of the cluster (%d of %d nodes) for %s and the %s hold has passed",
				1+agree, len(members), agreeFor.Round(time.Millisecond), hold))
		}
	}
}

func (g *ClockGuard) unfence(f tt.FenceInfo, why string) {
	if err := g.fencer.Unfence(); err != nil {
		g.cfg.Logger.Warn("clock: could not lift the fence", "kind", f.Kind.String(), "err", err)
		return
	}
	g.mu.Lock()
	g.agreeAt = time.Time{}
	g.mu.Unlock()
	if f.Kind == tt.FenceUnconfirmed {
		g.cfg.Logger.Info("clock confirmed by the cluster", "why", why)
		return
	}
	g.cfg.Logger.Warn("clock fence lifted", "kind", f.Kind.String(), "fenced_for", time.Since(f.Since).Round(time.Millisecond), "why", why)
}

// PeerTrusted reports whether node id's clock was trusted at its last
// fresh reading. With no reading of any peer (no transport probes, or a
// single node) it reports true: there is nothing to go by.
func (g *ClockGuard) PeerTrusted(id NodeID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.readings) == 0 {
		return true
	}
	r, ok := g.readings[id]
	return ok && r.Err == nil && time.Since(r.At) <= g.cfg.Fresh && r.State == ClockTrusted
}

// FenceByOperator fences the clock for an operator's reason.
func (g *ClockGuard) FenceByOperator(reason string) error {
	if g.fencer == nil {
		return fmt.Errorf("node: the clock (%T) cannot be fenced", g.cfg.Clock)
	}
	if reason == "" {
		reason = "fenced by an operator"
	}
	g.fencer.Fence(tt.FenceOperator, reason)
	return nil
}

// ErrHold is returned by UnfenceByOperator while the hold has not passed.
var ErrHold = fmt.Errorf("node: leases issued under the clock's old time may still bind")

// UnfenceByOperator lifts any fence once the hold has passed since it was
// put in place: the operator vouches for the time the clock's sources
// give now (it is not checked against the peers).
func (g *ClockGuard) UnfenceByOperator() error {
	if g.fencer == nil {
		return nil
	}
	f, fenced := g.fencer.Fenced()
	if !fenced {
		return nil
	}
	if left := g.cfg.Hold() - time.Since(f.Since); left > 0 && f.Kind != tt.FenceUnconfirmed {
		return fmt.Errorf("%w: wait %s more", ErrHold, left.Round(time.Millisecond))
	}
	if err := g.fencer.Unfence(); err != nil {
		return err
	}
	g.cfg.Logger.Warn("clock fence lifted by an operator", "kind", f.Kind.String(), "fenced_for", time.Since(f.Since).Round(time.Millisecond))
	return nil
}

// ClockGuardStatus is what the guard knows, for status pages.
type ClockGuardStatus struct {
	State    ClockState
	Fence    *tt.FenceInfo
	HoldLeft time.Duration // fenced: how long the hold still runs
	Peers    []PeerReading // the last reading of every peer, by node
}

// Status returns the clock's state, its fence and the peers' readings.
func (g *ClockGuard) Status() ClockGuardStatus {
	_, state := g.Reading()
	st := ClockGuardStatus{State: state}
	if g.fencer != nil {
		if f, ok := g.fencer.Fenced(); ok {
			st.Fence = &f
			st.HoldLeft = max(0, g.cfg.Hold()-time.Since(f.Since))
		}
	}
	g.mu.Lock()
	for _, r := range g.readings {
		st.Peers = append(st.Peers, r)
	}
	g.mu.Unlock()
	slices.SortFunc(st.Peers, func(a, b PeerReading) int { return int(a.Peer) - int(b.Peer) })
	return st
}
