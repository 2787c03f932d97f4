package chaos

import (
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"testing"
)

// elleHist builds list-append histories by hand.
type elleHist struct{ ops []Op }

// txn adds a transaction and returns its index.
func (h *elleHist) txn(typ string, invoke, complete int64, mops ...Mop) int {
	i := len(h.ops)
	h.ops = append(h.ops, Op{Index: i, Process: i, Workload: "append", F: "txn", Type: typ,
		Invoke: invoke, Complete: complete, Node: -1, Mops: mops})
	return i
}

func elleAppend(k string, v int64) Mop { return Mop{F: "append", Key: k, Value: v} }

func elleReadOf(k string, vs ...int64) Mop { return Mop{F: "r", Key: k, List: vs} }

// elleKinds lists a verdict's anomaly kinds, sorted.
func elleKinds(v Verdict) []string {
	var ks []string
	for _, a := range v.Anomalies {
		ks = append(ks, a.Kind)
	}
	sort.Strings(ks)
	return ks
}

// elleExpect checks that v reports exactly the given kinds (sorted) and
// returns the anomalies.
func elleExpect(t *testing.T, v Verdict, want ...string) []Anomaly {
	t.Helper()
	sort.Strings(want)
	if got := elleKinds(v); !slices.Equal(got, want) {
		t.Fatalf("kinds = %v, want %v\nverdict: %+v", got, want, v)
	}
	if v.Valid != (len(want) == 0) {
		t.Fatalf("valid = %v with anomalies %v", v.Valid, want)
	}
	if v.Checker != "append" {
		t.Fatalf("checker = %q", v.Checker)
	}
	for _, a := range v.Anomalies {
		t.Logf("%s: %s (ops %v)", a.Kind, a.Message, a.Ops)
	}
	return v.Anomalies
}

// elleSameOps checks that an anomaly names exactly the given ops (in any
// order).
func elleSameOps(t *testing.T, a Anomaly, want ...int) {
	t.Helper()
	got := slices.Clone(a.Ops)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s ops = %v, want %v", a.Kind, a.Ops, want)
	}
}

func TestElleAppendEmpty(t *testing.T) {
	v := CheckAppend([]Op{{Workload: "bank", F: "transfer", Type: OK}})
	elleExpect(t, v)
	if v.Stats["txns"] != 0 {
		t.Fatalf("stats = %v", v.Stats)
	}
}

// Two concurrent writers appended to x and y in opposite orders.
func TestElleAppendG0(t *testing.T) {
	var h elleHist
	t1 := h.txn(OK, 0, 100, elleAppend("x", 1), elleAppend("y", 1))
	t2 := h.txn(OK, 10, 90, elleAppend("x", 2), elleAppend("y", 2))
	h.txn(OK, 200, 300, elleReadOf("x", 1, 2), elleReadOf("y", 2, 1))
	as := elleExpect(t, CheckAppend(h.ops), "G0")
	elleSameOps(t, as[0], t1, t2)
	if !strings.Contains(as[0].Message, "-ww(x)->") || !strings.Contains(as[0].Message, "-ww(y)->") {
		t.Fatalf("message %q", as[0].Message)
	}
}

// A read saw an append whose transaction failed.
func TestElleAppendG1a(t *testing.T) {
	var h elleHist
	t1 := h.txn(Fail, 0, 10, elleAppend("x", 1))
	t2 := h.txn(OK, 20, 30, elleReadOf("x", 1))
	as := elleExpect(t, CheckAppend(h.ops), "G1a")
	elleSameOps(t, as[0], t1, t2)
}

// A read saw the first of a transaction's two appends to x.
func TestElleAppendG1b(t *testing.T) {
	var h elleHist
	t1 := h.txn(OK, 0, 100, elleAppend("x", 1), elleAppend("x", 2))
	t2 := h.txn(OK, 10, 90, elleReadOf("x", 1))
	as := elleExpect(t, CheckAppend(h.ops), "G1b")
	elleSameOps(t, as[0], t1, t2)
}

// Each of two transactions saw the other's append.
func TestElleAppendG1c(t *testing.T) {
	var h elleHist
	t1 := h.txn(OK, 0, 100, elleAppend("x", 1), elleReadOf("y", 1))
	t2 := h.txn(OK, 10, 90, elleAppend("y", 1), elleReadOf("x", 1))
	as := elleExpect(t, CheckAppend(h.ops), "G1c")
	elleSameOps(t, as[0], t1, t2)
	if !strings.Contains(as[0].Message, "-wr(x)->") || !strings.Contains(as[0].Message, "-wr(y)->") {
		t.Fatalf("message %q", as[0].Message)
	}
}

