package chaos

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests hand every checker of check.go (and checkLiveness of run.go)
// histories built op by op in the shape the workloads of workload.go
// record them: for each, histories that are fine and must pass, and
// histories holding exactly the anomaly the checker exists to catch, which
// must fail with that anomaly's kind, naming the offending ops. A checker
// that passes everything would pass the chaos suite too; these prove that
// none of them is blind.
//
// Times are given in milliseconds into a made-up run (ckAt turns them into
// wall-clock nanoseconds); so are commit and read timestamps, the nodes'
// clocks being true time. A timestamp of 0 means the client did not learn
// it.

// ckBase is the made-up run's start (wall-clock nanoseconds).
const ckBase = int64(1_750_000_000_000_000_000)

// ckAt is the wall-clock time (or timestamp) ms milliseconds into the run.
func ckAt(ms int64) int64 { return ckBase + ms*int64(time.Millisecond) }

// The keys, as the workloads name them.
var ckRunner = newRunner(nil, nil, nil, 1)

func ckRegKey(i int) string  { return ckRunner.key(WorkloadRegister, i) }
func ckBankKey(i int) string { return ckRunner.key(WorkloadBank, i) }
func ckMonoKey(i int) string { return ckRunner.monotonicKey(i) }

// ckSeqKeys returns pair i's keys A and B (on different shards).
func ckSeqKeys(i int) (string, string) { return ckRunner.seqKeys(i) }

// ckAckedKey is the key the acked workload writes value v to.
func ckAckedKey(v int64) string {
	return fmt.Sprintf("%s/%s/%d", ckRunner.prefixes[int(v)%len(ckRunner.prefixes)], WorkloadAcked, v)
}

// ckRead is a read that found v; ckAbsent one that found nothing.
func ckRead(key string, v int64) Mop { return Mop{F: "r", Key: key, Found: true, Read: v} }
func ckAbsent(key string) Mop        { return Mop{F: "r", Key: key} }

// ckHist builds a history; every method returns the op's index.
type ckHist struct{ ops []Op }

// op records an op of workload wl run by process proc, invoked at inv and
// completed at comp, with timestamp ts (0: unknown).
func (h *ckHist) op(wl string, proc int, f, typ string, inv, comp, ts int64, mops ...Mop) int {
	op := Op{Index: len(h.ops), Process: proc, Workload: wl, F: f, Type: typ,
		Invoke: ckAt(inv), Complete: ckAt(comp), Node: -1, Mops: mops}
	if ts != 0 {
		op.TS = ckAt(ts)
	}
	switch typ {
	case Fail:
		op.Error = "rpc error: code = Aborted"
	case Info:
		op.Error = "context deadline exceeded"
	}
	h.ops = append(h.ops, op)
	return op.Index
}

// write is a single-key write (register, sequential, acked) of v.
func (h *ckHist) write(wl string, proc int, typ string, inv, comp, ts int64, key string, v int64) int {
	return h.op(wl, proc, "write", typ, inv, comp, ts, Mop{F: "w", Key: key, Value: v})
}

// read is a strong single-key read (register, sequential, monotonic).
func (h *ckHist) read(wl string, proc int, typ string, inv, comp, ts int64, m Mop) int {
	return h.op(wl, proc, "read", typ, inv, comp, ts, m)
}

// readOn is a read the workload pinned to a node.
func (h *ckHist) readOn(wl string, proc, node int, inv, comp, ts int64, m Mop) int {
	i := h.read(wl, proc, OK, inv, comp, ts, m)
	h.ops[i].Node = node
	return i
}

// cas is the register's compare-and-set of key from old to v.
func (h *ckHist) cas(proc int, typ string, inv, comp, ts int64, key string, old, v int64) int {
	return h.op(WorkloadRegister, proc, "cas", typ, inv, comp, ts, Mop{F: "cas", Key: key, Value: v, Found: true, Read: old, Old: old})
}

// finalRead is the acked workload's read-back after healing.
func (h *ckHist) finalRead(proc int, inv, comp, ts int64, m Mop) int {
	return h.op(WorkloadAcked, proc, "final-read", OK, inv, comp, ts, m)
}

// audit is a bank audit that read these account mops.
func (h *ckHist) audit(proc int, typ string, inv, comp, ts int64, accounts []Mop) int {
	return h.op(WorkloadBank, proc, "audit", typ, inv, comp, ts, accounts...)
}

// transfer moves amount from account a to account b, having read their
// balances; with too little in a it writes nothing, as the workload does.
func (h *ckHist) transfer(proc int, typ string, inv, comp, ts int64, a, b int, balA, balB, amount int64) int {
	ka, kb := ckBankKey(a), ckBankKey(b)
	mops := []Mop{ckRead(ka, balA), ckRead(kb, balB)}
	if balA >= amount {
		mops = append(mops, Mop{F: "w", Key: ka, Value: balA - amount}, Mop{F: "w", Key: kb, Value: balB + amount})
	}
	return h.op(WorkloadBank, proc, "transfer", typ, inv, comp, ts, mops...)
}

// incr is a monotonic increment of a counter that read cur (0: absent).
func (h *ckHist) incr(proc int, typ string, inv, comp, ts int64, key string, cur int64) int {
	return h.op(WorkloadMonotonic, proc, "txn", typ, inv, comp, ts,
		Mop{F: "r", Key: key, Found: cur != 0, Read: cur}, Mop{F: "w", Key: key, Value: cur + 1})
}

// ckBalances are an audit's reads of every account, in order.
func ckBalances(bal ...int64) []Mop {
	if len(bal) != bankAccounts {
		panic(fmt.Sprintf("ckBalances: %d balances for %d accounts", len(bal), bankAccounts))
	}
	var ms []Mop
	for i, b := range bal {
		ms = append(ms, ckRead(ckBankKey(i), b))
	}
	return ms
}

// ckWant is an anomaly a checker must report.
type ckWant struct {
	kind string
	ops  []int
}

func ckAnomaly(kind string, ops ...int) ckWant { return ckWant{kind, ops} }

// ckExpect checks that v is checker's verdict and reports exactly want, in
// order (none: valid); each anomaly names exactly the given ops.
func ckExpect(t *testing.T, v Verdict, checker string, want ...ckWant) {
	t.Helper()
	for _, a := range v.Anomalies {
		t.Logf("%s %v: %s", a.Kind, a.Ops, a.Message)
	}
	if v.Checker != checker {
		t.Errorf("checker = %q, want %q", v.Checker, checker)
	}
	if v.Valid != (len(want) == 0) {
		t.Errorf("valid = %v, want %v (note %q, stats %v)", v.Valid, len(want) == 0, v.Note, v.Stats)
	}
	if len(v.Anomalies) != len(want) {
		t.Fatalf("%d anomalies, want %d: %+v", len(v.Anomalies), len(want), want)
	}
	for i, w := range want {
		a := v.Anomalies[i]
		if a.Kind != w.kind {
			t.Errorf("anomaly %d: kind %q, want %q", i, a.Kind, w.kind)
		}
		got, exp := slices.Sorted(slices.Values(a.Ops)), slices.Sorted(slices.Values(w.ops))
		if !slices.Equal(got, exp) {
			t.Errorf("anomaly %d (%s): ops %v, want %v", i, a.Kind, a.Ops, w.ops)
		}
		if a.Message == "" {
			t.Errorf("anomaly %d (%s) has no message", i, a.Kind)
		}
	}
}

