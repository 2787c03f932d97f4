package sim

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/meridiandb/meridian/tt"
)

// MaxViolations bounds the messages CheckTxns, CheckFinal and CheckBank
// return: the first MaxViolations, then one line counting the rest.
const MaxViolations = 50

// External-consistency checker.
//
// CheckTxns verifies a history of transactions (TxnRecord) against the
// promise of architecture invariants 5–9: the history is strictly
// serializable in commit-timestamp order. The semantics it assumes:
//
//   - Every value written in a run is unique, so a read that found a value
//     names its writer. A read that found nothing saw the initial state
//     (absent) or a delete.
//   - A definite abort (neither Committed nor Unknown) is ignored entirely,
//     except that reading one of its values is a violation.
//   - A Committed read-write transaction committed at TS. Its reads were
//     taken under locks and are serializable at TS: each returns the newest
//     committed write to its key with timestamp < TS (strictly: its own
//     writes are buffered, never read back), or absent if there is none or
//     the newest is a delete.
//   - A Committed read-only transaction read a snapshot at TS: each read
//     returns the newest committed write with timestamp <= TS.
//   - An Unknown read-write transaction counts as committed when any read
//     (of a committed or unknown-outcome transaction) observed one of its
//     values; it is then checked like a committed one. If its TS is zero its
//     timestamp is unknown, and timestamp checks involving its writes are
//     skipped. An Unknown transaction nobody observed is treated as not
//     committed, except that its deletes may have happened: an absent read
//     that such a delete could explain is not reported.
//
// The checks, each reporting the transactions involved:
//
//	(a) real-time order implies timestamp order. Between RW transactions
//	    the rule is on timestamps: a committed RW T1 that completed before a
//	    committed RW T2 was invoked has T1.TS < T2.TS. Per key: an RO R
//	    invoked after T1 completed reads every key T1 wrote at R.TS >=
//	    T1.TS (R sees T1); an RO R that completed before RW T2 was invoked
//	    read every key T2 writes at R.TS < T2.TS; an RO that starts after
//	    another RO completed never reads a key at a timestamp below a
//	    version of it the first had already observed. Across keys, with
//	    intervals: a strong RO R's snapshot is valid at any effective
//	    timestamp in [R.TS, hi(R)), where hi(R) is the lowest timestamp of a
//	    version newer than R.TS of any key R read; a transaction X that
//	    completed sits at or after lo(X): its commit timestamp (RW), or the
//	    newest version it observed (RO, or RW that wrote nothing). If X
//	    completed before R was invoked, lo(X) < hi(R): otherwise R read a
//	    version that was already overwritten at or before a version or
//	    commit X had established, and R, which started after X returned,
//	    is ordered before it. If an RO, or an RW that wrote nothing,
//	    completed before RW T2 was invoked, lo(X) < T2.TS: X observed no
//	    version at or after the commit of a transaction that had not begun.
//	    The cross-key rule bounds R by hi(R), not R.TS, for Spanner's LastTS:
//	    a single-group RO reads at its group's last commit timestamp, which
//	    may lie below the timestamp of an unrelated commit X in another
//	    group that completed before R began. That is strictly serializable
//	    as long as nothing R read changed between R.TS and X.TS (the group
//	    committed nothing since R.TS, and what it commits later gets a
//	    timestamp above the current time, so above X.TS by commit wait): R
//	    can be placed after X, anywhere below hi(R). R.TS < lo(X) alone is
//	    therefore no violation; a version in (R.TS, lo(X)] of a key R read
//	    is, such as a commit chosen below X.TS that was still in its commit
//	    wait when R picked the group's last commit timestamp. Bounded-
//	    staleness reads are exempt as the later transaction.
//	(b) every read returns the newest write at or below its read timestamp;
//	    reads of values never written, of aborted writes, of a value written
//	    to another key, or of a value the writer overwrote itself are
//	    reported too.
//	(c) no acknowledged write is lost: implied by (b) when the workload ends
//	    with reads of every key; CheckFinal checks a final state directly.
//	(d) two committed RW transactions with the same commit timestamp never
//	    write the same key (ties across disjoint keys are allowed: Spanner
//	    timestamps are unique per group, not globally).
//	(e) a committed RW transaction that wrote nothing (Released) has no
//	    timestamp, but its reads were protected together, so some timestamp
//	    explains them all: each version it found was the newest of its key
//	    from its own timestamp until the key's next known version, and these
//	    intervals meet, within its real time [Invoke, Complete] (a version
//	    it read committed before the read, by commit wait; the next one
//	    took its lock after the release, so its timestamp is later).
//
// CheckBank checks the bank workload's invariant on top.
//
// Every check sorts and sweeps; none compares all pairs, so a history of
// 50k transactions checks in well under a second.

// chkViolations collects at most MaxViolations messages and counts the rest.
type chkViolations struct {
	msgs []string
	n    int
}

func (v *chkViolations) addf(format string, args ...any) {
	v.n++
	if len(v.msgs) < MaxViolations {
		v.msgs = append(v.msgs, fmt.Sprintf(format, args...))
	}
}

func (v *chkViolations) result() []string {
	if v.n > len(v.msgs) {
		v.msgs = append(v.msgs, fmt.Sprintf("... and %d more violations (%d in total)", v.n-len(v.msgs), v.n))
	}
	return v.msgs
}

