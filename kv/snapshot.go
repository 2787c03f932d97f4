package kv

import (
	"github.com/cockroachdb/pebble/v2"

	"github.com/meridiandb/meridian/tt"
)

// Snapshot is a consistent, read-only view of an Engine at the moment
// NewSnapshot was called (a Pebble snapshot). It is safe for concurrent use.
// Its GC horizon is the engine's when it was taken: later GC cannot take
// away versions a snapshot can see.
type Snapshot struct {
	e *Engine

	life lifetime         // guards snap
	snap *pebble.Snapshot // released once life is closed
	err  error            // why the snapshot was never open

	horizon tt.Timestamp
}

// acquire takes a reference on the snapshot and checks that it is open. On
// success the caller must call s.life.release.
func (s *Snapshot) acquire() error {
	if !s.life.acquire() {
		if s.err != nil {
			return s.err
		}
		return ErrClosed
	}
	return nil
}

// view returns the reader over the Pebble snapshot.
func (s *Snapshot) view() view { return view{r: s.snap, horizon: s.GCHorizon} }

// Close releases the snapshot, after waiting for reads in progress. It is
// safe to call more than once. Callbacks (MetaScan, ExportSnapshot) must
// not call it.
func (s *Snapshot) Close() error {
	err := s.release()
	if s.e != nil {
		s.e.forgetSnapshot(s)
	}
	return err
}

// release closes the Pebble snapshot if it is still open, after waiting
// for reads in progress.
func (s *Snapshot) release() error {
	if !s.life.close() {
		return nil
	}
	return s.snap.Close()
}

// GCHorizon implements Reader: the engine's horizon when the snapshot was
// taken.
func (s *Snapshot) GCHorizon() tt.Timestamp { return s.horizon }

// Get implements Reader.
func (s *Snapshot) Get(key []byte, ts tt.Timestamp) ([]byte, tt.Timestamp, error) {
	if err := s.acquire(); err != nil {
		return nil, 0, err
	}
	defer s.life.release()
	return s.view().get(key, ts)
}

// Scan implements Reader.
func (s *Snapshot) Scan(start, end []byte, ts tt.Timestamp, limit int, reverse bool) ([]KeyValue, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.life.release()
	return s.view().scan(start, end, ts, limit, reverse)
}

// LogEntries implements Reader.
func (s *Snapshot) LogEntries(group, lo, hi uint64, maxBytes int) ([]LogEntry, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.life.release()
	return s.view().logEntries(group, lo, hi, maxBytes)
}

// LogBounds implements Reader.
func (s *Snapshot) LogBounds(group uint64) (first, last uint64, ok bool, err error) {
	if err := s.acquire(); err != nil {
		return 0, 0, false, err
	}
	defer s.life.release()
	return s.view().logBounds(group)
}

// HardState implements Reader.
func (s *Snapshot) HardState(group uint64) ([]byte, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.life.release()
	return s.view().hardState(group)
}

// Meta implements Reader.
func (s *Snapshot) Meta(group uint64, name []byte) ([]byte, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.life.release()
	return s.view().meta(group, name)
}

// MetaScan implements Reader. fn must not call Close on the snapshot.
func (s *Snapshot) MetaScan(group uint64, prefix []byte, fn func(name, value []byte) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.life.release()
	return s.view().metaScan(group, prefix, fn)
}

// ExportSnapshot implements Reader. emit must not call Close on the
// snapshot.
func (s *Snapshot) ExportSnapshot(start, end []byte, ts tt.Timestamp, chunkBytes int, emit func(chunk []byte) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.life.release()
	return s.view().exportSnapshot(start, end, ts, chunkBytes, emit)
}

var _ Reader = (*Snapshot)(nil)