// ckCase is a history and what a checker must say of it.
type ckCase struct {
	name string
	// build builds the history and returns the anomalies it holds.
	build func(h *ckHist) []ckWant
}

// ckRun runs check on every case.
func ckRun(t *testing.T, checker string, check func([]Op) Verdict, cases []ckCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h ckHist
			want := c.build(&h)
			ckExpect(t, check(h.ops), checker, want...)
		})
	}
}

// ---------------------------------------------------------------------

func TestCheckBank(t *testing.T) {
	// 9 accounts of 100: audits must sum to 900.
	even := []int64{100, 100, 100, 100, 100, 100, 100, 100, 100}
	ckRun(t, "bank", CheckBank, []ckCase{
		{"conserved", func(h *ckHist) []ckWant {
			// 3 move from account 0 to 1; an audit during the transfer
			// sees the accounts before it, one after it sees them after.
			// A transfer from an account without enough money writes
			// nothing; failed and unknown transfers change nothing the
			// checker looks at, and a failed audit (which the workload
			// records with nothing found) is no evidence.
			h.transfer(0, OK, 0, 10, 5, 0, 1, 100, 100, 3)
			h.audit(1, OK, 2, 8, 4, ckBalances(even...))
			h.audit(1, OK, 20, 30, 25, ckBalances(97, 103, 100, 100, 100, 100, 100, 100, 100))
			h.transfer(0, OK, 40, 50, 45, 2, 3, 1, 100, 5)
			h.transfer(0, Fail, 60, 70, 0, 4, 5, 100, 100, 2)
			h.transfer(2, Info, 60, 5060, 0, 6, 7, 100, 100, 4)
			h.audit(1, Fail, 80, 90, 85, []Mop{ckAbsent(ckBankKey(0)), ckAbsent(ckBankKey(1))})
			return nil
		}},
		{"audit sum off", func(h *ckHist) []ckWant {
			// The transfer's credit to account 1 (97 → 103) was applied
			// but its debit of account 0 was not: the audit after it
			// sums to 903. The audit before it is fine.
			h.transfer(0, OK, 0, 10, 5, 0, 1, 100, 100, 3)
			h.audit(1, OK, 12, 18, 15, ckBalances(even...))
			bad := h.audit(1, OK, 20, 30, 25, ckBalances(100, 103, 100, 100, 100, 100, 100, 100, 100))
			return []ckWant{ckAnomaly("total-not-conserved", bad)}
		}},
		{"audit missing an account", func(h *ckHist) []ckWant {
			// Account 8 read as absent: an audit that lost an account
			// is not conserved even if the rest happen to sum to 900.
			accounts := ckBalances(200, 100, 100, 100, 100, 100, 100, 100, 0)
			accounts[8] = ckAbsent(ckBankKey(8))
			bad := h.audit(1, OK, 20, 30, 25, accounts)
			return []ckWant{ckAnomaly("total-not-conserved", bad)}
		}},
		{"negative balance", func(h *ckHist) []ckWant {
			// A transfer read account 2 at -4 (account 3 at 204, so
			// the total is intact), and so did the audit after it:
			// each is a negative balance, though the total is right.
			bad := h.transfer(0, OK, 0, 10, 5, 2, 3, -4, 204, 3)
			audit := h.audit(1, OK, 20, 30, 25, ckBalances(100, 100, -4, 204, 100, 100, 100, 100, 100))
			return []ckWant{ckAnomaly("negative-balance", bad), ckAnomaly("negative-balance", audit)}
		}},
		{"only the bad audits", func(h *ckHist) []ckWant {
			// Of three audits, the second (sum 899) and third (sum
			// 1000) are wrong, and each is reported on its own.
			h.audit(1, OK, 0, 10, 5, ckBalances(even...))
			b1 := h.audit(2, OK, 20, 30, 25, ckBalances(99, 100, 100, 100, 100, 100, 100, 100, 100))
			b2 := h.audit(1, OK, 40, 50, 45, ckBalances(200, 100, 100, 100, 100, 100, 100, 100, 100))
			return []ckWant{ckAnomaly("total-not-conserved", b1), ckAnomaly("total-not-conserved", b2)}
		}},
	})
}

// With no audit there is nothing to judge conservation by.
func TestCheckBankNoAudit(t *testing.T) {
	var h ckHist
	h.transfer(0, OK, 0, 10, 5, 0, 1, 100, 100, 3)
	v := CheckBank(h.ops)
	ckExpect(t, v, "bank")
	if v.Note == "" || v.Stats["transfers"] != 1 {
		t.Errorf("note %q, stats %v: want a note and 1 transfer", v.Note, v.Stats)
	}
}

// ---------------------------------------------------------------------

