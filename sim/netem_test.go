package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests run the latency simulator over real loopback TCP. They assert
// lower bounds on timing only (a delay is never shorter than the simulated
// latency); "must arrive" checks get a generous deadline and "must not
// arrive" checks a short wait, so a loaded machine slows them down without
// making them fail.

const (
	netemArriveWithin = 5 * time.Second        // must arrive by then
	netemSilentFor    = 400 * time.Millisecond // must not arrive in that time
	netemDialRefused  = 300 * time.Millisecond // how long a refused dial may block
)

// netemTestMatrix has three regions with short one-way latencies:
// a↔b 40 ms, a↔c 30 ms, b↔c 50 ms, and 1 ms within a region.
func netemTestMatrix() Matrix {
	ms := time.Millisecond
	return Matrix{
		Regions: []string{"a", "b", "c"},
		RTT: [][]time.Duration{
			{0, 80 * ms, 60 * ms},
			{80 * ms, 0, 100 * ms},
			{60 * ms, 100 * ms, 0},
		},
		IntraRTT: 2 * ms,
	}
}

// netemFarMatrix has two regions ten seconds apart one way and none
// within a region, so that any cross-region delay would miss the "must
// arrive" deadline by far.
func netemFarMatrix() Matrix {
	return Matrix{
		Regions: []string{"a", "b"},
		RTT:     [][]time.Duration{{0, 20 * time.Second}, {20 * time.Second, 0}},
	}
}

// netemEnv is a simulator plus the address → region map its dialers use.
type netemEnv struct {
	t       *testing.T
	n       *Netem
	mu      sync.Mutex
	regions map[string]string
}

func newNetemEnv(t *testing.T, m Matrix, jitter float64) *netemEnv {
	t.Helper()
	if err := m.Validate(); err != nil {
		t.Fatalf("test matrix: %v", err)
	}
	return &netemEnv{t: t, n: NewNetem(m, jitter), regions: map[string]string{}}
}

func (e *netemEnv) regionOf(addr string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.regions[addr]
}

// listen opens a loopback listener in region, wrapped by the simulator.
func (e *netemEnv) listen(region string) (net.Listener, string) {
	e.t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	addr := raw.Addr().String()
	e.mu.Lock()
	e.regions[addr] = region
	e.mu.Unlock()
	l := e.n.Listener(raw, region)
	e.t.Cleanup(func() { _ = l.Close() })
	return l, addr
}

// dial connects from region to addr through the simulator's dialer,
// giving up after timeout.
func (e *netemEnv) dial(from, addr string, timeout time.Duration) (net.Conn, error) {
	return e.dialWith(e.n.Dialer(from, e.regionOf), addr, timeout)
}

func (e *netemEnv) dialWith(dial func(context.Context, string) (net.Conn, error), addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := dial(ctx, addr)
	if err == nil {
		e.t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

type netemAccepted struct {
	c   net.Conn
	err error
}

// acceptLoop accepts on l until it is closed, handing the connections on
// (they are closed at cleanup).
func (e *netemEnv) acceptLoop(l net.Listener) <-chan netemAccepted {
	ch := make(chan netemAccepted, 16)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				ch <- netemAccepted{err: err}
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			ch <- netemAccepted{c: c}
		}
	}()
	e.t.Cleanup(func() {
		_ = l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ch
}

func (e *netemEnv) nextConn(ch <-chan netemAccepted) net.Conn {
	e.t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			e.t.Fatalf("accept: %v", r.err)
		}
		return r.c
	case <-time.After(netemArriveWithin):
		e.t.Fatalf("no connection accepted within %s", netemArriveWithin)
		return nil
	}
}

// pair connects a client in region from to a fresh listener in region to
// and returns both ends.
func (e *netemEnv) pair(from, to string) (client, server net.Conn) {
	e.t.Helper()
	l, addr := e.listen(to)
	ch := e.acceptLoop(l)
	client, err := e.dial(from, addr, netemArriveWithin)
	if err != nil {
		e.t.Fatalf("dial %s → %s: %v", from, to, err)
	}
	return client, e.nextConn(ch)
}

