package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/tt"
)

func TestEncodeKeyOrder(t *testing.T) {
	// Listed in the order their encodings must sort.
	versions := []struct {
		key string
		ts  tt.Timestamp
	}{
		{"", 5},
		{"\x00", 7},
		{"\x00\x00", 7},
		{"\x00\x01", 7},
		{"\x01", 1},
		{"a", tt.MaxTimestamp},
		{"a", 20},
		{"a", 10},
		{"a", 0},
		{"a", -1},
		{"a", math.MinInt64},
		{"a\x00", 3},
		{"a\x00\x00", 3},
		{"a\x00\x01", 3},
		{"a\x00\xff", 3},
		{"a\x01", 3},
		{"ab", 100},
		{"ab", 99},
		{"b", 1},
		{"\xff", 1},
		{"\xff\xff", 1},
	}
	var prev []byte
	for i, v := range versions {
		enc := EncodeKey([]byte(v.key), v.ts)
		if len(enc) != encodedKeyLen([]byte(v.key)) {
			t.Errorf("%q@%d: len %d, encodedKeyLen %d", v.key, v.ts, len(enc), encodedKeyLen([]byte(v.key)))
		}
		k, ts, err := DecodeKey(enc)
		if err != nil || string(k) != v.key || ts != v.ts {
			t.Errorf("DecodeKey(EncodeKey(%q, %d)) = %q, %d, %v", v.key, v.ts, k, ts, err)
		}
		if i > 0 && bytes.Compare(prev, enc) >= 0 {
			t.Errorf("EncodeKey(%q@%d) = %x sorts before previous %x", v.key, v.ts, enc, prev)
		}
		prev = enc
	}
}

func TestDecodeKeyErrors(t *testing.T) {
	valid := EncodeKey([]byte("a\x00b"), 7)
	tests := []struct {
		name string
		enc  []byte
	}{
		{"nil", nil},
		{"short", []byte{spaceData, 0, 1}},
		{"wrong keyspace", append([]byte{spaceLog}, valid[1:]...)},
		{"no terminator", append([]byte{spaceData, 'a', 'b'}, make([]byte, 8)...)},
		{"bad escape", append([]byte{spaceData, 'a', 0, 2, 0, 1}, make([]byte, 8)...)},
		{"dangling escape", append([]byte{spaceData, 'a', 0, 0, 1}, make([]byte, 8)...)},
		{"truncated", valid[:len(valid)-1]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if k, ts, err := DecodeKey(tc.enc); !errors.Is(err, ErrCorrupt) {
				t.Errorf("DecodeKey(%x) = %q, %d, %v; want ErrCorrupt", tc.enc, k, ts, err)
			}
		})
	}
}

// versionedFixture writes the versions used by the read tests:
//
//	a: 10=a10 20=a20 30=<tomb> 40=a40
//	a\x00: 15=n15
//	ab: 25=ab25
//	b: 5=b5 (tombstone at 35)
//	c: 50=c50
func versionedFixture(t *testing.T, e *Engine) {
	put(t, e, "a", 10, "a10")
	put(t, e, "a", 20, "a20")
	del(t, e, "a", 30)
	put(t, e, "a", 40, "a40")
	put(t, e, "a\x00", 15, "n15")
	put(t, e, "ab", 25, "ab25")
	put(t, e, "b", 5, "b5")
	del(t, e, "b", 35)
	put(t, e, "c", 50, "c50")
}

