//go:build !invariants

package invariants

// Enabled is false in production builds: assertions are compiled out and the
// callers fall back to returning errors where they can detect a problem.
const Enabled = false
