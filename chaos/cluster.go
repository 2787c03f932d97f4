package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meridiandb/meridian/internal/ntptest"
	"github.com/meridiandb/meridian/internal/syncbuf"
	"github.com/meridiandb/meridian/rpc/meridianpb"
)

// ClusterConfig describes the processes a run starts.
type ClusterConfig struct {
	// Binary is the meridian binary to run.
	Binary string
	// Dir holds the nodes' data directories.
	Dir string
	// Nodes (default 3) are spread round-robin over Regions (default 3)
	// regions; partitions and delays act between regions.
	Nodes, Regions int
	// Placement is spread (default) or regional; Lease the leader lease
	// (default 2 s).
	Placement string
	Lease     time.Duration
	// NTPPoll is how often each node polls its NTP servers (default
	// 250 ms).
	NTPPoll time.Duration
	// Uncertainty is the root dispersion every NTP server reports
	// (default 2 ms), which every node's clock uncertainty ε includes: the
	// room within which clocks may honestly disagree, and commit wait
	// must cover.
	Uncertainty time.Duration
	// Bug, when set, starts every node with --testing-bug (negative
	// controls).
	Bug string
	// Logf receives progress lines (may be nil).
	Logf func(format string, args ...any)
}

func (c *ClusterConfig) fill() error {
	if c.Binary == "" || c.Dir == "" {
		return errors.New("chaos: a binary and a directory are required")
	}
	if c.Regions <= 0 {
		c.Regions = 3
	}
	if c.Nodes <= 0 {
		c.Nodes = c.Regions
	}
	if c.Regions > len(regionNames) {
		return fmt.Errorf("chaos: at most %d regions", len(regionNames))
	}
	if c.Nodes < c.Regions {
		return fmt.Errorf("chaos: %d nodes cannot cover %d regions", c.Nodes, c.Regions)
	}
	if c.Placement == "" {
		c.Placement = "spread"
	}
	if c.Placement != "spread" && c.Placement != "regional" {
		return fmt.Errorf("chaos: placement %q: want spread or regional", c.Placement)
	}
	if c.Lease <= 0 {
		c.Lease = 2 * time.Second
	}
	if c.Uncertainty <= 0 {
		c.Uncertainty = 2 * time.Millisecond
	}
	if c.NTPPoll <= 0 {
		c.NTPPoll = 250 * time.Millisecond
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return nil
}

var regionNames = []string{"us-east1", "us-west1", "europe-west1", "asia-east1", "europe-north1", "us-central1", "asia-south1"}

// Cluster is a set of `meridian start` processes on loopback, each on
// three fake NTP servers of its own (ntptest: real NTPv4 over UDP, whose
// answers the nemeses shift, step, strobe and silence), its connections to
// the other nodes through the latency simulator (start --netem), so that
// partitions and delays can be set at run time.
type Cluster struct {
	cfg     ClusterConfig
	Nodes   []*Node
	regions []string

	mu      sync.Mutex
	crashes []Crash
}

// Crash is a node process that exited without being killed: a panic, a
// failed assertion (-tags invariants), a fatal error.
type Crash struct {
	Node string `json:"node"`
	// At is when it exited (wall-clock nanoseconds); Err how.
	At  int64  `json:"at"`
	Err string `json:"err"`
}

// Crashes returns the processes that exited on their own so far.
func (c *Cluster) Crashes() []Crash {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.crashes)
}

// Node is one process.
type Node struct {
	Index          int
	Region, Addr   string
	Dir            string
	NTP            []*ntptest.Server
	args           []string
	mu             sync.Mutex
	cmd            *exec.Cmd
	exited         chan struct{}
	stopped        bool
	log            syncbuf.Buffer
	conn           *grpc.ClientConn
	httpAddr       string
	starts, deaths int
}

// Name is the node's name in logs and reports ("n1", "n2", ...).
func (n *Node) Name() string { return fmt.Sprintf("n%d", n.Index+1) }

// Log returns everything the node's processes wrote.
func (n *Node) Log() []byte { return n.log.Bytes() }

