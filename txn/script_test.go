package txn

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridiandb/meridian/paxos"
)

// Lock and wound-wait scenarios as scripts, in the manner of CockroachDB's
// lock table tests: every request is stepped explicitly and every answer
// printed as it arrives, so waiting, wounding and timeouts read off the
// page. A script is a sequence of blocks:
//
//	# comment
//	command arg key=value
//	----
//	expected output (no blank lines)
//
// `go test ./txn/ -run TestScripts -rewrite` writes the actual output back.
//
// Keys name their group by their first letter: a/… lives in group 1, b/…
// in group 2, c/… in group 3. Commands:
//
//	cluster [groups=1] [lock-wait=5s] [max-waiters=4096] [txn-timeout=10s] [query-after=2s] [retry=500ms]
//	txn NAME prio=N               declare a transaction (priority: start +N ms; smaller is older)
//	read NAME KEY                 locking read at the key's group leader
//	scan NAME START [END]         locking scan (no END: unbounded)
//	commit NAME [k=v ...] [k= ...] [coord=G]
//	                              commit: participants are the groups read or written (Read set
//	                              where the transaction read), coordinator coord= or the first
//	                              key's group; k= deletes
//	rollback NAME [group=G]
//	advance DUR                   let virtual time pass (1 ms steps)
//	drop TYPE... | drop none      drop txn Msgs of these types (Decide, Vote, Prepare, Query, Outcome)
//	partition G / heal            drop / deliver group G's Paxos messages
//	pending                       the requests not answered yet
//	locks [G]                     the lock table of G's leader (default 1)
//
// Every command prints the answers that arrived while it ran, one per line:
// `#ID NAME op: result`, where errors print as the sentinel errors.Is
// matches, then the message (transaction IDs replaced by names).

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the scripts under testdata/")

func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scripts in testdata/")
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			s := &script{t: t, txns: map[string]*scriptTxn{}, labels: map[uint64]string{}}
			runScript(t, path, s.run)
		})
	}
}

type scriptTxn struct {
	name  string
	meta  Meta
	reads map[uint64]bool // groups read
}

type script struct {
	t      *testing.T
	c      *hCluster
	txns   map[string]*scriptTxn
	order  []string
	labels map[uint64]string // request ID → "NAME op"
	seen   int               // arrivals printed so far
	drop   map[MsgType]bool
	cut    map[uint64]bool
}

type scriptCmd struct {
	pos      string
	raw      string
	name     string
	words    []string          // positional arguments
	kv       map[string]string // key=value arguments (values may be empty)
	expected string
}

func (c *scriptCmd) dur(k string, def time.Duration) time.Duration {
	v, ok := c.kv[k]
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		panic(fmt.Sprintf("%s: %s=%q: %v", c.pos, k, v, err))
	}
	return d
}

func (c *scriptCmd) num(k string, def int) int {
	v, ok := c.kv[k]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		panic(fmt.Sprintf("%s: %s=%q: %v", c.pos, k, v, err))
	}
	return n
}

func runScript(t *testing.T, path string, run func(c *scriptCmd) string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var out strings.Builder
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			out.WriteString(line + "\n")
			continue
		}
		cmd := &scriptCmd{pos: fmt.Sprintf("%s:%d", filepath.Base(path), i+1), raw: trimmed, kv: map[string]string{}}
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s: command %q not followed by ----", cmd.pos, trimmed)
		}
		var exp []string
		for i += 2; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			exp = append(exp, lines[i])
		}
		i-- // the blank line is echoed by the loop
		cmd.expected = strings.Join(exp, "\n")
		fields := strings.Fields(trimmed)
		cmd.name = fields[0]
		for _, f := range fields[1:] {
			if k, v, ok := strings.Cut(f, "="); ok && !strings.Contains(k, "/") {
				cmd.kv[k] = v
				continue
			}
			cmd.words = append(cmd.words, f)
		}
		actual := strings.TrimRight(run(cmd), "\n")
		if actual == "" {
			actual = "ok"
		}
		out.WriteString(trimmed + "\n----\n" + actual + "\n")
		if !*rewrite && actual != cmd.expected {
			t.Fatalf("%s: %s\nexpected:\n%s\ngot:\n%s", cmd.pos, trimmed, cmd.expected, actual)
		}
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func keyGroup(k string) uint64 { return uint64(k[0]-'a') + 1 }

