package sim

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// Matrix holds round-trip times between regions. One-way latency is half
// the round trip. It drives both the deterministic simulator and the
// latency-injecting layer for real connections.
type Matrix struct {
	Regions []string
	// RTT[i][j] is the round trip between Regions[i] and Regions[j]; the
	// matrix is symmetric with a zero diagonal (IntraRTT applies within a
	// region).
	RTT [][]time.Duration
	// IntraRTT is the round trip between two nodes of one region (zones).
	IntraRTT time.Duration
}

// matrixFile is the JSON form accepted by LoadMatrix.
type matrixFile struct {
	Regions    []string    `json:"regions"`
	RTTMs      [][]float64 `json:"rtt_ms"`
	IntraRTTMs float64     `json:"intra_rtt_ms"`
}

type preset struct {
	about   string
	regions []string
	rttMs   map[[2]string]float64
	intraMs float64
}

// Presets, from published round-trip figures (see DESIGN.md).
var presets = map[string]preset{
	"global": {
		about:   "cockroach demo --global's three GCP regions",
		regions: []string{"us-east1", "us-west1", "europe-west1"},
		rttMs: map[[2]string]float64{
			{"us-east1", "us-west1"}: 66, {"us-east1", "europe-west1"}: 64, {"us-west1", "europe-west1"}: 146,
		},
		intraMs: 0.5,
	},
	"aws-pacific": {
		about:   "AWS average pings 2017: Virginia, Oregon, Tokyo",
		regions: []string{"us-east-1", "us-west-2", "ap-northeast-1"},
		rttMs: map[[2]string]float64{
			{"us-east-1", "us-west-2"}: 87.0, {"us-east-1", "ap-northeast-1"}: 145.3, {"us-west-2", "ap-northeast-1"}: 89.1,
		},
		intraMs: 0.5,
	},
	"aws-atlantic": {
		about:   "AWS average pings 2017: Virginia, Ireland, Frankfurt",
		regions: []string{"us-east-1", "eu-west-1", "eu-central-1"},
		rttMs: map[[2]string]float64{
			{"us-east-1", "eu-west-1"}: 80.6, {"us-east-1", "eu-central-1"}: 88.7, {"eu-west-1", "eu-central-1"}: 19.6,
		},
		intraMs: 0.5,
	},
	"aws-global": {
		about:   "AWS average pings 2017: Virginia, Ireland, Tokyo",
		regions: []string{"us-east-1", "eu-west-1", "ap-northeast-1"},
		rttMs: map[[2]string]float64{
			{"us-east-1", "eu-west-1"}: 80.6, {"us-east-1", "ap-northeast-1"}: 145.3, {"eu-west-1", "ap-northeast-1"}: 212.4,
		},
		intraMs: 0.5,
	},
	"zones": {
		about:   "three zones of one region (GCP: < 1 ms p95)",
		regions: []string{"zone-a", "zone-b", "zone-c"},
		rttMs: map[[2]string]float64{
			{"zone-a", "zone-b"}: 0.8, {"zone-a", "zone-c"}: 1.2, {"zone-b", "zone-c"}: 1.0,
		},
		intraMs: 0.25,
	},
	"local": {
		about:   "no simulated latency",
		regions: []string{"local"},
		rttMs:   map[[2]string]float64{},
		intraMs: 0,
	},
}

// PresetNames lists the latency presets with a one-line description each.
func PresetNames() []string {
	var out []string
	for name, p := range presets {
		out = append(out, fmt.Sprintf("%s (%s)", name, p.about))
	}
	sort.Strings(out)
	return out
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// Preset returns the named latency matrix.
func Preset(name string) (Matrix, error) {
	p, ok := presets[name]
	if !ok {
		var names []string
		for n := range presets {
			names = append(names, n)
		}
		sort.Strings(names)
		return Matrix{}, fmt.Errorf("sim: unknown latency preset %q (have %s)", name, strings.Join(names, ", "))
	}
	m := Matrix{Regions: append([]string(nil), p.regions...), IntraRTT: ms(p.intraMs)}
	m.RTT = make([][]time.Duration, len(p.regions))
	for i, a := range p.regions {
		m.RTT[i] = make([]time.Duration, len(p.regions))
		for j, b := range p.regions {
			if i == j {
				continue
			}
			v, ok := p.rttMs[[2]string{a, b}]
			if !ok {
				v = p.rttMs[[2]string{b, a}]
			}
			m.RTT[i][j] = ms(v)
		}
	}
	return m, m.Validate()
}

// LoadMatrix reads a matrix from a JSON file:
//
//	{"regions": ["a","b"], "rtt_ms": [[0, 70], [70, 0]], "intra_rtt_ms": 0.5}
func LoadMatrix(path string) (Matrix, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Matrix{}, err
	}
	var f matrixFile
	if err := json.Unmarshal(b, &f); err != nil {
		return Matrix{}, fmt.Errorf("sim: latency matrix %s: %w", path, err)
	}
	m := Matrix{Regions: f.Regions, IntraRTT: ms(f.IntraRTTMs)}
	for _, row := range f.RTTMs {
		var r []time.Duration
		for _, v := range row {
			r = append(r, ms(v))
		}
		m.RTT = append(m.RTT, r)
	}
	if err := m.Validate(); err != nil {
		return Matrix{}, fmt.Errorf("sim: latency matrix %s: %w", path, err)
	}
	return m, nil
}

// Validate checks shape, symmetry and ranges.
func (m Matrix) Validate() error {
	if len(m.Regions) == 0 {
		return fmt.Errorf("no regions")
	}
	seen := map[string]bool{}
	for _, r := range m.Regions {
		if r == "" || seen[r] {
			return fmt.Errorf("region names must be non-empty and distinct (%q)", r)
		}
		seen[r] = true
	}
	if len(m.RTT) != len(m.Regions) {
		return fmt.Errorf("%d regions but %d rows", len(m.Regions), len(m.RTT))
	}
	for i, row := range m.RTT {
		if len(row) != len(m.Regions) {
			return fmt.Errorf("row %d has %d columns, want %d", i, len(row), len(m.Regions))
		}
		for j, v := range row {
			if v < 0 || v > time.Minute {
				return fmt.Errorf("rtt[%d][%d] = %s out of range", i, j, v)
			}
			if m.RTT[j][i] != v {
				return fmt.Errorf("matrix not symmetric at [%d][%d]", i, j)
			}
		}
		if row[i] != 0 {
			return fmt.Errorf("diagonal must be zero (row %d)", i)
		}
	}
	if m.IntraRTT < 0 {
		return fmt.Errorf("negative intra-region rtt")
	}
	return nil
}

// Region returns the index of a region name, or -1.
func (m Matrix) Region(name string) int {
	for i, r := range m.Regions {
		if r == name {
			return i
		}
	}
	return -1
}

// RoundTrip returns the round trip between two regions (IntraRTT within
// one).
func (m Matrix) RoundTrip(a, b int) time.Duration {
	if a == b {
		return m.IntraRTT
	}
	return m.RTT[a][b]
}

// OneWay returns half the round trip between two regions.
func (m Matrix) OneWay(a, b int) time.Duration { return m.RoundTrip(a, b) / 2 }

// Subset returns the matrix restricted to the first n regions.
func (m Matrix) Subset(n int) Matrix {
	if n >= len(m.Regions) {
		return m
	}
	s := Matrix{Regions: m.Regions[:n], IntraRTT: m.IntraRTT}
	for i := 0; i < n; i++ {
		s.RTT = append(s.RTT, m.RTT[i][:n])
	}
	return s
}