func TestCheckRegister(t *testing.T) {
	x, y := ckRegKey(0), ckRegKey(1)
	reg := WorkloadRegister
	ckRun(t, "register", CheckRegister, []ckCase{
		{"sequential", func(h *ckHist) []ckWant {
			// One op after another: read absent, write 1, read 1,
			// cas 1 → 2, read 2; a cas of an absent key is recorded
			// as a read of absent (TS unknown).
			h.read(reg, 0, OK, 0, 5, 3, ckAbsent(x))
			h.write(reg, 0, OK, 10, 20, 15, x, 1)
			h.read(reg, 1, OK, 30, 40, 35, ckRead(x, 1))
			h.cas(0, OK, 50, 60, 55, x, 1, 2)
			h.read(reg, 1, OK, 70, 80, 75, ckRead(x, 2))
			h.read(reg, 1, OK, 70, 80, 0, ckAbsent(y))
			return nil
		}},
		{"concurrent writes linearize either way", func(h *ckHist) []ckWant {
			// Writes of 1 and 2 overlap, and overlap two reads that
			// see 2 and then 1: linearizable as w2, r→2, w1, r→1.
			h.write(reg, 0, OK, 0, 100, 50, x, 1)
			h.write(reg, 1, OK, 0, 100, 40, x, 2)
			h.read(reg, 2, OK, 10, 20, 15, ckRead(x, 2))
			h.read(reg, 3, OK, 30, 40, 35, ckRead(x, 1))
			return nil
		}},
		{"read during a write sees old or new", func(h *ckHist) []ckWant {
			h.write(reg, 0, OK, 0, 10, 5, x, 1)
			h.write(reg, 0, OK, 20, 60, 40, x, 2)
			h.read(reg, 1, OK, 25, 30, 27, ckRead(x, 1))
			h.read(reg, 2, OK, 45, 50, 47, ckRead(x, 2))
			h.read(reg, 1, OK, 70, 80, 75, ckRead(x, 2))
			return nil
		}},
		{"stale read", func(h *ckHist) []ckWant {
			// 2 was written after 1, both acknowledged, and a read
			// that began after that still returns 1. Key y's ops are
			// fine and are not named.
			w1 := h.write(reg, 0, OK, 0, 10, 5, x, 1)
			h.write(reg, 0, OK, 0, 10, 5, y, 3)
			w2 := h.write(reg, 0, OK, 20, 30, 25, x, 2)
			h.read(reg, 1, OK, 35, 38, 36, ckRead(y, 3))
			r := h.read(reg, 1, OK, 40, 50, 45, ckRead(x, 1))
			return []ckWant{ckAnomaly("not-linearizable", w1, w2, r)}
		}},
		{"absent after a write", func(h *ckHist) []ckWant {
			w := h.write(reg, 0, OK, 0, 10, 5, x, 1)
			r := h.read(reg, 1, OK, 20, 30, 25, ckAbsent(x))
			return []ckWant{ckAnomaly("not-linearizable", w, r)}
		}},
		{"reads go back across readers", func(h *ckHist) []ckWant {
			// While 2 is being written, reader 1 (at node 0) sees 2,
			// then reader 2 (at node 2) sees 1: once 2 is visible, 1
			// cannot be.
			w1 := h.write(reg, 0, OK, 0, 10, 5, x, 1)
			w2 := h.write(reg, 0, OK, 20, 100, 25, x, 2)
			r1 := h.readOn(reg, 1, 0, 30, 40, 35, ckRead(x, 2))
			r2 := h.readOn(reg, 2, 2, 50, 60, 55, ckRead(x, 1))
			return []ckWant{ckAnomaly("not-linearizable", w1, w2, r1, r2)}
		}},
		{"info write that took effect late", func(h *ckHist) []ckWant {
			// The write of 2 timed out; it took effect after the
			// client gave up (a read after that still sees 1, a later
			// one 2).
			h.write(reg, 0, OK, 0, 10, 5, x, 1)
			h.write(reg, 0, Info, 20, 5020, 0, x, 2)
			h.read(reg, 1, OK, 5100, 5110, 5105, ckRead(x, 1))
			h.read(reg, 1, OK, 5200, 5210, 5205, ckRead(x, 2))
			h.read(reg, 2, OK, 5300, 5310, 5305, ckRead(x, 2))
			return nil
		}},
		{"info write that never took effect", func(h *ckHist) []ckWant {
			h.write(reg, 0, OK, 0, 10, 5, x, 1)
			h.write(reg, 0, Info, 20, 5020, 0, x, 2)
			h.read(reg, 1, OK, 5100, 5110, 5105, ckRead(x, 1))
			return nil
		}},
		{"info write cannot un-happen", func(h *ckHist) []ckWant {
			// Seeing 2 means the timed-out write took effect; reading
			// 1 after that is stale.
			w1 := h.write(reg, 0, OK, 0, 10, 5, x, 1)
			w2 := h.write(reg, 0, Info, 20, 5020, 0, x, 2)
			r1 := h.read(reg, 1, OK, 5100, 5110, 5105, ckRead(x, 2))
			r2 := h.read(reg, 1, OK, 5200, 5210, 5205, ckRead(x, 1))
			return []ckWant{ckAnomaly("not-linearizable", w1, w2, r1, r2)}
		}},
		{"failed write seen", func(h *ckHist) []ckWant {
			// The write of 2 definitely did not happen, yet it was
			// read. A failed op is no part of the linearization, so
			// it is not named; failed reads (which observed nothing)
			// are ignored.
			w1 := h.write(reg, 0, OK, 0, 10, 5, x, 1)
			h.write(reg, 0, Fail, 20, 30, 0, x, 2)
			h.read(reg, 2, Fail, 35, 38, 0, ckAbsent(x))
			r := h.read(reg, 1, OK, 40, 50, 45, ckRead(x, 2))
			return []ckWant{ckAnomaly("not-linearizable", w1, r)}
		}},
		{"cas from a value already overwritten", func(h *ckHist) []ckWant {
			w1 := h.write(reg, 0, OK, 0, 10, 5, x, 1)
			w2 := h.write(reg, 0, OK, 20, 30, 25, x, 2)
			c := h.cas(1, OK, 40, 50, 45, x, 1, 3)
			return []ckWant{ckAnomaly("not-linearizable", w1, w2, c)}
		}},
		{"info cas that took effect", func(h *ckHist) []ckWant {
			h.write(reg, 0, OK, 0, 10, 5, x, 1)
			h.cas(1, Info, 20, 5020, 0, x, 1, 3)
			h.read(reg, 2, OK, 5100, 5110, 5105, ckRead(x, 3))
			return nil
		}},
		{"info cas whose precondition failed took effect", func(h *ckHist) []ckWant {
			// The cas of 1 → 3 began when the register held 2: even
			// of unknown outcome, it cannot have written 3.
			w1 := h.write(reg, 0, OK, 0, 10, 5, x, 1)
			w2 := h.write(reg, 0, OK, 20, 30, 25, x, 2)
			c := h.cas(1, Info, 40, 5040, 0, x, 1, 3)
			r := h.read(reg, 2, OK, 5100, 5110, 5105, ckRead(x, 3))
			return []ckWant{ckAnomaly("not-linearizable", w1, w2, c, r)}
		}},
		{"one anomaly per key", func(h *ckHist) []ckWant {
			// Both keys are stale, each reported with its own ops, in
			// key order.
			wx1 := h.write(reg, 0, OK, 0, 10, 5, x, 1)
			wy1 := h.write(reg, 1, OK, 0, 10, 6, y, 2)
			wx2 := h.write(reg, 0, OK, 20, 30, 25, x, 3)
			wy2 := h.write(reg, 1, OK, 20, 30, 26, y, 4)
			ry := h.read(reg, 2, OK, 40, 50, 45, ckRead(y, 2))
			rx := h.read(reg, 2, OK, 60, 70, 65, ckRead(x, 1))
			return []ckWant{ckAnomaly("not-linearizable", wx1, wx2, rx), ckAnomaly("not-linearizable", wy1, wy2, ry)}
		}},
	})
}

// ---------------------------------------------------------------------

