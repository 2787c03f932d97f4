// Package node is Meridian's runtime: it hosts replicas of many Paxos
// groups in one process, each in its own goroutine, and wires the pure
// protocol cores to the real world — the node's interval clock, Pebble on
// disk (through kv and paxos/pebblestore) and a Transport to other nodes.
//
// Each group's loop drains every input that is ready (messages, proposals,
// the timer) before it handles the replica's Ready, so one synced Pebble
// commit covers every proposal that arrived meanwhile: fsyncs are batched
// across proposals. The Ready contract is kept in order: persist (synced),
// send, apply (effects and apply state in one batch), advance.
package node
