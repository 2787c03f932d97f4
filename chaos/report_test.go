package chaos

import (
	"bytes"
	"encoding/json"
	"image/png"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot/vg"
)

// t0 is the synthetic run's start (wall-clock ns).
const t0 = int64(1_700_000_000_000_000_000)

// synthRun is a synthetic 20 s run: n ops by 16 processes over two
// workloads, a partition from 5 s to 9 s (higher latency, fails and infos
// during it, some infos that never completed) and a leader kill at 13 s.
func synthRun(n int) ([]Op, []Fault) {
	rng := rand.New(rand.NewSource(1))
	const dur = 20 * int64(time.Second)
	part := Fault{
		Family: "partition", Name: "partition {1} | {2,3}", Nodes: []int{1},
		Start: t0 + 5*int64(time.Second), End: t0 + 9*int64(time.Second),
		Recovery: map[uint64]int64{1: int64(1200 * time.Millisecond), 2: int64(800 * time.Millisecond)},
	}
	kill := Fault{
		Family: "process", Name: "kill leader of group 3", Nodes: []int{2},
		Start: t0 + 13*int64(time.Second), End: t0 + 13*int64(time.Second) + int64(400*time.Millisecond),
		Recovery: map[uint64]int64{2: int64(2 * time.Second)},
		Stalled:  []uint64{3},
	}
	ops := make([]Op, n)
	for i := range ops {
		inv := t0 + int64(i)*dur/int64(n) + rng.Int63n(int64(time.Millisecond))
		lat := int64(time.Millisecond) + rng.Int63n(int64(20*time.Millisecond))
		inFault := inv >= part.Start && inv < part.End
		if inFault {
			lat *= 20
		}
		if rng.Intn(50) == 0 {
			lat *= 10
		}
		op := Op{
			Index: i, Process: i % 16, Workload: []string{"bank", "register"}[i%2],
			F: "txn", Type: OK, Invoke: inv, Complete: inv + lat, Node: -1,
			Mops: []Mop{{F: "r", Key: "k" + string(rune('a'+i%5)), Found: true, Read: int64(i)}},
		}
		switch r := rng.Intn(100); {
		case inFault && r < 15:
			op.Type, op.Error = Fail, "unavailable"
		case inFault && r < 25:
			op.Type, op.Error = Info, "timeout"
		case inFault && r < 30:
			op.Type, op.Error, op.Complete = Info, "lost connection", 0
		case r < 2:
			op.Type, op.Error = Fail, "conflict"
		}
		ops[i] = op
	}
	return ops, []Fault{part, kill}
}

func synthVerdicts(valid bool) []Verdict {
	vs := []Verdict{
		{Checker: "bank", Valid: true, Stats: map[string]int{"ops": 1500, "reads": 300}},
		{Checker: "register-linearizable", Valid: true, Stats: map[string]int{"ops": 1500}},
	}
	if !valid {
		vs[1].Valid = false
		vs[1].Anomalies = []Anomaly{
			{Kind: "stale-read", Message: "read of ka at op 17 returned 5,\nbut op 5 had written 7 before it began", Ops: []int{5, 17}},
			{Kind: "stale-read", Message: strings.Repeat("very long message ", 30), Ops: []int{21, 40}},
			{Kind: "lost-write", Message: "write at op 99 acknowledged but never read", Ops: []int{99}},
			{Kind: "lost-write", Message: "write at op 101 acknowledged but never read", Ops: []int{101, 99999}},
		}
	}
	return vs
}

func synthSummary(ops []Op, faults []Fault, verdicts []Verdict) Summary {
	return Summary{
		Name: "partition-kill", Seed: 42, Duration: 20 * time.Second,
		Nodes: 3, Placement: "3 groups x 3 replicas",
		Workloads: CountWorkloads(ops), Verdicts: verdicts, Faults: faults,
		Replay: "meridian chaos run --seed 42 --schedule partition-kill",
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	inchW, inchH := float64(timelineWidth/vg.Inch), float64(timelineHeight/vg.Inch)
	wantW, wantH := int(inchW*timelineDPI+0.5), int(inchH*timelineDPI+0.5) // 1200 x 800
	if b := img.Bounds(); b.Dx() != wantW || b.Dy() != wantH {
		t.Errorf("%s is %dx%d, want %dx%d", path, b.Dx(), b.Dy(), wantW, wantH)
	}
}

func checkSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 1000 || !bytes.Contains(b, []byte("<svg")) || !bytes.Contains(b, []byte("</svg>")) {
		t.Errorf("%s is not a complete SVG (%d bytes)", path, len(b))
	}
}

