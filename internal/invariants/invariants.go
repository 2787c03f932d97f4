// Package invariants holds the switch for Meridian's assertions, in the
// manner of Pebble: building with `-tags invariants` turns on expensive checks
// of protocol invariants that panic on violation. `make test` runs the suite
// both ways.
package invariants

import "fmt"

// Check panics with the formatted message when assertions are enabled and
// cond is false. It costs nothing in production builds, where Enabled is a
// false constant and the call is eliminated.
func Check(cond bool, format string, args ...any) {
	if Enabled && !cond {
		panic(fmt.Sprintf("invariant violated: "+format, args...))
	}
}
