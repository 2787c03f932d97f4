// Package chromium runs Debian's headless Chromium for browser tests of
// the debug pages.
package chromium

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
)

var installOnce sync.Once

// Find returns the path of a Chromium binary, installing Debian's package
// once when it is missing and we may (root with apt-get); the test is
// skipped when there is none.
func Find(t testing.TB) string {
	t.Helper()
	look := func() string {
		for _, name := range []string{"chromium", "chromium-browser", "/usr/bin/chromium"} {
			if p, err := exec.LookPath(name); err == nil {
				return p
			}
		}
		return ""
	}
	if p := look(); p != "" {
		return p
	}
	installOnce.Do(func() {
		if os.Geteuid() != 0 {
			return
		}
		if _, err := exec.LookPath("apt-get"); err != nil {
			return
		}
		t.Log("installing Debian's chromium for the browser test")
		cmd := exec.Command("apt-get", "install", "-y", "chromium")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("apt-get install chromium: %v\n%s", err, out)
		}
	})
	if p := look(); p != "" {
		return p
	}
	t.Skip("no Chromium on this machine and it cannot be installed")
	return ""
}

// DumpDOM loads url in headless Chromium (a fresh profile, no network
// chatter) and returns the DOM after scripts ran. Chromium runs without
// its zygote and /dev/shm, which fail in small containers; a browser that
// still dies from a signal (a crash says nothing about the page) is
// started again, up to three times.
func DumpDOM(ctx context.Context, browser, url string) (string, error) {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var out string
		var crashed bool
		out, crashed, err = dumpDOM(ctx, browser, url)
		if err == nil || !crashed || ctx.Err() != nil {
			return out, err
		}
	}
	return "", err
}

func dumpDOM(ctx context.Context, browser, url string) (dom string, crashed bool, err error) {
	dir, err := os.MkdirTemp("", "meridian-chromium-")
	if err != nil {
		return "", false, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--no-zygote", "--disable-dev-shm-usage",
		"--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+dir,
		"--virtual-time-budget=2000", "--dump-dom", url)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				crashed = true
			}
		}
		return "", crashed, fmt.Errorf("chromium --dump-dom %s: %v\n%s", url, err, stderr)
	}
	return string(out), false, nil
}
