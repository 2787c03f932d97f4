package chaos

// This file is the list-append checker, after Elle (Kingsbury & Alvaro,
// "Elle: Inferring Isolation Anomalies from Experimental Observations",
// VLDB 2020).
//
// The append workload's transactions append unique values to lists and read
// whole lists. Because every read returns the full list, the order in which
// the appends took effect can be read off the longest list (the key's
// version order), and from it the checker infers which transaction must
// have come before which:
//
//   - ww (write-write): the appender of a list's element i precedes the
//     appender of element i+1;
//   - wr (write-read): the appender of the last element a read saw
//     precedes the reader;
//   - rw (read-write, an anti-dependency): a reader that saw the list up
//     to element i precedes the appender of element i+1, which it did not
//     see;
//   - rt (real time): an OK transaction that completed before another OK
//     transaction was invoked precedes it.
//
// A serializable history's ww, wr and rw edges form no cycle, and a
// strictly serializable history's edges, rt included, form none either.
// The checker reports every cycle it finds (one per strongly connected
// component of the graph), named as Elle names them, along with the
// anomalies a single read already shows (reads of values nobody wrote, of
// aborted or intermediate values, duplicated elements, lists whose orders
// disagree, and transactions that did not see their own appends).

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// The kinds of dependency edges, as bits so that one edge between two
// transactions can carry several.
const (
	elleWW uint8 = 1 << iota
	elleWR
	elleRW
	elleRT
)

// elleKindName names an edge kind in messages.
var elleKindName = map[uint8]string{elleWW: "ww", elleWR: "wr", elleRW: "rw", elleRT: "rt"}

// ellePreference is the order in which a cycle's edges are labeled when an
// edge carries several kinds: the label that makes the weakest anomaly
// wins (ww: G0, then wr: G1c, then rt, which only adds "-realtime", then
// rw, which makes G-single or G2).
var ellePreference = []uint8{elleWW, elleWR, elleRT, elleRW}

// elleMaxPerKind bounds how many anomalies of one kind are listed; the
// rest are counted in the Note.
const elleMaxPerKind = 100

// elleSearchBudget bounds the edges visited while looking for a short cycle
// in one strongly connected component at one stage of the search; past it
// the checker reports the shortest cycle found so far (or moves on to the
// next, broader stage), so that a history whose graph is one huge
// component still gets checked quickly.
const elleSearchBudget = 2_000_000

// elleWriter is what the checker knows about one appended element.
type elleWriter struct {
	txn int32 // the appending transaction (a node of the graph)
	// next is the value the same transaction appended to the same key
	// right after this one, if hasNext: a read that ends with this element
	// saw the transaction's intermediate state.
	next    int64
	hasNext bool
}

// elleRead is one read of a list by an OK transaction.
type elleRead struct {
	txn  int32
	list []int64
	// ext: an external read, one not preceded by an append to the same key
	// in the same transaction; only these give wr and rw edges (the others
	// are checked for internal consistency).
	ext bool
	// prefix: the list is a prefix of the key's version order.
	prefix bool
}

// elleKey is one key's appends and reads.
type elleKey struct {
	name    string
	writers map[int64]elleWriter // appends by OK and Info transactions
	failed  map[int64]int        // appends by Fail transactions: value -> Op.Index
	reads   []elleRead           // in history order
	// order is the key's version order: the longest list read (cut before
	// its first duplicated element, if any, for inferring edges).
	order []int64
}

// elleEdge is an edge of the dependency graph, carrying one or more kinds;
// key[i] is the key that justifies the ww, wr and rw kinds.
type elleEdge struct {
	to    int32
	kinds uint8
	key   [3]int32
}

// elleRawEdge is one inferred dependency, before edges between the same
// transactions are merged.
type elleRawEdge struct {
	from, to int32
	key      int32
	kind     uint8
}

// elleChecker holds one run of CheckAppend.
type elleChecker struct {
	txns  []*Op // graph nodes: OK and Info transactions
	keys  []*elleKey
	keyID map[string]int32

	raw   []elleRawEdge // edges as found, merged into out by finishEdges
	out   [][]elleEdge  // out[v]: the edges from v
	edges int

	anomalies []Anomaly
	perKind   map[string]int
	notes     []string

	// Scratch space for the graph searches, sized to the number of nodes
	// and reset after each use so that searching many small components
	// costs no more than their sizes.
	index, low []int32
	onStack    []bool
	mark       []int32 // mark[v] == stamp: v is in the set being searched
	stamp      int32
	parent     []int32
}