// chkWrite names one WriteOp: h[txn].Writes[op].
type chkWrite struct {
	txn, op int
}

// chkVersion is a committed write with a known timestamp, one version of a key.
type chkVersion struct {
	ts  tt.Timestamp
	txn int
	op  int
	del bool
}

// chkObs is a version of a key an RO transaction observed, or a read an RO
// transaction made, placed in real time (for the per-key real-time check).
type chkObs struct {
	key  int
	at   tt.Timestamp // Complete of the observer, Invoke of the reader
	ts   tt.Timestamp // the version's timestamp (observer), the read timestamp (reader)
	txn  int
	read int
}

// chkIndex is what the checks share: writes by value, which unknown
// transactions were observed, and each key's committed versions.
type chkIndex struct {
	h         []TxnRecord
	byValue   map[string]chkWrite   // every non-delete write of an RW record, by value
	shadowed  map[chkWrite]struct{} // writes overwritten later in the same transaction
	dupValue  []chkWrite            // writes whose value an earlier write already used
	evidenced []bool                // Unknown RW transactions whose values were observed
	keyID     map[string]int
	keys      []string
	// versions holds, per key id, the effective writes of committed
	// transactions with a known timestamp, sorted by (ts, txn).
	versions [][]chkVersion
	// unknownTS holds, per key id, the effective writes of committed
	// transactions whose timestamp is unknown (zero).
	unknownTS [][]chkWrite
	// maybeDel holds, per key id, the timestamps of deletes that may have
	// committed at a time the checker cannot place: deletes of unobserved
	// Unknown transactions (at their TS if known), and deletes with unknown
	// timestamps. Sorted; unknown timestamps are counted in anyDel instead.
	maybeDel [][]tt.Timestamp
	anyDel   []bool // per key id: some maybe-delete has an unknown timestamp
	// ordered holds the (earlier, later) pairs of records the per-key
	// real-time checks reported, so the cross-key check does not report
	// them again.
	ordered map[[2]int]struct{}
}

// noteOrdered records that a real-time violation between records earlier
// and later was reported.
func (x *chkIndex) noteOrdered(earlier, later int) {
	if x.ordered == nil {
		x.ordered = map[[2]int]struct{}{}
	}
	x.ordered[[2]int{earlier, later}] = struct{}{}
}

func (x *chkIndex) key(k string) int {
	id, ok := x.keyID[k]
	if !ok {
		id = len(x.keys)
		x.keyID[k] = id
		x.keys = append(x.keys, k)
		x.versions = append(x.versions, nil)
		x.unknownTS = append(x.unknownTS, nil)
		x.maybeDel = append(x.maybeDel, nil)
		x.anyDel = append(x.anyDel, false)
	}
	return id
}

// participates reports whether record i's reads are evidence: it committed
// or its outcome is unknown.
func (x *chkIndex) participates(i int) bool { return x.h[i].Committed || x.h[i].Unknown }

// aborted reports whether record i is a definite abort.
func (x *chkIndex) aborted(i int) bool { return !x.h[i].Committed && !x.h[i].Unknown }

// committed reports whether record i counts as committed: told so, or an
// Unknown RW transaction whose values were observed.
func (x *chkIndex) committed(i int) bool {
	t := &x.h[i]
	return t.Committed || (t.Kind == ReadWrite && t.Unknown && x.evidenced[i])
}

// newChkIndex indexes h. extra lists further observed values (a final
// state) that count as evidence that an Unknown writer committed.
func newChkIndex(h []TxnRecord, extra []string) *chkIndex {
	x := &chkIndex{
		h:         h,
		byValue:   make(map[string]chkWrite, len(h)),
		shadowed:  map[chkWrite]struct{}{},
		evidenced: make([]bool, len(h)),
		keyID:     make(map[string]int),
	}
	seen := map[string]struct{}{}
	for i := range h {
		t := &h[i]
		for _, r := range t.Reads {
			x.key(r.Key)
		}
		if t.Kind != ReadWrite {
			continue
		}
		clear(seen)
		for j := len(t.Writes) - 1; j >= 0; j-- {
			w := t.Writes[j]
			x.key(w.Key)
			ref := chkWrite{i, j}
			if _, dup := seen[w.Key]; dup {
				x.shadowed[ref] = struct{}{}
			}
			seen[w.Key] = struct{}{}
		}
		for j, w := range t.Writes {
			if w.Delete {
				continue
			}
			ref := chkWrite{i, j}
			if _, dup := x.byValue[w.Value]; dup {
				x.dupValue = append(x.dupValue, ref)
				continue
			}
			x.byValue[w.Value] = ref
		}
	}
	mark := func(value string) {
		if w, ok := x.byValue[value]; ok && h[w.txn].Unknown && !h[w.txn].Committed {
			x.evidenced[w.txn] = true
		}
	}
	for i := range h {
		if !x.participates(i) {
			continue
		}
		for _, r := range h[i].Reads {
			if r.Found {
				mark(r.Value)
			}
		}
	}
	for _, v := range extra {
		mark(v)
	}
	for i := range h {
		t := &h[i]
		if t.Kind != ReadWrite || x.aborted(i) {
			continue
		}
		committed := x.committed(i)
		for j, w := range t.Writes {
			if _, ok := x.shadowed[chkWrite{i, j}]; ok {
				continue
			}
			k := x.keyID[w.Key]
			switch {
			case committed && t.TS != 0:
				x.versions[k] = append(x.versions[k], chkVersion{ts: t.TS, txn: i, op: j, del: w.Delete})
			case committed:
				x.unknownTS[k] = append(x.unknownTS[k], chkWrite{i, j})
				if w.Delete {
					x.anyDel[k] = true
				}
			case w.Delete && t.TS != 0:
				x.maybeDel[k] = append(x.maybeDel[k], t.TS)
			case w.Delete:
				x.anyDel[k] = true
			}
		}
	}
	for k := range x.keys {
		slices.SortFunc(x.versions[k], func(a, b chkVersion) int {
			return cmp.Or(cmp.Compare(a.ts, b.ts), cmp.Compare(a.txn, b.txn))
		})
		slices.Sort(x.maybeDel[k])
	}
	return x
}

