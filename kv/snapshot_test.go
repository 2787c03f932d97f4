package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/meridiandb/meridian/tt"
)

// exportChunks exports r and returns the chunks.
func exportChunks(t *testing.T, r Reader, start, end []byte, ts tt.Timestamp, chunkBytes int) [][]byte {
	t.Helper()
	var chunks [][]byte
	if err := r.ExportSnapshot(start, end, ts, chunkBytes, func(c []byte) error {
		chunks = append(chunks, c)
		return nil
	}); err != nil {
		t.Fatalf("ExportSnapshot: %v", err)
	}
	return chunks
}

// importChunks replaces [start, end) of e with the chunks in one batch.
func importChunks(e *Engine, start, end []byte, chunks [][]byte) (tt.Timestamp, error) {
	b := e.NewBatch()
	defer b.Close()
	if err := b.ClearData(start, end); err != nil {
		return 0, err
	}
	var h tt.Timestamp
	for _, c := range chunks {
		var err error
		if h, err = b.ImportSnapshotChunk(c); err != nil {
			return 0, err
		}
	}
	return h, b.Commit(true)
}

// snapshotSource builds an engine with many versions, tombstones and a GC
// horizon of 20, and returns it.
func snapshotSource(t *testing.T) *Engine {
	a := openMem(t, Options{})
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 300 {
		write(t, a, false, func(b *Batch) error {
			for range 4 {
				key := []byte(fmt.Sprintf("key/%03d\x00%d", rng.IntN(120), rng.IntN(2)))
				ts := tt.Timestamp(1 + rng.IntN(100))
				if rng.IntN(5) == 0 {
					if err := b.Delete(key, ts); err != nil {
						return err
					}
					continue
				}
				if err := b.Put(key, ts, bytes.Repeat([]byte{byte(i)}, rng.IntN(300))); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if _, err := a.GC(20); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestSnapshotExportImport(t *testing.T) {
	a := snapshotSource(t)
	tests := []struct {
		name       string
		start, end []byte
		ts         tt.Timestamp
		chunkBytes int
	}{
		{"everything, one chunk", nil, nil, 100, 0},
		{"everything, small chunks", nil, nil, 100, 512},
		{"everything, tiny chunks", nil, nil, 60, 1},
		{"range", []byte("key/030"), []byte("key/090"), 70, 2048},
		{"at the horizon", nil, nil, 20, 4096},
		{"empty range", []byte("zzz"), nil, 100, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, src := range []Reader{a, a.NewSnapshot()} {
				chunks := exportChunks(t, src, tc.start, tc.end, tc.ts, tc.chunkBytes)
				for i, c := range chunks {
					info, err := InspectChunk(c)
					if err != nil {
						t.Fatalf("chunk %d: %v", i, err)
					}
					if info.Seq != uint32(i) || info.Last != (i == len(chunks)-1) || info.Horizon != 20 || info.ReadTS != tc.ts {
						t.Fatalf("chunk %d of %d: %+v", i, len(chunks), info)
					}
					if tc.chunkBytes == 1 && i < len(chunks)-1 && info.Count != 1 {
						t.Errorf("chunkBytes=1: chunk %d holds %d versions", i, info.Count)
					}
				}

				b := openMem(t, Options{})
				// Data outside the range survives; data inside is replaced.
				put(t, b, "aaa", 50, "outside")
				put(t, b, "key/050\x000", 99, "stale")
				h, err := importChunks(b, tc.start, tc.end, chunks)
				if err != nil {
					t.Fatal(err)
				}
				if h != 20 || b.GCHorizon() != 20 {
					t.Fatalf("import returned horizon %d, engine horizon %d; want 20", h, b.GCHorizon())
				}
				inRange := func(k []byte) bool {
					return (tc.start == nil || bytes.Compare(k, tc.start) >= 0) && (tc.end == nil || bytes.Compare(k, tc.end) < 0)
				}
				if _, _, err := b.Get([]byte("aaa"), 50); inRange([]byte("aaa")) != errors.Is(err, ErrNotFound) {
					t.Errorf("aaa (in range: %v) after import: %v", inRange([]byte("aaa")), err)
				}
				checkTS := []tt.Timestamp{tc.ts}
				for ts := tt.Timestamp(20); ts < tc.ts; ts += 7 {
					checkTS = append(checkTS, ts)
				}
				for _, ts := range checkTS {
					for _, reverse := range []bool{false, true} {
						want, err := a.Scan(tc.start, tc.end, ts, 0, reverse)
						if err != nil {
							t.Fatal(err)
						}
						got, err := b.Scan(tc.start, tc.end, ts, 0, reverse)
						if err != nil {
							t.Fatal(err)
						}
						if !slices.Equal(kvString(got), kvString(want)) {
							t.Fatalf("Scan at %d (reverse %v) differs:\n%q\n%q", ts, reverse, kvString(got), kvString(want))
						}
					}
					for k := range 120 {
						for s := range 2 {
							key := []byte(fmt.Sprintf("key/%03d\x00%d", k, s))
							if !inRange(key) {
								continue
							}
							wv, wts, werr := a.Get(key, ts)
							gv, gts, gerr := b.Get(key, ts)
							if !bytes.Equal(gv, wv) || gts != wts || !sameErr(gerr, werr) {
								t.Fatalf("Get(%q, %d) = %q@%d, %v; source %q@%d, %v", key, ts, gv, gts, gerr, wv, wts, werr)
							}
						}
					}
				}
				// Reads below the adopted horizon are refused.
				if _, _, err := b.Get([]byte("key/001\x000"), 19); !errors.Is(err, ErrBelowGCHorizon) {
					t.Errorf("Get below adopted horizon: %v", err)
				}
			}
		})
	}
}

func TestSnapshotExportBelowHorizon(t *testing.T) {
	a := snapshotSource(t)
	err := a.ExportSnapshot(nil, nil, 19, 0, func([]byte) error { t.Fatal("emitted"); return nil })
	if !errors.Is(err, ErrBelowGCHorizon) {
		t.Fatalf("export below horizon: %v", err)
	}
	stop := errors.New("stop")
	if err := a.ExportSnapshot(nil, nil, 50, 64, func([]byte) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("emit error not returned: %v", err)
	}
}

func TestSnapshotImportNeverLowersHorizon(t *testing.T) {
	a := snapshotSource(t)
	chunks := exportChunks(t, a, nil, nil, 100, 0)
	b := openMem(t, Options{})
	if err := b.SetGCHorizon(30); err != nil {
		t.Fatal(err)
	}
	if _, err := importChunks(b, nil, nil, chunks); err != nil {
		t.Fatal(err)
	}
	if h := b.GCHorizon(); h != 30 {
		t.Errorf("horizon %d after importing a chunk with horizon 20; want 30", h)
	}
}

func TestSnapshotCorruption(t *testing.T) {
	a := snapshotSource(t)
	chunks := exportChunks(t, a, nil, nil, 100, 4096)
	if len(chunks) < 3 {
		t.Fatalf("only %d chunks", len(chunks))
	}
	b := openMem(t, Options{})
	put(t, b, "keep", 1, "me")
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 200 {
		chunk := bytes.Clone(chunks[rng.IntN(len(chunks))])
		switch trial % 4 {
		case 0, 1: // flip one byte
			chunk[rng.IntN(len(chunk))] ^= byte(1 + rng.IntN(255))
		case 2: // flip one bit in the payload
			i := chunkHeaderLen + rng.IntN(len(chunk)-chunkHeaderLen)
			chunk[i] ^= 1 << rng.IntN(8)
		case 3: // truncate
			chunk = chunk[:rng.IntN(len(chunk))]
		}
		batch := b.NewBatch()
		h, err := batch.ImportSnapshotChunk(chunk)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("trial %d: ImportSnapshotChunk = %d, %v; want ErrCorrupt", trial, h, err)
		}
		if !batch.Empty() {
			t.Fatalf("trial %d: corrupt chunk left %d writes in the batch", trial, batch.Count())
		}
		batch.Close()
		if _, err := InspectChunk(chunk); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("trial %d: InspectChunk = %v; want ErrCorrupt", trial, err)
		}
	}
	// Nothing was applied.
	kvs, err := b.Scan(nil, nil, tt.MaxTimestamp, 0, false)
	if err != nil || !slices.Equal(kvString(kvs), []string{"keep@1=me"}) {
		t.Fatalf("after corrupt imports: %q, %v", kvString(kvs), err)
	}
	if b.GCHorizon() != 0 {
		t.Fatalf("corrupt chunks moved the horizon to %d", b.GCHorizon())
	}
}

func TestSnapshotImportLimits(t *testing.T) {
	a := openMem(t, Options{})
	put(t, a, "a-long-key", 1, "v")
	put(t, a, "k", 1, "a-long-value")
	small := openMem(t, Options{MaxKeySize: 4, MaxValueSize: 4})
	for _, tc := range []struct {
		start, end string
		want       error
	}{
		{"a", "b", ErrKeyTooLarge},
		{"k", "l", ErrValueTooLarge},
	} {
		chunks := exportChunks(t, a, []byte(tc.start), []byte(tc.end), 1, 0)
		b := small.NewBatch()
		if _, err := b.ImportSnapshotChunk(chunks[0]); !errors.Is(err, tc.want) || !b.Empty() {
			t.Errorf("import [%s,%s): %v, %d writes; want %v and none", tc.start, tc.end, err, b.Count(), tc.want)
		}
		b.Close()
	}
}

func TestSnapshotHighlyCompressible(t *testing.T) {
	a := openMem(t, Options{})
	write(t, a, false, func(b *Batch) error {
		for i := range 4 {
			if err := b.Put([]byte(fmt.Sprintf("zeros%d", i)), 1, make([]byte, 1<<20)); err != nil {
				return err
			}
		}
		return nil
	})
	chunks := exportChunks(t, a, nil, nil, 1, 8<<20)
	if len(chunks) != 1 {
		t.Fatalf("%d chunks", len(chunks))
	}
	b := openMem(t, Options{})
	if _, err := importChunks(b, nil, nil, chunks); err != nil {
		t.Fatalf("import of a %d-byte chunk holding 4 MiB: %v", len(chunks[0]), err)
	}
	if v, _, err := b.Get([]byte("zeros3"), 1); err != nil || len(v) != 1<<20 {
		t.Fatalf("Get: %d bytes, %v", len(v), err)
	}
}