// CheckAppend checks the list-append transactions of a history (Workload
// "append", F "txn") for strict serializability, in the manner of Elle.
//
// Each transaction's micro-operations are "append" (append Value to the
// list at Key; values are unique per key) and "r" (read the list at Key,
// oldest element first). OK transactions happened and their reads are
// known; Fail transactions did not happen; Info transactions may or may not
// have happened: their reads are ignored, but their appends count wherever
// a read saw them.
//
// The anomalies it reports (Anomaly.Kind):
//
//   - "incompatible-order": two reads of a key disagree on the order of its
//     elements (neither is a prefix of the other), so no single order of
//     appends explains both;
//   - "duplicate-elements": a read returned a list holding one value twice,
//     though each value was appended once;
//   - "garbage-read": a read returned a value that no transaction appended;
//   - "G1a" (aborted read): a read returned a value appended only by a
//     transaction that failed;
//   - "G1b" (intermediate read): a read returned a list ending with a value
//     whose transaction appended another value to the same key after it,
//     so the reader saw that transaction's intermediate state;
//   - "internal": a transaction's read disagrees with its own earlier
//     reads and appends of the same key;
//   - cycles in the dependency graph: "G0" (write cycle: ww edges only),
//     "G1c" (circular information flow: ww and wr edges), "G-single"
//     (read skew, lost update: exactly one rw edge), "G2" (write skew:
//     two or more rw edges); with the suffix "-realtime" when the cycle
//     needs an rt edge, i.e. the history would be serializable in that
//     respect but is not strictly serializable. Each strongly connected
//     component of the graph gives one anomaly: the shortest cycle found
//     of the weakest kind, its Ops the cycle's transactions in order.
//
// Valid is true when there is no anomaly. Stats counts the transactions
// checked ("txns", of which "ok", "info" and "fail"), the keys, the reads
// (by OK transactions), the appends and the edges of the dependency graph.
// Note tells of anomalies counted but not listed (at most 100 of each kind
// are), of values appended more than once to a key, and of ops ignored.
func CheckAppend(ops []Op) Verdict {
	c := &elleChecker{keyID: map[string]int32{}, perKind: map[string]int{}}
	stats := map[string]int{"txns": 0, "ok": 0, "info": 0, "fail": 0, "keys": 0, "reads": 0, "appends": 0}
	c.load(ops, stats)
	stats["keys"] = len(c.keys)
	if stats["txns"] == 0 {
		return Verdict{Checker: "append", Valid: true, Stats: stats, Note: "no append transactions"}
	}
	for _, k := range c.keys {
		c.checkKey(k)
	}
	c.buildEdges()
	stats["edges"] = c.edges
	c.findCycles()

	v := Verdict{Checker: "append", Valid: len(c.anomalies) == 0, Anomalies: c.anomalies, Stats: stats}
	var kinds []string
	for kind, n := range c.perKind {
		if n > elleMaxPerKind {
			kinds = append(kinds, kind)
		}
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		c.notes = append(c.notes, fmt.Sprintf("%d more %s anomalies not listed", c.perKind[kind]-elleMaxPerKind, kind))
	}
	v.Note = strings.Join(c.notes, "; ")
	return v
}

// report records an anomaly, listing at most elleMaxPerKind of each kind.
func (c *elleChecker) report(kind string, ops []int, format string, args ...any) {
	c.perKind[kind]++
	if c.perKind[kind] > elleMaxPerKind {
		return
	}
	c.anomalies = append(c.anomalies, Anomaly{Kind: kind, Message: fmt.Sprintf(format, args...), Ops: ops})
}

func (c *elleChecker) key(name string) int32 {
	if id, ok := c.keyID[name]; ok {
		return id
	}
	id := int32(len(c.keys))
	c.keyID[name] = id
	c.keys = append(c.keys, &elleKey{name: name, writers: map[int64]elleWriter{}})
	return id
}

