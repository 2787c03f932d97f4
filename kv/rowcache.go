package kv

import (
	"sync"

	"github.com/meridiandb/meridian/tt"
)

// rowCache holds, for user keys recently read at MaxTimestamp, their
// newest version, so that Engine.Get at a timestamp at or above that
// version answers without a Pebble seek. A point read in an LSM merges
// every level: a key updated often has versions in the memtables, in L0
// and in lower levels, each a bloom-filter hit and a block seek. Locking
// reads of read-write transactions read at MaxTimestamp, and the keys they
// read are the keys those transactions then write: the cache keeps them
// current as they are written.
//
// Invariant: an entry that answers is the newest version of its key in
// the engine, or the key has no version (absent). It holds because:
//   - entries are filled only from a read at MaxTimestamp, and only if no
//     batch wrote to the entry's shard since before that read began (the
//     shard's generation did not move) and none is writing to it now;
//   - a committing batch marks the entries of the keys it writes pending
//     before it reaches Pebble (a pending entry does not answer, so a read
//     racing the commit goes to Pebble, which applies a batch atomically),
//     and updates them after, before its commit returns; an entry two
//     batches write at once is dropped;
//   - batches that replace history (ClearData, snapshot imports) empty the
//     cache, and it answers nothing while one is in progress;
//   - a GC round marks the keys it deletes from pending like a batch, and
//     drops their entries: deleting a newest tombstone leaves no version,
//     and a later write below the tombstone is then the newest.
//
// Entries are keyed by the encoded version-independent prefix (see
// appendKeyPrefix), so GC and batches find them from encoded keys.
type rowCache struct {
	shards    [rowShards]rowShard
	maxShard  int          // bytes per shard
	maxValue  int          // larger values are not cached
	rewriting sync.RWMutex // held (write) across a history-replacing commit
}

const rowShards = 16

type rowShard struct {
	mu       sync.Mutex
	gen      uint64 // moves on every write to the shard
	inflight int    // writes to the shard's keys by batches committing now
	m        map[string]*rowEntry
	bytes    int
}

type rowEntry struct {
	ts      tt.Timestamp // absentTS: the key has no version
	tomb    bool         // no value: a tombstone at ts, or no version
	val     []byte
	pending int  // committing batches that write the key
	stale   bool // dropped once no longer pending
}

// absentTS is the timestamp of a key with no version at all, held as a
// tombstone below every valid timestamp: every read hits it and every
// write supersedes it.
const absentTS tt.Timestamp = -1

// rowEntryOverhead approximates an entry's memory beyond key and value.
const rowEntryOverhead = 96

func newRowCache(size int) *rowCache {
	c := &rowCache{maxShard: size / rowShards}
	c.maxValue = c.maxShard / 64
	for i := range c.shards {
		c.shards[i].m = map[string]*rowEntry{}
	}
	return c
}

func (c *rowCache) shard(prefix []byte) *rowShard {
	// FNV-1a over the prefix.
	h := uint32(2166136261)
	for _, b := range prefix {
		h ^= uint32(b)
		h *= 16777619
	}
	return &c.shards[h%rowShards]
}

// lookup returns the newest version of the key with this prefix if the
// cache knows it and it is at or below ts (found false: absent or a
// tombstone). ok is false on a miss. The value is a copy.
func (c *rowCache) lookup(prefix []byte, ts tt.Timestamp) (val []byte, valTS tt.Timestamp, found, ok bool) {
	if !c.rewriting.TryRLock() {
		return nil, 0, false, false
	}
	defer c.rewriting.RUnlock()
	s := c.shard(prefix)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[string(prefix)]
	if e == nil || e.pending > 0 || e.stale || e.ts > ts {
		return nil, 0, false, false
	}
	if e.tomb {
		return nil, 0, false, true
	}
	return append([]byte(nil), e.val...), e.ts, true, true
}