func TestGet(t *testing.T) {
	e := openMem(t, Options{})
	versionedFixture(t, e)
	tests := []struct {
		key     string
		ts      tt.Timestamp
		want    string
		wantTS  tt.Timestamp
		wantErr error
	}{
		{"a", 9, "", 0, ErrNotFound},
		{"a", 10, "a10", 10, nil},
		{"a", 19, "a10", 10, nil},
		{"a", 20, "a20", 20, nil},
		{"a", 29, "a20", 20, nil},
		{"a", 30, "", 0, ErrNotFound},
		{"a", 39, "", 0, ErrNotFound},
		{"a", 40, "a40", 40, nil},
		{"a", tt.MaxTimestamp, "a40", 40, nil},
		{"a\x00", 15, "n15", 15, nil},
		{"a\x00", 14, "", 0, ErrNotFound},
		{"ab", 100, "ab25", 25, nil},
		{"b", 34, "b5", 5, nil},
		{"b", 35, "", 0, ErrNotFound},
		{"c", 49, "", 0, ErrNotFound},
		{"c", 50, "c50", 50, nil},
		{"d", 100, "", 0, ErrNotFound},
		{"", 100, "", 0, ErrEmptyKey},
		{"a", -1, "", 0, ErrBelowGCHorizon},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q@%d", tc.key, tc.ts), func(t *testing.T) {
			for _, r := range []Reader{e, e.NewSnapshot()} {
				v, vts, err := r.Get([]byte(tc.key), tc.ts)
				if !errors.Is(err, tc.wantErr) || string(v) != tc.want || vts != tc.wantTS {
					t.Errorf("%T.Get = %q, %d, %v; want %q, %d, %v", r, v, vts, err, tc.want, tc.wantTS, tc.wantErr)
				}
			}
		})
	}
}

func TestEqualTimestampOverwrites(t *testing.T) {
	e := openMem(t, Options{})
	put(t, e, "k", 5, "x")
	put(t, e, "k", 5, "y")
	if v, _, err := e.Get([]byte("k"), 5); err != nil || string(v) != "y" {
		t.Fatalf("after overwrite: %q, %v; want y", v, err)
	}
	del(t, e, "k", 5)
	if _, _, err := e.Get([]byte("k"), 5); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete at same ts: %v; want ErrNotFound", err)
	}
	// Within one batch, the last write at a timestamp wins.
	write(t, e, false, func(b *Batch) error {
		if err := b.Put([]byte("j"), 5, []byte("1")); err != nil {
			return err
		}
		if err := b.Delete([]byte("j"), 5); err != nil {
			return err
		}
		return b.Put([]byte("j"), 5, []byte("2"))
	})
	if v, _, err := e.Get([]byte("j"), 9); err != nil || string(v) != "2" {
		t.Fatalf("same-batch overwrite: %q, %v; want 2", v, err)
	}
	if kvs, err := e.Scan(nil, nil, 9, 0, false); err != nil || !slices.Equal(kvString(kvs), []string{"j@5=2"}) {
		t.Fatalf("Scan = %v, %v", kvString(kvs), err)
	}
}

func TestScan(t *testing.T) {
	e := openMem(t, Options{})
	versionedFixture(t, e)
	tests := []struct {
		name       string
		start, end string
		ts         tt.Timestamp
		limit      int
		reverse    bool
		want       []string
	}{
		{"all latest", "", "", 100, 0, false, []string{"a@40=a40", "a\x00@15=n15", "ab@25=ab25", "c@50=c50"}},
		{"all latest reverse", "", "", 100, 0, true, []string{"c@50=c50", "ab@25=ab25", "a\x00@15=n15", "a@40=a40"}},
		{"at 20", "", "", 20, 0, false, []string{"a@20=a20", "a\x00@15=n15", "b@5=b5"}},
		{"at 20 reverse", "", "", 20, 0, true, []string{"b@5=b5", "a\x00@15=n15", "a@20=a20"}},
		{"at 30 tombstone hides a", "", "", 30, 0, false, []string{"a\x00@15=n15", "ab@25=ab25", "b@5=b5"}},
		{"at 30 reverse", "", "", 30, 0, true, []string{"b@5=b5", "ab@25=ab25", "a\x00@15=n15"}},
		{"before everything", "", "", 4, 0, false, nil},
		{"limit 2", "", "", 100, 2, false, []string{"a@40=a40", "a\x00@15=n15"}},
		{"limit 2 reverse", "", "", 100, 2, true, []string{"c@50=c50", "ab@25=ab25"}},
		{"limit beyond", "", "", 100, 10, false, []string{"a@40=a40", "a\x00@15=n15", "ab@25=ab25", "c@50=c50"}},
		{"prefix range", "a", "b", 100, 0, false, []string{"a@40=a40", "a\x00@15=n15", "ab@25=ab25"}},
		{"prefix range reverse", "a", "b", 100, 0, true, []string{"ab@25=ab25", "a\x00@15=n15", "a@40=a40"}},
		{"start excludes a", "a\x00", "", 100, 0, false, []string{"a\x00@15=n15", "ab@25=ab25", "c@50=c50"}},
		{"end excludes a\\x00", "a", "a\x00", 100, 0, false, []string{"a@40=a40"}},
		{"end excludes a\\x00 reverse", "a", "a\x00", 100, 0, true, []string{"a@40=a40"}},
		{"between a\\x00 and ab", "a\x00\x00", "ab", 100, 0, false, nil},
		{"single key", "ab", "ab\x00", 100, 0, true, []string{"ab@25=ab25"}},
		{"empty range", "b", "a", 100, 0, false, nil},
		{"start only", "b", "", 100, 0, true, []string{"c@50=c50"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var start, end []byte
			if tc.start != "" {
				start = []byte(tc.start)
			}
			if tc.end != "" {
				end = []byte(tc.end)
			}
			for _, r := range []Reader{e, e.NewSnapshot()} {
				kvs, err := r.Scan(start, end, tc.ts, tc.limit, tc.reverse)
				if err != nil {
					t.Fatalf("%T.Scan: %v", r, err)
				}
				if got := kvString(kvs); !slices.Equal(got, tc.want) {
					t.Errorf("%T.Scan = %q; want %q", r, got, tc.want)
				}
			}
		})
	}
	if _, err := e.Scan(nil, nil, -5, 0, false); !errors.Is(err, ErrBelowGCHorizon) {
		t.Errorf("Scan below horizon: %v", err)
	}
}