// elleTxnKey is a transaction's view of one key while its micro-operations
// are replayed: what it last read and what it appended since.
type elleTxnKey struct {
	key      int32
	seen     []int64
	hasRead  bool
	appended []int64
	last     int64 // the transaction's latest append to the key
	hasLast  bool
}

// load indexes the appends and reads of the append transactions and checks
// each OK transaction's internal consistency: a read of a key the
// transaction already read must equal that read followed by the
// transaction's appends since; a read of a key it appended to but had not
// read must end with its appends.
func (c *elleChecker) load(ops []Op, stats map[string]int) {
	var state []elleTxnKey
	dupAppends, unknown := 0, 0
	for i := range ops {
		op := &ops[i]
		if op.Workload != "append" || op.F != "txn" {
			continue
		}
		switch op.Type {
		case OK, Info:
		case Fail:
			stats["txns"]++
			stats["fail"]++
			for _, m := range op.Mops {
				if m.F != "append" {
					continue
				}
				stats["appends"]++
				k := c.keys[c.key(m.Key)]
				if k.failed == nil {
					k.failed = map[int64]int{}
				}
				if _, ok := k.failed[m.Value]; !ok {
					k.failed[m.Value] = op.Index
				}
			}
			continue
		default:
			unknown++
			continue
		}
		stats["txns"]++
		if op.Type == OK {
			stats["ok"]++
		} else {
			stats["info"]++
		}
		node := int32(len(c.txns))
		c.txns = append(c.txns, op)
		state = state[:0]
		internal := false
		for _, m := range op.Mops {
			if m.F != "append" && m.F != "r" {
				unknown++
				continue
			}
			kid := c.key(m.Key)
			k := c.keys[kid]
			var s *elleTxnKey
			for j := range state {
				if state[j].key == kid {
					s = &state[j]
					break
				}
			}
			if s == nil {
				state = append(state, elleTxnKey{key: kid})
				s = &state[len(state)-1]
			}
			if m.F == "append" {
				stats["appends"]++
				if s.hasLast {
					w := k.writers[s.last]
					if w.txn == node {
						w.next, w.hasNext = m.Value, true
						k.writers[s.last] = w
					}
				}
				if _, dup := k.writers[m.Value]; dup {
					dupAppends++
				} else {
					k.writers[m.Value] = elleWriter{txn: node}
				}
				s.appended = append(s.appended, m.Value)
				s.last, s.hasLast = m.Value, true
				continue
			}
			if op.Type != OK {
				continue // an Info transaction's reads are unknown
			}
			stats["reads"]++
			k.reads = append(k.reads, elleRead{txn: node, list: m.List, ext: !s.hasLast})
			if !internal {
				if s.hasRead && !elleIsConcat(m.List, s.seen, s.appended) {
					internal = true
					c.report("internal", []int{op.Index},
						"T%d read %s = %s, but its earlier read %s and its appends %s since imply %s",
						op.Index, k.name, elleFmt(m.List), elleFmt(s.seen), elleFmt(s.appended),
						elleFmt(append(append([]int64(nil), s.seen...), s.appended...)))
				} else if !s.hasRead && len(s.appended) > 0 && !elleHasSuffix(m.List, s.appended) {
					internal = true
					c.report("internal", []int{op.Index},
						"T%d read %s = %s, which does not end with its own earlier appends %s",
						op.Index, k.name, elleFmt(m.List), elleFmt(s.appended))
				}
			}
			s.seen, s.hasRead = m.List, true
			s.appended = s.appended[:0:0]
		}
	}
	if dupAppends > 0 {
		c.notes = append(c.notes, fmt.Sprintf("%d appends repeated a value already appended to the same key; the first appender is assumed", dupAppends))
	}
	if unknown > 0 {
		c.notes = append(c.notes, fmt.Sprintf("%d ops or micro-ops of unknown type or f ignored", unknown))
	}
}

