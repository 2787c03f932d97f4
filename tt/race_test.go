//go:build race

package tt

const raceEnabled = true
