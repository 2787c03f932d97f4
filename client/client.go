// Package client is Meridian's Go client library, shaped like Cloud
// Spanner's: ReadWriteTransaction runs a function in a transaction and
// re-runs it on abort; Single and ReadOnlyTransaction read lock-free at a
// timestamp bound; Apply writes mutations at once. It routes every request
// to the right group (shard) and replica from the cluster's placement, and
// follows the leader hints of UNAVAILABLE errors.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meridiandb/meridian/rpc/meridianpb"
)

// Config configures a client.
type Config struct {
	// Addrs are node addresses to start from (any node will do).
	Addrs []string
	// Region is where the client runs; read-only transactions with a
	// staleness bound go to a replica there when there is one.
	Region string
	// TLS configures mutual TLS; nil means Insecure must be set.
	TLS *tls.Config
	// Insecure talks plaintext (only on request).
	Insecure bool
	// DialOptions are added to every connection.
	DialOptions []grpc.DialOption
	// MaxAttempts bounds how many times a request follows leader hints or
	// retries an unavailable group (default 20).
	MaxAttempts int
	// Unary sends every call as its own unary gRPC call instead of
	// multiplexing them over one Batch stream per node (the default, much
	// cheaper for small calls under concurrency).
	Unary bool
}

// Client is safe for concurrent use.
type Client struct {
	cfg Config

	mu        sync.RWMutex
	conns     map[string]*grpc.ClientConn
	apis      map[string]meridianpb.MeridianClient // per address: batched unless Config.Unary
	batchers  []*batcher
	placement *meridianpb.Placement
	addrs     map[uint64]string // node → address
	leaders   map[uint64]uint64 // group → node believed to lead
	watches   map[string]*stallWatch
	stalled   map[string]time.Time // address → when it was found stalled
}

// New connects to the cluster and loads its placement.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("%w: no node addresses", ErrInvalidArgument)
	}
	if cfg.TLS == nil && !cfg.Insecure {
		return nil, fmt.Errorf("%w: give TLS credentials or choose Insecure explicitly", ErrInvalidArgument)
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 20
	}
	c := &Client{cfg: cfg, conns: map[string]*grpc.ClientConn{}, apis: map[string]meridianpb.MeridianClient{},
		addrs: map[uint64]string{}, leaders: map[uint64]uint64{}, watches: map[string]*stallWatch{}, stalled: map[string]time.Time{}}
	if err := c.Refresh(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close closes every connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var first error
	for _, b := range c.batchers {
		b.close()
	}
	c.batchers, c.apis = nil, map[string]meridianpb.MeridianClient{}
	for _, conn := range c.conns {
		if err := conn.Close(); err != nil && first == nil {
			first = err
		}
	}
	c.conns = map[string]*grpc.ClientConn{}
	return first
}

