package client

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestKeyRangeHalfOpen(t *testing.T) {
	b := func(s string) []byte { return []byte(s) }
	cases := []struct {
		r          KeyRange
		start, end []byte // end nil: unbounded
	}{
		{KeyRange{Start: b("a"), End: b("c"), Kind: ClosedOpen}, b("a"), b("c")},
		{KeyRange{Start: b("a"), End: b("c"), Kind: ClosedClosed}, b("a"), b("c\x00")},
		{KeyRange{Start: b("a"), End: b("c"), Kind: OpenOpen}, b("a\x00"), b("c")},
		{KeyRange{Start: b("a"), End: b("c"), Kind: OpenClosed}, b("a\x00"), b("c\x00")},
		// A nil start is the beginning of the key space; (nil is open
		// at the empty key, which is no key.
		{KeyRange{End: b("c"), Kind: ClosedOpen}, b(""), b("c")},
		{KeyRange{End: b("c"), Kind: ClosedClosed}, b(""), b("c\x00")},
		{KeyRange{End: b("c"), Kind: OpenOpen}, b("\x00"), b("c")},
		{KeyRange{End: b("c"), Kind: OpenClosed}, b("\x00"), b("c\x00")},
		// A nil end is unbounded, whatever the kind.
		{KeyRange{Start: b("a"), Kind: ClosedOpen}, b("a"), nil},
		{KeyRange{Start: b("a"), Kind: ClosedClosed}, b("a"), nil},
		{KeyRange{Start: b("a"), Kind: OpenOpen}, b("a\x00"), nil},
		{KeyRange{Start: b("a"), Kind: OpenClosed}, b("a\x00"), nil},
		{KeyRange{}, b(""), nil},
	}
	for _, tc := range cases {
		start, end := tc.r.halfOpen()
		if start == nil || !bytes.Equal(start, tc.start) || (end == nil) != (tc.end == nil) || !bytes.Equal(end, tc.end) {
			t.Errorf("%+v: [%q, %q), want [%q, %q)", tc.r, start, end, tc.start, tc.end)
		}
	}
	// halfOpen never writes into the caller's slices, even with spare
	// capacity.
	s, e := []byte("a#######")[:1], []byte("c#######")[:1]
	for _, k := range []RangeKind{ClosedOpen, ClosedClosed, OpenOpen, OpenClosed} {
		KeyRange{Start: s, End: e, Kind: k}.halfOpen()
		if string(s[:cap(s)]) != "a#######" || string(e[:cap(e)]) != "c#######" {
			t.Fatalf("kind %d wrote into the caller's slices: %q %q", k, s[:cap(s)], e[:cap(e)])
		}
	}
	// The four kinds agree with their definitions on random keys.
	rng := rand.New(rand.NewPCG(3, 4))
	key := func() []byte {
		k := make([]byte, rng.IntN(4))
		for i := range k {
			k[i] = []byte{0, 1, 'a', 'b', 0xff}[rng.IntN(5)]
		}
		return k
	}
	for range 20000 {
		r := KeyRange{Start: key(), End: key(), Kind: RangeKind(rng.IntN(4))}
		k := key()
		if len(k) == 0 {
			continue // not a key
		}
		c1, c2 := bytes.Compare(k, r.Start), bytes.Compare(k, r.End)
		var want bool
		switch r.Kind {
		case ClosedOpen:
			want = c1 >= 0 && c2 < 0
		case ClosedClosed:
			want = c1 >= 0 && c2 <= 0
		case OpenOpen:
			want = c1 > 0 && c2 < 0
		case OpenClosed:
			want = c1 > 0 && c2 <= 0
		}
		start, end := r.halfOpen()
		if got := bytes.Compare(k, start) >= 0 && bytes.Compare(k, end) < 0; got != want {
			t.Fatalf("%+v contains %q: %v, half-open [%q, %q) says %v", r, k, want, start, end, got)
		}
	}
}

func TestPrefix(t *testing.T) {
	cases := []struct {
		p, start, end string
		unbounded     bool
	}{
		{"abc", "abc", "abd", false},
		{"a", "a", "b", false},
		{"a\xff", "a\xff", "b", false},
		{"a\xff\xff", "a\xff\xff", "b", false},
		{"a\xfe\xff", "a\xfe\xff", "a\xff", false},
		{"\x00", "\x00", "\x01", false},
		{"\xff", "\xff", "", true},
		{"\xff\xff\xff", "\xff\xff\xff", "", true},
		{"", "", "", true},
	}
	for _, tc := range cases {
		p := []byte(tc.p)
		r := Prefix(p)
		if r.Kind != ClosedOpen || string(r.Start) != tc.start || (r.End == nil) != tc.unbounded || string(r.End) != tc.end {
			t.Errorf("Prefix(%q) = %+v, want [%q, %q) unbounded %v", tc.p, r, tc.start, tc.end, tc.unbounded)
		}
		if string(p) != tc.p {
			t.Errorf("Prefix(%q) changed its argument to %q", tc.p, p)
		}
	}
	if r := Prefix(nil); r.End != nil || len(r.Start) != 0 {
		t.Errorf("Prefix(nil) = %+v", r)
	}
	// Exactly the keys with the prefix are in the range.
	rng := rand.New(rand.NewPCG(5, 6))
	key := func(n int) []byte {
		k := make([]byte, n)
		for i := range k {
			k[i] = []byte{0, 'a', 'b', 0xfe, 0xff}[rng.IntN(5)]
		}
		return k
	}
	for range 20000 {
		p, k := key(rng.IntN(3)), key(1+rng.IntN(4))
		start, end := Prefix(p).halfOpen()
		in := bytes.Compare(k, start) >= 0 && (end == nil || bytes.Compare(k, end) < 0)
		if in != bytes.HasPrefix(k, p) {
			t.Fatalf("Prefix(%q) contains %q: %v", p, k, in)
		}
	}
}

func TestTimestampBoundString(t *testing.T) {
	for b, want := range map[TimestampBound]string{
		StrongRead():                    "strong",
		ExactStaleness(5 * time.Second): "exactStaleness(5s)",
		MaxStaleness(10 * time.Second):  "maxStaleness(10s)",
		ReadTimestamp(42):               "readTimestamp(42)",
		MinReadTimestamp(7):             "minReadTimestamp(7)",
		{}:                              "strong",
	} {
		if got := b.String(); got != want || !strings.Contains(got, strings.SplitN(want, "(", 2)[0]) {
			t.Errorf("%#v.String() = %q, want %q", b, got, want)
		}
	}
}
