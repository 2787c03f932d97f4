package paxos

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/meridiandb/meridian/tt"
)

// Sample values with every field set to something non-zero (and some at
// their extremes), so a round trip covers every field; requireAllSet
// keeps them that way when fields are added.

func sampleEntry() Entry {
	return Entry{Index: 1<<40 + 3, Ballot: Ballot{Round: 7, Replica: 3}, Proposer: Ballot{Round: 5, Replica: 2},
		TS: tt.Timestamp(1_795_620_000_123_456_789), Type: EntryBarrier, CommitWait: true, Data: []byte("put k=v\x00\xff")}
}

func sampleHardState() HardState {
	return HardState{Promised: Ballot{Round: math.MaxUint64, Replica: 9}, Chosen: 12345, Round: 77}
}

func sampleApplyState() ApplyState {
	return ApplyState{Index: 99, LastTS: tt.Timestamp(-5), MaxProposer: Ballot{Round: 4, Replica: 1}, ClosedTS: tt.MaxTimestamp}
}

func sampleMessage() Message {
	e2 := sampleEntry()
	e2.Index++
	e2.Type = EntryNoop
	e2.Data = nil
	return Message{Type: MsgPreVoteResp, Group: 1 << 50, From: 2, To: 5, Ballot: Ballot{Round: 3, Replica: 2},
		Reject: true, Promised: Ballot{Round: 4, Replica: 1}, Behind: true, Index: 17, Chosen: 16,
		Entries: []Entry{sampleEntry(), e2}, LeaseReq: tt.Timestamp(1_795_620_000_000_000_001), LeaseGranted: true,
		ClosedIndex: 15, ClosedTS: tt.Timestamp(1_795_619_999_999_999_999), Snapshot: sampleApplyState(),
		Payload: bytes.Repeat([]byte{0xab}, 300)}
}

// requireAllSet fails if any field of v (recursively through structs) is
// its zero value.
func requireAllSet(t *testing.T, name string, v any) {
	t.Helper()
	var walk func(path string, v reflect.Value)
	walk = func(path string, v reflect.Value) {
		if v.Kind() == reflect.Struct {
			for i := 0; i < v.NumField(); i++ {
				walk(path+"."+v.Type().Field(i).Name, v.Field(i))
			}
			return
		}
		if v.IsZero() {
			t.Errorf("%s: field %s is zero in the sample; set it so the round trip covers it", name, path)
		}
	}
	walk(name, reflect.ValueOf(v))
}

func TestCodecRoundTrip(t *testing.T) {
	t.Run("Entry", func(t *testing.T) {
		for _, e := range []Entry{sampleEntry(), {}, {Index: 1, Type: EntryNoop}, {Type: EntryNormal, Data: []byte{}}} {
			if e.Index == sampleEntry().Index {
				requireAllSet(t, "Entry", e)
			}
			b := AppendEntry([]byte("prefix"), &e)
			if !bytes.HasPrefix(b, []byte("prefix")) {
				t.Fatal("AppendEntry dropped dst")
			}
			got, err := DecodeEntry(b[len("prefix"):])
			if err != nil {
				t.Fatalf("%v: %v", e, err)
			}
			if len(e.Data) == 0 {
				e.Data = nil // empty and nil data encode alike
			}
			if !reflect.DeepEqual(got, e) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, e)
			}
		}
	})
	t.Run("HardState", func(t *testing.T) {
		for _, h := range []HardState{sampleHardState(), {}} {
			if h != (HardState{}) {
				requireAllSet(t, "HardState", h)
			}
			got, err := DecodeHardState(h.Marshal())
			if err != nil || got != h {
				t.Fatalf("round trip: got %+v, %v; want %+v", got, err, h)
			}
		}
	})
	t.Run("ApplyState", func(t *testing.T) {
		for _, a := range []ApplyState{sampleApplyState(), {}} {
			if a != (ApplyState{}) {
				requireAllSet(t, "ApplyState", a)
			}
			got, err := DecodeApplyState(a.Marshal())
			if err != nil || got != a {
				t.Fatalf("round trip: got %+v, %v; want %+v", got, err, a)
			}
		}
	})
	t.Run("Message", func(t *testing.T) {
		m := sampleMessage()
		requireAllSet(t, "Message", m)
		msgs := []Message{m, {Type: MsgPrepare}}
		for typ := MsgPrepare; typ <= MsgPreVoteResp; typ++ {
			x := sampleMessage()
			x.Type = typ
			msgs = append(msgs, x)
		}
		for _, m := range msgs {
			b := AppendMessage(nil, &m)
			got, err := DecodeMessage(b)
			if err != nil {
				t.Fatalf("%v: %v", m, err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, m)
			}
		}
	})
}