// StartCluster starts the nodes, initializes the cluster and waits until
// every group has a leader.
// A cluster that fails to start says why with the end of every node's log.
func StartCluster(ctx context.Context, cfg ClusterConfig) (_ *Cluster, err error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, regions: regionNames[:cfg.Regions]}
	ok := false
	defer func() {
		if !ok {
			c.Close()
			for _, n := range c.Nodes {
				lines := strings.Split(strings.TrimRight(string(n.Log()), "\n"), "\n")
				err = fmt.Errorf("%w\n--- %s log (last lines):\n%s", err, n.Name(), strings.Join(lines[max(0, len(lines)-15):], "\n"))
			}
		}
	}()
	for i := 0; i < cfg.Nodes; i++ {
		n := &Node{Index: i, Region: c.regions[i%cfg.Regions], Dir: filepath.Join(cfg.Dir, fmt.Sprintf("n%d", i+1))}
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		n.Addr = addr
		var ntp []string
		for j := 0; j < 3; j++ {
			s, err := ntptest.NewServer(ntptest.Behavior{RootDispersion: cfg.Uncertainty})
			if err != nil {
				return nil, err
			}
			n.NTP = append(n.NTP, s)
			ntp = append(ntp, s.Addr())
		}
		n.args = []string{"start", "--insecure", "--region", n.Region, "--listen", n.Addr, "--data-dir", n.Dir,
			"--log-level", "info", "--ntp", strings.Join(ntp, ","), "--ntp-poll", cfg.NTPPoll.String(),
			"--netem", strings.Join(c.regions, ","), "--version-retention", "1m", "--gc-interval", "10s"}
		if cfg.Bug != "" {
			n.args = append(n.args, "--testing-bug", cfg.Bug)
		}
		if i > 0 {
			n.args = append(n.args, "--join", c.Nodes[0].Addr)
		}
		c.Nodes = append(c.Nodes, n)
		if err := c.start(n); err != nil {
			return nil, err
		}
	}
	if err := c.init(ctx); err != nil {
		return nil, err
	}
	if _, err := c.WaitLeaders(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

func freeAddr() (string, error) {
	l, err := netListen()
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Config returns the cluster's configuration (defaults filled in).
func (c *Cluster) Config() ClusterConfig { return c.cfg }

// Regions returns the regions, node i being in Regions()[i % len].
func (c *Cluster) Regions() []string { return c.regions }

// Addrs returns every node's address.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr)
	}
	return out
}

func (c *Cluster) start(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return err
	}
	cmd := exec.Command(c.cfg.Binary, n.args...)
	// A process group of its own: a Ctrl-C at the terminal reaches the
	// suite, which checks what ran and then stops the nodes, not the
	// nodes behind its back; and the nodes die with the suite.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(&n.log, "=== %s chaos: start %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(n.args[1:], " "))
	cmd.Stdout, cmd.Stderr = &n.log, &n.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chaos: starting %s: %w", n.Name(), err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		at := time.Now()
		fmt.Fprintf(&n.log, "=== %s chaos: process exited: %v\n", at.UTC().Format(time.RFC3339Nano), err)
		n.mu.Lock()
		crashed := n.cmd == cmd // Kill forgets the process before it signals it
		if crashed {
			n.cmd = nil // down: the nemesis's heal restarts it
		}
		n.mu.Unlock()
		if crashed {
			c.cfg.Logf("chaos: %s exited on its own: %v", n.Name(), err)
			c.mu.Lock()
			c.crashes = append(c.crashes, Crash{Node: n.Name(), At: at.UnixNano(), Err: fmt.Sprint(err)})
			c.mu.Unlock()
		}
		close(exited)
	}()
	n.cmd, n.exited, n.stopped = cmd, exited, false
	n.starts++
	return nil
}

