package tt

import (
	"errors"
	"fmt"
	"time"
)

// ErrFenced wraps ErrUnhealthy: the clock fenced itself because its time
// could not be trusted (architecture invariant 2). Unlike a clock that is
// merely unsynchronized, a fenced clock does not come back on its own when
// its sources agree again: something outside it (its peers' confirmation
// after the hold, or an operator) lifts the fence.
var ErrFenced = fmt.Errorf("%w: fenced", ErrUnhealthy)

// FenceKind says why a clock is fenced.
type FenceKind uint8

const (
	// FenceStep: the time sources moved further than the local oscillator
	// allows between two readings (a step, a strobe, a runaway source).
	FenceStep FenceKind = iota + 1
	// FencePeers: the clock's interval does not meet those of a majority of
	// the cluster's nodes (exchanged with the round trip).
	FencePeers
	// FenceUnconfirmed: a clock starting up whose time no majority of the
	// cluster has confirmed yet.
	FenceUnconfirmed
	// FenceOperator: an operator fenced the clock.
	FenceOperator
)

func (k FenceKind) String() string {
	switch k {
	case FenceStep:
		return "step"
	case FencePeers:
		return "peers"
	case FenceUnconfirmed:
		return "unconfirmed"
	case FenceOperator:
		return "operator"
	}
	return fmt.Sprintf("FenceKind(%d)", uint8(k))
}

// Fence describes why and since when a clock is fenced.
type Fence struct {
	Kind   FenceKind
	Reason string
	// Local is the clock's local (monotonic) reading when it fenced.
	Local time.Duration
	// Step is how far the sources moved (FenceStep), midpoint to midpoint.
	Step time.Duration
}

func (f *Fence) err() error { return fmt.Errorf("%w (%s): %s", ErrFenced, f.Kind, f.Reason) }

// FenceInfo is a fence as a Fencer reports it.
type FenceInfo struct {
	Kind   FenceKind
	Reason string
	// Since is when the clock fenced (with a monotonic reading:
	// time.Since(Since) is the time spent fenced).
	Since time.Time
	Step  time.Duration
}

// Fencer is implemented by clocks that can fence themselves and be fenced
// (NTP, System). A fenced clock's Now returns an error wrapping ErrFenced;
// the node then neither leads, votes, assigns timestamps nor serves reads
// that need the clock.
type Fencer interface {
	Clock
	// Candidate returns the time the clock's sources give now on their
	// own, fenced or not: what a fenced node shows its peers, and what
	// Unfence would adopt.
	Candidate() (Interval, error)
	// Fence fences the clock (a fence in place is kept).
	Fence(kind FenceKind, reason string)
	// Fenced returns the fence in place, if any.
	Fenced() (FenceInfo, bool)
	// Unfence lifts the fence and adopts the candidate. The caller is
	// responsible for the new time being safe: confirmed by a majority of
	// the cluster, and every lease and timestamp issued under the old one
	// waited out (see node.ClockGuard).
	Unfence() error
}

// errNoCandidate is returned by Candidate when the sources give no time.
var errNoCandidate = errors.New("tt: the time sources give no interval")
