//go:build !race

package mpthrottle

// raceEnabled: built with -race (see race_test.go).
const raceEnabled = false
