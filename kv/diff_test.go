package kv

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/tt"
)

var (
	flagSeed    = flag.Uint64("kv.seed", 0, "seed for the randomized kv tests (0: derive from the clock)")
	flagDiffOps = flag.Int("kv.diffops", 3000, "operations in TestDifferential")
	flagSeeds   = flag.Int("kv.seeds", 40, "seeds in TestCrash and TestWALErrors")
)

// testSeed returns the seed for a randomized test and arranges for it to be
// printed if the test fails.
func testSeed(t *testing.T) uint64 {
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("reproduce with: go test ./kv -run '^%s$' -kv.seed=%d", t.Name(), seed)
		}
	})
	return seed
}

// mversion is one version in the model.
type mversion struct {
	ts   tt.Timestamp
	tomb bool
	val  string
}

// model is the specification the engine's MVCC behaviour is checked
// against: a map from key to versions sorted by timestamp, newest first.
type model struct {
	data    map[string][]mversion
	horizon tt.Timestamp
}

func newModel() *model { return &model{data: map[string][]mversion{}} }

func (m *model) clone() *model {
	c := &model{data: make(map[string][]mversion, len(m.data)), horizon: m.horizon}
	for k, vs := range m.data {
		c.data[k] = slices.Clone(vs)
	}
	return c
}

func (m *model) write(key string, v mversion) {
	vs := m.data[key]
	i := sort.Search(len(vs), func(i int) bool { return vs[i].ts <= v.ts })
	if i < len(vs) && vs[i].ts == v.ts {
		vs[i] = v
	} else {
		vs = slices.Insert(vs, i, v)
	}
	m.data[key] = vs
}

// visible returns the newest version of key at or below ts.
func (m *model) visible(key string, ts tt.Timestamp) (mversion, bool) {
	for _, v := range m.data[key] {
		if v.ts <= ts {
			return v, true
		}
	}
	return mversion{}, false
}

func (m *model) get(key string, ts tt.Timestamp) (string, tt.Timestamp, error) {
	if ts < m.horizon {
		return "", 0, ErrBelowGCHorizon
	}
	v, ok := m.visible(key, ts)
	if !ok || v.tomb {
		return "", 0, ErrNotFound
	}
	return v.val, v.ts, nil
}

func inRange(k string, start, end []byte) bool {
	return (len(start) == 0 || k >= string(start)) && (len(end) == 0 || k < string(end))
}

