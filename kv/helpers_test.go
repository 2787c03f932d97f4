package kv

import (
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/tt"
)

// quietLogger drops Pebble's log output in tests. It must not use
// testing.T: wedged Pebble instances keep logging after their test ends.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}

// testDir is the store directory used on in-memory filesystems.
const testDir = "db"

// openMem opens an engine on a fresh in-memory filesystem.
func openMem(t testing.TB, opts Options) *Engine {
	t.Helper()
	if opts.FS == nil {
		opts.FS = vfs.NewMem()
	}
	return openWith(t, opts)
}

// openWith opens an engine with opts (FS set) and closes it at cleanup.
func openWith(t testing.TB, opts Options) *Engine {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger{}
	}
	e, err := Open(testDir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// write commits one batch built by fn.
func write(t testing.TB, e *Engine, sync bool, fn func(b *Batch) error) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	if err := fn(b); err != nil {
		t.Fatalf("building batch: %v", err)
	}
	if err := b.Commit(sync); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// put commits one version.
func put(t testing.TB, e *Engine, key string, ts tt.Timestamp, val string) {
	t.Helper()
	write(t, e, false, func(b *Batch) error { return b.Put([]byte(key), ts, []byte(val)) })
}

// del commits one tombstone.
func del(t testing.TB, e *Engine, key string, ts tt.Timestamp) {
	t.Helper()
	write(t, e, false, func(b *Batch) error { return b.Delete([]byte(key), ts) })
}

// kvString renders scan results compactly, one key@ts=value string per
// result.
func kvString(kvs []KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = versionString(kv.Key, kv.TS, kv.Value)
	}
	return out
}

// versionString renders one version as key@ts=value, abbreviating long
// values (with their length and checksum, so different values still differ).
func versionString(key []byte, ts tt.Timestamp, val []byte) string {
	v := string(val)
	if len(v) > 24 {
		v = fmt.Sprintf("%s…(%d bytes, crc %08x)", v[:8], len(v), crc32.ChecksumIEEE(val))
	}
	return string(key) + "@" + strconv.FormatInt(int64(ts), 10) + "=" + v
}
