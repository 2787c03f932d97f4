package chaos

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/meridiandb/meridian/sim"
	"github.com/meridiandb/meridian/tt"
)

// Check runs every checker that applies to the workloads present in ops.
func Check(ops []Op) []Verdict {
	present := map[string]bool{}
	for _, op := range ops {
		present[op.Workload] = true
	}
	var out []Verdict
	if present[WorkloadBank] {
		out = append(out, CheckBank(ops))
	}
	if present[WorkloadRegister] {
		out = append(out, CheckRegister(ops))
	}
	if present[WorkloadSequential] {
		out = append(out, CheckSequential(ops))
	}
	if present[WorkloadMonotonic] {
		out = append(out, CheckMonotonic(ops))
	}
	if present[WorkloadAppend] {
		out = append(out, CheckAppend(ops))
	}
	if present[WorkloadAcked] {
		out = append(out, CheckAcked(ops))
	}
	if present[WorkloadRegister] || present[WorkloadSequential] || present[WorkloadAcked] {
		out = append(out, CheckExternal(ops))
	}
	return out
}

func verdict(name string, anomalies []Anomaly, stats map[string]int) Verdict {
	return Verdict{Checker: name, Valid: len(anomalies) == 0, Anomalies: anomalies, Stats: stats}
}

// maxAnomalies bounds what one checker reports.
const maxAnomalies = 50

func addAnomaly(as []Anomaly, a Anomaly) []Anomaly {
	if len(as) < maxAnomalies {
		return append(as, a)
	}
	return as
}

// ---------------------------------------------------------------------

// CheckBank: every audit (a strong read-only transaction over all the
// accounts) reads every account and sums to the total the accounts
// started with, and no balance any transaction read is negative.
func CheckBank(ops []Op) Verdict {
	var as []Anomaly
	stats := map[string]int{}
	for _, op := range ops {
		if op.Workload != WorkloadBank || op.Type != OK {
			continue
		}
		switch op.F {
		case "audit":
			stats["audits"]++
			var sum int64
			missing := 0
			accounts := map[string]bool{}
			for _, m := range op.Mops {
				if !m.Found {
					missing++
				}
				accounts[m.Key] = true
				sum += m.Read
			}
			if missing > 0 || len(accounts) != bankAccounts || len(op.Mops) != bankAccounts || sum != bankAccounts*bankInitial {
				as = addAnomaly(as, Anomaly{Kind: "total-not-conserved", Ops: []int{op.Index},
					Message: fmt.Sprintf("audit at ts %d read %d accounts (%d distinct, %d absent) summing to %d, want all %d summing to %d",
						op.TS, len(op.Mops), len(accounts), missing, sum, bankAccounts, bankAccounts*bankInitial)})
			}
		case "transfer":
			stats["transfers"]++
		default:
			continue
		}
		for _, m := range op.Mops {
			if m.F == "r" && m.Read < 0 {
				as = addAnomaly(as, Anomaly{Kind: "negative-balance", Ops: []int{op.Index},
					Message: fmt.Sprintf("%s at ts %d read account %s = %d", op.F, op.TS, m.Key, m.Read)})
			}
		}
	}
	v := verdict("bank", as, stats)
	if stats["audits"] == 0 {
		v.Note = "no audit completed: totals not judged"
	}
	return v
}

// ---------------------------------------------------------------------

// registerState is a register as porcupine sees it: absent, or a value.
type registerState struct {
	found bool
	v     int64
}

type registerIn struct {
	f        string // r, w, cas
	v, old   int64
	oldFound bool
}

var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		return [][]porcupine.Operation{history}
	},
	Init: func() any { return registerState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in := state.(registerState), input.(registerIn)
		switch in.f {
		case "w":
			return true, registerState{found: true, v: in.v}
		case "cas":
			if output == nil { // outcome unknown: it may not have happened
				if s.found == in.oldFound && s.v == in.old {
					return true, registerState{found: true, v: in.v}
				}
				return true, s
			}
			if s.found == in.oldFound && s.v == in.old {
				return true, registerState{found: true, v: in.v}
			}
			return false, s
		default:
			out := output.(registerState)
			return out == s, s
		}
	},
	Equal: func(a, b any) bool { return a.(registerState) == b.(registerState) },
	DescribeOperation: func(input, output any) string {
		in := input.(registerIn)
		switch in.f {
		case "w":
			return fmt.Sprintf("write(%d)", in.v)
		case "cas":
			return fmt.Sprintf("cas(%d → %d)", in.old, in.v)
		}
		o := output.(registerState)
		if !o.found {
			return "read() → absent"
		}
		return fmt.Sprintf("read() → %d", o.v)
	},
}