// checkKey infers one key's version order and checks its reads against it:
//
//   - the longest read is the version order, and every read must be a
//     prefix of it ("incompatible-order" otherwise: since lists only grow
//     by appends, any two states of a list are prefixes of one another);
//   - the version order must not hold a value twice ("duplicate-elements");
//   - every element read must have been appended by some OK or Info
//     transaction ("G1a" if only a Fail transaction appended it,
//     "garbage-read" if no one did);
//   - a read by another transaction must not end with an element its
//     appender followed with another append to the key ("G1b").
//
// Each element is reported once, with the first read (in history order)
// that shows it.
func (c *elleChecker) checkKey(k *elleKey) {
	longest := -1
	for i, r := range k.reads {
		if longest < 0 || len(r.list) > len(k.reads[longest].list) {
			longest = i
		}
	}
	if longest < 0 {
		return
	}
	order := k.reads[longest].list
	by := c.txns[k.reads[longest].txn].Index

	// Reads that are not prefixes of the order.
	bad, nbad := -1, 0
	for i := range k.reads {
		r := &k.reads[i]
		r.prefix = elleIsPrefix(r.list, order)
		if !r.prefix {
			if bad < 0 {
				bad = i
			}
			nbad++
		}
	}
	if bad >= 0 {
		r := k.reads[bad]
		j := 0
		for j < len(r.list) && r.list[j] == order[j] {
			j++
		}
		more := ""
		if nbad > 1 {
			more = fmt.Sprintf(" (%d reads of %s disagree with T%d's)", nbad, k.name, by)
		}
		rid := c.txns[r.txn].Index
		c.report("incompatible-order", elleOps(rid, by),
			"T%d read %s = %s and T%d read %s = %s: at position %d, T%d saw %d and T%d saw %d, so no order of appends explains both%s",
			rid, k.name, elleFmt(r.list), by, k.name, elleFmt(order), j, rid, r.list[j], by, order[j], more)
	}

	// Duplicates: dupEnd is the first position of the order whose value
	// appeared before it.
	dupEnd := -1
	seen := make(map[int64]int, len(order))
	for j, v := range order {
		if _, ok := seen[v]; ok {
			dupEnd = j
			break
		}
		seen[v] = j
	}
	for _, r := range k.reads {
		var first, second int
		switch {
		case r.prefix && dupEnd >= 0 && len(r.list) > dupEnd:
			first, second = seen[order[dupEnd]], dupEnd
		case !r.prefix:
			var ok bool
			if first, second, ok = elleDuplicate(r.list); !ok {
				continue
			}
		default:
			continue
		}
		rid := c.txns[r.txn].Index
		c.report("duplicate-elements", []int{rid},
			"T%d read %s = %s, which holds %d twice (positions %d and %d)",
			rid, k.name, elleFmt(r.list), r.list[first], first, second)
		break
	}
	k.order = order
	if dupEnd >= 0 {
		k.order = order[:dupEnd]
	}

	// Elements nobody (or only a failed transaction) appended, each with
	// its first reader. unknownPos lists the order's positions of such
	// elements; prefix reads are scanned in history order, so the first to
	// reach a position is its first reader.
	var unknownPos []int
	for j, v := range order {
		if _, ok := k.writers[v]; !ok {
			unknownPos = append(unknownPos, j)
		}
	}
	reported := map[int64]bool{}
	unknown := func(v int64, r elleRead) {
		if reported[v] {
			return
		}
		reported[v] = true
		rid := c.txns[r.txn].Index
		if f, ok := k.failed[v]; ok {
			c.report("G1a", elleOps(f, rid),
				"T%d read %s = %s, which holds %d, appended only by T%d, which failed", rid, k.name, elleFmt(r.list), v, f)
			return
		}
		c.report("garbage-read", []int{rid},
			"T%d read %s = %s, which holds %d, which no transaction appended", rid, k.name, elleFmt(r.list), v)
	}
	next := 0
	for _, r := range k.reads {
		if r.prefix {
			for ; next < len(unknownPos) && unknownPos[next] < len(r.list); next++ {
				unknown(order[unknownPos[next]], r)
			}
			continue
		}
		for _, v := range r.list {
			if _, ok := k.writers[v]; !ok {
				unknown(v, r)
			}
		}
	}

	// Intermediate reads.
	g1b := map[int64]bool{}
	for _, r := range k.reads {
		if len(r.list) == 0 {
			continue
		}
		v := r.list[len(r.list)-1]
		w, ok := k.writers[v]
		if !ok || w.txn == r.txn || !w.hasNext || g1b[v] {
			continue
		}
		g1b[v] = true
		rid, wid := c.txns[r.txn].Index, c.txns[w.txn].Index
		c.report("G1b", elleOps(wid, rid),
			"T%d read %s = %s, ending with %d, an intermediate state of T%d, which appended %d and then %d to %s",
			rid, k.name, elleFmt(r.list), v, wid, v, w.next, k.name)
	}
}

