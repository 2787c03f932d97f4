package ntptest

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/beevik/ntp"
)

func query(t *testing.T, s *Server) (*ntp.Response, error) {
	t.Helper()
	return ntp.QueryWithOptions("127.0.0.1", ntp.QueryOptions{Port: s.Port(), Timeout: 300 * time.Millisecond})
}

func TestHealthy(t *testing.T) {
	s := Start(t, Behavior{})
	r, err := query(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if r.Stratum != 2 || r.Leap != ntp.LeapNoWarning || r.Version != 4 || r.Precision != 119*time.Nanosecond {
		t.Errorf("response %+v", r)
	}
	// Same clock on both ends: the measured offset is only the path's
	// asymmetry, never more than half the round trip (however slow a
	// loaded machine makes that).
	if bound := r.RTT/2 + time.Microsecond; r.ClockOffset > bound || r.ClockOffset < -bound || r.RTT <= 0 {
		t.Errorf("offset %s rtt %s", r.ClockOffset, r.RTT)
	}
	if s.Requests() != 1 || s.Replies() != 1 || s.Dropped() != 0 {
		t.Errorf("counters %d %d %d", s.Requests(), s.Replies(), s.Dropped())
	}
}

func TestOffsetAndRoot(t *testing.T) {
	s := Start(t, Behavior{})
	s.Set(func(b *Behavior) {
		b.Offset = -1500 * time.Millisecond
		b.RootDelay = 3 * time.Millisecond
		b.RootDispersion = 250 * time.Microsecond
		b.Precision = -10
		b.Stratum = 5
	})
	if got := s.Behavior().Offset; got != -1500*time.Millisecond {
		t.Errorf("Behavior().Offset = %s", got)
	}
	r, err := query(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if d, bound := r.ClockOffset+1500*time.Millisecond, r.RTT/2+time.Microsecond; d > bound || d < -bound {
		t.Errorf("offset %s, want -1.5s", r.ClockOffset)
	}
	// 16.16 rounds up: within one unit (15.3 µs).
	if d := r.RootDelay - 3*time.Millisecond; d < 0 || d > 16*time.Microsecond {
		t.Errorf("root delay %s", r.RootDelay)
	}
	if d := r.RootDispersion - 250*time.Microsecond; d < 0 || d > 16*time.Microsecond {
		t.Errorf("root dispersion %s", r.RootDispersion)
	}
	if r.Stratum != 5 || r.Precision != time.Second>>10 {
		t.Errorf("stratum %d precision %s", r.Stratum, r.Precision)
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name  string
		b     Behavior
		check func(t *testing.T, r *ntp.Response, err error)
	}{
		{"kiss", Behavior{KissCode: "RATE"}, func(t *testing.T, r *ntp.Response, err error) {
			if err != nil {
				t.Fatal(err)
			}
			if r.Stratum != 0 || r.KissCode != "RATE" || !r.IsKissOfDeath() || !errors.Is(r.Validate(), ntp.ErrKissOfDeath) {
				t.Errorf("stratum %d kiss %q validate %v", r.Stratum, r.KissCode, r.Validate())
			}
		}},
		{"stratum 16", Behavior{Stratum: 16}, func(t *testing.T, r *ntp.Response, err error) {
			if err != nil || !errors.Is(r.Validate(), ntp.ErrInvalidStratum) {
				t.Errorf("%v %v", err, r.Validate())
			}
		}},
		{"leap alarm", Behavior{Leap: 3}, func(t *testing.T, r *ntp.Response, err error) {
			if err != nil || r.Leap != ntp.LeapNotInSync || !errors.Is(r.Validate(), ntp.ErrInvalidLeapSecond) {
				t.Errorf("%v %v", err, r.Validate())
			}
		}},
		{"delay", Behavior{Delay: 100 * time.Millisecond}, func(t *testing.T, r *ntp.Response, err error) {
			if err != nil {
				t.Fatal(err)
			}
			// The delay shows as round trip, split evenly: no offset
			// beyond what the rest of the round trip can skew.
			bound := (r.RTT-100*time.Millisecond)/2 + time.Microsecond
			if r.RTT < 100*time.Millisecond || r.ClockOffset > bound || r.ClockOffset < -bound {
				t.Errorf("rtt %s offset %s", r.RTT, r.ClockOffset)
			}
		}},
		{"drop", Behavior{Drop: true}, func(t *testing.T, r *ntp.Response, err error) {
			if err == nil {
				t.Errorf("answer from a dropping server: %+v", r)
			}
		}},
		{"garbage", Behavior{Garbage: true}, func(t *testing.T, r *ntp.Response, err error) {
			if err == nil {
				t.Errorf("garbage accepted: %+v", r)
			}
		}},
		{"truncated", Behavior{TruncateTo: 30}, func(t *testing.T, r *ntp.Response, err error) {
			if err == nil {
				t.Errorf("truncated packet accepted: %+v", r)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Start(t, tc.b)
			r, err := query(t, s)
			tc.check(t, r, err)
			if s.Requests() != 1 {
				t.Errorf("requests %d", s.Requests())
			}
			if tc.b.Drop != (s.Dropped() == 1) || tc.b.Drop == (s.Replies() == 1) {
				t.Errorf("replies %d dropped %d", s.Replies(), s.Dropped())
			}
		})
	}
}

func TestNotARequest(t *testing.T) {
	s := Start(t, Behavior{})
	conn, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A server-mode packet (mode 4) and a short one are ignored.
	pkt := make([]byte, PacketSize)
	pkt[0] = 4<<3 | 4
	for _, p := range [][]byte{pkt, {0x23}} {
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.Requests() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if s.Requests() != 2 || s.Dropped() != 2 || s.Replies() != 0 {
		t.Errorf("counters %d %d %d", s.Requests(), s.Replies(), s.Dropped())
	}
}

func TestBuildResponse(t *testing.T) {
	req := make([]byte, PacketSize)
	req[0] = 0<<6 | 3<<3 | 3 // NTPv3 client
	binary.BigEndian.PutUint64(req[40:], 0x0123456789abcdef)
	recv := time.Date(2026, 11, 25, 12, 0, 0, 500_000_000, time.UTC)
	xmit := recv.Add(time.Microsecond)
	p := BuildResponse(req, Behavior{Offset: time.Second, Leap: 1}, recv, xmit)
	if len(p) != PacketSize {
		t.Fatalf("len %d", len(p))
	}
	if p[0] != 1<<6|3<<3|4 {
		t.Errorf("LI/VN/mode %08b", p[0])
	}
	if got := binary.BigEndian.Uint64(p[24:]); got != 0x0123456789abcdef {
		t.Errorf("origin %x does not echo the request's transmit", got)
	}
	if got, want := binary.BigEndian.Uint64(p[32:]), Timestamp(recv.Add(time.Second)); got != want {
		t.Errorf("receive %x, want %x", got, want)
	}
	// 2026-11-25T12:00:01.5Z: seconds since 1900 and half a second.
	if got := binary.BigEndian.Uint64(p[32:]); got>>32 != uint64(recv.Unix()+1+2208988800) || uint32(got) != 1<<31 {
		t.Errorf("receive %x", got)
	}
	if got, want := binary.BigEndian.Uint64(p[40:]), Timestamp(xmit.Add(time.Second)); got != want {
		t.Errorf("transmit %x, want %x", got, want)
	}
	k := BuildResponse(req, Behavior{KissCode: "DENY"}, recv, xmit)
	if k[1] != 0 || string(k[12:16]) != "DENY" {
		t.Errorf("kiss: stratum %d refid %q", k[1], k[12:16])
	}
}

func TestConcurrentSet(t *testing.T) {
	s := Start(t, Behavior{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			s.Set(func(b *Behavior) { b.Offset = time.Duration(i) * time.Millisecond })
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			if _, err := query(t, s); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	s.Close()
	s.Close()
	if _, err := query(t, s); err == nil {
		t.Error("closed server answered")
	}
}
