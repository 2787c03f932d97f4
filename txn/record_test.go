package txn

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/meridiandb/meridian/tt"
)

// Record and outcome codecs: what the transaction layer writes through
// Paxos and into its meta records.

// fullRecord returns a record of kind k with every field populated, the
// read spans with nil, empty and non-empty ends.
func fullRecord(k recKind) record {
	return record{
		kind: k,
		txn:  Meta{ID: TxnID{Hi: math.MaxUint64, Lo: 42}, Priority: -7},
		writes: []Mutation{
			{Key: []byte("a/k1"), Value: []byte("v1")},
			{Key: []byte("a/k2"), Delete: true},
			{Key: []byte("a/\x00\xff"), Value: bytes.Repeat([]byte{0x80}, 300)},
		},
		coordinator:  1 << 40,
		participants: []uint64{2, 3, math.MaxUint64},
		commit:       true,
		ts:           hStart.Add(12345),
		readKeys:     []string{"a/r1", "", "a/\xff"},
		readSpans: []keySpan{
			{start: []byte("a/s"), end: []byte("a/t")},
			{start: []byte("a/u")},                  // unbounded
			{start: []byte("a/v"), end: []byte{}},   // empty, not unbounded
			{start: nil, end: []byte("a/\xff\xff")}, // from the beginning
		},
	}
}

// sameRecord compares records, treating nil and empty byte slices alike
// except for span ends, where nil means unbounded.
func sameRecord(a, b record) bool {
	if a.kind != b.kind || a.txn != b.txn || a.coordinator != b.coordinator || a.commit != b.commit || a.ts != b.ts ||
		len(a.writes) != len(b.writes) || len(a.participants) != len(b.participants) ||
		len(a.readKeys) != len(b.readKeys) || len(a.readSpans) != len(b.readSpans) {
		return false
	}
	for i := range a.writes {
		x, y := a.writes[i], b.writes[i]
		if !bytes.Equal(x.Key, y.Key) || !bytes.Equal(x.Value, y.Value) || x.Delete != y.Delete {
			return false
		}
	}
	for i := range a.participants {
		if a.participants[i] != b.participants[i] {
			return false
		}
	}
	for i := range a.readKeys {
		if a.readKeys[i] != b.readKeys[i] {
			return false
		}
	}
	for i := range a.readSpans {
		x, y := a.readSpans[i], b.readSpans[i]
		if !bytes.Equal(x.start, y.start) || !bytes.Equal(x.end, y.end) || (x.end == nil) != (y.end == nil) {
			return false
		}
	}
	return true
}

var allKinds = []recKind{recCommit, recPrepare, recResolve, recCoordCommit, recCoordAbort}

func TestRecordRoundTrip(t *testing.T) {
	for _, k := range allKinds {
		for name, rec := range map[string]record{
			"full":    fullRecord(k),
			"minimal": {kind: k},
			"typical": typicalRecord(k),
		} {
			b := rec.marshal()
			got, err := unmarshalRecord(b)
			if err != nil {
				t.Fatalf("kind %d %s: %v", k, name, err)
			}
			if !sameRecord(got, rec) {
				t.Fatalf("kind %d %s: round trip\n got %+v\nwant %+v", k, name, got, rec)
			}
			if again := got.marshal(); !bytes.Equal(again, b) {
				t.Fatalf("kind %d %s: re-encoding differs", k, name)
			}
		}
	}
	// Span ends keep their meaning: nil is unbounded, empty is empty.
	full := fullRecord(recPrepare)
	got, _ := unmarshalRecord(full.marshal())
	if got.readSpans[1].end != nil || got.readSpans[2].end == nil {
		t.Fatalf("span ends lost their nil-ness: %+v", got.readSpans)
	}
	if !got.readSpans[1].contains([]byte("zzz")) || got.readSpans[2].contains([]byte("a/v")) {
		t.Fatal("decoded spans cover the wrong keys")
	}
}

// typicalRecord is what the Group really writes for each kind.
func typicalRecord(k recKind) record {
	m := Meta{ID: TxnID{Hi: 1, Lo: 2}, Priority: hStart}
	switch k {
	case recCommit:
		return record{kind: k, txn: m, writes: muts("a/x=1", "a/y=")}
	case recPrepare:
		return record{kind: k, txn: m, writes: muts("b/x=1"), coordinator: 1, ts: hStart.Add(5),
			readKeys: []string{"b/r"}, readSpans: []keySpan{{start: []byte("b/s")}}}
	case recResolve:
		return record{kind: k, txn: m, commit: true, ts: hStart.Add(9)}
	case recCoordCommit:
		return record{kind: k, txn: m, writes: muts("a/x=1"), participants: []uint64{2, 3}}
	default:
		return record{kind: k, txn: m}
	}
}

