//go:build race

package commands

// raceEnabled: the tests run with the race detector, which multiplies the
// memory of the processes they measure.
const raceEnabled = true