// Read skew: T2 saw T1's append to y but not its append to x.
func TestElleAppendGSingle(t *testing.T) {
	var h elleHist
	t1 := h.txn(OK, 0, 100, elleAppend("x", 1), elleAppend("y", 1))
	t2 := h.txn(OK, 10, 90, elleReadOf("x"), elleReadOf("y", 1))
	h.txn(OK, 200, 300, elleReadOf("x", 1), elleReadOf("y", 1))
	as := elleExpect(t, CheckAppend(h.ops), "G-single")
	elleSameOps(t, as[0], t1, t2)
	if !strings.Contains(as[0].Message, "-rw(x)->") || !strings.Contains(as[0].Message, "-wr(y)->") {
		t.Fatalf("message %q", as[0].Message)
	}
}

// Lost update: both read x empty and appended to it.
func TestElleAppendGSingleLostUpdate(t *testing.T) {
	var h elleHist
	t1 := h.txn(OK, 0, 100, elleReadOf("x"), elleAppend("x", 1))
	t2 := h.txn(OK, 10, 90, elleReadOf("x"), elleAppend("x", 2))
	h.txn(OK, 200, 300, elleReadOf("x", 1, 2))
	as := elleExpect(t, CheckAppend(h.ops), "G-single")
	elleSameOps(t, as[0], t1, t2)
}

// Write skew: each read the key the other appended to as empty.
func TestElleAppendG2(t *testing.T) {
	var h elleHist
	t1 := h.txn(OK, 0, 100, elleReadOf("x"), elleAppend("y", 1))
	t2 := h.txn(OK, 10, 90, elleReadOf("y"), elleAppend("x", 1))
	h.txn(OK, 200, 300, elleReadOf("x", 1), elleReadOf("y", 1))
	as := elleExpect(t, CheckAppend(h.ops), "G2")
	elleSameOps(t, as[0], t1, t2)
	if strings.Count(as[0].Message, "-rw(") != 2 {
		t.Fatalf("message %q", as[0].Message)
	}
}

// Each strongly connected component gives one anomaly, its shortest
// cycle of the weakest kind.
func TestElleAppendOnePerComponent(t *testing.T) {
	var h elleHist
	// Write skew on a, b.
	h.txn(OK, 0, 100, elleReadOf("a"), elleAppend("b", 1))
	h.txn(OK, 10, 90, elleReadOf("b"), elleAppend("a", 1))
	// Write skew on c, d.
	h.txn(OK, 0, 100, elleReadOf("c"), elleAppend("d", 1))
	h.txn(OK, 10, 90, elleReadOf("d"), elleAppend("c", 1))
	// Circular information flow on e, f, g, with a longer rw detour in
	// the same component.
	e1 := h.txn(OK, 0, 100, elleAppend("e", 1), elleReadOf("g", 1), elleReadOf("h"))
	e2 := h.txn(OK, 0, 100, elleAppend("f", 1), elleReadOf("e", 1))
	e3 := h.txn(OK, 0, 100, elleAppend("g", 1), elleReadOf("f", 1), elleAppend("h", 1))
	h.txn(OK, 200, 300, elleReadOf("a", 1), elleReadOf("b", 1), elleReadOf("c", 1), elleReadOf("d", 1), elleReadOf("h", 1))
	as := elleExpect(t, CheckAppend(h.ops), "G2", "G2", "G1c")
	for _, a := range as {
		if a.Kind == "G1c" {
			elleSameOps(t, a, e1, e2, e3)
		}
	}
}

// A stale read: T2 began after T1's append completed, yet did not see it.
// Serializable (T2 before T1), not strictly serializable.
func TestElleAppendRealtime(t *testing.T) {
	var h elleHist
	t1 := h.txn(OK, 0, 10, elleAppend("x", 1))
	t2 := h.txn(OK, 20, 30, elleReadOf("x"))
	h.txn(OK, 40, 50, elleReadOf("x", 1))
	as := elleExpect(t, CheckAppend(h.ops), "G-single-realtime")
	elleSameOps(t, as[0], t1, t2)
	if !strings.Contains(as[0].Message, "-rt->") || !strings.Contains(as[0].Message, "-rw(x)->") {
		t.Fatalf("message %q", as[0].Message)
	}

	// The same with overlapping windows is fine.
	h.ops[t2].Invoke = 5
	elleExpect(t, CheckAppend(h.ops))
}