func netemSend(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	n, err := c.Write([]byte(msg))
	if err != nil || n != len(msg) {
		t.Fatalf("write %q: n=%d err=%v", msg, n, err)
	}
}

// netemRecv reads exactly n bytes, which must arrive in time.
func netemRecv(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(netemArriveWithin))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	buf := make([]byte, n)
	if k, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %d bytes: got %q: %v", n, buf[:k], err)
	}
	return string(buf)
}

// netemTransit writes msg on from, reads it on to and returns how long
// that took.
func netemTransit(t *testing.T, from, to net.Conn, msg string) time.Duration {
	t.Helper()
	start := time.Now()
	netemSend(t, from, msg)
	got := netemRecv(t, to, len(msg))
	took := time.Since(start)
	if got != msg {
		t.Fatalf("received %q, want %q", got, msg)
	}
	return took
}

// netemAtLeast checks a lower bound on a transit time.
func netemAtLeast(t *testing.T, what string, took, min time.Duration) {
	t.Helper()
	if took < min {
		t.Errorf("%s took %s, want at least %s", what, took, min)
	}
}

// netemExpectSilence waits netemSilentFor, then checks that nothing has
// arrived on any of conns and that they are still open.
func netemExpectSilence(t *testing.T, conns ...net.Conn) {
	t.Helper()
	time.Sleep(netemSilentFor)
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		var b [64]byte
		n, err := c.Read(b[:])
		_ = c.SetReadDeadline(time.Time{})
		switch {
		case n > 0:
			t.Errorf("conn %d: %q arrived, want nothing", i, b[:n])
		case !errors.Is(err, os.ErrDeadlineExceeded):
			t.Errorf("conn %d: read: %v, want a timeout on an open connection", i, err)
		}
	}
}

// netemExpectClosed checks that c's reads end in an error other than a
// timeout (the connection was closed, here or by the peer).
func netemExpectClosed(t *testing.T, name string, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(netemArriveWithin))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		return // EOF: the peer closed it
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("%s: still open %s after the partition", name, netemArriveWithin)
	}
}

// netemExpectDialRefused checks that each dial (from region, to address)
// fails with ErrPartitioned; the dials run at once.
func netemExpectDialRefused(t *testing.T, e *netemEnv, dials ...[2]string) {
	t.Helper()
	errs := make([]error, len(dials))
	var wg sync.WaitGroup
	for i, d := range dials {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), netemDialRefused)
			defer cancel()
			c, err := e.n.Dialer(d[0], e.regionOf)(ctx, d[1])
			if err == nil {
				_ = c.Close()
				err = errors.New("succeeded across the cut")
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, d := range dials {
		if !errors.Is(errs[i], ErrPartitioned) {
			t.Errorf("dial from %s to %s: %v, want ErrPartitioned", d[0], e.regionOf(d[1]), errs[i])
		}
	}
}

func netemCheckCuts(t *testing.T, n *Netem, want ...string) {
	t.Helper()
	got := n.Cuts()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Cuts() = %q, want %q", got, want)
	}
}

func TestNetemOneWayFromMatrix(t *testing.T) {
	t.Parallel()
	m := netemTestMatrix()
	n := NewNetem(m, 0)
	if !reflect.DeepEqual(n.Matrix(), m) {
		t.Errorf("Matrix() = %+v, want %+v", n.Matrix(), m)
	}
	for _, c := range []struct {
		from, to string
		want     time.Duration
	}{
		{"a", "b", 40 * time.Millisecond},
		{"b", "a", 40 * time.Millisecond},
		{"a", "c", 30 * time.Millisecond},
		{"c", "b", 50 * time.Millisecond},
		{"a", "a", time.Millisecond},
		{"a", "zz", 0},
		{"zz", "a", 0},
		{"", "b", 0},
	} {
		if got := n.OneWay(c.from, c.to); got != c.want {
			t.Errorf("OneWay(%q, %q) = %s, want %s", c.from, c.to, got, c.want)
		}
	}
}

