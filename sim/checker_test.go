package sim

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/meridiandb/meridian/tt"
)

// History builders: times and timestamps are small integers.

func ckRW(id string, inv, ts, comp int64, reads []ReadObs, writes ...WriteOp) TxnRecord {
	return TxnRecord{ID: id, Kind: ReadWrite, Invoke: tt.Timestamp(inv), Complete: tt.Timestamp(comp),
		Committed: true, TS: tt.Timestamp(ts), Reads: reads, Writes: writes}
}

func ckRO(id string, inv, ts, comp int64, reads ...ReadObs) TxnRecord {
	return TxnRecord{ID: id, Kind: ReadOnly, Invoke: tt.Timestamp(inv), Complete: tt.Timestamp(comp),
		Committed: true, TS: tt.Timestamp(ts), Reads: reads}
}

// ckReleased is a committed read-write transaction that wrote nothing.
func ckReleased(id string, inv, comp int64, reads ...ReadObs) TxnRecord {
	return TxnRecord{ID: id, Kind: ReadWrite, Invoke: tt.Timestamp(inv), Complete: tt.Timestamp(comp),
		Committed: true, Released: true, Reads: reads}
}

// ckUnknown turns a committed record into one whose outcome was never learned.
func ckUnknown(t TxnRecord) TxnRecord {
	t.Committed, t.Unknown, t.Complete = false, true, 0
	return t
}

// ckAborted turns a committed record into a definite abort.
func ckAborted(t TxnRecord) TxnRecord {
	t.Committed, t.Unknown = false, false
	return t
}

func ckR(k, v string) ReadObs            { return ReadObs{Key: k, Found: true, Value: v} }
func ckAbsent(k string) ReadObs          { return ReadObs{Key: k} }
func ckW(k, v string) WriteOp            { return WriteOp{Key: k, Value: v} }
func ckDel(k string) WriteOp             { return WriteOp{Key: k, Delete: true} }
func ckReads(rs ...ReadObs) []ReadObs    { return rs }
func ckHist(ts ...TxnRecord) []TxnRecord { return ts }

