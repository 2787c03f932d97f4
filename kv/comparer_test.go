package kv

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/meridiandb/meridian/tt"
)

// splitCompare orders keys as Pebble expects a comparer with Split to:
// prefixes first, then suffixes.
func splitCompare(a, b []byte) int {
	pa, pb := splitMVCC(a), splitMVCC(b)
	if c := bytes.Compare(a[:pa], b[:pb]); c != 0 {
		return c
	}
	return bytes.Compare(a[pa:], b[pb:])
}

// TestComparerKeysAgreeWithSplit: every key the comparer makes for index
// blocks (separators, successors) compares with data keys the same byte-wise
// as by prefix and suffix. Pebble's default separator fails this: it cuts
// into timestamps.
func TestComparerKeysAgreeWithSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var keys [][]byte
	for range 400 {
		k := randKey(rng)
		for range 3 {
			keys = append(keys, EncodeKey(k, tt.Timestamp(rng.Int64N(1<<62))))
		}
	}
	check := func(what string, made []byte) {
		t.Helper()
		for _, x := range keys {
			if got, want := comparer.Compare(made, x), splitCompare(made, x); got != want {
				t.Fatalf("%s %x against %x: Compare %d, by prefix and suffix %d", what, made, x, got, want)
			}
		}
	}
	for range 300 {
		a, b := keys[rng.IntN(len(keys))], keys[rng.IntN(len(keys))]
		if c := comparer.Compare(a, b); c > 0 {
			a, b = b, a
		} else if c == 0 {
			continue
		}
		sep := comparer.Separator(nil, a, b)
		if comparer.Compare(a, sep) > 0 || comparer.Compare(sep, b) >= 0 {
			t.Fatalf("separator %x not in [%x, %x)", sep, a, b)
		}
		check("separator", sep)
		check("successor", comparer.Successor(nil, a))
		// A prefix's immediate successor is a whole prefix above every
		// version of it, and not above the next prefix.
		pa, pb := a[:comparer.Split(a)], b[:comparer.Split(b)]
		succ := comparer.ImmediateSuccessor(nil, pa)
		check("immediate successor", succ)
		if comparer.Split(succ) != len(succ) || comparer.Compare(succ, a) <= 0 ||
			(!bytes.Equal(pa, pb) && comparer.Compare(succ, pb) > 0) {
			t.Fatalf("immediate successor %x of prefix %x: above %x? not above prefix %x?", succ, pa, a, pb)
		}
	}
	// The closest cases: user keys extending u by an escaped zero, a
	// terminator-like byte or 0xFF; the successor is appended to dst.
	for _, u := range []string{"", "u", "u\x00", "u\x01", "u\xff"} {
		p := appendKeyPrefix(nil, []byte(u))
		succ := comparer.ImmediateSuccessor([]byte("dst"), p)
		if !bytes.HasPrefix(succ, []byte("dst")) {
			t.Fatalf("immediate successor of %q overwrote dst: %x", u, succ)
		}
		succ = succ[3:]
		if comparer.Split(succ) != len(succ) {
			t.Fatalf("immediate successor %x of %q is not a whole prefix", succ, u)
		}
		for _, ts := range []tt.Timestamp{0, 1, 1 << 40, tt.MaxTimestamp} {
			if comparer.Compare(succ, EncodeKey([]byte(u), ts)) <= 0 {
				t.Fatalf("immediate successor %x of %q not above its version at %d", succ, u, ts)
			}
			for _, next := range []string{u + "\x00", u + "\x00\x00", u + "\x01", u + "\xff"} {
				if comparer.Compare(succ, EncodeKey([]byte(next), ts)) >= 0 {
					t.Fatalf("immediate successor %x of %q not below %q at %d", succ, u, next, ts)
				}
			}
		}
	}
	// Keys of other spaces are all prefix, even those ending like a
	// terminator (00 01).
	for _, k := range [][]byte{logKey(3, 9), logKey(3, 1), metaKey(3, []byte("x")), metaKey(3, []byte{escByte, escTerm})} {
		if got := comparer.ImmediateSuccessor(nil, k); !bytes.Equal(got, append(bytes.Clone(k), 0)) {
			t.Fatalf("immediate successor of %x: %x", k, got)
		}
	}
}