// Bytes crossing regions take at least the matrix's one-way latency, in
// each direction, on both the dialing and the accepting side.
func TestNetemLatencyAcrossRegions(t *testing.T) {
	t.Parallel()
	e := newNetemEnv(t, netemTestMatrix(), 0)
	for _, p := range []struct{ from, to string }{{"a", "b"}, {"b", "c"}, {"c", "a"}} {
		client, server := e.pair(p.from, p.to)
		want := e.n.OneWay(p.from, p.to)
		netemAtLeast(t, p.from+"→"+p.to, netemTransit(t, client, server, "ping from "+p.from), want)
		netemAtLeast(t, p.to+"→"+p.from, netemTransit(t, server, client, "pong from "+p.to), want)

		// A request and its echoed reply: a full round trip.
		start := time.Now()
		netemSend(t, client, "request")
		netemSend(t, server, netemRecv(t, server, len("request")))
		if got := netemRecv(t, client, len("request")); got != "request" {
			t.Fatalf("echo: %q", got)
		}
		netemAtLeast(t, p.from+"↔"+p.to+" round trip", time.Since(start), 2*want)
	}
}

// Traffic within a region is not delayed by the latency between regions;
// traffic between them is.
func TestNetemSameRegionNotDelayed(t *testing.T) {
	t.Parallel()
	e := newNetemEnv(t, netemFarMatrix(), 0.5)
	client, server := e.pair("a", "a")
	netemTransit(t, client, server, "hello, neighbour")
	netemTransit(t, server, client, "hello back")

	far, farServer := e.pair("a", "b")
	netemSend(t, far, "to b")
	netemSend(t, farServer, "to a")
	netemExpectSilence(t, farServer, far)
}

// With jitter on, writes still arrive in order, and no sooner than the
// base latency.
func TestNetemJitterKeepsOrder(t *testing.T) {
	t.Parallel()
	e := newNetemEnv(t, netemTestMatrix(), 1)
	client, server := e.pair("a", "b")
	const count = 300
	for _, dir := range []struct {
		name     string
		from, to net.Conn
	}{{"a→b", client, server}, {"b→a", server, client}} {
		var want strings.Builder
		start := time.Now()
		for i := 0; i < count; i++ {
			msg := fmt.Sprintf("%04d|", i)
			want.WriteString(msg)
			netemSend(t, dir.from, msg)
		}
		first := netemRecv(t, dir.to, 5)
		netemAtLeast(t, dir.name+" first write", time.Since(start), 40*time.Millisecond)
		if got := first + netemRecv(t, dir.to, want.Len()-5); got != want.String() {
			t.Errorf("%s: stream reordered or altered:\n got %.80q…\nwant %.80q…", dir.name, got, want.String())
		}
	}
}

// A client that does not announce a region (outside the simulation)
// passes the listener undelayed, with its first bytes intact, and is not
// cut by partitions.
func TestNetemPlainClientPassesThrough(t *testing.T) {
	t.Parallel()
	e := newNetemEnv(t, netemFarMatrix(), 0)
	l, addr := e.listen("b")
	ch := e.acceptLoop(l)
	var d net.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), netemArriveWithin)
	defer cancel()
	client, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	netemSend(t, client, "GET / HTTP/1.0\r\n\r\n")
	server := e.nextConn(ch)
	if got := netemRecv(t, server, len("GET / HTTP/1.0\r\n\r\n")); got != "GET / HTTP/1.0\r\n\r\n" {
		t.Fatalf("server read %q", got)
	}
	netemTransit(t, server, client, "HTTP/1.0 200 OK\r\n")

	if err := e.n.Partition("a", "b", false); err != nil {
		t.Fatal(err)
	}
	netemTransit(t, client, server, "still here")
	netemTransit(t, server, client, "me too")
}

