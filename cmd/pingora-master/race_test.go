//go:build race

package main

// The race detector's scheduler runs ready goroutines in a random order.
const raceEnabled = true
