package chaos

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A cluster whose processes cannot start fails with their logs' ends in
// the error, not a bare timeout.
func TestStartClusterFailureShowsLogs(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "meridian")
	script := "#!/bin/sh\necho \"no such flag: $2\" >&2\nexit 3\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := StartCluster(ctx, ClusterConfig{Binary: bin, Dir: filepath.Join(dir, "data")})
	if err == nil {
		t.Fatal("a cluster of processes that exit at once started")
	}
	for _, want := range []string{"n1 log", "no such flag: --insecure", "n3 log"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