func TestCheckSequential(t *testing.T) {
	a0, b0 := ckSeqKeys(0)
	a1, _ := ckSeqKeys(1)
	// The B-without-A check pairs keys "<p>-b" and "<p>-a" of the same
	// prefix p, which the workload's keys do not share (see
	// TestCheckKnownGaps): these cases use keys that do.
	sa0, sb0, sa1 := "s/sequential/0-a", "s/sequential/0-b", "s/sequential/1-a"
	seq := WorkloadSequential
	ckRun(t, "sequential", CheckSequential, []ckCase{
		{"writes in order", func(h *ckHist) []ckWant {
			// Writer 0 writes 7 to A then B of pair 0; writer 1 fails
			// to write A of pair 1 and so never writes its B; an A
			// whose write timed out is not judged either.
			h.write(seq, 0, OK, 0, 10, 5, a0, 7)
			h.write(seq, 0, OK, 20, 30, 25, b0, 7)
			h.write(seq, 1, Fail, 0, 10, 0, a1, 8)
			h.write(seq, 0, Info, 40, 5040, 0, a0, 9)
			return nil
		}},
		{"timestamp unknown", func(h *ckHist) []ckWant {
			h.write(seq, 0, OK, 0, 10, 50, a0, 7)
			h.write(seq, 0, OK, 20, 30, 0, b0, 7)
			return nil
		}},
		{"B committed below A", func(h *ckHist) []ckWant {
			// A was acknowledged (at ts 50) before B's write began,
			// yet B committed at ts 40: commit wait was skipped.
			a := h.write(seq, 0, OK, 0, 10, 50, a0, 7)
			b := h.write(seq, 0, OK, 20, 30, 40, b0, 7)
			return []ckWant{ckAnomaly("timestamp-order", a, b)}
		}},
		{"B committed at A's timestamp", func(h *ckHist) []ckWant {
			a := h.write(seq, 0, OK, 0, 10, 25, a0, 7)
			b := h.write(seq, 0, OK, 20, 30, 25, b0, 7)
			return []ckWant{ckAnomaly("timestamp-order", a, b)}
		}},
		{"reads of B then A that agree", func(h *ckHist) []ckWant {
			// The writer wrote 7 to A then B; readers read B then A:
			// B absent with A anything, B = 7 with A = 7, or with A
			// newer (the writer's next round began), are all fine.
			h.write(seq, 0, OK, 0, 10, 5, sa0, 7)
			h.write(seq, 0, OK, 20, 30, 25, sb0, 7)
			h.read(seq, 3, OK, 1, 2, 1, ckAbsent(sb0))
			h.read(seq, 3, OK, 3, 4, 3, ckAbsent(sa0))
			h.read(seq, 3, OK, 12, 14, 13, ckAbsent(sb0))
			h.read(seq, 3, OK, 15, 17, 16, ckRead(sa0, 7))
			h.read(seq, 4, OK, 40, 42, 41, ckRead(sb0, 7))
			h.read(seq, 4, OK, 43, 45, 44, ckRead(sa0, 7))
			h.write(seq, 0, OK, 50, 60, 55, sa0, 9)
			h.read(seq, 3, OK, 58, 59, 58, ckRead(sb0, 7))
			h.read(seq, 3, OK, 61, 62, 61, ckRead(sa0, 9))
			return nil
		}},
		{"B without A", func(h *ckHist) []ckWant {
			// The reader saw B = 7 and then, after that, A absent:
			// the later write without the earlier one.
			h.write(seq, 0, OK, 0, 10, 5, sa0, 7)
			h.write(seq, 0, OK, 20, 30, 25, sb0, 7)
			rb := h.read(seq, 3, OK, 40, 42, 41, ckRead(sb0, 7))
			ra := h.read(seq, 3, OK, 43, 45, 44, ckAbsent(sa0))
			return []ckWant{ckAnomaly("B-without-A", rb, ra)}
		}},
		{"B without the A before it", func(h *ckHist) []ckWant {
			// Second round: A = 9 then B = 9. The reader sees B = 9
			// but A still at round one's 7.
			h.write(seq, 0, OK, 0, 10, 5, sa0, 7)
			h.write(seq, 0, OK, 20, 30, 25, sb0, 7)
			h.write(seq, 0, OK, 40, 50, 45, sa0, 9)
			h.write(seq, 0, OK, 60, 70, 65, sb0, 9)
			rb := h.read(seq, 3, OK, 80, 82, 81, ckRead(sb0, 9))
			ra := h.read(seq, 3, OK, 83, 85, 84, ckRead(sa0, 7))
			return []ckWant{ckAnomaly("B-without-A", rb, ra)}
		}},
		{"reads of different pairs or processes", func(h *ckHist) []ckWant {
			// B of pair 0 then A of pair 1, and B then A of pair 0 by
			// two different readers: no pair is read in order.
			h.write(seq, 0, OK, 0, 10, 5, sa0, 7)
			h.write(seq, 0, OK, 20, 30, 25, sb0, 7)
			h.read(seq, 3, OK, 40, 42, 41, ckRead(sb0, 7))
			h.read(seq, 3, OK, 43, 45, 44, ckAbsent(sa1))
			h.read(seq, 4, OK, 40, 42, 41, ckRead(sb0, 7))
			h.read(seq, 5, OK, 43, 45, 44, ckAbsent(sa0))
			return nil
		}},
		{"a failed read breaks the pair", func(h *ckHist) []ckWant {
			h.read(seq, 3, OK, 40, 42, 41, ckRead(sb0, 7))
			h.read(seq, 3, Fail, 43, 45, 0, ckAbsent(sa0))
			return nil
		}},
	})
}

// ---------------------------------------------------------------------

func TestCheckMonotonic(t *testing.T) {
	k, k2 := ckMonoKey(0), ckMonoKey(1)
	mono := WorkloadMonotonic
	ckRun(t, "monotonic", CheckMonotonic, []ckCase{
		{"increasing", func(h *ckHist) []ckWant {
			// Two writers increment the counter from absent to 3;
			// readers at various nodes see it grow.
			h.readOn(mono, 2, 0, 0, 5, 3, ckAbsent(k))
			h.incr(0, OK, 10, 20, 15, k, 0)
			h.readOn(mono, 2, 1, 22, 24, 23, ckRead(k, 1))
			h.incr(1, OK, 30, 40, 35, k, 1)
			h.incr(0, OK, 50, 60, 55, k, 2)
			h.readOn(mono, 3, 2, 42, 45, 43, ckRead(k, 2))
			h.readOn(mono, 2, 0, 70, 80, 75, ckRead(k, 3))
			h.readOn(mono, 3, 1, 90, 95, 93, ckRead(k, 3))
			return nil
		}},
		{"overlapping reads may disagree", func(h *ckHist) []ckWant {
			// The read of 3 overlaps the read of 5: it may have been
			// served first.
			h.readOn(mono, 2, 0, 0, 30, 15, ckRead(k, 5))
			h.readOn(mono, 3, 2, 10, 40, 12, ckRead(k, 3))
			return nil
		}},
		{"read beginning as another returns", func(h *ckHist) []ckWant {
			// Real-time order needs the first read to complete strictly
			// before the second is invoked.
			h.readOn(mono, 2, 0, 0, 30, 15, ckRead(k, 5))
			h.readOn(mono, 3, 2, 30, 40, 35, ckRead(k, 3))
			return nil
		}},
		{"counters are independent", func(h *ckHist) []ckWant {
			h.readOn(mono, 2, 0, 0, 10, 5, ckRead(k, 5))
			h.readOn(mono, 3, 2, 20, 30, 25, ckRead(k2, 1))
			return nil
		}},
		{"failed reads observed nothing", func(h *ckHist) []ckWant {
			h.readOn(mono, 2, 0, 0, 10, 5, ckRead(k, 5))
			h.read(mono, 3, Fail, 20, 30, 0, ckAbsent(k))
			return nil
		}},
		{"read went back across nodes", func(h *ckHist) []ckWant {
			// Reader 2 at node 0 saw 5; reader 3 at node 2, starting
			// after that, saw 3.
			r1 := h.readOn(mono, 2, 0, 0, 10, 5, ckRead(k, 5))
			r2 := h.readOn(mono, 3, 2, 20, 30, 25, ckRead(k, 3))
			return []ckWant{ckAnomaly("read-went-back", r1, r2)}
		}},
		{"read went back to absent", func(h *ckHist) []ckWant {
			r1 := h.readOn(mono, 2, 0, 0, 10, 5, ckRead(k, 2))
			r2 := h.readOn(mono, 2, 1, 20, 30, 25, ckAbsent(k))
			return []ckWant{ckAnomaly("read-went-back", r1, r2)}
		}},
		{"read went back below the highest earlier read", func(h *ckHist) []ckWant {
			// Of the reads that completed before the last began, the
			// one that saw 6 is the one it contradicts; the read of 2
			// before it is no anomaly.
			h.readOn(mono, 2, 0, 0, 10, 5, ckRead(k, 2))
			r6 := h.readOn(mono, 3, 1, 5, 15, 10, ckRead(k, 6))
			r4 := h.readOn(mono, 4, 2, 20, 30, 25, ckRead(k, 4))
			return []ckWant{ckAnomaly("read-went-back", r6, r4)}
		}},
		{"lost update", func(h *ckHist) []ckWant {
			// Both writers read 3 and wrote 4, and both were
			// acknowledged: one increment is lost. Unknown increments
			// that wrote 4 too, and an increment of another counter
			// to 4, are no evidence.
			h.incr(0, OK, 0, 10, 5, k, 2)
			i1 := h.incr(0, OK, 20, 40, 30, k, 3)
			i2 := h.incr(1, OK, 20, 40, 35, k, 3)
			h.incr(1, Info, 50, 5050, 0, k, 3)
			h.incr(0, OK, 20, 40, 36, k2, 3)
			return []ckWant{ckAnomaly("lost-update", i1, i2)}
		}},
	})
}