// TestScanManyVersions covers the seek paths of scans: keys with more
// versions than itersBeforeSeek on both sides of the read timestamp.
func TestScanManyVersions(t *testing.T) {
	e := openMem(t, Options{})
	keys := []string{"k1", "k2", "k3", "k4"}
	for _, k := range keys {
		write(t, e, false, func(b *Batch) error {
			for ts := tt.Timestamp(1); ts <= 120; ts++ { // many more than itersBeforeSeek
				if err := b.Put([]byte(k), ts, []byte(fmt.Sprintf("%s-%d", k, ts))); err != nil {
					return err
				}
			}
			return nil
		})
	}
	del(t, e, "k3", 55)
	for _, ts := range []tt.Timestamp{1, 2, 5, 50, 55, 56, 119, 120, 1000} {
		for _, reverse := range []bool{false, true} {
			var want []string
			for _, k := range keys {
				vts := min(ts, 120)
				if k == "k3" && vts == 55 { // the tombstone replaced version 55
					continue
				}
				want = append(want, fmt.Sprintf("%s@%d=%s-%d", k, vts, k, vts))
			}
			if reverse {
				slices.Reverse(want)
			}
			kvs, err := e.Scan(nil, nil, ts, 0, reverse)
			if err != nil {
				t.Fatal(err)
			}
			if got := kvString(kvs); !slices.Equal(got, want) {
				t.Errorf("Scan(ts=%d, reverse=%v) = %q; want %q", ts, reverse, got, want)
			}
		}
	}
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		key     int
		value   int
		wantErr error
	}{
		{"default max key", Options{}, 4096, 1, nil},
		{"default key too large", Options{}, 4097, 1, ErrKeyTooLarge},
		{"default max value", Options{}, 1, 1 << 20, nil},
		{"default value too large", Options{}, 1, 1<<20 + 1, ErrValueTooLarge},
		{"empty key", Options{}, 0, 1, ErrEmptyKey},
		{"configured max key", Options{MaxKeySize: 8}, 8, 1, nil},
		{"configured key too large", Options{MaxKeySize: 8}, 9, 1, ErrKeyTooLarge},
		{"configured max value", Options{MaxValueSize: 16}, 1, 16, nil},
		{"configured value too large", Options{MaxValueSize: 16}, 1, 17, ErrValueTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := openMem(t, tc.opts)
			key := bytes.Repeat([]byte{'k'}, tc.key)
			val := bytes.Repeat([]byte{'v'}, tc.value)
			b := e.NewBatch()
			defer b.Close()
			err := b.Put(key, 1, val)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Put: %v; want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				if !b.Empty() {
					t.Fatal("refused Put left a write in the batch")
				}
				return
			}
			if err := b.Commit(true); err != nil {
				t.Fatal(err)
			}
			got, _, err := e.Get(key, 1)
			if err != nil || !bytes.Equal(got, val) {
				t.Fatalf("Get: %d bytes, %v", len(got), err)
			}
		})
	}

	e := openMem(t, Options{MaxKeySize: 8, MaxValueSize: 16, MaxLogEntrySize: 32})
	b := e.NewBatch()
	defer b.Close()
	checks := []struct {
		name string
		err  error
		want error
	}{
		{"delete empty key", b.Delete(nil, 1), ErrEmptyKey},
		{"delete key too large", b.Delete(make([]byte, 9), 1), ErrKeyTooLarge},
		{"negative timestamp", b.Put([]byte("k"), -1, nil), ErrInvalidTimestamp},
		{"meta name too large", b.SetMeta(1, make([]byte, 9), nil), ErrKeyTooLarge},
		{"meta value too large", b.SetMeta(1, []byte("n"), make([]byte, 17)), ErrValueTooLarge},
		{"hard state too large", b.SetHardState(1, make([]byte, 17)), ErrValueTooLarge},
		{"log entry too large", b.AppendLog(1, 1, make([]byte, 33)), ErrValueTooLarge},
		{"log entry at limit", b.AppendLog(1, 1, make([]byte, 32)), nil},
	}
	for _, c := range checks {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v; want %v", c.name, c.err, c.want)
		}
	}
	if b.Count() != 1 {
		t.Errorf("Count = %d; want 1 (only the valid log entry)", b.Count())
	}
	if _, err := Open(testDir, Options{FS: vfs.NewMem(), MaxKeySize: -1}); err == nil {
		t.Error("Open accepted a negative MaxKeySize")
	}
}

