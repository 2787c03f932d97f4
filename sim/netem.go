package sim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"time"
)

// Netem makes loopback behave like a WAN: connections dialed with its
// Dialer and accepted through its Listener carry one-way latency from the
// latency matrix (half the round trip between the two ends' regions, plus
// per-link jitter) in each direction, lose packets on request (a lost
// packet costs a retransmission timeout, as with TCP), and can be
// partitioned (connections across a cut are closed and new ones refused;
// a one-way cut holds back what one side writes to the other until it
// heals, as a network losing every packet one way does while TCP keeps
// retransmitting, and leaves the connection open), and slowed further
// between two regions. Changes take effect at once, on live connections
// too. Closing a connection discards what it still had in flight.
//
// The dialing side announces its region in a short preamble; the listener
// reads it before handing the connection on, so each side knows whom it
// talks to. Connections without the preamble (a client outside the
// simulation) pass undelayed.
type Netem struct {
	mu     sync.RWMutex
	m      Matrix
	jitter float64
	loss   float64
	rto    time.Duration
	cut    map[[2]string]bool // from region → to region
	extra  map[[2]string]time.Duration
	conns  map[*netemConn]struct{}
	// healed is closed, and replaced, whenever cuts are lifted: what
	// waits for a cut to heal waits on it.
	healed chan struct{}
	rng    *rand.Rand
	rngMu  sync.Mutex
}

// NewNetem returns a latency simulator over m. jitter adds up to that
// fraction of the one-way latency, randomly per write (order is kept).
func NewNetem(m Matrix, jitter float64) *Netem {
	return &Netem{m: m, jitter: jitter, rto: 200 * time.Millisecond, cut: map[[2]string]bool{}, extra: map[[2]string]time.Duration{},
		conns: map[*netemConn]struct{}{}, healed: make(chan struct{}), rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))}
}

// Matrix returns the latency matrix.
func (n *Netem) Matrix() Matrix { return n.m }

const netemMagic = "MRDN"

// OneWay returns the base one-way latency between two regions (by name).
func (n *Netem) OneWay(from, to string) time.Duration {
	a, b := n.m.Region(from), n.m.Region(to)
	if a < 0 || b < 0 {
		return 0
	}
	return n.m.OneWay(a, b)
}

func (n *Netem) delay(from, to string) time.Duration {
	d := n.OneWay(from, to)
	n.mu.RLock()
	jitter, loss, rto := n.jitter, n.loss, n.rto
	d += n.extra[[2]string{from, to}]
	n.mu.RUnlock()
	n.rngMu.Lock()
	defer n.rngMu.Unlock()
	if jitter > 0 && d > 0 {
		d += time.Duration(n.rng.Float64() * jitter * float64(d))
	}
	if loss > 0 && n.rng.Float64() < loss {
		d += rto
	}
	return d
}

// Partition cuts traffic between regions a and b, both ways: existing
// connections across the cut are closed and new ones refused. With oneWay
// only what a writes to b is held back until the cut heals: live
// connections stay open (what b writes still arrives), and no new
// connection between them completes (a handshake needs both ways).
func (n *Netem) Partition(a, b string, oneWay bool) error {
	if n.m.Region(a) < 0 || n.m.Region(b) < 0 {
		return fmt.Errorf("sim: unknown region in %q | %q (have %v)", a, b, n.m.Regions)
	}
	n.mu.Lock()
	n.cut[[2]string{a, b}] = true
	var doomed []*netemConn
	if !oneWay {
		n.cut[[2]string{b, a}] = true
		for c := range n.conns {
			if n.cut[[2]string{c.local, c.remote}] && n.cut[[2]string{c.remote, c.local}] {
				doomed = append(doomed, c)
			}
		}
	}
	n.mu.Unlock()
	for _, c := range doomed {
		_ = c.Close()
	}
	return nil
}

// Heal removes every partition, the packet loss and every added delay.
func (n *Netem) Heal() {
	n.mu.Lock()
	n.cut = map[[2]string]bool{}
	n.extra = map[[2]string]time.Duration{}
	n.loss = 0
	close(n.healed)
	n.healed = make(chan struct{})
	n.mu.Unlock()
}

// Slow adds d to the one-way latency between regions a and b, both ways,
// until Heal.
func (n *Netem) Slow(a, b string, d time.Duration) error {
	if n.m.Region(a) < 0 || n.m.Region(b) < 0 {
		return fmt.Errorf("sim: unknown region in %q | %q (have %v)", a, b, n.m.Regions)
	}
	if d < 0 || d > time.Minute {
		return fmt.Errorf("sim: added delay %s outside [0, 1m]", d)
	}
	n.mu.Lock()
	n.extra[[2]string{a, b}] = d
	n.extra[[2]string{b, a}] = d
	n.mu.Unlock()
	return nil
}

// held reports whether what from writes to to is held back (a cut that
// way), and returns the channel closed at the next heal.
func (n *Netem) held(from, to string) (bool, <-chan struct{}) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.cut[[2]string{from, to}], n.healed
}

// SetLoss sets the probability that a write is lost once (and delivered a
// retransmission timeout later).
func (n *Netem) SetLoss(p float64) error {
	if !(p >= 0 && p < 1) { // NaN too
		return fmt.Errorf("sim: loss %g outside [0, 1)", p)
	}
	n.mu.Lock()
	n.loss = p
	n.mu.Unlock()
	return nil
}

// Cuts lists the partitioned directions as "from→to".
func (n *Netem) Cuts() []string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	var out []string
	for k := range n.cut {
		out = append(out, k[0]+"→"+k[1])
	}
	sort.Strings(out)
	return out
}

// Loss returns the current loss probability.
func (n *Netem) Loss() float64 {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.loss
}