func TestCheckTxnsValid(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    []TxnRecord
	}{
		{"empty", nil},
		{"read-write transactions that wrote nothing, at one moment each", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "x1"), ckW("y", "y1")),
			ckRW("t2", 16, 20, 25, nil, ckW("x", "x2")),
			ckReleased("q1", 12, 30, ckR("x", "x1"), ckR("y", "y1")),
			ckReleased("q2", 26, 30, ckR("x", "x2"), ckR("y", "y1"), ckAbsent("z")),
		)},
		{"single-group read at its last commit, below an unrelated later commit (LastTS)", ckHist(
			ckRW("t1", 0, 100, 10, nil, ckW("x", "x1")),
			ckRW("t2", 20, 200, 30, nil, ckW("y", "y1")),
			ckRO("r1", 40, 100, 50, ckR("x", "x1")),
		)},
		{"bounded-staleness read in the past", ckHist(
			ckRW("t1", 0, 100, 10, nil, ckW("x", "x1")),
			ckStale(ckRO("r1", 40, 50, 50, ckAbsent("x"))),
		)},
		{"serial", ckHist(
			ckRW("t1", 0, 10, 20, nil, ckW("x", "x1")),
			ckRW("t2", 25, 30, 40, ckReads(ckR("x", "x1")), ckW("x", "x2")),
			ckRO("r1", 45, 50, 60, ckR("x", "x2")),
		)},
		{"initial state absent", ckHist(
			ckRW("t1", 0, 10, 20, ckReads(ckAbsent("x"), ckAbsent("y")), ckW("x", "x1")),
			ckRO("r1", 1, 5, 30, ckAbsent("x")),
			ckRO("r2", 25, 30, 40, ckR("x", "x1"), ckAbsent("y")),
		)},
		{"delete then absent", ckHist(
			ckRW("t1", 0, 10, 20, nil, ckW("x", "x1")),
			ckRW("t2", 25, 30, 40, ckReads(ckR("x", "x1")), ckDel("x")),
			ckRO("r1", 45, 50, 60, ckAbsent("x")),
			ckRW("t3", 61, 70, 80, ckReads(ckAbsent("x")), ckW("x", "x3")),
			ckRO("r2", 85, 90, 95, ckR("x", "x3")),
		)},
		{"concurrent writers commit out of invoke order", ckHist(
			// t1 starts first but commits later; they overlap, so either order is fine.
			ckRW("t1", 0, 50, 100, nil, ckW("x", "x1")),
			ckRW("t2", 10, 40, 90, nil, ckW("x", "x2")),
			ckRO("r1", 20, 45, 30, ckR("x", "x2")),
			ckRO("r2", 95, 60, 110, ckR("x", "x1")),
			ckRW("t3", 101, 120, 130, ckReads(ckR("x", "x1")), ckW("y", "y3")),
		)},
		{"RO snapshot at a commit timestamp sees that commit", ckHist(
			ckRW("t1", 0, 10, 20, nil, ckW("x", "x1"), ckW("y", "y1")),
			ckRO("r1", 5, 10, 25, ckR("x", "x1"), ckR("y", "y1")),
			ckRO("r2", 0, 9, 8, ckAbsent("x"), ckAbsent("y")),
		)},
		{"RW reads strictly below its timestamp and writes what it read", ckHist(
			ckRW("t1", 0, 10, 20, nil, ckW("x", "x1")),
			ckRW("t2", 21, 30, 40, ckReads(ckR("x", "x1")), ckW("x", "x2")),
			ckRW("t3", 41, 50, 60, ckReads(ckR("x", "x2")), ckW("x", "x3")),
		)},
		{"equal timestamps on disjoint keys", ckHist(
			ckRW("t1", 0, 10, 20, nil, ckW("x", "x1")),
			ckRW("t2", 0, 10, 20, nil, ckW("y", "y1")),
			ckRO("r1", 21, 30, 40, ckR("x", "x1"), ckR("y", "y1")),
		)},
		{"RO with a lower timestamp than an earlier RO on another key", ckHist(
			// Single-group ROs read at LastTS(), which may be below an
			// earlier RO's TT.now().latest; fine when nothing newer was seen.
			ckRW("t1", 0, 50, 1000, nil, ckW("y", "y1")),
			ckRO("r1", 60, 100, 70, ckR("y", "y1")),
			ckRO("r2", 80, 40, 90, ckAbsent("x")),
		)},
		{"unknown outcome observed", ckHist(
			ckRW("t1", 0, 10, 20, nil, ckW("x", "x1")),
			ckUnknown(ckRW("u1", 21, 30, 0, nil, ckW("x", "xu"), ckW("y", "yu"))),
			ckRO("r1", 40, 45, 50, ckR("x", "xu"), ckR("y", "yu")),
			ckRO("r2", 15, 25, 35, ckR("x", "x1"), ckAbsent("y")),
		)},
		{"unknown outcome not observed", ckHist(
			ckRW("t1", 0, 10, 20, nil, ckW("x", "x1")),
			ckUnknown(ckRW("u1", 21, 30, 0, nil, ckW("x", "xu"))),
			ckRO("r1", 40, 45, 50, ckR("x", "x1")),
			ckRW("t2", 51, 60, 70, ckReads(ckR("x", "x1")), ckW("y", "y2")),
		)},
		{"unknown outcome with unknown timestamp observed", ckHist(
			ckRW("t1", 0, 10, 20, nil, ckW("x", "x1")),
			ckUnknown(ckRW("u1", 21, 0, 0, nil, ckW("x", "xu"))),
			ckRO("r1", 40, 45, 50, ckR("x", "xu")),
			ckRO("r2", 41, 46, 52, ckR("x", "x1")), // cannot be placed against u1
		)},
		{"unobserved unknown delete explains an absent read", ckHist(
			ckRW("t1", 0, 10, 20, nil, ckW("x", "x1")),
			ckUnknown(ckRW("u1", 21, 30, 0, nil, ckDel("x"))),
			ckUnknown(ckRW("u2", 21, 0, 0, nil, ckDel("y"))),
			ckRW("t2", 0, 10, 20, nil, ckW("y", "y1")),
			ckRO("r1", 40, 45, 50, ckAbsent("x"), ckAbsent("y")),
		)},
		{"definite aborts are ignored", ckHist(
			ckRW("t1", 0, 10, 20, nil, ckW("x", "x1")),
			ckAborted(ckRW("a1", 21, 30, 35, ckReads(ckR("x", "nonsense")), ckW("x", "xa"))),
			ckAborted(ckRO("a2", 21, 5, 35, ckR("x", "xa"))),
			ckRO("r1", 40, 45, 50, ckR("x", "x1")),
		)},
		{"unknown reader's reads are evidence", ckHist(
			ckUnknown(ckRW("u1", 0, 10, 0, nil, ckW("x", "xu"))),
			ckUnknown(ckRW("u2", 20, 30, 0, ckReads(ckR("x", "xu")), ckW("y", "y2"))),
			ckRO("r1", 40, 45, 50, ckR("x", "xu"), ckAbsent("y")),
		)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckTxns(tc.h); len(got) != 0 {
				t.Fatalf("CheckTxns reported violations in a valid history:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

func TestCheckTxnsViolations(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    []TxnRecord
		want []string // substrings, each of which some message must contain
	}{
		{"stale RW read", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "x1")),
			ckRW("t2", 16, 20, 25, nil, ckW("x", "x2")),
			ckRW("t3", 26, 30, 35, ckReads(ckR("x", "x1")), ckW("y", "y3")),
		), []string{`stale read: RW t3`, `"x1"`, `"x2" (written by RW t2`}},
		{"stale RO read", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "x1")),
			ckRW("t2", 0, 20, 25, nil, ckW("x", "x2")),
			ckRO("r1", 0, 22, 35, ckR("x", "x1")),
		), []string{`stale read: RO r1`}},
		{"absent read misses a write", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "x1")),
			ckRO("r1", 0, 20, 35, ckAbsent("x")),
		), []string{`stale read: RO r1`, `= absent`, `"x1" (written by RW t1`}},
		{"read of a deleted key's old value", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "x1")),
			ckRW("t2", 0, 20, 25, nil, ckDel("x")),
			ckRO("r1", 0, 30, 35, ckR("x", "x1")),
		), []string{`stale read: RO r1`, `absent (deleted by RW t2`}},
		{"RO snapshot reads a future write", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "x1")),
			ckRW("t2", 40, 50, 60, nil, ckW("x", "x2")),
			ckRO("r1", 20, 30, 45, ckR("x", "x2")),
		), []string{`read of a future write: RO r1`, `written by RW t2`}},
		{"RW reads a write at its own commit timestamp", ckHist(
			ckRW("t1", 0, 30, 35, nil, ckW("x", "x1")),
			ckRW("t2", 0, 30, 36, ckReads(ckR("x", "x1")), ckW("y", "y2")),
		), []string{`read of a future write: RW t2`, `not below`}},
		{"real-time reorder RW after RW (no commit wait)", ckHist(
			// t2 starts after t1 finished, yet gets a smaller timestamp.
			ckRW("t1", 0, 100, 10, nil, ckW("x", "x1")),
			ckRW("t2", 20, 50, 30, nil, ckW("y", "y2")),
		), []string{`real-time order violated: RW t1`, `completed before RW t2`, `50 is not greater than 100`}},
		{"real-time reorder RW then RO", ckHist(
			ckRW("t1", 0, 100, 10, nil, ckW("x", "x1")),
			ckRO("r1", 20, 50, 30, ckAbsent("x")),
		), []string{`real-time order violated on key "x": RW t1`, `completed before RO r1`}},
		{"real-time reorder RO then RW", ckHist(
			ckRO("r1", 0, 100, 10, ckAbsent("x")),
			ckRW("t2", 20, 50, 30, nil, ckW("x", "x2")),
		), []string{`real-time order violated on key "x": RO r1`, `completed before RW t2`}},
		{"real-time reorder RW then unknown-but-observed RW", ckHist(
			ckRW("t1", 0, 100, 10, nil, ckW("x", "x1")),
			ckUnknown(ckRW("u2", 20, 50, 0, nil, ckW("y", "y2"))),
			ckRO("r1", 200, 200, 210, ckR("x", "x1"), ckR("y", "y2")),
		), []string{`real-time order violated: RW t1`, `before RW u2`}},
		{"RO after RO misses a version the first saw", ckHist(
			ckRW("t1", 0, 50, 1000, nil, ckW("x", "x1")),
			ckRO("r1", 60, 60, 70, ckR("x", "x1")),
			ckRO("r2", 80, 40, 90, ckAbsent("x")),
		), []string{`real-time order violated on key "x": RO r1`, `RO r2`, `got absent`}},
		{"lost update: two writers read the same version", ckHist(
			ckRW("t0", 0, 5, 6, nil, ckW("x", "x0")),
			ckRW("t1", 10, 20, 30, ckReads(ckR("x", "x0")), ckW("x", "x1")),
			ckUnknown(ckRW("t2", 10, 0, 0, ckReads(ckR("x", "x0")), ckW("x", "x2"))),
			ckRO("r1", 100, 100, 110, ckR("x", "x2")),
		), []string{`lost update on key "x"`}},
		{"read of an aborted write", ckHist(
			ckAborted(ckRW("a1", 0, 10, 15, nil, ckW("x", "xa"))),
			ckRO("r1", 20, 30, 35, ckR("x", "xa")),
		), []string{`read of an aborted write: RO r1`, `RW a1`}},
		{"read of a value never written", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "x1")),
			ckRW("t2", 20, 30, 35, ckReads(ckR("x", "bogus")), ckW("x", "x2")),
		), []string{`read of a value never written: RW t2`, `"bogus"`}},
		{"read of another key's value", ckHist(
			ckUnknown(ckRW("u1", 0, 0, 0, nil, ckW("x", "x1"))),
			ckRO("r1", 20, 30, 35, ckR("y", "x1")),
		), []string{`read of another key's value: RO r1`, `to key "x"`}},
		{"read of an intermediate value", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "x1a"), ckW("x", "x1b")),
			ckRO("r1", 20, 30, 35, ckR("x", "x1a")),
		), []string{`read of an intermediate value`}},
		{"read of its own buffered write", ckHist(
			ckRW("t1", 0, 10, 15, ckReads(ckR("x", "x1")), ckW("x", "x1")),
		), []string{`read of its own buffered write: RW t1`}},
		{"observed unknown transaction is committed and must be seen", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "x1")),
			ckUnknown(ckRW("u1", 0, 20, 0, nil, ckW("x", "xu"), ckW("y", "yu"))),
			ckRO("r1", 30, 30, 35, ckR("y", "yu")),
			ckRO("r2", 30, 31, 35, ckR("x", "x1")),
		), []string{`stale read: RO r2`, `"xu" (written by RW u1`}},
		{"commit timestamp tie on a shared key", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "x1"), ckW("y", "y1")),
			ckRW("t2", 0, 10, 15, nil, ckW("x", "x2")),
		), []string{`commit timestamp tie: RW t1`, `RW t2`, `key "x" at ts=10`}},
		{"committed without a timestamp", ckHist(
			ckRW("t1", 0, 0, 15, nil, ckW("x", "x1")),
		), []string{`committed RW t1`, `has no timestamp`}},
		{"value written twice", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "v")),
			ckRW("t2", 0, 20, 25, nil, ckW("y", "v")),
		), []string{`value "v" is written by both RW t1`}},
		{"completion before invocation", ckHist(
			ckRO("r1", 20, 30, 10),
		), []string{`completed before it was invoked`}},
		{"read-write transaction that wrote nothing saw two moments", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "x1"), ckW("y", "y1")),
			ckRW("t2", 16, 20, 25, nil, ckW("x", "x2"), ckW("y", "y2")),
			ckReleased("q", 12, 30, ckR("x", "x1"), ckR("y", "y2")),
		), []string{`reads at no common timestamp: RW q`, `"y" = "y2", written at ts=20`, `"x" = "x1", overwritten at ts=20`}},
		{"read-write transaction that wrote nothing read a version committed after it completed", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "x1")),
			ckRW("t2", 31, 40, 45, nil, ckW("y", "y1")),
			ckReleased("q", 12, 30, ckR("x", "x1"), ckR("y", "y1")),
		), []string{`read from the future: RW q`, `"y" = "y1", written at ts=40`}},
		{"read-write transaction that wrote nothing read a version overwritten before it began", ckHist(
			ckRW("t1", 0, 10, 15, nil, ckW("x", "x1")),
			ckRW("t2", 16, 20, 25, nil, ckW("x", "x2")),
			ckReleased("q", 26, 30, ckR("x", "x1")),
		), []string{`stale read: RW q`, `"x" = "x1", already overwritten at ts=20`}},
		{"marked as writing nothing, with writes", ckHist(
			TxnRecord{ID: "q", Kind: ReadWrite, Committed: true, Released: true, Writes: []WriteOp{ckW("x", "x1")}},
		), []string{`marked as having written nothing`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckTxns(tc.h)
			if len(got) == 0 {
				t.Fatalf("CheckTxns found no violation, want one containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !ckContains(got, w) {
					t.Errorf("no violation contains %q; got:\n%s", w, strings.Join(got, "\n"))
				}
			}
		})
	}
}

