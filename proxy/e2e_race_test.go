//go:build race

package proxy_test

// raceEnabled tells the streaming test that this binary carries the race
// detector, whose shadow memory would count in a child's RSS.
const raceEnabled = true
