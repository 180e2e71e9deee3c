package master

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/pingora-go/pingora/config"
	"github.com/pingora-go/pingora/master/admin"
	"github.com/pingora-go/pingora/worker/wire"
)

// Sampling of the workers' counters for the admin listener. Workers count
// in their own processes; the master asks each serving worker for a sample
// every sampleInterval (so a crash loses at most that much, and the page
// has current rates) and before each admin view (so a scrape is exact as of
// the scrape). A worker sends a final sample before it exits, which arrives
// before its exit is seen (watchWorker orders them): Retire then folds
// exactly what it counted into the retired totals.
const (
	sampleInterval = time.Second
	// resampleAfter: a worker that has not answered a request for this
	// long is asked again. Until then it is not asked twice, so a stuck
	// worker never has more than one request queued.
	resampleAfter = 5 * time.Second
	// waiterLimit drops refresh waiters whose view has long given up.
	waiterLimit = 2 * time.Second
	// adminShutdownTimeout bounds the wait for admin requests in progress
	// when the master stops.
	adminShutdownTimeout = time.Second
)

// adminListener is the admin block at work: the HTTP server, the
// aggregator it shows, and the views waiting for fresh samples. Its fields
// other than srv and agg belong to the master's loop.
type adminListener struct {
	ln      net.Listener
	srv     *admin.Server
	agg     *admin.Aggregator
	serving bool
	served  chan struct{} // closed when Serve returned (once serving)
	stop    chan struct{} // stops the sampling ticker
	waiters []*sampleWaiter
}

// sampleWaiter is one admin view waiting until every worker asked for it
// answered (or exited).
type sampleWaiter struct {
	pending map[*worker]bool
	done    chan struct{}
	since   time.Time
}

func (w *sampleWaiter) answered(wk *worker) {
	if !w.pending[wk] {
		return
	}
	delete(w.pending, wk)
	if len(w.pending) == 0 {
		close(w.done)
	}
}

// bindAdmin binds the admin address through tableflip, like the proxy's
// listeners, so a binary upgrade hands the same socket to the new master
// (and a port in use fails the start, before any worker runs). Without an
// admin block it does nothing. The aggregator is fed from here on;
// serveAdmin starts answering.
func (m *Master) bindAdmin() error {
	if m.cfg.Admin == nil {
		return nil
	}
	ln, err := m.lns.listen(config.Listener{Name: "admin", Address: m.cfg.Admin.Address}, 0)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	a := &adminListener{
		ln:     ln,
		agg:    new(admin.Aggregator),
		served: make(chan struct{}),
		stop:   make(chan struct{}),
	}
	a.srv = admin.New(m.log.Named("admin"), a.agg)
	a.srv.SetRefresh(m.refreshSamples)
	m.adm = a
	m.publishAdmin()
	return nil
}

// serveAdmin starts answering on the admin address and sampling the
// workers. It runs once this master serves: after a binary upgrade the old
// master answers on the shared socket until then (connections wait in its
// accept queue, never refused), so scrapes never alternate between the old
// master's figures and a starting one's.
func (m *Master) serveAdmin() {
	a := m.adm
	if a == nil || a.serving {
		return
	}
	a.serving = true
	log := m.log.Named("admin")
	go func() {
		defer close(a.served)
		if err := a.srv.Serve(a.ln); err != nil {
			log.Error("admin listener stopped", "error", err)
		}
	}()
	go func() {
		t := time.NewTicker(sampleInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				select {
				case m.events <- m.sampleTick:
				default: // the loop is busy: skip a beat rather than pile up
				}
			case <-a.stop:
				return
			}
		}
	}()
}

// stopAdmin stops answering on the admin address: at exit, and in an old
// master as soon as its successor serves, so that scrapes reach only the
// new master. The socket itself stays with tableflip (and the successor).
func (m *Master) stopAdmin() {
	a := m.adm
	if a == nil {
		return
	}
	m.adm = nil
	close(a.stop)
	if !a.serving {
		a.ln.Close()
		return
	}
	// Views waiting for samples are answered with what is there: the loop
	// (this goroutine) will not deliver any more.
	a.srv.SetRefresh(nil)
	for _, w := range a.waiters {
		close(w.done)
	}
	a.waiters = nil
	ctx, cancel := context.WithTimeout(context.Background(), adminShutdownTimeout)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		m.log.Warn("admin listener", "error", err)
	}
	<-a.served
}

