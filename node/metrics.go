package node

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a node's Prometheus collectors. Create them with NewMetrics
// on the registry the node's HTTP server exposes (no global registry).
type Metrics struct {
	CommitLatency *prometheus.HistogramVec // by kind: single, 2pc
	CommitWait    prometheus.Histogram
	Epsilon       prometheus.Gauge
	LeaderChanges prometheus.Counter
	PaxosBatch    prometheus.Histogram
	Aborts        prometheus.Counter
	Fsyncs        prometheus.Counter
	Requests      *prometheus.CounterVec // by kind and outcome
	GCRemoved     prometheus.Counter
	GCHorizon     prometheus.Gauge
	// The clock guard (ClockGuard).
	ClockFenced           prometheus.Gauge
	ClockFences           *prometheus.CounterVec // by kind
	ClockPeersAgreeing    prometheus.Gauge
	ClockPeersDisagreeing prometheus.Gauge
}

// NewMetrics registers the collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	lat := []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5}
	m := &Metrics{
		CommitLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meridian_commit_latency_seconds",
			Help: "Time from a commit request reaching its coordinator's group to the answer, by kind (single-group or 2pc).", Buckets: lat},
			[]string{"kind"}),
		CommitWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "meridian_commit_wait_seconds",
			Help:    "Exposed commit wait: how long a chosen commit record waited until TT.after(its timestamp).",
			Buckets: []float64{0, .0001, .0005, .001, .002, .005, .01, .02, .05, .1}}),
		Epsilon: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meridian_clock_epsilon_seconds",
			Help: "The interval clock's current uncertainty ε (half the interval's width); NaN while unhealthy."}),
		LeaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "meridian_leader_changes_total",
			Help: "Times a replica on this node became or stopped being its group's leader."}),
		PaxosBatch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "meridian_paxos_batch_entries",
			Help: "Log entries persisted per Ready (one synced write): how many proposals one fsync carried.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		Aborts: prometheus.NewCounter(prometheus.CounterOpts{Name: "meridian_txn_aborts_total",
			Help: "Transaction requests answered Aborted (wounds, lock timeouts, lost locks, no votes)."}),
		Fsyncs: prometheus.NewCounter(prometheus.CounterOpts{Name: "meridian_paxos_fsyncs_total",
			Help: "Synced Pebble writes of Paxos state (one per Ready that needed it)."}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_requests_total",
			Help: "Client requests handled by this node's groups, by kind and outcome."}, []string{"kind", "outcome"}),
		GCRemoved: prometheus.NewCounter(prometheus.CounterOpts{Name: "meridian_gc_versions_removed_total",
			Help: "MVCC versions removed by version garbage collection."}),
		GCHorizon: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meridian_gc_horizon_seconds",
			Help: "The GC horizon of the last collection (Unix seconds): reads below it are refused."}),
		ClockFenced: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meridian_clock_fenced",
			Help: "1 while the node's clock is fenced (a step of its sources, a disagreement with its peers, not yet confirmed, or an operator): the node neither leads, votes nor picks timestamps."}),
		ClockFences: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_clock_fences_total",
			Help: "Times the node's clock was fenced, by kind (step, peers, operator)."}, []string{"kind"}),
		ClockPeersAgreeing: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meridian_clock_peers_agreeing",
			Help: "Peers whose last fresh interval met this node's over the exchange's round trip."}),
		ClockPeersDisagreeing: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meridian_clock_peers_disagreeing",
			Help: "Peers whose last fresh interval did not meet this node's over the exchange's round trip."}),
	}
	reg.MustRegister(m.CommitLatency, m.CommitWait, m.Epsilon, m.LeaderChanges, m.PaxosBatch, m.Aborts, m.Fsyncs, m.Requests,
		m.GCRemoved, m.GCHorizon, m.ClockFenced, m.ClockFences, m.ClockPeersAgreeing, m.ClockPeersDisagreeing)
	return m
}
