package kv

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/meridiandb/meridian/internal/invariants"
	"github.com/meridiandb/meridian/tt"
)

// KeyValue is one version of a key, as returned by Scan.
type KeyValue struct {
	Key   []byte
	Value []byte
	TS    tt.Timestamp
}

// LogEntry is one entry of a group's Paxos log.
type LogEntry struct {
	Index uint64
	Data  []byte
}

// Reader is the read interface shared by *Engine (the live state) and
// *Snapshot (a consistent point-in-time view). Returned slices are owned by
// the caller.
type Reader interface {
	// Get returns the newest version of key with version timestamp <= ts.
	// ErrNotFound when there is none or the newest such version is a
	// tombstone. ts below the GC horizon → ErrBelowGCHorizon.
	Get(key []byte, ts tt.Timestamp) (value []byte, valueTS tt.Timestamp, err error)
	// Scan returns live keys in [start, end) (nil or empty end: unbounded)
	// as of ts, each with its newest version <= ts, in ascending key order
	// or, if reverse, descending, at most limit results (limit <= 0: no
	// limit).
	Scan(start, end []byte, ts tt.Timestamp, limit int, reverse bool) ([]KeyValue, error)
	// LogEntries returns the stored entries of group's log with indices in
	// [lo, hi), in index order, stopping before the entry that would make
	// the total data size exceed maxBytes; the first entry is returned
	// whatever its size. maxBytes <= 0 means unlimited.
	LogEntries(group, lo, hi uint64, maxBytes int) ([]LogEntry, error)
	// LogBounds returns the smallest and largest stored index of group's
	// log; ok is false when the log is empty.
	LogBounds(group uint64) (first, last uint64, ok bool, err error)
	// HardState returns group's hard state; ErrNotFound if never set.
	HardState(group uint64) ([]byte, error)
	// Meta returns group's meta record name; ErrNotFound if absent.
	Meta(group uint64, name []byte) ([]byte, error)
	// MetaScan calls fn for every meta record of group whose name starts
	// with prefix, in name order, stopping at fn's first error, which it
	// returns. The slices passed to fn are valid only during the call.
	MetaScan(group uint64, prefix []byte, fn func(name, value []byte) error) error
	// ExportSnapshot streams every version (values and tombstones) with
	// version timestamp <= ts of the keys in [start, end) (nil or empty
	// end: unbounded), in key order, as chunks of roughly chunkBytes
	// uncompressed bytes (chunkBytes <= 0: 1 MiB). Each chunk is
	// self-describing and checksummed (see ImportSnapshotChunk) and
	// carries the reader's GC horizon. At least one chunk is emitted, the
	// last one flagged as such. emit owns the chunk it is passed. ts below
	// the GC horizon → ErrBelowGCHorizon.
	ExportSnapshot(start, end []byte, ts tt.Timestamp, chunkBytes int, emit func(chunk []byte) error) error
	// GCHorizon returns the GC horizon that applies to this reader.
	GCHorizon() tt.Timestamp
}

// itersBeforeSeek is how many versions or keys a scan steps over with Next
// or Prev before it seeks instead. Stepping is much cheaper than seeking
// when keys have few versions (the common case), seeking bounds the cost
// when they have many.
const itersBeforeSeek = 4

// view implements the reads of Reader over a Pebble reader (the DB or a
// Pebble snapshot).
type view struct {
	r       pebble.Reader
	horizon func() tt.Timestamp
}

// newIter opens an iterator over [lower, upper) and then checks ts against
// the horizon. The order matters for the live DB: GC raises the horizon
// before deleting, so an iterator opened before a horizon that allows ts was
// loaded cannot see deletions made for a higher horizon. For an empty range
// it only checks the horizon and returns a nil iterator.
func (v view) newIter(lower, upper []byte, ts tt.Timestamp) (*pebble.Iterator, error) {
	var it *pebble.Iterator
	if bytes.Compare(lower, upper) < 0 {
		var err error
		if it, err = v.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper}); err != nil {
			return nil, err
		}
	}
	if h := v.horizon(); ts < h {
		if it != nil {
			_ = it.Close()
		}
		return nil, belowHorizon(ts, h)
	}
	return it, nil
}

func belowHorizon(ts, h tt.Timestamp) error {
	return fmt.Errorf("%w: read at %d, horizon %d", ErrBelowGCHorizon, int64(ts), int64(h))
}

