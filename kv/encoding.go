package kv

import (
	"bytes"
	"encoding/binary"

	"github.com/cockroachdb/pebble/v2"
	"github.com/golang/snappy"

	"github.com/meridiandb/meridian/tt"
)

// Keyspaces. Every Pebble key starts with one of these bytes; see the
// package documentation for the layout that follows it.
const (
	spaceLocal     byte = 0x01 // engine-local records (GC horizon)
	spaceLog       byte = 0x02 // Paxos log: group BE8, index BE8
	spaceHardState byte = 0x03 // Paxos hard state: group BE8
	spaceMeta      byte = 0x04 // per-group meta: group BE8, name
	spaceData      byte = 0x05 // MVCC data: escaped user key, 0x00 0x01, ^ts BE8
)

// Key and value encoding constants.
const (
	escByte    byte = 0x00 // bytes equal to escByte are escaped ...
	escEscaped byte = 0xFF // ... as escByte escEscaped,
	escTerm    byte = 0x01 // and the key is terminated by escByte escTerm.

	tsLen      = 8
	minKeyLen  = 1 + 2 + tsLen // keyspace byte, terminator, timestamp
	tsDescMask = 0x7FFF_FFFF_FFFF_FFFF

	groupKeyLen      = 1 + 8     // keyspace byte, group
	logKeyLen        = 1 + 8 + 8 // keyspace byte, group, index
	logHeaderLen     = 1
	horizonValueLen  = 8
	localHorizonName = "gc-horizon"
)

// MVCC value tags: the first byte of every stored MVCC value.
const (
	tagValue     byte = 0x01 // a value follows
	tagTombstone byte = 0x02 // a deletion; nothing follows
)

// Log entry tags: the first byte of every stored log entry.
const (
	logRaw    byte = 0x00 // uncompressed data follows
	logSnappy byte = 0x01 // snappy-compressed data follows
)

// logCompressMin is the smallest log entry worth compressing.
const logCompressMin = 128

// localHorizonKey is where the GC horizon is persisted.
var localHorizonKey = append([]byte{spaceLocal}, localHorizonName...)

// encodeTS returns the descending, order-preserving encoding of ts: larger
// timestamps encode to smaller values. Flipping every bit but the sign bit
// maps int64 order onto reversed uint64 order over the whole int64 range.
func encodeTS(ts tt.Timestamp) uint64 { return uint64(ts) ^ tsDescMask }

// decodeTS inverts encodeTS.
func decodeTS(u uint64) tt.Timestamp { return tt.Timestamp(u ^ tsDescMask) }

// appendTS appends the descending encoding of ts to dst.
func appendTS(dst []byte, ts tt.Timestamp) []byte {
	return binary.BigEndian.AppendUint64(dst, encodeTS(ts))
}

// comparer orders keys bytewise, as Pebble's default does, and splits an
// MVCC data key into its version-independent prefix (keyspace byte, escaped
// user key, terminator) and its 8-byte timestamp suffix: Pebble then keeps
// bloom filters per user key, and a point read seeks by prefix and skips
// the tables that do not hold the key. Every other key is all prefix.
//
// Pebble requires Compare to agree with comparing prefixes, then suffixes,
// for every key it compares, including the separators and successors it
// writes into index blocks. The default ones shorten keys byte-wise, which
// can cut into the timestamp and leave a key whose Split no longer finds
// its prefix (Pebble's invariants build caught one in the simulator), so
// they are the identity here: index blocks hold whole keys. For the same
// reason a data key prefix's immediate successor (what Pebble seeks to
// when it moves past every version of a prefix) is the prefix with its
// terminator raised, not the prefix with a zero byte appended: that key
// would sort byte-wise before the prefix's own versions.
var comparer = func() *pebble.Comparer {
	c := *pebble.DefaultComparer
	c.Split = splitMVCC
	c.Separator = func(dst, a, _ []byte) []byte { return append(dst, a...) }
	c.Successor = func(dst, a []byte) []byte { return append(dst, a...) }
	c.ImmediateSuccessor = immediateSuccessor
	c.Name = "meridian.mvcc.v1"
	return &c
}()

// immediateSuccessor returns the smallest prefix key above every key with
// prefix a (a whole key, as Split returns it). For a data key prefix that
// is prefixEnd(a), which Split leaves whole (escaping keeps escByte escTerm
// out of the body); any other key is all prefix: a with a zero byte
// appended.
func immediateSuccessor(dst, a []byte) []byte {
	n := len(a)
	if n >= minKeyLen-tsLen && a[0] == spaceData && a[n-2] == escByte && a[n-1] == escTerm {
		return append(dst, prefixEnd(a)...)
	}
	return append(append(dst, a...), 0)
}