func TestLog(t *testing.T) {
	e := openMem(t, Options{})
	big := bytes.Repeat([]byte("compressible "), 100)
	write(t, e, true, func(b *Batch) error {
		for i := uint64(1); i <= 10; i++ {
			data := []byte(fmt.Sprintf("g1-%d", i))
			if i == 7 {
				data = big
			}
			if err := b.AppendLog(1, i, data); err != nil {
				return err
			}
		}
		for i := uint64(5); i <= 7; i++ {
			if err := b.AppendLog(2, i, []byte(fmt.Sprintf("g2-%d", i))); err != nil {
				return err
			}
		}
		return b.AppendLog(math.MaxUint64, math.MaxUint64, []byte("max"))
	})
	indices := func(es []LogEntry) []uint64 {
		var out []uint64
		for _, e := range es {
			out = append(out, e.Index)
		}
		return out
	}
	tests := []struct {
		name          string
		group, lo, hi uint64
		maxBytes      int
		want          []uint64
	}{
		{"all", 1, 0, 100, 0, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"window", 1, 3, 6, 0, []uint64{3, 4, 5}},
		{"empty window", 1, 6, 6, 0, nil},
		{"inverted window", 1, 6, 3, 0, nil},
		{"max bytes", 1, 1, 11, 9, []uint64{1, 2}},
		{"max bytes tiny still one", 1, 1, 11, 1, []uint64{1}},
		{"big entry alone", 1, 7, 11, 10, []uint64{7}},
		{"stops before big entry", 1, 5, 11, 1000, []uint64{5, 6}},
		{"group 2", 2, 0, 100, 0, []uint64{5, 6, 7}},
		{"unknown group", 3, 0, 100, 0, nil},
		{"max group", math.MaxUint64, 0, math.MaxUint64, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			es, err := e.LogEntries(tc.group, tc.lo, tc.hi, tc.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if got := indices(es); !slices.Equal(got, tc.want) {
				t.Errorf("indices = %v; want %v", got, tc.want)
			}
		})
	}
	es, err := e.LogEntries(1, 7, 8, 0)
	if err != nil || len(es) != 1 || !bytes.Equal(es[0].Data, big) {
		t.Fatalf("compressed entry round trip failed: %v", err)
	}
	es, _ = e.LogEntries(2, 6, 7, 0)
	if len(es) != 1 || string(es[0].Data) != "g2-6" {
		t.Fatalf("LogEntries(2, 6, 7) = %v", es)
	}

	bounds := func(group uint64) string {
		first, last, ok, err := e.LogBounds(group)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d-%d %v", first, last, ok)
	}
	if got := bounds(1); got != "1-10 true" {
		t.Errorf("bounds(1) = %s", got)
	}
	if got := bounds(3); got != "0-0 false" {
		t.Errorf("bounds(3) = %s", got)
	}
	if got := bounds(math.MaxUint64); got != fmt.Sprintf("%d-%d true", uint64(math.MaxUint64), uint64(math.MaxUint64)) {
		t.Errorf("bounds(max) = %s", got)
	}

	write(t, e, true, func(b *Batch) error { return b.TruncateLog(1, 4) })
	if got := bounds(1); got != "4-10 true" {
		t.Errorf("after TruncateLog(1, 4): bounds = %s", got)
	}
	if got := bounds(2); got != "5-7 true" {
		t.Errorf("TruncateLog(1) touched group 2: %s", got)
	}
	write(t, e, true, func(b *Batch) error { return b.TruncateLog(1, 11) })
	if got := bounds(1); got != "0-0 false" {
		t.Errorf("after truncating everything: bounds = %s", got)
	}
}

