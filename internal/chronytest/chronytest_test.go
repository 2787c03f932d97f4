package chronytest

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/beevik/ntp"
)

func query(addr string) (*ntp.Response, error) {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(portStr)
	return ntp.QueryWithOptions("127.0.0.1", ntp.QueryOptions{Port: port, Timeout: 300 * time.Millisecond})
}

func TestStart(t *testing.T) {
	var addr string
	t.Run("server", func(t *testing.T) {
		addr = Start(t)
		r, err := query(addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Validate(); err != nil {
			t.Fatal(err)
		}
		if r.Stratum != 8 {
			t.Errorf("stratum %d, want 8", r.Stratum)
		}
		// Local mode serves the system clock.
		if r.ClockOffset > 10*time.Millisecond || r.ClockOffset < -10*time.Millisecond {
			t.Errorf("offset %s", r.ClockOffset)
		}
		t.Logf("%s: offset %s rtt %s root delay %s root dispersion %s precision %s",
			addr, r.ClockOffset, r.RTT, r.RootDelay, r.RootDispersion, r.Precision)
	})
	if addr == "" {
		t.Skip("no chronyd")
	}
	// The subtest's cleanup stopped the server.
	if _, err := query(addr); err == nil {
		t.Errorf("chronyd on %s still answers after its test ended", addr)
	}
}

func TestStartN(t *testing.T) {
	addrs := StartN(t, 3)
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("address %s returned twice", a)
		}
		seen[a] = true
		if _, err := query(a); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
}