// A realtime cycle of ww edges: T2 was invoked after T1 completed, but its
// append comes first.
func TestElleAppendG0Realtime(t *testing.T) {
	var h elleHist
	t1 := h.txn(OK, 0, 10, elleAppend("x", 1))
	t2 := h.txn(OK, 20, 30, elleAppend("x", 2))
	h.txn(OK, 40, 50, elleReadOf("x", 2, 1))
	as := elleExpect(t, CheckAppend(h.ops), "G0-realtime")
	elleSameOps(t, as[0], t1, t2)
}

func TestElleAppendIncompatibleOrder(t *testing.T) {
	var h elleHist
	h.txn(OK, 0, 100, elleAppend("x", 1))
	h.txn(OK, 10, 90, elleAppend("x", 2))
	t3 := h.txn(OK, 200, 300, elleReadOf("x", 1, 2))
	t4 := h.txn(OK, 210, 290, elleReadOf("x", 2, 1))
	as := elleExpect(t, CheckAppend(h.ops), "incompatible-order")
	elleSameOps(t, as[0], t3, t4)

	// A read that skips an element is as incompatible.
	var h2 elleHist
	h2.txn(OK, 0, 10, elleAppend("x", 1), elleAppend("x", 2))
	h2.txn(OK, 20, 30, elleAppend("x", 3))
	h2.txn(OK, 40, 50, elleReadOf("x", 1, 2, 3))
	h2.txn(OK, 60, 70, elleReadOf("x", 1, 3))
	elleExpect(t, CheckAppend(h2.ops), "incompatible-order")
}

func TestElleAppendDuplicateElements(t *testing.T) {
	var h elleHist
	h.txn(OK, 0, 10, elleAppend("x", 1))
	t2 := h.txn(OK, 20, 30, elleReadOf("x", 1, 1))
	h.txn(OK, 40, 50, elleReadOf("x", 1, 1))
	as := elleExpect(t, CheckAppend(h.ops), "duplicate-elements")
	elleSameOps(t, as[0], t2)
}

func TestElleAppendGarbageRead(t *testing.T) {
	var h elleHist
	h.txn(OK, 0, 10, elleAppend("x", 1))
	t2 := h.txn(OK, 20, 30, elleReadOf("x", 1, 99))
	h.txn(OK, 40, 50, elleReadOf("x", 1, 99))
	as := elleExpect(t, CheckAppend(h.ops), "garbage-read")
	elleSameOps(t, as[0], t2)
	if !strings.Contains(as[0].Message, "99") {
		t.Fatalf("message %q", as[0].Message)
	}
}

func TestElleAppendInternal(t *testing.T) {
	var h elleHist
	t1 := h.txn(OK, 0, 10, elleAppend("x", 1), elleReadOf("x"))
	as := elleExpect(t, CheckAppend(h.ops), "internal")
	elleSameOps(t, as[0], t1)

	// A second read must be the first plus the appends since.
	var h2 elleHist
	h2.txn(OK, 0, 10, elleAppend("x", 1))
	h2.txn(OK, 20, 30, elleReadOf("x", 1), elleAppend("x", 2), elleReadOf("x", 1, 2), elleAppend("x", 3), elleReadOf("x", 1, 2))
	elleExpect(t, CheckAppend(h2.ops), "internal")

	// Reading one's own appends is fine.
	var h3 elleHist
	h3.txn(OK, 0, 10, elleAppend("x", 1))
	h3.txn(OK, 20, 30, elleAppend("x", 2), elleReadOf("x", 1, 2), elleAppend("x", 3), elleReadOf("x", 1, 2, 3))
	elleExpect(t, CheckAppend(h3.ops))
}

