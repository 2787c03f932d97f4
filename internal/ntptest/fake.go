// Package ntptest provides a fake NTP server for fault-injection tests: a real
// UDP socket on 127.0.0.1 answering NTPv4 client requests with packets built
// by hand, whose answers can be bent at run time (offset, stratum, leap
// indicator, kiss-of-death, delay, root delay and dispersion, loss, garbage,
// truncation).
//
// It is a non-test package so that the tests of every package can use it.
// It never imports the code under test.
package ntptest

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// PacketSize is the size of an NTPv4 header without extensions.
const PacketSize = 48

// Behavior is how the fake server answers. The zero value is a healthy
// stratum-2 server telling the local system time.
type Behavior struct {
	// Offset is added to every time the server reports (receive, transmit
	// and reference timestamps): a positive offset makes the server's clock
	// run ahead of the local one.
	Offset time.Duration
	// Stratum reported; 0 means the default, 2. Use KissCode for stratum 0.
	Stratum uint8
	// Leap is the leap indicator (0 no warning, 1 +1 s, 2 -1 s, 3 alarm:
	// not synchronized).
	Leap uint8
	// KissCode, when non-empty, makes the server send a kiss-of-death:
	// stratum 0 and the code (up to 4 ASCII characters, e.g. "RATE",
	// "DENY") in the reference ID.
	KissCode string
	// Delay holds the answer back: half of it before the receive timestamp
	// is taken and half after the transmit timestamp, so the client measures
	// a round trip about Delay longer (a slow, symmetric network path)
	// rather than a long server processing time.
	Delay time.Duration
	// RootDelay and RootDispersion are reported in the 16.16 short format.
	RootDelay      time.Duration
	RootDispersion time.Duration
	// Precision is the log2 of the clock precision in seconds; 0 means the
	// default, -23 (about 119 ns).
	Precision int8
	// Drop makes the server ignore every request (server loss).
	Drop bool
	// Garbage makes the server answer with PacketSize random bytes.
	Garbage bool
	// TruncateTo, when in [1, PacketSize), makes the server send only the
	// first TruncateTo bytes of a well-formed answer.
	TruncateTo int
}

// Server is a fake NTP server. Its methods are safe for concurrent use.
type Server struct {
	conn *net.UDPConn

	mu  sync.Mutex
	b   Behavior
	rng *rand.Rand

	requests atomic.Uint64
	replies  atomic.Uint64
	dropped  atomic.Uint64

	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    atomic.Bool
}

// NewServer starts a fake server on 127.0.0.1 with an ephemeral port.
func NewServer(b Behavior) (*Server, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	s := &Server{conn: conn, b: b, rng: rand.New(rand.NewPCG(1, 2))}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Start starts a fake server and closes it when the test ends.
func Start(t testing.TB, b Behavior) *Server {
	t.Helper()
	s, err := NewServer(b)
	if err != nil {
		t.Fatalf("ntptest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Addr returns the server's address, "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// Port returns the server's UDP port.
func (s *Server) Port() int { return s.conn.LocalAddr().(*net.UDPAddr).Port }

// Set changes the behavior for the requests that arrive from now on.
func (s *Server) Set(f func(*Behavior)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.b)
}

// Behavior returns a copy of the current behavior.
func (s *Server) Behavior() Behavior {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b
}

// Requests returns how many datagrams the server received.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Replies returns how many answers (of any kind, garbage included) it sent.
func (s *Server) Replies() uint64 { return s.replies.Load() }

// Dropped returns how many requests it ignored (Drop, or not a client
// request).
func (s *Server) Dropped() uint64 { return s.dropped.Load() }

// Close stops the server and waits for pending (delayed) answers to finish.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		_ = s.conn.Close()
		s.wg.Wait()
	})
}