func TestPlotTimeline(t *testing.T) {
	ops, faults := synthRun(4000)
	dir := t.TempDir()
	svg, pngPath := filepath.Join(dir, "t.svg"), filepath.Join(dir, "t.png")
	if err := PlotTimeline(ops, faults, "synthetic run", svg, pngPath); err != nil {
		t.Fatal(err)
	}
	checkSVG(t, svg)
	checkPNG(t, pngPath)
	b, _ := os.ReadFile(svg)
	for _, want := range []string{"time (s)", "ops/s", "latency", "(ms)", "partition {1} | {2,3}", "kill leader of group 3"} {
		if !bytes.Contains(b, []byte(xmlEscape(want))) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if os.Getenv("CHAOS_KEEP_TIMELINE") != "" { // for looking at it
		os.WriteFile(os.Getenv("CHAOS_KEEP_TIMELINE"), mustRead(t, pngPath), 0o644)
	}
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPlotTimelineEdgeCases(t *testing.T) {
	ops, faults := synthRun(300)
	onlyInfo := []Op{
		{Index: 0, Type: Info, Invoke: t0, Complete: 0},
		{Index: 1, Type: Info, Invoke: t0 + int64(time.Second), Complete: 0},
		{Index: 2, Type: Fail, Invoke: t0 + int64(2*time.Second), Complete: t0 + int64(2*time.Second) + 5},
	}
	unhealed := []Fault{
		{Family: "clock", Name: "clock step +150ms on node 1", Start: t0 - int64(time.Second)},
		{Family: "weird", Name: "unknown family", Start: t0 + int64(time.Second), End: t0 + int64(time.Second)},
		{Family: "latency", Name: "unset start"},
	}
	zeroLatency := []Op{{Index: 0, Type: OK, Invoke: t0, Complete: t0}, {Index: 1, Type: OK, Invoke: t0 + 1, Complete: t0 + 1}}
	cases := map[string]struct {
		ops    []Op
		faults []Fault
	}{
		"no faults":        {ops, nil},
		"no ops":           {nil, faults},
		"nothing":          {nil, nil},
		"only info":        {onlyInfo, nil},
		"unhealed faults":  {ops, unhealed},
		"zero latency":     {zeroLatency, faults},
		"unset invoke ops": {append([]Op{{Index: 99, Type: OK}}, ops...), faults},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			svg, pngPath := filepath.Join(dir, "t.svg"), filepath.Join(dir, "t.png")
			if testing.Short() {
				pngPath = "" // rasterizing is slow under -race; the case below still draws one
			}
			if err := PlotTimeline(c.ops, c.faults, "", svg, pngPath); err != nil {
				t.Fatal(err)
			}
			checkSVG(t, svg)
			if pngPath != "" {
				checkPNG(t, pngPath)
			}
		})
	}
	// An empty path skips that format.
	dir := t.TempDir()
	if err := PlotTimeline(ops, faults, "x", "", filepath.Join(dir, "only.png")); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, filepath.Join(dir, "only.png"))
}