// blocked reports whether no connection between from and to can be set up
// (a cut either way), and returns the channel closed at the next heal.
func (n *Netem) blocked(from, to string) (bool, <-chan struct{}) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.cut[[2]string{from, to}] || n.cut[[2]string{to, from}], n.healed
}

// ErrPartitioned is returned when dialing across a partition.
var ErrPartitioned = errors.New("sim: network partitioned")

// Dialer returns a context dialer for connections from region to the
// address whose region regionOf tells.
func (n *Netem) Dialer(region string, regionOf func(addr string) string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		remote := regionOf(addr)
		for remote != "" {
			// A blackholed SYN: nothing answers until the caller gives
			// up, or the cut heals and a retransmitted SYN gets through.
			blocked, healed := n.blocked(region, remote)
			if !blocked {
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%w: %s ↛ %s", ErrPartitioned, region, remote)
			case <-healed:
			}
		}
		var d net.Dialer
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		if len(region) > 255 {
			raw.Close()
			return nil, fmt.Errorf("sim: region name %q too long", region)
		}
		pre := append(append([]byte(netemMagic), byte(len(region))), region...)
		if _, err := raw.Write(pre); err != nil {
			raw.Close()
			return nil, err
		}
		return n.wrap(raw, region, remote), nil
	}
}

// Listener wraps l: accepted connections that announce a region are
// delayed and partitioned like the dialing side. Each connection's
// preamble is read on a goroutine of its own, so a client that connects
// and says nothing holds up no one else.
func (n *Netem) Listener(l net.Listener, region string) net.Listener {
	nl := &netemListener{Listener: l, n: n, region: region, ready: make(chan net.Conn), done: make(chan struct{})}
	go nl.acceptLoop()
	return nl
}

type netemListener struct {
	net.Listener
	n      *Netem
	region string
	ready  chan net.Conn
	done   chan struct{} // closed when the accept loop ends; err says why
	err    error
}

func (l *netemListener) acceptLoop() {
	defer close(l.done)
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			l.err = err
			return
		}
		go func() {
			c := l.handshake(raw)
			if c == nil {
				return
			}
			select {
			case l.ready <- c:
			case <-l.done:
				c.Close()
			}
		}()
	}
}

// handshake reads a connection's preamble: nil when it is refused.
func (l *netemListener) handshake(raw net.Conn) net.Conn {
	br := bufio.NewReaderSize(raw, 256)
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	head, err := br.Peek(len(netemMagic) + 1)
	_ = raw.SetReadDeadline(time.Time{})
	if err != nil && len(head) < len(netemMagic)+1 {
		// Too short to tell: pass it on as it is.
		return &bufConn{Conn: raw, r: br}
	}
	if string(head[:len(netemMagic)]) != netemMagic {
		return &bufConn{Conn: raw, r: br}
	}
	_, _ = br.Discard(len(netemMagic) + 1)
	name := make([]byte, int(head[len(netemMagic)]))
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadFull(br, name)
	_ = raw.SetReadDeadline(time.Time{})
	if err != nil {
		raw.Close()
		return nil
	}
	remote := string(name)
	if blocked, _ := l.n.blocked(l.region, remote); blocked {
		raw.Close()
		return nil
	}
	return l.n.wrap(&bufConn{Conn: raw, r: br}, l.region, remote)
}

func (l *netemListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// bufConn reads through the buffer that peeked at the preamble.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// netemConn delays its writes: each is delivered, in order, at its
// departure time plus the link's one-way latency.
type netemConn struct {
	net.Conn
	n             *Netem
	local, remote string
	queue         chan delayed
	closed        chan struct{}
	once          sync.Once
	mu            sync.Mutex
	last          time.Time
	werr          error
}

type delayed struct {
	at   time.Time
	data []byte
}

func (n *Netem) wrap(c net.Conn, local, remote string) net.Conn {
	nc := &netemConn{Conn: c, n: n, local: local, remote: remote, queue: make(chan delayed, 4096), closed: make(chan struct{})}
	n.mu.Lock()
	n.conns[nc] = struct{}{}
	// A partition made while this connection was being set up missed it.
	cut := n.cut[[2]string{local, remote}] && n.cut[[2]string{remote, local}]
	n.mu.Unlock()
	go nc.pump()
	if cut {
		nc.Close()
	}
	return nc
}

func (c *netemConn) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	if c.werr != nil {
		err := c.werr
		c.mu.Unlock()
		return 0, err
	}
	at := time.Now().Add(c.n.delay(c.local, c.remote))
	if at.Before(c.last) {
		at = c.last // jitter never reorders a stream
	}
	c.last = at
	c.mu.Unlock()
	select {
	case c.queue <- delayed{at: at, data: append([]byte(nil), p...)}:
		return len(p), nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *netemConn) pump() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-c.closed:
			return
		case d := <-c.queue:
			if wait := time.Until(d.at); wait > 0 {
				timer.Reset(wait)
				select {
				case <-c.closed:
					return
				case <-timer.C:
				}
			}
			for {
				// A one-way cut holds the stream back until it heals.
				held, healed := c.n.held(c.local, c.remote)
				if !held {
					break
				}
				select {
				case <-c.closed:
					return
				case <-healed:
				}
			}
			if _, err := c.Conn.Write(d.data); err != nil {
				c.mu.Lock()
				c.werr = err
				c.mu.Unlock()
				_ = c.Close()
				return
			}
		}
	}
}

func (c *netemConn) Close() error {
	var err error
	c.once.Do(func() {
		close(c.closed)
		err = c.Conn.Close()
		c.n.mu.Lock()
		delete(c.n.conns, c)
		c.n.mu.Unlock()
	})
	return err
}