// latestAt returns the index in vs of the newest version below ts (strict)
// or at or below ts, or -1 when there is none.
func latestAt(vs []chkVersion, ts tt.Timestamp, strict bool) int {
	n := sort.Search(len(vs), func(i int) bool {
		if strict {
			return vs[i].ts >= ts
		}
		return vs[i].ts > ts
	})
	return n - 1
}

// deleteMaybeIn reports whether a delete of key k whose commit or timestamp
// the checker cannot place may lie in (lo, hi) (or (lo, hi] unless strict).
func (x *chkIndex) deleteMaybeIn(k int, lo, hi tt.Timestamp, strict bool) bool {
	if x.anyDel[k] {
		return true
	}
	ds := x.maybeDel[k]
	i := sort.Search(len(ds), func(i int) bool { return ds[i] > lo })
	return i < len(ds) && (ds[i] < hi || !strict && ds[i] == hi)
}

// describeTxn formats record i of h for a report.
func describeTxn(h []TxnRecord, i int) string {
	t := &h[i]
	kind := "RW"
	if t.Kind == ReadOnly {
		kind = "RO"
	}
	id := t.ID
	if id == "" {
		id = fmt.Sprintf("#%d", i)
	}
	state := ""
	switch {
	case t.Committed:
	case t.Unknown:
		state = ", outcome unknown"
	default:
		state = ", aborted"
	}
	complete := "?"
	if t.Complete != 0 {
		complete = strconv.FormatInt(int64(t.Complete), 10)
	}
	return fmt.Sprintf("%s %s (ts=%d, real time [%d, %s]%s)", kind, id, int64(t.TS), int64(t.Invoke), complete, state)
}

func (x *chkIndex) desc(i int) string { return describeTxn(x.h, i) }

// descVersion formats what a read of version v returns and who wrote it.
func (x *chkIndex) descVersion(v chkVersion) string {
	if v.del {
		return "absent (deleted by " + x.desc(v.txn) + ")"
	}
	return fmt.Sprintf("%q (written by %s)", x.h[v.txn].Writes[v.op].Value, x.desc(v.txn))
}

// versionOf returns the index in x.versions of the version a found read
// returned, or -1 when the read found nothing, its writer's timestamp is
// unknown, or the value is no version of the key (checkReads reports that).
func (x *chkIndex) versionOf(r ReadObs) int {
	w, ok := x.byValue[r.Value]
	if !r.Found || !ok {
		return -1
	}
	// versions is sorted by (ts, txn) and holds only committed writes of
	// known timestamp.
	vs := x.versions[x.keyID[r.Key]]
	j, found := slices.BinarySearchFunc(vs, w, func(v chkVersion, w chkWrite) int {
		return cmp.Or(cmp.Compare(v.ts, x.h[w.txn].TS), cmp.Compare(v.txn, w.txn))
	})
	if !found || vs[j].op != w.op {
		return -1
	}
	return j
}

func descRead(r ReadObs) string {
	if !r.Found {
		return "absent"
	}
	return strconv.Quote(r.Value)
}

// checkOrigin reports a found value whose writer is impossible: never
// written, aborted, written to another key, overwritten by its own
// transaction, or written by the reader itself. It returns the writer and
// whether the value is a legitimate committed version of the key. reader is
// the reading record, or -1 for a final state.
func (x *chkIndex) checkOrigin(v *chkViolations, reader int, key, value string) (chkWrite, bool) {
	what := func() string {
		if reader < 0 {
			return fmt.Sprintf("final state key %q", key)
		}
		return fmt.Sprintf("%s read key %q", x.desc(reader), key)
	}
	w, ok := x.byValue[value]
	if !ok {
		v.addf("read of a value never written: %s = %q, which no transaction wrote", what(), value)
		return w, false
	}
	wop := x.h[w.txn].Writes[w.op]
	_, shadowed := x.shadowed[w]
	switch {
	case x.aborted(w.txn):
		v.addf("read of an aborted write: %s = %q, written by %s", what(), value, x.desc(w.txn))
	case wop.Key != key:
		v.addf("read of another key's value: %s = %q, which %s wrote to key %q", what(), value, x.desc(w.txn), wop.Key)
	case shadowed:
		v.addf("read of an intermediate value: %s = %q, which %s overwrote in the same transaction", what(), value, x.desc(w.txn))
	case w.txn == reader:
		v.addf("read of its own buffered write: %s = %q, a value it wrote itself", what(), value)
	default:
		return w, true
	}
	return w, false
}