func TestReportRunDir(t *testing.T) {
	ops, faults := synthRun(3000)
	verdicts := synthVerdicts(false)
	r := RunFiles{
		History: ops, Faults: faults, Verdicts: verdicts,
		Summary: synthSummary(ops, faults, verdicts),
		Logs: map[string][]byte{
			"n1": []byte("I started\nI stopped\n"),
			"n2": []byte("log of n2\n"),
		},
		Title: "partition-kill seed 42",
	}
	dir := filepath.Join(t.TempDir(), "run")
	if err := WriteRunDir(dir, r); err != nil {
		t.Fatal(err)
	}
	files := []string{
		"history.jsonl", "faults.json", "check-bank.json", "check-register-linearizable.json",
		"verdicts.json", "summary.txt", "logs/n1.log", "logs/n2.log",
		"timeline.svg", "timeline.png", "README.md",
	}
	for _, f := range files {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("missing %s: %v", f, err)
			continue
		}
		if st.Size() == 0 {
			t.Errorf("%s is empty", f)
		}
	}
	checkPNG(t, filepath.Join(dir, "timeline.png"))
	checkSVG(t, filepath.Join(dir, "timeline.svg"))

	// history.jsonl round-trips.
	f, err := os.Open(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadHistory(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ops) {
		t.Errorf("history.jsonl does not round-trip: %d ops read, %d written", len(got), len(ops))
	}

	// faults.json and verdicts.json decode to what was written.
	var gotFaults []Fault
	if err := json.Unmarshal(mustRead(t, filepath.Join(dir, "faults.json")), &gotFaults); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotFaults, faults) {
		t.Errorf("faults.json = %+v, want %+v", gotFaults, faults)
	}
	var gotVerdicts []Verdict
	if err := json.Unmarshal(mustRead(t, filepath.Join(dir, "verdicts.json")), &gotVerdicts); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotVerdicts, verdicts) {
		t.Errorf("verdicts.json differs from the verdicts")
	}

	// Logs are copied verbatim.
	if b := mustRead(t, filepath.Join(dir, "logs", "n1.log")); string(b) != "I started\nI stopped\n" {
		t.Errorf("logs/n1.log = %q", b)
	}

	// summary.txt is WriteSummary's output; the README indexes every file
	// and carries the verdict, seed and replay command.
	var sum bytes.Buffer
	if err := WriteSummary(&sum, r.Summary); err != nil {
		t.Fatal(err)
	}
	if b := mustRead(t, filepath.Join(dir, "summary.txt")); !bytes.Equal(b, sum.Bytes()) {
		t.Errorf("summary.txt differs from WriteSummary's output")
	}
	readme := string(mustRead(t, filepath.Join(dir, "README.md")))
	for _, want := range append(files[:len(files)-1], "INVALID", "seed: `42`", r.Summary.Replay) {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md lacks %q", want)
		}
	}
}

func TestReportCheckExcerpt(t *testing.T) {
	ops, faults := synthRun(3000)
	verdicts := synthVerdicts(false)
	dir := t.TempDir()
	r := RunFiles{History: ops, Faults: faults, Verdicts: verdicts, Summary: synthSummary(ops, faults, verdicts)}
	if err := WriteRunDir(dir, r); err != nil {
		t.Fatal(err)
	}
	var cf CheckFile
	if err := json.Unmarshal(mustRead(t, filepath.Join(dir, CheckFileName("register-linearizable"))), &cf); err != nil {
		t.Fatal(err)
	}
	if cf.Checker != "register-linearizable" || cf.Valid || len(cf.Anomalies) != len(verdicts[1].Anomalies) {
		t.Fatalf("check file = %+v", cf)
	}
	for i, a := range cf.Anomalies {
		want := verdicts[1].Anomalies[i]
		if !reflect.DeepEqual(a.Anomaly, want) {
			t.Errorf("anomaly %d = %+v, want %+v", i, a.Anomaly, want)
		}
		var wantEx []Op
		var wantMissing []int
		for _, j := range want.Ops {
			if j < len(ops) {
				wantEx = append(wantEx, ops[j])
			} else {
				wantMissing = append(wantMissing, j)
			}
		}
		if !reflect.DeepEqual(a.Excerpt, wantEx) {
			t.Errorf("anomaly %d excerpt = %+v, want %+v", i, a.Excerpt, wantEx)
		}
		if !reflect.DeepEqual(a.Missing, wantMissing) {
			t.Errorf("anomaly %d missing = %v, want %v", i, a.Missing, wantMissing)
		}
	}
	// The excerpt carries whole ops, mops included.
	raw := string(mustRead(t, filepath.Join(dir, CheckFileName("register-linearizable"))))
	if !strings.Contains(raw, `"excerpt"`) || !strings.Contains(raw, `"mops"`) {
		t.Errorf("check file lacks excerpt ops:\n%.500s", raw)
	}
	var valid CheckFile
	if err := json.Unmarshal(mustRead(t, filepath.Join(dir, "check-bank.json")), &valid); err != nil {
		t.Fatal(err)
	}
	if !valid.Valid || len(valid.Anomalies) != 0 || valid.Stats["ops"] != 1500 {
		t.Errorf("check-bank.json = %+v", valid)
	}
}