// api returns the API of the node at addr over conn: batched calls
// unless Config.Unary.
func (c *Client) api(addr string, conn *grpc.ClientConn) meridianpb.MeridianClient {
	c.mu.RLock()
	a := c.apis[addr]
	c.mu.RUnlock()
	if a != nil {
		return a
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.apis[addr]; a != nil {
		return a
	}
	a = meridianpb.NewMeridianClient(conn)
	if !c.cfg.Unary {
		b := newBatcher(conn)
		c.batchers = append(c.batchers, b)
		a = batchAPI{MeridianClient: a, b: b}
	}
	c.apis[addr] = a
	return a
}

func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.RLock()
	conn := c.conns[addr]
	c.mu.RUnlock()
	if conn != nil {
		return conn, nil
	}
	creds := insecure.NewCredentials()
	if c.cfg.TLS != nil {
		creds = credentials.NewTLS(c.cfg.TLS)
	}
	opts := append(meridianpb.DialOptions(creds), c.cfg.DialOptions...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.conns[addr]; old != nil {
		_ = conn.Close()
		return old, nil
	}
	c.conns[addr] = conn
	return conn, nil
}

// Refresh reloads the placement and leaders from any reachable node.
func (c *Client) Refresh(ctx context.Context) error {
	var last error
	addrs := slices.Clone(c.cfg.Addrs)
	c.mu.RLock()
	for _, a := range c.addrs {
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	c.mu.RUnlock()
	for _, addr := range addrs {
		conn, err := c.conn(addr)
		if err != nil {
			last = err
			continue
		}
		resp, err := meridianpb.NewMeridianClient(conn).Locate(ctx, &meridianpb.LocateRequest{})
		if err != nil {
			last = err
			continue
		}
		c.mu.Lock()
		c.placement = resp.Placement
		for _, n := range resp.Placement.Nodes {
			c.addrs[n.Id] = n.Addr
		}
		for _, l := range resp.Leaders {
			c.leaders[l.Group] = l.Node
		}
		c.mu.Unlock()
		return nil
	}
	if last == nil {
		last = errors.New("no address answered")
	}
	return wrap(last)
}

// Placement returns the cluster's placement as last loaded.
func (c *Client) Placement() *meridianpb.Placement {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.placement
}

// shardOf returns the shard holding key.
func (c *Client) shardOf(key []byte) (*meridianpb.ShardInfo, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.placement == nil {
		return nil, ErrFailedPrecondition
	}
	for _, s := range c.placement.Shards {
		if string(key) >= string(s.Start) && (len(s.End) == 0 || string(key) < string(s.End)) {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: no shard holds key %q", ErrNotFound, key)
}

// shardsOf returns the shards overlapping [start, end) in key order.
func (c *Client) shardsOf(start, end []byte) []*meridianpb.ShardInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*meridianpb.ShardInfo
	if c.placement == nil {
		return nil
	}
	for _, s := range c.placement.Shards {
		if (len(s.End) == 0 || string(start) < string(s.End)) && (end == nil || string(s.Start) < string(end)) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *meridianpb.ShardInfo) int {
		switch {
		case string(a.Start) < string(b.Start):
			return -1
		case string(a.Start) > string(b.Start):
			return 1
		}
		return 0
	})
	return out
}

// leaderAddr returns the address of the node believed to lead group.
func (c *Client) leaderAddr(s *meridianpb.ShardInfo) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if n, ok := c.leaders[s.Group]; ok && !c.avoided(c.addrs[n]) {
		return c.addrs[n]
	}
	// A voter at random, avoiding nodes that stopped answering lately
	// unless every voter did.
	var voters, live []uint64
	for _, r := range s.Replicas {
		if r.Voter {
			voters = append(voters, r.Node)
			if !c.avoided(c.addrs[r.Node]) {
				live = append(live, r.Node)
			}
		}
	}
	if len(live) > 0 {
		voters = live
	}
	if len(voters) == 0 {
		return ""
	}
	return c.addrs[voters[rand.IntN(len(voters))]]
}

// nearestAddr returns a replica of the group in the client's region, or
// the leader.
func (c *Client) nearestAddr(s *meridianpb.ShardInfo) string {
	c.mu.RLock()
	region := c.cfg.Region
	var local []string
	for _, r := range s.Replicas {
		for _, n := range c.placement.Nodes {
			if n.Id == r.Node && n.Region == region && region != "" && !c.avoided(c.addrs[n.Id]) {
				local = append(local, c.addrs[n.Id])
			}
		}
	}
	c.mu.RUnlock()
	if len(local) > 0 {
		return local[rand.IntN(len(local))]
	}
	return c.leaderAddr(s)
}

// invoke calls fn against the group's leader (or, with nearest, the
// closest replica), following leader hints and retrying unavailable groups
// until MaxAttempts or the context ends.
// route says where a call goes: to the group's leader (and, when it
// answers, the client remembers it as the leader), to the leader if known
// but answerable by any replica (a success says nothing about leadership),
// or first to the nearest replica.
type route uint8

const (
	toLeader route = iota
	toAnyReplica
	toNearest
)

func (c *Client) invoke(ctx context.Context, s *meridianpb.ShardInfo, r route, fn func(ctx context.Context, cl meridianpb.MeridianClient) error) error {
	backoff := 5 * time.Millisecond
	var last error
	for attempt := 0; attempt < c.cfg.MaxAttempts; attempt++ {
		addr := c.leaderAddr(s)
		if r == toNearest && attempt == 0 {
			addr = c.nearestAddr(s)
		}
		if addr == "" {
			if err := c.Refresh(ctx); err != nil {
				return err
			}
			continue
		}
		conn, err := c.conn(addr)
		if err != nil {
			return err
		}
		err = c.call(ctx, addr, conn, fn)
		if err == nil {
			if r == toLeader {
				c.noteLeader(s.Group, addr)
			}
			return nil
		}
		last = err
		st, _ := status.FromError(err)
		if st.Code() != codes.Unavailable {
			return wrap(err)
		}
		if h := hintOf(err); h != nil && h.Node != 0 {
			c.mu.Lock()
			c.leaders[s.Group] = h.Node
			if h.Addr != "" {
				c.addrs[h.Node] = h.Addr
			}
			c.mu.Unlock()
		} else {
			c.mu.Lock()
			delete(c.leaders, s.Group)
			c.mu.Unlock()
		}
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff + time.Duration(rand.Int64N(int64(backoff)))):
			}
			backoff = min(backoff*2, 500*time.Millisecond)
		}
	}
	return wrap(last)
}

// call runs fn against the node at addr, failing it Unavailable if the
// node stops answering while it waits (see stallWatch).
func (c *Client) call(ctx context.Context, addr string, conn *grpc.ClientConn, fn func(ctx context.Context, cl meridianpb.MeridianClient) error) error {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := c.watch(addr, conn)
	id := w.begin(cancel)
	err := fn(actx, c.api(addr, conn))
	w.end(id)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), errStalled) {
		return status.Errorf(codes.Unavailable, "node %s stopped answering (no answer to a health check within %s)", addr, stallProbeTimeout)
	}
	return err
}

func (c *Client) noteLeader(group uint64, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, a := range c.addrs {
		if a == addr {
			c.leaders[group] = id
			return
		}
	}
}

func hintOf(err error) *meridianpb.LeaderHint {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if h, ok := d.(*meridianpb.LeaderHint); ok {
			return h
		}
	}
	return nil
}