// splitMVCC is comparer's Split. Escaped user keys hold escByte only
// before escEscaped, so escByte escTerm tsLen bytes from the end is the
// terminator of a data key.
func splitMVCC(k []byte) int {
	n := len(k)
	if n >= minKeyLen && k[0] == spaceData && k[n-tsLen-2] == escByte && k[n-tsLen-1] == escTerm {
		return n - tsLen
	}
	return n
}

// encodedKeyLen returns the length of EncodeKey(userKey, ts).
func encodedKeyLen(userKey []byte) int {
	return minKeyLen + len(userKey) + bytes.Count(userKey, []byte{escByte})
}

// appendKeyPrefix appends the version-independent part of an MVCC key: the
// data keyspace byte, the escaped user key and the terminator. All versions
// of userKey share this prefix, and no other key's encoding starts with it.
func appendKeyPrefix(dst, userKey []byte) []byte {
	dst = append(dst, spaceData)
	for {
		i := bytes.IndexByte(userKey, escByte)
		if i < 0 {
			break
		}
		dst = append(dst, userKey[:i]...)
		dst = append(dst, escByte, escEscaped)
		userKey = userKey[i+1:]
	}
	dst = append(dst, userKey...)
	return append(dst, escByte, escTerm)
}

// EncodeKey returns the Pebble key under which version ts of userKey is
// stored: the MVCC keyspace byte, the user key with every 0x00 escaped as
// 0x00 0xFF, the terminator 0x00 0x01, and the timestamp in descending
// order (8 bytes). bytes.Compare on encodings orders by user key ascending,
// then timestamp descending, so all versions of a key are contiguous and
// newest first, and a key sorts before every key it is a proper prefix of.
func EncodeKey(userKey []byte, ts tt.Timestamp) []byte {
	dst := make([]byte, 0, encodedKeyLen(userKey))
	return appendTS(appendKeyPrefix(dst, userKey), ts)
}

// DecodeKey inverts EncodeKey. It returns an error wrapping ErrCorrupt for
// any input EncodeKey cannot produce; it never panics. The returned user key
// does not alias enc.
func DecodeKey(enc []byte) (userKey []byte, ts tt.Timestamp, err error) {
	prefix, ts, err := splitKey(enc)
	if err != nil {
		return nil, 0, err
	}
	userKey, err = unescapePrefix(nil, prefix)
	if err != nil {
		return nil, 0, err
	}
	return userKey, ts, nil
}

// splitKey splits an MVCC key into its prefix (as appendKeyPrefix builds it)
// and timestamp. It checks the framing but not the escaping of the prefix.
func splitKey(enc []byte) (prefix []byte, ts tt.Timestamp, err error) {
	if len(enc) < minKeyLen {
		return nil, 0, corruptf("mvcc key too short (%d bytes)", len(enc))
	}
	if enc[0] != spaceData {
		return nil, 0, corruptf("mvcc key has keyspace byte %#x", enc[0])
	}
	n := len(enc) - tsLen
	if enc[n-2] != escByte || enc[n-1] != escTerm {
		return nil, 0, corruptf("mvcc key lacks terminator")
	}
	return enc[:n], decodeTS(binary.BigEndian.Uint64(enc[n:])), nil
}

// unescapePrefix appends the user key encoded in prefix to dst. prefix must
// have passed splitKey; unescapePrefix validates the escaping.
func unescapePrefix(dst, prefix []byte) ([]byte, error) {
	body := prefix[1 : len(prefix)-2]
	if dst == nil {
		dst = make([]byte, 0, len(body))
	}
	for {
		i := bytes.IndexByte(body, escByte)
		if i < 0 {
			return append(dst, body...), nil
		}
		if i+1 >= len(body) || body[i+1] != escEscaped {
			return nil, corruptf("mvcc key has invalid escape at byte %d", i)
		}
		dst = append(dst, body[:i+1]...)
		body = body[i+2:]
	}
}

// hasVersionOf reports whether enc is a version of the key whose prefix is
// prefix.
func hasVersionOf(enc, prefix []byte) bool {
	return len(enc) == len(prefix)+tsLen && bytes.Equal(enc[:len(prefix)], prefix)
}

// prefixEnd returns the smallest key greater than every version of the key
// with the given prefix: the terminator's last byte incremented. No other
// user key's encoding falls between, because after an escape byte only the
// terminator or the escaped-zero marker can follow.
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	end[len(end)-1]++
	return end
}