func TestReportFileNames(t *testing.T) {
	for in, want := range map[string]string{
		"bank": "check-bank.json", "list/append": "check-list_append.json",
		"..": "check-__.json", "": "check-_.json",
	} {
		if got := CheckFileName(in); got != want {
			t.Errorf("CheckFileName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := LogFileName("../n1"); got != filepath.Join("logs", ".._n1.log") {
		t.Errorf("LogFileName(../n1) = %q", got)
	}
	// Two verdicts of one checker get two files.
	dir := t.TempDir()
	vs := []Verdict{{Checker: "bank", Valid: true}, {Checker: "bank", Valid: false}}
	if err := WriteRunDir(dir, RunFiles{Verdicts: vs, Summary: Summary{Verdicts: vs}}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"check-bank.json", "check-bank-2.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

// synthSummaryText writes the summary of a synthetic run whose checkers
// all pass (valid) or not, and checks what every summary shows.
func synthSummaryText(t *testing.T, valid bool) (string, Summary) {
	t.Helper()
	ops, faults := synthRun(3000)
	s := synthSummary(ops, faults, synthVerdicts(valid))
	var b bytes.Buffer
	if err := WriteSummary(&b, s); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Logf("\n%s", out)
	checkSummaryCommon(t, out, s)
	return out, s
}

func TestSummaryValid(t *testing.T) {
	out, s := synthSummaryText(t, true)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if last := lines[len(lines)-1]; last != "VALID" {
		t.Errorf("last line = %q, want VALID", last)
	}
	if strings.Contains(out, "INVALID") || strings.Contains(out, s.Replay) {
		t.Errorf("valid summary mentions INVALID or the replay command")
	}
}

func TestSummaryInvalid(t *testing.T) {
	out, s := synthSummaryText(t, false)
	for _, want := range []string{
		"INVALID: register-linearizable\n",
		"replay: " + s.Replay + "\n",
		"4 anomalies: stale-read 2, lost-write 2",
		"stale-read: read of ka at op 17 returned 5, but op 5 had written 7 before it began",
		"... 1 more in check-register-linearizable.json",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if len(l) > 160 {
			t.Errorf("line not trimmed (%d chars): %q", len(l), l)
		}
	}
	// No replay command recorded.
	s.Replay = ""
	var b bytes.Buffer
	WriteSummary(&b, s)
	if !strings.Contains(b.String(), "replay: (no replay command recorded)") {
		t.Errorf("summary without replay command:\n%s", b.String())
	}
}

func checkSummaryCommon(t *testing.T, out string, s Summary) {
	t.Helper()
	for _, v := range s.Verdicts {
		if !strings.Contains(out, v.Checker) {
			t.Errorf("summary lacks checker %q", v.Checker)
		}
	}
	for _, f := range s.Faults {
		if !strings.Contains(out, f.Family) {
			t.Errorf("summary lacks fault family %q", f.Family)
		}
	}
	for _, w := range s.Workloads {
		if !strings.Contains(out, w.Workload) {
			t.Errorf("summary lacks workload %q", w.Workload)
		}
	}
	for _, want := range []string{"seed 42", "nodes 3", "partition-kill", "3 groups x 3 replicas",
		"1.2s", "2s", "groups 3"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if n := strings.Count(out, "\n"); n > 40 {
		t.Errorf("summary is %d lines, want at most 40", n)
	}
}

func TestSummaryEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSummary(&b, Summary{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "VALID (no checkers ran)") {
		t.Errorf("empty summary:\n%s", b.String())
	}
}

func TestSummaryCountWorkloads(t *testing.T) {
	ops := []Op{
		{Workload: "b", Type: OK}, {Workload: "a", Type: Fail}, {Workload: "b", Type: Info},
		{Workload: "b", Type: OK}, {Workload: "a", Type: "weird"},
	}
	got := CountWorkloads(ops)
	want := []WorkloadCount{{Workload: "a", Fail: 1, Info: 1}, {Workload: "b", OK: 2, Info: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CountWorkloads = %+v, want %+v", got, want)
	}
}
