package txn

import (
	"bytes"
	"cmp"
	"slices"
)

// lockTable holds a group leader's locks: shared locks on keys and key
// spans (taken by reads), exclusive locks on keys (taken at commit and
// prepare). It only answers who conflicts; wound-wait decisions are the
// Group's. It is volatile: a new leader starts empty and re-takes the
// exclusive locks of prepared transactions.
type lockTable struct {
	writes map[string]TxnID
	reads  map[string]map[TxnID]struct{}
	spans  map[TxnID][]keySpan
	held   map[TxnID]*held
	nLocks int
}

type keySpan struct{ start, end []byte } // end nil: unbounded

func (s keySpan) contains(k []byte) bool {
	return bytes.Compare(k, s.start) >= 0 && (s.end == nil || bytes.Compare(k, s.end) < 0)
}

type held struct {
	reads  []string
	writes []string
}

func newLockTable() *lockTable {
	return &lockTable{writes: map[string]TxnID{}, reads: map[string]map[TxnID]struct{}{},
		spans: map[TxnID][]keySpan{}, held: map[TxnID]*held{}}
}

// lockReq is what a request needs: shared locks on Keys or Span, or
// exclusive locks on Keys.
type lockReq struct {
	exclusive bool
	keys      []string
	span      *keySpan
}

// blockers returns the other transactions holding locks that conflict
// with req (deduplicated, in a deterministic order).
func (lt *lockTable) blockers(id TxnID, req lockReq) []TxnID {
	seen := map[TxnID]bool{}
	var out []TxnID
	add := func(o TxnID) {
		if o != id && !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	if req.span != nil {
		for k, w := range lt.writes {
			if req.span.contains([]byte(k)) {
				add(w)
			}
		}
		sortIDs(out)
		return out
	}
	for _, k := range req.keys {
		if w, ok := lt.writes[k]; ok {
			add(w)
		}
		if !req.exclusive {
			continue
		}
		for r := range lt.reads[k] {
			add(r)
		}
		for t, ss := range lt.spans {
			for _, s := range ss {
				if s.contains([]byte(k)) {
					add(t)
					break
				}
			}
		}
	}
	sortIDs(out)
	return out
}

func sortIDs(ids []TxnID) {
	slices.SortFunc(ids, func(a, b TxnID) int {
		if c := cmp.Compare(a.Hi, b.Hi); c != 0 {
			return c
		}
		return cmp.Compare(a.Lo, b.Lo)
	})
}

func (lt *lockTable) h(id TxnID) *held {
	h := lt.held[id]
	if h == nil {
		h = &held{}
		lt.held[id] = h
	}
	return h
}

// grant takes req's locks for id (the caller checked blockers).
func (lt *lockTable) grant(id TxnID, req lockReq) {
	h := lt.h(id)
	if req.span != nil {
		lt.spans[id] = append(lt.spans[id], *req.span)
		lt.nLocks++
		return
	}
	for _, k := range req.keys {
		if req.exclusive {
			if lt.writes[k] != id {
				lt.writes[k] = id
				h.writes = append(h.writes, k)
				lt.nLocks++
			}
			continue
		}
		m := lt.reads[k]
		if m == nil {
			m = map[TxnID]struct{}{}
			lt.reads[k] = m
		}
		if _, ok := m[id]; !ok {
			m[id] = struct{}{}
			h.reads = append(h.reads, k)
			lt.nLocks++
		}
	}
}

// shared returns the shared locks id holds: point keys and spans.
func (lt *lockTable) shared(id TxnID) ([]string, []keySpan) {
	var keys []string
	if h := lt.held[id]; h != nil {
		keys = append(keys, h.reads...)
	}
	return keys, append([]keySpan(nil), lt.spans[id]...)
}

// holds reports whether id holds any lock.
func (lt *lockTable) holds(id TxnID) bool {
	_, ok := lt.held[id]
	return ok || len(lt.spans[id]) > 0
}

// release drops every lock id holds.
func (lt *lockTable) release(id TxnID) {
	if h := lt.held[id]; h != nil {
		for _, k := range h.reads {
			if m := lt.reads[k]; m != nil {
				delete(m, id)
				if len(m) == 0 {
					delete(lt.reads, k)
				}
				lt.nLocks--
			}
		}
		for _, k := range h.writes {
			if lt.writes[k] == id {
				delete(lt.writes, k)
				lt.nLocks--
			}
		}
		delete(lt.held, id)
	}
	lt.nLocks -= len(lt.spans[id])
	delete(lt.spans, id)
}

// count returns the number of locks held.
func (lt *lockTable) count() int { return lt.nLocks }
