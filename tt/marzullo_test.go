package tt

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestMarzullo(t *testing.T) {
	tests := []struct {
		name     string
		ivs      []Interval
		quorum   int // 0: Quorum(len(ivs))
		ok       bool
		want     Interval
		excluded []bool
		truth    []Timestamp // points the result must contain
	}{
		{
			name: "all agree",
			ivs:  []Interval{iv(0, 10), iv(2, 12), iv(1, 11)},
			ok:   true, want: iv(1, 11), excluded: []bool{false, false, false},
			truth: []Timestamp{5},
		},
		{
			name: "single source",
			ivs:  []Interval{iv(100, 200)},
			ok:   true, want: iv(100, 200), excluded: []bool{false},
			truth: []Timestamp{150},
		},
		{
			name: "one falseticker of three",
			ivs:  []Interval{iv(0, 10), iv(3, 13), iv(100, 110)},
			ok:   true, want: iv(3, 10), excluded: []bool{false, false, true},
			truth: []Timestamp{5},
		},
		{
			// The doc comment's case: the region covered three times is
			// [5,10] but true time may be 2; the hull of the twice-covered
			// points keeps it.
			name: "partial-overlap falseticker keeps truth",
			ivs:  []Interval{iv(0, 10), iv(0, 10), iv(5, 15)},
			ok:   true, want: iv(0, 10), excluded: []bool{false, false, false},
			truth: []Timestamp{2, 0, 10},
		},
		{
			name: "no majority: three disjoint",
			ivs:  []Interval{iv(0, 1), iv(5, 6), iv(10, 11)},
			ok:   false, excluded: []bool{true, true, true},
		},
		{
			name: "no majority: two of four agree",
			ivs:  []Interval{iv(0, 10), iv(0, 10), iv(50, 60), iv(100, 110)},
			ok:   false, excluded: []bool{true, true, true, true},
		},
		{
			name: "no majority: one of two",
			ivs:  []Interval{iv(0, 10), iv(20, 30)},
			ok:   false, excluded: []bool{true, true},
		},
		{
			name: "touching intervals share their end point",
			ivs:  []Interval{iv(0, 5), iv(5, 10)},
			ok:   true, want: iv(5, 5), excluded: []bool{false, false},
			truth: []Timestamp{5},
		},
		{
			name: "touching in a chain of three",
			ivs:  []Interval{iv(0, 5), iv(5, 10), iv(10, 15)},
			ok:   true, want: iv(5, 10), excluded: []bool{false, false, false},
		},
		{
			name: "one past touching is disjoint",
			ivs:  []Interval{iv(0, 5), iv(6, 10)},
			ok:   false, excluded: []bool{true, true},
		},
		{
			name: "five servers, two falsetickers",
			ivs:  []Interval{iv(0, 10), iv(-1000, -900), iv(2, 12), iv(500, 600), iv(4, 9)},
			ok:   true, want: iv(4, 9), excluded: []bool{false, true, false, true, false},
			truth: []Timestamp{5},
		},
		{
			name: "five servers, two falsetickers agreeing with each other",
			ivs:  []Interval{iv(500, 600), iv(0, 10), iv(550, 650), iv(1, 11), iv(2, 12)},
			ok:   true, want: iv(2, 10), excluded: []bool{true, false, true, false, false},
			truth: []Timestamp{5},
		},
		{
			name: "five servers, three falsetickers agreeing outvote the truth",
			ivs:  []Interval{iv(500, 600), iv(0, 10), iv(550, 650), iv(1, 11), iv(520, 580)},
			ok:   true, want: iv(550, 580), excluded: []bool{false, true, false, true, false},
		},
		{
			// Quorum 2: the twice-covered points are [0,2] and [8,10]; F lies
			// inside their hull [0,10] yet covers none of them.
			name:   "falseticker between two clusters",
			ivs:    []Interval{iv(0, 2), iv(0, 2), iv(4, 6), iv(8, 10), iv(8, 10)},
			quorum: 2,
			ok:     true, want: iv(0, 10), excluded: []bool{false, false, true, false, false},
		},
		{
			// The same at majority quorum with seven servers: two wide
			// sources W cover [0,20]; the clusters [0,4] and [16,20] are each
			// covered four times; F in between only three times.
			name:     "falseticker between two clusters, seven servers",
			ivs:      []Interval{iv(0, 4), iv(0, 4), iv(0, 20), iv(0, 20), iv(8, 12), iv(16, 20), iv(16, 20)},
			ok:       true,
			want:     iv(0, 20),
			truth:    []Timestamp{2, 18},
			excluded: []bool{false, false, false, false, true, false, false},
		},
		{
			name:   "empty",
			ivs:    nil,
			quorum: 1,
			ok:     false, excluded: []bool{},
		},
		{
			name: "identical points",
			ivs:  []Interval{iv(7, 7), iv(7, 7), iv(7, 7)},
			ok:   true, want: iv(7, 7), excluded: []bool{false, false, false},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.quorum
			if q == 0 {
				q = Quorum(len(tc.ivs))
			}
			excluded := make([]bool, len(tc.ivs))
			got, ok := Marzullo(tc.ivs, q, excluded)
			if ok != tc.ok {
				t.Fatalf("Marzullo(%v, %d) ok = %v, want %v (result %v)", tc.ivs, q, ok, tc.ok, got)
			}
			if ok && got != tc.want {
				t.Errorf("Marzullo(%v, %d) = %v, want %v", tc.ivs, q, got, tc.want)
			}
			if !slices.Equal(excluded, tc.excluded) {
				t.Errorf("excluded = %v, want %v", excluded, tc.excluded)
			}
			for _, p := range tc.truth {
				if !got.Contains(p) {
					t.Errorf("result %v does not contain %d", got, p)
				}
			}
			// The input is not modified.
			for i := range tc.ivs {
				if !tc.ivs[i].Valid() {
					t.Errorf("input %d modified: %v", i, tc.ivs[i])
				}
			}
		})
	}
}

