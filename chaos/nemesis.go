package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/meridiandb/meridian/internal/ntptest"
	"github.com/meridiandb/meridian/rpc/meridianpb"
)

// Nemesis families. Each run draws its faults from the families it is
// given, on a schedule from its seed.
const (
	// FamilyProcess: kill -9 a node and restart it; SIGSTOP and SIGCONT it.
	FamilyProcess = "process"
	// FamilyPartition: a region cut off from the others (minority |
	// majority), a one-way cut, or a bridge (two regions cut from each
	// other, a third seeing both).
	FamilyPartition = "partition"
	// FamilyLatency: 100–300 ms added between two regions, both ways.
	FamilyLatency = "latency"
	// FamilyClock: every NTP server of one node steps (±50 ms, ±150 ms,
	// ±250 ms, ±5 s), strobes (±200 ms every 100 ms) or falls silent: a
	// clock that lies, which the node must fence.
	FamilyClock = "clock"
	// FamilyClockSkew: every node's clock off by 50–90% of its
	// uncertainty, ahead or behind: clocks that disagree honestly, which
	// only commit wait covers.
	FamilyClockSkew = "clock-skew"
	// FamilyLeader: a kill, stop or clock step of whichever node leads a
	// group now.
	FamilyLeader = "leader"
	// FamilyLeaderKill: kill -9 of whichever node leads a group now,
	// restarted when healed (the fault the recovery target is about).
	FamilyLeaderKill = "leader-kill"
	// FamilyRestart: every node killed, then all restarted.
	FamilyRestart = "restart"
)

// Families lists every nemesis family.
var Families = []string{FamilyProcess, FamilyPartition, FamilyLatency, FamilyClock, FamilyClockSkew, FamilyLeader, FamilyLeaderKill, FamilyRestart}

// NemesisConfig configures the fault schedule.
type NemesisConfig struct {
	// Families to draw from (default: all). Several faults never overlap:
	// each is healed before the next.
	Families []string
	// Seed fixes the schedule (which faults, on which nodes, for how
	// long); the cluster's timing still varies between runs.
	Seed uint64
	// Hold is how long a fault lasts (default 3–7 s) and Gap the calm
	// between two (default 2–5 s), drawn uniformly.
	Hold, Gap [2]time.Duration
}

func (c *NemesisConfig) fill() error {
	if len(c.Families) == 0 {
		c.Families = Families
	}
	for _, f := range c.Families {
		if !slices.Contains(Families, f) {
			return fmt.Errorf("chaos: unknown nemesis family %q (have %s)", f, strings.Join(Families, ", "))
		}
	}
	if c.Hold[1] <= 0 {
		c.Hold = [2]time.Duration{3 * time.Second, 7 * time.Second}
	}
	if c.Gap[1] <= 0 {
		c.Gap = [2]time.Duration{2 * time.Second, 5 * time.Second}
	}
	return nil
}

// nemesis injects faults into a cluster on a schedule.
type nemesis struct {
	c   *Cluster
	cfg NemesisConfig
	rng *rand.Rand
	rec *recovery
	log func(string, ...any)

	mu     sync.Mutex
	faults []Fault
}

// action is one fault: what it does, and how it is undone.
type action struct {
	family, name string
	nodes        []int
	apply, heal  func(ctx context.Context) error
}

func (n *nemesis) between(r [2]time.Duration) time.Duration {
	if r[1] <= r[0] {
		return r[0]
	}
	return r[0] + time.Duration(n.rng.Int64N(int64(r[1]-r[0])))
}