// CheckTxns checks a history for external consistency (checks (a), (b) and
// (d) above) and returns human-readable violations, at most MaxViolations
// plus a count of the rest; none means the history is consistent.
func CheckTxns(h []TxnRecord) []string {
	var v chkViolations
	x := newChkIndex(h, nil)
	x.checkForm(&v)
	obs, rds := x.checkReads(&v)
	x.checkRealTime(&v)
	x.checkROVisibility(&v, obs, rds)
	x.checkRealTimeGlobal(&v, obs)
	x.checkTies(&v)
	x.checkLostUpdates(&v)
	x.checkReleased(&v)
	return v.result()
}

// checkReleased is check (e). Absent reads name no single version and
// constrain nothing; versions of unknown timestamp are left out, which
// can only widen the intervals, so nothing consistent is reported.
func (x *chkIndex) checkReleased(v *chkViolations) {
	for i := range x.h {
		t := &x.h[i]
		if !t.Released || !t.Committed {
			continue
		}
		lo, hi := tt.Timestamp(0), tt.MaxTimestamp
		var from, until ReadObs
		for _, r := range t.Reads {
			j := x.versionOf(r)
			if j < 0 {
				continue // absent, unknown timestamp, or not a version of this key
			}
			vs := x.versions[x.keyID[r.Key]]
			if vs[j].ts > lo {
				lo, from = vs[j].ts, r
			}
			if j+1 < len(vs) && vs[j+1].ts < hi {
				hi, until = vs[j+1].ts, r
			}
		}
		switch {
		case lo >= hi:
			v.addf("reads at no common timestamp: %s wrote nothing and read %q = %s, written at ts=%d, and %q = %s, overwritten at ts=%d",
				x.desc(i), from.Key, descRead(from), int64(lo), until.Key, descRead(until), int64(hi))
		case t.Complete != 0 && lo > t.Complete:
			v.addf("read from the future: %s wrote nothing and read %q = %s, written at ts=%d, after it completed",
				x.desc(i), from.Key, descRead(from), int64(lo))
		case hi <= t.Invoke:
			v.addf("stale read: %s wrote nothing and read %q = %s, already overwritten at ts=%d, before it was invoked",
				x.desc(i), until.Key, descRead(until), int64(hi))
		}
	}
}

// checkLostUpdates catches the lost update without looking at timestamps
// (so it also covers writers whose commit timestamp the client never
// learned): two read-write transactions that both read the same version of
// a key and both wrote that key cannot both have committed in a
// serializable history, since one of them must have read the other's
// write. Absent reads count only on keys never deleted (otherwise "absent"
// names no single version).
func (x *chkIndex) checkLostUpdates(v *chkViolations) {
	type ver struct {
		key, value string
		found      bool
	}
	deleted := map[string]bool{}
	for i := range x.h {
		for _, w := range x.h[i].Writes {
			if w.Delete {
				deleted[w.Key] = true
			}
		}
	}
	first := map[ver]int{}
	for i := range x.h {
		t := &x.h[i]
		if t.Kind != ReadWrite || !x.committed(i) {
			continue
		}
		writes := map[string]bool{}
		for _, w := range t.Writes {
			writes[w.Key] = true
		}
		for _, r := range t.Reads {
			if !writes[r.Key] || (!r.Found && deleted[r.Key]) {
				continue
			}
			k := ver{r.Key, r.Value, r.Found}
			if j, ok := first[k]; ok && j != i {
				v.addf("lost update on key %q: %s and %s both read %s and both wrote the key",
					r.Key, x.desc(j), x.desc(i), descRead(r))
				continue
			}
			first[k] = i
		}
	}
}

// checkForm reports records the history format forbids: repeated values,
// read-only transactions with writes, committed transactions without a
// timestamp, completions before invocations.
func (x *chkIndex) checkForm(v *chkViolations) {
	for _, d := range x.dupValue {
		first := x.byValue[x.h[d.txn].Writes[d.op].Value]
		v.addf("malformed history: value %q is written by both %s (key %q) and %s (key %q); values must be unique per write",
			x.h[d.txn].Writes[d.op].Value, x.desc(first.txn), x.h[first.txn].Writes[first.op].Key,
			x.desc(d.txn), x.h[d.txn].Writes[d.op].Key)
	}
	for i := range x.h {
		t := &x.h[i]
		if t.Kind == ReadOnly && len(t.Writes) > 0 {
			v.addf("malformed history: read-only %s has %d writes", x.desc(i), len(t.Writes))
		}
		if t.Released && (t.Kind != ReadWrite || len(t.Writes) > 0) {
			v.addf("malformed history: %s is marked as having written nothing but has %d writes", x.desc(i), len(t.Writes))
		}
		if t.Committed && t.TS == 0 && !t.Released {
			v.addf("malformed history: committed %s has no timestamp; its timestamp checks are skipped", x.desc(i))
		}
		if t.Complete != 0 && t.Complete < t.Invoke {
			v.addf("malformed history: %s completed before it was invoked", x.desc(i))
		}
	}
}

