//go:build invariants

package invariants

// Enabled is true in builds with the invariants tag: protocol assertions
// panic, so tests stop at the first broken invariant.
const Enabled = true