// dataLowerBound returns the Pebble lower bound for user keys >= start
// (nil or empty start: the whole MVCC keyspace).
func dataLowerBound(start []byte) []byte {
	if len(start) == 0 {
		return []byte{spaceData}
	}
	return appendKeyPrefix(nil, start)
}

// dataUpperBound returns the Pebble upper bound for user keys < end (nil or
// empty end: unbounded, the end of the MVCC keyspace).
func dataUpperBound(end []byte) []byte {
	if len(end) == 0 {
		return []byte{spaceData + 1}
	}
	return appendKeyPrefix(nil, end)
}

// encodeValue returns the stored form of an MVCC value.
func encodeValue(dst []byte, tombstone bool, value []byte) {
	if tombstone {
		dst[0] = tagTombstone
		return
	}
	dst[0] = tagValue
	copy(dst[1:], value)
}

// decodeValue splits a stored MVCC value into its tombstone flag and value.
func decodeValue(raw []byte) (tombstone bool, value []byte, err error) {
	if len(raw) == 0 {
		return false, nil, corruptf("empty mvcc value")
	}
	switch raw[0] {
	case tagValue:
		return false, raw[1:], nil
	case tagTombstone:
		if len(raw) != 1 {
			return false, nil, corruptf("tombstone with %d trailing bytes", len(raw)-1)
		}
		return true, nil, nil
	default:
		return false, nil, corruptf("mvcc value has unknown tag %#x", raw[0])
	}
}

// groupKey returns space followed by group big-endian.
func groupKey(space byte, group uint64) []byte {
	k := make([]byte, groupKeyLen, logKeyLen)
	k[0] = space
	binary.BigEndian.PutUint64(k[1:], group)
	return k
}

// groupEnd returns the smallest key greater than every key that starts with
// groupKey(space, group).
func groupEnd(space byte, group uint64) []byte {
	if group == ^uint64(0) {
		return []byte{space + 1}
	}
	return groupKey(space, group+1)
}

// logKey returns the Pebble key of a log entry.
func logKey(group, index uint64) []byte {
	return binary.BigEndian.AppendUint64(groupKey(spaceLog, group), index)
}

// logIndex extracts the index from a log key of the given group.
func logIndex(k []byte) (uint64, error) {
	if len(k) != logKeyLen || k[0] != spaceLog {
		return 0, corruptf("malformed log key (%d bytes)", len(k))
	}
	return binary.BigEndian.Uint64(k[groupKeyLen:]), nil
}

// metaKey returns the Pebble key of a meta record.
func metaKey(group uint64, name []byte) []byte {
	k := make([]byte, 0, groupKeyLen+len(name))
	return append(append(k, groupKey(spaceMeta, group)...), name...)
}

// encodeLogEntry returns the stored form of log entry data: compressed with
// snappy when that saves at least an eighth of its size.
func encodeLogEntry(data []byte) []byte {
	if len(data) >= logCompressMin {
		c := snappy.Encode(make([]byte, logHeaderLen+snappy.MaxEncodedLen(len(data)))[logHeaderLen:], data)
		if len(c) <= len(data)-len(data)/8 {
			out := make([]byte, logHeaderLen+len(c))
			out[0] = logSnappy
			copy(out[logHeaderLen:], c)
			return out
		}
	}
	out := make([]byte, logHeaderLen+len(data))
	out[0] = logRaw
	copy(out[logHeaderLen:], data)
	return out
}

// decodeLogEntry returns a fresh copy of the data of a stored log entry.
func decodeLogEntry(raw []byte) ([]byte, error) {
	if len(raw) < logHeaderLen {
		return nil, corruptf("empty log entry")
	}
	switch raw[0] {
	case logRaw:
		return bytes.Clone(raw[logHeaderLen:]), nil
	case logSnappy:
		out, err := snappy.Decode(nil, raw[logHeaderLen:])
		if err != nil {
			return nil, corruptf("log entry: %v", err)
		}
		return out, nil
	default:
		return nil, corruptf("log entry has unknown tag %#x", raw[0])
	}
}

// encodeHorizon returns the stored form of a GC horizon.
func encodeHorizon(h tt.Timestamp) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, horizonValueLen), uint64(h))
}

// decodeHorizon inverts encodeHorizon.
func decodeHorizon(raw []byte) (tt.Timestamp, error) {
	if len(raw) != horizonValueLen {
		return 0, corruptf("gc horizon record has %d bytes", len(raw))
	}
	h := tt.Timestamp(binary.BigEndian.Uint64(raw))
	if h < 0 {
		return 0, corruptf("negative gc horizon %d", int64(h))
	}
	return h, nil
}