func TestRecordBatchCodec(t *testing.T) {
	var recs []record
	var enc [][]byte
	for _, k := range allKinds {
		for _, r := range []record{fullRecord(k), typicalRecord(k), {kind: k}} {
			recs = append(recs, r)
			enc = append(enc, r.marshal())
		}
	}
	got, err := unmarshalRecords(marshalBatch(enc))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(recs) {
		t.Fatalf("%d records, want %d", len(got), len(recs))
	}
	for i := range recs {
		if !sameRecord(got[i], recs[i]) {
			t.Fatalf("record %d: got %+v, want %+v", i, got[i], recs[i])
		}
	}
	// A lone record is its own entry, as before batches existed.
	if one, err := unmarshalRecords(enc[0]); err != nil || len(one) != 1 || !sameRecord(one[0], recs[0]) {
		t.Fatalf("a lone record: %+v, %v", one, err)
	}
	two := marshalBatch(enc[:2])
	for name, b := range map[string][]byte{
		"no records":    {batchFormat, 0},
		"one record":    marshalBatch(enc[:1]),
		"huge count":    {batchFormat, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"truncated":     two[:len(two)-1],
		"trailing byte": append(append([]byte(nil), two...), 0),
		"nested":        marshalBatch([][]byte{two, enc[0]}),
		"bad record":    marshalBatch([][]byte{enc[0], {recFormat, 0}}),
	} {
		if _, err := unmarshalRecords(b); !errors.Is(err, ErrCorruptRecord) {
			t.Errorf("%s: %v, want ErrCorruptRecord", name, err)
		}
	}
}

func TestRecordCorrupt(t *testing.T) {
	full := fullRecord(recPrepare)
	valid := full.marshal()
	cases := map[string][]byte{
		"empty":         nil,
		"format only":   {recFormat},
		"bad format":    append([]byte{2}, valid[1:]...),
		"kind 0":        append([]byte{recFormat, 0}, valid[2:]...),
		"kind 6":        append([]byte{recFormat, 6}, valid[2:]...),
		"trailing byte": append(append([]byte(nil), valid...), 0),
		"huge write count": func() []byte {
			b := []byte{recFormat, byte(recCommit), 1, 2, 0}
			return append(b, 0xff, 0xff, 0xff, 0xff, 0x0f)
		}(),
		"bad delete flag": func() []byte {
			r := record{kind: recCommit, writes: muts("k=v")}
			b := r.marshal()
			// format kind hi lo prio n klen k vlen v flag ...
			b[10] = 2
			return b
		}(),
		"bad commit flag": func() []byte {
			r := record{kind: recResolve}
			b := r.marshal()
			b[len(b)-4] = 7 // commit, ts(1), nkeys(1), nspans(1)
			return b
		}(),
		"bad span end flag": func() []byte {
			r := record{kind: recPrepare, readSpans: []keySpan{{start: []byte("s")}}}
			b := r.marshal()
			b[len(b)-1] = 3
			return b
		}(),
		"overlong varint": append([]byte{recFormat, byte(recCommit)}, bytes.Repeat([]byte{0xff}, 11)...),
	}
	for name, b := range cases {
		if _, err := unmarshalRecord(b); !errors.Is(err, ErrCorruptRecord) {
			t.Errorf("%s: err %v, want ErrCorruptRecord", name, err)
		}
	}
	// Every strict prefix of a valid record is corrupt.
	for n := 0; n < len(valid); n++ {
		if _, err := unmarshalRecord(valid[:n]); !errors.Is(err, ErrCorruptRecord) {
			t.Fatalf("prefix of %d/%d bytes: err %v", n, len(valid), err)
		}
	}
}

func TestOutcomeChunkCodec(t *testing.T) {
	c := &outcomeChunk{index: 42}
	for i, o := range []outcome{
		{commit: true, ts: hStart},
		{commit: false, ts: hStart.Add(1)},
		{commit: true, ts: 0},
		{commit: false, ts: -1},
		{commit: true, ts: tt.MaxTimestamp},
		{commit: true, ts: math.MinInt64},
	} {
		c.outs = append(c.outs, chunkOutcome{TxnID{Hi: uint64(i) << 40, Lo: ^uint64(i)}, o})
	}
	name, b := outcomeChunkName(c.index), c.marshal()
	got, err := unmarshalOutcomeChunk(name, b)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("got %+v, %v; want %+v", got, err, c)
	}
	if !bytes.Equal(got.marshal(), b) {
		t.Fatal("re-encoding differs")
	}
	if string(outcomeChunkName(1)) >= string(outcomeChunkName(256)) {
		t.Fatal("chunk names do not sort by index")
	}
	id := make([]byte, 16)
	for what, bad := range map[string][2][]byte{
		"empty":         {name, nil},
		"flag only":     {name, append(id[:16:16], 1)},
		"bad flag":      {name, append(id[:16:16], 2, 0)},
		"cut ID":        {name, id[:10]},
		"cut varint":    {name, append(id[:16:16], 1, 0x80)},
		"overlong":      {name, append(append(id[:16:16], 0), bytes.Repeat([]byte{0xff}, 11)...)},
		"trailing byte": {name, append(c.marshal(), 0)},
		"short name":    {name[:len(name)-1], b},
	} {
		if _, err := unmarshalOutcomeChunk(bad[0], bad[1]); !errors.Is(err, ErrCorruptRecord) {
			t.Errorf("%s: err %v, want ErrCorruptRecord", what, err)
		}
	}
}

