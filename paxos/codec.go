package paxos

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/meridiandb/meridian/tt"
)

// Wire and disk encodings. Every encoding starts with a format byte so the
// layout can evolve; decoders reject unknown formats and truncated or
// oversized input with ErrCorrupt, and never panic (fuzzed).

// ErrCorrupt is returned by decoders given malformed input.
var ErrCorrupt = errors.New("paxos: corrupt encoding")

const (
	fmtEntry      = 1
	fmtHardState  = 1
	fmtApplyState = 1
	fmtMessage    = 1
	// maxDecodeEntries bounds the entries one decoded message may carry.
	maxDecodeEntries = 1 << 20
)

type encoder struct{ b []byte }

func (e *encoder) u(v uint64)        { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) i(v int64)         { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) byte(v byte)       { e.b = append(e.b, v) }
func (e *encoder) bytes(v []byte)    { e.u(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) ballot(b Ballot)   { e.u(b.Round); e.u(uint64(b.Replica)) }
func (e *encoder) ts(t tt.Timestamp) { e.i(int64(t)) }
func (e *encoder) bool(v bool)       { e.byte(boolByte(v)) }
func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
}

func (d *decoder) u() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	if n > 1 && d.b[n-1] == 0 {
		// Overlong: the encoder never writes it, and accepting it would
		// give one value two encodings.
		d.fail("non-minimal uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) i() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	if n > 1 && d.b[n-1] == 0 {
		d.fail("non-minimal varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.u()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length beyond input")
		return nil
	}
	if n == 0 {
		return nil
	}
	v := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return v
}

func (d *decoder) ballot() Ballot   { return Ballot{Round: d.u(), Replica: ReplicaID(d.u())} }
func (d *decoder) ts() tt.Timestamp { return tt.Timestamp(d.i()) }
func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad bool")
	return false
}

func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

func (e *encoder) entry(x *Entry) {
	e.u(x.Index)
	e.ballot(x.Ballot)
	e.ballot(x.Proposer)
	e.ts(x.TS)
	e.byte(byte(x.Type))
	e.bool(x.CommitWait)
	e.bytes(x.Data)
}

func (d *decoder) entry() Entry {
	x := Entry{Index: d.u(), Ballot: d.ballot(), Proposer: d.ballot(), TS: d.ts(), Type: EntryType(d.byte())}
	x.CommitWait = d.bool()
	x.Data = d.bytes()
	if x.Type > EntryBarrier {
		d.fail("unknown entry type")
	}
	return x
}

// AppendEntry appends e's encoding to dst.
func AppendEntry(dst []byte, x *Entry) []byte {
	e := encoder{b: dst}
	e.byte(fmtEntry)
	e.entry(x)
	return e.b
}

// DecodeEntry decodes an entry written by AppendEntry.
func DecodeEntry(b []byte) (Entry, error) {
	d := decoder{b: b}
	if d.byte() != fmtEntry {
		d.fail("unknown entry format")
	}
	x := d.entry()
	return x, d.done()
}

// Marshal encodes the hard state.
func (h HardState) Marshal() []byte {
	e := encoder{}
	e.byte(fmtHardState)
	e.ballot(h.Promised)
	e.u(h.Chosen)
	e.u(h.Round)
	return e.b
}

// DecodeHardState decodes HardState.Marshal's output.
func DecodeHardState(b []byte) (HardState, error) {
	d := decoder{b: b}
	if d.byte() != fmtHardState {
		d.fail("unknown hard state format")
	}
	h := HardState{Promised: d.ballot(), Chosen: d.u(), Round: d.u()}
	return h, d.done()
}

// Marshal encodes the apply state.
func (a ApplyState) Marshal() []byte {
	e := encoder{}
	e.byte(fmtApplyState)
	e.u(a.Index)
	e.ts(a.LastTS)
	e.ballot(a.MaxProposer)
	e.ts(a.ClosedTS)
	return e.b
}

// DecodeApplyState decodes ApplyState.Marshal's output.
func DecodeApplyState(b []byte) (ApplyState, error) {
	d := decoder{b: b}
	if d.byte() != fmtApplyState {
		d.fail("unknown apply state format")
	}
	a := ApplyState{Index: d.u(), LastTS: d.ts(), MaxProposer: d.ballot(), ClosedTS: d.ts()}
	return a, d.done()
}

// AppendMessage appends m's encoding to dst.
func AppendMessage(dst []byte, m *Message) []byte {
	e := encoder{b: dst}
	e.byte(fmtMessage)
	e.byte(byte(m.Type))
	e.u(m.Group)
	e.u(uint64(m.From))
	e.u(uint64(m.To))
	e.ballot(m.Ballot)
	e.bool(m.Reject)
	e.ballot(m.Promised)
	e.bool(m.Behind)
	e.u(m.Index)
	e.u(m.Chosen)
	e.u(uint64(len(m.Entries)))
	for i := range m.Entries {
		e.entry(&m.Entries[i])
	}
	e.ts(m.LeaseReq)
	e.bool(m.LeaseGranted)
	e.u(m.ClosedIndex)
	e.ts(m.ClosedTS)
	e.u(m.Snapshot.Index)
	e.ts(m.Snapshot.LastTS)
	e.ballot(m.Snapshot.MaxProposer)
	e.ts(m.Snapshot.ClosedTS)
	e.bytes(m.Payload)
	return e.b
}

// DecodeMessage decodes one message written by AppendMessage.
func DecodeMessage(b []byte) (Message, error) {
	d := decoder{b: b}
	m := d.message()
	return m, d.done()
}

func (d *decoder) message() Message {
	if d.byte() != fmtMessage {
		d.fail("unknown message format")
	}
	m := Message{Type: MsgType(d.byte()), Group: d.u(), From: ReplicaID(d.u()), To: ReplicaID(d.u()),
		Ballot: d.ballot(), Reject: d.bool(), Promised: d.ballot(), Behind: d.bool(), Index: d.u(), Chosen: d.u()}
	if m.Type < MsgPrepare || m.Type > MsgPreVoteResp {
		d.fail("unknown message type")
	}
	n := d.u()
	if n > maxDecodeEntries || n > uint64(len(d.b)) {
		d.fail("too many entries")
		return m
	}
	if n > 0 {
		m.Entries = make([]Entry, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			m.Entries = append(m.Entries, d.entry())
		}
	}
	m.LeaseReq = d.ts()
	m.LeaseGranted = d.bool()
	m.ClosedIndex = d.u()
	m.ClosedTS = d.ts()
	m.Snapshot = ApplyState{Index: d.u(), LastTS: d.ts(), MaxProposer: d.ballot(), ClosedTS: d.ts()}
	m.Payload = d.bytes()
	return m
}