// ---------------------------------------------------------------------

func TestCheckAcked(t *testing.T) {
	acked := WorkloadAcked
	// The read-back runs as a process of its own, after healing.
	const final = 20
	ckRun(t, "acked", CheckAcked, []ckCase{
		{"all present", func(h *ckHist) []ckWant {
			// Acknowledged writes 1 and 4 are read back. Unknown
			// writes 2 (present) and 3 (absent) may go either way; the
			// failed write 5 is not read back at all.
			h.write(acked, 0, OK, 0, 10, 5, ckAckedKey(1), 1)
			h.write(acked, 1, Info, 0, 5000, 0, ckAckedKey(2), 2)
			h.write(acked, 0, Info, 20, 5020, 0, ckAckedKey(3), 3)
			h.write(acked, 1, OK, 5010, 5020, 5015, ckAckedKey(4), 4)
			h.write(acked, 0, Fail, 5030, 5040, 0, ckAckedKey(5), 5)
			h.finalRead(final, 9000, 9010, 9005, ckRead(ckAckedKey(1), 1))
			h.finalRead(final, 9020, 9030, 9025, ckRead(ckAckedKey(2), 2))
			h.finalRead(final, 9040, 9050, 9045, ckAbsent(ckAckedKey(3)))
			h.finalRead(final, 9060, 9070, 9065, ckRead(ckAckedKey(4), 4))
			return nil
		}},
		{"lost write", func(h *ckHist) []ckWant {
			// Write 1 was acknowledged; after healing its key is empty.
			w := h.write(acked, 0, OK, 0, 10, 5, ckAckedKey(1), 1)
			h.write(acked, 1, OK, 20, 30, 25, ckAckedKey(2), 2)
			r := h.finalRead(final, 9000, 9010, 9005, ckAbsent(ckAckedKey(1)))
			h.finalRead(final, 9020, 9030, 9025, ckRead(ckAckedKey(2), 2))
			return []ckWant{ckAnomaly("lost-write", w, r)}
		}},
		{"overwritten write", func(h *ckHist) []ckWant {
			// The key holds a value nobody wrote to it.
			w := h.write(acked, 0, OK, 0, 10, 5, ckAckedKey(1), 1)
			r := h.finalRead(final, 9000, 9010, 9005, ckRead(ckAckedKey(1), 99))
			return []ckWant{ckAnomaly("lost-write", w, r)}
		}},
		{"never read back", func(h *ckHist) []ckWant {
			w := h.write(acked, 0, OK, 0, 10, 5, ckAckedKey(1), 1)
			h.write(acked, 1, OK, 20, 30, 25, ckAckedKey(2), 2)
			h.finalRead(final, 9020, 9030, 9025, ckRead(ckAckedKey(2), 2))
			return []ckWant{ckAnomaly("not-read-back", w)}
		}},
	})
}

// Unknown writes are counted, present or absent, never reported.
func TestCheckAckedUnknownStats(t *testing.T) {
	var h ckHist
	h.write(WorkloadAcked, 0, OK, 0, 10, 5, ckAckedKey(1), 1)
	h.write(WorkloadAcked, 1, Info, 0, 5000, 0, ckAckedKey(2), 2)
	h.write(WorkloadAcked, 0, Info, 20, 5020, 0, ckAckedKey(3), 3)
	h.finalRead(20, 9000, 9010, 9005, ckRead(ckAckedKey(1), 1))
	h.finalRead(20, 9020, 9030, 9025, ckRead(ckAckedKey(2), 2))
	h.finalRead(20, 9040, 9050, 9045, ckAbsent(ckAckedKey(3)))
	v := CheckAcked(h.ops)
	ckExpect(t, v, "acked")
	want := map[string]int{"acknowledged": 1, "unknown, present": 1, "unknown, absent": 1}
	for k, n := range want {
		if v.Stats[k] != n {
			t.Errorf("stats %v: want %s = %d", v.Stats, k, n)
		}
	}
}

// ---------------------------------------------------------------------