// run injects faults until ctx ends or until stops being after now, each
// healed before the next, and everything healed at the end.
func (n *nemesis) run(ctx context.Context, until time.Time) {
	defer n.healAll(context.Background())
	for ctx.Err() == nil {
		if !sleepUntil(ctx, time.Now().Add(n.between(n.cfg.Gap))) {
			return
		}
		hold := n.between(n.cfg.Hold)
		if time.Now().Add(hold).After(until) {
			return
		}
		family := n.cfg.Families[n.rng.IntN(len(n.cfg.Families))]
		a := n.draw(ctx, family)
		leaders, _ := n.c.Leaders(ctx)
		f := Fault{Family: a.family, Name: a.name, Nodes: a.nodes, Start: time.Now().UnixNano()}
		var led []uint64
		for g, l := range leaders {
			if slices.Contains(a.nodes, l) {
				led = append(led, g)
			}
		}
		sort.Slice(led, func(i, j int) bool { return led[i] < led[j] })
		n.log("nemesis: %s (%s) on %v, leaders of %v, for %s", a.name, a.family, names(n.c, a.nodes), led, hold.Round(time.Millisecond))
		if err := a.apply(ctx); err != nil {
			n.log("nemesis: %s: %v", a.name, err)
		}
		f.Start = time.Now().UnixNano()
		idx := len(n.faults)
		if a.family != FamilyRestart {
			n.rec.fault(idx, time.Unix(0, f.Start), led)
		}
		n.mu.Lock()
		n.faults = append(n.faults, f)
		n.mu.Unlock()
		sleepUntil(ctx, time.Now().Add(hold))
		if err := a.heal(context.Background()); err != nil {
			n.log("nemesis: healing %s: %v", a.name, err)
		}
		end := time.Now()
		if a.family == FamilyRestart {
			// Nothing can recover before the nodes are back.
			n.rec.fault(idx, end, led)
		}
		n.mu.Lock()
		n.faults[idx].End = end.UnixNano()
		n.mu.Unlock()
	}
}