func TestQuorum(t *testing.T) {
	for n, want := range []int{1, 1, 2, 2, 3, 3, 4, 4} {
		if got := Quorum(n); got != want {
			t.Errorf("Quorum(%d) = %d, want %d", n, got, want)
		}
	}
}

// TestMarzulloProperty checks on random inputs that when a quorum of the
// intervals contains a common true point, the result is ok, contains it, and
// excludes none of the truthful intervals; and that the result is ok exactly
// when some point is covered quorum times.
func TestMarzulloProperty(t *testing.T) {
	seed := uint64(rand.Int64())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	defer func() {
		if t.Failed() {
			t.Logf("seed %d", seed)
		}
	}()
	for round := 0; round < 2000; round++ {
		n := 1 + rng.IntN(7)
		q := Quorum(n)
		truth := Timestamp(rng.IntN(1000))
		nTrue := q + rng.IntN(n-q+1) // at least a quorum tells the truth
		ivs := make([]Interval, n)
		for i := range ivs {
			if i < nTrue {
				ivs[i] = iv(truth-Timestamp(rng.IntN(50)), truth+Timestamp(rng.IntN(50)))
			} else {
				c := Timestamp(rng.IntN(1200)) - 100
				ivs[i] = iv(c-Timestamp(rng.IntN(50)), c+Timestamp(rng.IntN(50)))
			}
		}
		rng.Shuffle(n, func(i, j int) { ivs[i], ivs[j] = ivs[j], ivs[i] })
		excluded := make([]bool, n)
		got, ok := Marzullo(ivs, q, excluded)
		if !ok || !got.Contains(truth) {
			t.Fatalf("round %d: Marzullo(%v, %d) = %v, %v; truth %d", round, ivs, q, got, ok, truth)
		}
		for i, x := range ivs {
			if x.Contains(truth) && excluded[i] {
				t.Fatalf("round %d: truthful %v excluded; ivs %v result %v", round, x, ivs, got)
			}
			// An included source holds a quorum-covered point; an
			// excluded one holds none (brute force over integer points).
			holds := false
			for p := x.Earliest; p <= x.Latest && !holds; p++ {
				holds = coverage(ivs, p) >= q
			}
			if holds == excluded[i] {
				t.Fatalf("round %d: %v excluded=%v but holds a quorum point=%v; ivs %v", round, x, excluded[i], holds, ivs)
			}
		}
		// The result is exactly the hull of the quorum-covered points.
		lo, hi := Timestamp(-200), Timestamp(1200)
		first, last := MaxTimestamp, Timestamp(-1<<62)
		for p := lo; p <= hi; p++ {
			if coverage(ivs, p) >= q {
				first = min(first, p)
				last = max(last, p)
			}
		}
		if got != iv(first, last) {
			t.Fatalf("round %d: Marzullo(%v) = %v, hull of quorum points [%d, %d]", round, ivs, got, first, last)
		}
	}
}

func coverage(ivs []Interval, p Timestamp) int {
	n := 0
	for _, x := range ivs {
		if x.Contains(p) {
			n++
		}
	}
	return n
}
