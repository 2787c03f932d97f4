package tt

import "sort"

// Marzullo intersects source intervals the conservative way: it returns the
// smallest interval that contains every point covered by at least quorum of
// the given intervals, and for each source whether it was excluded (its
// interval holds no such point: a falseticker). ok is false when no point is
// covered by quorum intervals (no majority agrees).
//
// Why the hull of the quorum-covered points and not the classic
// highest-coverage region: true time lies in every truthful source's
// interval, so when at least quorum sources are truthful every point they all
// cover, true time included, is covered at least quorum times. The
// highest-coverage region can exclude true time when a falseticker overlaps
// the truthful sources only partly (A=[0,10], B=[0,10], F=[5,15]: the region
// covered three times is [5,10] while true time may be 2); the hull of the
// twice-covered points, [0,10], cannot.
//
// The result is written into excluded, which must have len(ivs) entries.
// Marzullo allocates a small scratch slice; callers on hot paths call it once
// per poll, never per Now.
func Marzullo(ivs []Interval, quorum int, excluded []bool) (Interval, bool) {
	type edge struct {
		at    Timestamp
		start bool
	}
	edges := make([]edge, 0, 2*len(ivs))
	for _, iv := range ivs {
		edges = append(edges, edge{iv.Earliest, true}, edge{iv.Latest, false})
	}
	// Starts sort before ends at the same point so that intervals touching at
	// one point count as overlapping (intervals are closed).
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].start && !edges[j].start
	})
	var res Interval
	found := false
	cover := 0
	for _, e := range edges {
		if e.start {
			cover++
			if cover >= quorum && !found {
				res.Earliest = e.at
				found = true
			}
		} else {
			if cover >= quorum {
				// The coverage is >= quorum up to and including this point.
				res.Latest = e.at
			}
			cover--
		}
	}
	if quorum <= 0 || !found {
		for i := range excluded {
			excluded[i] = true
		}
		return Interval{}, false
	}
	for i, iv := range ivs {
		excluded[i] = !iv.Overlaps(res) || !coversQuorumPoint(ivs, iv, quorum)
	}
	return res, true
}

// coversQuorumPoint reports whether iv contains a point covered by at least
// quorum of ivs. Intervals inside the hull may still miss every
// quorum-covered point (a falseticker lying between two agreeing clusters),
// so the overlap test alone is not enough. It is quadratic, fine for the
// handful of servers a node polls.
func coversQuorumPoint(ivs []Interval, iv Interval, quorum int) bool {
	// The coverage function is piecewise constant and changes only at
	// interval ends; its maximum over iv is attained at iv.Earliest or at the
	// start of some interval inside iv.
	check := func(p Timestamp) bool {
		n := 0
		for _, o := range ivs {
			if o.Contains(p) {
				n++
			}
		}
		return n >= quorum
	}
	if check(iv.Earliest) {
		return true
	}
	for _, o := range ivs {
		if iv.Contains(o.Earliest) && check(o.Earliest) {
			return true
		}
	}
	return false
}

// Quorum returns the majority of n: floor(n/2)+1.
func Quorum(n int) int { return n/2 + 1 }