func names(c *Cluster, nodes []int) []string {
	var out []string
	for _, i := range nodes {
		out = append(out, c.Nodes[i].Name())
	}
	return out
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// healAll undoes every kind of fault: processes running and continued,
// no partition or delay, every clock telling the time.
func (n *nemesis) healAll(ctx context.Context) {
	for i := range n.c.Nodes {
		n.c.Cont(i)
		if !n.c.Up(i) {
			if err := n.c.Restart(i); err != nil {
				n.log("nemesis: restarting %s: %v", n.c.Nodes[i].Name(), err)
			}
		}
	}
	n.c.HealClocks()
	if err := n.c.Netem(ctx, &meridianpb.NetemRequest{Action: "heal"}); err != nil {
		n.log("nemesis: heal: %v", err)
	}
}

// draw picks a fault of the family.
func (n *nemesis) draw(ctx context.Context, family string) action {
	c := n.c
	node := n.rng.IntN(len(c.Nodes))
	switch family {
	case FamilyProcess:
		return n.processFault(node, n.rng.IntN(2) == 0, family, "")
	case FamilyLeader, FamilyLeaderKill:
		g := uint64(1 + n.rng.IntN(len(c.Regions())))
		leaders, _ := c.Leaders(ctx)
		what := fmt.Sprintf(" (leader of group %d)", g)
		if l, ok := leaders[g]; ok {
			node = l
		} else {
			what = fmt.Sprintf(" (group %d has no leader now)", g)
		}
		if family == FamilyLeaderKill {
			return n.processFault(node, true, family, what)
		}
		switch n.rng.IntN(3) {
		case 0:
			return n.processFault(node, true, family, what)
		case 1:
			return n.processFault(node, false, family, what)
		default:
			return n.clockFault(node, family, what, true)
		}
	case FamilyClock:
		return n.clockFault(node, family, "", false)
	case FamilyClockSkew:
		return n.skew(family)
	case FamilyPartition:
		return n.partition()
	case FamilyLatency:
		rs := c.Regions()
		a := n.rng.IntN(len(rs))
		b := (a + 1 + n.rng.IntN(len(rs)-1)) % len(rs)
		d := time.Duration(100+n.rng.IntN(201)) * time.Millisecond
		return action{family: family, name: fmt.Sprintf("delay %s ↔ %s by %s", rs[a], rs[b], d), nodes: n.inRegions(rs[a], rs[b]),
			apply: func(ctx context.Context) error {
				return c.Netem(ctx, &meridianpb.NetemRequest{Action: "slow", A: rs[a], B: rs[b], DelayNs: int64(d)})
			},
			heal: func(ctx context.Context) error { return c.Netem(ctx, &meridianpb.NetemRequest{Action: "heal"}) }}
	default: // FamilyRestart
		all := make([]int, len(c.Nodes))
		for i := range all {
			all[i] = i
		}
		return action{family: FamilyRestart, name: "kill every node, then restart them all", nodes: all,
			apply: func(context.Context) error {
				for i := range c.Nodes {
					c.Kill(i)
				}
				return nil
			},
			heal: func(context.Context) error {
				var first error
				for i := range c.Nodes {
					if err := c.Restart(i); err != nil && first == nil {
						first = err
					}
				}
				return first
			}}
	}
}

func (n *nemesis) processFault(node int, kill bool, family, what string) action {
	c := n.c
	name := c.Nodes[node].Name()
	if kill {
		return action{family: family, name: "kill -9 " + name + what, nodes: []int{node},
			apply: func(context.Context) error { c.Kill(node); return nil },
			heal:  func(context.Context) error { return c.Restart(node) }}
	}
	return action{family: family, name: "SIGSTOP " + name + what, nodes: []int{node},
		apply: func(context.Context) error { c.Stop(node); return nil },
		heal:  func(context.Context) error { c.Cont(node); return nil }}
}

var clockSteps = []time.Duration{50 * time.Millisecond, 150 * time.Millisecond, 250 * time.Millisecond, 5 * time.Second}

func (n *nemesis) clockFault(node int, family, what string, stepOnly bool) action {
	c := n.c
	name := c.Nodes[node].Name()
	heal := func(context.Context) error {
		c.SetNTP(node, func(b *ntptest.Behavior) { b.Offset, b.Drop = 0, false })
		return nil
	}
	kind := 0
	if !stepOnly {
		kind = n.rng.IntN(4) // step twice as often as strobe or loss
	}
	switch kind {
	case 2:
		stop := make(chan struct{})
		var once sync.Once
		return action{family: family, name: "clock strobe ±200ms every 100ms on " + name + what, nodes: []int{node},
			apply: func(context.Context) error {
				go func() {
					for k := 0; ; k++ {
						off := 200 * time.Millisecond
						if k%2 == 1 {
							off = -off
						}
						c.SetNTP(node, func(b *ntptest.Behavior) { b.Offset = off })
						select {
						case <-stop:
							return
						case <-time.After(100 * time.Millisecond):
						}
					}
				}()
				return nil
			},
			heal: func(ctx context.Context) error {
				once.Do(func() { close(stop) })
				time.Sleep(10 * time.Millisecond)
				return heal(ctx)
			}}
	case 3:
		return action{family: family, name: "every NTP server of " + name + " silent" + what, nodes: []int{node},
			apply: func(context.Context) error {
				c.SetNTP(node, func(b *ntptest.Behavior) { b.Drop = true })
				return nil
			}, heal: heal}
	default:
		d := clockSteps[n.rng.IntN(len(clockSteps))]
		if n.rng.IntN(2) == 0 {
			d = -d
		}
		return action{family: family, name: fmt.Sprintf("clock step %+v on %s%s", d, name, what), nodes: []int{node},
			apply: func(context.Context) error {
				c.SetNTP(node, func(b *ntptest.Behavior) { b.Offset = d })
				return nil
			}, heal: heal}
	}
}

// skew sets every node's clock off by 50–90% of the NTP servers' reported
// uncertainty (Cluster.Uncertainty), ahead or behind at random: each node's interval still holds
// the true time, yet two nodes' readings differ by up to 1.8 ε.
func (n *nemesis) skew(family string) action {
	c := n.c
	u := c.cfg.Uncertainty
	offs := make([]time.Duration, len(c.Nodes))
	var parts []string
	all := make([]int, len(c.Nodes))
	for i := range c.Nodes {
		all[i] = i
		offs[i] = u/2 + time.Duration(n.rng.Int64N(int64(u*2/5)+1))
		if n.rng.IntN(2) == 0 {
			offs[i] = -offs[i]
		}
		parts = append(parts, fmt.Sprintf("%s %+v", c.Nodes[i].Name(), offs[i].Round(10*time.Microsecond)))
	}
	return action{family: family, name: "clock skew within ε: " + strings.Join(parts, ", "), nodes: all,
		apply: func(context.Context) error {
			for i := range c.Nodes {
				c.SetNTP(i, func(b *ntptest.Behavior) { b.Offset = offs[i] })
			}
			return nil
		},
		heal: func(context.Context) error { c.HealClocks(); return nil }}
}

// inRegions returns the nodes in the given regions.
func (n *nemesis) inRegions(rs ...string) []int {
	var out []int
	for i, nd := range n.c.Nodes {
		if slices.Contains(rs, nd.Region) {
			out = append(out, i)
		}
	}
	return out
}

func (n *nemesis) partition() action {
	c := n.c
	rs := c.Regions()
	heal := func(ctx context.Context) error { return c.Netem(ctx, &meridianpb.NetemRequest{Action: "heal"}) }
	cut := func(pairs [][2]string, oneWay bool) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			var first error
			for _, p := range pairs {
				if err := c.Netem(ctx, &meridianpb.NetemRequest{Action: "partition", A: p[0], B: p[1], OneWay: oneWay}); err != nil && first == nil {
					first = err
				}
			}
			return first
		}
	}
	kind := n.rng.IntN(3)
	if len(rs) < 3 && kind == 2 {
		kind = 0
	}
	switch kind {
	case 1:
		a := n.rng.IntN(len(rs))
		b := (a + 1 + n.rng.IntN(len(rs)-1)) % len(rs)
		return action{family: FamilyPartition, name: fmt.Sprintf("one-way cut %s → %s", rs[a], rs[b]), nodes: n.inRegions(rs[a], rs[b]),
			apply: cut([][2]string{{rs[a], rs[b]}}, true), heal: heal}
	case 2:
		// A bridge: two regions cut from each other, every other region
		// seeing both.
		a := n.rng.IntN(len(rs))
		b := (a + 1 + n.rng.IntN(len(rs)-1)) % len(rs)
		return action{family: FamilyPartition, name: fmt.Sprintf("bridge: %s ✕ %s, the others see both", rs[a], rs[b]), nodes: n.inRegions(rs[a], rs[b]),
			apply: cut([][2]string{{rs[a], rs[b]}}, false), heal: heal}
	default:
		a := n.rng.IntN(len(rs))
		var pairs [][2]string
		for _, r := range rs {
			if r != rs[a] {
				pairs = append(pairs, [2]string{rs[a], r})
			}
		}
		return action{family: FamilyPartition, name: fmt.Sprintf("partition {%s} | the rest", rs[a]), nodes: n.inRegions(rs[a]),
			apply: cut(pairs, false), heal: heal}
	}
}

