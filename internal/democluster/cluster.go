// Package democluster starts a real Meridian cluster inside one process:
// nodes with Pebble on a temporary directory, real gRPC on loopback, and
// every connection through the latency simulator (sim.Netem), so loopback
// behaves like a multi-region WAN. meridian demo, the end-to-end tests and
// the benchmark harness use it.
package democluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meridiandb/meridian/client"
	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/rpc"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/sim"
	"github.com/meridiandb/meridian/tt"
)

// Config describes the cluster.
type Config struct {
	Matrix         sim.Matrix
	NodesPerRegion int           // default 3
	Placement      string        // regional (default) or spread
	Replicas       int           // voters per shard; default min(3, what the placement allows)
	Lease          time.Duration // default 3 s
	// Clock is shared by every node (the demo's system clock with a stated
	// ε, or NTP); default tt.NewSystem(1ms).
	Clock tt.Clock
	Dir   string // data directory (default: a temporary one, removed on Close)
	// HTTP serves each node's debug pages and metrics on 127.0.0.1:0 when
	// a handler factory is given.
	HTTP   func(s *rpc.Server) http.Handler
	Logger *slog.Logger
	// TLS, when set, gives every node (server and dialer) mutual TLS.
	ServerTLS, ClientTLS *tls.Config
	Jitter               float64 // per-link jitter fraction, default 0.02
}

// Node is one member.
type Node struct {
	Info     node.NodeInfo
	Server   *rpc.Server
	GRPC     *grpc.Server
	Engine   *kv.Engine
	HTTPAddr string
	lis      net.Listener
	http     *http.Server
}

// Cluster is a running in-process cluster.
type Cluster struct {
	cfg     Config
	Netem   *sim.Netem
	Nodes   []*Node
	regions map[string]string // address → region
	mu      sync.RWMutex
	tmp     string
}

// Start brings the cluster up, initializes it and waits until every shard
// has a leader.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.NodesPerRegion <= 0 {
		cfg.NodesPerRegion = 3
	}
	if cfg.Placement == "" {
		cfg.Placement = node.PolicyRegional
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 3
		if cfg.Placement == node.PolicyRegional && cfg.NodesPerRegion < 3 {
			cfg.Replicas = 1
		}
		if cfg.Placement == node.PolicySpread && cfg.NodesPerRegion*len(cfg.Matrix.Regions) < 3 {
			cfg.Replicas = 1
		}
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 3 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = tt.NewSystem(time.Millisecond)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = 0.02
	}
	if err := cfg.Matrix.Validate(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, Netem: sim.NewNetem(cfg.Matrix, cfg.Jitter), regions: map[string]string{}}
	if c.cfg.Dir == "" {
		d, err := os.MkdirTemp("", "meridian-demo-")
		if err != nil {
			return nil, err
		}
		c.tmp, c.cfg.Dir = d, d
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	var first string
	for _, region := range cfg.Matrix.Regions {
		for i := 0; i < cfg.NodesPerRegion; i++ {
			n, err := c.startNode(region, len(c.Nodes)+1, first)
			if err != nil {
				return nil, err
			}
			if first == "" {
				first = n.Info.Addr
			}
		}
	}
	// Every node has to know every other before init places the shards.
	if err := c.waitJoined(ctx); err != nil {
		return nil, err
	}
	conn, err := c.Dial(ctx, cfg.Matrix.Regions[0], first)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := meridianpb.NewAdminClient(conn).Init(ctx, &meridianpb.InitRequest{Policy: cfg.Placement,
		Replicas: int32(cfg.Replicas), ShardsPerRegion: 1, LeaseNs: int64(cfg.Lease)}); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if err := c.WaitLeaders(ctx); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

func (c *Cluster) regionOf(addr string) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.regions[addr]
}

// Dial opens a gRPC connection from region to addr through the latency
// simulator.
func (c *Cluster) Dial(ctx context.Context, region, addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, c.DialOptions(region)...)
}

// DialOptions returns the options a client in region needs: the latency
// simulator's dialer and the cluster's credentials.
func (c *Cluster) DialOptions(region string) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if c.cfg.ClientTLS != nil {
		creds = credentials.NewTLS(c.cfg.ClientTLS)
	}
	return append(meridianpb.DialOptions(creds), grpc.WithContextDialer(c.Netem.Dialer(region, c.regionOf)))
}

