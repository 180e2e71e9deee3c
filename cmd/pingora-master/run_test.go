// Running the binary as an operator would: processes the test starts and
// waits for, and command lines run to completion.

package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// proc is a process the test started itself through exec.Cmd.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid once done is closed
}

// Exited reports whether the process has exited.
func (p *proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode is the exit code once exited (-1 for a signal).
func (p *proc) ExitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// startProc starts cmd and waits for it in the background, registering it
// with the reaper so that nothing else reaps it.
func startProc(cmd *exec.Cmd) (*proc, error) {
	reaper.mu.Lock()
	err := cmd.Start()
	if err == nil {
		reaper.direct[cmd.Process.Pid] = true
	}
	reaper.mu.Unlock()
	if err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		reaper.mu.Lock()
		delete(reaper.direct, cmd.Process.Pid)
		reaper.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// result is a finished command line run.
type result struct {
	Code     int
	Stdout   string
	Stderr   string
	Duration time.Duration
}

// Output is stdout and stderr together, for messages that may go to either.
func (r result) Output() string { return r.Stdout + r.Stderr }

func (r result) String() string {
	return fmt.Sprintf("exit %d after %v\nstdout:\n%s\nstderr:\n%s", r.Code, r.Duration.Round(time.Millisecond), r.Stdout, r.Stderr)
}

// Run runs the instance's binary with args to completion (bounded by
// timeout), as an operator would at a shell.
func (in *instance) Run(timeout time.Duration, args ...string) result {
	in.tb.Helper()
	return runBin(in.tb, in.Bin, timeout, args...)
}

// Ctl runs `pingora-master -c CONF -s cmd`.
func (in *instance) Ctl(cmd string) result {
	in.tb.Helper()
	return in.Run(40*time.Second, "-c", in.Conf, "-s", cmd)
}

func runBin(tb testing.TB, bin string, timeout time.Duration, args ...string) result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// -d hands stdio to a daemon that outlives the command: don't wait for
	// pipes that daemon might hold.
	cmd.WaitDelay = time.Second
	start := time.Now()
	p, err := startProc(cmd)
	if err != nil {
		tb.Fatalf("start %s %v: %v", bin, args, err)
	}
	<-p.done
	r := result{Code: cmd.ProcessState.ExitCode(), Stdout: stdout.String(), Stderr: stderr.String(), Duration: time.Since(start)}
	if ctx.Err() != nil {
		tb.Fatalf("%s %s did not finish within %v: %s", bin, strings.Join(args, " "), timeout, r)
	}
	return r
}