// Transactions one after another, each seeing everything before it.
func TestElleAppendValidSerial(t *testing.T) {
	var h elleHist
	h.txn(OK, 0, 10, elleReadOf("x"), elleAppend("x", 1))
	h.txn(OK, 20, 30, elleAppend("x", 2), elleAppend("y", 1))
	h.txn(OK, 40, 50, elleReadOf("x", 1, 2), elleReadOf("y", 1), elleAppend("y", 2))
	h.txn(Fail, 60, 70, elleAppend("x", 3))
	h.txn(OK, 80, 90, elleAppend("x", 4), elleReadOf("x", 1, 2, 4), elleReadOf("y", 1, 2))
	v := CheckAppend(h.ops)
	elleExpect(t, v)
	want := map[string]int{"txns": 5, "ok": 4, "fail": 1, "info": 0, "keys": 2, "reads": 5, "appends": 6}
	for k, n := range want {
		if v.Stats[k] != n {
			t.Fatalf("stats[%s] = %d, want %d (%v)", k, v.Stats[k], n, v.Stats)
		}
	}
}

// Overlapping transactions whose results fit the serial order
// T2 T1 T4 T3, which real time allows.
func TestElleAppendValidConcurrent(t *testing.T) {
	var h elleHist
	h.txn(OK, 0, 100, elleAppend("x", 1), elleReadOf("y", 1))     // T1
	h.txn(OK, 10, 50, elleReadOf("x"), elleAppend("y", 1))        // T2
	h.txn(OK, 60, 120, elleReadOf("x", 1, 2), elleReadOf("y", 1)) // T3
	h.txn(OK, 55, 110, elleAppend("x", 2), elleReadOf("x", 1, 2)) // T4
	h.txn(OK, 130, 140, elleReadOf("x", 1, 2))
	elleExpect(t, CheckAppend(h.ops))
}

// Info transactions whose appends were seen take part in the graph; their
// reads are ignored.
func TestElleAppendInfoObserved(t *testing.T) {
	var h elleHist
	t1 := h.txn(Info, 0, 100, elleAppend("x", 1), elleAppend("y", 1), elleReadOf("z", 77))
	t2 := h.txn(OK, 10, 90, elleReadOf("x"), elleReadOf("y", 1))
	h.txn(OK, 200, 300, elleReadOf("x", 1), elleReadOf("y", 1))
	as := elleExpect(t, CheckAppend(h.ops), "G-single")
	elleSameOps(t, as[0], t1, t2)

	// Consistently observed, an Info append is fine, and an Info
	// transaction's real-time window gives no edge.
	var h2 elleHist
	h2.txn(Info, 0, 5, elleAppend("x", 1), elleReadOf("x", 42))
	h2.txn(OK, 10, 20, elleReadOf("x"))
	h2.txn(OK, 30, 40, elleReadOf("x", 1))
	elleExpect(t, CheckAppend(h2.ops))
}

// Info transactions whose appends nobody saw cause no anomaly.
func TestElleAppendInfoUnobserved(t *testing.T) {
	var h elleHist
	h.txn(Info, 0, 5, elleAppend("x", 9), elleAppend("z", 1))
	h.txn(OK, 10, 20, elleReadOf("x"), elleAppend("x", 1))
	h.txn(Info, 25, 26, elleReadOf("x", 5, 6))
	h.txn(OK, 30, 40, elleReadOf("x", 1), elleReadOf("z"))
	h.txn(Fail, 45, 46, elleAppend("x", 2))
	h.txn(OK, 50, 60, elleReadOf("x", 1), elleReadOf("z"))
	v := CheckAppend(h.ops)
	elleExpect(t, v)
	if v.Stats["info"] != 2 || v.Stats["fail"] != 1 || v.Stats["reads"] != 5 {
		t.Fatalf("stats = %v", v.Stats)
	}
}

// The real-time edges are a transitive reduction of "completed before
// invoked": every such pair is connected by a path, and every edge is
// such a pair.
func TestElleAppendRealtimeReduction(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 50; round++ {
		n := 1 + rng.Intn(120)
		var h elleHist
		for i := 0; i < n; i++ {
			inv := rng.Int63n(200) // small range: many ties
			typ := OK
			if rng.Intn(10) == 0 {
				typ = Info
			}
			h.txn(typ, inv, inv+rng.Int63n(30))
		}
		c := &elleChecker{keyID: map[string]int32{}, perKind: map[string]int{}}
		c.load(h.ops, map[string]int{})
		c.buildEdges()
		reach := make([][]bool, n)
		for s := range n {
			reach[s] = make([]bool, n)
			queue := []int32{int32(s)}
			for len(queue) > 0 {
				v := queue[0]
				queue = queue[1:]
				for _, e := range c.out[v] {
					if e.kinds != elleRT {
						t.Fatalf("edge kinds %b", e.kinds)
					}
					a, b := h.ops[v], h.ops[e.to]
					if a.Type != OK || b.Type != OK || a.Complete >= b.Invoke {
						t.Fatalf("rt edge %+v -> %+v", a, b)
					}
					if !reach[s][e.to] {
						reach[s][e.to] = true
						queue = append(queue, e.to)
					}
				}
			}
		}
		for i, a := range h.ops {
			for j, b := range h.ops {
				want := a.Type == OK && b.Type == OK && a.Complete < b.Invoke
				if reach[i][j] != want {
					t.Fatalf("round %d: reach %d -> %d = %v, want %v (%+v, %+v)", round, i, j, reach[i][j], want, a, b)
				}
			}
		}
	}
}