// closeIter closes it, folding its error into err.
func closeIter(it *pebble.Iterator, err *error) {
	if cerr := it.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}

func (v view) get(key []byte, ts tt.Timestamp) (value []byte, valueTS tt.Timestamp, err error) {
	if len(key) == 0 {
		return nil, 0, ErrEmptyKey
	}
	return v.getPrefix(key, appendKeyPrefix(make([]byte, 0, encodedKeyLen(key)), key), ts)
}

// getPrefix is get with the key's encoded prefix (appendKeyPrefix).
func (v view) getPrefix(key, prefix []byte, ts tt.Timestamp) ([]byte, tt.Timestamp, error) {
	ver, err := v.version(key, prefix, ts)
	if err != nil {
		return nil, 0, err
	}
	if !ver.found {
		return nil, 0, ErrNotFound
	}
	return ver.val, ver.ts, nil
}

// foundVersion is the newest version of a key at or below a timestamp:
// found with its value, or a tombstone at ts (found false), or none at all
// (found false, ts absentTS).
type foundVersion struct {
	val   []byte
	ts    tt.Timestamp
	found bool
}

func (v view) version(key, prefix []byte, ts tt.Timestamp) (ver foundVersion, err error) {
	it, err := v.newIter(prefix, prefixEnd(prefix), ts)
	if err != nil {
		return ver, fmt.Errorf("kv: get %s: %w", keyString(key), err)
	}
	defer closeIter(it, &err)
	// A prefix seek: Pebble consults bloom filters and skips tables
	// without the key.
	if !it.SeekPrefixGE(appendTS(prefix, ts)) {
		return foundVersion{ts: absentTS}, it.Error()
	}
	k := it.Key()
	if !hasVersionOf(k, prefix) {
		return ver, corruptf("key %x inside the versions of %s", k, keyString(key))
	}
	_, valueTS, err := splitKey(k)
	if err != nil {
		return ver, err
	}
	invariants.Check(valueTS <= ts, "get at %d returned version %d", ts, valueTS)
	raw, err := it.ValueAndErr()
	if err != nil {
		return ver, err
	}
	tomb, val, err := decodeValue(raw)
	if err != nil {
		return ver, err
	}
	if tomb {
		return foundVersion{ts: valueTS}, nil
	}
	return foundVersion{val: bytes.Clone(val), ts: valueTS, found: true}, nil
}

// scanner holds the state of one MVCC scan.
type scanner struct {
	it     *pebble.Iterator
	ts     tt.Timestamp
	prefix []byte // prefix of the key being examined (reused buffer)
	seek   []byte // seek key buffer
	val    []byte // candidate value buffer (reverse scans)
}

func (v view) scan(start, end []byte, ts tt.Timestamp, limit int, reverse bool) (out []KeyValue, err error) {
	lower, upper := dataLowerBound(start), dataUpperBound(end)
	it, err := v.newIter(lower, upper, ts)
	if err != nil {
		return nil, fmt.Errorf("kv: scan: %w", err)
	}
	if it == nil { // empty range
		return nil, nil
	}
	defer closeIter(it, &err)
	s := &scanner{it: it, ts: ts}
	emit := func(prefix []byte, val []byte, vts tt.Timestamp) error {
		k, err := unescapePrefix(nil, prefix)
		if err != nil {
			return err
		}
		out = append(out, KeyValue{Key: k, Value: bytes.Clone(val), TS: vts})
		return nil
	}
	if reverse {
		err = s.reverse(limit, emit)
	} else {
		err = s.forward(limit, emit)
	}
	if err != nil {
		return nil, err
	}
	if invariants.Enabled {
		checkScanOrder(out, reverse, ts)
	}
	return out, nil
}

// checkScanOrder asserts that scan results are strictly ordered and no newer
// than the read.
func checkScanOrder(out []KeyValue, reverse bool, ts tt.Timestamp) {
	for i := range out {
		invariants.Check(out[i].TS <= ts, "scan at %d returned version %d", ts, out[i].TS)
		if i > 0 {
			c := bytes.Compare(out[i-1].Key, out[i].Key)
			invariants.Check((c < 0) != reverse && c != 0, "scan results out of order: %q, %q", out[i-1].Key, out[i].Key)
		}
	}
}