// A two-way partition closes live connections across the cut, refuses
// new ones both ways and leaves other links alone; Heal lets new
// connections through.
func TestNetemPartitionTwoWay(t *testing.T) {
	t.Parallel()
	e := newNetemEnv(t, netemTestMatrix(), 0)
	abC, abS := e.pair("a", "b")
	baC, baS := e.pair("b", "a")
	acC, acS := e.pair("a", "c")
	cbC, cbS := e.pair("c", "b")
	aaC, aaS := e.pair("a", "a")
	_, addrA := e.listen("a")
	_, addrB := e.listen("b")

	if err := e.n.Partition("a", "b", false); err != nil {
		t.Fatal(err)
	}
	netemCheckCuts(t, e.n, "a→b", "b→a")

	netemExpectClosed(t, "a→b client", abC)
	netemExpectClosed(t, "a→b server", abS)
	netemExpectClosed(t, "b→a client", baC)
	netemExpectClosed(t, "b→a server", baS)

	for _, p := range []struct {
		name string
		c, s net.Conn
	}{{"a↔c", acC, acS}, {"c↔b", cbC, cbS}, {"a↔a", aaC, aaS}} {
		netemTransit(t, p.c, p.s, "across "+p.name)
		netemTransit(t, p.s, p.c, "back across "+p.name)
	}

	netemExpectDialRefused(t, e, [2]string{"a", addrB}, [2]string{"b", addrA})
	c, s := e.pair("c", "a")
	netemTransit(t, c, s, "new c→a")

	e.n.Heal()
	netemCheckCuts(t, e.n)
	c, s = e.pair("a", "b")
	netemAtLeast(t, "a→b after heal", netemTransit(t, c, s, "healed"), 40*time.Millisecond)
	netemAtLeast(t, "b→a after heal", netemTransit(t, s, c, "healed too"), 40*time.Millisecond)
	c, s = e.pair("b", "a")
	netemTransit(t, c, s, "healed, b dials")
}

// The listener checks the cut too: a dialer that does not know the
// remote's region gets through TCP, but the listener drops the connection
// once the preamble names a region across the cut.
func TestNetemListenerRefusesAcrossCut(t *testing.T) {
	t.Parallel()
	e := newNetemEnv(t, netemTestMatrix(), 0)
	l, addr := e.listen("b")
	ch := e.acceptLoop(l)
	blind := e.n.Dialer("a", func(string) string { return "" })

	if err := e.n.Partition("a", "b", false); err != nil {
		t.Fatal(err)
	}
	c, err := e.dialWith(blind, addr, netemArriveWithin)
	if err != nil {
		t.Fatalf("blind dial: %v", err)
	}
	netemExpectClosed(t, "blind client across the cut", c)
	select {
	case r := <-ch:
		t.Fatalf("listener handed on a connection from across the cut: %v %v", r.c, r.err)
	default:
	}

	e.n.Heal()
	c, err = e.dialWith(blind, addr, netemArriveWithin)
	if err != nil {
		t.Fatalf("blind dial after heal: %v", err)
	}
	s := e.nextConn(ch)
	netemTransit(t, c, s, "blind but healed")
	// The accepting side knows the dialer's region from the preamble.
	netemAtLeast(t, "b→a on the accepted side", netemTransit(t, s, c, "reply"), 40*time.Millisecond)
}

// A one-way cut loses what a writes to b, keeps the connection open and
// what b writes to a flowing, and refuses new connections; after Heal new
// writes from a arrive (the lost bytes do not).
func TestNetemPartitionOneWay(t *testing.T) {
	t.Parallel()
	e := newNetemEnv(t, netemTestMatrix(), 0)
	abC, abS := e.pair("a", "b") // dialed from a
	baC, baS := e.pair("b", "a") // dialed from b
	_, addrA := e.listen("a")
	_, addrB := e.listen("b")

	if err := e.n.Partition("a", "b", true); err != nil {
		t.Fatal(err)
	}
	netemCheckCuts(t, e.n, "a→b")

	netemSend(t, abC, "held from the dialer")
	netemSend(t, baS, "held from the listener")
	netemExpectSilence(t, abS, baC)

	netemAtLeast(t, "b→a (dialer in a)", netemTransit(t, abS, abC, "b still talks"), 40*time.Millisecond)
	netemAtLeast(t, "b→a (dialer in b)", netemTransit(t, baC, baS, "b still talks"), 40*time.Millisecond)

	netemExpectDialRefused(t, e, [2]string{"a", addrB}, [2]string{"b", addrA})

	e.n.Heal()
	netemCheckCuts(t, e.n)
	// What the cut held back arrives once it heals, as TCP's
	// retransmissions would bring it, before anything written later.
	if got := netemRecv(t, abS, len("held from the dialer")); got != "held from the dialer" {
		t.Errorf("after heal the dialer's held bytes arrived as %q", got)
	}
	if got := netemRecv(t, baC, len("held from the listener")); got != "held from the listener" {
		t.Errorf("after heal the listener's held bytes arrived as %q", got)
	}
	netemAtLeast(t, "a→b after heal (dialer in a)", netemTransit(t, abC, abS, "after"), 40*time.Millisecond)
	netemAtLeast(t, "a→b after heal (dialer in b)", netemTransit(t, baS, baC, "after"), 40*time.Millisecond)
	c, s := e.pair("a", "b")
	netemTransit(t, c, s, "new after heal")
}

