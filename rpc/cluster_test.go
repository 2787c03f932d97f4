package rpc

import (
	"context"
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
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/tt"
)

// This file is an in-process cluster of real nodes on loopback gRPC, the
// way cmd/meridian/start.go assembles one: kv.Open, node.LoadOrCreateID,
// NewServer, a grpc.Server with ServerOptions, Register, Serve,
// Start. (client/cluster_test.go carries a copy for the client's tests.)

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
	srv    *Server
	gs     *grpc.Server
	conn   *grpc.ClientConn // the tests' connection to the node
}

func (n *testNode) api() meridianpb.MeridianClient      { return meridianpb.NewMeridianClient(n.conn) }
func (n *testNode) admin() meridianpb.AdminClient       { return meridianpb.NewAdminClient(n.conn) }
func (n *testNode) internal() meridianpb.InternalClient { return meridianpb.NewInternalClient(n.conn) }

type testCluster struct {
	t     testing.TB
	nodes []*testNode
}

// newTestCluster starts n nodes spread over three regions (round-robin),
// all joining the first, without initializing the cluster.
func newTestCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	t.Cleanup(c.stop)
	base := t.TempDir()
	var join []string
	for i := 0; i < n; i++ {
		nd := c.startNode(filepath.Join(base, fmt.Sprintf("n%d", i+1)), testRegions[i%len(testRegions)], join)
		if i == 0 {
			join = []string{nd.addr}
		}
	}
	// Wait until the first node knows every node (init places over them).
	deadline := time.Now().Add(10 * time.Second)
	for len(c.nodes[0].srv.Nodes()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("node 1 knows %d of %d nodes", len(c.nodes[0].srv.Nodes()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c
}

func (c *testCluster) startNode(dir, region string, join []string) *testNode {
	t := c.t
	t.Helper()
	eng, err := kv.Open(dir, kv.Options{CacheSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	id, err := node.LoadOrCreateID(eng)
	if err != nil {
		_ = eng.Close()
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = eng.Close()
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	srv, err := NewServer(ServerConfig{Self: node.NodeInfo{ID: id, Region: region, Addr: addr}, Engine: eng,
		Clock: tt.NewSystem(500 * time.Microsecond), Join: join, Dial: testDial, Logger: testLogger()})
	if err != nil {
		_ = lis.Close()
		_ = eng.Close()
		t.Fatal(err)
	}
	gs := grpc.NewServer(ServerOptions()...)
	srv.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	srv.Start()
	conn, err := testDial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	nd := &testNode{id: id, region: region, addr: addr, eng: eng, srv: srv, gs: gs, conn: conn}
	c.nodes = append(c.nodes, nd)
	return nd
}

// stop stops every node: first the servers' runtimes and outbound streams
// (so no inbound stream keeps a GracefulStop waiting), then the gRPC
// servers, then the engines.
func (c *testCluster) stop() {
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
			c.t.Errorf("node %d: GracefulStop hangs; stopping hard", n.id)
			n.gs.Stop()
		}
	}
	for _, n := range c.nodes {
		if err := n.eng.Close(); err != nil {
			c.t.Errorf("node %d: closing the engine: %v", n.id, err)
		}
	}
	c.nodes = nil
}

// init runs Admin.Init at the first node (spread, 3 replicas, 1 s leases)
// and waits until every group has a leader every replica agrees on.
func (c *testCluster) init() (*meridianpb.Placement, map[uint64]node.NodeID) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.nodes[0].admin().Init(ctx, &meridianpb.InitRequest{Policy: node.PolicySpread, Replicas: 3, LeaseNs: int64(time.Second)})
	if err != nil {
		c.t.Fatalf("init: %v", err)
	}
	return resp.Placement, c.waitLeaders(ctx, resp.Placement)
}

// waitLeaders waits until, for every shard, one node reports itself leader
// with a live lease, and every replica names that node as the leader.
func (c *testCluster) waitLeaders(ctx context.Context, p *meridianpb.Placement) map[uint64]node.NodeID {
	c.t.Helper()
	for {
		leaders, ok := c.leaders(ctx, p)
		if ok {
			return leaders
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("groups without an agreed leader: have %v", leaders)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (c *testCluster) leaders(ctx context.Context, p *meridianpb.Placement) (map[uint64]node.NodeID, bool) {
	leaders := map[uint64]node.NodeID{}
	named := map[uint64]map[uint64]bool{} // group → leader nodes named by replicas
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
	for _, sh := range p.Shards {
		l, ok := leaders[sh.Group]
		if !ok || hosted[sh.Group] != len(sh.Replicas) || len(named[sh.Group]) != 1 || !named[sh.Group][uint64(l)] {
			return leaders, false
		}
	}
	return leaders, true
}

// node returns the test node with the given ID.
func (c *testCluster) node(id node.NodeID) *testNode {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	c.t.Fatalf("no node %d", id)
	return nil
}
