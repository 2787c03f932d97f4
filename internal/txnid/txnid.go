// Package txnid draws transaction IDs. It lives outside txn, whose state
// machines take time and randomness as inputs and never draw them.
package txnid

import (
	"crypto/rand"
	"time"
)

// New draws a 16-byte transaction ID (txn.TxnID's Bytes form): the Unix
// time in milliseconds in its first 48 bits (a coordinator refuses commits
// of IDs older than it keeps outcomes for; see txn.TxnID.Time), 80 random
// bits after.
func New() []byte {
	b := make([]byte, 16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic(err)
	}
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	return b
}