// checkReads is check (b). It returns the versions committed RO
// transactions observed (with their completion times) and the reads
// committed RO transactions made (with their invocation times), for
// checkROVisibility.
func (x *chkIndex) checkReads(v *chkViolations) (obs, rds []chkObs) {
	for i := range x.h {
		t := &x.h[i]
		if !x.participates(i) || (t.Kind == ReadOnly && !t.Committed) {
			continue
		}
		tsCheck := x.committed(i) && t.TS != 0
		strict := t.Kind == ReadWrite
		below := "at or below"
		if strict {
			below = "below"
		}
		ro := t.Kind == ReadOnly && tsCheck
		for ri, r := range t.Reads {
			k := x.keyID[r.Key]
			if ro && !t.Stale {
				rds = append(rds, chkObs{key: k, at: t.Invoke, ts: t.TS, txn: i, read: ri})
			}
			vs := x.versions[k]
			if r.Found {
				w, ok := x.checkOrigin(v, i, r.Key, r.Value)
				if !ok || !tsCheck {
					continue
				}
				wts := x.h[w.txn].TS
				if wts == 0 {
					continue // the writer committed at an unknown timestamp
				}
				if wts > t.TS || strict && wts == t.TS {
					v.addf("read of a future write: %s read key %q = %q, written by %s, whose timestamp is not %s the read timestamp %d",
						x.desc(i), r.Key, r.Value, x.desc(w.txn), below, int64(t.TS))
					continue
				}
				j := latestAt(vs, t.TS, strict)
				if vs[j].ts > wts {
					v.addf("stale read: %s read key %q = %q, written by %s, but the latest write %s ts=%d is %s",
						x.desc(i), r.Key, r.Value, x.desc(w.txn), below, int64(t.TS), x.descVersion(vs[j]))
					continue
				}
				if ro && t.Complete != 0 {
					obs = append(obs, chkObs{key: k, at: t.Complete, ts: wts, txn: i, read: ri})
				}
				continue
			}
			if !tsCheck {
				continue
			}
			j := latestAt(vs, t.TS, strict)
			if j < 0 {
				continue // the initial state
			}
			if vs[j].del {
				if ro && t.Complete != 0 {
					obs = append(obs, chkObs{key: k, at: t.Complete, ts: vs[j].ts, txn: i, read: ri})
				}
				continue
			}
			if x.deleteMaybeIn(k, vs[j].ts, t.TS, strict) {
				continue // a delete the checker cannot place may explain it
			}
			v.addf("stale read: %s read key %q = absent, but the latest write %s ts=%d is %s",
				x.desc(i), r.Key, below, int64(t.TS), x.descVersion(vs[j]))
		}
	}
	return obs, rds
}

// chkEvent is a transaction placed in real time for checkRealTime.
type chkEvent struct {
	at  tt.Timestamp
	txn int
}

// checkRealTime is check (a): real-time order implies timestamp order.
//
// Between read-write transactions the rule is global: if T1 completed
// before T2 was invoked, T1.TS < T2.TS (this is what commit wait buys).
// For read-only transactions the read timestamp is held to it per key: a
// strong read-only transaction invoked after T1 completed must read every
// key T1 wrote at a timestamp >= T1.TS, and a read-only transaction that
// completed before T2 was invoked read every key T2 writes at a timestamp
// < T2.TS. A global rule on read timestamps would be too strong: a
// single-group read at the group's last commit timestamp (Spanner's
// LastTS) may sit below the timestamp of an unrelated commit in another
// group and still be strictly serializable; checkRealTimeGlobal orders
// read-only transactions across keys by the versions they read instead.
// Bounded-staleness reads (Stale) read in the past by design and are
// exempt as the later transaction.
func (x *chkIndex) checkRealTime(v *chkViolations) {
	var comps, invs []chkEvent
	for i := range x.h {
		t := &x.h[i]
		if !x.committed(i) || t.TS == 0 || t.Kind != ReadWrite {
			continue
		}
		invs = append(invs, chkEvent{t.Invoke, i})
		// An Unknown transaction's Complete (if any) is when its client gave
		// up, not when it committed: it orders nothing.
		if t.Committed && t.Complete != 0 {
			comps = append(comps, chkEvent{t.Complete, i})
		}
	}
	byTime := func(a, b chkEvent) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.txn, b.txn)) }
	slices.SortFunc(comps, byTime)
	slices.SortFunc(invs, byTime)
	best := -1
	c := 0
	for _, inv := range invs {
		for ; c < len(comps) && comps[c].at < inv.at; c++ {
			if i := comps[c].txn; best < 0 || x.h[i].TS > x.h[best].TS {
				best = i
			}
		}
		if t2 := &x.h[inv.txn]; best >= 0 && x.h[best].TS >= t2.TS {
			v.addf("real-time order violated: %s completed before %s was invoked, but the later one's commit timestamp %d is not greater than %d",
				x.desc(best), x.desc(inv.txn), int64(t2.TS), int64(x.h[best].TS))
		}
	}
	x.checkRealTimeRO(v)
}