// CheckRegister checks each register key's history for linearizability
// (porcupine): reads, writes and compare-and-sets (read-modify-writes)
// with unique values. Writes of unknown outcome may take effect at any
// point after their invocation, or never.
func CheckRegister(ops []Op) Verdict {
	byKey := map[string][]porcupine.Operation{}
	idx := map[string][]int{}
	for _, op := range ops {
		if op.Workload != WorkloadRegister || op.Type == Fail || len(op.Mops) != 1 {
			continue
		}
		m := op.Mops[0]
		ret := op.Complete
		if op.Type == Info {
			if m.F == "r" {
				continue // a read that did not answer observed nothing
			}
			ret = math.MaxInt64
		}
		var in registerIn
		var out any
		switch m.F {
		case "w":
			in = registerIn{f: "w", v: m.Value}
		case "cas":
			in = registerIn{f: "cas", v: m.Value, old: m.Old, oldFound: m.Found}
			if op.Type == OK {
				out = registerState{found: true, v: m.Value}
			}
		default:
			in = registerIn{f: "r"}
			out = registerState{found: m.Found, v: m.Read}
		}
		byKey[m.Key] = append(byKey[m.Key], porcupine.Operation{ClientId: op.Process, Input: in, Call: op.Invoke, Output: out, Return: ret})
		idx[m.Key] = append(idx[m.Key], op.Index)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var as []Anomaly
	stats := map[string]int{"keys": len(keys)}
	unknown := 0
	for _, k := range keys {
		stats["ops"] += len(byKey[k])
		res, info := porcupine.CheckOperationsVerbose(registerModel, byKey[k], 30*time.Second)
		switch res {
		case porcupine.Illegal:
			msg := fmt.Sprintf("key %s: %d operations are not linearizable", k, len(byKey[k]))
			excerpt := idx[k]
			if parts := info.PartialLinearizations(); len(parts) > 0 && len(parts[0]) > 0 {
				longest := parts[0][0]
				for _, p := range parts[0] {
					if len(p) > len(longest) {
						longest = p
					}
				}
				excerpt = registerExcerpt(byKey[k], idx[k], longest)
				msg += fmt.Sprintf(" (the longest linearizable prefix orders %d of them; the excerpt is its last %d and the %d operations "+
					"left that began before any of those left had returned)", len(longest), min(len(longest), excerptTail),
					len(excerpt)-min(len(longest), excerptTail))
			}
			as = addAnomaly(as, Anomaly{Kind: "not-linearizable", Message: msg, Ops: excerpt})
		case porcupine.Unknown:
			unknown++
		}
	}
	v := verdict("register", as, stats)
	if unknown > 0 {
		v.Note = fmt.Sprintf("the search timed out on %d keys: not judged", unknown)
	}
	return v
}

// ---------------------------------------------------------------------

// CheckSequential: a writer writes key A of a pair, then (once A is
// acknowledged) key B with the same value; a reader that reads B and then
// A must not find B's value newer than A's (B's write without A's), and
// the commit timestamps follow real time (A's below B's).
func CheckSequential(ops []Op) Verdict {
	var as []Anomaly
	stats := map[string]int{}
	byProc := map[int][]Op{}
	for _, op := range ops {
		if op.Workload == WorkloadSequential {
			byProc[op.Process] = append(byProc[op.Process], op)
		}
	}
	procs := make([]int, 0, len(byProc))
	for p := range byProc {
		procs = append(procs, p)
	}
	slices.Sort(procs)
	for _, p := range procs {
		seq := byProc[p]
		for i := 0; i+1 < len(seq); i++ {
			a, b := seq[i], seq[i+1]
			if a.Type != OK || b.Type != OK || len(a.Mops) != 1 || len(b.Mops) != 1 {
				continue
			}
			ma, mb := a.Mops[0], b.Mops[0]
			pa, ka := seqPair(ma.Key)
			pb, kb := seqPair(mb.Key)
			switch {
			case a.F == "read" && b.F == "read" && ka == "b" && kb == "a" && pa == pb:
				stats["read pairs"]++
				if ma.Found && (!mb.Found || mb.Read < ma.Read) {
					got := "absent"
					if mb.Found {
						got = strconv.FormatInt(mb.Read, 10)
					}
					as = addAnomaly(as, Anomaly{Kind: "B-without-A", Ops: []int{a.Index, b.Index},
						Message: fmt.Sprintf("read %s = %d, then %s = %s: the write of B was seen without the write of A before it", ma.Key, ma.Read, mb.Key, got)})
				}
			case a.F == "write" && b.F == "write" && ka == "a" && kb == "b" && pa == pb && ma.Value == mb.Value:
				stats["write pairs"]++
				if a.TS != 0 && b.TS != 0 && b.TS <= a.TS {
					as = addAnomaly(as, Anomaly{Kind: "timestamp-order", Ops: []int{a.Index, b.Index},
						Message: fmt.Sprintf("A (%s) committed at %d and was acknowledged before B (%s) began, yet B committed at %d", ma.Key, a.TS, mb.Key, b.TS)})
				}
			}
		}
	}
	return verdict("sequential", as, stats)
}

// seqPair splits a sequential key (runner.seqKeys: "<shard prefix>/
// sequential/<pair>-a" or "-b") into its pair and its side ("a", "b";
// "" for other keys).
func seqPair(key string) (pair, side string) {
	_, rest, ok := strings.Cut(key, "/"+WorkloadSequential+"/")
	if !ok {
		return "", ""
	}
	pair, side, ok = strings.Cut(rest, "-")
	if !ok || (side != "a" && side != "b") {
		return "", ""
	}
	return pair, side
}

// ---------------------------------------------------------------------

// CheckMonotonic: a counter's strong reads never go back in real time (a
// read that began after another read returned, or after an increment was
// acknowledged, sees at least that value, by any reader at any node), and
// no two acknowledged increments wrote the same value (a lost update).
func CheckMonotonic(ops []Op) Verdict {
	type read struct {
		invoke, complete int64
		v                int64
		index            int
	}
	reads := map[string][]read{}
	bounds := map[string][]read{} // completed reads and acknowledged increments
	written := map[string]map[int64]int{}
	var as []Anomaly
	stats := map[string]int{}
	for _, op := range ops {
		if op.Workload != WorkloadMonotonic || op.Type != OK {
			continue
		}
		for _, m := range op.Mops {
			switch {
			case op.F == "read" && m.F == "r":
				v := int64(0)
				if m.Found {
					v = m.Read
				}
				reads[m.Key] = append(reads[m.Key], read{op.Invoke, op.Complete, v, op.Index})
				bounds[m.Key] = append(bounds[m.Key], read{op.Invoke, op.Complete, v, op.Index})
				stats["reads"]++
			case m.F == "w":
				stats["increments"]++
				if written[m.Key] == nil {
					written[m.Key] = map[int64]int{}
				}
				if j, dup := written[m.Key][m.Value]; dup {
					as = addAnomaly(as, Anomaly{Kind: "lost-update", Ops: []int{j, op.Index},
						Message: fmt.Sprintf("two acknowledged increments both wrote %s = %d", m.Key, m.Value)})
				}
				written[m.Key][m.Value] = op.Index
				bounds[m.Key] = append(bounds[m.Key], read{op.Invoke, op.Complete, m.Value, op.Index})
			}
		}
	}
	keys := make([]string, 0, len(reads))
	for k := range reads {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		rs := reads[k]
		byComplete := slices.Clone(bounds[k])
		slices.SortFunc(byComplete, func(a, b read) int { return cmp.Compare(a.complete, b.complete) })
		byInvoke := slices.Clone(rs)
		slices.SortFunc(byInvoke, func(a, b read) int { return cmp.Compare(a.invoke, b.invoke) })
		best, j := -1, 0
		for _, r := range byInvoke {
			for ; j < len(byComplete) && byComplete[j].complete < r.invoke; j++ {
				if best < 0 || byComplete[j].v > byComplete[best].v {
					best = j
				}
			}
			if best >= 0 && byComplete[best].v > r.v {
				b := byComplete[best]
				as = addAnomaly(as, Anomaly{Kind: "read-went-back", Ops: []int{b.index, r.index},
					Message: fmt.Sprintf("%s: %d was read or written, and a read that began after that returned %d", k, b.v, r.v)})
			}
		}
	}
	return verdict("monotonic", as, stats)
}

// ---------------------------------------------------------------------

// CheckAcked: every write of the acked workload that was acknowledged is
// present after healing (the final reads); writes of unknown outcome are
// counted, present or not.
func CheckAcked(ops []Op) Verdict {
	final := map[string]Mop{}
	finalOp := map[string]int{}
	for _, op := range ops {
		if op.Workload == WorkloadAcked && op.F == "final-read" && op.Type == OK {
			final[op.Mops[0].Key] = op.Mops[0]
			finalOp[op.Mops[0].Key] = op.Index
		}
	}
	var as []Anomaly
	stats := map[string]int{}
	for _, op := range ops {
		if op.Workload != WorkloadAcked || op.F != "write" || op.Type == Fail {
			continue
		}
		m := op.Mops[0]
		r, read := final[m.Key]
		switch {
		case op.Type == OK:
			stats["acknowledged"]++
			if !read {
				as = addAnomaly(as, Anomaly{Kind: "not-read-back", Ops: []int{op.Index},
					Message: fmt.Sprintf("acknowledged write of %s was never read back", m.Key)})
			} else if !r.Found || r.Read != m.Value {
				as = addAnomaly(as, Anomaly{Kind: "lost-write", Ops: []int{op.Index, finalOp[m.Key]},
					Message: fmt.Sprintf("acknowledged write %s = %d is gone after healing", m.Key, m.Value)})
			}
		case read && r.Found:
			stats["unknown, present"]++
		default:
			stats["unknown, absent"]++
		}
	}
	return verdict("acked", as, stats)
}

// excerptTail is how many of the last linearized operations a register
// anomaly's excerpt keeps.
const excerptTail = 8

// registerExcerpt is the part of a key's history around where
// linearization gets stuck: the last operations of the longest
// linearizable prefix, and the operations not in it that had begun
// before the first of them returned (those among which no next
// operation can be chosen).
func registerExcerpt(ops []porcupine.Operation, idx []int, prefix []int) []int {
	in := make(map[int]bool, len(prefix))
	for _, i := range prefix {
		in[i] = true
	}
	firstReturn := int64(math.MaxInt64)
	for i, op := range ops {
		if !in[i] {
			firstReturn = min(firstReturn, op.Return)
		}
	}
	var out []int
	for _, i := range prefix[max(0, len(prefix)-excerptTail):] {
		out = append(out, idx[i])
	}
	for i, op := range ops {
		if !in[i] && op.Call <= firstReturn {
			out = append(out, idx[i])
		}
	}
	slices.Sort(out)
	return out
}

// ---------------------------------------------------------------------

// CheckExternal judges the register, sequential and acked ops together
// with the simulator's external-consistency checker (sim.CheckTxns): real
// time implies timestamp order, across keys too; every read returns the
// latest write at or below its timestamp; no lost update.
func CheckExternal(ops []Op) Verdict {
	var h []sim.TxnRecord
	var back []int
	for _, op := range ops {
		switch op.Workload {
		case WorkloadRegister, WorkloadSequential, WorkloadAcked:
		default:
			continue
		}
		if op.Type == Fail || (op.Type == Info && op.F != "write" && op.F != "cas") {
			continue
		}
		rec := sim.TxnRecord{ID: fmt.Sprintf("op%d", op.Index), Kind: sim.ReadOnly, Invoke: tt.Timestamp(op.Invoke),
			TS: tt.Timestamp(op.TS), Committed: op.Type == OK, Unknown: op.Type == Info}
		if op.Type == OK {
			rec.Complete = tt.Timestamp(op.Complete)
		}
		for _, m := range op.Mops {
			switch m.F {
			case "w":
				rec.Kind = sim.ReadWrite
				rec.Writes = append(rec.Writes, sim.WriteOp{Key: m.Key, Value: extValue(m.Key, m.Value)})
			case "cas":
				rec.Kind = sim.ReadWrite
				if op.Type == OK {
					rec.Reads = append(rec.Reads, sim.ReadObs{Key: m.Key, Found: m.Found, Value: extValue(m.Key, m.Old)})
				}
				rec.Writes = append(rec.Writes, sim.WriteOp{Key: m.Key, Value: extValue(m.Key, m.Value)})
			case "r":
				o := sim.ReadObs{Key: m.Key, Found: m.Found}
				if m.Found {
					o.Value = extValue(m.Key, m.Read)
				}
				rec.Reads = append(rec.Reads, o)
			}
		}
		if rec.Committed && rec.TS == 0 {
			continue // a timestamp the client did not learn: nothing to order by
		}
		h = append(h, rec)
		back = append(back, op.Index)
	}
	var as []Anomaly
	for _, msg := range sim.CheckTxns(h) {
		as = addAnomaly(as, Anomaly{Kind: externalKind(msg), Message: msg, Ops: opsNamed(msg, h, back)})
	}
	return verdict("external", as, map[string]int{"transactions": len(h)})
}

func extValue(key string, v int64) string { return key + "=" + strconv.FormatInt(v, 10) }

// externalKind is the kind of a sim.CheckTxns message: its words before
// the colon, without the key they name ("real time order violated on key
// "x"" is "real-time-order-violated").
func externalKind(msg string) string {
	if strings.HasPrefix(msg, "...") {
		return "more"
	}
	kind, _, _ := strings.Cut(msg, ":")
	kind, _, _ = strings.Cut(kind, " on key ")
	return strings.ReplaceAll(kind, " ", "-")
}

// opsNamed returns the history indexes of the records a sim message names.
func opsNamed(msg string, h []sim.TxnRecord, back []int) []int {
	var out []int
	for i, r := range h {
		if strings.Contains(msg, r.ID+" ") {
			out = append(out, back[i])
		}
	}
	sort.Ints(out)
	return out
}