// elleGen generates a strictly serializable list-append history: n
// transactions run one at a time against an in-memory map of lists, the
// i-th at time 1000+10i, each given a real-time window around that point
// of up to spread on either side, so that windows overlap at random. Some
// transactions fail (nothing happens) and some are Info (they happen or
// not; their reads are unknown). Each key takes maxWrites appends, then
// a fresh key replaces it.
func elleGen(rng *rand.Rand, n, keys, maxWrites int, spread int64) []Op {
	lists := map[string][]int64{}
	writes := map[string]int{}
	active := make([]string, keys)
	fresh := 0
	for i := range active {
		active[i] = fmt.Sprintf("k%d", fresh)
		fresh++
	}
	ops := make([]Op, 0, n)
	for i := 0; i < n; i++ {
		at := int64(1000 + 10*i)
		typ := OK
		switch rng.Intn(20) {
		case 0:
			typ = Fail
		case 1:
			typ = Info
		}
		happens := typ == OK || (typ == Info && rng.Intn(2) == 0)
		local := map[string][]int64{}
		view := func(k string) []int64 {
			if l, ok := local[k]; ok {
				return l
			}
			return lists[k]
		}
		var mops []Mop
		for range 1 + rng.Intn(4) {
			slot := rng.Intn(keys)
			k := active[slot]
			if rng.Intn(2) == 0 {
				mops = append(mops, Mop{F: "r", Key: k, List: slices.Clone(view(k))})
				continue
			}
			writes[k]++
			v := int64(writes[k])
			local[k] = append(slices.Clone(view(k)), v)
			mops = append(mops, Mop{F: "append", Key: k, Value: v})
			if writes[k] >= maxWrites {
				active[slot] = fmt.Sprintf("k%d", fresh)
				fresh++
			}
		}
		if happens {
			for k, l := range local {
				lists[k] = l
			}
		}
		if typ != OK {
			for j := range mops {
				mops[j].List = nil
			}
		}
		ops = append(ops, Op{Process: i, Workload: "append", F: "txn", Type: typ, Node: -1, Mops: mops,
			Invoke: at - rng.Int63n(spread+1), Complete: at + rng.Int63n(spread+1)})
	}
	// Record ops in completion order, as a history would.
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Complete < ops[j].Complete })
	for i := range ops {
		ops[i].Index = i
	}
	return ops
}

// elleDropMiddle removes a middle element from a read that another read of
// the same key is at least as long as; the read then disagrees with the
// version order. It reports whether it found such a read.
func elleDropMiddle(rng *rand.Rand, ops []Op) bool {
	type ref struct{ op, mop int }
	longest := map[string]ref{}
	var cands []ref
	for i, op := range ops {
		if op.Type != OK {
			continue
		}
		for j, m := range op.Mops {
			if m.F != "r" {
				continue
			}
			if l, ok := longest[m.Key]; !ok || len(m.List) > len(ops[l.op].Mops[l.mop].List) {
				longest[m.Key] = ref{i, j}
			}
			if len(m.List) >= 3 {
				cands = append(cands, ref{i, j})
			}
		}
	}
	rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	for _, c := range cands {
		m := &ops[c.op].Mops[c.mop]
		if longest[m.Key] == c {
			continue
		}
		drop := 1 + rng.Intn(len(m.List)-2)
		m.List = slices.Delete(slices.Clone(m.List), drop, drop+1)
		return true
	}
	return false
}

