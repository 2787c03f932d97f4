package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/tt"
)

func openRowCacheTest(t *testing.T, size int) *Engine {
	t.Helper()
	e, err := Open(testDir, Options{FS: vfs.NewMem(), Logger: quietLogger{}, MemTableSize: 256 << 10, RowCacheSize: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func cached(e *Engine, key string) *rowEntry {
	p := appendKeyPrefix(nil, []byte(key))
	s := e.rows.shard(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[string(p)]
}

// TestRowCache: reads at MaxTimestamp fill the cache, later writes keep
// the entries current (older versions leave them alone), reads below a
// cached version go to Pebble, and history-replacing batches empty it.
func TestRowCache(t *testing.T) {
	e := openRowCacheTest(t, 0)
	get := func(key string, ts tt.Timestamp) string {
		t.Helper()
		v, vts, err := e.Get([]byte(key), ts)
		if errors.Is(err, ErrNotFound) {
			return "-"
		}
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%s@%d", v, vts)
	}
	put(t, e, "a", 10, "a10")
	if got := get("a", tt.MaxTimestamp); got != "a10@10" || cached(e, "a") == nil {
		t.Fatalf("first read %s, cached %v", got, cached(e, "a"))
	}
	put(t, e, "a", 20, "a20")
	if c := cached(e, "a"); c == nil || c.ts != 20 || string(c.val) != "a20" {
		t.Fatalf("after a newer write the entry is %+v", c)
	}
	put(t, e, "a", 15, "a15") // older than the newest: the entry stands
	if c := cached(e, "a"); c == nil || c.ts != 20 {
		t.Fatalf("after an older write the entry is %+v", c)
	}
	for ts, want := range map[tt.Timestamp]string{tt.MaxTimestamp: "a20@20", 20: "a20@20", 19: "a15@15", 12: "a10@10", 5: "-"} {
		if got := get("a", ts); got != want {
			t.Errorf("get a@%d = %s, want %s", ts, got, want)
		}
	}
	del(t, e, "a", 30)
	if got, got25 := get("a", tt.MaxTimestamp), get("a", 25); got != "-" || got25 != "a20@20" {
		t.Fatalf("after the tombstone: %s at max, %s at 25", got, got25)
	}
	// An absent key is cached as absent, and its first write replaces that.
	if got := get("z", tt.MaxTimestamp); got != "-" || cached(e, "z") == nil || cached(e, "z").ts != absentTS {
		t.Fatalf("absent key: %s, entry %+v", got, cached(e, "z"))
	}
	put(t, e, "z", 7, "z7")
	if got := get("z", 7); got != "z7@7" {
		t.Fatalf("after writing the absent key: %s", got)
	}
	// GC deleting a cached newest tombstone leaves no version: a write
	// below the tombstone is then the newest.
	del(t, e, "g", 50)
	if got := get("g", tt.MaxTimestamp); got != "-" || cached(e, "g") == nil {
		t.Fatalf("tombstone: %s, entry %+v", got, cached(e, "g"))
	}
	if _, err := e.GC(60); err != nil {
		t.Fatal(err)
	}
	put(t, e, "g", 40, "g40")
	if got := get("g", tt.MaxTimestamp); got != "g40@40" {
		t.Fatalf("after GC took the tombstone and a write below it: %s", got)
	}
	// ClearData empties the cache.
	b := e.NewBatch()
	if err := b.ClearData(nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	if cached(e, "a") != nil || cached(e, "z") != nil {
		t.Fatal("ClearData left entries")
	}
	if got := get("a", tt.MaxTimestamp); got != "-" {
		t.Fatalf("after ClearData: %s", got)
	}
}

// TestRowCacheBounded: the cache stays within its budget, also when the
// entries it holds grow by being written (a read-then-write workload hits
// its entries and never fills), and its accounting matches its entries.
func TestRowCacheBounded(t *testing.T) {
	const size = 64 << 10
	e := openRowCacheTest(t, size)
	check := func(when string) {
		t.Helper()
		total, n := 0, 0
		for i := range e.rows.shards {
			s := &e.rows.shards[i]
			sum := 0
			for k, en := range s.m {
				sum += entrySize(k, en)
			}
			if sum != s.bytes {
				t.Fatalf("%s: shard %d accounts %d bytes, its entries take %d", when, i, s.bytes, sum)
			}
			total += s.bytes
			n += len(s.m)
		}
		if total > size || n == 0 {
			t.Fatalf("%s: %d entries, %d bytes in a %d-byte cache", when, n, total, size)
		}
	}
	for i := range 2000 {
		k := fmt.Sprintf("key%05d", i)
		put(t, e, k, 1, "v")
		if _, _, err := e.Get([]byte(k), tt.MaxTimestamp); err != nil {
			t.Fatal(err)
		}
	}
	check("after fills")
	big := strings.Repeat("x", e.rows.maxValue)
	for i := range 2000 {
		put(t, e, fmt.Sprintf("key%05d", i), 2, big)
	}
	check("after the entries grew")
	for i := range 2000 {
		put(t, e, fmt.Sprintf("key%05d", i), 3, "s")
	}
	check("after they shrank")
}

// TestRowCacheAtomicReads: a writer commits batches setting keys a and b
// to the same counter; readers read a, then b, at MaxTimestamp. A batch
// applies atomically, so b read after a is never older than a, and a read
// after a commit returned sees it. Without the pending marks, a cache
// updated after the batch is in Pebble answers b from before the batch
// while a came from Pebble after it; without the generation check, a read
// that began before a commit fills the cache with what it replaced.
func TestRowCacheAtomicReads(t *testing.T) {
	e := openRowCacheTest(t, 0)
	counter := func(v []byte, err error) uint64 {
		if errors.Is(err, ErrNotFound) {
			return 0
		}
		if err != nil {
			t.Error(err)
			return 0
		}
		return binary.BigEndian.Uint64(v)
	}
	get := func(k string) uint64 {
		v, _, err := e.Get([]byte(k), tt.MaxTimestamp)
		return counter(v, err)
	}
	var stop atomic.Bool
	var committed atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(1); !stop.Load(); i++ {
			b := e.NewBatch()
			v := binary.BigEndian.AppendUint64(nil, i)
			if err := b.Put([]byte("a"), tt.Timestamp(i), v); err != nil {
				t.Error(err)
			}
			if err := b.Put([]byte("b"), tt.Timestamp(i), v); err != nil {
				t.Error(err)
			}
			if i%2 == 0 {
				// Writing a key twice in a batch drops its entry, so
				// readers keep filling the cache while batches commit.
				if err := b.Put([]byte("b"), tt.Timestamp(i), v); err != nil {
					t.Error(err)
				}
			}
			if err := b.Commit(false); err != nil {
				t.Error(err)
				return
			}
			committed.Store(i)
		}
	}()
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				done := committed.Load()
				x, y := get("a"), get("b")
				if x < done || y < x {
					t.Errorf("reader %d: a=%d then b=%d after commit %d returned", r, x, y, done)
					stop.Store(true)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	hits := 0
	for i := range e.rows.shards {
		hits += len(e.rows.shards[i].m)
	}
	if hits == 0 {
		t.Fatal("nothing was cached: the test exercised Pebble alone")
	}
}
