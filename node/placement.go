package node

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/meridiandb/meridian/paxos"
)

// NodeInfo is a member of the cluster.
type NodeInfo struct {
	ID     NodeID
	Region string
	Addr   string // advertised host:port
}

// ReplicaInfo places one replica of a shard.
type ReplicaInfo struct {
	ID    paxos.ReplicaID
	Node  NodeID
	Voter bool
}

// ShardInfo is one shard: a key range [Start, End) (End nil: unbounded)
// replicated by one Paxos group.
type ShardInfo struct {
	Group    uint64
	Start    []byte
	End      []byte
	Home     string // home region: where its leader prefers to live
	Policy   string // regional | spread
	Replicas []ReplicaInfo
}

// Contains reports whether key falls in the shard's range.
func (s ShardInfo) Contains(key []byte) bool {
	return bytes.Compare(key, s.Start) >= 0 && (s.End == nil || bytes.Compare(key, s.End) < 0)
}

// Placement is the cluster's map, written once at init.
type Placement struct {
	// ClusterID is drawn at init; nodes of another cluster are refused.
	ClusterID string
	Regions   []string
	Nodes     []NodeInfo
	Shards    []ShardInfo
	Lease     time.Duration
}

// Placement policies.
const (
	// PolicyRegional puts a shard's voters in its home region and one
	// read-only replica in every other region: fast local commits and
	// local stale reads; a region's loss takes its shards' writes with it.
	PolicyRegional = "regional"
	// PolicySpread puts the voters in different regions: the shard survives
	// losing a region, and every commit pays the round trip to the nearest
	// majority.
	PolicySpread = "spread"
)

// PlacementSpec is what init asks for.
type PlacementSpec struct {
	Policy          string
	Replicas        int           // voters per shard: 1, 3 or 5
	ShardsPerRegion int           // default 1
	Lease           time.Duration // default 10 s
	// Splits overrides the shard boundaries (len = shards-1, ascending).
	Splits [][]byte
}

// ErrPlacement is returned for placements that cannot be built.
var ErrPlacement = errors.New("node: cannot place")

// ComputePlacement assigns every shard's replicas to nodes. Shards are homed
// round-robin over the regions (sorted), ShardsPerRegion each, and split the
// key space evenly over the letters a–z unless Splits says otherwise. It is
// deterministic: the same nodes and spec give the same placement.
func ComputePlacement(nodes []NodeInfo, spec PlacementSpec) (Placement, error) {
	if spec.Policy == "" {
		spec.Policy = PolicyRegional
	}
	if spec.Policy != PolicyRegional && spec.Policy != PolicySpread {
		return Placement{}, fmt.Errorf("%w: policy %q (want regional or spread)", ErrPlacement, spec.Policy)
	}
	if spec.Replicas == 0 {
		spec.Replicas = 3
	}
	if spec.Replicas != 1 && spec.Replicas != 3 && spec.Replicas != 5 {
		return Placement{}, fmt.Errorf("%w: %d voters per shard (want 1, 3 or 5)", ErrPlacement, spec.Replicas)
	}
	if spec.ShardsPerRegion <= 0 {
		spec.ShardsPerRegion = 1
	}
	if spec.Lease <= 0 {
		spec.Lease = 10 * time.Second
	}
	if len(nodes) == 0 {
		return Placement{}, fmt.Errorf("%w: no nodes", ErrPlacement)
	}
	nodes = slices.Clone(nodes)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	byRegion := map[string][]NodeInfo{}
	var regions []string
	for _, n := range nodes {
		if n.Region == "" {
			return Placement{}, fmt.Errorf("%w: node %d has no region", ErrPlacement, n.ID)
		}
		if _, ok := byRegion[n.Region]; !ok {
			regions = append(regions, n.Region)
		}
		byRegion[n.Region] = append(byRegion[n.Region], n)
	}
	sort.Strings(regions)
	nShards := len(regions) * spec.ShardsPerRegion
	splits := spec.Splits
	if splits == nil {
		for i := 1; i < nShards; i++ {
			splits = append(splits, []byte{byte('a' + 26*i/nShards)})
		}
	}
	if len(splits) != nShards-1 {
		return Placement{}, fmt.Errorf("%w: %d splits for %d shards", ErrPlacement, len(splits), nShards)
	}
	for i := 1; i < len(splits); i++ {
		if bytes.Compare(splits[i-1], splits[i]) >= 0 {
			return Placement{}, fmt.Errorf("%w: splits must ascend", ErrPlacement)
		}
	}
	load := map[NodeID]int{}
	// pick returns the least loaded node of a region not already used.
	pick := func(region string, used map[NodeID]bool) (NodeInfo, bool) {
		var best NodeInfo
		found := false
		for _, n := range byRegion[region] {
			if used[n.ID] {
				continue
			}
			if !found || load[n.ID] < load[best.ID] {
				best, found = n, true
			}
		}
		return best, found
	}
	p := Placement{Regions: regions, Nodes: nodes, Lease: spec.Lease}
	for i := 0; i < nShards; i++ {
		home := regions[i%len(regions)]
		sh := ShardInfo{Group: uint64(i + 1), Home: home, Policy: spec.Policy}
		if i > 0 {
			sh.Start = splits[i-1]
		} else {
			sh.Start = []byte{}
		}
		if i < nShards-1 {
			sh.End = splits[i]
		}
		used := map[NodeID]bool{}
		next := paxos.ReplicaID(1)
		add := func(n NodeInfo, voter bool) {
			sh.Replicas = append(sh.Replicas, ReplicaInfo{ID: next, Node: n.ID, Voter: voter})
			used[n.ID] = true
			load[n.ID]++
			next++
		}
		switch spec.Policy {
		case PolicyRegional:
			for v := 0; v < spec.Replicas; v++ {
				n, ok := pick(home, used)
				if !ok {
					return Placement{}, fmt.Errorf("%w: region %s has %d nodes, a regional shard needs %d voters there",
						ErrPlacement, home, len(byRegion[home]), spec.Replicas)
				}
				add(n, true)
			}
			for _, r := range regions {
				if r == home {
					continue
				}
				if n, ok := pick(r, used); ok {
					add(n, false)
				}
			}
		case PolicySpread:
			// Home region first, then the others in order, round-robin.
			order := append([]string{home}, slices.DeleteFunc(slices.Clone(regions), func(r string) bool { return r == home })...)
			for v := 0; v < spec.Replicas; v++ {
				placed := false
				for k := 0; k < len(order) && !placed; k++ {
					r := order[(v+k)%len(order)]
					if n, ok := pick(r, used); ok {
						add(n, true)
						placed = true
					}
				}
				if !placed {
					return Placement{}, fmt.Errorf("%w: %d nodes cannot hold %d voters", ErrPlacement, len(nodes), spec.Replicas)
				}
			}
		}
		p.Shards = append(p.Shards, sh)
	}
	return p, nil
}

