package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/meridiandb/meridian/internal/chronytest"
	"github.com/meridiandb/meridian/internal/proctest"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(proctest.Binary(t), args...).CombinedOutput()
	return string(out), err
}

func TestHelpExplainsEveryCommand(t *testing.T) {
	for _, c := range [][]string{{"--help"}, {"clock", "--help"}, {"start", "--help"}, {"init", "--help"}, {"shell", "--help"},
		{"workload", "run", "--help"}, {"node", "status", "--help"}, {"sim", "paxos", "--help"}, {"sim", "txn", "--help"}, {"demo", "--help"}} {
		out, err := run(t, c...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
		if !strings.Contains(out, "Usage:") || !strings.Contains(out, "Flags:") && len(c) > 1 {
			t.Errorf("%v: no usage or flags in\n%s", c, out)
		}
	}
}

func TestClockJSONAgainstChrony(t *testing.T) {
	addr := chronytest.Start(t)
	out, err := run(t, "clock", "--ntp", addr, "-w", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"earliest_ns", "latest_ns", "epsilon_ns", "servers"} {
		if _, ok := r[k]; !ok {
			t.Errorf("missing %q in %s", k, out)
		}
	}
	if r["healthy"] != true {
		t.Errorf("clock against chronyd not healthy: %s", out)
	}
}

func TestClockUnhealthyExitsNonZero(t *testing.T) {
	out, err := run(t, "clock", "--ntp", "127.0.0.1:1", "--timeout", "200ms")
	if err == nil {
		t.Fatalf("an unreachable server should make the clock unhealthy and the exit status 1:\n%s", out)
	}
	if !strings.Contains(out, "UNHEALTHY") && !strings.Contains(out, "NO (") {
		t.Errorf("output does not say unhealthy:\n%s", out)
	}
}

func TestSimJSON(t *testing.T) {
	for _, c := range []struct {
		args []string
		keys []string
	}{
		{[]string{"sim", "paxos", "--seeds", "2", "--duration", "10s", "--faults", "all", "-w", "json"}, []string{"seeds", "violations", "speedup"}},
		{[]string{"sim", "txn", "--seeds", "1", "--duration", "10s", "-w", "json"}, []string{"seeds", "violations", "commit_p50_ms", "commit_bound_ms", "commit_wait_exposed_ms"}},
	} {
		out, err := run(t, c.args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", c.args, err, out)
		}
		var r map[string]any
		if err := json.Unmarshal(bytes.TrimSpace([]byte(out)), &r); err != nil {
			t.Fatalf("%v: not one JSON object: %v\n%s", c.args, err, out)
		}
		for _, k := range c.keys {
			if _, ok := r[k]; !ok {
				t.Errorf("%v: missing %q", c.args, k)
			}
		}
	}
}

func TestSimNegativeControlExitsWithViolations(t *testing.T) {
	out, err := run(t, "sim", "paxos", "--seeds", "2", "--duration", "15s", "--faults", "partition", "--bug", "lease-overlap")
	if err == nil || !strings.Contains(out, "VIOLATION") || !strings.Contains(out, "replay: meridian sim paxos --seed") {
		t.Fatalf("the negative control should report violations with replay commands and fail:\n%s", out)
	}
}

func TestBadFlagsAreRefused(t *testing.T) {
	for _, c := range [][]string{
		{"clock", "-w", "yaml"},
		{"start", "--insecure"},
		{"start", "--region", "r", "--data-dir", "/tmp/x"},
		{"sim", "txn", "--placement", "nowhere", "--seeds", "1"},
		{"workload", "run", "ycsb", "--insecure"},
	} {
		if out, err := run(t, c...); err == nil {
			t.Errorf("%v accepted:\n%s", c, out)
		}
	}
}
