package sim

import (
	"flag"
	"fmt"
	"reflect"
	"testing"
	"time"
)

var (
	paxosSeeds = flag.Int("sim.seeds", 200, "seeds TestPaxosSeeds runs (-short: a fifth)")
	paxosSeed  = flag.Int64("sim.seed", -1, "run only this seed")
)

// TestPaxosSeeds runs many seeds with every fault and fails with the replay
// command of each violation.
func TestPaxosSeeds(t *testing.T) {
	n := *paxosSeeds
	if testing.Short() {
		n /= 5
	}
	first := uint64(1)
	if *paxosSeed >= 0 {
		first, n = uint64(*paxosSeed), 1
	}
	faults := []string{"all"}
	var virtual, wall time.Duration
	for i := 0; i < n; i++ {
		seed := first + uint64(i)
		res, err := RunPaxos(PaxosOptions{Seed: seed, Faults: faults, Duration: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		virtual += res.Virtual
		wall += res.Wall
		for _, v := range res.Violations {
			t.Errorf("seed %d: %s\n  replay: %s  (or: go test ./sim -run TestPaxosSeeds -sim.seed %d)",
				seed, v, ReplayCommand("paxos", seed, faults, "")+" --duration 30s", seed)
		}
	}
	t.Logf("%d seeds, %.0f virtual seconds per wall second", n, virtual.Seconds()/wall.Seconds())
}

// TestPaxosNegativeControl proves the checkers can fail: acceptors that do
// not wait out the previous leader's lease must produce overlapping leases.
func TestPaxosNegativeControl(t *testing.T) {
	found := 0
	for seed := uint64(1); seed <= 5; seed++ {
		res, err := RunPaxos(PaxosOptions{Seed: seed, Faults: []string{"partition"}, Duration: 20 * time.Second, Bug: "lease-overlap"})
		if err != nil {
			t.Fatal(err)
		}
		found += len(res.Violations)
	}
	if found == 0 {
		t.Fatal("--bug lease-overlap produced no violations: the lease checker cannot fail")
	}
}

// TestPaxosDeterministic: one seed, one outcome.
func TestPaxosDeterministic(t *testing.T) {
	run := func() PaxosResult {
		res, err := RunPaxos(PaxosOptions{Seed: 42, Faults: []string{"all"}, Duration: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		res.Wall = 0
		return res
	}
	a, b := run(), run()
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different runs:\n%+v\n%+v", a, b)
	}
}

func TestPaxosLearnersAndFiveVoters(t *testing.T) {
	for _, o := range []PaxosOptions{{Voters: 5, Learners: 1}, {Voters: 3, Learners: 2}, {Voters: 1}} {
		o.Seed, o.Faults, o.Duration = 7, []string{"all"}, 20*time.Second
		if o.Voters == 1 {
			o.Faults = []string{"net", "clock"}
		}
		res, err := RunPaxos(o)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Violations) > 0 || res.Ops == 0 {
			t.Errorf("%d voters %d learners: ops %d violations %v", o.Voters, o.Learners, res.Ops, res.Violations)
		}
	}
}

// BenchmarkPaxosSim measures virtual seconds per wall second for 3 groups
// of 3 replicas under the client load.
func BenchmarkPaxosSim(b *testing.B) {
	var virtual time.Duration
	start := time.Now()
	for i := 0; i < b.N; i++ {
		res, err := RunPaxos(PaxosOptions{Seed: uint64(i + 1), Duration: 30 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		virtual += res.Virtual
	}
	b.ReportMetric(virtual.Seconds()/time.Since(start).Seconds(), "virtual-s/wall-s")
}

func ExampleReplayCommand() {
	fmt.Println(ReplayCommand("paxos", 8812, []string{"crash", "partition"}, ""))
	// Output: meridian sim paxos --seed 8812 --faults crash,partition
}
