// Package chaos is Meridian's fault suite on real processes, in the manner
// of Jepsen and etcd's robustness tests: it starts `meridian start`
// processes, each on NTP servers of its own that the suite controls, runs
// workloads against them while nemeses inject faults (kill -9, SIGSTOP,
// partitions, latency, clock steps, strobes and loss, leader-targeted
// faults, full restarts), heals, and checks the whole history.
//
// This file defines the history: what every workload records and every
// checker reads.
package chaos

import (
	"encoding/json"
	"io"
)

// How an operation ended (Jepsen's op types).
const (
	// OK: it happened, and its results are recorded.
	OK = "ok"
	// Fail: it definitely did not happen.
	Fail = "fail"
	// Info: it may or may not have happened (a timeout, a lost connection,
	// an unknown commit outcome).
	Info = "info"
)

// Op is one client operation: its invocation and its completion in one
// record. Times are the system clock's (the nodes' NTP servers serve it,
// shifted only by the clock faults the nemeses inject on one node at a
// time), so they are true time for the checkers.
type Op struct {
	// Index is the op's position in the history (0, 1, ...).
	Index int `json:"index"`
	// Process is the client worker that ran it; a worker runs one op at
	// a time.
	Process int `json:"process"`
	// Workload names the workload (bank, register, sequential, monotonic,
	// append, acked).
	Workload string `json:"workload"`
	// F is what the op did: "txn" (micro-operations in Mops), "read",
	// "write", "cas", "transfer", "audit".
	F string `json:"f"`
	// Type is OK, Fail or Info.
	Type string `json:"type"`
	// Invoke and Complete are wall-clock nanoseconds. Complete is when the
	// client got the answer (for Info: when it gave up).
	Invoke   int64 `json:"invoke"`
	Complete int64 `json:"complete"`
	// TS is the commit timestamp (writes) or read timestamp (read-only
	// transactions), when known.
	TS int64 `json:"ts,omitempty"`
	// Node is the node a request was sent to when the workload picked one
	// (-1: the client library routed it).
	Node int `json:"node"`
	// Mops are the micro-operations, with the values read filled in on OK.
	Mops []Mop `json:"mops,omitempty"`
	// Error is the failure, for Fail and Info.
	Error string `json:"error,omitempty"`
}

// Mop is one micro-operation of a transaction.
type Mop struct {
	// F is "r" (read), "w" (write), "append" (append Value to the list at
	// Key) or "cas" (write Value if the key holds Old).
	F   string `json:"f"`
	Key string `json:"k"`
	// Value is what "w", "append" and "cas" write.
	Value int64 `json:"v,omitempty"`
	// Old is what "cas" expects.
	Old int64 `json:"old,omitempty"`
	// Found and Read are what an "r" of a scalar key returned (Found
	// false: absent); List is what an "r" of a list key (append workload)
	// returned, oldest element first (nil: absent or empty).
	Found bool    `json:"found,omitempty"`
	Read  int64   `json:"read,omitempty"`
	List  []int64 `json:"list,omitempty"`
}

// Fault is a nemesis window: what was done to which nodes, from when until
// it was healed.
type Fault struct {
	// Family is one of process (kill, stop), partition, latency, clock,
	// restart; Name says exactly what ("kill leader of group 2",
	// "partition {1} | {2,3}", "clock step +150ms on node 1").
	Family string `json:"family"`
	Name   string `json:"name"`
	Nodes  []int  `json:"nodes"`
	// Start and End are wall-clock nanoseconds (End: when it was healed).
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	// Recovery is, per group whose leader the fault hit, how long after
	// Start (for a full restart: after End, when the nodes came back) the
	// first write committed after that moment was acknowledged
	// (nanoseconds); a group that took no write before the run ended is
	// absent and listed in Stalled.
	Recovery map[uint64]int64 `json:"recovery,omitempty"`
	Stalled  []uint64         `json:"stalled,omitempty"`
}

// Anomaly is one violation a checker found, with the smallest excerpt of
// the history that shows it (indexes into the history).
type Anomaly struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Ops     []int  `json:"ops"`
}

// Verdict is a checker's judgment of a history.
type Verdict struct {
	Checker   string    `json:"checker"`
	Valid     bool      `json:"valid"`
	Anomalies []Anomaly `json:"anomalies,omitempty"`
	// Stats counts what the checker looked at ("ops", "reads", "keys"...).
	Stats map[string]int `json:"stats,omitempty"`
	// Note says what the checker could not judge, if anything.
	Note string `json:"note,omitempty"`
}

// WriteHistory writes ops as JSON lines.
func WriteHistory(w io.Writer, ops []Op) error {
	enc := json.NewEncoder(w)
	for i := range ops {
		if err := enc.Encode(&ops[i]); err != nil {
			return err
		}
	}
	return nil
}

// ReadHistory reads JSON lines written by WriteHistory.
func ReadHistory(r io.Reader) ([]Op, error) {
	dec := json.NewDecoder(r)
	var ops []Op
	for dec.More() {
		var op Op
		if err := dec.Decode(&op); err != nil {
			return ops, err
		}
		ops = append(ops, op)
	}
	return ops, nil
}
