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

// A snappy.Reader holds ~140 KiB of buffers: readers are pooled, and one
// goes back to the pool when its message has been read to the end (the
// small wrapper forgets it then, so a late Read cannot reach a reader that
// another message now uses).
var readers = sync.Pool{New: func() any { return snappy.NewReader(nil) }}

func (snappyCompressor) Decompress(r io.Reader) (io.Reader, error) {
	sr := readers.Get().(*snappy.Reader)
	sr.Reset(r)
	return &pooledReader{r: sr}, nil
}

type pooledReader struct{ r *snappy.Reader }

func (p *pooledReader) Read(b []byte) (int, error) {
	if p.r == nil {
		return 0, io.EOF
	}
	n, err := p.r.Read(b)
	if err == io.EOF {
		p.r.Reset(nil)
		readers.Put(p.r)
		p.r = nil
	}
	return n, err
}

// decompressAll is used by tests to check round trips.
func decompressAll(b []byte) ([]byte, error) {
	return io.ReadAll(snappy.NewReader(bytes.NewReader(b)))
}
