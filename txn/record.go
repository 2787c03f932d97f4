package txn

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/meridiandb/meridian/tt"
)

// Log records: what the transaction layer writes through Paxos. Each is one
// paxos entry's Data, starting with its format and kind bytes, or one of a
// batch of records an entry carries (batchFormat).
type recKind uint8

const (
	// recCommit: a single-group transaction's writes, applied at the entry
	// timestamp (with commit wait).
	recCommit recKind = iota + 1
	// recPrepare: a participant's prepared writes; the entry timestamp is
	// the prepare timestamp.
	recPrepare
	// recResolve: a participant learns the outcome (commit at TS, or
	// abort).
	recResolve
	// recCoordCommit: the coordinator's commit record: its own writes and
	// the participants, at the entry timestamp s (with commit wait).
	recCoordCommit
	// recCoordAbort: the coordinator decided abort (durably, so every later
	// answer agrees).
	recCoordAbort
)

type record struct {
	kind         recKind
	txn          Meta
	writes       []Mutation
	coordinator  uint64   // recPrepare
	participants []uint64 // recCoordCommit
	commit       bool     // recResolve
	ts           tt.Timestamp
	// recPrepare: the shared locks the transaction holds here (point keys
	// and spans), so a new leader re-takes them with the exclusive ones: a
	// prepared transaction's reads stay protected until its outcome.
	readKeys  []string
	readSpans []keySpan
}

// ErrCorruptRecord is returned for undecodable records.
var ErrCorruptRecord = errors.New("txn: corrupt log record")

const (
	recFormat = 1
	// batchFormat: several records proposed together in one entry (see
	// Group.flushProposals), applied in order at the entry's timestamp:
	// the format byte, a count, then each record length-prefixed.
	batchFormat = 2
)

// marshalBatch encodes recs (already marshaled, at least two) as one entry.
func marshalBatch(recs [][]byte) []byte {
	b := binary.AppendUvarint([]byte{batchFormat}, uint64(len(recs)))
	for _, r := range recs {
		b = appendBytes(b, r)
	}
	return b
}

