package tt

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/meridiandb/meridian/internal/chronytest"
	"github.com/meridiandb/meridian/internal/ntptest"
)

// Against a real chronyd in local mode, which serves the system clock: the
// interval contains the system clock's reading and ε is about half the
// loopback round trip.
func TestNTPChrony(t *testing.T) {
	t.Parallel()
	addr := chronytest.Start(t)
	c, _ := newTestNTP(t, NTPConfig{Servers: []string{addr}})
	// ε is about half the loopback round trip, tens of µs. A loaded
	// machine can delay one exchange by milliseconds: allow a few rounds.
	var eps time.Duration
	for round := 0; round < 5; round++ {
		if err := c.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		eps = checkContainsNow(t, c, 0).Epsilon()
		if eps > 0 && eps < 5*time.Millisecond {
			break
		}
	}
	if eps <= 0 || eps >= 5*time.Millisecond {
		t.Errorf("ε %s against chronyd on loopback, want < 5ms", eps)
	}
	for i := 0; i < 5; i++ {
		checkContainsNow(t, c, 0)
		time.Sleep(10 * time.Millisecond)
	}
	st := serverStatus(t, c, addr)
	if !st.HasSample || st.Excluded || st.Accepted == 0 || st.Rejected != 0 || st.Last.Stratum != 8 || st.Last.RTT <= 0 {
		t.Errorf("status %+v", st)
	}
	t.Logf("chronyd sample: offset %s rtt %s root delay %s root dispersion %s precision %s → ε %s",
		st.Last.Offset, st.Last.RTT, st.Last.RootDelay, st.Last.RootDispersion, st.Last.Precision, st.Last.Err)
}

func TestNTPChronyThree(t *testing.T) {
	t.Parallel()
	addrs := chronytest.StartN(t, 3)
	c, _ := newTestNTP(t, NTPConfig{Servers: addrs})
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkContainsNow(t, c, 0)
	for _, a := range addrs {
		if st := serverStatus(t, c, a); st.Excluded || st.Last.Stratum != 8 {
			t.Errorf("%s: %+v", a, st)
		}
	}
}

// Two real servers out-vote a fake one lying by 500 ms.
func TestNTPChronyOutvotesLiar(t *testing.T) {
	t.Parallel()
	addrs := chronytest.StartN(t, 2)
	liar := ntptest.Start(t, ntptest.Behavior{Offset: 500 * time.Millisecond})
	c, _ := newTestNTP(t, NTPConfig{Servers: append(addrs, liar.Addr())})
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	iv := checkContainsNow(t, c, 0)
	if iv.Epsilon() > 100*time.Millisecond {
		t.Errorf("ε %s: the liar (500 ms off) widened the interval", iv.Epsilon())
	}
	if st := serverStatus(t, c, liar.Addr()); !st.Excluded {
		t.Errorf("liar not excluded: %+v", st)
	}
}

func TestNTPChronyPollLoop(t *testing.T) {
	t.Parallel()
	addr := chronytest.Start(t)
	c, _ := newTestNTP(t, NTPConfig{Servers: []string{addr}, PollInterval: 50 * time.Millisecond})
	checkUnhealthy(t, c) // nothing polled yet
	c.Start()
	waitHealthy(t, c, 3*time.Second)
	checkContainsNow(t, c, 0)
	deadline := time.Now().Add(3 * time.Second)
	for serverStatus(t, c, addr).Accepted < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("poll loop: %+v", serverStatus(t, c, addr))
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkContainsNow(t, c, 0)
	c.Close()
	if err := checkUnhealthy(t, c); !errors.Is(err, errClockClosed) {
		t.Errorf("after Close: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	checkUnhealthy(t, c)
}
