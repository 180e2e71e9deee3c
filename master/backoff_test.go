package master

import (
	"testing"
	"time"
)

func TestRestartDelay(t *testing.T) {
	want := []time.Duration{0, 0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for n, w := range want {
		if got := restartDelay(n); got != w {
			t.Errorf("restartDelay(%d) = %v, want %v", n, got, w)
		}
	}
	if restartDelay(1000) != maxDelay {
		t.Error("no cap")
	}
}

func TestNextFailuresResetsAfterAStableRun(t *testing.T) {
	if got := nextFailures(5, stableAfter); got != 1 {
		t.Errorf("after a stable run: %d, want 1", got)
	}
	if got := nextFailures(5, time.Second); got != 6 {
		t.Errorf("after a short run: %d, want 6", got)
	}
}