// current decodes the iterator's position into s.prefix and the version
// timestamp.
func (s *scanner) current() (tt.Timestamp, error) {
	prefix, vts, err := splitKey(s.it.Key())
	if err != nil {
		return 0, err
	}
	s.prefix = append(s.prefix[:0], prefix...)
	return vts, nil
}

// forward scans in ascending key order. For each key it positions at the
// newest version <= ts (stepping over a few newer versions, then seeking to
// EncodeKey(k, ts)), emits it unless it is a tombstone, and moves to the
// next key (stepping over a few older versions, then seeking to the prefix
// successor).
func (s *scanner) forward(limit int, emit func(prefix, val []byte, vts tt.Timestamp) error) error {
	n := 0
	return s.visit(false, func(vts tt.Timestamp, tomb bool, val []byte) (bool, error) {
		if tomb {
			return true, nil
		}
		if err := emit(s.prefix, val, vts); err != nil {
			return false, err
		}
		n++
		return limit <= 0 || n < limit, nil
	})
}

// visit calls fn, in ascending key order, with the versions at or below
// s.ts: the newest of each key, or with all set every one of them (newest
// first). s.prefix holds the version's key. fn returns false to stop.
func (s *scanner) visit(all bool, fn func(vts tt.Timestamp, tomb bool, val []byte) (bool, error)) error {
	it := s.it
	valid := it.First()
	for valid {
		vts, err := s.current()
		if err != nil {
			return err
		}
		if vts > s.ts {
			valid = s.nextVisible()
			continue
		}
		raw, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		tomb, val, err := decodeValue(raw)
		if err != nil {
			return err
		}
		if more, err := fn(vts, tomb, val); !more || err != nil {
			return err
		}
		if all {
			valid = it.Next()
		} else {
			valid = s.nextKey()
		}
	}
	return it.Error()
}

// nextVisible moves from a version of s.prefix newer than s.ts to the
// newest version <= s.ts, or to the next key if there is none.
func (s *scanner) nextVisible() bool {
	for range itersBeforeSeek {
		if !s.it.Next() {
			return false
		}
		k := s.it.Key()
		if !hasVersionOf(k, s.prefix) {
			return true
		}
		if _, vts, err := splitKey(k); err != nil || vts <= s.ts {
			return true // the caller decodes (and reports) again
		}
	}
	s.seek = appendTS(append(s.seek[:0], s.prefix...), s.ts)
	return s.it.SeekGE(s.seek)
}

// nextKey moves past every version of s.prefix.
func (s *scanner) nextKey() bool {
	for range itersBeforeSeek {
		if !s.it.Next() {
			return false
		}
		if !hasVersionOf(s.it.Key(), s.prefix) {
			return true
		}
	}
	s.seek = append(s.seek[:0], s.prefix...)
	s.seek[len(s.seek)-1]++ // prefixEnd
	return s.it.SeekGE(s.seek)
}

// prevKey moves before every version of s.prefix, onto the oldest version of
// the previous key.
func (s *scanner) prevKey() bool {
	for range itersBeforeSeek {
		if !s.it.Prev() {
			return false
		}
		if !hasVersionOf(s.it.Key(), s.prefix) {
			return true
		}
	}
	return s.it.SeekLT(s.prefix)
}

// reverse scans in descending key order. Arriving at a key from above
// lands on its oldest version. If that is newer than ts the key is invisible
// and the scan moves on with prevKey. Otherwise it steps to newer versions
// while they are <= ts, remembering the last one as the candidate; when it
// leaves the key (often landing on the previous key for free) or meets a
// version newer than ts, the candidate is the answer. Past itersBeforeSeek
// steps it seeks to EncodeKey(k, ts) and then SeekLTs to the previous key.
func (s *scanner) reverse(limit int, emit func(prefix, val []byte, vts tt.Timestamp) error) error {
	it := s.it
	n := 0
	valid := it.Last()
	for valid {
		vts, err := s.current()
		if err != nil {
			return err
		}
		if vts > s.ts {
			valid = s.prevKey()
			continue
		}
		candTS, candTomb, err := s.candidate(vts)
		if err != nil {
			return err
		}
		steps := 0
		for {
			if steps == itersBeforeSeek {
				// Many visible versions: seek straight to the newest.
				s.seek = appendTS(append(s.seek[:0], s.prefix...), s.ts)
				if !it.SeekGE(s.seek) || !hasVersionOf(it.Key(), s.prefix) {
					if err := it.Error(); err != nil {
						return err
					}
					return corruptf("version of %x vanished during scan", s.prefix)
				}
				if _, vts, err = splitKey(it.Key()); err != nil {
					return err
				}
				if candTS, candTomb, err = s.candidate(vts); err != nil {
					return err
				}
				valid = it.SeekLT(s.prefix)
				break
			}
			steps++
			if valid = it.Prev(); !valid {
				break
			}
			k := it.Key()
			if !hasVersionOf(k, s.prefix) {
				break // on the previous key already
			}
			if _, vts, err = splitKey(k); err != nil {
				return err
			}
			if vts > s.ts {
				valid = s.prevKey()
				break
			}
			if candTS, candTomb, err = s.candidate(vts); err != nil {
				return err
			}
		}
		if !candTomb {
			if err := emit(s.prefix, s.val, candTS); err != nil {
				return err
			}
			if n++; limit > 0 && n >= limit {
				return nil
			}
		}
	}
	return it.Error()
}