// addEdge records an edge of the given kind (self-edges are dropped).
func (c *elleChecker) addEdge(from, to int32, kind uint8, key int32) {
	if from != to {
		c.raw = append(c.raw, elleRawEdge{from: from, to: to, key: key, kind: kind})
	}
}

// finishEdges merges the recorded edges into out: one edge per pair of
// transactions, carrying all their kinds (for each kind, the key of the
// first edge of that kind recorded). It buckets the edges by source, in
// linear time.
func (c *elleChecker) finishEdges() {
	n := len(c.txns)
	start := make([]int32, n+1)
	for _, r := range c.raw {
		start[r.from+1]++
	}
	for v := range n {
		start[v+1] += start[v]
	}
	bucket := make([]elleRawEdge, len(c.raw))
	fill := slices.Clone(start[:n])
	for _, r := range c.raw {
		bucket[fill[r.from]] = r
		fill[r.from]++
	}
	c.raw = nil
	slab := make([]elleEdge, 0, len(bucket))
	seen := make([]int32, n) // seen[to] == v+1: out[v] has an edge to "to", at pos[to]
	pos := make([]int32, n)
	for v := range n {
		first := len(slab)
		for _, r := range bucket[start[v]:start[v+1]] {
			if seen[r.to] != int32(v)+1 {
				seen[r.to] = int32(v) + 1
				pos[r.to] = int32(len(slab))
				slab = append(slab, elleEdge{to: r.to})
			}
			e := &slab[pos[r.to]]
			if e.kinds&r.kind != 0 {
				continue
			}
			e.kinds |= r.kind
			switch r.kind {
			case elleWW:
				e.key[0] = r.key
			case elleWR:
				e.key[1] = r.key
			case elleRW:
				e.key[2] = r.key
			}
		}
		c.out[v] = slab[first:len(slab):len(slab)]
	}
	c.edges = len(slab)
}

// findEdge returns the edge from -> to.
func (c *elleChecker) findEdge(from, to int32) elleEdge {
	for _, e := range c.out[from] {
		if e.to == to {
			return e
		}
	}
	panic("elle: no such edge")
}

