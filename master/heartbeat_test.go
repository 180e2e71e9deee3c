package master

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
	"github.com/pingora-go/pingora/worker/wire"
)

// supervised is a master holding one promoted generation with one slot,
// whose worker is a real process (sleep) on a real control socket pair:
// the test plays the worker's side of the socket.
type supervised struct {
	m    *Master
	g    *generation
	w    *worker
	peer *wire.Conn // the worker's end
	// logPath is the master's log: a file, which the test can read while
	// timers write to it without a lock of its own.
	logPath string
}

func (s *supervised) logged() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

func newSupervised(t *testing.T, state workerState) *supervised {
	t.Helper()
	cfg := &config.Config{ReloadTimeout: time.Second, WorkerHeartbeatTimeout: 2 * time.Second}
	out, err := os.Create(filepath.Join(t.TempDir(), "master.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	m := &Master{cfg: cfg, log: newLogger(config.Log{Level: "debug"}, out), events: make(chan func(), 16)}
	g := &generation{id: 1, cfg: cfg, promoted: true}
	g.slots = []*slot{{index: 0}}
	m.gens, m.gen = []*generation{g}, g

	ctl, theirs, err := wire.Pair()
	if err != nil {
		t.Fatal(err)
	}
	peer, err := wire.FileConn(theirs)
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		ctl.Close()
		peer.Close()
	})
	w := &worker{gen: g, slot: g.slots[0], pid: cmd.Process.Pid, cmd: cmd, ctl: ctl, state: state, started: time.Now()}
	g.slots[0].w = w
	return &supervised{m: m, g: g, w: w, peer: peer, logPath: out.Name()}
}

// exitedBy waits for the worker process and returns the signal that ended
// it (0 if none did within 5 s).
func (s *supervised) exitedBy(t *testing.T) syscall.Signal {
	t.Helper()
	done := make(chan struct{})
	go func() {
		s.w.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		return 0
	}
	ws := s.w.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() {
		return 0
	}
	return ws.Signal()
}

// TestHeartbeatMissedThenKilled walks one worker through the heartbeat:
// a beat sends a heartbeat, the answer clears it; an unanswered one makes
// the worker "not-responding" at the next beat (and the watchdog is no
// longer petted); unanswered for worker_heartbeat_timeout, the worker is
// killed with SIGKILL and the reason is logged.
func TestHeartbeatMissedThenKilled(t *testing.T) {
	s := newSupervised(t, stateReady)
	m, w := s.m, s.w

	m.heartbeatTick()
	msg, _, err := s.peer.Recv()
	if err != nil || msg.Type != wire.TypeHeartbeat || msg.Seq != 1 {
		t.Fatalf("first beat: worker got %+v, %v; want heartbeat seq 1", msg, err)
	}
	m.onHeartbeat(w, msg.Seq)
	if !w.beatSent.IsZero() || !m.workersResponding() {
		t.Fatalf("answered heartbeat still outstanding (sent %v), responding %v", w.beatSent, m.workersResponding())
	}

	m.heartbeatTick()
	if msg, _, err = s.peer.Recv(); err != nil || msg.Seq != 2 {
		t.Fatalf("second beat: worker got %+v, %v; want heartbeat seq 2", msg, err)
	}
	m.onHeartbeat(w, 1) // a stale answer does not count
	m.heartbeatTick()   // seq 2 still unanswered: missed
	if !w.missed || m.workersResponding() {
		t.Fatalf("unanswered heartbeat at the next beat: missed %v, responding %v", w.missed, m.workersResponding())
	}
	if st := m.status(); st.Workers[0].State != stateNotResponding {
		t.Errorf("status shows the worker as %q, want %q", st.Workers[0].State, stateNotResponding)
	}
	if !strings.Contains(s.logged(), "worker missed a heartbeat") {
		t.Errorf("no warning about the missed heartbeat in the log:\n%s", s.logged())
	}

	w.beatSent = time.Now().Add(-m.cfg.WorkerHeartbeatTimeout) // as if the timeout went by
	m.heartbeatTick()
	if sig := s.exitedBy(t); sig != syscall.SIGKILL {
		t.Fatalf("worker unanswered for worker_heartbeat_timeout: ended by signal %v, want SIGKILL", sig)
	}
	if !strings.Contains(w.errMsg, "no answer to heartbeats") || !strings.Contains(s.logged(), "worker not responding, killing it") {
		t.Errorf("reason %q; log:\n%s", w.errMsg, s.logged())
	}
}

// TestHeartbeatAnsweredAgainClearsMissed: a worker that was only slow
// (it answers after missing a beat) is well again, and petting resumes.
func TestHeartbeatAnsweredAgainClearsMissed(t *testing.T) {
	s := newSupervised(t, stateReady)
	m, w := s.m, s.w
	m.heartbeatTick()
	m.heartbeatTick()
	if !w.missed {
		t.Fatal("unanswered heartbeat not marked missed")
	}
	m.onHeartbeat(w, w.beatSeq)
	if w.missed || !m.workersResponding() {
		t.Fatalf("after the late answer: missed %v, responding %v", w.missed, m.workersResponding())
	}
	if w.killedHung || syscall.Kill(w.pid, 0) != nil {
		t.Fatal("a slow but answering worker was killed")
	}
}

// TestReplacementNotReadyInTimeIsKilled: a replacement worker (its
// generation already serves) still starting after reload_timeout is
// killed; its exit then goes through the crash path (restart with the
// backoff), with the reason as its error.
func TestReplacementNotReadyInTimeIsKilled(t *testing.T) {
	s := newSupervised(t, stateStarting)
	m, w := s.m, s.w
	m.heartbeatTick()
	if w.killedHung {
		t.Fatal("a replacement starting for less than reload_timeout was killed")
	}
	w.started = time.Now().Add(-m.cfg.ReloadTimeout)
	m.heartbeatTick()
	if sig := s.exitedBy(t); sig != syscall.SIGKILL {
		t.Fatalf("replacement not ready within reload_timeout: ended by signal %v, want SIGKILL", sig)
	}
	if !strings.Contains(w.errMsg, "not ready within reload_timeout") {
		t.Errorf("reason %q", w.errMsg)
	}
}
