package rpc

import (
	"bytes"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"google.golang.org/grpc/encoding"
)

func snappyRoundTrip(t *testing.T, c encoding.Compressor, payload []byte) {
	t.Helper()
	var buf bytes.Buffer
	w, err := c.Compress(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// Write in uneven pieces, as gRPC's encoder may.
	for rest := payload; len(rest) > 0; {
		n := min(len(rest), 1+len(rest)/3)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	compressed := append([]byte(nil), buf.Bytes()...)
	r, err := c.Decompress(bytes.NewReader(compressed))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decompress %d bytes: %v", len(payload), err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("round trip of %d bytes gave %d bytes", len(payload), len(got))
	}
	if got, err := decompressAll(compressed); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("decompressAll: %d bytes, %v", len(got), err)
	}
}

func TestSnappyCompressor(t *testing.T) {
	c := encoding.GetCompressor("snappy")
	if c == nil || c.Name() != SnappyName {
		t.Fatalf("snappy compressor not registered: %v", c)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	payloads := [][]byte{nil, {}, {0}, []byte("hello, snappy"), bytes.Repeat([]byte("paxos "), 50000), random(1 << 20), make([]byte, 1<<20)}
	for range 50 {
		payloads = append(payloads, random(rng.IntN(200000)))
	}
	for _, p := range payloads {
		snappyRoundTrip(t, c, p)
	}
	// The writers are pooled: concurrent streams must not share one.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for range 20 {
				p := make([]byte, r.IntN(70000))
				for i := range p {
					p[i] = byte(r.IntN(4)) // compressible
				}
				snappyRoundTrip(t, c, p)
			}
		}()
	}
	wg.Wait()
}

func TestSnappyCorruptInput(t *testing.T) {
	c := encoding.GetCompressor(SnappyName)
	r, err := c.Decompress(bytes.NewReader([]byte("definitely not snappy framed data")))
	if err != nil {
		return
	}
	if _, err := io.ReadAll(r); err == nil {
		t.Fatal("corrupt input decompressed without an error")
	}
}

// TestCompressOffLoopback: node streams skip compression between loopback
// addresses only.
func TestCompressOffLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:26257": false, "127.0.0.2:1": false, "[::1]:26257": false, "localhost:26257": false,
		"10.0.0.7:26257": true, "[2001:db8::1]:26257": true, "node-1.example:26257": true, "no-port": true,
	} {
		if got := compress(addr); got != want {
			t.Errorf("compress(%q) = %v, want %v", addr, got, want)
		}
	}
}
