package pebblestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/paxos"
	"github.com/meridiandb/meridian/tt"
)

// A group snapshot is the state machine at one applied index: every MVCC
// version in the group's key span, the group's meta records (other than
// the Paxos bookkeeping), and the apply state. Layout:
//
//	magic "MSN1" | crc32c(header) | header | chunk*
//	header = uvarint len(apply) apply | uvarint nmeta (uvarint len name, uvarint len value)*
//	chunk  = uvarint len | kv export chunk (checksummed by kv)

var snapMagic = []byte("MSN1")

// ErrCorruptSnapshot is returned for a snapshot payload that fails checks.
var ErrCorruptSnapshot = errors.New("pebblestore: corrupt snapshot")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func isPaxosMeta(name []byte) bool { return bytes.HasPrefix(name, []byte("paxos/")) }

// ExportSnapshot builds the snapshot of the group from r (a consistent
// kv.Snapshot taken right after applying st.Index) for the key span
// [start, end).
func (s *Store) ExportSnapshot(r kv.Reader, start, end []byte, st paxos.ApplyState) ([]byte, error) {
	var hdr []byte
	ab := st.Marshal()
	hdr = binary.AppendUvarint(hdr, uint64(len(ab)))
	hdr = append(hdr, ab...)
	var meta [][2][]byte
	err := r.MetaScan(s.group, nil, func(name, value []byte) error {
		if !isPaxosMeta(name) {
			meta = append(meta, [2][]byte{append([]byte(nil), name...), append([]byte(nil), value...)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	hdr = binary.AppendUvarint(hdr, uint64(len(meta)))
	for _, m := range meta {
		hdr = binary.AppendUvarint(hdr, uint64(len(m[0])))
		hdr = append(hdr, m[0]...)
		hdr = binary.AppendUvarint(hdr, uint64(len(m[1])))
		hdr = append(hdr, m[1]...)
	}
	out := append([]byte(nil), snapMagic...)
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(hdr, castagnoli))
	out = binary.AppendUvarint(out, uint64(len(hdr)))
	out = append(out, hdr...)
	err = r.ExportSnapshot(start, end, tt.MaxTimestamp, 1<<20, func(chunk []byte) error {
		out = binary.AppendUvarint(out, uint64(len(chunk)))
		out = append(out, chunk...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SnapshotState decodes just the apply state of a snapshot payload, so a
// receiver can decide whether it is worth installing.
func SnapshotState(payload []byte) (paxos.ApplyState, error) {
	hdr, _, err := splitSnapshot(payload)
	if err != nil {
		return paxos.ApplyState{}, err
	}
	st, _, err := decodeHeader(hdr)
	return st, err
}

func splitSnapshot(p []byte) (hdr, rest []byte, err error) {
	if len(p) < len(snapMagic)+4 || !bytes.Equal(p[:len(snapMagic)], snapMagic) {
		return nil, nil, fmt.Errorf("%w: bad magic", ErrCorruptSnapshot)
	}
	sum := binary.BigEndian.Uint32(p[len(snapMagic):])
	p = p[len(snapMagic)+4:]
	n, k := binary.Uvarint(p)
	if k <= 0 || uint64(len(p)-k) < n {
		return nil, nil, fmt.Errorf("%w: bad header length", ErrCorruptSnapshot)
	}
	hdr = p[k : k+int(n)]
	if crc32.Checksum(hdr, castagnoli) != sum {
		return nil, nil, fmt.Errorf("%w: header checksum mismatch", ErrCorruptSnapshot)
	}
	return hdr, p[k+int(n):], nil
}

func decodeHeader(hdr []byte) (paxos.ApplyState, [][2][]byte, error) {
	next := func() ([]byte, error) {
		n, k := binary.Uvarint(hdr)
		if k <= 0 || uint64(len(hdr)-k) < n {
			return nil, fmt.Errorf("%w: truncated header", ErrCorruptSnapshot)
		}
		v := hdr[k : k+int(n)]
		hdr = hdr[k+int(n):]
		return v, nil
	}
	ab, err := next()
	if err != nil {
		return paxos.ApplyState{}, nil, err
	}
	st, err := paxos.DecodeApplyState(ab)
	if err != nil {
		return st, nil, fmt.Errorf("%w: %v", ErrCorruptSnapshot, err)
	}
	cnt, k := binary.Uvarint(hdr)
	if k <= 0 || cnt > uint64(len(hdr)) {
		return st, nil, fmt.Errorf("%w: bad meta count", ErrCorruptSnapshot)
	}
	hdr = hdr[k:]
	var meta [][2][]byte
	for i := uint64(0); i < cnt; i++ {
		name, err := next()
		if err != nil {
			return st, nil, err
		}
		val, err := next()
		if err != nil {
			return st, nil, err
		}
		meta = append(meta, [2][]byte{name, val})
	}
	if len(hdr) != 0 {
		return st, nil, fmt.Errorf("%w: trailing header bytes", ErrCorruptSnapshot)
	}
	return st, meta, nil
}

// InstallSnapshot writes a snapshot into b, replacing the group's data in
// [start, end), its meta records and its log; commit b synced before
// telling the replica (Replica.RestoreSnapshot). It returns the snapshot's
// apply state and the GC horizon of the data it carries (raise the
// engine's horizon to it after committing: older history is absent).
func (s *Store) InstallSnapshot(b *kv.Batch, start, end []byte, payload []byte) (paxos.ApplyState, tt.Timestamp, error) {
	st, horizon, err := s.installSnapshot(b, start, end, payload)
	return st, horizon, err
}

func (s *Store) installSnapshot(b *kv.Batch, start, end []byte, payload []byte) (st paxos.ApplyState, horizon tt.Timestamp, err error) {
	hdr, rest, err := splitSnapshot(payload)
	if err != nil {
		return st, 0, err
	}
	st, meta, err := decodeHeader(hdr)
	if err != nil {
		return st, 0, err
	}
	if err := b.ClearData(start, end); err != nil {
		return st, 0, err
	}
	if err := b.ClearMeta(s.group); err != nil {
		return st, 0, err
	}
	for _, m := range meta {
		if isPaxosMeta(m[0]) {
			return st, 0, fmt.Errorf("%w: Paxos bookkeeping in meta", ErrCorruptSnapshot)
		}
		if err := b.SetMeta(s.group, m[0], m[1]); err != nil {
			return st, 0, err
		}
	}
	for len(rest) > 0 {
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			return st, 0, fmt.Errorf("%w: bad chunk framing", ErrCorruptSnapshot)
		}
		h, err := b.ImportSnapshotChunk(rest[k : k+int(n)])
		if err != nil {
			return st, 0, err
		}
		horizon = max(horizon, h)
		rest = rest[k+int(n):]
	}
	if err := s.Truncate(b, st.Index+1); err != nil {
		return st, 0, err
	}
	if err := s.SaveApplyState(b, st); err != nil {
		return st, 0, err
	}
	return st, horizon, nil
}

// SnapshotWait is how long a leader gives a snapshot of n bytes to arrive
// and be installed before it presumes it lost and may send another
// (paxos.Replica.SnapshotSent): 5 s, plus a second per 2 MiB (a slow link
// or a busy follower). The leader sends the next at once when the
// follower answers a later message without having installed it.
func SnapshotWait(n int) time.Duration {
	return 5*time.Second + time.Duration(n)*time.Second/(2<<20)
}
