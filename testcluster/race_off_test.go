//go:build !race

package testcluster

// raceEnabled says the tests run under the race detector, which makes
// every goroutine several times slower and heavier.
const raceEnabled = false
