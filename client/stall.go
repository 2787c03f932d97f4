package client

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Stall detection: a node that stops answering without closing its
// connections (a stopped process, a frozen VM) would hold every call sent
// to it until the caller's deadline, though its groups elect other leaders
// within a lease. While calls to a node have been waiting longer than
// stallProbeAfter, the client asks the node's gRPC health service, on the
// same connection, whether it is there; a node that does not answer within
// stallProbeTimeout is taken for stalled: the calls waiting on it fail
// Unavailable (so a request retries elsewhere, and a commit asks again
// with the same transaction ID, which the coordinator group answers from
// its outcome), and requests avoid it for stallAvoid. A node that answers
// (even NOT_SERVING) is alive, and a slow call there goes on waiting.
const (
	stallProbeAfter   = 500 * time.Millisecond
	stallProbeTimeout = 500 * time.Millisecond
	stallAvoid        = 5 * time.Second
)

var errStalled = errors.New("meridian: the node stopped answering")

// stallWatch watches the calls in flight to one node.
type stallWatch struct {
	c    *Client
	addr string
	conn *grpc.ClientConn

	mu      sync.Mutex
	calls   map[uint64]inflight
	next    uint64
	running bool
}

type inflight struct {
	start  time.Time
	cancel context.CancelCauseFunc
}

// watch returns the stall watch of the node at addr.
func (c *Client) watch(addr string, conn *grpc.ClientConn) *stallWatch {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.watches[addr]
	if w == nil || w.conn != conn {
		w = &stallWatch{c: c, addr: addr, conn: conn, calls: map[uint64]inflight{}}
		c.watches[addr] = w
	}
	return w
}

// begin registers a call (cancel ends it with errStalled) and returns its
// handle for end.
func (w *stallWatch) begin(cancel context.CancelCauseFunc) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	w.calls[w.next] = inflight{start: time.Now(), cancel: cancel}
	if !w.running {
		w.running = true
		go w.loop()
	}
	return w.next
}

func (w *stallWatch) end(id uint64) {
	w.mu.Lock()
	delete(w.calls, id)
	w.mu.Unlock()
}

// loop probes the node while some call has waited longer than
// stallProbeAfter, and stops when no call is in flight.
func (w *stallWatch) loop() {
	t := time.NewTicker(stallProbeAfter / 4)
	defer t.Stop()
	for range t.C {
		w.mu.Lock()
		if len(w.calls) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		oldest := time.Now()
		for _, c := range w.calls {
			if c.start.Before(oldest) {
				oldest = c.start
			}
		}
		w.mu.Unlock()
		if time.Since(oldest) < stallProbeAfter {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), stallProbeTimeout)
		_, err := healthpb.NewHealthClient(w.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil {
			continue
		}
		w.c.avoid(w.addr)
		w.mu.Lock()
		for id, c := range w.calls {
			if time.Since(c.start) >= stallProbeAfter {
				c.cancel(errStalled)
				delete(w.calls, id)
			}
		}
		w.mu.Unlock()
	}
}

// avoid keeps requests away from addr for stallAvoid, and forgets it as a
// leader.
func (c *Client) avoid(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stalled[addr] = time.Now()
	for g, n := range c.leaders {
		if c.addrs[n] == addr {
			delete(c.leaders, g)
		}
	}
}

// avoided reports whether addr stopped answering lately. Callers hold mu.
func (c *Client) avoided(addr string) bool {
	at, ok := c.stalled[addr]
	return ok && time.Since(at) < stallAvoid
}