func (c *Cluster) init(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, c.cfg.Binary, "init", "--insecure", "--host", c.Nodes[0].Addr, "--policy", c.cfg.Placement,
			"--replicas", "3", "--lease", c.cfg.Lease.String()).CombinedOutput()
		if err == nil && bytes.Contains(out, []byte(fmt.Sprintf("%d nodes", len(c.Nodes)))) {
			return nil
		}
		if cr := c.Crashes(); len(cr) > 0 {
			return fmt.Errorf("chaos: %s exited while the cluster started: %s", cr[0].Node, cr[0].Err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("chaos: init: %v\n%s", err, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// Up reports whether node i's process runs and is not stopped.
func (c *Cluster) Up(i int) bool {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil && !n.stopped
}

// Kill kills node i (kill -9) and waits for it to exit.
func (c *Cluster) Kill(i int) {
	n := c.Nodes[i]
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	n.deaths++
}

// Restart starts node i again (after Kill) from its data directory and
// waits until it answers (up to a minute), so that the next fault (a
// partition, a delay: applied by each node to its own connections)
// reaches it too.
func (c *Cluster) Restart(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	running := n.cmd != nil
	n.mu.Unlock()
	if running {
		return nil
	}
	if err := c.start(n); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := c.Status(context.Background(), i)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: %s does not answer a minute after its restart: %w", n.Name(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops node i (SIGSTOP): its connections stay open, nothing answers.
func (c *Cluster) Stop(i int) {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && !n.stopped {
		_ = n.cmd.Process.Signal(syscall.SIGSTOP)
		n.stopped = true
	}
}

// Cont continues node i (SIGCONT).
func (c *Cluster) Cont(i int) {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && n.stopped {
		_ = n.cmd.Process.Signal(syscall.SIGCONT)
		n.stopped = false
	}
}

func (c *Cluster) conn(i int) (*grpc.ClientConn, error) {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.conn == nil {
		conn, err := grpc.NewClient(n.Addr, meridianpb.DialOptions(insecure.NewCredentials())...)
		if err != nil {
			return nil, err
		}
		n.conn = conn
	}
	return n.conn, nil
}

// Admin returns node i's admin API.
func (c *Cluster) Admin(i int) (meridianpb.AdminClient, error) {
	conn, err := c.conn(i)
	if err != nil {
		return nil, err
	}
	return meridianpb.NewAdminClient(conn), nil
}

// API returns node i's client API (unbatched), for requests pinned to it.
func (c *Cluster) API(i int) (meridianpb.MeridianClient, error) {
	conn, err := c.conn(i)
	if err != nil {
		return nil, err
	}
	return meridianpb.NewMeridianClient(conn), nil
}

// Status returns node i's status (bounded by a second).
func (c *Cluster) Status(ctx context.Context, i int) (*meridianpb.StatusResponse, error) {
	if !c.Up(i) {
		return nil, fmt.Errorf("chaos: %s is down", c.Nodes[i].Name())
	}
	admin, err := c.Admin(i)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return admin.Status(ctx, &meridianpb.StatusRequest{})
}

// Leaders returns, for every group some node reports, the node leading it
// with a valid lease, and whether every group has one.
func (c *Cluster) Leaders(ctx context.Context) (map[uint64]int, bool) {
	out := map[uint64]int{}
	groups := map[uint64]bool{}
	for i := range c.Nodes {
		st, err := c.Status(ctx, i)
		if err != nil {
			continue
		}
		for _, g := range st.Groups {
			groups[g.Group] = true
			if g.Role == "leader" && st.Clock.Healthy && g.LeaseEndNs > st.Clock.LatestNs {
				out[g.Group] = i
			}
		}
	}
	return out, len(groups) > 0 && len(out) == len(groups)
}

// WaitLeaders waits until every group has a leader.
func (c *Cluster) WaitLeaders(ctx context.Context, within time.Duration) (map[uint64]int, error) {
	deadline := time.Now().Add(within)
	for {
		l, ok := c.Leaders(ctx)
		if ok {
			return l, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return l, fmt.Errorf("chaos: not every group has a leader after %s (leaders %v)", within, l)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Netem sends a latency-simulator change to every running node: each node
// applies the cuts and delays on its own connections.
func (c *Cluster) Netem(ctx context.Context, req *meridianpb.NetemRequest) error {
	var errs []error
	for i := range c.Nodes {
		if !c.Up(i) {
			continue
		}
		admin, err := c.Admin(i)
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = admin.Netem(cctx, req)
			cancel()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Nodes[i].Name(), err))
		}
	}
	return errors.Join(errs...)
}

// SetNTP changes every NTP server of node i.
func (c *Cluster) SetNTP(i int, f func(*ntptest.Behavior)) {
	for _, s := range c.Nodes[i].NTP {
		s.Set(f)
	}
}

// HealClocks makes every node's NTP servers tell the time again.
func (c *Cluster) HealClocks() {
	for i := range c.Nodes {
		c.SetNTP(i, func(b *ntptest.Behavior) { b.Offset, b.Drop = 0, false })
	}
}

// Close kills every process and closes the NTP servers and connections.
func (c *Cluster) Close() {
	for i, n := range c.Nodes {
		c.Kill(i)
		for _, s := range n.NTP {
			s.Close()
		}
		if n.conn != nil {
			_ = n.conn.Close()
		}
	}
}

func netListen() (interface {
	Addr() net.Addr
	Close() error
}, error) {
	return net.Listen("tcp", "127.0.0.1:0")
}