// refreshSamples is the admin server's refresh hook: it runs on an HTTP
// goroutine, asks the loop to request a sample from every serving worker,
// and returns once they all answered or ctx ended.
func (m *Master) refreshSamples(ctx context.Context) {
	w := &sampleWaiter{pending: make(map[*worker]bool), done: make(chan struct{}), since: time.Now()}
	select {
	case m.events <- func() { m.requestSamples(w) }:
	case <-ctx.Done():
		return
	}
	select {
	case <-w.done:
	case <-ctx.Done():
	}
}

// sampleTick is the periodic sampling, on the loop.
func (m *Master) sampleTick() {
	a := m.adm
	if a == nil {
		return
	}
	kept := a.waiters[:0]
	for _, w := range a.waiters {
		if time.Since(w.since) > waiterLimit {
			close(w.done) // listed waiters still have workers pending
			continue
		}
		kept = append(kept, w)
	}
	clear(a.waiters[len(kept):])
	a.waiters = kept
	m.requestSamples(nil)
}

// requestSamples asks every serving worker (ready, or draining: what it
// counts until it exits matters as much) for a sample. waiter, when set,
// is released once all of them answered.
func (m *Master) requestSamples(waiter *sampleWaiter) {
	a := m.adm
	if a == nil {
		if waiter != nil {
			close(waiter.done)
		}
		return
	}
	now := time.Now()
	for _, g := range m.gens {
		for _, wk := range g.workers() {
			if wk.state != stateReady && wk.state != stateDraining {
				continue
			}
			if wk.statsAsked.IsZero() || now.Sub(wk.statsAsked) > resampleAfter {
				if err := wk.ctl.Send(wire.Message{Type: wire.TypeStats}); err != nil {
					m.log.Debug("cannot ask worker for counters", "worker", wk.pid, "error", err)
					continue
				}
				wk.statsAsked = now
			}
			if waiter != nil {
				waiter.pending[wk] = true
			}
		}
	}
	if waiter == nil {
		return
	}
	if len(waiter.pending) == 0 {
		close(waiter.done)
		return
	}
	a.waiters = append(a.waiters, waiter)
}

// onSample records a worker's sample. The master's own facts about the
// process (pid, generation, start) are what identify it, whatever the
// worker wrote.
func (m *Master) onSample(wk *worker, s *wire.WorkerSample) {
	wk.statsAsked = time.Time{}
	a := m.adm
	if a == nil || s == nil {
		return
	}
	s.PID, s.Generation, s.Started = wk.pid, wk.gen.id, wk.started
	if wk.gen.names == nil {
		wk.gen.names = admin.NamesOf(wk.gen.cfg)
	}
	if err := a.agg.Observe(*s, wk.gen.names); err != nil {
		wk.samplesRefused++
		if wk.samplesRefused == 1 {
			m.log.Warn("worker sample refused; later refusals of this worker are logged at debug level",
				"worker", wk.pid, "error", err)
		} else {
			m.log.Debug("worker sample refused", "worker", wk.pid, "refused", wk.samplesRefused, "error", err)
		}
	}
	m.sampleAnswered(wk)
}

// sampleAnswered releases wk from every waiting view.
func (m *Master) sampleAnswered(wk *worker) {
	a := m.adm
	if a == nil {
		return
	}
	kept := a.waiters[:0]
	for _, w := range a.waiters {
		w.answered(wk)
		if len(w.pending) > 0 {
			kept = append(kept, w)
		}
	}
	clear(a.waiters[len(kept):])
	a.waiters = kept
}

// retireWorker folds an exited worker's last sample into the retired
// totals.
func (m *Master) retireWorker(wk *worker) {
	if m.adm == nil {
		return
	}
	m.adm.agg.Retire(wk.pid)
	m.sampleAnswered(wk)
}

// publishAdmin hands the master's current facts to the aggregator. It is
// called after every change: each event the loop handles (worker ready,
// draining, exited, replaced), each command, and inside long commands
// where the generation or worker set changes.
func (m *Master) publishAdmin() {
	if m.adm == nil {
		return
	}
	st := m.status()
	st.Config = m.cfg
	m.adm.agg.SetMaster(*st)
}

// countReload, countUpgrade and countRestart feed the outcome counters.
func (m *Master) countReload(ok bool) {
	if m.adm != nil {
		m.adm.agg.CountReload(ok)
	}
}

func (m *Master) countUpgrade(ok bool) {
	if m.adm != nil {
		m.adm.agg.CountUpgrade(ok)
	}
}

func (m *Master) countRestart() {
	if m.adm != nil {
		m.adm.agg.CountWorkerRestart()
	}
}