// The codecs accept varints with redundant continuation bytes (the
// standard library's decoders do), so "re-encodes to the same bytes" holds
// exactly for the canonical inputs. The fuzz targets check the precise
// form: a successful decode re-encodes to a form that decodes to the same
// value and is a fixed point; the re-encoding is never longer than the
// input, and when it is as long it is byte-identical (a non-minimal varint
// is always longer than the minimal one, and every other byte is fixed by
// the value).

// decodeFailed reports whether a decoder failed, and fails t if its error
// does not wrap ErrCorruptRecord.
func decodeFailed(t *testing.T, err error) bool {
	t.Helper()
	if err != nil && !errors.Is(err, ErrCorruptRecord) {
		t.Fatalf("error %v does not wrap ErrCorruptRecord", err)
	}
	return err != nil
}

func FuzzUnmarshalRecord(f *testing.F) {
	for _, k := range allKinds {
		full, typical := fullRecord(k), typicalRecord(k)
		f.Add(full.marshal())
		f.Add(typical.marshal())
		f.Add((&record{kind: k}).marshal())
	}
	f.Add([]byte{})
	f.Add([]byte{recFormat, byte(recCommit), 0x80, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // non-minimal ID varint
	f.Add([]byte{recFormat, byte(recCoordAbort), 1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := unmarshalRecord(b)
		if decodeFailed(t, err) {
			return
		}
		enc := rec.marshal()
		if len(enc) > len(b) || len(enc) == len(b) && !bytes.Equal(enc, b) {
			t.Fatalf("decoded %x, re-encoded differently: %x", b, enc)
		}
		again, err := unmarshalRecord(enc)
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, rec) {
			t.Fatalf("re-encoding decodes to %+v, want %+v", again, rec)
		}
		if !bytes.Equal(again.marshal(), enc) {
			t.Fatal("encoding is not a fixed point")
		}
	})
}

func FuzzUnmarshalRecords(f *testing.F) {
	a, b := typicalRecord(recCommit), fullRecord(recPrepare)
	f.Add(marshalBatch([][]byte{a.marshal(), b.marshal()}))
	f.Add(a.marshal())
	f.Add([]byte{batchFormat, 2, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := unmarshalRecords(data)
		if decodeFailed(t, err) {
			return
		}
		if len(recs) == 0 {
			t.Fatal("decoded an entry of no records")
		}
		enc := recs[0].marshal()
		if len(recs) > 1 {
			subs := make([][]byte, len(recs))
			for i := range recs {
				subs[i] = recs[i].marshal()
			}
			enc = marshalBatch(subs)
		}
		again, err := unmarshalRecords(enc)
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, recs) {
			t.Fatalf("re-encoding decodes to %+v, want %+v", again, recs)
		}
	})
}

func FuzzUnmarshalOutcomeChunk(f *testing.F) {
	one := &outcomeChunk{outs: []chunkOutcome{{TxnID{Hi: 1, Lo: 2}, outcome{commit: true, ts: hStart}}}}
	two := &outcomeChunk{outs: []chunkOutcome{{TxnID{Hi: 1}, outcome{ts: -5}}, {TxnID{Lo: 9}, outcome{commit: true}}}}
	f.Add(one.marshal())
	f.Add(two.marshal())
	f.Add([]byte{})
	f.Add(append(make([]byte, 16), 1))
	f.Add(append(make([]byte, 16), 2, 0))
	f.Add(append(make([]byte, 16), 1, 0x80, 0x00)) // non-minimal zero
	name := outcomeChunkName(7)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := unmarshalOutcomeChunk(name, b)
		if decodeFailed(t, err) {
			return
		}
		enc := c.marshal()
		if len(enc) > len(b) || len(enc) == len(b) && !bytes.Equal(enc, b) {
			t.Fatalf("decoded %x, re-encoded differently: %x", b, enc)
		}
		if again, err := unmarshalOutcomeChunk(name, enc); err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("re-encoding decodes to %+v, %v; want %+v", again, err, c)
		}
	})
}
