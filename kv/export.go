package kv

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/golang/snappy"

	"github.com/meridiandb/meridian/tt"
)

// Snapshot chunk format. A chunk is a fixed header followed by the
// snappy-compressed payload:
//
//	off  len  field
//	  0    4  magic "MRDS"
//	  4    1  format version (1)
//	  5    1  flags (bit 0: last chunk of the export)
//	  6    4  sequence number, from 0 (uint32 BE)
//	 10    4  record count (uint32 BE)
//	 14    8  GC horizon of the exporter (int64 BE)
//	 22    8  read timestamp of the export (int64 BE)
//	 30    4  uncompressed payload length (uint32 BE)
//	 34    4  CRC-32C (Castagnoli) of bytes [0,34) followed by the compressed payload
//	 38    …  snappy(payload)
//
// The payload is a sequence of records in key order (user key ascending,
// timestamp descending), each
//
//	kind (1: value, 2: tombstone) | uvarint key length | key |
//	timestamp (int64 BE) | [uvarint value length | value]   (values only)
//
// The checksum covers the header and the payload, so any flipped bit is
// detected before anything is decompressed or applied.
const (
	chunkMagic      = "MRDS"
	chunkVersion    = 1
	chunkFlagLast   = 0x01
	chunkHeaderLen  = 38
	chunkCRCOffset  = 34
	chunkKindValue  = 1
	chunkKindTomb   = 2
	defaultChunkLen = 1 << 20
	// maxChunkTarget caps the chunk size an exporter aims for, and
	// maxChunkRawLen the uncompressed payload an importer accepts.
	maxChunkTarget = 256 << 20
	maxChunkRawLen = 1 << 30
	maxSnappyRatio = 22
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ChunkInfo describes a snapshot chunk, as read from its header.
type ChunkInfo struct {
	// Seq numbers the chunks of one export from 0.
	Seq uint32
	// Last is set on the final chunk of an export.
	Last bool
	// Count is the number of versions in the chunk.
	Count int
	// Horizon is the exporter's GC horizon; the importer must adopt it.
	Horizon tt.Timestamp
	// ReadTS is the timestamp the export was taken at.
	ReadTS tt.Timestamp
}

// InspectChunk verifies a chunk's header and checksum and describes it. A
// receiver can use it to check that chunks arrive in sequence and that the
// last one arrived.
func InspectChunk(chunk []byte) (ChunkInfo, error) {
	info, _, err := parseChunkHeader(chunk)
	return info, err
}

// parseChunkHeader verifies the header and checksum of chunk and returns
// its description and compressed payload.
func parseChunkHeader(chunk []byte) (ChunkInfo, []byte, error) {
	if len(chunk) < chunkHeaderLen {
		return ChunkInfo{}, nil, corruptf("snapshot chunk too short (%d bytes)", len(chunk))
	}
	if string(chunk[:4]) != chunkMagic {
		return ChunkInfo{}, nil, corruptf("snapshot chunk has bad magic %x", chunk[:4])
	}
	if chunk[4] != chunkVersion {
		return ChunkInfo{}, nil, corruptf("snapshot chunk has unknown format version %d", chunk[4])
	}
	payload := chunk[chunkHeaderLen:]
	want := binary.BigEndian.Uint32(chunk[chunkCRCOffset:])
	got := crc32.Update(crc32.Checksum(chunk[:chunkCRCOffset], castagnoli), castagnoli, payload)
	if got != want {
		return ChunkInfo{}, nil, corruptf("snapshot chunk checksum mismatch: %08x != %08x", got, want)
	}
	flags := chunk[5]
	if flags&^chunkFlagLast != 0 {
		return ChunkInfo{}, nil, corruptf("snapshot chunk has unknown flags %#x", flags)
	}
	info := ChunkInfo{
		Seq:     binary.BigEndian.Uint32(chunk[6:]),
		Last:    flags&chunkFlagLast != 0,
		Count:   int(binary.BigEndian.Uint32(chunk[10:])),
		Horizon: tt.Timestamp(binary.BigEndian.Uint64(chunk[14:])),
		ReadTS:  tt.Timestamp(binary.BigEndian.Uint64(chunk[22:])),
	}
	if info.Horizon < 0 || info.ReadTS < info.Horizon {
		return ChunkInfo{}, nil, corruptf("snapshot chunk has horizon %d and read timestamp %d", int64(info.Horizon), int64(info.ReadTS))
	}
	return info, payload, nil
}

// chunkWriter accumulates exported versions into chunks.
type chunkWriter struct {
	target          int
	horizon, readTS tt.Timestamp
	emit            func([]byte) error

	seq   uint32
	count uint32
	buf   []byte // uncompressed payload
}

// add appends a version, first emitting the current chunk if it is full.
// Chunks are emitted lazily so that the last one can be flagged.
func (w *chunkWriter) add(key []byte, ts tt.Timestamp, tomb bool, val []byte) error {
	if len(w.buf) >= w.target {
		if err := w.flush(false); err != nil {
			return err
		}
	}
	if tomb {
		w.buf = append(w.buf, chunkKindTomb)
	} else {
		w.buf = append(w.buf, chunkKindValue)
	}
	w.buf = binary.AppendUvarint(w.buf, uint64(len(key)))
	w.buf = append(w.buf, key...)
	w.buf = binary.BigEndian.AppendUint64(w.buf, uint64(ts))
	if !tomb {
		w.buf = binary.AppendUvarint(w.buf, uint64(len(val)))
		w.buf = append(w.buf, val...)
	}
	if len(w.buf) > maxChunkRawLen {
		return fmt.Errorf("kv: export: chunk payload exceeds %d bytes", maxChunkRawLen)
	}
	w.count++
	return nil
}

// flush emits the accumulated versions as one chunk.
func (w *chunkWriter) flush(last bool) error {
	chunk := make([]byte, chunkHeaderLen+snappy.MaxEncodedLen(len(w.buf)))
	enc := snappy.Encode(chunk[chunkHeaderLen:], w.buf)
	chunk = chunk[:chunkHeaderLen+len(enc)]
	copy(chunk, chunkMagic)
	chunk[4] = chunkVersion
	if last {
		chunk[5] = chunkFlagLast
	}
	binary.BigEndian.PutUint32(chunk[6:], w.seq)
	binary.BigEndian.PutUint32(chunk[10:], w.count)
	binary.BigEndian.PutUint64(chunk[14:], uint64(w.horizon))
	binary.BigEndian.PutUint64(chunk[22:], uint64(w.readTS))
	binary.BigEndian.PutUint32(chunk[30:], uint32(len(w.buf)))
	crc := crc32.Update(crc32.Checksum(chunk[:chunkCRCOffset], castagnoli), castagnoli, chunk[chunkHeaderLen:])
	binary.BigEndian.PutUint32(chunk[chunkCRCOffset:], crc)
	if err := w.emit(chunk); err != nil {
		return err
	}
	w.seq++
	w.count = 0
	w.buf = w.buf[:0]
	return nil
}

func (v view) exportSnapshot(start, end []byte, ts tt.Timestamp, chunkBytes int, emit func([]byte) error) (err error) {
	if chunkBytes <= 0 {
		chunkBytes = defaultChunkLen
	}
	chunkBytes = min(chunkBytes, maxChunkTarget)
	lower, upper := dataLowerBound(start), dataUpperBound(end)
	it, err := v.newIter(lower, upper, ts)
	if err != nil {
		return fmt.Errorf("kv: export: %w", err)
	}
	w := &chunkWriter{target: chunkBytes, horizon: v.horizon(), readTS: ts, emit: emit}
	if it == nil { // empty range
		return w.flush(true)
	}
	defer closeIter(it, &err)
	// The horizon loaded after opening the iterator covers every deletion
	// the iterator sees (see newIter), so the importer may adopt it.
	if w.horizon > ts {
		return fmt.Errorf("kv: export: %w: read at %d, horizon %d", ErrBelowGCHorizon, int64(ts), int64(w.horizon))
	}
	s := &scanner{it: it, ts: ts}
	var key []byte
	if err := s.visit(true, func(vts tt.Timestamp, tomb bool, val []byte) (bool, error) {
		k, err := unescapePrefix(key[:0], s.prefix)
		if err != nil {
			return false, err
		}
		key = k
		return true, w.add(key, vts, tomb, val)
	}); err != nil {
		return err
	}
	return w.flush(true)
}

// chunkRecord is one version decoded from a chunk; slices alias the
// decompressed payload.
type chunkRecord struct {
	key, val []byte
	ts       tt.Timestamp
	tomb     bool
}

// decodeChunk verifies chunk and decodes its records, checking their
// structure and order. It never panics on arbitrary input.
func decodeChunk(chunk []byte) (ChunkInfo, []chunkRecord, error) {
	info, payload, err := parseChunkHeader(chunk)
	if err != nil {
		return info, nil, err
	}
	rawLen := binary.BigEndian.Uint32(chunk[30:])
	// Snappy expands at most 64 bytes from a 3-byte copy element, so a
	// length beyond that ratio is corrupt; checking before allocating
	// bounds the memory a bad header can claim.
	if rawLen > maxChunkRawLen || uint64(rawLen) > maxSnappyRatio*uint64(len(payload))+64 {
		return info, nil, corruptf("snapshot chunk claims %d bytes from %d compressed", rawLen, len(payload))
	}
	if n, err := snappy.DecodedLen(payload); err != nil || n != int(rawLen) {
		return info, nil, corruptf("snapshot chunk payload length %d (%v), header says %d", n, err, rawLen)
	}
	raw, err := snappy.Decode(make([]byte, rawLen), payload)
	if err != nil {
		return info, nil, corruptf("snapshot chunk: %v", err)
	}
	recs := make([]chunkRecord, 0, min(info.Count, len(raw)/10+1))
	for len(raw) > 0 {
		var r chunkRecord
		kind := raw[0]
		raw = raw[1:]
		switch kind {
		case chunkKindValue:
		case chunkKindTomb:
			r.tomb = true
		default:
			return info, nil, corruptf("snapshot record %d has kind %d", len(recs), kind)
		}
		if r.key, raw, err = readBytes(raw); err != nil {
			return info, nil, fmt.Errorf("snapshot record %d key: %w", len(recs), err)
		}
		if len(raw) < tsLen {
			return info, nil, corruptf("snapshot record %d truncated", len(recs))
		}
		r.ts = tt.Timestamp(binary.BigEndian.Uint64(raw))
		raw = raw[tsLen:]
		if !r.tomb {
			if r.val, raw, err = readBytes(raw); err != nil {
				return info, nil, fmt.Errorf("snapshot record %d value: %w", len(recs), err)
			}
		}
		if len(r.key) == 0 || r.ts < 0 || r.ts > info.ReadTS {
			return info, nil, corruptf("snapshot record %d has key %s at %d (read timestamp %d)", len(recs), keyString(r.key), int64(r.ts), int64(info.ReadTS))
		}
		if n := len(recs); n > 0 {
			p := recs[n-1]
			c := bytes.Compare(p.key, r.key)
			if c > 0 || (c == 0 && p.ts <= r.ts) {
				return info, nil, corruptf("snapshot record %d out of order", n)
			}
		}
		recs = append(recs, r)
	}
	if len(recs) != info.Count {
		return info, nil, corruptf("snapshot chunk has %d records, header says %d", len(recs), info.Count)
	}
	return info, recs, nil
}

// readBytes reads a uvarint-length-prefixed byte string.
func readBytes(b []byte) (s, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, corruptf("bad length prefix")
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// ImportSnapshotChunk verifies a chunk produced by ExportSnapshot and adds
// its versions to the batch. A chunk that fails verification (checksum,
// structure, order) yields an error wrapping ErrCorrupt and adds nothing;
// versions whose key or value exceed this engine's limits yield
// ErrKeyTooLarge or ErrValueTooLarge and add nothing. It returns the
// exporter's GC horizon; committing the batch also raises this engine's
// horizon to it (atomically with the versions, never lowering it), because
// the chunk lacks the versions the exporter collected below it.
//
// To replace a range with a snapshot, ClearData the range first in the same
// batch. Chunks of one export may be imported into one batch or several.
func (b *Batch) ImportSnapshotChunk(chunk []byte) (horizon tt.Timestamp, err error) {
	if err := b.usable(); err != nil {
		return 0, err
	}
	info, recs, err := decodeChunk(chunk)
	if err != nil {
		return 0, fmt.Errorf("kv: import snapshot chunk: %w", err)
	}
	for i, r := range recs {
		if len(r.key) > b.e.opts.MaxKeySize {
			return 0, fmt.Errorf("kv: import snapshot chunk %d record %d: %w: %d bytes > %d", info.Seq, i, ErrKeyTooLarge, len(r.key), b.e.opts.MaxKeySize)
		}
		if len(r.val) > b.e.opts.MaxValueSize {
			return 0, fmt.Errorf("kv: import snapshot chunk %d record %d: %w: %d bytes > %d", info.Seq, i, ErrValueTooLarge, len(r.val), b.e.opts.MaxValueSize)
		}
	}
	for _, r := range recs {
		if err := b.putVersion(r.key, r.ts, r.tomb, r.val); err != nil {
			return 0, err
		}
	}
	b.horizon = max(b.horizon, info.Horizon)
	b.rewrites = true
	return info.Horizon, nil
}