func TestCheckExternal(t *testing.T) {
	x, y := ckRegKey(0), ckRegKey(1)
	a0, b0 := ckSeqKeys(0)
	reg, seq, acked := WorkloadRegister, WorkloadSequential, WorkloadAcked
	perKey := func(string) string { return "real-time-order-violated" } // the key is in the message
	ckRun(t, "external", CheckExternal, []ckCase{
		{"consistent", func(h *ckHist) []ckWant {
			// Register writes, a read concurrent with the second write
			// at a timestamp below it (it may be ordered first), a
			// later read, a cas; a sequential pair written and read in
			// order; an acked write read back; a timed-out write
			// nobody saw; a read of y at ts 50, below an unrelated
			// commit on x (ts 100) that had completed before it began:
			// y did not change after ts 5, so the read can be placed
			// after x's commit.
			h.write(reg, 0, OK, 0, 10, 5, x, 1)
			h.write(reg, 0, OK, 20, 30, 25, x, 2)
			h.read(reg, 1, OK, 22, 28, 22, ckRead(x, 1))
			h.read(reg, 1, OK, 40, 50, 45, ckRead(x, 2))
			h.cas(2, OK, 60, 70, 65, x, 2, 3)
			h.write(reg, 0, Info, 80, 5080, 0, x, 4)
			h.read(reg, 1, OK, 90, 95, 92, ckRead(x, 3))
			h.write(reg, 3, OK, 0, 10, 5, y, 6)
			h.write(reg, 2, OK, 90, 110, 100, x, 5)
			h.read(reg, 3, OK, 115, 125, 50, ckRead(y, 6))
			h.write(seq, 4, OK, 0, 10, 5, a0, 7)
			h.write(seq, 4, OK, 20, 30, 25, b0, 7)
			h.read(seq, 5, OK, 40, 42, 41, ckRead(b0, 7))
			h.read(seq, 5, OK, 43, 45, 44, ckRead(a0, 7))
			h.write(acked, 6, OK, 0, 10, 8, ckAckedKey(8), 8)
			h.finalRead(20, 9000, 9010, 9005, ckRead(ckAckedKey(8), 8))
			return nil
		}},
		{"info write observed", func(h *ckHist) []ckWant {
			// A timed-out write (ts unknown, or known) that a read
			// saw committed: fine.
			h.write(reg, 0, OK, 0, 10, 5, x, 1)
			h.write(reg, 0, Info, 20, 5020, 25, x, 2)
			h.read(reg, 1, OK, 5100, 5110, 5105, ckRead(x, 2))
			h.write(reg, 2, Info, 20, 5020, 0, y, 3)
			h.read(reg, 1, OK, 5120, 5130, 5125, ckRead(y, 3))
			return nil
		}},
		{"stale read", func(h *ckHist) []ckWant {
			// The read at ts 45 returned 1 though 2 committed at ts
			// 25: not the latest write at its timestamp.
			w1 := h.write(reg, 0, OK, 0, 10, 5, x, 1)
			w2 := h.write(reg, 0, OK, 20, 30, 25, x, 2)
			r := h.read(reg, 1, OK, 40, 50, 45, ckRead(x, 1))
			return []ckWant{ckAnomaly("stale-read", w1, w2, r)}
		}},
		{"read below a completed write", func(h *ckHist) []ckWant {
			// Single key, across real time: the read began after the
			// write of 2 (ts 25) had completed, but read at ts 22 and
			// so returned the older 1, consistently with its own
			// timestamp.
			h.write(reg, 0, OK, 0, 10, 5, x, 1)
			w2 := h.write(reg, 0, OK, 20, 30, 25, x, 2)
			r := h.read(reg, 1, OK, 40, 50, 22, ckRead(x, 1))
			return []ckWant{ckAnomaly(perKey(x), w2, r)}
		}},
		{"read below an earlier read", func(h *ckHist) []ckWant {
			// The write of 2 (ts 25) is still in flight. Reader 1 sees
			// it; reader 2, starting after reader 1 returned, reads at
			// ts 22 and gets 1.
			h.write(reg, 0, OK, 0, 10, 5, x, 1)
			h.write(reg, 0, OK, 20, 80, 25, x, 2)
			r1 := h.readOn(reg, 1, 0, 40, 50, 30, ckRead(x, 2))
			r2 := h.readOn(reg, 2, 2, 60, 70, 22, ckRead(x, 1))
			return []ckWant{ckAnomaly(perKey(x), r1, r2)}
		}},
		{"writes across keys out of order", func(h *ckHist) []ckWant {
			// Across keys: acked write 1 (ts 50) completed before
			// acked write 2, to another key, began, which committed
			// at ts 40.
			w1 := h.write(acked, 0, OK, 0, 10, 50, ckAckedKey(1), 1)
			w2 := h.write(acked, 1, OK, 20, 30, 40, ckAckedKey(2), 2)
			return []ckWant{ckAnomaly("real-time-order-violated", w1, w2)}
		}},
		{"sequential B committed below A", func(h *ckHist) []ckWant {
			a := h.write(seq, 0, OK, 0, 10, 50, a0, 7)
			b := h.write(seq, 0, OK, 20, 30, 40, b0, 7)
			return []ckWant{ckAnomaly("real-time-order-violated", a, b)}
		}},
		{"sequential B without A", func(h *ckHist) []ckWant {
			// The anomaly CheckSequential misses on the workload's keys
			// (TestCheckKnownGaps) is a stale read of A here.
			wa := h.write(seq, 0, OK, 0, 10, 5, a0, 7)
			h.write(seq, 0, OK, 20, 30, 25, b0, 7)
			h.read(seq, 3, OK, 40, 42, 41, ckRead(b0, 7))
			ra := h.read(seq, 3, OK, 43, 45, 44, ckAbsent(a0))
			return []ckWant{ckAnomaly("stale-read", wa, ra)}
		}},
		{"read across keys below a completed write", func(h *ckHist) []ckWant {
			// Across keys: x = 5 committed at ts 100 and completed;
			// a read of y that began after it read at ts 50 and got
			// 6, though y = 9 had committed at ts 80 (its client not
			// yet answered). Placed after x = 5, as real time demands,
			// the read must see 9. Each key alone is linearizable.
			h.write(reg, 0, OK, 0, 10, 5, y, 6)
			wy := h.write(reg, 1, OK, 60, 120, 80, y, 9)
			wx := h.write(reg, 2, OK, 90, 110, 100, x, 5)
			r := h.read(reg, 3, OK, 115, 125, 50, ckRead(y, 6))
			return []ckWant{ckAnomaly("real-time-order-violated-across-keys", wy, wx, r)}
		}},
		{"acked write lost in the read-back", func(h *ckHist) []ckWant {
			w := h.write(acked, 0, OK, 0, 10, 5, ckAckedKey(1), 1)
			r := h.finalRead(20, 9000, 9010, 9005, ckAbsent(ckAckedKey(1)))
			return []ckWant{ckAnomaly("stale-read", w, r)}
		}},
		{"failed write seen", func(h *ckHist) []ckWant {
			// Failed ops are left out, so the value read was never
			// written.
			h.write(reg, 0, OK, 0, 10, 5, x, 1)
			h.write(reg, 0, Fail, 20, 30, 0, x, 2)
			r := h.read(reg, 1, OK, 40, 50, 45, ckRead(x, 2))
			return []ckWant{ckAnomaly("read-of-a-value-never-written", r)}
		}},
		{"lost update by cas", func(h *ckHist) []ckWant {
			// Two concurrent cas both read 1 and both committed: the
			// later one read below a version at its own timestamp,
			// and the two are a lost update.
			w := h.write(reg, 0, OK, 0, 10, 5, x, 1)
			c1 := h.cas(1, OK, 20, 50, 30, x, 1, 2)
			c2 := h.cas(2, OK, 20, 50, 40, x, 1, 3)
			return []ckWant{ckAnomaly("stale-read", w, c1, c2),
				ckAnomaly("lost-update", c1, c2)}
		}},
	})
}

// ---------------------------------------------------------------------

// Check runs the checkers of the workloads present, in a fixed order,
// and external consistency whenever register, sequential or acked ops
// are present.
func TestCheckDispatch(t *testing.T) {
	one := map[string]func(h *ckHist){
		WorkloadBank: func(h *ckHist) {
			h.audit(0, OK, 0, 10, 5, ckBalances(100, 100, 100, 100, 100, 100, 100, 100, 100))
		},
		WorkloadRegister: func(h *ckHist) { h.write(WorkloadRegister, 1, OK, 0, 10, 5, ckRegKey(0), 1) },
		WorkloadSequential: func(h *ckHist) {
			a0, _ := ckSeqKeys(0)
			h.write(WorkloadSequential, 2, OK, 0, 10, 6, a0, 2)
		},
		WorkloadMonotonic: func(h *ckHist) { h.incr(3, OK, 0, 10, 7, ckMonoKey(0), 0) },
		WorkloadAppend: func(h *ckHist) {
			h.op(WorkloadAppend, 4, "txn", OK, 0, 10, 8, Mop{F: "append", Key: "b/append/0", Value: 3})
		},
		WorkloadAcked: func(h *ckHist) {
			h.write(WorkloadAcked, 5, OK, 0, 10, 9, ckAckedKey(4), 4)
			h.finalRead(6, 100, 110, 105, ckRead(ckAckedKey(4), 4))
		},
	}
	for _, c := range []struct {
		workloads []string
		checkers  []string
	}{
		{nil, nil},
		{[]string{WorkloadBank}, []string{"bank"}},
		{[]string{WorkloadRegister}, []string{"register", "external"}},
		{[]string{WorkloadSequential}, []string{"sequential", "external"}},
		{[]string{WorkloadMonotonic}, []string{"monotonic"}},
		{[]string{WorkloadAppend}, []string{"append"}},
		{[]string{WorkloadAcked}, []string{"acked", "external"}},
		{[]string{WorkloadMonotonic, WorkloadBank}, []string{"bank", "monotonic"}},
		{Workloads, []string{"bank", "register", "sequential", "monotonic", "append", "acked", "external"}},
	} {
		name := strings.Join(c.workloads, "+")
		if name == "" {
			name = "none"
		}
		t.Run(name, func(t *testing.T) {
			var h ckHist
			for _, w := range c.workloads {
				one[w](&h)
			}
			var got []string
			for _, v := range Check(h.ops) {
				got = append(got, v.Checker)
				if !v.Valid {
					t.Errorf("%s: invalid: %+v", v.Checker, v.Anomalies)
				}
			}
			if !slices.Equal(got, c.checkers) {
				t.Errorf("checkers %v, want %v", got, c.checkers)
			}
		})
	}
}