func TestHardStateAndMeta(t *testing.T) {
	e := openMem(t, Options{})
	if _, err := e.HardState(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("HardState before set: %v", err)
	}
	write(t, e, true, func(b *Batch) error {
		if err := b.SetHardState(1, []byte("hs1")); err != nil {
			return err
		}
		if err := b.SetHardState(2, []byte("hs2")); err != nil {
			return err
		}
		return b.SetHardState(1, []byte("hs1b"))
	})
	for g, want := range map[uint64]string{1: "hs1b", 2: "hs2"} {
		if hs, err := e.HardState(g); err != nil || string(hs) != want {
			t.Errorf("HardState(%d) = %q, %v; want %q", g, hs, err, want)
		}
	}

	groups := []uint64{1, 2, math.MaxUint64}
	names := []string{"", "lease", "place/a", "place/b", "place/c", "placf", "z\xff"}
	write(t, e, false, func(b *Batch) error {
		for _, g := range groups {
			for _, n := range names {
				if err := b.SetMeta(g, []byte(n), []byte(fmt.Sprintf("%d:%s", g, n))); err != nil {
					return err
				}
			}
		}
		return nil
	})
	scan := func(g uint64, prefix string) []string {
		var out []string
		err := e.MetaScan(g, []byte(prefix), func(name, value []byte) error {
			if want := fmt.Sprintf("%d:%s", g, name); string(value) != want {
				t.Errorf("meta %q = %q; want %q", name, value, want)
			}
			out = append(out, string(name))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		group  uint64
		prefix string
		want   []string
	}{
		{1, "", names},
		{1, "place/", []string{"place/a", "place/b", "place/c"}},
		{1, "plac", []string{"place/a", "place/b", "place/c", "placf"}},
		{1, "z\xff", []string{"z\xff"}},
		{1, "nope", nil},
		{math.MaxUint64, "", names},
		{math.MaxUint64, "z\xff", []string{"z\xff"}},
		{3, "", nil},
	}
	for _, tc := range tests {
		if got := scan(tc.group, tc.prefix); !slices.Equal(got, tc.want) {
			t.Errorf("MetaScan(%d, %q) = %q; want %q", tc.group, tc.prefix, got, tc.want)
		}
	}
	stop := errors.New("stop")
	calls := 0
	if err := e.MetaScan(1, nil, func(_, _ []byte) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("MetaScan did not stop at fn's error: %v after %d calls", err, calls)
	}
	if v, err := e.Meta(2, []byte("lease")); err != nil || string(v) != "2:lease" {
		t.Errorf("Meta(2, lease) = %q, %v", v, err)
	}
	write(t, e, false, func(b *Batch) error { return b.DeleteMeta(2, []byte("lease")) })
	if _, err := e.Meta(2, []byte("lease")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Meta after DeleteMeta: %v", err)
	}
	write(t, e, false, func(b *Batch) error { return b.ClearMeta(1) })
	if got := scan(1, ""); got != nil {
		t.Errorf("after ClearMeta(1): %q", got)
	}
	if got := scan(2, ""); len(got) != len(names)-1 {
		t.Errorf("ClearMeta(1) touched group 2: %q", got)
	}
	write(t, e, false, func(b *Batch) error { return b.ClearMeta(math.MaxUint64) })
	if got := scan(math.MaxUint64, ""); got != nil {
		t.Errorf("after ClearMeta(max): %q", got)
	}
	// Meta and hard state live in other keyspaces than MVCC data.
	if kvs, err := e.Scan(nil, nil, tt.MaxTimestamp, 0, false); err != nil || len(kvs) != 0 {
		t.Errorf("data scan sees %d records, %v", len(kvs), err)
	}
}

func TestClearData(t *testing.T) {
	tests := []struct {
		name       string
		start, end []byte
		want       []string
	}{
		{"middle", []byte("a\x00"), []byte("b"), []string{"a@40=a40", "c@50=c50"}},
		{"prefix key only", []byte("a"), []byte("a\x00"), []string{"a\x00@15=n15", "ab@25=ab25", "c@50=c50"}},
		{"to end", []byte("ab"), nil, []string{"a@40=a40", "a\x00@15=n15"}},
		{"everything", nil, nil, nil},
		{"empty range", []byte("b"), []byte("a"), []string{"a@40=a40", "a\x00@15=n15", "ab@25=ab25", "c@50=c50"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := openMem(t, Options{})
			versionedFixture(t, e)
			write(t, e, false, func(b *Batch) error { return b.ClearData(tc.start, tc.end) })
			kvs, err := e.Scan(nil, nil, 100, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := kvString(kvs); !slices.Equal(got, tc.want) {
				t.Errorf("after ClearData: %q; want %q", got, tc.want)
			}
			// Older versions are gone too.
			if tc.start == nil && tc.end == nil {
				if _, _, err := e.Get([]byte("a"), 20); !errors.Is(err, ErrNotFound) {
					t.Errorf("old version survived: %v", err)
				}
			}
		})
	}
}

func TestGC(t *testing.T) {
	fs := vfs.NewMem()
	e, err := Open(testDir, Options{FS: fs, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	versionedFixture(t, e)
	// Answers at and above 35 must not change.
	before := map[tt.Timestamp][]string{}
	for _, ts := range []tt.Timestamp{35, 40, 100} {
		kvs, err := e.Scan(nil, nil, ts, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		before[ts] = kvString(kvs)
	}
	removed, err := e.GC(35)
	if err != nil {
		t.Fatal(err)
	}
	// a: 10, 20 shadowed by the tombstone at 30, which goes too (3);
	// a\x00, ab: newest <= 35 kept; b: 5 and the tombstone at 35 (2).
	if removed != 5 {
		t.Errorf("GC removed %d versions; want 5", removed)
	}
	if h := e.GCHorizon(); h != 35 {
		t.Errorf("GCHorizon = %d; want 35", h)
	}
	if _, _, err := e.Get([]byte("a"), 34); !errors.Is(err, ErrBelowGCHorizon) {
		t.Errorf("Get below horizon: %v", err)
	}
	if _, err := e.Scan(nil, nil, 34, 0, true); !errors.Is(err, ErrBelowGCHorizon) {
		t.Errorf("Scan below horizon: %v", err)
	}
	for ts, want := range before {
		kvs, err := e.Scan(nil, nil, ts, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := kvString(kvs); !slices.Equal(got, want) {
			t.Errorf("Scan at %d after GC = %q; want %q", ts, got, want)
		}
	}
	// The horizon only moves forward; a lower GC collects at the current one.
	if removed, err := e.GC(10); err != nil || removed != 0 || e.GCHorizon() != 35 {
		t.Errorf("GC(10) = %d, %v; horizon %d", removed, err, e.GCHorizon())
	}
	if err := e.SetGCHorizon(20); err != nil || e.GCHorizon() != 35 {
		t.Errorf("SetGCHorizon(20): %v; horizon %d", err, e.GCHorizon())
	}
	// The horizon is persistent.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open(testDir, Options{FS: fs, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if h := e.GCHorizon(); h != 35 {
		t.Errorf("GCHorizon after reopen = %d; want 35", h)
	}
	if err := e.SetGCHorizon(45); err != nil || e.GCHorizon() != 45 {
		t.Errorf("SetGCHorizon(45): %v; horizon %d", err, e.GCHorizon())
	}
}

func TestGCManyRounds(t *testing.T) {
	e := openMem(t, Options{})
	const keys, versions = 300, 12 // more versions than one round deletes
	for k := range keys {
		write(t, e, false, func(b *Batch) error {
			for ts := range tt.Timestamp(versions) {
				if err := b.Put([]byte(fmt.Sprintf("key%04d", k)), ts+1, []byte("v")); err != nil {
					return err
				}
			}
			return nil
		})
	}
	removed, err := e.GC(versions)
	if err != nil {
		t.Fatal(err)
	}
	if removed != keys*(versions-1) {
		t.Errorf("removed %d; want %d", removed, keys*(versions-1))
	}
	kvs, err := e.Scan(nil, nil, versions, 0, false)
	if err != nil || len(kvs) != keys {
		t.Fatalf("Scan after GC: %d keys, %v", len(kvs), err)
	}
}

func TestSnapshotIsolation(t *testing.T) {
	e := openMem(t, Options{})
	versionedFixture(t, e)
	write(t, e, false, func(b *Batch) error {
		if err := b.SetHardState(1, []byte("old")); err != nil {
			return err
		}
		return b.AppendLog(1, 1, []byte("e1"))
	})
	s := e.NewSnapshot()
	put(t, e, "a", 60, "a60")
	del(t, e, "c", 60)
	write(t, e, false, func(b *Batch) error {
		if err := b.SetHardState(1, []byte("new")); err != nil {
			return err
		}
		return b.AppendLog(1, 2, []byte("e2"))
	})
	if _, err := e.GC(45); err != nil {
		t.Fatal(err)
	}
	if s.GCHorizon() != 0 {
		t.Errorf("snapshot horizon %d; want 0", s.GCHorizon())
	}
	// The snapshot still reads below the engine's new horizon.
	if v, _, err := s.Get([]byte("a"), 20); err != nil || string(v) != "a20" {
		t.Errorf("snapshot Get(a@20) = %q, %v", v, err)
	}
	kvs, err := s.Scan(nil, nil, 100, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kvString(kvs), []string{"a@40=a40", "a\x00@15=n15", "ab@25=ab25", "c@50=c50"}; !slices.Equal(got, want) {
		t.Errorf("snapshot Scan = %q; want %q", got, want)
	}
	if hs, err := s.HardState(1); err != nil || string(hs) != "old" {
		t.Errorf("snapshot HardState = %q, %v", hs, err)
	}
	if _, last, _, err := s.LogBounds(1); err != nil || last != 1 {
		t.Errorf("snapshot LogBounds last = %d, %v", last, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := s.Get([]byte("a"), 100); !errors.Is(err, ErrClosed) {
		t.Errorf("Get on closed snapshot: %v", err)
	}
	// A new snapshot takes the engine's horizon.
	s2 := e.NewSnapshot()
	defer s2.Close()
	if _, _, err := s2.Get([]byte("a"), 20); !errors.Is(err, ErrBelowGCHorizon) {
		t.Errorf("new snapshot below horizon: %v", err)
	}
}

func TestClosed(t *testing.T) {
	e, err := Open(testDir, Options{FS: vfs.NewMem(), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	s := e.NewSnapshot()
	pending := e.NewBatch()
	if err := pending.Put([]byte("k"), 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	checks := map[string]error{
		"snapshot Get (closed by engine)": func() error { _, _, err := s.Get([]byte("k"), 1); return err }(),
		"pending Commit":                  pending.Commit(true),
		"Get":                             func() error { _, _, err := e.Get([]byte("k"), 1); return err }(),
		"Scan":                            func() error { _, err := e.Scan(nil, nil, 1, 0, false); return err }(),
		"HardState":                       func() error { _, err := e.HardState(1); return err }(),
		"GC":                              func() error { _, err := e.GC(1); return err }(),
		"SetGCHorizon":                    e.SetGCHorizon(5),
		"NewBatch Put":                    e.NewBatch().Put([]byte("k"), 1, nil),
		"NewSnapshot Get":                 func() error { _, _, err := e.NewSnapshot().Get([]byte("k"), 1); return err }(),
	}
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s: %v; want ErrClosed", name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("snapshot Close after engine Close: %v", err)
	}
}

func TestBatchLifecycle(t *testing.T) {
	e := openMem(t, Options{})
	b := e.NewBatch()
	if !b.Empty() || b.Count() != 0 {
		t.Fatal("new batch not empty")
	}
	if err := b.Commit(true); err != nil {
		t.Fatalf("empty Commit: %v", err)
	}
	if err := b.Put([]byte("k"), 1, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Commit: %v", err)
	}
	if err := b.Commit(true); !errors.Is(err, ErrClosed) {
		t.Errorf("second Commit: %v", err)
	}
	b.Close()
	before := e.Stats()
	write(t, e, true, func(b *Batch) error { return b.Put([]byte("k"), 1, []byte("v")) })
	write(t, e, false, func(b *Batch) error { return b.Put([]byte("k"), 2, []byte("v")) })
	after := e.Stats()
	if after.Commits-before.Commits != 2 || after.SyncedCommits-before.SyncedCommits != 1 {
		t.Errorf("Stats went from %+v to %+v", before, after)
	}
	b = e.NewBatch()
	_ = b.Put([]byte("gone"), 1, nil)
	b.Close()
	b.Close()
	if _, _, err := e.Get([]byte("gone"), 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("closed batch was applied: %v", err)
	}
}

func TestErrorMessagesTruncateKeys(t *testing.T) {
	e := openMem(t, Options{})
	b := e.NewBatch()
	defer b.Close()
	err := b.Put(bytes.Repeat([]byte("x"), 5000), 1, nil)
	if !errors.Is(err, ErrKeyTooLarge) || len(err.Error()) > 300 || !strings.Contains(err.Error(), "5000 bytes") {
		t.Errorf("error %q", err)
	}
}

// The comparer's Split meets Pebble's contract on MVCC keys (with escaped
// bytes, empty and long user keys, every kind of timestamp), and leaves
// every other keyspace whole.
func TestComparerSplit(t *testing.T) {
	var prefixes, suffixes [][]byte
	for _, k := range []string{"a", "a\x00", "a\x00b", "\x00", "\x00\x00\x01", "\xff", "ab", "b", "zzzzzzzzzzzzzzzzzzzz\x01"} {
		prefixes = append(prefixes, appendKeyPrefix(nil, []byte(k)))
	}
	for _, ts := range []tt.Timestamp{1, 2, 1 << 40, tt.MaxTimestamp} {
		suffixes = append(suffixes, appendTS(nil, ts))
	}
	// Split's contract (pebble.Split): with prefix(a) = a[:Split(a)],
	//  1. a bare prefix sorts before every key with that prefix;
	//  2. prefixes order keys before suffixes;
	//  3. within a prefix, keys order as their suffixes do.
	// (pebble.CheckComparer also wants prefixes stripped of leading bytes
	// to stay prefixes, which keyspace bytes rule out.)
	var keys [][]byte
	for _, p := range prefixes {
		for _, s := range suffixes {
			keys = append(keys, slices.Concat(p, s))
		}
	}
	split := func(k []byte) []byte { return k[:comparer.Split(k)] }
	for _, a := range keys {
		if p := split(a); len(p) < len(a) && comparer.Compare(p, a) >= 0 {
			t.Errorf("bare prefix %x does not sort before %x", p, a)
		}
		for _, b := range keys {
			c, pc := comparer.Compare(a, b), comparer.Compare(split(a), split(b))
			if c <= 0 && pc > 0 || pc < 0 && c >= 0 {
				t.Errorf("%x vs %x: keys compare %d, prefixes %d", a, b, c, pc)
			}
			if pc == 0 && c != comparer.ComparePointSuffixes(a[len(split(a)):], b[len(split(b)):]) {
				t.Errorf("%x vs %x: same prefix, keys compare %d unlike their suffixes", a, b, c)
			}
		}
	}
	for _, p := range prefixes {
		k := appendTS(append([]byte(nil), p...), 7)
		if n := splitMVCC(k); n != len(p) {
			t.Errorf("split of %x: %d, want %d", k, n, len(p))
		}
		if n := splitMVCC(p); n != len(p) {
			t.Errorf("split of the bare prefix %x: %d, want all of it", p, n)
		}
	}
	for _, k := range [][]byte{logKey(1, 2), groupKey(spaceHardState, 3), metaKey(4, []byte("txn/out/x")), {spaceLocal, 'h'}} {
		if n := splitMVCC(k); n != len(k) {
			t.Errorf("split of non-MVCC key %x: %d, want all of it", k, n)
		}
	}
}