// generation returns the shard's generation, to pass to fill.
func (c *rowCache) generation(prefix []byte) uint64 {
	s := c.shard(prefix)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// fill records the result of a read at MaxTimestamp begun at generation
// gen: the newest version (found false: a tombstone at ts, or no version
// if ts is absentTS). It does nothing if the shard was written since or is
// being written.
func (c *rowCache) fill(prefix []byte, gen uint64, ts tt.Timestamp, found bool, val []byte) {
	if len(val) > c.maxValue || !c.rewriting.TryRLock() {
		return
	}
	defer c.rewriting.RUnlock()
	s := c.shard(prefix)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen || s.inflight > 0 || s.m[string(prefix)] != nil {
		return
	}
	e := &rowEntry{ts: ts, tomb: !found}
	e.setVal(val)
	s.m[string(prefix)] = e
	s.bytes += entrySize(string(prefix), e)
	s.evict(c.maxShard)
}

// setVal stores a copy of v, reusing the entry's buffer unless it is too
// small or more than twice too large (memory is accounted by capacity).
func (e *rowEntry) setVal(v []byte) {
	if cap(e.val) < len(v) || cap(e.val) > 2*len(v)+64 {
		e.val = make([]byte, len(v))
	}
	e.val = e.val[:len(v)]
	copy(e.val, v)
}

// entrySize is the memory an entry is accounted for.
func entrySize(k string, e *rowEntry) int { return len(k) + cap(e.val) + rowEntryOverhead }

// evict drops entries (Go's map order is random enough) until the shard
// is within max bytes. Pending entries stay: their commits update them.
func (s *rowShard) evict(max int) {
	for k, e := range s.m {
		if s.bytes <= max {
			return
		}
		if e.pending == 0 {
			s.drop(k, e)
		}
	}
}

func (s *rowShard) drop(k string, e *rowEntry) {
	delete(s.m, k)
	s.bytes -= entrySize(k, e)
}

// rowWrite is one version a batch writes (or a key a GC round deletes
// from), its prefix and value held in a buffer beside.
type rowWrite struct {
	prefix, val [2]int // offsets [start, end) into rowBuf
	ts          tt.Timestamp
	tomb        bool
}

// noteKey records a key (by its prefix) a GC round deletes from, once.
func noteKey(buf []byte, ws []rowWrite, prefix []byte) ([]byte, []rowWrite) {
	if n := len(ws); n > 0 && string(buf[ws[n-1].prefix[0]:ws[n-1].prefix[1]]) == string(prefix) {
		return buf, ws
	}
	w := rowWrite{}
	w.prefix[0] = len(buf)
	buf = append(buf, prefix...)
	w.prefix[1] = len(buf)
	w.val = [2]int{len(buf), len(buf)}
	return buf, append(ws, w)
}

// begin marks the keys a batch writes pending; call before the batch is
// applied, and finish after.
func (c *rowCache) begin(buf []byte, ws []rowWrite) {
	for _, w := range ws {
		p := buf[w.prefix[0]:w.prefix[1]]
		s := c.shard(p)
		s.mu.Lock()
		s.gen++
		s.inflight++
		if e := s.m[string(p)]; e != nil {
			e.pending++
		}
		s.mu.Unlock()
	}
}

// finish updates the entries of the keys a batch wrote, or drops them
// (update false: the batch failed, or it deleted versions), and ends their
// pending marks.
func (c *rowCache) finish(buf []byte, ws []rowWrite, update bool) {
	for _, w := range ws {
		p := buf[w.prefix[0]:w.prefix[1]]
		s := c.shard(p)
		s.mu.Lock()
		s.gen++
		s.inflight--
		// An entry here was here at begin: fills wait for inflight to
		// drop to zero, and nothing else adds entries.
		if e := s.m[string(p)]; e != nil {
			switch {
			case !update || e.pending > 1 || w.val[1]-w.val[0] > c.maxValue:
				e.stale = true
			case w.ts >= e.ts:
				s.bytes -= cap(e.val)
				e.ts, e.tomb = w.ts, w.tomb
				e.setVal(buf[w.val[0]:w.val[1]])
				s.bytes += cap(e.val)
			}
			e.pending--
			if e.pending == 0 && e.stale {
				s.drop(string(p), e)
			}
			// Updates grow entries too: a read-then-write workload keeps
			// hitting its entries and never fills, so eviction runs here
			// as well.
			s.evict(c.maxShard)
		}
		s.mu.Unlock()
	}
}

// beginRewrite stops answers and fills until endRewrite; call around the
// commit of a batch that replaces history.
func (c *rowCache) beginRewrite() { c.rewriting.Lock() }

// endRewrite empties the cache and answers again.
func (c *rowCache) endRewrite() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.gen++
		clear(s.m)
		s.bytes = 0
		s.mu.Unlock()
	}
	c.rewriting.Unlock()
}
