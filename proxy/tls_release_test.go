package proxy

import (
	"testing"
	"time"
)

// A wave of TLS handshakes that has gone quiet gives memory back as a wave
// of parked connections does: once releaseMinParked of them have come since
// the last release and none for releaseQuiet, at most once per releaseEvery.
func TestReleaseDueAfterHandshakeWave(t *testing.T) {
	lot := &parkingLot{}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at         time.Duration
		handshakes uint64
		want       bool
	}{
		{0, 0, false},
		{time.Second, releaseMinParked + 500, false},                       // the wave is still coming
		{time.Second + releaseQuiet - time.Millisecond, 1500, false},       // not quiet long enough
		{time.Second + releaseQuiet, releaseMinParked + 500, true},         // quiet: release
		{2*time.Second + 2*releaseQuiet, 2*releaseMinParked + 600, false},  // a second wave, too soon
		{releaseEvery + 10*time.Second, 2*releaseMinParked + 600, true},    // and later
		{2*releaseEvery + 20*time.Second, 3*releaseMinParked + 500, false}, // fewer than releaseMinParked since
	}
	for i, s := range steps {
		if got := lot.releaseDue(t0.Add(s.at), s.handshakes); got != s.want {
			t.Fatalf("step %d (%v, %d handshakes): releaseDue = %v, want %v", i, s.at, s.handshakes, got, s.want)
		}
	}
}
