//go:build !race

package tensor

// raceEnabled: the race detector is on (sync.Pool then drops items at random).
const raceEnabled = false