// checkRealTimeRO is the per-key read-only part of check (a).
func (x *chkIndex) checkRealTimeRO(v *chkViolations) {
	type ev struct {
		at, ts tt.Timestamp
		txn    int
	}
	writes := map[string][]ev{} // committed RW writes by key: (Complete, TS) and (Invoke, TS)
	invWrites := map[string][]ev{}
	reads := map[string][]ev{} // RO reads by key: (Invoke, TS)
	doneReads := map[string][]ev{}
	for i := range x.h {
		t := &x.h[i]
		if t.TS == 0 {
			continue
		}
		switch {
		case t.Kind == ReadWrite && x.committed(i):
			for _, w := range t.Writes {
				if t.Committed && t.Complete != 0 {
					writes[w.Key] = append(writes[w.Key], ev{t.Complete, t.TS, i})
				}
				invWrites[w.Key] = append(invWrites[w.Key], ev{t.Invoke, t.TS, i})
			}
		case t.Kind == ReadOnly && t.Committed:
			for _, r := range t.Reads {
				if !t.Stale {
					reads[r.Key] = append(reads[r.Key], ev{t.Invoke, t.TS, i})
				}
				if t.Complete != 0 {
					doneReads[r.Key] = append(doneReads[r.Key], ev{t.Complete, t.TS, i})
				}
			}
		}
	}
	byAt := func(a, b ev) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.txn, b.txn)) }
	keys := make([]string, 0, len(reads)+len(doneReads))
	for k := range reads {
		keys = append(keys, k)
	}
	for k := range doneReads {
		if _, ok := reads[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		// RW completed before RO invoked: the read must be at or above it.
		ws, rs := writes[k], reads[k]
		slices.SortFunc(ws, byAt)
		slices.SortFunc(rs, byAt)
		best, w := -1, 0
		for _, r := range rs {
			for ; w < len(ws) && ws[w].at < r.at; w++ {
				if best < 0 || ws[w].ts > ws[best].ts {
					best = w
				}
			}
			if best >= 0 && ws[best].ts > r.ts {
				x.noteOrdered(ws[best].txn, r.txn)
				v.addf("real-time order violated on key %q: %s completed before %s was invoked, but the read timestamp %d is below the commit timestamp %d, so the read cannot see it",
					k, x.desc(ws[best].txn), x.desc(r.txn), int64(r.ts), int64(ws[best].ts))
			}
		}
		// RO completed before RW invoked: the write must be above the read.
		ds, iw := doneReads[k], invWrites[k]
		slices.SortFunc(ds, byAt)
		slices.SortFunc(iw, byAt)
		best, d := -1, 0
		for _, wr := range iw {
			for ; d < len(ds) && ds[d].at < wr.at; d++ {
				if best < 0 || ds[d].ts > ds[best].ts {
					best = d
				}
			}
			if best >= 0 && ds[best].ts >= wr.ts {
				x.noteOrdered(ds[best].txn, wr.txn)
				v.addf("real-time order violated on key %q: %s completed before %s was invoked, but the later one's commit timestamp %d is not greater than the read timestamp %d",
					k, x.desc(ds[best].txn), x.desc(wr.txn), int64(wr.ts), int64(ds[best].ts))
			}
		}
	}
}

// checkROVisibility is the per-key RO-after-RO part of check (a): an RO
// transaction invoked after another RO transaction completed must not read
// a key at a timestamp below a version of that key the first one observed.
// (checkRealTimeGlobal catches this too, across keys; this check names the
// key the two share.) obs and rds come from checkReads.
func (x *chkIndex) checkROVisibility(v *chkViolations, obs, rds []chkObs) {
	byKeyTime := func(a, b chkObs) int {
		return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.at, b.at), cmp.Compare(a.txn, b.txn), cmp.Compare(a.read, b.read))
	}
	slices.SortFunc(obs, byKeyTime)
	slices.SortFunc(rds, byKeyTime)
	o, best := 0, -1
	key := -1
	for _, r := range rds {
		if r.key != key {
			key, best = r.key, -1
			for o < len(obs) && obs[o].key < key {
				o++
			}
		}
		for ; o < len(obs) && obs[o].key == key && obs[o].at < r.at; o++ {
			if best < 0 || obs[o].ts > obs[best].ts {
				best = o
			}
		}
		if best >= 0 && obs[best].ts > r.ts {
			b := obs[best]
			x.noteOrdered(b.txn, r.txn)
			v.addf("real-time order violated on key %q: %s completed after observing the version at ts=%d (%s), before %s was invoked, which read it at ts=%d and got %s",
				x.keys[key], x.desc(b.txn), int64(b.ts), descRead(x.h[b.txn].Reads[b.read]),
				x.desc(r.txn), int64(r.ts), descRead(x.h[r.txn].Reads[r.read]))
		}
	}
}

// chkBound places a transaction in real time for checkRealTimeGlobal with
// a bound on its effective timestamp: as the earlier transaction, at its
// completion with lo, the lowest timestamp it can be serialized at; as the
// later one, at its invocation with hi, the timestamp an RO must be
// serialized below, or an RW's commit timestamp.
type chkBound struct {
	at, ts tt.Timestamp
	txn    int
	// read is the index in Reads of the read behind ts: the newest version
	// an earlier RO (or RW that wrote nothing) observed, the read of a
	// later RO that was replaced first. It is -1 for a commit timestamp.
	read int
	// ver indexes, for a later RO, the versions of that read's key: the
	// version that replaced what it read.
	ver int
}