// Unknown regions are rejected and change nothing.
func TestNetemUnknownRegions(t *testing.T) {
	t.Parallel()
	n := NewNetem(netemTestMatrix(), 0)
	for _, p := range [][2]string{{"a", "zz"}, {"zz", "a"}, {"", "b"}, {"zz", "zz"}} {
		for _, oneWay := range []bool{false, true} {
			if err := n.Partition(p[0], p[1], oneWay); err == nil {
				t.Errorf("Partition(%q, %q, %v) = nil, want an error", p[0], p[1], oneWay)
			}
		}
		if err := n.Slow(p[0], p[1], time.Second); err == nil {
			t.Errorf("Slow(%q, %q, 1s) = nil, want an error", p[0], p[1])
		}
	}
	netemCheckCuts(t, n)
	if len(n.extra) != 0 {
		t.Errorf("rejected Slow calls left delays %v", n.extra)
	}
}

// Slow adds its delay both ways on live connections of that pair only,
// and Heal removes it.
func TestNetemSlow(t *testing.T) {
	t.Parallel()
	e := newNetemEnv(t, netemTestMatrix(), 0)
	for _, d := range []time.Duration{-time.Nanosecond, -time.Second, time.Minute + time.Nanosecond, time.Hour} {
		if err := e.n.Slow("a", "b", d); err == nil {
			t.Errorf("Slow(a, b, %s) = nil, want an error", d)
		}
	}
	for _, d := range []time.Duration{0, time.Minute} {
		if err := e.n.Slow("a", "b", d); err != nil {
			t.Errorf("Slow(a, b, %s): %v", d, err)
		}
	}
	e.n.Heal()

	abC, abS := e.pair("a", "b")
	acC, acS := e.pair("a", "c")
	const added = 100 * time.Millisecond
	if err := e.n.Slow("a", "b", added); err != nil {
		t.Fatal(err)
	}
	netemAtLeast(t, "slowed a→b", netemTransit(t, abC, abS, "slow"), 40*time.Millisecond+added)
	netemAtLeast(t, "slowed b→a", netemTransit(t, abS, abC, "slow back"), 40*time.Millisecond+added)

	// The pair given the other way round replaces the delay; other pairs
	// are not slowed.
	if err := e.n.Slow("b", "a", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	netemAtLeast(t, "a→c", netemTransit(t, acC, acS, "not slowed"), 30*time.Millisecond)
	netemTransit(t, acS, acC, "not slowed either")

	e.n.Heal()
	netemAtLeast(t, "a→b after heal", netemTransit(t, abC, abS, "healed"), 40*time.Millisecond)
	netemAtLeast(t, "b→a after heal", netemTransit(t, abS, abC, "healed too"), 40*time.Millisecond)
}

// A lost write arrives a retransmission timeout late, on top of the
// latency, also on links without latency; Heal clears the loss.
func TestNetemLoss(t *testing.T) {
	t.Parallel()
	e := newNetemEnv(t, netemTestMatrix(), 0)
	for _, p := range []float64{-0.1, -1, 1, 1.5, math.Inf(1), math.Inf(-1)} {
		if err := e.n.SetLoss(p); err == nil {
			t.Errorf("SetLoss(%g) = nil, want an error", p)
		}
	}
	if got := e.n.Loss(); got != 0 {
		t.Errorf("Loss() = %g after rejected calls, want 0", got)
	}
	for _, p := range []float64{0, 0.5} {
		if err := e.n.SetLoss(p); err != nil {
			t.Errorf("SetLoss(%g): %v", p, err)
		}
		if got := e.n.Loss(); got != p {
			t.Errorf("Loss() = %g, want %g", got, p)
		}
	}
	e.n.Heal()
	if got := e.n.Loss(); got != 0 {
		t.Errorf("Loss() = %g after Heal, want 0", got)
	}

	abC, abS := e.pair("a", "b")
	aaC, aaS := e.pair("a", "a")
	// Loss 1 is refused; the largest float64 below 1 loses every write
	// but with probability 2⁻⁵³ (rand.Float64 is a multiple of 2⁻⁵³ below 1).
	if err := e.n.SetLoss(math.Nextafter(1, 0)); err != nil {
		t.Fatal(err)
	}
	rto := e.n.rto
	netemAtLeast(t, "lossy a→b", netemTransit(t, abC, abS, "lossy"), 40*time.Millisecond+rto)
	netemAtLeast(t, "lossy b→a", netemTransit(t, abS, abC, "lossy back"), 40*time.Millisecond+rto)
	netemAtLeast(t, "lossy a→a", netemTransit(t, aaC, aaS, "lossy nearby"), rto)

	e.n.Heal()
	if got := e.n.Loss(); got != 0 {
		t.Errorf("Loss() = %g after Heal, want 0", got)
	}
	netemTransit(t, abC, abS, "no loss")
}

// A write on a closed connection fails (Write once chose at random
// between a queue with room and the closed channel), also on connections
// a two-way Partition closed.
func TestNetemWriteAfterClose(t *testing.T) {
	e := newNetemEnv(t, netemTestMatrix(), 0)
	c, _ := e.pair("a", "b")
	_ = c.Close()
	ok := 0
	for i := 0; i < 20; i++ {
		if _, err := c.Write([]byte("x")); err == nil {
			ok++
		}
	}
	if ok > 0 {
		t.Errorf("%d of 20 writes after Close succeeded, want all to fail", ok)
	}
}

// SetLoss refuses NaN (p < 0 || p >= 1 is false for it).
func TestNetemSetLossNaN(t *testing.T) {
	n := NewNetem(netemTestMatrix(), 0)
	if err := n.SetLoss(math.NaN()); err == nil {
		t.Errorf("SetLoss(NaN) = nil (Loss() = %g), want an error", n.Loss())
	}
}

// A dial blocked by a partition connects once it heals, as a
// retransmitted SYN would (it used to wait out its context: with gRPC's
// 20 s connect deadline, links came back up to 20 s after Heal).
func TestNetemHealReleasesPendingDial(t *testing.T) {
	e := newNetemEnv(t, netemTestMatrix(), 0)
	l, addr := e.listen("b")
	e.acceptLoop(l)
	if err := e.n.Partition("a", "b", false); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.dial("a", addr, 3*time.Second)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	e.n.Heal()
	if err := <-done; err != nil {
		t.Errorf("dial pending across the cut failed after Heal: %v", err)
	}
}

// A client that connects and stays silent (a TCP health check, a port
// scan) holds up no later connection: preambles are read concurrently,
// not inside Accept, where it stalled everyone for up to 5 s.
func TestNetemAcceptHeadOfLine(t *testing.T) {
	e := newNetemEnv(t, netemTestMatrix(), 0)
	l, addr := e.listen("b")
	ch := e.acceptLoop(l)
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	time.Sleep(50 * time.Millisecond) // let Accept take the silent one first
	if _, err := e.dial("a", addr, netemArriveWithin); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(4 * time.Second) // the silent one is given 5 s
	for {
		select {
		case r := <-ch:
			if _, ok := r.c.(*netemConn); ok {
				return
			}
		case <-deadline:
			t.Fatal("the simulated client was not accepted within 4 s: Accept is stuck on the silent one")
		}
	}
}
