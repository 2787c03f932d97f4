package kv

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/meridiandb/meridian/tt"
)

const (
	benchKeys     = 100_000
	benchValueLen = 100
)

func benchKey(i int) []byte { return []byte(fmt.Sprintf("user/%08d", i)) }

// openBench opens an engine on real disk (b.TempDir) holding benchKeys keys
// of benchValueLen bytes, each with two versions.
func openBench(b *testing.B) *Engine {
	b.Helper()
	e, err := Open(b.TempDir(), Options{Logger: quietLogger{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	val := make([]byte, benchValueLen)
	for ts := tt.Timestamp(1); ts <= 2; ts++ {
		for start := 0; start < benchKeys; start += 1000 {
			batch := e.NewBatch()
			for i := start; i < start+1000; i++ {
				if err := batch.Put(benchKey(i), ts*10, val); err != nil {
					b.Fatal(err)
				}
			}
			if err := batch.Commit(false); err != nil {
				b.Fatal(err)
			}
		}
	}
	return e
}

// BenchmarkGet reads a random key out of 100k at a timestamp between its
// two versions.
func BenchmarkGet(b *testing.B) {
	e := openBench(b)
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := e.Get(benchKey(rng.IntN(benchKeys)), 15); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScan100 scans 100 keys from a random start, skipping the newer
// version of each.
func BenchmarkScan100(b *testing.B) {
	e := openBench(b)
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for b.Loop() {
		kvs, err := e.Scan(benchKey(rng.IntN(benchKeys-100)), nil, 15, 100, false)
		if err != nil || len(kvs) != 100 {
			b.Fatalf("%d results, %v", len(kvs), err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "keys/s")
}

// BenchmarkBatchSync commits synced batches of 1, 16 and 128 writes, one
// committer at a time, and reports writes and fsyncs per second.
func BenchmarkBatchSync(b *testing.B) {
	for _, size := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			e, err := Open(b.TempDir(), Options{Logger: quietLogger{}})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			val := make([]byte, benchValueLen)
			before := e.Stats()
			n := 0
			b.ResetTimer()
			for b.Loop() {
				batch := e.NewBatch()
				for range size {
					if err := batch.Put(benchKey(n%benchKeys), tt.Timestamp(n+1), val); err != nil {
						b.Fatal(err)
					}
					n++
				}
				if err := batch.Commit(true); err != nil {
					b.Fatal(err)
				}
			}
			secs := b.Elapsed().Seconds()
			syncs := e.Stats().SyncedCommits - before.SyncedCommits
			b.ReportMetric(float64(n)/secs, "writes/s")
			b.ReportMetric(float64(syncs)/secs, "fsyncs/s")
		})
	}
}