// buildEdges builds the dependency graph over the OK transactions and the
// Info transactions whose appends were read:
//
//   - ww: along each key's version order, the appender of each element
//     precedes the appender of the next element with a known appender (an
//     element nobody appended, or only a failed transaction, is skipped:
//     the ones around it were still appended in that order);
//   - wr: the appender of the last element of an external read (with a
//     known appender) precedes the reader;
//   - rw: an external read that is a prefix of the version order precedes
//     the appender of the first element after it (with a known appender);
//   - rt: among OK transactions only (an Info transaction's end is
//     unknown), one that completed before another was invoked precedes
//     it. Rather than all such pairs, it links each transaction to those
//     that completed before its invocation and that no transaction
//     invoked after their completion has completed in the meantime (Elle's
//     construction): a transitive reduction of about the concurrency times
//     the number of transactions edges, with the same paths.
func (c *elleChecker) buildEdges() {
	c.out = make([][]elleEdge, len(c.txns))
	for kid, k := range c.keys {
		kid := int32(kid)
		prev := int32(-1)
		for _, v := range k.order {
			w, ok := k.writers[v]
			if !ok {
				continue
			}
			if prev >= 0 {
				c.addEdge(prev, w.txn, elleWW, kid)
			}
			prev = w.txn
		}
		for _, r := range k.reads {
			if !r.ext {
				continue
			}
			for j := len(r.list) - 1; j >= 0; j-- {
				if w, ok := k.writers[r.list[j]]; ok {
					c.addEdge(w.txn, r.txn, elleWR, kid)
					break
				}
			}
			if !r.prefix {
				continue
			}
			for j := len(r.list); j < len(k.order); j++ {
				if w, ok := k.writers[k.order[j]]; ok {
					c.addEdge(r.txn, w.txn, elleRW, kid)
					break
				}
			}
		}
	}

	// Real time: events sorted by time, invocations before completions at
	// equal times (completing at t does not precede an invocation at t).
	type event struct {
		t        int64
		complete bool
		txn      int32
	}
	var events []event
	for i, op := range c.txns {
		if op.Type != OK {
			continue
		}
		end := max(op.Complete, op.Invoke)
		events = append(events, event{op.Invoke, false, int32(i)}, event{end, true, int32(i)})
	}
	sort.Slice(events, func(i, j int) bool {
		if events[i].t != events[j].t {
			return events[i].t < events[j].t
		}
		return !events[i].complete && events[j].complete
	})
	// frontier holds completed transactions that no transaction invoked
	// after their completion has completed yet (with stale entries, whose
	// inFrontier is false, dropped lazily); preds[t] is the frontier when t
	// was invoked.
	var frontier []int32
	inFrontier := make([]bool, len(c.txns))
	preds := make([][]int32, len(c.txns))
	for _, ev := range events {
		if !ev.complete {
			live := frontier[:0]
			for _, p := range frontier {
				if inFrontier[p] {
					live = append(live, p)
				}
			}
			frontier = live
			preds[ev.txn] = append([]int32(nil), frontier...)
			for _, p := range frontier {
				c.addEdge(p, ev.txn, elleRT, -1)
			}
			continue
		}
		// Whoever is invoked from now on follows ev.txn, and through it
		// everything that preceded ev.txn.
		for _, p := range preds[ev.txn] {
			inFrontier[p] = false
		}
		preds[ev.txn] = nil
		frontier = append(frontier, ev.txn)
		inFrontier[ev.txn] = true
	}
	c.finishEdges()
}

// findCycles reports the cycles of the dependency graph: first those of
// the ww, wr and rw edges (each strongly connected component of that
// graph gives one anomaly), then, in the components of the whole graph
// that contain none of those, the cycles that need rt edges.
func (c *elleChecker) findCycles() {
	n := len(c.txns)
	c.index = make([]int32, n)
	c.low = make([]int32, n)
	c.onStack = make([]bool, n)
	c.mark = make([]int32, n)
	c.parent = make([]int32, n)
	for i := range c.parent {
		c.parent[i] = -1
	}
	all := make([]int32, n)
	for i := range all {
		all[i] = int32(i)
	}
	c.stamp = 1
	for i := range c.mark {
		c.mark[i] = c.stamp
	}
	cyclic := make([]bool, n)
	for _, scc := range c.sccs(all, elleWW|elleWR|elleRW) {
		for _, v := range scc {
			cyclic[v] = true
		}
		c.explain(scc, 0)
	}
	c.stamp++
	for i := range c.mark {
		c.mark[i] = c.stamp
	}
	for _, scc := range c.sccs(all, elleWW|elleWR|elleRW|elleRT) {
		done := false
		for _, v := range scc {
			done = done || cyclic[v]
		}
		if !done {
			c.explain(scc, elleRT)
		}
	}
}

// sccs returns the strongly connected components of more than one node of
// the graph restricted to nodes (all of which have mark == stamp, as must
// the nodes reached) and to edges with a kind in mask (Tarjan's algorithm,
// iteratively).
func (c *elleChecker) sccs(nodes []int32, mask uint8) [][]int32 {
	type frame struct {
		v  int32
		ei int
	}
	var (
		out     [][]int32
		stack   []int32
		calls   []frame
		counter int32
	)
	visit := func(v int32) {
		counter++
		c.index[v], c.low[v] = counter, counter
		stack = append(stack, v)
		c.onStack[v] = true
		calls = append(calls, frame{v: v})
	}
	for _, s := range nodes {
		if c.index[s] != 0 {
			continue
		}
		visit(s)
		for len(calls) > 0 {
			f := &calls[len(calls)-1]
			v := f.v
			if f.ei < len(c.out[v]) {
				e := c.out[v][f.ei]
				f.ei++
				if e.kinds&mask == 0 || c.mark[e.to] != c.stamp {
					continue
				}
				if c.index[e.to] == 0 {
					visit(e.to)
				} else if c.onStack[e.to] {
					c.low[v] = min(c.low[v], c.index[e.to])
				}
				continue
			}
			calls = calls[:len(calls)-1]
			if len(calls) > 0 {
				p := calls[len(calls)-1].v
				c.low[p] = min(c.low[p], c.low[v])
			}
			if c.low[v] == c.index[v] {
				i := len(stack) - 1
				for stack[i] != v {
					i--
				}
				comp := stack[i:]
				for _, w := range comp {
					c.onStack[w] = false
				}
				if len(comp) > 1 {
					out = append(out, append([]int32(nil), comp...))
				}
				stack = stack[:i]
			}
		}
	}
	for _, v := range nodes {
		c.index[v], c.low[v] = 0, 0
	}
	return out
}