// An anomaly in one workload fails its checkers, and only them.
func TestCheckDispatchFindsAnomaly(t *testing.T) {
	var h ckHist
	h.audit(0, OK, 0, 10, 5, ckBalances(100, 100, 100, 100, 100, 100, 100, 100, 100))
	h.write(WorkloadRegister, 1, OK, 0, 10, 6, ckRegKey(0), 1)
	h.read(WorkloadRegister, 1, OK, 20, 30, 25, ckRead(ckRegKey(0), 1))
	h.incr(3, OK, 0, 10, 7, ckMonoKey(0), 0)
	// Sequential A (ts 50) was acknowledged before B began, B committed
	// at ts 40: sequential and external both catch it.
	a0, b0 := ckSeqKeys(0)
	a := h.write(WorkloadSequential, 2, OK, 0, 10, 50, a0, 2)
	b := h.write(WorkloadSequential, 2, OK, 20, 30, 40, b0, 2)
	verdicts := Check(h.ops)
	want := map[string][]ckWant{
		"bank":       nil,
		"register":   nil,
		"sequential": {ckAnomaly("timestamp-order", a, b)},
		"monotonic":  nil,
		"external":   {ckAnomaly("real-time-order-violated", a, b)},
	}
	if len(verdicts) != len(want) {
		t.Fatalf("%d verdicts, want %d", len(verdicts), len(want))
	}
	for _, v := range verdicts {
		w, ok := want[v.Checker]
		if !ok {
			t.Errorf("unexpected checker %q", v.Checker)
			continue
		}
		t.Run(v.Checker, func(t *testing.T) { ckExpect(t, v, v.Checker, w...) })
	}
}

// ---------------------------------------------------------------------

func TestCheckLiveness(t *testing.T) {
	// The nemesis healed everything 1 s into the run.
	healed := time.Unix(0, ckAt(1000))
	lost := errors.New("chaos: no leader for group 2 within 1m0s")
	_, b0 := ckSeqKeys(0)
	for _, c := range []struct {
		name  string
		err   error
		build func(h *ckHist)
		want  []ckWant
		// stalled names the workloads a stalled-workload anomaly
		// must mention, in order.
		stalled []string
	}{
		{name: "empty", build: func(h *ckHist) {}},
		{name: "every workload recovered", build: func(h *ckHist) {
			// Register and bank ops fail during the faults and succeed
			// again after healing, the first register op invoked at
			// the very moment of healing.
			h.write(WorkloadRegister, 0, OK, 100, 110, 105, ckRegKey(0), 1)
			h.write(WorkloadRegister, 0, Info, 500, 5500, 0, ckRegKey(0), 2)
			h.write(WorkloadRegister, 1, OK, 1000, 1010, 1005, ckRegKey(0), 3)
			h.transfer(2, Fail, 500, 510, 0, 0, 1, 100, 100, 3)
			h.transfer(2, OK, 1500, 1510, 1505, 0, 1, 100, 100, 3)
		}},
		{name: "stalled workload", build: func(h *ckHist) {
			// Bank completed ops before the faults, and after healing
			// only failures and an op invoked before the heal; register
			// recovered.
			h.write(WorkloadRegister, 1, OK, 1200, 1210, 1205, ckRegKey(0), 3)
			h.transfer(2, OK, 100, 110, 105, 0, 1, 100, 100, 3)
			h.transfer(2, OK, 900, 1100, 1050, 0, 1, 97, 103, 3)
			h.transfer(2, Fail, 1200, 1210, 0, 0, 1, 94, 106, 3)
			h.transfer(3, Info, 1300, 6300, 0, 2, 3, 100, 100, 3)
		}, want: []ckWant{ckAnomaly("stalled-workload")}, stalled: []string{WorkloadBank}},
		{name: "no recovery", err: lost, build: func(h *ckHist) {
			h.write(WorkloadRegister, 1, OK, 1200, 1210, 1205, ckRegKey(0), 3)
		}, want: []ckWant{ckAnomaly("no-recovery")}},
		{name: "no recovery and stalled", err: lost, build: func(h *ckHist) {
			h.write(WorkloadRegister, 1, Info, 1200, 6200, 0, ckRegKey(0), 3)
			h.readOn(WorkloadMonotonic, 2, 0, 1200, 1210, 1205, ckRead(ckMonoKey(0), 1))
			h.read(WorkloadSequential, 3, Fail, 1200, 1210, 0, ckAbsent(b0))
		}, want: []ckWant{ckAnomaly("no-recovery"), ckAnomaly("stalled-workload"), ckAnomaly("stalled-workload")},
			stalled: []string{WorkloadRegister, WorkloadSequential}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var h ckHist
			c.build(&h)
			v := checkLiveness(h.ops, nil, healed, c.err)
			ckExpect(t, v, "liveness", c.want...)
			var stalled []string
			for _, a := range v.Anomalies {
				switch a.Kind {
				case "no-recovery":
					if a.Message != c.err.Error() {
						t.Errorf("no-recovery message %q, want %q", a.Message, c.err)
					}
				case "stalled-workload":
					stalled = append(stalled, a.Message)
				}
			}
			if len(stalled) != len(c.stalled) {
				t.Fatalf("stalled %q, want workloads %v", stalled, c.stalled)
			}
			for i, w := range c.stalled {
				if !strings.Contains(stalled[i], "workload "+w+" ") {
					t.Errorf("stalled-workload %q does not name %s", stalled[i], w)
				}
			}
		})
	}
}

// The liveness stats count the ok ops invoked after healing per workload.
func TestCheckLivenessStats(t *testing.T) {
	var h ckHist
	h.write(WorkloadRegister, 0, OK, 100, 110, 105, ckRegKey(0), 1)
	h.write(WorkloadRegister, 0, OK, 1100, 1110, 1105, ckRegKey(0), 2)
	h.write(WorkloadRegister, 1, OK, 1200, 1210, 1205, ckRegKey(1), 3)
	h.incr(2, OK, 1300, 1310, 1305, ckMonoKey(0), 0)
	v := checkLiveness(h.ops, nil, time.Unix(0, ckAt(1000)), nil)
	ckExpect(t, v, "liveness")
	want := map[string]int{"ok-after-heal/register": 2, "ok-after-heal/monotonic": 1}
	for k, n := range want {
		if v.Stats[k] != n {
			t.Errorf("stats %v: want %s = %d", v.Stats, k, n)
		}
	}
}

// ---------------------------------------------------------------------

