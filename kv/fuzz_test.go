package kv

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/meridiandb/meridian/tt"
)

// keySeeds are user keys that exercise escaping and prefix order.
var keySeeds = []string{"", "a", "a\x00", "a\x00\x00", "a\x00\x01", "a\x00\xff", "ab", "\x00", "\xff", "\x00\xff\x00\x01", "key/001"}

// tsSeeds are timestamps at the edges of the int64 range.
var tsSeeds = []int64{0, 1, -1, 42, math.MaxInt64, math.MinInt64, 1 << 62}

func FuzzKeyRoundTrip(f *testing.F) {
	for i, k := range keySeeds {
		f.Add([]byte(k), tsSeeds[i%len(tsSeeds)])
	}
	f.Fuzz(func(t *testing.T, key []byte, ts int64) {
		enc := EncodeKey(key, tt.Timestamp(ts))
		if len(enc) != encodedKeyLen(key) {
			t.Fatalf("len(EncodeKey) = %d; encodedKeyLen %d", len(enc), encodedKeyLen(key))
		}
		k, gotTS, err := DecodeKey(enc)
		if err != nil || !bytes.Equal(k, key) || gotTS != tt.Timestamp(ts) {
			t.Fatalf("DecodeKey(EncodeKey(%q, %d)) = %q, %d, %v", key, ts, k, gotTS, err)
		}
		prefix := appendKeyPrefix(nil, key)
		if !hasVersionOf(enc, prefix) {
			t.Fatalf("EncodeKey(%q) lacks its prefix", key)
		}
		if end := prefixEnd(prefix); bytes.Compare(enc, end) >= 0 {
			t.Fatalf("EncodeKey(%q, %d) >= prefixEnd", key, ts)
		}
	})
}

func FuzzKeyOrder(f *testing.F) {
	for i := range keySeeds {
		for j := range keySeeds {
			f.Add([]byte(keySeeds[i]), tsSeeds[i%len(tsSeeds)], []byte(keySeeds[j]), tsSeeds[j%len(tsSeeds)])
		}
	}
	f.Fuzz(func(t *testing.T, k1 []byte, ts1 int64, k2 []byte, ts2 int64) {
		want := bytes.Compare(k1, k2)
		if want == 0 {
			want = cmp.Compare(ts2, ts1) // descending timestamps
		}
		e1, e2 := EncodeKey(k1, tt.Timestamp(ts1)), EncodeKey(k2, tt.Timestamp(ts2))
		if got := bytes.Compare(e1, e2); got != want {
			t.Fatalf("compare(EncodeKey(%q, %d), EncodeKey(%q, %d)) = %d; want %d", k1, ts1, k2, ts2, got, want)
		}
		// Every version of k1 sorts relative to k2's versions by user key.
		if c := bytes.Compare(k1, k2); c < 0 {
			if bytes.Compare(prefixEnd(appendKeyPrefix(nil, k1)), appendKeyPrefix(nil, k2)) > 0 {
				t.Fatalf("prefixEnd(%q) > prefix(%q)", k1, k2)
			}
		}
	})
}

func FuzzDecodeKey(f *testing.F) {
	for i, k := range keySeeds {
		enc := EncodeKey([]byte(k), tt.Timestamp(tsSeeds[i%len(tsSeeds)]))
		f.Add(enc)
		f.Add(enc[:len(enc)-1])
	}
	f.Add([]byte{})
	f.Add([]byte{spaceData, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{spaceData, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, enc []byte) {
		key, ts, err := DecodeKey(enc)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeKey error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// Decoding is exact: only EncodeKey's output decodes.
		if re := EncodeKey(key, ts); !bytes.Equal(re, enc) {
			t.Fatalf("DecodeKey(%x) = %q, %d, which encodes to %x", enc, key, ts, re)
		}
	})
}

func FuzzImportChunk(f *testing.F) {
	src, err := Open(testDir, Options{FS: vfs.NewMem(), Logger: quietLogger{}})
	if err != nil {
		f.Fatal(err)
	}
	b := src.NewBatch()
	for i, k := range keySeeds[1:] {
		_ = b.Put([]byte(k), tt.Timestamp(i+1), []byte(k+"-value"))
		_ = b.Delete([]byte(k), tt.Timestamp(i+5))
	}
	if err := b.Commit(false); err != nil {
		f.Fatal(err)
	}
	for _, chunkBytes := range []int{0, 16, 64} {
		if err := src.ExportSnapshot(nil, nil, 100, chunkBytes, func(c []byte) error {
			f.Add(c)
			return nil
		}); err != nil {
			f.Fatal(err)
		}
	}
	if err := src.Close(); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	f.Add([]byte(chunkMagic))

	dst, err := Open(testDir, Options{FS: vfs.NewMem(), Logger: quietLogger{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = dst.Close() })
	importOnce := func(t *testing.T, chunk []byte) {
		b := dst.NewBatch()
		defer b.Close()
		h, err := b.ImportSnapshotChunk(chunk)
		if err != nil {
			if !b.Empty() {
				t.Fatalf("failed import left %d writes", b.Count())
			}
			return
		}
		info, err := InspectChunk(chunk)
		if err != nil || info.Horizon != h || b.Count() != info.Count {
			t.Fatalf("imported chunk: info %+v, %v; horizon %d, %d writes", info, err, h, b.Count())
		}
	}
	f.Fuzz(func(t *testing.T, chunk []byte) {
		importOnce(t, chunk)
		// The checksum stops almost every mutation; reseal the input with
		// a valid checksum so the decompressor and record parser see
		// arbitrary bytes too.
		if len(chunk) >= chunkHeaderLen {
			sealed := bytes.Clone(chunk)
			crc := crc32.Update(crc32.Checksum(sealed[:chunkCRCOffset], castagnoli), castagnoli, sealed[chunkHeaderLen:])
			binary.BigEndian.PutUint32(sealed[chunkCRCOffset:], crc)
			importOnce(t, sealed)
		}
	})
}