// bfs returns the shortest path from src to dst over edges with a kind in
// mask between nodes marked with the current stamp, as the nodes from src
// up to (not including) dst; nil if there is none or the budget ran out.
// With src == dst, it is the shortest cycle through src.
func (c *elleChecker) bfs(src, dst int32, mask uint8, budget *int) []int32 {
	queue := []int32{src}
	c.parent[src] = src
	defer func() {
		for _, v := range queue {
			c.parent[v] = -1
		}
	}()
	for qi := 0; qi < len(queue) && *budget > 0; qi++ {
		v := queue[qi]
		for _, e := range c.out[v] {
			*budget--
			if e.kinds&mask == 0 || c.mark[e.to] != c.stamp {
				continue
			}
			if e.to == dst {
				var path []int32
				for u := v; ; u = c.parent[u] {
					path = append(path, u)
					if u == src {
						break
					}
				}
				for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
					path[i], path[j] = path[j], path[i]
				}
				return path
			}
			if c.parent[e.to] != -1 {
				continue
			}
			c.parent[e.to] = v
			queue = append(queue, e.to)
		}
	}
	return nil
}

// shortCycle looks for a short cycle among the nodes of scc over edges
// with a kind in mask: it takes the smallest strongly connected component
// of that subgraph and the shortest cycle through any of its first few
// nodes.
func (c *elleChecker) shortCycle(scc []int32, mask uint8) []int32 {
	subs := c.sccs(scc, mask)
	if len(subs) == 0 {
		return nil
	}
	sub := subs[0]
	for _, s := range subs[1:] {
		if len(s) < len(sub) {
			sub = s
		}
	}
	budget := elleSearchBudget
	var best []int32
	for i, s := range sub {
		if i == 32 || budget <= 0 || len(best) == 2 {
			break
		}
		if cyc := c.bfs(s, s, mask, &budget); cyc != nil && (best == nil || len(cyc) < len(best)) {
			best = cyc
		}
	}
	return best
}

// oneRW looks for a short cycle among the nodes of scc made of one rw edge
// and edges with a kind in base: for rw edges a -> b, the shortest path
// from b back to a over base edges. The cycle returned starts with b and
// ends with a.
func (c *elleChecker) oneRW(scc []int32, base uint8) []int32 {
	budget := elleSearchBudget
	var best []int32
	for _, a := range scc {
		for _, e := range c.out[a] {
			if e.kinds&elleRW == 0 || c.mark[e.to] != c.stamp {
				continue
			}
			path := c.bfs(e.to, a, base, &budget)
			if path == nil {
				if budget <= 0 {
					return best
				}
				continue
			}
			path = append(path, a)
			if best == nil || len(path) < len(best) {
				best = path
			}
			if len(best) == 2 || budget <= 0 {
				return best
			}
		}
	}
	return best
}

