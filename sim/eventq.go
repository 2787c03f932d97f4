package sim

import (
	"container/heap"

	"github.com/meridiandb/meridian/tt"
)

// event is something scheduled at a virtual true time. Events at the same
// time run in scheduling order (seq), so a run depends only on its seed.
type event struct {
	at  tt.Timestamp
	seq uint64
	fn  func()
}

type eventHeap []*event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*event)) }
func (h *eventHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return e
}

// Loop is a single-goroutine event loop in virtual time.
type Loop struct {
	now  tt.Timestamp
	seq  uint64
	q    eventHeap
	runs uint64
}

// NewLoop starts virtual time at start.
func NewLoop(start tt.Timestamp) *Loop { return &Loop{now: start} }

// Now returns the current virtual true time.
func (l *Loop) Now() tt.Timestamp { return l.now }

// At schedules fn at time t (not before now).
func (l *Loop) At(t tt.Timestamp, fn func()) {
	if t < l.now {
		t = l.now
	}
	l.seq++
	heap.Push(&l.q, &event{at: t, seq: l.seq, fn: fn})
}

// After schedules fn after d of virtual time.
func (l *Loop) After(d int64, fn func()) { l.At(l.now+tt.Timestamp(d), fn) }

// RunUntil runs events up to and including time end, then sets now to end.
func (l *Loop) RunUntil(end tt.Timestamp) {
	for len(l.q) > 0 && l.q[0].at <= end {
		e := heap.Pop(&l.q).(*event)
		l.now = e.at
		l.runs++
		e.fn()
	}
	if end > l.now {
		l.now = end
	}
}

// Events returns how many events ran.
func (l *Loop) Events() uint64 { return l.runs }

// Pending returns how many events are queued.
func (l *Loop) Pending() int { return len(l.q) }
