package master

import (
	"os"
	"os/exec"
	"time"

	"github.com/pingora-go/pingora/config"
	"github.com/pingora-go/pingora/master/admin"
	"github.com/pingora-go/pingora/worker/wire"
)

// workerState is where a worker is in its life, as `-s status` shows it.
type workerState string

const (
	stateStarting workerState = "starting"
	stateReady    workerState = "ready"
	stateDraining workerState = "draining"
	stateStopping workerState = "stopping"
	stateExited   workerState = "exited"
)

// worker is one worker process.
type worker struct {
	gen     *generation
	slot    *slot
	pid     int
	cmd     *exec.Cmd
	ctl     *wire.Conn
	state   workerState
	started time.Time
	// expected is set once the master asked the worker to go (drain, stop,
	// kill): its exit is then not a crash.
	expected bool
	// errMsg is the last error the worker reported before exiting.
	errMsg   string
	reopened bool
	// notAccepting: the worker confirmed a drain, its listeners are closed.
	notAccepting bool
	killer       *time.Timer
	// statsAsked is when the master asked for a sample still unanswered
	// (zero: none outstanding); see requestSamples.
	statsAsked time.Time
	// samplesRefused counts the worker's samples the aggregator refused:
	// the first is logged as a warning, the rest only at debug level, so a
	// broken or compromised worker cannot flood the log.
	samplesRefused int
	// Heartbeats (heartbeat.go): beatSeq numbers the last one sent,
	// beatSent is when the one still unanswered went out (zero: none is),
	// and missed says it was still unanswered when the next was due.
	beatSeq  uint64
	beatSent time.Time
	missed   bool
	// killedHung: the master killed it for not responding (or not
	// becoming ready); its exit is on the way.
	killedHung bool
}

func (w *worker) alive() bool { return w.state != stateExited }

// slot is one of a generation's `workers` places. A crashed worker is
// replaced in its slot, which remembers restarts for the crash-loop backoff.
type slot struct {
	index    int
	w        *worker
	restarts int // replacements so far
	failures int // consecutive short-lived crashes, for the backoff
	timer    *time.Timer
}

// generation is a set of workers started from one config. A reload starts
// a new one; the old one drains once the new one serves.
type generation struct {
	id      int
	cfg     *config.Config
	logs    *logTargets
	slots   []*slot
	started time.Time
	// promoted: the generation became the current one (every worker was
	// ready once). Before that a dying worker fails the whole generation.
	promoted bool
	// failed is why a generation that was starting cannot serve.
	failed string
	// retiring: draining or killed; no restarts any more.
	retiring bool
	deadline time.Time
	// names are what the admin aggregator accepts from this generation's
	// workers; built from cfg at the first sample.
	names *admin.Names
}

// socketNeeds says how many sockets each listener address needs while
// the generations gens exist: one, or for a reuseport listener one per
// worker slot. Slot sockets count only for generations that may still
// accept (see acceptingSlots); the address itself stays while any
// generation uses it.
func socketNeeds(gens []*generation) map[string]int {
	need := make(map[string]int)
	for _, g := range gens {
		slots := g.acceptingSlots()
		for _, l := range g.cfg.Listeners {
			need[l.Address] = max(need[l.Address], socketsFor(l, slots))
		}
	}
	return need
}

// acceptingSlots is the number of worker slots of g that may still accept
// connections: all of them, or none once g retires and every live worker
// confirmed that it stopped accepting. A queue no worker takes from only
// holds connections until they are reset, so a reuseport slot socket
// beyond the current generation's workers is closed at that point rather
// than when g's last connection is done.
func (g *generation) acceptingSlots() int {
	if !g.retiring {
		return len(g.slots)
	}
	for _, w := range g.workers() {
		if !w.notAccepting {
			return len(g.slots)
		}
	}
	return 0
}

// workers returns the live workers.
func (g *generation) workers() []*worker {
	var out []*worker
	for _, s := range g.slots {
		if s.w != nil && s.w.alive() {
			out = append(out, s.w)
		}
	}
	return out
}

// allReady reports whether every slot has a ready worker.
func (g *generation) allReady() bool {
	for _, s := range g.slots {
		if s.w == nil || s.w.state != stateReady {
			return false
		}
	}
	return true
}

// gone reports whether no worker of the generation is alive and none will
// be started again.
func (g *generation) gone() bool {
	if !g.retiring {
		return false
	}
	for _, s := range g.slots {
		if s.w != nil && s.w.alive() {
			return false
		}
	}
	return true
}

// stopTimers cancels pending restarts.
func (g *generation) stopTimers() {
	for _, s := range g.slots {
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
	}
}

// signalAll sends sig to every live worker.
func (g *generation) signalAll(sig os.Signal) {
	for _, w := range g.workers() {
		w.expected = true
		w.cmd.Process.Signal(sig)
	}
}
