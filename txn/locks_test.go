package txn

import (
	"fmt"
	"slices"
	"testing"
)

// Lock table unit tests. Each case steps the table explicitly: grant locks
// to numbered transactions, ask who blocks a request, release. The table
// only answers who conflicts; wound-wait is the Group's (group tests).

func tid(n int) TxnID { return TxnID{Hi: uint64(n % 3), Lo: uint64(n)} }

type lockStep struct {
	op    string // grant, blockers, release, shared, count
	txn   int
	req   lockReq
	want  []int    // blockers: the blocking transactions, sorted by ID
	keys  []string // shared: the point keys
	n     int      // count
	spans []keySpan
}

func sharedKeys(keys ...string) lockReq    { return lockReq{keys: keys} }
func exclusiveKeys(keys ...string) lockReq { return lockReq{exclusive: true, keys: keys} }

// spanReq builds a shared span lock request; end "" is unbounded.
func spanReq(start, end string) lockReq {
	sp := keySpan{start: []byte(start)}
	if end != "" {
		sp.end = []byte(end)
	}
	return lockReq{span: &sp}
}

func grant(txn int, r lockReq) lockStep { return lockStep{op: "grant", txn: txn, req: r} }
func blocked(txn int, r lockReq, by ...int) lockStep {
	return lockStep{op: "blockers", txn: txn, req: r, want: by}
}
func release(txn int) lockStep { return lockStep{op: "release", txn: txn} }
func count(n int) lockStep     { return lockStep{op: "count", n: n} }

func TestLockTable(t *testing.T) {
	cases := []struct {
		name  string
		steps []lockStep
	}{
		{"shared/shared point compatible", []lockStep{
			grant(1, sharedKeys("k")),
			blocked(2, sharedKeys("k")),
			grant(2, sharedKeys("k")),
			count(2),
			blocked(3, exclusiveKeys("k"), 1, 2),
		}},
		{"shared point vs exclusive", []lockStep{
			grant(1, sharedKeys("k")),
			blocked(2, exclusiveKeys("k"), 1),
			blocked(2, exclusiveKeys("j")),
			blocked(2, exclusiveKeys("j", "k", "l"), 1),
		}},
		{"exclusive vs shared and exclusive", []lockStep{
			grant(1, exclusiveKeys("k")),
			blocked(2, sharedKeys("k"), 1),
			blocked(2, exclusiveKeys("k"), 1),
			blocked(2, sharedKeys("kk")),
		}},
		{"own locks never block", []lockStep{
			grant(1, sharedKeys("k")),
			blocked(1, exclusiveKeys("k")),
			grant(1, exclusiveKeys("k")),
			blocked(1, sharedKeys("k")),
			blocked(1, spanReq("a", "z")),
			blocked(2, sharedKeys("k"), 1),
		}},
		{"span vs exclusive key: start inclusive, end exclusive", []lockStep{
			grant(1, exclusiveKeys("b")),
			blocked(2, spanReq("a", "c"), 1),
			blocked(2, spanReq("b", "c"), 1),
			blocked(2, spanReq("a", "b")),
			blocked(2, spanReq("b", "b")), // empty span
			blocked(2, spanReq("c", "d")),
			blocked(2, spanReq("b\x00", "c")),
		}},
		{"span with nil end is unbounded", []lockStep{
			grant(1, exclusiveKeys("zzz")),
			blocked(2, spanReq("a", ""), 1),
			blocked(2, spanReq("zzz", ""), 1),
			blocked(2, spanReq("zzz\x00", "")),
			blocked(2, spanReq("", ""), 1), // everything
		}},
		{"exclusive key vs held span", []lockStep{
			grant(1, spanReq("b", "d")),
			blocked(2, exclusiveKeys("a")),
			blocked(2, exclusiveKeys("b"), 1),
			blocked(2, exclusiveKeys("c"), 1),
			blocked(2, exclusiveKeys("d")),
			blocked(2, sharedKeys("c")), // shared/shared
			blocked(2, spanReq("a", "z")),
		}},
		{"exclusive key vs held unbounded span", []lockStep{
			grant(1, spanReq("m", "")),
			blocked(2, exclusiveKeys("l")),
			blocked(2, exclusiveKeys("m"), 1),
			blocked(2, exclusiveKeys("\xff\xff"), 1),
		}},
		{"several blockers, deduplicated, sorted by ID", []lockStep{
			grant(5, sharedKeys("a", "b")),
			grant(4, spanReq("a", "c")),
			grant(7, sharedKeys("b")),
			grant(3, spanReq("x", "")),
			blocked(9, exclusiveKeys("b", "a"), 7, 4, 5),
			blocked(9, exclusiveKeys("y", "b"), 3, 7, 4, 5),
		}},
		{"release drops every lock of one transaction", []lockStep{
			grant(1, sharedKeys("a", "b")),
			grant(1, spanReq("c", "e")),
			grant(1, exclusiveKeys("x")),
			grant(2, sharedKeys("a")),
			count(5),
			release(1),
			count(1),
			blocked(3, exclusiveKeys("b")),
			blocked(3, exclusiveKeys("d")),
			blocked(3, sharedKeys("x")),
			blocked(3, exclusiveKeys("a"), 2),
			release(1), // idempotent
			release(8), // unknown
			count(1),
			release(2),
			count(0),
			blocked(3, exclusiveKeys("a")),
		}},
		{"regrants are not double counted", []lockStep{
			grant(1, sharedKeys("a")),
			grant(1, sharedKeys("a")),
			grant(1, exclusiveKeys("b")),
			grant(1, exclusiveKeys("b")),
			count(2),
			grant(1, spanReq("c", "d")),
			count(3),
			release(1),
			count(0),
		}},
		{"shared returns held read locks, not exclusive ones", []lockStep{
			grant(1, sharedKeys("b", "a")),
			grant(1, spanReq("c", "d")),
			grant(1, spanReq("m", "")),
			grant(1, exclusiveKeys("z")),
			grant(2, sharedKeys("q")),
			{op: "shared", txn: 1, keys: []string{"b", "a"}, spans: []keySpan{
				{start: []byte("c"), end: []byte("d")}, {start: []byte("m")}}},
			{op: "shared", txn: 2, keys: []string{"q"}},
			{op: "shared", txn: 3},
			release(1),
			{op: "shared", txn: 1},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lt := newLockTable()
			for i, s := range tc.steps {
				where := fmt.Sprintf("step %d (%s txn %d)", i, s.op, s.txn)
				switch s.op {
				case "grant":
					if b := lt.blockers(tid(s.txn), s.req); len(b) > 0 {
						t.Fatalf("%s: the test grants a conflicting lock (blocked by %v)", where, b)
					}
					lt.grant(tid(s.txn), s.req)
					if !lt.holds(tid(s.txn)) {
						t.Fatalf("%s: holds() false after grant", where)
					}
				case "blockers":
					var want []TxnID
					for _, n := range s.want {
						want = append(want, tid(n))
					}
					sortIDs(want)
					if got := lt.blockers(tid(s.txn), s.req); !slices.Equal(got, want) {
						t.Fatalf("%s: blockers %v, want %v", where, got, want)
					}
				case "release":
					lt.release(tid(s.txn))
					if lt.holds(tid(s.txn)) {
						t.Fatalf("%s: still holds locks after release", where)
					}
				case "count":
					if got := lt.count(); got != s.n {
						t.Fatalf("%s: count %d, want %d", where, got, s.n)
					}
				case "shared":
					keys, spans := lt.shared(tid(s.txn))
					if !slices.Equal(keys, s.keys) {
						t.Fatalf("%s: shared keys %q, want %q", where, keys, s.keys)
					}
					if len(spans) != len(s.spans) {
						t.Fatalf("%s: shared spans %v, want %v", where, spans, s.spans)
					}
					for j := range spans {
						a, b := spans[j], s.spans[j]
						if string(a.start) != string(b.start) || string(a.end) != string(b.end) || (a.end == nil) != (b.end == nil) {
							t.Fatalf("%s: span %d is %v, want %v", where, j, a, b)
						}
					}
					if len(spans) > 0 {
						// shared returns a copy: the caller (a prepare record)
						// keeps it after the locks go.
						spans[0].start = []byte("mutated")
						if _, again := lt.shared(tid(s.txn)); string(again[0].start) == "mutated" {
							t.Fatalf("%s: shared returns the table's own slice", where)
						}
					}
				default:
					t.Fatalf("unknown op %q", s.op)
				}
			}
		})
	}
}

