// Package proctest holds what the tests that start real `meridian start`
// processes share: when they run, and the binary they run.
package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/meridiandb/meridian/internal/invariants"
)

// Skip skips a test that starts real processes with -short (the -race
// pass) and when MERIDIAN_PROCESS_TESTS=0: `make test` runs them once, in
// its -tags invariants pass (whose node binary asserts the invariants
// too), not again in the plain pass.
func Skip(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	if os.Getenv("MERIDIAN_PROCESS_TESTS") == "0" {
		t.Skip("starts real processes; skipped with MERIDIAN_PROCESS_TESTS=0")
	}
}

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// Binary returns the meridian binary, built once per test binary (with
// -tags invariants when the tests run with it, so that the processes
// assert the invariants too).
func Binary(t testing.TB) string {
	t.Helper()
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meridian-bin-")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath = filepath.Join(dir, "meridian")
		args := []string{"build", "-o", binaryPath}
		if invariants.Enabled {
			args = append(args, "-tags", "invariants")
		}
		out, err := exec.Command("go", append(args, "github.com/meridiandb/meridian/cmd/meridian")...).CombinedOutput()
		if err != nil {
			binaryErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	return binaryPath
}