// checkRealTimeGlobal is the cross-key part of check (a). A strong RO R's
// snapshot is valid at any effective timestamp in [R.TS, hi(R)): hi(R) is
// the lowest timestamp, over the keys R read, of the key's first version
// above R.TS. A completed transaction X is serialized at or after lo(X):
// its commit timestamp (RW), or the newest version it observed (RO, from
// obs; RW that wrote nothing, from its found reads). If X completed before
// R was invoked, lo(X) < hi(R); if X is an RO or wrote nothing and
// completed before RW T2 was invoked, lo(X) < T2.TS (RW after RW is
// checkRealTime's). Versions of unknown timestamp, and deletes the checker
// cannot place, bound nothing: leaving them out only lowers lo and raises
// hi. An Unknown RW's Complete orders nothing (see checkRealTime), so only
// Committed records are earlier ones. Pairs the per-key checks reported
// are not reported again. One sweep in real time, keeping the highest lo.
func (x *chkIndex) checkRealTimeGlobal(v *chkViolations, obs []chkObs) {
	var earlier, later []chkBound
	// Earlier ROs: the newest version each observed. obs holds the
	// versions of known timestamp, consistent by check (b), that committed
	// ROs with a timestamp observed, if they completed.
	roAt := map[int]int{} // txn → index in earlier
	for _, o := range obs {
		e, ok := roAt[o.txn]
		switch {
		case !ok:
			roAt[o.txn] = len(earlier)
			earlier = append(earlier, chkBound{at: o.at, ts: o.ts, txn: o.txn, read: o.read, ver: -1})
		case o.ts > earlier[e].ts:
			earlier[e].ts, earlier[e].read = o.ts, o.read
		}
	}
	for i := range x.h {
		t := &x.h[i]
		if !x.committed(i) {
			continue
		}
		switch {
		case t.Kind == ReadOnly:
			// The later transaction: its snapshot's end.
			if t.Stale || t.TS == 0 {
				continue
			}
			b := chkBound{at: t.Invoke, ts: tt.MaxTimestamp, txn: i, read: -1, ver: -1}
			for ri, r := range t.Reads {
				vs := x.versions[x.keyID[r.Key]]
				if j := latestAt(vs, t.TS, false) + 1; j < len(vs) && vs[j].ts < b.ts {
					b.ts, b.read, b.ver = vs[j].ts, ri, j
				}
			}
			if b.read >= 0 {
				later = append(later, b)
			}
		case t.Released:
			// The earlier transaction: the newest version it found.
			if !t.Committed || t.Complete == 0 {
				continue
			}
			b := chkBound{at: t.Complete, txn: i, read: -1, ver: -1}
			for ri, r := range t.Reads {
				j := x.versionOf(r)
				if j < 0 {
					continue
				}
				if ts := x.versions[x.keyID[r.Key]][j].ts; b.read < 0 || ts > b.ts {
					b.ts, b.read = ts, ri
				}
			}
			if b.read >= 0 {
				earlier = append(earlier, b)
			}
		case t.TS != 0:
			later = append(later, chkBound{at: t.Invoke, ts: t.TS, txn: i, read: -1, ver: -1})
			if t.Committed && t.Complete != 0 {
				earlier = append(earlier, chkBound{at: t.Complete, ts: t.TS, txn: i, read: -1, ver: -1})
			}
		}
	}
	byTime := func(a, b chkBound) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.txn, b.txn)) }
	slices.SortFunc(earlier, byTime)
	slices.SortFunc(later, byTime)
	// Among the transactions completed so far, the highest lo (bestAll),
	// and the highest lo of an RO or an RW that wrote nothing (bestObs).
	bestAll, bestObs, e := -1, -1, 0
	for _, l := range later {
		for ; e < len(earlier) && earlier[e].at < l.at; e++ {
			if bestAll < 0 || earlier[e].ts > earlier[bestAll].ts {
				bestAll = e
			}
			if earlier[e].read >= 0 && (bestObs < 0 || earlier[e].ts > earlier[bestObs].ts) {
				bestObs = e
			}
		}
		rw := x.h[l.txn].Kind == ReadWrite
		best := bestAll
		if rw {
			best = bestObs
		}
		if best < 0 || earlier[best].ts < l.ts || earlier[best].txn == l.txn {
			continue
		}
		b := earlier[best]
		if _, ok := x.ordered[[2]int{b.txn, l.txn}]; ok {
			continue
		}
		first := x.desc(b.txn) + " completed"
		if b.read >= 0 {
			r := x.h[b.txn].Reads[b.read]
			first = fmt.Sprintf("%s completed after observing the version of key %q at ts=%d (%s),",
				x.desc(b.txn), r.Key, int64(b.ts), descRead(r))
		}
		if rw {
			v.addf("real-time order violated across keys: %s before %s was invoked, but the later one's commit timestamp %d is not greater than that version's",
				first, x.desc(l.txn), int64(l.ts))
			continue
		}
		r := x.h[l.txn].Reads[l.read]
		v.addf("real-time order violated across keys: %s before %s was invoked, which read key %q at ts=%d and got %s, replaced at ts=%d by %s: the later one is serialized below ts=%d, the earlier one at or above ts=%d",
			first, x.desc(l.txn), r.Key, int64(x.h[l.txn].TS), descRead(r),
			int64(l.ts), x.descVersion(x.versions[x.keyID[r.Key]][l.ver]), int64(l.ts), int64(b.ts))
	}
}

