package sim

import (
	"math/rand/v2"
	"time"
)

// NetConfig describes the simulated network's behaviour.
type NetConfig struct {
	Matrix Matrix
	// Jitter adds a uniform random fraction of the one-way latency (0.05 =
	// up to 5 %).
	Jitter float64
	// Loss, Dup and Reorder are per-message probabilities: drop it, deliver
	// it twice, or delay it by up to MaxReorder extra so later messages
	// overtake it.
	Loss, Dup, Reorder float64
	MaxReorder         time.Duration
}

// NodeID names a simulated node.
type NodeID int

// Network decides when (and whether) messages between nodes arrive.
type Network struct {
	cfg    NetConfig
	rng    *rand.Rand
	region map[NodeID]int
	// cut[from][to]: messages from → to are dropped (partitions; one
	// direction for asymmetric ones).
	cut map[[2]NodeID]bool
}

// NewNetwork returns a network whose random choices come from rng.
func NewNetwork(cfg NetConfig, rng *rand.Rand) *Network {
	if cfg.MaxReorder <= 0 {
		cfg.MaxReorder = 20 * time.Millisecond
	}
	return &Network{cfg: cfg, rng: rng, region: map[NodeID]int{}, cut: map[[2]NodeID]bool{}}
}

// Place puts a node in a region (an index into the matrix).
func (n *Network) Place(id NodeID, region int) { n.region[id] = region }

// Region returns a node's region index.
func (n *Network) Region(id NodeID) int { return n.region[id] }

// SetFaults changes the message fault probabilities.
func (n *Network) SetFaults(loss, dup, reorder float64) {
	n.cfg.Loss, n.cfg.Dup, n.cfg.Reorder = loss, dup, reorder
}

// Cut drops messages from every node in a to every node in b; symmetric
// also cuts b → a.
func (n *Network) Cut(a, b []NodeID, symmetric bool) {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				continue
			}
			n.cut[[2]NodeID{x, y}] = true
			if symmetric {
				n.cut[[2]NodeID{y, x}] = true
			}
		}
	}
}

// Heal removes every partition.
func (n *Network) Heal() { n.cut = map[[2]NodeID]bool{} }

// Cuts reports whether any partition is in place.
func (n *Network) Cuts() bool { return len(n.cut) > 0 }

// Blocked reports whether from → to is cut.
func (n *Network) Blocked(from, to NodeID) bool { return n.cut[[2]NodeID{from, to}] }

// Latency is the base one-way latency between two nodes.
func (n *Network) Latency(from, to NodeID) time.Duration {
	return n.cfg.Matrix.OneWay(n.region[from], n.region[to])
}

// Delays returns the delivery delays for one message: none when it is
// dropped, two when it is duplicated.
func (n *Network) Delays(from, to NodeID) []time.Duration {
	if from != to && n.cut[[2]NodeID{from, to}] {
		return nil
	}
	if n.cfg.Loss > 0 && n.rng.Float64() < n.cfg.Loss {
		return nil
	}
	d := n.delay(from, to)
	if n.cfg.Dup > 0 && n.rng.Float64() < n.cfg.Dup {
		return []time.Duration{d, n.delay(from, to)}
	}
	return []time.Duration{d}
}

func (n *Network) delay(from, to NodeID) time.Duration {
	base := n.Latency(from, to)
	d := base
	if n.cfg.Jitter > 0 && base > 0 {
		d += time.Duration(n.rng.Float64() * n.cfg.Jitter * float64(base))
	}
	if n.cfg.Reorder > 0 && n.rng.Float64() < n.cfg.Reorder {
		d += time.Duration(n.rng.Int64N(int64(n.cfg.MaxReorder)))
	}
	if d <= 0 {
		d = 10 * time.Microsecond
	}
	return d
}