func (m *model) sortedKeys() []string {
	keys := make([]string, 0, len(m.data))
	for k := range m.data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (m *model) scan(start, end []byte, ts tt.Timestamp, limit int, reverse bool) ([]string, error) {
	if ts < m.horizon {
		return nil, ErrBelowGCHorizon
	}
	keys := m.sortedKeys()
	if reverse {
		slices.Reverse(keys)
	}
	var out []string
	for _, k := range keys {
		if !inRange(k, start, end) {
			continue
		}
		if v, ok := m.visible(k, ts); ok && !v.tomb {
			out = append(out, versionString([]byte(k), v.ts, []byte(v.val)))
			if limit > 0 && len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

func (m *model) clear(start, end []byte) {
	for k := range m.data {
		if inRange(k, start, end) {
			delete(m.data, k)
		}
	}
}

func (m *model) gc(h tt.Timestamp) (removed int) {
	m.horizon = max(m.horizon, h)
	for k, vs := range m.data {
		i := slices.IndexFunc(vs, func(v mversion) bool { return v.ts <= m.horizon })
		if i < 0 {
			continue
		}
		keep := i + 1
		if vs[i].tomb {
			keep = i
		}
		removed += len(vs) - keep
		vs = vs[:keep]
		if len(vs) == 0 {
			delete(m.data, k)
		} else {
			m.data[k] = vs
		}
	}
	return removed
}

// diffAlphabet makes keys that stress escaping and prefix order.
var diffAlphabet = []byte{0x00, 0x01, 'a', 'b', 0xFF}

func randKey(rng *rand.Rand) []byte {
	k := make([]byte, 1+rng.IntN(3))
	for i := range k {
		k[i] = diffAlphabet[rng.IntN(len(diffAlphabet))]
	}
	return k
}

// randBound returns nil (unbounded) or a random key.
func randBound(rng *rand.Rand) []byte {
	if rng.IntN(4) == 0 {
		return nil
	}
	return randKey(rng)
}

// snapPair is an open engine snapshot and the model state it must match.
type snapPair struct {
	s *Snapshot
	m *model
}

// differ runs random operations against an engine and the model.
type differ struct {
	t     *testing.T
	rng   *rand.Rand
	fs    vfs.FS
	e     *Engine
	m     *model
	snaps []snapPair
	other *Engine // import target
	seq   int
	// peak is the most keys the model held: a run may legitimately end
	// empty (a range clear, GC past every version), but not stay so.
	peak int
}

func (d *differ) fatalf(format string, args ...any) {
	d.t.Helper()
	d.t.Fatalf("op %d: %s", d.seq, fmt.Sprintf(format, args...))
}

func (d *differ) randTS() tt.Timestamp { return tt.Timestamp(d.rng.IntN(221)) }

func sameErr(got, want error) bool {
	if want == nil {
		return got == nil
	}
	return errors.Is(got, want)
}

// checkGet compares r.Get with m.get.
func (d *differ) checkGet(r Reader, m *model, key []byte, ts tt.Timestamp) {
	d.t.Helper()
	v, vts, err := r.Get(key, ts)
	wv, wts, werr := m.get(string(key), ts)
	if !sameErr(err, werr) || (werr == nil && (string(v) != wv || vts != wts)) {
		d.fatalf("%T.Get(%q, %d) = %q@%d, %v; model %q@%d, %v", r, key, ts, v, vts, err, wv, wts, werr)
	}
}

// checkScan compares r.Scan with m.scan.
func (d *differ) checkScan(r Reader, m *model, start, end []byte, ts tt.Timestamp, limit int, reverse bool) {
	d.t.Helper()
	kvs, err := r.Scan(start, end, ts, limit, reverse)
	want, werr := m.scan(start, end, ts, limit, reverse)
	if !sameErr(err, werr) {
		d.fatalf("%T.Scan(%q, %q, %d, %d, %v): %v; model %v", r, start, end, ts, limit, reverse, err, werr)
	}
	if got := kvString(kvs); !slices.Equal(got, want) {
		d.fatalf("%T.Scan(%q, %q, %d, %d, %v) =\n%q\nmodel\n%q", r, start, end, ts, limit, reverse, got, want)
	}
}

func (d *differ) step() {
	rng := d.rng
	switch p := rng.IntN(100); {
	case p < 30:
		d.writeBatch()
	case p < 48:
		// A third at MaxTimestamp: those fill the newest-version cache,
		// and the rest hit it or miss around it.
		ts := d.randTS()
		if rng.IntN(3) == 0 {
			ts = tt.MaxTimestamp
		}
		d.checkGet(d.e, d.m, randKey(rng), ts)
	case p < 66:
		d.checkScan(d.e, d.m, randBound(rng), randBound(rng), d.randTS(), rng.IntN(4)*rng.IntN(5), rng.IntN(2) == 0)
	case p < 76:
		if len(d.snaps) > 0 {
			sp := d.snaps[rng.IntN(len(d.snaps))]
			if rng.IntN(2) == 0 {
				d.checkGet(sp.s, sp.m, randKey(rng), d.randTS())
			} else {
				d.checkScan(sp.s, sp.m, randBound(rng), randBound(rng), d.randTS(), rng.IntN(4)*rng.IntN(5), rng.IntN(2) == 0)
			}
		}
	case p < 80:
		h := d.m.horizon + tt.Timestamp(rng.IntN(20)) - 5
		removed, err := d.e.GC(h)
		if err != nil {
			d.fatalf("GC(%d): %v", h, err)
		}
		if want := d.m.gc(h); removed != want {
			d.fatalf("GC(%d) removed %d; model %d", h, removed, want)
		}
		if d.e.GCHorizon() != d.m.horizon {
			d.fatalf("horizon %d; model %d", d.e.GCHorizon(), d.m.horizon)
		}
	case p < 84:
		if len(d.snaps) < 3 {
			d.snaps = append(d.snaps, snapPair{s: d.e.NewSnapshot(), m: d.m.clone()})
		}
	case p < 88:
		if len(d.snaps) > 0 {
			i := rng.IntN(len(d.snaps))
			if err := d.snaps[i].s.Close(); err != nil {
				d.fatalf("Snapshot.Close: %v", err)
			}
			d.snaps = slices.Delete(d.snaps, i, i+1)
		}
	case p < 92:
		d.exportImport()
	case p < 93:
		d.reopen()
	default:
		d.checkScan(d.e, d.m, nil, nil, tt.MaxTimestamp, 0, rng.IntN(2) == 0)
	}
}

func (d *differ) writeBatch() {
	rng := d.rng
	b := d.e.NewBatch()
	defer b.Close()
	next := d.m.clone()
	for range 1 + rng.IntN(4) {
		key, ts := randKey(rng), d.randTS()
		switch p := rng.IntN(100); {
		case p < 3:
			start, end := randBound(rng), randBound(rng)
			if err := b.ClearData(start, end); err != nil {
				d.fatalf("ClearData: %v", err)
			}
			next.clear(start, end)
		case p < 25:
			if err := b.Delete(key, ts); err != nil {
				d.fatalf("Delete: %v", err)
			}
			next.write(string(key), mversion{ts: ts, tomb: true})
		default:
			val := fmt.Sprintf("v%d", d.seq)
			if rng.IntN(20) == 0 {
				val += strings.Repeat("x", rng.IntN(2000))
			}
			if err := b.Put(key, ts, []byte(val)); err != nil {
				d.fatalf("Put: %v", err)
			}
			next.write(string(key), mversion{ts: ts, val: val})
		}
	}
	if err := b.Commit(rng.IntN(4) == 0); err != nil {
		d.fatalf("Commit: %v", err)
	}
	d.m = next
	d.peak = max(d.peak, len(d.m.data))
}

// exportImport exports the engine (or a snapshot) at a random timestamp,
// imports the chunks into the other engine, and compares the other engine
// with the model at timestamps up to the export's.
func (d *differ) exportImport() {
	rng := d.rng
	var src Reader = d.e
	m := d.m
	if len(d.snaps) > 0 && rng.IntN(2) == 0 {
		sp := d.snaps[rng.IntN(len(d.snaps))]
		src, m = sp.s, sp.m
	}
	ts := m.horizon + tt.Timestamp(rng.IntN(int(221-min(m.horizon, 220))))
	b := d.other.NewBatch()
	defer b.Close()
	if err := b.ClearData(nil, nil); err != nil {
		d.fatalf("ClearData: %v", err)
	}
	var chunks int
	err := src.ExportSnapshot(nil, nil, ts, 16+rng.IntN(2048), func(chunk []byte) error {
		info, err := InspectChunk(chunk)
		if err != nil || info.Seq != uint32(chunks) || info.ReadTS != ts || info.Horizon != src.GCHorizon() {
			d.fatalf("chunk %d: %+v, %v", chunks, info, err)
		}
		chunks++
		_, err = b.ImportSnapshotChunk(chunk)
		return err
	})
	if err != nil {
		d.fatalf("export/import at %d: %v", ts, err)
	}
	if err := b.Commit(false); err != nil {
		d.fatalf("import Commit: %v", err)
	}
	// The target adopts the source's horizon (it may already be higher,
	// from importing a newer state before).
	if h := d.other.GCHorizon(); h < m.horizon {
		d.fatalf("import target horizon %d; source %d", h, m.horizon)
	}
	target := m.clone()
	target.horizon = d.other.GCHorizon()
	if target.horizon > ts {
		d.checkScan(d.other, target, nil, nil, ts, 0, false) // refused
		return
	}
	for range 4 {
		tsr := target.horizon + tt.Timestamp(rng.IntN(int(ts-target.horizon)+1))
		d.checkScan(d.other, target, nil, nil, tsr, 0, rng.IntN(2) == 0)
		d.checkGet(d.other, target, randKey(rng), tsr)
	}
}

// reopen closes and reopens the engine on the same filesystem.
func (d *differ) reopen() {
	for _, sp := range d.snaps {
		if err := sp.s.Close(); err != nil {
			d.fatalf("Snapshot.Close: %v", err)
		}
	}
	d.snaps = nil
	if err := d.e.Close(); err != nil {
		d.fatalf("Close: %v", err)
	}
	e, err := Open(testDir, Options{FS: d.fs, Logger: quietLogger{}, MemTableSize: 64 << 10})
	if err != nil {
		d.fatalf("reopen: %v", err)
	}
	d.e = e
}

// TestDifferential runs random writes, reads, GC, snapshots, exports and
// imports against the engine and an in-memory model.
func TestDifferential(t *testing.T) {
	seed := testSeed(t)
	fs := vfs.NewMem()
	e, err := Open(testDir, Options{FS: fs, Logger: quietLogger{}, MemTableSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	d := &differ{
		t:     t,
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		fs:    fs,
		e:     e,
		m:     newModel(),
		other: openMem(t, Options{}),
	}
	defer func() {
		for _, sp := range d.snaps {
			_ = sp.s.Close()
		}
		if err := d.e.Close(); err != nil {
			t.Error(err)
		}
	}()
	for d.seq = 0; d.seq < *flagDiffOps; d.seq++ {
		d.step()
	}
	// Finally, everything above the horizon matches at every timestamp.
	for ts := d.m.horizon; ts <= 221; ts++ {
		d.checkScan(d.e, d.m, nil, nil, ts, 0, false)
		d.checkScan(d.e, d.m, nil, nil, ts, 0, true)
	}
	if d.peak == 0 {
		t.Error("the model never held a key; the test exercised nothing")
	}
}