func (s *script) txn(c *scriptCmd, i int) *scriptTxn {
	if i >= len(c.words) {
		s.t.Fatalf("%s: missing transaction name", c.pos)
	}
	x := s.txns[c.words[i]]
	if x == nil {
		s.t.Fatalf("%s: unknown transaction %q", c.pos, c.words[i])
	}
	return x
}

func (s *script) run(c *scriptCmd) string {
	var b strings.Builder
	switch c.name {
	case "cluster":
		cfg := Config{LockWait: c.dur("lock-wait", 0), MaxWaiters: c.num("max-waiters", 0), TxnTimeout: c.dur("txn-timeout", 0),
			QueryAfter: c.dur("query-after", 0), RetryInterval: c.dur("retry", 0)}
		s.c = newCluster(s.t, hOpts{groups: c.num("groups", 1), cfg: cfg})
		s.drop, s.cut = map[MsgType]bool{}, map[uint64]bool{}
		s.c.dropTxn = func(_ *hReplica, m Msg) bool { return s.drop[m.Type] }
		s.c.dropPaxos = func(m paxos.Message) bool { return s.cut[m.Group] }
		for _, g := range s.c.groups {
			fmt.Fprintf(&b, "group %d: leader %s\n", g.id, s.c.leader(g.id))
		}
		return b.String()
	case "txn":
		name := c.words[0]
		x := &scriptTxn{name: name, meta: newMeta(c.num("prio", 0)), reads: map[uint64]bool{}}
		s.txns[name] = x
		s.order = append(s.order, name)
		return fmt.Sprintf("%s: priority +%dms", name, c.num("prio", 0))
	case "read", "scan":
		x := s.txn(c, 0)
		key := c.words[1]
		g := keyGroup(key)
		x.reads[g] = true
		var req Request
		if c.name == "read" {
			req = readReq(x.meta, key)
		} else {
			end := ""
			if len(c.words) > 2 {
				end = c.words[2]
			}
			req = scanReq(x.meta, key, end)
		}
		s.request(g, req, x.name+" "+strings.Join(append([]string{c.name}, c.words[1:]...), " "))
	case "commit":
		x := s.txn(c, 0)
		byGroup := map[uint64]*Participant{}
		var groups []uint64
		get := func(g uint64) *Participant {
			if byGroup[g] == nil {
				byGroup[g] = &Participant{Group: g}
				groups = append(groups, g)
			}
			return byGroup[g]
		}
		for _, w := range c.words[1:] {
			p := get(keyGroup(w))
			p.Writes = append(p.Writes, muts(w)...)
		}
		for _, g := range sortedKeys(x.reads) {
			get(g).Read = true
		}
		coord := uint64(c.num("coord", 0))
		if coord == 0 {
			coord = groups[0]
		}
		var parts []Participant
		slices.Sort(groups)
		for _, g := range groups {
			parts = append(parts, *byGroup[g])
		}
		s.request(coord, commitReq(x.meta, parts...), x.name+" commit")
	case "rollback":
		x := s.txn(c, 0)
		s.request(uint64(c.num("group", 1)), Request{Kind: ReqRollback, Txn: x.meta}, x.name+" rollback")
	case "advance":
		d, err := time.ParseDuration(c.words[0])
		if err != nil {
			s.t.Fatalf("%s: %v", c.pos, err)
		}
		s.c.advance(d)
		fmt.Fprintf(&b, "now %s\n", s.c.rel(s.c.now))
	case "drop":
		s.drop = map[MsgType]bool{}
		for _, w := range c.words {
			if w == "none" {
				continue
			}
			found := false
			for typ := MsgPrepare; typ <= MsgCloseRequest; typ++ {
				if typ.String() == w {
					s.drop[typ], found = true, true
				}
			}
			if !found {
				s.t.Fatalf("%s: unknown message type %q", c.pos, w)
			}
		}
	case "partition":
		s.cut[uint64(c.num("group", 1))] = true
	case "heal":
		s.cut = map[uint64]bool{}
		s.c.stabilize()
	case "pending":
		var ids []uint64
		for id := range s.labels {
			if s.c.pending(id) {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		for _, id := range ids {
			fmt.Fprintf(&b, "#%d %s: waiting\n", id, s.labels[id])
		}
		if len(ids) == 0 {
			b.WriteString("nothing pending\n")
		}
	case "locks":
		g := uint64(c.num("group", 1))
		l := s.c.leader(g)
		if l == nil {
			return "no leader"
		}
		b.WriteString(s.lockDump(l))
	default:
		s.t.Fatalf("%s: unknown command %q", c.pos, c.name)
	}
	b.WriteString(s.newAnswers())
	return b.String()
}

func (s *script) request(g uint64, req Request, label string) {
	if s.c.leader(g) == nil {
		s.t.Fatalf("group %d has no serving leader", g)
	}
	id := s.c.send(g, nil, req)
	s.labels[id] = label
}

// newAnswers prints the answers that arrived since the last call.
func (s *script) newAnswers() string {
	var b strings.Builder
	for _, id := range s.c.arrivals[s.seen:] {
		a := s.c.answers[id]
		fmt.Fprintf(&b, "#%d %s: %s\n", id, s.labels[id], s.describe(a))
	}
	s.seen = len(s.c.arrivals)
	return b.String()
}

var sentinels = []struct {
	err  error
	name string
}{
	{ErrAborted, "ErrAborted"}, {ErrNotLeader, "ErrNotLeader"}, {ErrBusy, "ErrBusy"},
	{ErrTimeout, "ErrTimeout"}, {ErrUnknownTxn, "ErrUnknownTxn"}, {ErrInvalid, "ErrInvalid"},
}

func (s *script) describe(a answer) string {
	if a.read {
		if len(a.kvs) == 0 {
			return "read nothing"
		}
		var parts []string
		for _, kv := range a.kvs {
			parts = append(parts, fmt.Sprintf("%s=%s@%s", kv.key, kv.value, s.c.rel(kv.ts)))
		}
		return "read " + strings.Join(parts, " ")
	}
	if a.err != nil {
		var is []string
		for _, se := range sentinels {
			if errors.Is(a.err, se.err) {
				is = append(is, se.name)
			}
		}
		return fmt.Sprintf("%s: %s", strings.Join(is, ","), s.names(a.err.Error()))
	}
	if a.resp.TS != 0 {
		return fmt.Sprintf("ok ts=%s", s.c.rel(a.resp.TS))
	}
	return "ok"
}

// names replaces transaction IDs with the script's names.
func (s *script) names(msg string) string {
	for name, x := range s.txns {
		msg = strings.ReplaceAll(msg, x.meta.ID.String(), name)
	}
	return msg
}

func (s *script) lockDump(l *hReplica) string {
	var b strings.Builder
	lt := l.g.locks
	for _, name := range s.order {
		id := s.txns[name].meta.ID
		if !lt.holds(id) {
			continue
		}
		keys, spans := lt.shared(id)
		var parts []string
		if len(keys) > 0 {
			parts = append(parts, "shared "+strings.Join(keys, ","))
		}
		for _, sp := range spans {
			end := "∞"
			if sp.end != nil {
				end = string(sp.end)
			}
			parts = append(parts, fmt.Sprintf("span [%s,%s)", sp.start, end))
		}
		if h := lt.held[id]; h != nil && len(h.writes) > 0 {
			parts = append(parts, "exclusive "+strings.Join(h.writes, ","))
		}
		st := "?"
		if t := l.g.txns[id]; t != nil {
			st = [...]string{"active", "committing", "preparing", "prepared", "aborted"}[t.status]
		}
		fmt.Fprintf(&b, "%s (%s): %s\n", name, st, strings.Join(parts, "; "))
	}
	for _, w := range l.g.waits {
		name := "?"
		for n, x := range s.txns {
			if x.meta.ID == w.meta.ID {
				name = n
			}
		}
		fmt.Fprintf(&b, "waiting: %s until %s\n", name, s.c.rel(w.deadline))
	}
	if b.Len() == 0 {
		return "no locks\n"
	}
	return b.String()
}