func ckContains(msgs []string, sub string) bool {
	for _, m := range msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

func TestCheckTxnsBounded(t *testing.T) {
	h := []TxnRecord{ckRW("t1", 0, 10, 15, nil, ckW("x", "x1"))}
	for i := range 200 {
		h = append(h, ckRO(fmt.Sprintf("r%d", i), 20, 30, 35, ckR("x", fmt.Sprintf("bogus%d", i))))
	}
	got := CheckTxns(h)
	if len(got) != MaxViolations+1 {
		t.Fatalf("got %d messages, want %d", len(got), MaxViolations+1)
	}
	if last := got[len(got)-1]; last != "... and 150 more violations (200 in total)" {
		t.Fatalf("last message = %q", last)
	}
}

func TestCheckFinal(t *testing.T) {
	base := ckHist(
		ckRW("t1", 0, 10, 15, nil, ckW("x", "x1"), ckW("y", "y1"), ckW("z", "z1")),
		ckRW("t2", 20, 30, 35, nil, ckW("x", "x2"), ckDel("y")),
		ckAborted(ckRW("a1", 40, 50, 55, nil, ckW("x", "xa"))),
	)
	with := func(extra ...TxnRecord) []TxnRecord { return append(append([]TxnRecord(nil), base...), extra...) }
	for _, tc := range []struct {
		name  string
		h     []TxnRecord
		final map[string]string
		want  []string // empty: must pass
	}{
		{"latest writes survive", base, map[string]string{"x": "x2", "z": "z1"}, nil},
		{"lost write", base, map[string]string{"x": "x1", "z": "z1"},
			[]string{`lost write: final state key "x" = "x1"`, `"x2" (written by RW t2`}},
		{"lost write, key absent", base, map[string]string{"x": "x2"},
			[]string{`lost write: final state key "z" is absent`, `"z1" (written by RW t1`}},
		{"deleted key resurrected", base, map[string]string{"x": "x2", "y": "y1", "z": "z1"},
			[]string{`lost write: final state key "y" = "y1"`, `absent (deleted by RW t2`}},
		{"aborted write in final state", base, map[string]string{"x": "xa", "z": "z1"},
			[]string{`read of an aborted write: final state key "x"`}},
		{"never-written value in final state", base, map[string]string{"x": "x2", "z": "z1", "w": "w?"},
			[]string{`read of a value never written: final state key "w"`}},
		{"unknown write present in final state counts as committed", with(
			ckUnknown(ckRW("u1", 60, 70, 0, nil, ckW("x", "xu")))),
			map[string]string{"x": "xu", "z": "z1"}, nil},
		{"unknown write absent from final state is not required", with(
			ckUnknown(ckRW("u1", 60, 70, 0, nil, ckW("x", "xu")))),
			map[string]string{"x": "x2", "z": "z1"}, nil},
		{"unknown write seen in final state must be the latest", with(
			ckUnknown(ckRW("u1", 60, 70, 0, nil, ckW("x", "xu"), ckW("z", "zu")))),
			map[string]string{"x": "x2", "z": "zu"},
			[]string{`lost write: final state key "x" = "x2"`, `"xu" (written by RW u1`}},
		{"unknown delete may explain an absent key", with(
			ckUnknown(ckRW("u1", 60, 70, 0, nil, ckDel("z")))),
			map[string]string{"x": "x2"}, nil},
		{"unknown-timestamp writer in final state", with(
			ckUnknown(ckRW("u1", 60, 0, 0, nil, ckW("x", "xu")))),
			map[string]string{"x": "xu", "z": "z1"}, nil},
		{"unknown-timestamp committed write lost", ckHist(
			ckUnknown(ckRW("u1", 60, 0, 0, nil, ckW("q", "qu"))),
			ckRO("r1", 70, 80, 90, ckR("q", "qu"))),
			map[string]string{},
			[]string{`lost write: final state key "q" is absent, but RW u1`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckFinal(tc.h, tc.final)
			if len(tc.want) == 0 {
				if len(got) != 0 {
					t.Fatalf("CheckFinal reported violations:\n%s", strings.Join(got, "\n"))
				}
				return
			}
			if len(got) == 0 {
				t.Fatalf("CheckFinal found no violation, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !ckContains(got, w) {
					t.Errorf("no violation contains %q; got:\n%s", w, strings.Join(got, "\n"))
				}
			}
		})
	}
}

func TestCheckBank(t *testing.T) {
	accounts := []string{"a", "b", "c"}
	h := ckHist(
		ckRW("init", 0, 10, 15, nil, ckW("a", "100#i0"), ckW("b", "100#i1"), ckW("c", "100#i2")),
		ckRO("before", 0, 5, 6, ckAbsent("a"), ckAbsent("b"), ckAbsent("c")), // skipped: not created yet
		ckRW("xfer", 20, 30, 35, ckReads(ckR("a", "100#i0"), ckR("b", "100#i1")),
			ckW("a", "70#t1"), ckW("b", "130#t1")),
		ckRO("audit", 40, 50, 55, ckR("a", "70#t1"), ckR("b", "130#t1"), ckR("c", "100#i2")),
		ckRO("partial", 40, 50, 55, ckR("a", "70#t1")), // did not read every account
		ckAborted(ckRO("aborted", 40, 50, 55, ckR("a", "1#x"), ckR("b", "1#x"), ckR("c", "1#x"))),
	)
	if got := CheckBank(h, accounts, 300); len(got) != 0 {
		t.Fatalf("CheckBank reported violations in a valid history:\n%s", strings.Join(got, "\n"))
	}
	bad := append(h,
		ckRO("torn", 40, 50, 55, ckR("a", "70#t1"), ckR("b", "100#i1"), ckR("c", "100#i2")),
		ckRO("garbled", 40, 50, 55, ckR("a", "seventy"), ckR("b", "130#t1"), ckR("c", "100#i2")),
		ckRO("half", 40, 50, 55, ckR("a", "70#t1"), ckAbsent("b"), ckR("c", "100#i2")),
	)
	got := CheckBank(bad, accounts, 300)
	for _, w := range []string{
		`bank: RO torn (ts=50, real time [40, 55]) read all 3 accounts summing to 270, want 300: a="70#t1", b="100#i1", c="100#i2"`,
		`bank: RO garbled`, `"seventy" is not`,
		`bank: RO half`, `summing to 170`,
	} {
		if !ckContains(got, w) {
			t.Errorf("no violation contains %q; got:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if len(got) != 3 {
		t.Errorf("got %d violations, want 3:\n%s", len(got), strings.Join(got, "\n"))
	}
}

// ckRandomHistory generates a valid history of n transactions over nkeys
// keys: a serial execution in timestamp order, with each transaction's
// real-time interval containing its timestamp (so real time never
// contradicts timestamp order), then shuffled. A mix of committed RW and
// RO, unknown-outcome transactions that did and did not commit (some with
// unknown timestamps), and definite aborts.
func ckRandomHistory(rng *rand.Rand, n, nkeys int) []TxnRecord {
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	state := map[string]string{}
	read := func(k string) ReadObs {
		if v, ok := state[k]; ok {
			return ckR(k, v)
		}
		return ckAbsent(k)
	}
	h := make([]TxnRecord, 0, n)
	ts := int64(1000)
	for i := range n {
		id := fmt.Sprintf("t%d", i)
		p := rng.IntN(100)
		if p < 35 { // read-only
			if rng.IntN(4) != 0 {
				ts += rng.Int64N(20) // may share the previous commit's timestamp
			}
			var rs []ReadObs
			for range 1 + rng.IntN(4) {
				rs = append(rs, read(keys[rng.IntN(nkeys)]))
			}
			h = append(h, ckRO(id, ts-rng.Int64N(200), ts, ts+rng.Int64N(200), rs...))
			continue
		}
		ts += 1 + rng.Int64N(20)
		var rs []ReadObs
		for range rng.IntN(4) {
			rs = append(rs, read(keys[rng.IntN(nkeys)]))
		}
		var ws []WriteOp
		for j, kk := range rng.Perm(nkeys)[:1+rng.IntN(min(3, nkeys))] {
			if rng.IntN(7) == 0 {
				ws = append(ws, ckDel(keys[kk]))
			} else {
				ws = append(ws, ckW(keys[kk], fmt.Sprintf("v%d.%d", i, j)))
			}
		}
		t := ckRW(id, ts-rng.Int64N(200), ts, ts+1+rng.Int64N(200), rs, ws...)
		applies := true
		switch {
		case p < 80: // committed
		case p < 88: // unknown outcome, committed
			t = ckUnknown(t)
		case p < 92: // unknown outcome and timestamp, committed
			t = ckUnknown(t)
			t.TS = 0
		case p < 96: // unknown outcome, not committed
			t = ckUnknown(t)
			if rng.IntN(2) == 0 {
				t.TS = 0
			}
			applies = false
		default: // aborted; its reads may be anything
			t = ckAborted(t)
			for j := range t.Reads {
				t.Reads[j] = ckR(t.Reads[j].Key, "garbage")
			}
			applies = false
		}
		if applies {
			for _, w := range ws {
				if w.Delete {
					delete(state, w.Key)
				} else {
					state[w.Key] = w.Value
				}
			}
		}
		h = append(h, t)
	}
	rng.Shuffle(len(h), func(i, j int) { h[i], h[j] = h[j], h[i] })
	return h
}

// ckPerturbRead changes one read of a committed transaction from a value
// written by a committed transaction with a known timestamp to another such
// value of the same key, which must be stale or from the future. It reports
// whether it found a read to change.
func ckPerturbRead(rng *rand.Rand, h []TxnRecord) (string, bool) {
	writer := map[string]*TxnRecord{}
	puts := map[string][]string{}
	for i := range h {
		t := &h[i]
		if t.Committed && t.Kind == ReadWrite && t.TS != 0 {
			for _, w := range t.Writes {
				if !w.Delete {
					writer[w.Value] = t
					puts[w.Key] = append(puts[w.Key], w.Value)
				}
			}
		}
	}
	for _, i := range rng.Perm(len(h)) {
		t := &h[i]
		if !t.Committed || t.TS == 0 {
			continue
		}
		for j, r := range t.Reads {
			if !r.Found || writer[r.Value] == nil || len(puts[r.Key]) < 2 {
				continue
			}
			alt := puts[r.Key][rng.IntN(len(puts[r.Key]))]
			if alt == r.Value {
				continue
			}
			t.Reads[j].Value = alt
			return fmt.Sprintf("%s read %q = %q, changed to %q", t.ID, r.Key, r.Value, alt), true
		}
	}
	return "", false
}

// ckPerturbRealTime moves a committed RW transaction's interval after the
// completion of a committed RW transaction with a larger timestamp: the
// anomaly commit wait prevents.
func ckPerturbRealTime(rng *rand.Rand, h []TxnRecord) (string, bool) {
	for _, i := range rng.Perm(len(h)) {
		t2 := &h[i]
		if !t2.Committed || t2.Kind != ReadWrite {
			continue
		}
		for _, j := range rng.Perm(len(h))[:min(50, len(h))] {
			t1 := &h[j]
			if t1.Committed && t1.Kind == ReadWrite && t1.TS > t2.TS {
				t2.Invoke = t1.Complete + 1
				t2.Complete = max(t2.Complete, t2.Invoke+1)
				return fmt.Sprintf("%s (ts=%d) now starts after %s (ts=%d) completed", t2.ID, t2.TS, t1.ID, t1.TS), true
			}
		}
	}
	return "", false
}

func TestCheckTxnsRandom(t *testing.T) {
	seeds, n := 30, 2000
	if testing.Short() {
		seeds = 10
	}
	for seed := range uint64(seeds) {
		nkeys := 1 + int(seed%7)*3
		h := ckRandomHistory(rand.New(rand.NewPCG(seed, 1)), n, nkeys)
		if got := CheckTxns(h); len(got) != 0 {
			t.Fatalf("seed %d: valid history reported:\n%s", seed, strings.Join(got, "\n"))
		}
		rng := rand.New(rand.NewPCG(seed, 2))
		for _, perturb := range []func(*rand.Rand, []TxnRecord) (string, bool){ckPerturbRead, ckPerturbRealTime} {
			bad := ckClone(h)
			what, ok := perturb(rng, bad)
			if !ok {
				t.Fatalf("seed %d: found nothing to perturb", seed)
			}
			got := CheckTxns(bad)
			if len(got) == 0 {
				t.Fatalf("seed %d: perturbed history (%s) passed the checker", seed, what)
			}
			if seed < 3 {
				t.Logf("seed %d: %s: %d violations, first: %s", seed, what, len(got), got[0])
			}
		}
	}
}

// ckClone deep-copies a history's reads so perturbations leave h intact.
func ckClone(h []TxnRecord) []TxnRecord {
	c := append([]TxnRecord(nil), h...)
	for i := range c {
		c[i].Reads = append([]ReadObs(nil), c[i].Reads...)
	}
	return c
}

func BenchmarkCheckTxns(b *testing.B) {
	h := ckRandomHistory(rand.New(rand.NewPCG(1, 1)), 50000, 1000)
	if got := CheckTxns(h); len(got) != 0 {
		b.Fatalf("valid history reported:\n%s", strings.Join(got, "\n"))
	}
	b.ReportAllocs()
	for b.Loop() {
		CheckTxns(h)
	}
}

func ckStale(t TxnRecord) TxnRecord {
	t.Stale = true
	return t
}

// TestCheckTxnsRealTimeAcrossKeys covers the cross-key part of check (a):
// a transaction X that completed before a strong RO R was invoked is
// serialized at or after lo(X) (its commit timestamp, or the newest version
// it observed), and R below hi(R) (the first version above R.TS of a key R
// read), so lo(X) < hi(R); an RO, or an RW that wrote nothing, that
// completed before RW T2 was invoked has lo(X) < T2.TS. No key is shared
// by the transactions these histories order, so only that check sees them.
func TestCheckTxnsRealTimeAcrossKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    []TxnRecord
		want []string // substrings some message must contain; nil: valid
		n    int      // the number of violations, when want is not nil
	}{
		{"RO after RO saw a writer on another key", ckHist(
			// t's acknowledgement is slow, so t completes after both reads.
			ckRW("t0", 0, 50, 60, nil, ckW("b", "b0")),
			ckRW("t", 10, 100, 1000, nil, ckW("a", "a1"), ckW("b", "b1")),
			ckRO("r1", 110, 100, 120, ckR("a", "a1")),
			ckRO("r2", 130, 90, 140, ckR("b", "b0")),
		), []string{
			`real-time order violated across keys: RO r1 (ts=100, real time [110, 120]) completed after observing the version of key "a" at ts=100 ("a1"), before RO r2 (ts=90, real time [130, 140]) was invoked, which read key "b" at ts=90 and got "b0", replaced at ts=100 by "b1" (written by RW t (ts=100, real time [10, 1000])): the later one is serialized below ts=100, the earlier one at or above ts=100`,
		}, 1},
		{"single-group read below a version an earlier RO saw on another key (LastTS)", ckHist(
			// As above, but nothing overwrote b0 after ts=90: r2 can be
			// serialized after r1, at ts=100.
			ckRW("t0", 0, 50, 60, nil, ckW("b", "b0")),
			ckRW("t", 10, 100, 1000, nil, ckW("a", "a1")),
			ckRO("r1", 110, 100, 120, ckR("a", "a1")),
			ckRO("r2", 130, 90, 140, ckR("b", "b0")),
		), nil, 0},
		{"RO after RO, different writers, the first replaced read decides", ckHist(
			ckRW("w1", 0, 100, 1000, nil, ckW("x", "x1")),
			ckRW("w3", 0, 110, 1000, nil, ckW("x", "x2")),
			ckRW("w2", 0, 120, 1000, nil, ckW("y", "y1")),
			ckRW("w4", 0, 115, 1000, nil, ckW("z", "z1")),
			ckRO("r1", 130, 130, 140, ckR("y", "y1")),
			ckRO("r2", 150, 105, 160, ckAbsent("z"), ckR("x", "x1"), ckAbsent("q")),
		), []string{
			`real-time order violated across keys: RO r1`,
			`observing the version of key "y" at ts=120 ("y1"), before RO r2`,
			`read key "x" at ts=105 and got "x1", replaced at ts=110 by "x2" (written by RW w3`,
			`below ts=110, the earlier one at or above ts=120`,
		}, 1},
		{"RO after an RW that wrote nothing and saw a writer on another key", ckHist(
			ckRW("t0", 0, 50, 60, nil, ckW("b", "b0")),
			ckRW("t", 10, 100, 1000, nil, ckW("a", "a1"), ckW("b", "b1")),
			ckReleased("q", 105, 120, ckR("a", "a1"), ckAbsent("c")),
			ckRO("r2", 130, 90, 140, ckR("b", "b0")),
		), []string{
			`real-time order violated across keys: RW q`,
			`observing the version of key "a" at ts=100 ("a1"), before RO r2`,
			`read key "b" at ts=90 and got "b0", replaced at ts=100 by "b1"`,
		}, 1},
		{"RO after an RW on another key, below a concurrent write", ckHist(
			ckRW("t1", 0, 50, 1000, nil, ckW("x", "x1")),
			ckRW("t0", 0, 100, 110, nil, ckW("y", "y1")),
			ckRO("r", 120, 40, 130, ckAbsent("x")),
		), []string{
			`real-time order violated across keys: RW t0 (ts=100, real time [0, 110]) completed before RO r`,
			`read key "x" at ts=40 and got absent, replaced at ts=50 by "x1" (written by RW t1`,
			`the later one is serialized below ts=50, the earlier one at or above ts=100`,
		}, 1},
		{"RW after an RO that saw a version above its commit timestamp", ckHist(
			ckRW("w", 0, 100, 1000, nil, ckW("y", "y1")),
			ckRO("r1", 105, 100, 110, ckR("y", "y1")),
			ckRW("t2", 120, 90, 130, nil, ckW("x", "x2")),
		), []string{
			`real-time order violated across keys: RO r1 (ts=100, real time [105, 110]) completed after observing the version of key "y" at ts=100 ("y1"), before RW t2 (ts=90, real time [120, 130]) was invoked, but the later one's commit timestamp 90 is not greater than that version's`,
		}, 1},
		{"RW after an RO that saw a delete at its commit timestamp", ckHist(
			ckRW("w0", 0, 10, 20, nil, ckW("y", "y0")),
			ckRW("w", 0, 100, 1000, nil, ckDel("y")),
			ckRO("r1", 105, 100, 110, ckAbsent("y")),
			ckRW("t2", 120, 100, 130, nil, ckW("x", "x2")),
		), []string{
			`RO r1`, `observing the version of key "y" at ts=100 (absent), before RW t2`,
			`commit timestamp 100 is not greater`,
		}, 1},
		{"RW after an RW that wrote nothing and saw a version above its commit timestamp", ckHist(
			ckRW("w", 0, 100, 1000, nil, ckW("y", "y1")),
			ckReleased("q", 105, 110, ckR("y", "y1")),
			ckRW("t2", 120, 90, 130, nil, ckW("x", "x2")),
		), []string{
			`real-time order violated across keys: RW q`, `key "y" at ts=100 ("y1"), before RW t2`,
			`commit timestamp 90 is not greater`,
		}, 1},
		{"one report per pair: the per-key report stands for the shared key", ckHist(
			// r1 → r2 is reported on key "x" only; t0 → r3 across keys.
			ckRW("t1", 0, 50, 1000, nil, ckW("x", "x1")),
			ckRO("r1", 60, 60, 70, ckR("x", "x1")),
			ckRO("r2", 80, 40, 90, ckAbsent("x")),
			ckRW("t0", 0, 200, 210, nil, ckW("y", "y1")),
			ckRW("t2", 0, 190, 1000, nil, ckW("z", "z1")),
			ckRO("r3", 220, 150, 230, ckAbsent("z")),
		), []string{
			`real-time order violated on key "x": RO r1`,
			`real-time order violated across keys: RW t0`, `before RO r3`,
		}, 2},
		{"versions of unknown timestamp bound nothing", ckHist(
			// u committed (r1 and q saw it) at a timestamp nobody knows,
			// possibly at or below 90, so neither r1 nor q is placed at or
			// above t's commit at 100.
			ckUnknown(ckRW("u", 0, 0, 0, nil, ckW("a", "au"))),
			ckUnknown(ckRW("u2", 0, 0, 0, nil, ckW("b", "bu"))),
			ckRW("t", 0, 100, 1000, nil, ckW("b", "b1")),
			ckRO("r1", 150, 150, 160, ckR("a", "au")),
			ckReleased("q", 150, 160, ckR("a", "au")),
			ckRO("r2", 170, 90, 180, ckR("b", "bu")),
			ckRW("t2", 170, 95, 180, nil, ckW("c", "c2")),
		), nil, 0},
		{"bounded-staleness read is exempt as the later one, not as the earlier", ckHist(
			ckRW("t0", 0, 50, 60, nil, ckW("b", "b0")),
			ckRW("t", 10, 100, 1000, nil, ckW("a", "a1"), ckW("b", "b1")),
			ckStale(ckRO("s1", 110, 100, 120, ckR("a", "a1"))),
			ckStale(ckRO("s2", 130, 90, 140, ckR("b", "b0"))),
			ckRO("r3", 130, 90, 140, ckR("b", "b0")),
		), []string{`across keys: RO s1`, `before RO r3`}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckTxns(tc.h)
			if tc.want == nil {
				if len(got) != 0 {
					t.Fatalf("CheckTxns reported violations in a valid history:\n%s", strings.Join(got, "\n"))
				}
				return
			}
			for _, w := range tc.want {
				if !ckContains(got, w) {
					t.Errorf("no violation contains %q; got:\n%s", w, strings.Join(got, "\n"))
				}
			}
			if len(got) != tc.n {
				t.Errorf("got %d violations, want %d:\n%s", len(got), tc.n, strings.Join(got, "\n"))
			}
		})
	}
}