func (s *Server) serve() {
	defer s.wg.Done()
	buf := make([]byte, 1024)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.requests.Add(1)
		s.mu.Lock()
		b := s.b
		var garbage []byte
		if b.Garbage {
			garbage = make([]byte, PacketSize)
			for i := range garbage {
				garbage[i] = byte(s.rng.Uint32())
			}
		}
		s.mu.Unlock()
		// Only NTP client requests (mode 3) of full size get an answer.
		if b.Drop || n < PacketSize || buf[0]&0x7 != 3 {
			s.dropped.Add(1)
			continue
		}
		req := make([]byte, PacketSize)
		copy(req, buf[:PacketSize])
		if b.Delay > 0 {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.answer(req, from, b, garbage)
			}()
			continue
		}
		s.answer(req, from, b, garbage)
	}
}

func (s *Server) answer(req []byte, to *net.UDPAddr, b Behavior, garbage []byte) {
	if b.Delay > 0 {
		time.Sleep(b.Delay / 2)
	}
	var out []byte
	if garbage != nil {
		out = garbage
	} else {
		out = BuildResponse(req, b, time.Now(), time.Now())
		if b.TruncateTo > 0 && b.TruncateTo < len(out) {
			out = out[:b.TruncateTo]
		}
	}
	if b.Delay > 0 {
		time.Sleep(b.Delay - b.Delay/2)
	}
	if s.closed.Load() {
		return
	}
	// Counted before sending so that a client holding the answer sees it
	// counted.
	s.replies.Add(1)
	if _, err := s.conn.WriteToUDP(out, to); err != nil {
		s.replies.Add(^uint64(0))
	}
}

// BuildResponse builds the 48-byte NTPv4 server answer to req (a client
// request of at least 48 bytes) as a server whose clock reads local+Offset:
// recv and xmit are the local times the request arrived and the answer
// leaves. The origin timestamp echoes the request's transmit timestamp
// (bytes 40-47), as clients check.
func BuildResponse(req []byte, b Behavior, recv, xmit time.Time) []byte {
	p := make([]byte, PacketSize)
	vn := (req[0] >> 3) & 0x7
	if vn < 1 || vn > 4 {
		vn = 4
	}
	p[0] = (b.Leap&0x3)<<6 | vn<<3 | 4 // mode 4: server
	stratum := b.Stratum
	if stratum == 0 {
		stratum = 2
	}
	refID := [4]byte{127, 0, 0, 1}
	if b.KissCode != "" {
		stratum = 0
		refID = [4]byte{' ', ' ', ' ', ' '}
		copy(refID[:], b.KissCode)
	}
	p[1] = stratum
	p[2] = req[2] // poll: echo the client's
	if p[2] == 0 {
		p[2] = 6
	}
	prec := b.Precision
	if prec == 0 {
		prec = -23
	}
	p[3] = byte(prec)
	binary.BigEndian.PutUint32(p[4:8], shortFormat(b.RootDelay))
	binary.BigEndian.PutUint32(p[8:12], shortFormat(b.RootDispersion))
	copy(p[12:16], refID[:])
	recv = recv.Add(b.Offset)
	xmit = xmit.Add(b.Offset)
	binary.BigEndian.PutUint64(p[16:24], Timestamp(xmit.Add(-time.Second))) // reference: last set a second ago
	copy(p[24:32], req[40:48])                                              // origin = client's transmit
	binary.BigEndian.PutUint64(p[32:40], Timestamp(recv))
	binary.BigEndian.PutUint64(p[40:48], Timestamp(xmit))
	return p
}

// ntpEpochOffset is the number of seconds from 1900-01-01 (NTP era 0) to
// 1970-01-01 (Unix).
const ntpEpochOffset = 2208988800

// Timestamp encodes t in the NTP 32.32 fixed-point format of era 0
// (seconds since 1900, wrapping in 2036).
func Timestamp(t time.Time) uint64 {
	sec := uint64(t.Unix() + ntpEpochOffset)
	frac := (uint64(t.Nanosecond())<<32 + 5e8) / 1e9
	return sec<<32 + frac
}

// shortFormat encodes a non-negative duration in the NTP 16.16 short format,
// rounding up so that the client never reads a smaller value.
func shortFormat(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	v := math.Ceil(d.Seconds() * 65536)
	if v >= math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}