// Locate returns the shard holding key.
func (p Placement) Locate(key []byte) (ShardInfo, bool) {
	for _, s := range p.Shards {
		if s.Contains(key) {
			return s, true
		}
	}
	return ShardInfo{}, false
}

// Shard returns the shard of a group.
func (p Placement) Shard(group uint64) (ShardInfo, bool) {
	for _, s := range p.Shards {
		if s.Group == group {
			return s, true
		}
	}
	return ShardInfo{}, false
}

// Node returns a node's info.
func (p Placement) Node(id NodeID) (NodeInfo, bool) {
	for _, n := range p.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return NodeInfo{}, false
}

// GroupConfig returns the configuration of the replica of shard s on node
// id (ok false if none is placed there).
func (s ShardInfo) GroupConfig(id NodeID, lease time.Duration) (GroupConfig, bool) {
	cfg := GroupConfig{Group: s.Group, Nodes: map[paxos.ReplicaID]NodeID{}, Start: s.Start, End: s.End, Lease: lease}
	found := false
	for _, r := range s.Replicas {
		cfg.Nodes[r.ID] = r.Node
		if r.Voter {
			cfg.Voters = append(cfg.Voters, r.ID)
		} else {
			cfg.Learners = append(cfg.Learners, r.ID)
		}
		if r.Node == id {
			cfg.Replica = r.ID
			found = true
		}
	}
	return cfg, found
}

// Install starts the replicas the placement puts on this node (those not
// running yet).
func (n *Node) Install(p Placement) error {
	for _, s := range p.Shards {
		cfg, ok := s.GroupConfig(n.id, p.Lease)
		if !ok || n.Group(s.Group) != nil {
			continue
		}
		if _, err := n.AddGroup(cfg); err != nil {
			return err
		}
	}
	return nil
}

// Preferred returns the voter of s on a node of its home region (zero if
// none): the replica that should lead.
func (p Placement) Preferred(s ShardInfo) paxos.ReplicaID {
	for _, r := range s.Replicas {
		if n, ok := p.Node(r.Node); ok && r.Voter && n.Region == s.Home {
			return r.ID
		}
	}
	return 0
}