// explain finds a cycle in one strongly connected component and reports
// it. It searches for the weakest anomaly first: a cycle of ww edges
// (G0), then of ww and wr edges (G1c), then with exactly one rw edge
// (G-single), then any cycle (G2); extra (0 or elleRT) is allowed at every
// stage.
func (c *elleChecker) explain(scc []int32, extra uint8) {
	c.stamp++
	for _, v := range scc {
		c.mark[v] = c.stamp
	}
	var cycle []int32
	var masks []uint8
	uniform := func(mask uint8) {
		masks = make([]uint8, len(cycle))
		for i := range masks {
			masks[i] = mask
		}
	}
	if cycle = c.shortCycle(scc, elleWW|extra); cycle != nil {
		uniform(elleWW | extra)
	} else if cycle = c.shortCycle(scc, elleWW|elleWR|extra); cycle != nil {
		uniform(elleWW | elleWR | extra)
	} else if cycle = c.oneRW(scc, elleWW|elleWR|extra); cycle != nil {
		uniform(elleWW | elleWR | extra)
		masks[len(masks)-1] = elleRW
	} else if cycle = c.shortCycle(scc, elleWW|elleWR|elleRW|extra); cycle != nil {
		uniform(elleWW | elleWR | elleRW | extra)
	} else {
		// Unreachable: a strongly connected component has a cycle.
		c.notes = append(c.notes, fmt.Sprintf("no cycle found in a component of %d transactions", len(scc)))
		return
	}
	c.reportCycle(cycle, masks)
}

// reportCycle names a cycle (step i goes from cycle[i] to cycle[i+1],
// the last step back to cycle[0], labeled with a kind in masks[i]) and
// reports it.
func (c *elleChecker) reportCycle(cycle []int32, masks []uint8) {
	var b strings.Builder
	ops := make([]int, len(cycle))
	rw, wr, rt := 0, false, false
	for i, from := range cycle {
		to := cycle[(i+1)%len(cycle)]
		e := c.findEdge(from, to)
		var kind uint8
		for _, k := range ellePreference {
			if e.kinds&masks[i]&k != 0 {
				kind = k
				break
			}
		}
		ops[i] = c.txns[from].Index
		fmt.Fprintf(&b, "T%d -%s", ops[i], elleKindName[kind])
		switch kind {
		case elleWW:
			fmt.Fprintf(&b, "(%s)", c.keys[e.key[0]].name)
		case elleWR:
			fmt.Fprintf(&b, "(%s)", c.keys[e.key[1]].name)
			wr = true
		case elleRW:
			fmt.Fprintf(&b, "(%s)", c.keys[e.key[2]].name)
			rw++
		case elleRT:
			rt = true
		}
		b.WriteString("-> ")
	}
	fmt.Fprintf(&b, "T%d", ops[0])
	name := "G0"
	switch {
	case rw == 1:
		name = "G-single"
	case rw > 1:
		name = "G2"
	case wr:
		name = "G1c"
	}
	if rt {
		name += "-realtime"
	}
	c.report(name, ops, "%s", b.String())
}

// elleOps lists distinct op indexes.
func elleOps(a, b int) []int {
	if a == b {
		return []int{a}
	}
	return []int{a, b}
}

// elleIsPrefix reports whether a is a prefix of b.
func elleIsPrefix(a, b []int64) bool {
	if len(a) > len(b) {
		return false
	}
	for i, v := range a {
		if b[i] != v {
			return false
		}
	}
	return true
}

// elleIsConcat reports whether l equals a followed by b.
func elleIsConcat(l, a, b []int64) bool {
	return len(l) == len(a)+len(b) && elleIsPrefix(a, l) && elleIsPrefix(b, l[len(a):])
}

// elleHasSuffix reports whether l ends with s.
func elleHasSuffix(l, s []int64) bool {
	return len(l) >= len(s) && elleIsPrefix(s, l[len(l)-len(s):])
}

// elleDuplicate returns the positions of the first value of l found twice.
func elleDuplicate(l []int64) (first, second int, ok bool) {
	seen := make(map[int64]int, len(l))
	for j, v := range l {
		if i, dup := seen[v]; dup {
			return i, j, true
		}
		seen[v] = j
	}
	return 0, 0, false
}

// elleFmt prints a list, eliding the middle of long ones.
func elleFmt(l []int64) string {
	const head, tail = 4, 6
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range l {
		if len(l) > head+tail+1 && i == head {
			fmt.Fprintf(&b, " ...%d more...", len(l)-head-tail)
		}
		if len(l) > head+tail+1 && i >= head && i < len(l)-tail {
			continue
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, v)
	}
	b.WriteByte(']')
	return b.String()
}
