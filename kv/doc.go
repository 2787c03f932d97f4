// Package kv is Meridian's storage engine: multi-version (MVCC) key-value
// data, the per-group Paxos log, Paxos hard state and per-group meta records,
// all in one Pebble instance per node, with consistent snapshots that can be
// exported as checksummed, snappy-compressed chunks and imported elsewhere.
//
// # Keyspace layout
//
// Every Pebble key starts with a keyspace byte (default bytewise comparer):
//
//	0x01 local   0x01 "gc-horizon"                → GC horizon (int64 BE)
//	0x02 log     0x02 group(BE8) index(BE8)       → tag (raw | snappy), data
//	0x03 hard    0x03 group(BE8)                  → hard state bytes
//	0x04 meta    0x04 group(BE8) name             → value bytes
//	0x05 data    0x05 esc(userKey) 0x00 0x01 t(8) → tag (value | tombstone), value
//
// esc escapes every 0x00 of the user key as 0x00 0xFF, and 0x00 0x01
// terminates it, so byte order on encoded keys is user-key order, a key
// sorts before the keys it prefixes, and the versions of a key are
// contiguous. t is the version timestamp in descending order: big-endian
// uint64(ts) ^ 0x7FFF_FFFF_FFFF_FFFF, which reverses the order of the whole
// int64 range. The newest version comes first, so a read at ts seeks to
// EncodeKey(key, ts) and lands on the newest version at or below ts. Scans
// move between keys by stepping a few versions and otherwise seeking to
// the next key's prefix (SeekGE forward, SeekLT in reverse).
//
// # Invariants
//
//   - Durability: a batch committed with sync=true survives any crash once
//     Commit returns nil (the WAL was fsynced). An unsynced batch may be lost
//     in a crash; if it is, so is every batch committed after it.
//   - Atomicity: after a crash a batch is present entirely or not at all.
//   - GC horizon: reads (Get, Scan, ExportSnapshot) at a timestamp below the
//     GC horizon are refused with ErrBelowGCHorizon; they are never answered
//     from history that GC may have collected. The horizon only moves
//     forward, is persisted (synced) before GC deletes anything, and is
//     raised in memory before it is persisted.
//   - Reads are consistent: each call (and each Snapshot) reads one
//     point-in-time view.
//   - A WAL write or fsync failure reported to a committer fails the engine
//     (ErrFailed) instead of exiting the process; nothing more is written
//     until the store is reopened. Failures Pebble treats as fatal elsewhere
//     still end the process (see Engine).
//
// Building with -tags invariants turns on assertions (reads return no
// version newer than the read, scans return keys in strict order, the
// horizon never moves back) and Pebble's own invariant checks.
package kv