// TestCheckRegressions holds histories with an anomaly the checkers once
// missed (each case says how).
func TestCheckRegressions(t *testing.T) {
	for _, c := range []struct {
		name, missed string
		check        func([]Op) Verdict
		checker      string
		build        func(h *ckHist) []ckWant
	}{
		{
			name: "sequential B without A on the workload's keys", checker: "sequential", check: CheckSequential,
			missed: "CheckSequential pairs a read of <p>-b with a read of <p>-a of the same prefix p, but seqKeys puts A " +
				"at c/sequential/<i>-a and B at u/sequential/<i>-b: no read pair the workload records is ever " +
				"compared (stats[\"read pairs\"] stays 0)",
			build: func(h *ckHist) []ckWant {
				a0, b0 := ckSeqKeys(0)
				h.write(WorkloadSequential, 0, OK, 0, 10, 5, a0, 7)
				h.write(WorkloadSequential, 0, OK, 20, 30, 25, b0, 7)
				rb := h.read(WorkloadSequential, 3, OK, 40, 42, 41, ckRead(b0, 7))
				ra := h.read(WorkloadSequential, 3, OK, 43, 45, 44, ckAbsent(a0))
				return []ckWant{ckAnomaly("B-without-A", rb, ra)}
			},
		},
		{
			name: "bank negative balance without an audit", checker: "bank", check: CheckBank,
			missed: "CheckBank returns Valid with a note when no audit completed, dropping the negative-balance " +
				"anomalies it found in transfers",
			build: func(h *ckHist) []ckWant {
				bad := h.transfer(0, OK, 0, 10, 5, 2, 3, -4, 204, 3)
				return []ckWant{ckAnomaly("negative-balance", bad)}
			},
		},
		{
			name: "bank negative balance in an audit", checker: "bank", check: CheckBank,
			missed: "CheckBank looks for negative balances only in transfers' reads, not in audits', though its " +
				"doc says no balance any transaction read is negative: an audit of -5 and 205 sums to 900",
			build: func(h *ckHist) []ckWant {
				bad := h.audit(1, OK, 20, 30, 25, ckBalances(-5, 205, 100, 100, 100, 100, 100, 100, 100))
				return []ckWant{ckAnomaly("negative-balance", bad)}
			},
		},
		{
			name: "bank audit of too few accounts", checker: "bank", check: CheckBank,
			missed: "CheckBank does not check that an audit read every account (once each): an audit of 8 " +
				"accounts summing to 900 passes",
			build: func(h *ckHist) []ckWant {
				accounts := ckBalances(200, 100, 100, 100, 100, 100, 100, 100, 0)[:8]
				bad := h.audit(1, OK, 20, 30, 25, accounts)
				return []ckWant{ckAnomaly("total-not-conserved", bad)}
			},
		},
		{
			name: "liveness of acked masked by the read-back", checker: "liveness",
			check: func(ops []Op) Verdict { return checkLiveness(ops, nil, time.Unix(0, ckAt(1000)), nil) },
			missed: "checkLiveness counts the acked workload's final-read ops, which Run records after healing, " +
				"as the workload's progress: acked writers that never succeed after healing are not reported",
			build: func(h *ckHist) []ckWant {
				h.write(WorkloadAcked, 0, OK, 100, 110, 105, ckAckedKey(1), 1)
				h.write(WorkloadAcked, 0, Info, 1100, 6100, 0, ckAckedKey(2), 2)
				h.write(WorkloadAcked, 1, Fail, 1200, 1210, 0, ckAckedKey(3), 3)
				h.finalRead(2, 9000, 9010, 9005, ckRead(ckAckedKey(1), 1))
				h.finalRead(2, 9020, 9030, 9025, ckAbsent(ckAckedKey(2)))
				return []ckWant{ckAnomaly("stalled-workload")}
			},
		},
		{
			name: "monotonic read below an acknowledged increment", checker: "monotonic", check: CheckMonotonic,
			missed: "CheckMonotonic compared reads only with reads: an increment to 5 acknowledged, then a read " +
				"that began after it returning 4, passed unless another read had seen 5 first",
			build: func(h *ckHist) []ckWant {
				k := ckMonoKey(0)
				for i := int64(0); i < 5; i++ {
					h.incr(0, OK, 10*i, 10*i+5, 10*i+3, k, i)
				}
				w := len(h.ops) - 1
				r := h.readOn(WorkloadMonotonic, 2, 1, 60, 62, 61, ckRead(k, 4))
				return []ckWant{ckAnomaly("read-went-back", w, r)}
			},
		},
		{
			name: "liveness of a workload that recorded nothing", checker: "liveness",
			check: func(ops []Op) Verdict {
				return checkLiveness(ops, []string{WorkloadRegister, WorkloadBank}, time.Unix(0, ckAt(1000)), nil)
			},
			missed: "checkLiveness judged only the workloads it saw ops of: one whose every client hung from the " +
				"start recorded nothing and was not reported",
			build: func(h *ckHist) []ckWant {
				h.write(WorkloadRegister, 0, OK, 1100, 1110, 1105, ckRegKey(0), 1)
				return []ckWant{ckAnomaly("stalled-workload")}
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			var h ckHist
			want := c.build(&h)
			v := c.check(h.ops)
			if v.Valid {
				t.Errorf("missed again: %s", c.missed)
			}
			ckExpect(t, v, c.checker, want...)
		})
	}
}

// A register anomaly in a long history names the operations around where
// linearization gets stuck, not the whole key's history.
func TestCheckRegisterExcerpt(t *testing.T) {
	var h ckHist
	x := ckRegKey(0)
	for i := int64(1); i <= 200; i++ {
		h.write(WorkloadRegister, 0, OK, 20*i, 20*i+5, 20*i+3, x, i)
		h.read(WorkloadRegister, 1, OK, 20*i+10, 20*i+15, 20*i+12, ckRead(x, i))
	}
	stale := h.read(WorkloadRegister, 1, OK, 5000, 5005, 5002, ckRead(x, 150))
	v := CheckRegister(h.ops)
	if v.Valid || len(v.Anomalies) != 1 {
		t.Fatalf("verdict %+v, want one anomaly", v)
	}
	a := v.Anomalies[0]
	if !slices.Contains(a.Ops, stale) || len(a.Ops) > excerptTail+2 {
		t.Errorf("excerpt %v (%d ops): want the stale read %d and at most %d others", a.Ops, len(a.Ops), stale, excerptTail+1)
	}
}

// A node process that exits without being killed fails the run.
func TestCheckCrashes(t *testing.T) {
	if v := checkCrashes(nil); !v.Valid {
		t.Errorf("no crashes: %+v", v)
	}
	v := checkCrashes([]Crash{{Node: "n2", At: ckAt(10), Err: "exit status 2"}})
	if v.Valid || len(v.Anomalies) != 1 || v.Anomalies[0].Kind != "process-exited" ||
		!strings.Contains(v.Anomalies[0].Message, "logs/n2.log") {
		t.Errorf("one crash: %+v", v)
	}
}

// Recheck judges a run directory again: a history with a stale read is
// invalid, the same history without it valid.
func TestRecheck(t *testing.T) {
	for _, stale := range []bool{false, true} {
		var h ckHist
		x := ckRegKey(0)
		h.write(WorkloadRegister, 0, OK, 0, 10, 5, x, 1)
		h.write(WorkloadRegister, 0, OK, 20, 30, 25, x, 2)
		if stale {
			h.read(WorkloadRegister, 1, OK, 40, 50, 45, ckRead(x, 1))
		} else {
			h.read(WorkloadRegister, 1, OK, 40, 50, 45, ckRead(x, 2))
		}
		faults := []Fault{{Family: FamilyLatency, Name: "delay", Start: ckAt(15), End: ckAt(35)}}
		dir := filepath.Join(t.TempDir(), "20261207T000000Z-seed42")
		if err := WriteRunDir(dir, RunFiles{History: h.ops, Faults: faults, Verdicts: Check(h.ops)}); err != nil {
			t.Fatal(err)
		}
		res, err := Recheck(dir)
		if err != nil {
			t.Fatal(err)
		}
		if res.Valid() == stale || len(res.History) != 3 || len(res.Faults) != 1 || res.Summary.Seed != 42 {
			t.Errorf("stale read %v: valid %v, %d ops, %d faults, seed %d; verdicts %+v", stale, res.Valid(),
				len(res.History), len(res.Faults), res.Summary.Seed, res.Verdicts)
		}
	}
}
