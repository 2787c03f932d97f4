//go:build !race

package tt

const raceEnabled = false
