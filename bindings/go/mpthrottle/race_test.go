//go:build race

package mpthrottle

// raceEnabled: built with -race, under which sync.Pool drops a quarter of
// what it is given (to shake out code that relies on it keeping things).
const raceEnabled = true
