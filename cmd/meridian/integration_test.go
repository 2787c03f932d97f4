package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meridiandb/meridian/client"
	"github.com/meridiandb/meridian/internal/proctest"
	"github.com/meridiandb/meridian/rpc/meridianpb"
)

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is one `meridian start` process.
type proc struct {
	region, addr, dir string
	cmd               *exec.Cmd
	log               *bytes.Buffer
}

func (p *proc) start(t *testing.T, bin, join string) {
	t.Helper()
	args := []string{"start", "--insecure", "--region", p.region, "--listen", p.addr, "--data-dir", p.dir,
		"--epsilon", "1ms", "--log-level", "info", "--version-retention", "2s", "--gc-interval", "1s"}
	if join != "" {
		args = append(args, "--join", join)
	}
	p.cmd = exec.Command(bin, args...)
	p.log = &bytes.Buffer{}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_, _ = p.cmd.Process.Wait()
	}
	p.cmd = nil
}

func adminStatus(ctx context.Context, addr string) (*meridianpb.StatusResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return meridianpb.NewAdminClient(conn).Status(ctx, &meridianpb.StatusRequest{})
}

// TestProcessesBankSurvivesKill runs three `meridian start` processes (one
// per region, spread placement), the bank workload through the client
// library, SIGKILLs the node leading a group mid-run and restarts it:
// totals stay conserved, no acknowledged transfer is lost, and transfers
// commit again after the restart.
func TestProcessesBankSurvivesKill(t *testing.T) {
	proctest.Skip(t)
	bin := proctest.Binary(t)
	base := t.TempDir()
	regions := []string{"us-east1", "us-west1", "europe-west1"}
	procs := make([]*proc, 3)
	for i := range procs {
		procs[i] = &proc{region: regions[i], addr: freePort(t), dir: filepath.Join(base, fmt.Sprintf("n%d", i))}
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill()
		}
	})
	for i, p := range procs {
		join := ""
		if i > 0 {
			join = procs[0].addr
		}
		p.start(t, bin, join)
	}
	// init, once every node answers and has joined.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.Command(bin, "init", "--insecure", "--host", procs[0].addr, "--policy", "spread", "--replicas", "3", "--lease", "2s").CombinedOutput()
		if err == nil && bytes.Contains(out, []byte("3 nodes")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("init: %v\n%s\nnode log:\n%s", err, out, procs[0].log)
		}
		time.Sleep(300 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var addrs []string
	for _, p := range procs {
		addrs = append(addrs, p.addr)
	}
	c, err := client.New(ctx, client.Config{Addrs: addrs, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const accounts, initial = 20, 100
	acct := func(i int) []byte { return []byte(fmt.Sprintf("%c/bank/%02d", 'a'+i%26, i)) }
	var ms []client.Mutation
	for i := 0; i < accounts; i++ {
		ms = append(ms, client.Put(acct(i), []byte(strconv.Itoa(initial))))
	}
	if _, err := c.Apply(ctx, ms); err != nil {
		t.Fatalf("creating accounts: %v", err)
	}

	// Transfers until told to stop; every acknowledged one also wrote a
	// ledger key, which must survive.
	var acked sync.Map
	var nAcked, nFailed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a, b := (w*7+i)%accounts, (w*3+i*5+1)%accounts
				if a == b {
					continue
				}
				ledger := []byte(fmt.Sprintf("%c/ledger/%d-%d", 'a'+(w+i)%26, w, i))
				tctx, tcancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := c.ReadWriteTransaction(tctx, func(ctx context.Context, t *client.ReadWriteTransaction) error {
					va, err := t.Get(ctx, acct(a))
					if err != nil {
						return err
					}
					vb, err := t.Get(ctx, acct(b))
					if err != nil {
						return err
					}
					x, _ := strconv.Atoi(string(va))
					y, _ := strconv.Atoi(string(vb))
					return t.BufferWrite(client.Put(acct(a), []byte(strconv.Itoa(x-1))), client.Put(acct(b), []byte(strconv.Itoa(y+1))),
						client.Put(ledger, []byte("1")))
				})
				tcancel()
				if err != nil {
					nFailed.Add(1)
					continue
				}
				acked.Store(string(ledger), true)
				nAcked.Add(1)
			}
		}(w)
	}

	time.Sleep(3 * time.Second)
	// Kill the node leading group 1.
	victim := -1
	for i, p := range procs {
		st, err := adminStatus(ctx, p.addr)
		if err != nil {
			continue
		}
		for _, g := range st.Groups {
			if g.Group == 1 && g.Role == "leader" {
				victim = i
			}
		}
	}
	if victim < 0 {
		t.Fatal("no leader of group 1 found")
	}
	before := nAcked.Load()
	t.Logf("killing node %d (%s), the leader of group 1, after %d transfers", victim, procs[victim].addr, before)
	procs[victim].kill()
	time.Sleep(4 * time.Second)
	procs[victim].start(t, bin, procs[(victim+1)%3].addr)
	time.Sleep(5 * time.Second)
	afterRestart := nAcked.Load()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	final := nAcked.Load()
	t.Logf("transfers acknowledged: %d before the kill, %d by the restart, %d at the end (%d failed attempts)", before, afterRestart, final, nFailed.Load())
	if final <= afterRestart {
		t.Fatalf("no transfer committed after the restart (%d acknowledged before, %d at the end)\nrestarted node log:\n%s",
			afterRestart, final, procs[victim].log)
	}

	// Totals conserved, at one strong timestamp.
	ro := c.ReadOnlyTransaction()
	sum := 0
	for i := 0; i < accounts; i++ {
		v, err := ro.Get(ctx, acct(i))
		if err != nil {
			t.Fatalf("reading account %d: %v", i, err)
		}
		n, _ := strconv.Atoi(string(v))
		sum += n
	}
	if sum != accounts*initial {
		t.Fatalf("bank total %d, want %d", sum, accounts*initial)
	}
	// No acknowledged transfer lost.
	lost := 0
	acked.Range(func(k, _ any) bool {
		if _, err := c.Single().Get(ctx, []byte(k.(string))); err != nil {
			if errors.Is(err, client.ErrNotFound) {
				lost++
			} else {
				t.Errorf("reading %s: %v", k, err)
			}
		}
		return true
	})
	if lost > 0 {
		t.Fatalf("%d acknowledged transfers lost", lost)
	}
	// Version GC (2 s retention) ran through all of it and collected.
	collected := false
	for _, p := range procs {
		p.kill() // its log is complete once it has exited
		collected = collected || regexp.MustCompile(`msg="version gc".* removed=[1-9]`).Match(p.log.Bytes())
	}
	if !collected {
		t.Errorf("no node logged a version GC pass that removed versions")
	}
}
