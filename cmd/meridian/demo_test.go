package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/meridiandb/meridian/client"
	"github.com/meridiandb/meridian/internal/chromium"
	"github.com/meridiandb/meridian/internal/democluster"
	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/rpc"
	"github.com/meridiandb/meridian/sim"
	"github.com/meridiandb/meridian/tt"
)

func startDemo(t *testing.T, placement string, nodes int) (*democluster.Cluster, *client.Client, sim.Matrix) {
	t.Helper()
	m, err := sim.Preset("global")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := democluster.Start(ctx, democluster.Config{Matrix: m, NodesPerRegion: nodes, Placement: placement,
		Lease: 2 * time.Second, Clock: tt.NewSystem(time.Millisecond), HTTP: rpc.DebugHandler,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := c.Client(ctx, m.Regions[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return c, cl, m
}

// minWAN returns the smallest round trip between two different regions.
func minWAN(m sim.Matrix) time.Duration {
	best := time.Duration(-1)
	for i := range m.Regions {
		for j := range m.Regions {
			if i != j && (best < 0 || m.RTT[i][j] < best) {
				best = m.RTT[i][j]
			}
		}
	}
	return best
}

// TestDemoTourRegionalPhysics runs the demo's tour against the latency
// simulator in the regional placement and checks what the physics demands.
func TestDemoTourRegionalPhysics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 9-node cluster; skipped with -short")
	}
	c, cl, m := startDemo(t, node.PolicyRegional, 3)
	region := m.Regions[0]
	var out bytes.Buffer
	r, err := tour(context.Background(), &out, c, cl, region)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	wan := minWAN(m)
	rtt := m.RoundTrip(m.Region(region), m.Region(r.RemoteShard.Home))
	// A cross-region commit needs the prepare round trip to the remote
	// participant's region, at least.
	if r.CrossCommit < rtt {
		t.Errorf("cross-region commit took %s, less than the %s round trip its prepare round needs", r.CrossCommit, rtt)
	}
	if r.Cross.Prepare < rtt {
		t.Errorf("the prepare round took %s, less than the %s round trip", r.Cross.Prepare, rtt)
	}
	// A single-region commit pays no cross-region round trip.
	if r.LocalCommit >= wan {
		t.Errorf("single-region commit took %s, as long as a WAN round trip (%s): it left its region", r.LocalCommit, wan)
	}
	// The bounded-stale read of the remote shard is served in our region
	// by its read-only replica.
	p := c.Placement()
	served, ok := p.Node(r.StaleServedBy)
	if !ok || served.Region != region {
		t.Errorf("the bounded-stale read was served by node %d in %q, not in %s", r.StaleServedBy, served.Region, region)
	}
	for _, rep := range r.RemoteShard.Replicas {
		if rep.Node == r.StaleServedBy && rep.Voter {
			t.Errorf("the bounded-stale read was served by a voter, want the read-only replica")
		}
	}
	if r.StaleRead >= wan {
		t.Errorf("the bounded-stale read took %s, a WAN round trip (%s)", r.StaleRead, wan)
	}
	// A strong read of the remote shard needs its leader: a WAN round trip.
	if r.StrongRemoteRead < rtt {
		t.Errorf("a strong read of the remote shard took %s, less than the round trip %s to its leader", r.StrongRemoteRead, rtt)
	}
}

// TestDemoTourSpreadPhysics: with voters across regions, every commit pays
// at least the round trip to the nearest majority.
func TestDemoTourSpreadPhysics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a multi-region cluster; skipped with -short")
	}
	c, cl, m := startDemo(t, node.PolicySpread, 1)
	region := m.Regions[0]
	var out bytes.Buffer
	r, err := tour(context.Background(), &out, c, cl, region)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	// The local shard's leader lives in our region (home preference); its
	// nearest majority of three voters is itself plus the nearest other
	// region.
	a := m.Region(region)
	nearest := time.Duration(-1)
	for b := range m.Regions {
		if b != a && (nearest < 0 || m.RTT[a][b] < nearest) {
			nearest = m.RTT[a][b]
		}
	}
	if r.LocalCommit < nearest {
		t.Errorf("a commit took %s, less than the %s round trip to the nearest majority", r.LocalCommit, nearest)
	}
	if r.Local.Paxos < nearest {
		t.Errorf("the commit record's Paxos round took %s, less than %s", r.Local.Paxos, nearest)
	}
	if r.CrossCommit < nearest {
		t.Errorf("the cross-region commit took %s, less than %s", r.CrossCommit, nearest)
	}
}

// TestDebugTxnPageInBrowser loads a node's /debug/txn page in headless
// Chromium and finds a committed transaction on it.
func TestDebugTxnPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a browser; skipped with -short")
	}
	browser := chromium.Find(t)
	m, _ := sim.Preset("zones")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := democluster.Start(ctx, democluster.Config{Matrix: m.Subset(1), NodesPerRegion: 1, Lease: time.Second,
		Clock: tt.NewSystem(500 * time.Microsecond), HTTP: rpc.DebugHandler, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := c.Client(ctx, m.Regions[0])
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	res, err := cl.Apply(ctx, []client.Mutation{client.Put([]byte("browser/key"), []byte("v"))})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + c.Nodes[0].HTTPAddr + "/debug/txn"
	dom, err := chromium.DumpDOM(ctx, browser, url)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dom, `<svg`) || !strings.Contains(dom, `class="txn"`) || !strings.Contains(dom, "committed") {
		t.Fatalf("the page Chromium rendered shows no committed transaction:\n%s", dom)
	}
	if !strings.Contains(dom, tt.Timestamp(res.Timestamp).String()) {
		t.Errorf("the commit timestamp %s is not on the page", tt.Timestamp(res.Timestamp))
	}
	dom, err = chromium.DumpDOM(ctx, browser, "http://"+c.Nodes[0].HTTPAddr+"/debug/cluster")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dom, `class="shard"`) {
		t.Fatalf("the cluster page lists no shard:\n%s", dom)
	}
}
