package kv

import "sync/atomic"

// closingBit marks a lifetime whose release has begun.
const closingBit = 1 << 62

// lifetime guards a resource (the Pebble DB, a Pebble snapshot) against
// being released while in use. Unlike a sync.RWMutex it lets a holder
// acquire again (a MetaScan or ExportSnapshot callback may call back into
// the engine) without deadlocking against a pending close: once close has
// begun, new acquisitions fail instead of waiting. The zero value is not
// usable; call init.
type lifetime struct {
	refs    atomic.Int64 // holders, plus closingBit once closing
	drained chan struct{}
}

func (l *lifetime) init() { l.drained = make(chan struct{}, 1) }

// acquire takes a reference, or reports false if closing has begun.
func (l *lifetime) acquire() bool {
	if l.refs.Add(1)&closingBit != 0 {
		l.release()
		return false
	}
	return true
}

// release drops a reference taken by acquire.
func (l *lifetime) release() {
	if l.refs.Add(-1) == closingBit {
		// The last holder left after closing began: wake close. (A failed
		// acquire may also get here; the signal is still true then.)
		select {
		case l.drained <- struct{}{}:
		default:
		}
	}
}

// close begins closing and waits until no holder is left. It reports false
// if closing had already begun (by another call).
func (l *lifetime) close() bool {
	old := l.refs.Or(closingBit)
	if old&closingBit != 0 {
		return false
	}
	if old != 0 {
		<-l.drained
	}
	return true
}

// closeNow marks a lifetime that was never open as closed.
func (l *lifetime) closeNow() { l.refs.Store(closingBit) }
