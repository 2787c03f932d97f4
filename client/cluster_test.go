package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/rpc"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/tt"
)

// This file is an in-process cluster of real nodes on loopback gRPC, the
// way cmd/meridian/start.go assembles one (a copy of rpc/cluster_test.go's,
// usable without a *testing.T so that examples can run it too).

var testRegions = []string{"europe-west1", "us-east1", "us-west1"}

func testLogger() *slog.Logger {
	if os.Getenv("MERIDIAN_TEST_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testDial(ctx context.Context, addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, meridianpb.DialOptions(insecure.NewCredentials())...)
}

type testNode struct {
	id     node.NodeID
	region string
	addr   string
	eng    *kv.Engine
	srv    *rpc.Server
	gs     *grpc.Server
	conn   *grpc.ClientConn
}

func (n *testNode) admin() meridianpb.AdminClient { return meridianpb.NewAdminClient(n.conn) }

type testCluster struct {
	dir       string
	nodes     []*testNode
	placement *meridianpb.Placement
}

// startCluster starts n nodes over three regions (round-robin), all
// joining the first, initializes the cluster (spread, 3 replicas, 1 s
// leases) and waits until every group has a leader.
func startCluster(n int) (c *testCluster, err error) {
	dir, err := os.MkdirTemp("", "meridian-client-test-")
	if err != nil {
		return nil, err
	}
	c = &testCluster{dir: dir}
	defer func() {
		if err != nil {
			_ = c.stop()
			c = nil
		}
	}()
	var join []string
	for i := 0; i < n; i++ {
		nd, err := c.startNode(filepath.Join(dir, fmt.Sprintf("n%d", i+1)), testRegions[i%len(testRegions)], join)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			join = []string{nd.addr}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(c.nodes[0].srv.Nodes()) < n {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("node 1 knows %d of %d nodes", len(c.nodes[0].srv.Nodes()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := c.nodes[0].admin().Init(ctx, &meridianpb.InitRequest{Policy: node.PolicySpread, Replicas: 3, LeaseNs: int64(time.Second)})
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	c.placement = resp.Placement
	if _, err := c.waitLeaders(ctx); err != nil {
		return nil, err
	}
	// Leaders move to their shard's home region when they can: give that
	// a moment so the tests start from settled leadership (they do not
	// depend on it).
	settle, cancel2 := context.WithTimeout(ctx, 3*time.Second)
	defer cancel2()
	for {
		leaders, err := c.waitLeaders(settle)
		if err != nil || c.homeLed(leaders) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c, nil
}

func (c *testCluster) startNode(dir, region string, join []string) (*testNode, error) {
	eng, err := kv.Open(dir, kv.Options{CacheSize: 4 << 20})
	if err != nil {
		return nil, err
	}
	id, err := node.LoadOrCreateID(eng)
	if err != nil {
		_ = eng.Close()
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = eng.Close()
		return nil, err
	}
	addr := lis.Addr().String()
	srv, err := rpc.NewServer(rpc.ServerConfig{Self: node.NodeInfo{ID: id, Region: region, Addr: addr}, Engine: eng,
		Clock: tt.NewSystem(500 * time.Microsecond), Join: join, Dial: testDial, Logger: testLogger()})
	if err != nil {
		_ = lis.Close()
		_ = eng.Close()
		return nil, err
	}
	gs := grpc.NewServer(rpc.ServerOptions()...)
	srv.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	srv.Start()
	conn, err := testDial(context.Background(), addr)
	if err != nil {
		return nil, err
	}
	nd := &testNode{id: id, region: region, addr: addr, eng: eng, srv: srv, gs: gs, conn: conn}
	c.nodes = append(c.nodes, nd)
	return nd, nil
}

// stop stops the runtimes and outbound streams first (so that no inbound
// stream keeps GracefulStop waiting), then the gRPC servers, then the
// engines, and removes the data.
func (c *testCluster) stop() error {
	var errs []error
	for _, n := range c.nodes {
		_ = n.conn.Close()
		n.srv.Close()
	}
	for _, n := range c.nodes {
		done := make(chan struct{})
		go func() { n.gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			errs = append(errs, fmt.Errorf("node %d: GracefulStop hangs", n.id))
			n.gs.Stop()
		}
	}
	for _, n := range c.nodes {
		if err := n.eng.Close(); err != nil {
			errs = append(errs, fmt.Errorf("node %d: closing the engine: %w", n.id, err))
		}
	}
	c.nodes = nil
	errs = append(errs, os.RemoveAll(c.dir))
	return errors.Join(errs...)
}

func (c *testCluster) addrs() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.addr)
	}
	return out
}

func (c *testCluster) node(id node.NodeID) *testNode {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

// waitLeaders waits until, for every shard, one node reports itself leader
// with a live lease and every replica names that node.
func (c *testCluster) waitLeaders(ctx context.Context) (map[uint64]node.NodeID, error) {
	for {
		leaders, ok := c.leaders(ctx)
		if ok {
			return leaders, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("groups without an agreed leader (have %v): %w", leaders, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (c *testCluster) leaders(ctx context.Context) (map[uint64]node.NodeID, bool) {
	leaders := map[uint64]node.NodeID{}
	named := map[uint64]map[uint64]bool{}
	hosted := map[uint64]int{}
	for _, n := range c.nodes {
		st, err := n.admin().Status(ctx, &meridianpb.StatusRequest{})
		if err != nil {
			return leaders, false
		}
		for _, g := range st.Groups {
			hosted[g.Group]++
			if named[g.Group] == nil {
				named[g.Group] = map[uint64]bool{}
			}
			named[g.Group][g.LeaderNode] = true
			if g.Role == "leader" && g.LeaseEndNs > st.Clock.LatestNs {
				leaders[g.Group] = n.id
			}
		}
	}
	for _, sh := range c.placement.Shards {
		l, ok := leaders[sh.Group]
		if !ok || hosted[sh.Group] != len(sh.Replicas) || len(named[sh.Group]) != 1 || !named[sh.Group][uint64(l)] {
			return leaders, false
		}
	}
	return leaders, true
}

// homeLed reports whether every shard is led from its home region.
func (c *testCluster) homeLed(leaders map[uint64]node.NodeID) bool {
	for _, sh := range c.placement.Shards {
		if n := c.node(leaders[sh.Group]); n == nil || n.region != sh.Home {
			return false
		}
	}
	return true
}

// newTestCluster starts a cluster for a test and stops it when the test
// ends.
func newTestCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	c, err := startCluster(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// StartInProcessCluster starts a three-node, three-region cluster for the
// examples (client_test): the node addresses and a function that stops it.
// It exists only in tests.
func StartInProcessCluster() (addrs []string, stop func(), err error) {
	c, err := startCluster(3)
	if err != nil {
		return nil, nil, err
	}
	return c.addrs(), func() {
		if err := c.stop(); err != nil {
			panic(err)
		}
	}, nil
}