// Faults returns the faults injected so far.
func (n *nemesis) Faults() []Fault {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.faults)
}

// recovery measures, per fault, how long each group whose leader the
// fault took took no write: the time from the fault to the first write to
// the group acknowledged after it (writers keep writing every group).
type recovery struct {
	mu      sync.Mutex
	waiting map[uint64][]pendingFault // group → faults awaiting a write there
	gaps    map[int]map[uint64]time.Duration
}

type pendingFault struct {
	fault int
	at    time.Time
}

func newRecovery() *recovery {
	return &recovery{waiting: map[uint64][]pendingFault{}, gaps: map[int]map[uint64]time.Duration{}}
}

func (r *recovery) fault(idx int, at time.Time, groups []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gaps[idx] = map[uint64]time.Duration{}
	for _, g := range groups {
		r.waiting[g] = append(r.waiting[g], pendingFault{fault: idx, at: at})
	}
}

// acked records a write to group g, committed at timestamp ts,
// acknowledged at at. Only writes committed after a fault count for it: a
// reply already on its way when a leader was stopped says nothing about
// the group's recovery.
func (r *recovery) acked(g uint64, at time.Time, ts int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := r.waiting[g][:0]
	for _, p := range r.waiting[g] {
		if ts > p.at.UnixNano() {
			r.gaps[p.fault][g] = at.Sub(p.at)
			continue
		}
		kept = append(kept, p)
	}
	r.waiting[g] = kept
}

// fill writes the measured recovery into faults (and the groups still
// waiting as Stalled).
func (r *recovery) fill(faults []Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range faults {
		for g, d := range r.gaps[i] {
			if faults[i].Recovery == nil {
				faults[i].Recovery = map[uint64]int64{}
			}
			faults[i].Recovery[g] = int64(d)
		}
	}
	for g, ps := range r.waiting {
		for _, p := range ps {
			if p.fault < len(faults) {
				faults[p.fault].Stalled = append(faults[p.fault].Stalled, g)
			}
		}
	}
}