// TestCodecRejects: every strict prefix, trailing garbage, an unknown
// format or type, and absurd lengths fail with ErrCorrupt.
func TestCodecRejects(t *testing.T) {
	e, m := sampleEntry(), sampleMessage()
	decoders := []struct {
		name   string
		valid  []byte
		decode func([]byte) error
	}{
		{"Entry", AppendEntry(nil, &e), func(b []byte) error { _, err := DecodeEntry(b); return err }},
		{"HardState", sampleHardState().Marshal(), func(b []byte) error { _, err := DecodeHardState(b); return err }},
		{"ApplyState", sampleApplyState().Marshal(), func(b []byte) error { _, err := DecodeApplyState(b); return err }},
		{"Message", AppendMessage(nil, &m), func(b []byte) error { _, err := DecodeMessage(b); return err }},
	}
	for _, d := range decoders {
		t.Run(d.name, func(t *testing.T) {
			if err := d.decode(d.valid); err != nil {
				t.Fatalf("valid encoding rejected: %v", err)
			}
			for i := 0; i < len(d.valid); i++ {
				if err := d.decode(d.valid[:i]); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("prefix of %d/%d bytes: got %v, want ErrCorrupt", i, len(d.valid), err)
				}
			}
			if err := d.decode(append(bytes.Clone(d.valid), 0)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("trailing byte: got %v, want ErrCorrupt", err)
			}
			bad := bytes.Clone(d.valid)
			bad[0] = 0xee // unknown format
			if err := d.decode(bad); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("unknown format: got %v, want ErrCorrupt", err)
			}
		})
	}

	cases := []struct {
		name string
		b    []byte
		dec  func([]byte) error
	}{
		{"entry type beyond barrier", func() []byte {
			x := Entry{Type: EntryBarrier + 1}
			return AppendEntry(nil, &x)
		}(), func(b []byte) error { _, err := DecodeEntry(b); return err }},
		{"bool that is neither 0 nor 1", func() []byte {
			x := Entry{CommitWait: true}
			b := AppendEntry(nil, &x)
			// format, index, ballot(2), proposer(2), ts, type: then the bool.
			b[8] = 2
			return b
		}(), func(b []byte) error { _, err := DecodeEntry(b); return err }},
		{"message type 0", func() []byte {
			x := Message{Type: 0}
			return AppendMessage(nil, &x)
		}(), func(b []byte) error { _, err := DecodeMessage(b); return err }},
		{"message type beyond the last", func() []byte {
			x := Message{Type: MsgPreVoteResp + 1}
			return AppendMessage(nil, &x)
		}(), func(b []byte) error { _, err := DecodeMessage(b); return err }},
		{"entry count beyond the input", func() []byte {
			// format, type, group, from, to, ballot(2), reject, promised(2), behind, index, chosen, count
			b := []byte{fmtMessage, byte(MsgAccept), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			return binary.AppendUvarint(b, 1<<40)
		}(), func(b []byte) error { _, err := DecodeMessage(b); return err }},
		{"data length beyond the input", func() []byte {
			b := []byte{fmtEntry, 1, 0, 0, 0, 0, 0, byte(EntryNormal), 0}
			return binary.AppendUvarint(b, 1<<62)
		}(), func(b []byte) error { _, err := DecodeEntry(b); return err }},
		{"uvarint overflow", append([]byte{fmtHardState}, bytes.Repeat([]byte{0xff}, 11)...),
			func(b []byte) error { _, err := DecodeHardState(b); return err }},
		{"overlong uvarint (0 as 0x80 0x00)", []byte{fmtHardState, 0x80, 0x00, 0, 0, 0},
			func(b []byte) error { _, err := DecodeHardState(b); return err }},
		{"overlong varint (ts 0x40 as 0xc0 0x00)", []byte{fmtApplyState, 0, 0xc0, 0x00, 0, 0, 0},
			func(b []byte) error { _, err := DecodeApplyState(b); return err }},
		{"empty", nil, func(b []byte) error { _, err := DecodeMessage(b); return err }},
	}
	for _, c := range cases {
		if err := c.dec(c.b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", c.name, err)
		}
	}
}

// checkCanonical asserts what every decoder promises for arbitrary input:
// no panic; failure only with ErrCorrupt; and on success the value
// re-encodes to exactly the input (one value, one encoding).
func checkCanonical[T any](t *testing.T, name string, data []byte, decode func([]byte) (T, error), encode func(T) []byte) {
	t.Helper()
	v, err := decode(data)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: error %v does not wrap ErrCorrupt", name, err)
		}
		return
	}
	if re := encode(v); !bytes.Equal(re, data) {
		t.Fatalf("%s: decoded %+v re-encodes differently:\n in %x\nout %x", name, v, data, re)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	for typ := MsgPrepare; typ <= MsgPreVoteResp; typ++ {
		m := sampleMessage()
		m.Type = typ
		f.Add(AppendMessage(nil, &m))
		small := Message{Type: typ, Group: 7, From: 1, To: 2, Ballot: Ballot{Round: 1, Replica: 1}}
		f.Add(AppendMessage(nil, &small))
	}
	f.Add([]byte{})
	f.Add([]byte{fmtMessage})
	f.Add([]byte{fmtMessage, byte(MsgAccept), 0x80, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkCanonical(t, "Message", data, DecodeMessage, func(m Message) []byte { return AppendMessage(nil, &m) })
	})
}

// FuzzDecodeEntry fuzzes the entry decoder and, on the same input, the
// hard and apply state decoders, which share its primitives.
func FuzzDecodeEntry(f *testing.F) {
	e := sampleEntry()
	f.Add(AppendEntry(nil, &e))
	for typ := EntryNormal; typ <= EntryBarrier; typ++ {
		x := Entry{Index: 3, Ballot: Ballot{Round: 1, Replica: 2}, Proposer: Ballot{Round: 1, Replica: 2}, TS: 1000, Type: typ, Data: []byte("x")}
		f.Add(AppendEntry(nil, &x))
	}
	f.Add(sampleHardState().Marshal())
	f.Add(sampleApplyState().Marshal())
	f.Add([]byte{})
	f.Add([]byte{fmtEntry, 0x80, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkCanonical(t, "Entry", data, DecodeEntry, func(e Entry) []byte { return AppendEntry(nil, &e) })
		checkCanonical(t, "HardState", data, DecodeHardState, HardState.Marshal)
		checkCanonical(t, "ApplyState", data, DecodeApplyState, ApplyState.Marshal)
	})
}
