package rpc

import (
	"bytes"
	"io"
	"sync"

	"github.com/golang/snappy"
	"google.golang.org/grpc/encoding"
)

// SnappyName is the gRPC compressor name for snappy (framed stream
// format), used on node-to-node streams.
const SnappyName = "snappy"

func init() { encoding.RegisterCompressor(snappyCompressor{}) }

type snappyCompressor struct{}

var writers = sync.Pool{New: func() any { return snappy.NewBufferedWriter(nil) }}

func (snappyCompressor) Name() string { return SnappyName }

func (snappyCompressor) Compress(w io.Writer) (io.WriteCloser, error) {
	sw := writers.Get().(*snappy.Writer)
	sw.Reset(w)
	return &pooledWriter{Writer: sw}, nil
}

type pooledWriter struct{ *snappy.Writer }

func (p *pooledWriter) Close() error {
	err := p.Writer.Close()
	writers.Put(p.Writer)
	return err
}

func (snappyCompressor) Decompress(r io.Reader) (io.Reader, error) {
	return snappy.NewReader(r), nil
}

// decompressAll is used by tests to check round trips.
func decompressAll(b []byte) ([]byte, error) {
	return io.ReadAll(snappy.NewReader(bytes.NewReader(b)))
}