// checkTies is check (d): committed RW transactions with equal commit
// timestamps never write the same key.
func (x *chkIndex) checkTies(v *chkViolations) {
	for k, vs := range x.versions {
		for j := 1; j < len(vs); j++ {
			if vs[j].ts == vs[j-1].ts && vs[j].txn != vs[j-1].txn {
				v.addf("commit timestamp tie: %s and %s both wrote key %q at ts=%d",
					x.desc(vs[j-1].txn), x.desc(vs[j].txn), x.keys[k], int64(vs[j].ts))
			}
		}
	}
}

// CheckFinal is check (c), no acknowledged write lost: the final state of
// the database (key → value; a missing key is absent) must hold, for every
// key, the value of its highest-timestamp committed write (absent if that
// is a delete). An Unknown transaction counts as committed when its value
// appears in final or was read in h. Where the checker cannot place a write
// (unknown timestamp, or a delete of an unobserved Unknown transaction), it
// accepts either outcome. It returns violations as CheckTxns does.
func CheckFinal(h []TxnRecord, final map[string]string) []string {
	var v chkViolations
	fkeys := make([]string, 0, len(final))
	for k := range final {
		fkeys = append(fkeys, k)
	}
	slices.Sort(fkeys)
	values := make([]string, len(fkeys))
	for i, k := range fkeys {
		values[i] = final[k]
	}
	x := newChkIndex(h, values)
	for _, k := range fkeys {
		x.key(k)
	}
	for k, key := range x.keys {
		vs := x.versions[k]
		value, present := final[key]
		if present {
			w, ok := x.checkOrigin(&v, -1, key, value)
			if !ok {
				continue
			}
			wts := x.h[w.txn].TS
			if wts == 0 {
				continue // committed at an unknown timestamp
			}
			if top := vs[len(vs)-1]; top.ts > wts {
				v.addf("lost write: final state key %q = %q, written by %s, but the highest committed write is %s",
					key, value, x.desc(w.txn), x.descVersion(top))
			}
			continue
		}
		if len(vs) > 0 {
			top := vs[len(vs)-1]
			if !top.del && !x.deleteMaybeIn(k, top.ts, tt.MaxTimestamp, false) {
				v.addf("lost write: final state key %q is absent, but the highest committed write is %s", key, x.descVersion(top))
			}
			continue
		}
		if x.anyDel[k] || len(x.maybeDel[k]) > 0 {
			continue
		}
		for _, w := range x.unknownTS[k] {
			if !x.h[w.txn].Writes[w.op].Delete {
				v.addf("lost write: final state key %q is absent, but %s committed %q to it", key, x.desc(w.txn), x.h[w.txn].Writes[w.op].Value)
				break
			}
		}
	}
	return v.result()
}

// BankAmount parses a bank account value "<amount>#<uniq>" (a bare decimal
// integer is accepted too).
func BankAmount(value string) (int64, error) {
	s, _, _ := strings.Cut(value, "#")
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bank: account value %q is not \"<amount>#<uniq>\"", value)
	}
	return n, nil
}

// CheckBank checks the bank workload's invariant (check (d) of the
// architecture's list): every committed transaction that read all the
// accounts saw them sum to total. Read-only transactions are the audits;
// a committed read-write transaction's reads are a snapshot below its
// commit timestamp, so one that read every account is held to the same
// rule. An absent account counts as 0, except that a transaction that found
// no account at all (before the accounts were created) is skipped. A value
// that does not parse is reported too.
func CheckBank(h []TxnRecord, accounts []string, total int64) []string {
	var v chkViolations
	pos := make(map[string]int, len(accounts))
	names := make([]string, 0, len(accounts))
	for _, a := range accounts {
		if _, ok := pos[a]; !ok {
			pos[a] = len(names)
			names = append(names, a)
		}
	}
	if len(names) == 0 {
		return nil
	}
	vals := make([]ReadObs, len(names))
	seen := make([]bool, len(names))
	for i := range h {
		t := &h[i]
		if !t.Committed || len(t.Reads) < len(names) {
			continue
		}
		clear(seen)
		count, present := 0, 0
		for _, r := range t.Reads {
			p, ok := pos[r.Key]
			if !ok || seen[p] {
				continue
			}
			seen[p] = true
			vals[p] = r
			count++
			if r.Found {
				present++
			}
		}
		if count < len(names) || present == 0 {
			continue
		}
		var sum int64
		bad := false
		for p, r := range vals {
			if !r.Found {
				continue
			}
			n, err := BankAmount(r.Value)
			if err != nil {
				v.addf("bank: %s read account %q: %v", describeTxn(h, i), names[p], err)
				bad = true
				continue
			}
			sum += n
		}
		if bad || sum == total {
			continue
		}
		var b strings.Builder
		for p, r := range vals {
			if p == 8 {
				fmt.Fprintf(&b, ", ... (%d accounts)", len(vals))
				break
			}
			if p > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s=%s", names[p], descRead(r))
		}
		v.addf("bank: %s read all %d accounts summing to %d, want %d: %s", describeTxn(h, i), len(names), sum, total, b.String())
	}
	return v.result()
}