// candidate records the iterator's current version (timestamp vts) as the
// reverse scan's candidate, copying its value into s.val.
func (s *scanner) candidate(vts tt.Timestamp) (tt.Timestamp, bool, error) {
	raw, err := s.it.ValueAndErr()
	if err != nil {
		return 0, false, err
	}
	tomb, val, err := decodeValue(raw)
	if err != nil {
		return 0, false, err
	}
	s.val = append(s.val[:0], val...)
	return vts, tomb, nil
}

func (v view) logEntries(group, lo, hi uint64, maxBytes int) (out []LogEntry, err error) {
	if hi <= lo {
		return nil, nil
	}
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: logKey(group, lo), UpperBound: logKey(group, hi)})
	if err != nil {
		return nil, err
	}
	defer closeIter(it, &err)
	total := 0
	for valid := it.First(); valid; valid = it.Next() {
		idx, err := logIndex(it.Key())
		if err != nil {
			return nil, err
		}
		raw, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		data, err := decodeLogEntry(raw)
		if err != nil {
			return nil, fmt.Errorf("log entry %d/%d: %w", group, idx, err)
		}
		if maxBytes > 0 && len(out) > 0 && total+len(data) > maxBytes {
			break
		}
		total += len(data)
		out = append(out, LogEntry{Index: idx, Data: data})
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	return out, nil
}

func (v view) logBounds(group uint64) (first, last uint64, ok bool, err error) {
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: groupKey(spaceLog, group), UpperBound: groupEnd(spaceLog, group)})
	if err != nil {
		return 0, 0, false, err
	}
	defer closeIter(it, &err)
	if !it.First() {
		return 0, 0, false, it.Error()
	}
	if first, err = logIndex(it.Key()); err != nil {
		return 0, 0, false, err
	}
	if !it.Last() {
		return 0, 0, false, it.Error()
	}
	if last, err = logIndex(it.Key()); err != nil {
		return 0, 0, false, err
	}
	return first, last, true, nil
}

// getRaw returns a copy of the value stored under key.
func (v view) getRaw(key []byte) ([]byte, error) {
	val, closer, err := v.r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return bytes.Clone(val), nil
}

func (v view) hardState(group uint64) ([]byte, error) {
	hs, err := v.getRaw(groupKey(spaceHardState, group))
	if err != nil {
		return nil, fmt.Errorf("kv: hard state of group %d: %w", group, err)
	}
	return hs, nil
}

func (v view) meta(group uint64, name []byte) ([]byte, error) {
	val, err := v.getRaw(metaKey(group, name))
	if err != nil {
		return nil, fmt.Errorf("kv: meta %s of group %d: %w", keyString(name), group, err)
	}
	return val, nil
}

func (v view) metaScan(group uint64, prefix []byte, fn func(name, value []byte) error) (err error) {
	lower := metaKey(group, prefix)
	// lower starts with spaceMeta < 0xFF, so it has a successor.
	upper := bytesPrefixEnd(lower)
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer closeIter(it, &err)
	for valid := it.First(); valid; valid = it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if err := fn(it.Key()[groupKeyLen:], val); err != nil {
			return err
		}
	}
	return it.Error()
}

// bytesPrefixEnd returns the smallest key greater than every key with prefix
// p, or nil if there is none (p is all 0xFF).
func bytesPrefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xFF {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
