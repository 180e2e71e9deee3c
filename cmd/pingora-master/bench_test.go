package main

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"
)

// The reload and upgrade benchmarks behind `make bench-reload`:
//
//	go test -run '^$' -bench 'Reload|Upgrade' -benchtime 20x ./cmd/pingora-master/
//
// Each iteration writes a config of a new generation, signals the master and
// measures until that generation's answer is seen through the proxy on a new
// connection (polled every millisecond); for an upgrade, also until the PID
// file names the new master. Between iterations (untimed) the old workers,
// or the old master and its workers, are waited out, so each measurement
// starts from a quiet, single generation. Reported: median, max and min in
// ms of the signal-to-serving time, and as gone-* of the signal-to-old-
// processes-gone time (not a goal, but a drain that hangs shows there).

// BenchmarkReload: SIGHUP to the new generation serving, 2 workers.
func BenchmarkReload(b *testing.B) {
	in := newInstance(b, 2)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)
	durations := make([]time.Duration, 0, b.N)
	drains := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		b.StopTimer()
		in.SetGen(i)
		b.StartTimer()
		t0 := time.Now()
		in.Signal(syscall.SIGHUP)
		pollServing(b, in, i, 0)
		durations = append(durations, time.Since(t0))
		b.StopTimer()
		in.WaitVanished("old workers", workers, 15*time.Second)
		drains = append(drains, time.Since(t0))
		workers = in.WaitWorkers(master, 2, workers, 5*time.Second)
		b.StartTimer()
	}
	b.StopTimer()
	reportDurations(b, "", durations)
	reportDurations(b, "gone-", drains)
}

// BenchmarkUpgrade: SIGUSR2 to the new master serving (its pid in the PID
// file and its config's answer through the proxy), 2 workers.
func BenchmarkUpgrade(b *testing.B) {
	in := newInstance(b, 2)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)
	durations := make([]time.Duration, 0, b.N)
	drains := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		b.StopTimer()
		in.SetGen(i)
		b.StartTimer()
		t0 := time.Now()
		in.Signal(syscall.SIGUSR2)
		pollServing(b, in, i, master)
		durations = append(durations, time.Since(t0))
		b.StopTimer()
		oldMaster, oldWorkers := master, workers
		master = in.MustMasterPID()
		in.WaitDead("the old master", []int{oldMaster}, 30*time.Second)
		in.WaitVanished("the old workers", oldWorkers, 5*time.Second)
		drains = append(drains, time.Since(t0))
		workers = in.WaitWorkers(master, 2, oldWorkers, 5*time.Second)
		b.StartTimer()
	}
	b.StopTimer()
	reportDurations(b, "", durations)
	reportDurations(b, "gone-", drains)
}

// pollServing waits, polling every millisecond, until the proxy answers
// generation gen and, when oldMaster is not 0, the PID file names another
// master.
func pollServing(b *testing.B, in *instance, gen, oldMaster int) {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	why := ""
	for time.Now().Before(deadline) {
		ok := true
		if oldMaster != 0 {
			pid, err := in.MasterPID()
			ok = err == nil && pid != oldMaster
			why = fmt.Sprintf("PID file: %d %v", pid, err)
		}
		if ok {
			if ok, why = in.servesGen(gen); ok {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("generation %d not served within 60 s: %s", gen, why)
}

// reportDurations reports median and max (and min) in milliseconds, the
// metric names prefixed by prefix.
func reportDurations(b *testing.B, prefix string, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	median := d[len(d)/2]
	if len(d)%2 == 0 {
		median = (d[len(d)/2-1] + d[len(d)/2]) / 2
	}
	b.ReportMetric(ms(median), prefix+"median-ms")
	b.ReportMetric(ms(d[len(d)-1]), prefix+"max-ms")
	b.ReportMetric(ms(d[0]), prefix+"min-ms")
}
