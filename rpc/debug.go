package rpc

import (
	"html/template"
	"net/http"
	"net/http/pprof"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/tt"
)

// DebugHandler serves a node's HTTP pages: /debug/txn (the last
// transactions this node coordinated, as a timeline of their phases),
// /debug/cluster (the cluster map: regions, nodes, shards, leaders, ε, safe
// time), Prometheus metrics on /metrics and pprof under /debug/pprof/.
// Plain server-rendered HTML and SVG.
func DebugHandler(s *Server) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/txn", s.txnPage)
	mux.HandleFunc("/debug/cluster", s.clusterPage)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		http.Redirect(w, r, "/debug/cluster", http.StatusFound)
	})
	return mux
}

const pageHead = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left;font-size:.9em}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.legend span{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 1em;vertical-align:middle}
nav a{margin-right:1em}.bad{color:#b00}
</style></head><body><nav><a href="/debug/cluster">cluster</a><a href="/debug/txn">transactions</a><a href="/debug/pprof/">pprof</a></nav>
<h1>{{.Title}}</h1><p>node {{.Node.ID}} · {{.Node.Region}} · {{.Node.Addr}} · clock: {{.Clock}}</p>`

var txnTmpl = template.Must(template.New("txn").Funcs(template.FuncMap{"ms": fmtMs}).Parse(pageHead + `
<p>The last {{len .Rows}} commits this node coordinated, newest first. Each bar is one commit from the moment its
request reached the coordinator's group to its answer:</p>
<p class="legend"><span style="background:#999"></span>locks<span style="background:#e69500"></span>prepare (2PC)
<span style="background:#2b6cb0"></span>Paxos (commit record)<span style="background:#c53030"></span>exposed commit wait
<span style="background:#38a169"></span>apply and answer</p>
{{if .Rows}}
<svg xmlns="http://www.w3.org/2000/svg" width="{{.Width}}" height="{{.Height}}" role="img" aria-label="transaction timeline">
{{range $i, $r := .Rows}}<g transform="translate(0,{{$r.Y}})">
<text x="0" y="14" font-size="12">{{$r.Label}}</text>
{{range $r.Segments}}<rect x="{{.X}}" y="3" width="{{.W}}" height="14" fill="{{.Color}}"><title>{{.Name}} {{ms .D}}</title></rect>{{end}}
<text x="{{$r.EndX}}" y="14" font-size="11">{{ms $r.Took}}</text></g>
{{end}}</svg>
<table><tr><th>when</th><th>group</th><th>participants</th><th>commit timestamp</th><th class="num">total</th><th class="num">locks</th><th class="num">prepare</th><th class="num">Paxos</th><th class="num">commit wait</th><th>outcome</th></tr>
{{range .Rows}}<tr class="txn"><td>{{.When}}</td><td>{{.Group}}</td><td>{{.Participants}}</td><td>{{.TS}}</td><td class="num">{{ms .Took}}</td>
<td class="num">{{ms .Locks}}</td><td class="num">{{ms .Prepare}}</td><td class="num">{{ms .Paxos}}</td><td class="num">{{ms .Wait}}</td><td{{if .Err}} class="bad"{{end}}>{{if .Err}}{{.Err}}{{else}}committed{{end}}</td></tr>
{{end}}</table>
{{else}}<p>No transaction coordinated here yet.</p>{{end}}
</body></html>`))

type seg struct {
	Name, Color string
	X, W        float64
	D           time.Duration
}

type txnRow struct {
	Label, When, TS, Err string
	Group                uint64
	Participants         int
	Took, Locks, Prepare time.Duration
	Paxos, Wait          time.Duration
	Y                    int
	EndX                 float64
	Segments             []seg
}

func fmtMs(d time.Duration) string {
	return time.Duration(d.Microseconds() * int64(time.Microsecond)).String()
}

type pageData struct {
	Title string
	Node  node.NodeInfo
	Clock string
}

func (s *Server) page(title string) pageData {
	d := pageData{Title: title, Node: s.cfg.Self, Clock: "unknown"}
	if iv, err := s.cfg.Clock.Now(); err == nil {
		d.Clock = "ε " + iv.Epsilon().String()
	} else {
		d.Clock = "UNHEALTHY: " + err.Error()
	}
	return d
}

func (s *Server) txnPage(w http.ResponseWriter, r *http.Request) {
	traces := s.node.RecentCommits()
	sort.SliceStable(traces, func(i, j int) bool { return traces[i].Start.After(traces[j].Start) })
	if len(traces) > 50 {
		traces = traces[:50]
	}
	var longest time.Duration
	for _, t := range traces {
		longest = max(longest, t.Took)
	}
	const left, barW = 110.0, 640.0
	scale := barW / float64(max(longest, time.Millisecond))
	rows := make([]txnRow, 0, len(traces))
	for i, t := range traces {
		row := txnRow{Label: t.Start.Format("15:04:05.000"), When: t.Start.Format("15:04:05.000"), Group: t.Group, Participants: t.Participants,
			Took: t.Took, Locks: t.Phases.Locks, Prepare: t.Phases.Prepare, Paxos: t.Phases.Paxos, Wait: t.Phases.CommitWait, Y: i * 22}
		if t.Err != nil {
			row.Err = t.Err.Error()
		} else {
			row.TS = tt.Timestamp(t.TS).String()
		}
		x := left
		rest := t.Took - t.Phases.Locks - t.Phases.Prepare - t.Phases.Paxos - t.Phases.CommitWait
		for _, p := range []struct {
			name, color string
			d           time.Duration
		}{{"locks", "#999", t.Phases.Locks}, {"prepare", "#e69500", t.Phases.Prepare}, {"Paxos", "#2b6cb0", t.Phases.Paxos},
			{"commit wait", "#c53030", t.Phases.CommitWait}, {"apply and answer", "#38a169", max(rest, 0)}} {
			if p.d <= 0 {
				continue
			}
			wd := float64(p.d) * scale
			row.Segments = append(row.Segments, seg{Name: p.name, Color: p.color, X: x, W: max(wd, 0.5), D: p.d})
			x += wd
		}
		row.EndX = x + 6
		rows = append(rows, row)
	}
	data := struct {
		pageData
		Rows          []txnRow
		Width, Height int
	}{s.page("Transactions"), rows, int(left + barW + 90), len(rows)*22 + 6}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = txnTmpl.Execute(w, data)
}

var clusterTmpl = template.Must(template.New("cluster").Parse(pageHead + `
{{if not .Initialized}}<p>The cluster is not initialized yet (run <code>meridian init</code>).</p>{{else}}
<h2>Regions and nodes</h2>
<table><tr><th>region</th><th>node</th><th>address</th></tr>
{{range .Nodes}}<tr><td>{{.Region}}</td><td>{{.ID}}</td><td>{{.Addr}}</td></tr>{{end}}</table>
<h2>Shards</h2>
<table><tr><th>group</th><th>keys</th><th>home</th><th>policy</th><th>leader (as this node knows)</th><th>replicas</th></tr>
{{range .Shards}}<tr class="shard"><td>{{.Group}}</td><td>{{.Range}}</td><td>{{.Home}}</td><td>{{.Policy}}</td><td>{{.Leader}}</td><td>{{.Replicas}}</td></tr>{{end}}</table>
<h2>Replicas on this node</h2>
<table><tr><th>group</th><th>replica</th><th>role</th><th>ballot</th><th class="num">lease left</th><th class="num">applied</th><th class="num">safe time lag</th><th class="num">prepared</th><th class="num">locks</th></tr>
{{range .Local}}<tr><td>{{.Group}}</td><td>{{.Replica}}</td><td>{{.Role}}</td><td>{{.Ballot}}</td><td class="num">{{.Lease}}</td><td class="num">{{.Applied}}</td><td class="num">{{.Lag}}</td><td class="num">{{.Prepared}}</td><td class="num">{{.Locks}}</td></tr>{{end}}</table>
{{end}}</body></html>`))

func (s *Server) clusterPage(w http.ResponseWriter, r *http.Request) {
	type shardRow struct {
		Group                                 uint64
		Range, Home, Policy, Leader, Replicas string
	}
	type localRow struct {
		Group, Applied           uint64
		Replica                  uint64
		Role, Ballot, Lease, Lag string
		Prepared, Locks          int
	}
	p, ok := s.Placement()
	data := struct {
		pageData
		Initialized bool
		Nodes       []node.NodeInfo
		Shards      []shardRow
		Local       []localRow
	}{pageData: s.page("Cluster map"), Initialized: ok}
	now, _ := s.cfg.Clock.Now()
	if ok {
		data.Nodes = s.Nodes()
		sort.Slice(data.Nodes, func(i, j int) bool {
			if data.Nodes[i].Region != data.Nodes[j].Region {
				return data.Nodes[i].Region < data.Nodes[j].Region
			}
			return data.Nodes[i].ID < data.Nodes[j].ID
		})
		region := map[node.NodeID]string{}
		for _, n := range data.Nodes {
			region[n.ID] = n.Region
		}
		for _, sh := range p.Shards {
			end := "∞"
			if sh.End != nil {
				end = string(sh.End)
			}
			row := shardRow{Group: sh.Group, Range: "[" + string(sh.Start) + ", " + end + ")", Home: sh.Home, Policy: sh.Policy, Leader: "unknown"}
			if l := s.node.LeaderNode(sh.Group); l != 0 {
				row.Leader = region[l]
			}
			for _, rep := range sh.Replicas {
				kind := "voter"
				if !rep.Voter {
					kind = "read-only"
				}
				row.Replicas += region[rep.Node] + " (" + kind + ") "
			}
			data.Shards = append(data.Shards, row)
		}
	}
	for _, g := range s.node.Groups() {
		st := g.Status()
		row := localRow{Group: st.Group, Replica: uint64(st.Replica), Role: st.Paxos.Role, Ballot: st.Paxos.Promised.String(),
			Applied: st.Paxos.Applied.Index, Prepared: st.Txn.Prepared, Locks: st.Txn.Locks, Lease: "-", Lag: "-"}
		if !st.Voter {
			row.Role += " (read-only)"
		}
		if st.Paxos.LeaseEnd > 0 && now.Latest > 0 {
			row.Lease = st.Paxos.LeaseEnd.Sub(now.Latest).Round(time.Millisecond).String()
		}
		if st.Txn.SafeTime > 0 && now.Latest > 0 {
			row.Lag = now.Latest.Sub(st.Txn.SafeTime).Round(time.Microsecond).String()
		}
		data.Local = append(data.Local, row)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = clusterTmpl.Execute(w, data)
}
