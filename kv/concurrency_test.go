package kv

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/tt"
)

// TestConcurrentUseAndClose runs writers, readers, snapshot readers and GC
// concurrently, then closes the engine under them: every operation either
// works or reports ErrClosed.
func TestConcurrentUseAndClose(t *testing.T) {
	e, err := Open(testDir, Options{FS: vfs.NewMem(), Logger: quietLogger{}, MemTableSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	ok := func(err error) bool {
		if err == nil || errors.Is(err, ErrNotFound) {
			return true
		}
		if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrBelowGCHorizon) {
			t.Errorf("unexpected error: %v", err)
		}
		return false
	}
	run := func(fn func(i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := fn(i); !ok(err) && errors.Is(err, ErrClosed) {
					return
				}
			}
		}()
	}
	for w := range 3 {
		run(func(i int) error {
			b := e.NewBatch()
			defer b.Close()
			if err := b.Put([]byte(fmt.Sprintf("k%d", i%50)), tt.Timestamp(i+100), []byte(fmt.Sprint(w))); err != nil {
				return err
			}
			return b.Commit(i%10 == 0)
		})
	}
	run(func(i int) error {
		_, _, err := e.Get([]byte(fmt.Sprintf("k%d", i%50)), tt.Timestamp(i+100))
		return err
	})
	run(func(i int) error { _, err := e.Scan(nil, nil, tt.Timestamp(i+100), 10, i%2 == 0); return err })
	run(func(i int) error {
		s := e.NewSnapshot()
		defer s.Close()
		_, err := s.Scan(nil, nil, tt.MaxTimestamp, 0, true)
		return err
	})
	run(func(i int) error { _, err := e.GC(tt.Timestamp(i)); return err })
	time.Sleep(200 * time.Millisecond)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
}

// TestReentrantCallbackDuringClose calls back into the engine from a
// MetaScan callback while Close waits for that MetaScan: the nested call
// must fail with ErrClosed, not deadlock.
func TestReentrantCallbackDuringClose(t *testing.T) {
	e, err := Open(testDir, Options{FS: vfs.NewMem(), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	write(t, e, false, func(b *Batch) error { return b.SetMeta(1, []byte("n"), []byte("v")) })
	closed := make(chan error, 1)
	err = e.MetaScan(1, nil, func(_, _ []byte) error {
		go func() { closed <- e.Close() }()
		for e.life.refs.Load()&closingBit == 0 {
			time.Sleep(time.Millisecond) // wait until Close is waiting for us
		}
		if _, _, err := e.Get([]byte("k"), 1); !errors.Is(err, ErrClosed) {
			t.Errorf("nested Get during Close: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
