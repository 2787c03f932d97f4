package paxos

// memLog holds the log slots a replica has not truncated, in memory. Slots
// may be empty (holes) above the chosen index: Multi-Paxos accepts slots out
// of order. Index 0 in a slot marks it empty.
type memLog struct {
	first uint64  // index of slots[0]; everything below was truncated
	slots []Entry // slots[i-first]
	last  uint64  // highest index holding an entry, or first-1
	bytes int     // sum of size() over the entries held
}

func newMemLog(first uint64) *memLog {
	if first == 0 {
		first = 1
	}
	return &memLog{first: first, last: first - 1}
}

func (l *memLog) get(i uint64) (*Entry, bool) {
	if i < l.first || i > l.last {
		return nil, false
	}
	e := &l.slots[i-l.first]
	if e.Index == 0 {
		return nil, false
	}
	return e, true
}

func (l *memLog) set(e Entry) {
	if e.Index < l.first {
		return
	}
	off := int(e.Index - l.first)
	for len(l.slots) <= off {
		l.slots = append(l.slots, Entry{})
	}
	if old := &l.slots[off]; old.Index != 0 {
		l.bytes -= old.size()
	}
	l.bytes += e.size()
	l.slots[off] = e
	if e.Index > l.last {
		l.last = e.Index
	}
}

// truncatePrefix drops every slot at or below upto.
func (l *memLog) truncatePrefix(upto uint64) {
	if upto < l.first {
		return
	}
	n := upto + 1 - l.first
	for i := range l.slots[:min(n, uint64(len(l.slots)))] {
		if e := &l.slots[i]; e.Index != 0 {
			l.bytes -= e.size()
		}
	}
	if n >= uint64(len(l.slots)) {
		l.slots = l.slots[:0]
	} else {
		// Copy so the dropped prefix can be collected.
		l.slots = append([]Entry(nil), l.slots[n:]...)
	}
	l.first = upto + 1
	if l.last < l.first {
		l.last = l.first - 1
	}
}

// truncateSuffix drops every slot above upto.
func (l *memLog) truncateSuffix(upto uint64) {
	if upto >= l.last {
		return
	}
	if upto < l.first {
		clear(l.slots)
		l.slots, l.last, l.bytes = l.slots[:0], l.first-1, 0
		return
	}
	n := upto + 1 - l.first
	if n < uint64(len(l.slots)) {
		for i := range l.slots[n:] {
			if e := &l.slots[n+uint64(i)]; e.Index != 0 {
				l.bytes -= e.size()
			}
		}
		clear(l.slots[n:]) // let the dropped entries' data be collected
		l.slots = l.slots[:n]
	}
	l.last = upto
	for l.last >= l.first && l.slots[l.last-l.first].Index == 0 {
		l.last--
	}
}

// dropFrom removes every slot at or above from (a snapshot replaced them
// or they were never valid).
func (l *memLog) reset(first uint64) {
	l.first = first
	l.slots = nil
	l.last = first - 1
	l.bytes = 0
}

// span returns the entries in [lo, hi] that exist, stopping after maxBytes
// (at least one entry is returned when any exists). Holes end the span:
// callers that need contiguity get exactly the contiguous run from lo.
func (l *memLog) span(lo, hi uint64, maxBytes int) []Entry {
	if lo < l.first {
		lo = l.first
	}
	if hi > l.last {
		hi = l.last
	}
	var out []Entry
	size := 0
	for i := lo; i <= hi; i++ {
		e, ok := l.get(i)
		if !ok {
			break
		}
		if len(out) > 0 && maxBytes > 0 && size+e.size() > maxBytes {
			break
		}
		size += e.size()
		out = append(out, *e)
	}
	return out
}

// from returns every existing entry at or above lo (holes skipped), at most
// max of them.
func (l *memLog) from(lo uint64, max int) []Entry {
	if lo < l.first {
		lo = l.first
	}
	var out []Entry
	for i := lo; i <= l.last && len(out) < max; i++ {
		if e, ok := l.get(i); ok {
			out = append(out, *e)
		}
	}
	return out
}