// elleSwapReads swaps the results of two external reads of one key by OK
// transactions T1 and T2 that do not append to it, where T1 completed
// before T2 was invoked and saw less: T2 now misses appends T1 saw, which
// makes a cycle T1 -rt-> ... T2 -rw-> ... -ww-> ... -wr-> T1.
func elleSwapReads(rng *rand.Rand, ops []Op) bool {
	type ref struct{ op, mop int }
	byKey := map[string][]ref{}
	for i, op := range ops {
		if op.Type != OK {
			continue
		}
		first := map[string]int{}
		appends := map[string]bool{}
		for j, m := range op.Mops {
			if _, ok := first[m.Key]; !ok {
				first[m.Key] = j
			}
			if m.F == "append" {
				appends[m.Key] = true
			}
		}
		for k, j := range first {
			if op.Mops[j].F == "r" && !appends[k] {
				byKey[k] = append(byKey[k], ref{i, j})
			}
		}
	}
	var keys []string
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for _, k := range keys {
		rs := byKey[k]
		for _, a := range rs {
			for _, b := range rs {
				ma, mb := &ops[a.op].Mops[a.mop], &ops[b.op].Mops[b.mop]
				if ops[a.op].Complete < ops[b.op].Invoke && len(ma.List) < len(mb.List) {
					ma.List, mb.List = mb.List, ma.List
					return true
				}
			}
		}
	}
	return false
}

// Random strictly serializable histories are valid; each mutated by one
// dropped element or by two swapped reads is not.
func TestElleAppendRandom(t *testing.T) {
	dropped, swapped := 0, 0
	for seed := int64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewSource(seed))
		n := 20 + rng.Intn(300)
		keys := 1 + rng.Intn(6)
		spread := rng.Int63n(80)
		ops := elleGen(rng, n, keys, 8+rng.Intn(40), spread)
		v := CheckAppend(ops)
		if !v.Valid || len(v.Anomalies) > 0 {
			t.Fatalf("seed %d: valid history judged invalid: %+v", seed, v.Anomalies)
		}
		if v.Note != "" {
			t.Fatalf("seed %d: note %q", seed, v.Note)
		}

		mut := slices.Clone(ops)
		for i := range mut {
			mut[i].Mops = slices.Clone(mut[i].Mops)
		}
		if elleDropMiddle(rng, mut) {
			dropped++
			if v := CheckAppend(mut); v.Valid || len(v.Anomalies) == 0 {
				t.Fatalf("seed %d: dropping an element went unnoticed", seed)
			} else if !slices.Contains(elleKinds(v), "incompatible-order") {
				t.Fatalf("seed %d: dropping an element gave %v", seed, elleKinds(v))
			}
		}

		mut = slices.Clone(ops)
		for i := range mut {
			mut[i].Mops = slices.Clone(mut[i].Mops)
		}
		if elleSwapReads(rng, mut) {
			swapped++
			if v := CheckAppend(mut); v.Valid || len(v.Anomalies) == 0 {
				t.Fatalf("seed %d: swapping two reads went unnoticed", seed)
			}
		}
	}
	t.Logf("%d histories with a dropped element, %d with swapped reads", dropped, swapped)
	if dropped < 200 || swapped < 200 {
		t.Fatalf("too few mutations: %d dropped, %d swapped", dropped, swapped)
	}
}

// Many anomalies in one large history are found quickly and listed with a
// bound.
func TestElleAppendManyAnomalies(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	ops := elleGen(rng, 20000, 4, 30, 40)
	// Every read of a key by an OK transaction sees one element fewer:
	// stale reads everywhere.
	for i := range ops {
		for j := range ops[i].Mops {
			if m := &ops[i].Mops[j]; m.F == "r" && len(m.List) > 0 && i%2 == 0 {
				m.List = m.List[:len(m.List)-1]
			}
		}
	}
	v := CheckAppend(ops)
	if v.Valid {
		t.Fatal("stale reads went unnoticed")
	}
	counts := map[string]int{}
	for _, a := range v.Anomalies {
		counts[a.Kind]++
	}
	for k, n := range counts {
		if n > elleMaxPerKind {
			t.Fatalf("%d %s anomalies listed", n, k)
		}
	}
	t.Logf("kinds %v; note %q", counts, v.Note)
}

func BenchmarkCheckAppend(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	ops := elleGen(rng, 50000, 10, 64, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if v := CheckAppend(ops); !v.Valid {
			b.Fatalf("invalid: %+v", v.Anomalies[:1])
		}
	}
}