func (c *Cluster) startNode(region string, idx int, join string) (*Node, error) {
	dir := filepath.Join(c.cfg.Dir, fmt.Sprintf("node%d-%s", idx, region))
	eng, err := kv.Open(dir, kv.Options{CacheSize: 16 << 20})
	if err != nil {
		return nil, err
	}
	id, err := node.LoadOrCreateID(eng)
	if err != nil {
		eng.Close()
		return nil, err
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		eng.Close()
		return nil, err
	}
	addr := raw.Addr().String()
	c.mu.Lock()
	c.regions[addr] = region
	c.mu.Unlock()
	n := &Node{Info: node.NodeInfo{ID: id, Region: region, Addr: addr}, Engine: eng, lis: c.Netem.Listener(raw, region)}
	var joins []string
	if join != "" {
		joins = []string{join}
	}
	n.Server, err = rpc.NewServer(rpc.ServerConfig{Self: n.Info, Engine: eng, Clock: c.cfg.Clock, Join: joins,
		Dial: func(ctx context.Context, addr string) (*grpc.ClientConn, error) {
			return grpc.NewClient(addr, c.DialOptions(region)...)
		},
		Logger: c.cfg.Logger.With("region", region), Netem: c.Netem})
	if err != nil {
		raw.Close()
		eng.Close()
		return nil, err
	}
	opts := rpc.ServerOptions()
	if c.cfg.ServerTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(c.cfg.ServerTLS)))
	}
	n.GRPC = grpc.NewServer(opts...)
	n.Server.Register(n.GRPC)
	go func() { _ = n.GRPC.Serve(n.lis) }()
	n.Server.Start()
	if c.cfg.HTTP != nil {
		hl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		n.HTTPAddr = hl.Addr().String()
		n.http = &http.Server{Handler: c.cfg.HTTP(n.Server), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = n.http.Serve(hl) }()
	}
	c.Nodes = append(c.Nodes, n)
	return n, nil
}

func (c *Cluster) waitJoined(ctx context.Context) error {
	for {
		all := true
		for _, n := range c.Nodes {
			if len(n.Server.Nodes()) < len(c.Nodes) {
				all = false
			}
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nodes did not find each other: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitLeaders waits until every shard has a leader serving, in its home
// region when a voter lives there (the runtime moves leadership home).
func (c *Cluster) WaitLeaders(ctx context.Context) error {
	for {
		p, ok := c.Nodes[0].Server.Placement()
		if ok {
			led := 0
			for _, sh := range p.Shards {
				homeVoter := p.Preferred(sh) != 0
				for _, n := range c.Nodes {
					if g := n.Server.Node().Group(sh.Group); g != nil && g.IsLeader() && (!homeVoter || n.Info.Region == sh.Home) {
						led++
						break
					}
				}
			}
			if led == len(p.Shards) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("the shards did not elect leaders in time")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Client returns a client library connection from region (its requests go
// through the latency simulator).
func (c *Cluster) Client(ctx context.Context, region string) (*client.Client, error) {
	var addrs []string
	for _, n := range c.Nodes {
		if n.Info.Region == region {
			addrs = append(addrs, n.Info.Addr)
		}
	}
	if len(addrs) == 0 {
		addrs = []string{c.Nodes[0].Info.Addr}
	}
	cfg := client.Config{Addrs: addrs, Region: region, DialOptions: c.DialOptions(region)}
	if c.cfg.ClientTLS != nil {
		cfg.TLS = c.cfg.ClientTLS
	} else {
		cfg.Insecure = true
	}
	return client.New(ctx, cfg)
}

// Placement returns the cluster's placement.
func (c *Cluster) Placement() node.Placement {
	p, _ := c.Nodes[0].Server.Placement()
	return p
}

// Close stops every node and removes a temporary data directory.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		if n.http != nil {
			_ = n.http.Close()
		}
		n.GRPC.Stop()
		n.Server.Close()
		_ = n.Engine.Close()
	}
	if c.tmp != "" {
		_ = os.RemoveAll(c.tmp)
	}
}
