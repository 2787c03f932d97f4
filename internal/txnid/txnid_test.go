package txnid

import (
	"bytes"
	"testing"
	"time"

	"github.com/meridiandb/meridian/txn"
)

func TestNew(t *testing.T) {
	before := time.Now().Truncate(time.Millisecond)
	a, b := New(), New()
	after := time.Now()
	if len(a) != 16 || bytes.Equal(a, b) {
		t.Fatalf("IDs %x and %x: want 16 bytes each, distinct", a, b)
	}
	id, err := txn.TxnIDFromBytes(a)
	if err != nil {
		t.Fatal(err)
	}
	if drawn := time.Unix(0, int64(id.Time())); drawn.Before(before) || drawn.After(after) {
		t.Fatalf("drawn at %v, want between %v and %v", drawn, before, after)
	}
}