// unmarshalRecords decodes an entry's data: one record, or a batch of
// them (never nested, never fewer than two).
func unmarshalRecords(b []byte) ([]record, error) {
	if len(b) == 0 || b[0] != batchFormat {
		r, err := unmarshalRecord(b)
		if err != nil {
			return nil, err
		}
		return []record{r}, nil
	}
	rd := reader{b: b[1:]}
	n := rd.uv()
	if rd.err != nil || n < 2 || n > uint64(len(rd.b)) {
		return nil, fmt.Errorf("%w: batch count", ErrCorruptRecord)
	}
	recs := make([]record, 0, n)
	for i := uint64(0); i < n; i++ {
		sub := rd.view()
		if rd.err != nil {
			return nil, fmt.Errorf("%w: batch", ErrCorruptRecord)
		}
		r, err := unmarshalRecord(sub)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	if len(rd.b) != 0 {
		return nil, fmt.Errorf("%w: batch trailer", ErrCorruptRecord)
	}
	return recs, nil
}

func (r *record) marshal() []byte {
	b := []byte{recFormat, byte(r.kind)}
	b = binary.AppendUvarint(b, r.txn.ID.Hi)
	b = binary.AppendUvarint(b, r.txn.ID.Lo)
	b = binary.AppendVarint(b, int64(r.txn.Priority))
	b = binary.AppendUvarint(b, uint64(len(r.writes)))
	for _, w := range r.writes {
		b = appendBytes(b, w.Key)
		b = appendBytes(b, w.Value)
		if w.Delete {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	b = binary.AppendUvarint(b, r.coordinator)
	b = binary.AppendUvarint(b, uint64(len(r.participants)))
	for _, p := range r.participants {
		b = binary.AppendUvarint(b, p)
	}
	if r.commit {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendVarint(b, int64(r.ts))
	b = binary.AppendUvarint(b, uint64(len(r.readKeys)))
	for _, k := range r.readKeys {
		b = appendBytes(b, []byte(k))
	}
	b = binary.AppendUvarint(b, uint64(len(r.readSpans)))
	for _, sp := range r.readSpans {
		b = appendBytes(b, sp.start)
		if sp.end == nil {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = appendBytes(b, sp.end)
		}
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = ErrCorruptRecord
	}
}

func (r *reader) uv() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) v() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// view returns the next length-prefixed bytes without copying them.
func (r *reader) view() []byte {
	n := r.uv()
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// bytes returns a copy of the next length-prefixed bytes.
func (r *reader) bytes() []byte { return append([]byte(nil), r.view()...) }

func unmarshalRecord(b []byte) (record, error) {
	rd := reader{b: b}
	var r record
	if rd.byte() != recFormat {
		return r, fmt.Errorf("%w: unknown format", ErrCorruptRecord)
	}
	r.kind = recKind(rd.byte())
	if r.kind < recCommit || r.kind > recCoordAbort {
		return r, fmt.Errorf("%w: unknown kind", ErrCorruptRecord)
	}
	r.txn.ID.Hi = rd.uv()
	r.txn.ID.Lo = rd.uv()
	r.txn.Priority = tt.Timestamp(rd.v())
	n := rd.uv()
	if n > uint64(len(rd.b)) {
		return r, fmt.Errorf("%w: write count", ErrCorruptRecord)
	}
	for i := uint64(0); i < n && rd.err == nil; i++ {
		w := Mutation{Key: rd.bytes(), Value: rd.bytes()}
		switch rd.byte() {
		case 0:
		case 1:
			w.Delete = true
		default:
			rd.fail()
		}
		r.writes = append(r.writes, w)
	}
	r.coordinator = rd.uv()
	np := rd.uv()
	if np > uint64(len(rd.b)) {
		return r, fmt.Errorf("%w: participant count", ErrCorruptRecord)
	}
	for i := uint64(0); i < np && rd.err == nil; i++ {
		r.participants = append(r.participants, rd.uv())
	}
	switch rd.byte() {
	case 0:
	case 1:
		r.commit = true
	default:
		rd.fail()
	}
	r.ts = tt.Timestamp(rd.v())
	nk := rd.uv()
	if nk > uint64(len(rd.b)) {
		return r, fmt.Errorf("%w: read key count", ErrCorruptRecord)
	}
	for i := uint64(0); i < nk && rd.err == nil; i++ {
		r.readKeys = append(r.readKeys, string(rd.bytes()))
	}
	ns := rd.uv()
	if ns > uint64(len(rd.b)) {
		return r, fmt.Errorf("%w: read span count", ErrCorruptRecord)
	}
	for i := uint64(0); i < ns && rd.err == nil; i++ {
		sp := keySpan{start: rd.bytes()}
		switch rd.byte() {
		case 0:
		case 1:
			sp.end = rd.bytes()
			if sp.end == nil {
				sp.end = []byte{}
			}
		default:
			rd.fail()
		}
		r.readSpans = append(r.readSpans, sp)
	}
	if rd.err == nil && len(rd.b) != 0 {
		rd.fail()
	}
	return r, rd.err
}

// Meta record names: prepared transactions, and chunks of outcomes named
// by the log index of the first entry whose outcome they hold.
func prepName(id TxnID) []byte { return append([]byte("txn/prep/"), id.Bytes()...) }
func outcomeChunkName(index uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(outcomeChunkPrefix), index)
}

const outcomeChunkPrefix = "txn/out/"

// outcomeChunk is the outcomes recorded by the entries applied in one
// Ready, stored as one meta record: one insert and one delete per Ready
// instead of one of each per transaction.
type outcomeChunk struct {
	index uint64 // the first entry's log index: the record's name
	outs  []chunkOutcome
}

type chunkOutcome struct {
	id TxnID
	outcome
}

func (c *outcomeChunk) marshal() []byte {
	b := make([]byte, 0, len(c.outs)*26)
	for _, o := range c.outs {
		b = binary.BigEndian.AppendUint64(b, o.id.Hi)
		b = binary.BigEndian.AppendUint64(b, o.id.Lo)
		b = o.appendTo(b)
	}
	return b
}

// maxTS is the newest outcome's timestamp.
func (c *outcomeChunk) maxTS() tt.Timestamp {
	var m tt.Timestamp
	for i, o := range c.outs {
		if i == 0 || o.ts > m {
			m = o.ts
		}
	}
	return m
}

// unmarshalOutcomeChunk parses a chunk record; name is its meta name.
func unmarshalOutcomeChunk(name, b []byte) (*outcomeChunk, error) {
	if len(name) != len(outcomeChunkPrefix)+8 {
		return nil, ErrCorruptRecord
	}
	c := &outcomeChunk{index: binary.BigEndian.Uint64(name[len(outcomeChunkPrefix):])}
	for len(b) > 0 {
		if len(b) < 18 || b[16] > 1 {
			return nil, ErrCorruptRecord
		}
		id := TxnID{Hi: binary.BigEndian.Uint64(b[:8]), Lo: binary.BigEndian.Uint64(b[8:16])}
		v, n := binary.Varint(b[17:])
		if n <= 0 {
			return nil, ErrCorruptRecord
		}
		c.outs = append(c.outs, chunkOutcome{id, outcome{commit: b[16] == 1, ts: tt.Timestamp(v)}})
		b = b[17+n:]
	}
	if len(c.outs) == 0 {
		return nil, ErrCorruptRecord
	}
	return c, nil
}

// outcome is a transaction's decided fate as the group recorded it.
type outcome struct {
	commit bool
	ts     tt.Timestamp // commit timestamp, or the abort record's entry timestamp
}

func (o outcome) appendTo(b []byte) []byte {
	commit := byte(0)
	if o.commit {
		commit = 1
	}
	return binary.AppendVarint(append(b, commit), int64(o.ts))
}
