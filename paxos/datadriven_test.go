package paxos

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A small interpreter for scenario scripts in the style of etcd raft's
// datadriven tests. A script is a sequence of blocks:
//
//	# comments and blank lines are kept as they are
//	command arg key=value key=(a,b)
//	----
//	expected output (no blank lines)
//
// The test runs every command and compares its output with the expected
// text; `go test ./paxos/ -run TestScenarios -rewrite` writes the actual
// output back into the scripts instead.

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the scenario scripts under testdata/")

// ddArg is one argument: a bare word (key only) or key=value, where a
// value in parentheses is a comma-separated list.
type ddArg struct {
	key  string
	vals []string
}

type ddCmd struct {
	pos      string // file:line, for messages
	name     string
	args     []ddArg
	raw      string
	expected string
}

type ddFile struct {
	blocks []ddBlock
	tail   []string // trailing lines after the last block
}

type ddBlock struct {
	pre []string // comment and blank lines before the command
	cmd ddCmd
}

func parseDD(path string) (*ddFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	f := &ddFile{}
	var pre []string
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			pre = append(pre, line)
			continue
		}
		cmd := ddCmd{pos: fmt.Sprintf("%s:%d", filepath.Base(path), i+1), raw: trimmed}
		if i+1 >= len(lines) || lines[i+1] != "----" {
			return nil, fmt.Errorf("%s: command %q not followed by ----", cmd.pos, trimmed)
		}
		i += 2
		var out []string
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			out = append(out, lines[i])
		}
		i-- // the loop's i++ lands on the blank line, kept as pre of the next block
		cmd.expected = strings.Join(out, "\n")
		cmd.name, cmd.args, err = parseDDCommand(trimmed)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", cmd.pos, err)
		}
		f.blocks = append(f.blocks, ddBlock{pre: pre, cmd: cmd})
		pre = nil
	}
	f.tail = pre
	return f, nil
}

func parseDDCommand(s string) (string, []ddArg, error) {
	fields := strings.Fields(s)
	var args []ddArg
	for _, fl := range fields[1:] {
		k, v, ok := strings.Cut(fl, "=")
		if !ok {
			args = append(args, ddArg{key: fl})
			continue
		}
		if strings.HasPrefix(v, "(") {
			if !strings.HasSuffix(v, ")") {
				return "", nil, fmt.Errorf("unbalanced parentheses in %q", fl)
			}
			v = strings.TrimSuffix(strings.TrimPrefix(v, "("), ")")
			var vals []string
			if v != "" {
				vals = strings.Split(v, ",")
			}
			args = append(args, ddArg{key: k, vals: vals})
			continue
		}
		args = append(args, ddArg{key: k, vals: []string{v}})
	}
	return fields[0], args, nil
}

// has reports whether the bare word or key k is present.
func (c *ddCmd) has(k string) bool {
	for _, a := range c.args {
		if a.key == k {
			return true
		}
	}
	return false
}

// val returns the single value of key k, or def.
func (c *ddCmd) val(k, def string) string {
	for _, a := range c.args {
		if a.key == k && len(a.vals) == 1 {
			return a.vals[0]
		}
	}
	return def
}

// ids returns the bare numeric arguments as replica IDs.
func (c *ddCmd) ids() ([]ReplicaID, error) {
	var out []ReplicaID
	for _, a := range c.args {
		if a.vals != nil || a.key == "|" {
			continue
		}
		v, err := strconv.ParseUint(a.key, 10, 64)
		if err != nil {
			continue // a flag word
		}
		out = append(out, ReplicaID(v))
	}
	return out, nil
}

// idList parses key=(1,2,3) (or key=1) into replica IDs.
func (c *ddCmd) idList(k string) ([]ReplicaID, error) {
	for _, a := range c.args {
		if a.key != k {
			continue
		}
		var out []ReplicaID
		for _, v := range a.vals {
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: bad replica id %q", k, v)
			}
			out = append(out, ReplicaID(id))
		}
		return out, nil
	}
	return nil, nil
}

// runDD runs every block of the script at path through run, which returns
// the command's output.
func runDD(t *testing.T, path string, run func(t *testing.T, c *ddCmd) string) {
	f, err := parseDD(path)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, b := range f.blocks {
		c := b.cmd
		actual := strings.TrimRight(run(t, &c), "\n")
		if actual == "" {
			actual = "ok"
		}
		// Output never holds blank lines: they end a block.
		actual = strings.ReplaceAll(actual, "\n\n", "\n")
		for _, l := range b.pre {
			out.WriteString(l + "\n")
		}
		out.WriteString(c.raw + "\n----\n" + actual + "\n")
		if !*rewrite && actual != c.expected {
			t.Fatalf("%s: %s\nexpected:\n%s\ngot:\n%s", c.pos, c.raw, c.expected, actual)
		}
		if t.Failed() {
			return
		}
	}
	for _, l := range f.tail {
		out.WriteString(l + "\n")
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
