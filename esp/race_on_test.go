//go:build race

package esp

// raceEnabled: under -race, sync.Pool drops a share of what is Put on
// purpose, so allocation counts say nothing about the code under test.
const raceEnabled = true
