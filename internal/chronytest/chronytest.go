// Package chronytest starts real NTP servers for tests: Debian's chronyd in
// local mode (it serves the system clock as a stratum-8 source on a loopback
// port and, with -x, never touches the system clock).
//
// Each server runs in the foreground (-d) as a child process of the test, in
// its own process group, and is killed by t.Cleanup whether the test passes
// or fails (and, on Linux, by the kernel if the test binary dies first).
// When chronyd is not installed and cannot be installed, the test is skipped
// with the reason.
package chronytest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/beevik/ntp"

	"github.com/meridiandb/meridian/internal/syncbuf"
)

// ReadyTimeout is how long Start waits for a new chronyd to answer.
const ReadyTimeout = 5 * time.Second

var (
	installOnce sync.Once
	installLog  string
	installErr  error
)

// findChronyd returns the path of chronyd, installing the chrony package
// once per process (as root, with apt-get) when it is missing.
func findChronyd(t testing.TB) (string, error) {
	if p, err := lookChronyd(); err == nil {
		return p, nil
	}
	installOnce.Do(func() {
		if os.Geteuid() != 0 {
			installErr = errors.New("not root, cannot install chrony")
			return
		}
		apt, err := exec.LookPath("apt-get")
		if err != nil {
			installErr = errors.New("apt-get not found, cannot install chrony")
			return
		}
		t.Logf("chronytest: chronyd not found; running %s install -y chrony", apt)
		cmd := exec.Command(apt, "install", "-y", "chrony")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		installLog = string(out)
		if err != nil {
			installErr = fmt.Errorf("apt-get install -y chrony: %v", err)
		}
	})
	p, err := lookChronyd()
	if err != nil {
		if installErr != nil {
			return "", fmt.Errorf("chronyd not found (%v)", installErr)
		}
		return "", errors.New("chronyd not found in PATH or /usr/sbin after installing chrony")
	}
	return p, nil
}

func lookChronyd() (string, error) {
	if p, err := exec.LookPath("chronyd"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/chronyd", "/sbin/chronyd", "/usr/local/sbin/chronyd"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// Start runs one chronyd serving NTP on a free loopback UDP port and returns
// its address, "127.0.0.1:PORT". The server is stopped when the test ends.
func Start(t testing.TB) (addr string) {
	t.Helper()
	bin, err := findChronyd(t)
	if err != nil {
		if installLog != "" {
			t.Logf("chronytest: apt-get output:\n%s", installLog)
		}
		t.Skipf("chronytest: skipping, no real NTP server available: %v "+
			"(install Debian's chrony: apt-get install -y chrony)", err)
	}
	var lastErr error
	// A port found free can be taken by someone else before chronyd binds
	// it; retry with another.
	for attempt := 0; attempt < 3; attempt++ {
		addr, err := start(t, bin)
		if err == nil {
			return addr
		}
		lastErr = err
		t.Logf("chronytest: attempt %d: %v", attempt+1, err)
	}
	if os.Geteuid() != 0 {
		t.Skipf("chronytest: skipping, chronyd does not start as a non-root user: %v", lastErr)
	}
	t.Fatalf("chronytest: chronyd did not start: %v", lastErr)
	return ""
}

// StartN starts n independent chronyd servers.
func StartN(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = Start(t)
	}
	return addrs
}

func start(t testing.TB, bin string) (string, error) {
	port, err := freeUDPPort()
	if err != nil {
		return "", err
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "chrony.conf")
	text := fmt.Sprintf(`port %d
local stratum 8
allow 127.0.0.1
bindaddress 127.0.0.1
driftfile %s
pidfile %s
cmdport 0
`, port, filepath.Join(dir, "drift"), filepath.Join(dir, "chronyd.pid"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return "", err
	}
	// -d: stay in the foreground (a child we can kill), log to stderr.
	// -x: never adjust the system clock.
	args := []string{"-d", "-x", "-f", conf}
	if os.Geteuid() == 0 {
		// Keep root instead of dropping to the _chrony user, who could not
		// write into the test's private temporary directory.
		args = append(args, "-u", "root")
	} else {
		// Allow a non-root start (chrony >= 4.0).
		args = append(args, "-U")
	}
	cmd := exec.Command(bin, args...)
	logs := &syncbuf.Buffer{}
	cmd.Stdout = logs
	cmd.Stderr = logs
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		select {
		case <-exited:
			return
		default:
		}
		// The whole process group: chronyd and anything it spawned.
		terminate(cmd)
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			kill(cmd)
			<-exited
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(ReadyTimeout)
	var qerr error
	for {
		select {
		case <-exited:
			return "", fmt.Errorf("chronyd exited early (%v); its log:\n%s", waitErr, logs.String())
		default:
		}
		r, err := ntp.QueryWithOptions("127.0.0.1", ntp.QueryOptions{Port: port, Timeout: 200 * time.Millisecond})
		if err == nil {
			err = r.Validate()
		}
		if err == nil {
			break
		}
		qerr = err
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("chronyd on %s did not answer within %s (last error: %v); its log:\n%s",
				addr, ReadyTimeout, qerr, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("chronytest: log of chronyd on %s:\n%s", addr, logs.String())
		}
	})
	return addr, nil
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}