func TestKeySpanContains(t *testing.T) {
	for _, tc := range []struct {
		start, end string
		nilEnd     bool
		key        string
		want       bool
	}{
		{"b", "d", false, "a", false},
		{"b", "d", false, "b", true},
		{"b", "d", false, "c\xff", true},
		{"b", "d", false, "d", false},
		{"b", "", true, "zzzz", true},
		{"b", "", true, "a", false},
		{"", "", true, "", true},
		{"b", "", false, "c", false}, // non-nil empty end: empty span
	} {
		sp := keySpan{start: []byte(tc.start), end: []byte(tc.end)}
		if tc.nilEnd {
			sp.end = nil
		}
		if got := sp.contains([]byte(tc.key)); got != tc.want {
			t.Errorf("[%q, %q nil=%v).contains(%q) = %v, want %v", tc.start, tc.end, tc.nilEnd, tc.key, got, tc.want)
		}
	}
}

func TestOlder(t *testing.T) {
	a := Meta{ID: TxnID{Hi: 1, Lo: 9}, Priority: 10}
	b := Meta{ID: TxnID{Hi: 0, Lo: 1}, Priority: 11}
	c := Meta{ID: TxnID{Hi: 1, Lo: 10}, Priority: 10}
	d := Meta{ID: TxnID{Hi: 2, Lo: 0}, Priority: 10}
	for _, tc := range []struct {
		x, y Meta
		want bool
	}{
		{a, b, true}, {b, a, false}, // priority decides
		{c, d, true}, {d, c, false}, // then the ID's high half
		{a, c, true}, {c, a, false}, // then its low half
		{a, a, false},
	} {
		if got := older(tc.x, tc.y); got != tc.want {
			t.Errorf("older(%v, %v) = %v, want %v", tc.x, tc.y, got, tc.want)
		}
	}
}
