package master

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/pingora-go/pingora/config"
)

// startGeneration starts every worker of a new generation from cfg. It
// does not wait for them: awaitGeneration does.
func (m *Master) startGeneration(cfg *config.Config, logs *logTargets) (*generation, error) {
	m.nextGen++
	g := &generation{id: m.nextGen, cfg: cfg, logs: logs, started: time.Now()}
	for i := 0; i < cfg.Workers; i++ {
		g.slots = append(g.slots, &slot{index: i})
	}
	m.gens = append(m.gens, g)
	for _, s := range g.slots {
		if _, err := m.startWorker(g, s); err != nil {
			g.failed = err.Error()
			m.killGeneration(g)
			return nil, err
		}
	}
	return g, nil
}

// awaitGeneration waits until every worker of g serves. On failure or
// timeout the generation is killed and the reason returned; on success it
// is promoted (crashes are then replaced, not fatal).
func (m *Master) awaitGeneration(g *generation, timeout time.Duration) error {
	ok := m.wait(timeout, func() bool { return g.failed != "" || g.allReady() })
	var err error
	switch {
	case g.failed != "":
		err = errors.New(g.failed)
	case m.interrupted:
		err = errors.New("interrupted by a stop")
	case !ok:
		err = fmt.Errorf("new workers not ready within %s", timeout)
	}
	if err != nil {
		m.killGeneration(g)
		return err
	}
	g.promoted = true
	return nil
}

// reload reads and validates the config again and, if it is good, starts a
// complete new generation, waits until it serves, then drains the old one.
// On any failure nothing that serves is touched.
func (m *Master) reload() error {
	m.notify.reloading()
	defer m.notify.ready()

	cfg, err := m.loadConfigOffLoop(m.cfg.ReloadTimeout)
	if err != nil {
		return err
	}
	m.logWarnings(cfg)
	m.keepFixed(cfg)

	logs := m.logs
	if !logs.sameAs(cfg) {
		if logs, err = openLogTargets(cfg); err != nil {
			return err
		}
	}
	if err := m.lns.bindAll(cfg.Listeners, cfg.Workers); err != nil {
		if logs != m.logs {
			logs.close()
		}
		return err
	}
	g, err := m.startGeneration(cfg, logs)
	if err == nil {
		err = m.awaitGeneration(g, cfg.ReloadTimeout)
	}
	if err != nil {
		if g == nil {
			m.collectListeners()
		}
		return err
	}

	if err := m.lns.setOptions(cfg.Listeners); err != nil {
		// The new generation serves regardless: say so, keep going.
		m.log.Error("reload: listener options not applied", "error", err)
	}
	old := m.gen
	m.gen, m.cfg = g, cfg
	m.publishAdmin()
	m.warnExpiringCerts(cfg, time.Now())
	if logs != m.logs {
		m.logOut.Set(logs.errorLog())
		m.logs = logs // the old targets close when the old generation is gone
	}
	m.log.SetLevel(logLevel(cfg.Log.Level))
	deadline := time.Now().Add(cfg.ShutdownTimeout)
	m.log.Info("new generation serving, draining the previous one",
		"generation", g.id, "workers", pids(g), "previous", old.id, "deadline", cfg.ShutdownTimeout)
	m.drainGeneration(old, deadline)
	m.capDraining(cfg.MaxDrainingGenerations)
	m.awaitNotAccepting(old)
	m.collectListeners()
	return nil
}

// capDraining cuts the oldest draining generations (their workers close
// their connections now) while more than limit drain at once: long-lived
// connections and frequent reloads would otherwise pile up old workers.
func (m *Master) capDraining(limit int) {
	var draining []*generation
	for _, g := range m.gens {
		if g != m.gen && g.retiring && slices.ContainsFunc(g.workers(), func(w *worker) bool { return w.state == stateDraining }) {
			draining = append(draining, g)
		}
	}
	for len(draining) > limit {
		g := draining[0]
		draining = draining[1:]
		m.log.Warn("too many generations draining, cutting the oldest",
			"generation", g.id, "workers", pids(g), "max_draining_generations", limit)
		m.stopGeneration(g)
	}
}

// collectListeners closes the sockets no generation needs: after a reload
// that bound some and then failed before starting any worker, after one
// that lowered workers (the surplus reuseport slot sockets), and when a
// generation is gone.
func (m *Master) collectListeners() {
	for _, a := range m.lns.retain(socketNeeds(m.gens)) {
		m.log.Info("listener closed", "address", a)
	}
}

// loadConfigOffLoop reads and parses the config on another goroutine: a
// FIFO or a hung network file system would otherwise block the loop, and
// with it signals and `-s`. It gives up after timeout, or as soon as a
// stop is asked for; the reader is then abandoned (a blocked read cannot
// be cancelled) and its result, if it ever comes, ignored.
func (m *Master) loadConfigOffLoop(timeout time.Duration) (*config.Config, error) {
	type result struct {
		cfg *config.Config
		err error
	}
	var res *result
	go func() {
		cfg, err := m.loadConfig()
		r := &result{cfg, err}
		m.events <- func() { res = r }
	}()
	m.wait(timeout, func() bool { return res != nil || m.stopPending() })
	switch {
	case res != nil:
		return res.cfg, res.err
	case m.interrupted || m.stopPending():
		return nil, errors.New("interrupted by a stop while reading the config")
	default:
		return nil, fmt.Errorf("reading the config %s took longer than reload_timeout (%s); is it a FIFO or on a hung file system?", m.cfgPath, timeout)
	}
}

// loadConfig reads the master's config source again.
func (m *Master) loadConfig() (*config.Config, error) {
	if m.cfgPath == "" {
		return defaultConfig()
	}
	return config.Load(m.cfgPath)
}

func (m *Master) logWarnings(cfg *config.Config) {
	for _, w := range cfg.Warnings {
		m.log.Warn("config warning: " + w)
	}
}

// keepFixed restores, in a reloaded config, the settings a reload cannot
// change, and says so: they belong to the master process (its files, its
// identity towards the system), not to a generation of workers. A restart
// or a binary upgrade applies them.
func (m *Master) keepFixed(cfg *config.Config) {
	old := m.cfg
	fixed := []struct {
		name     string
		old, new any
		restore  func()
	}{
		{"pid_file", old.PIDFile, cfg.PIDFile, func() { cfg.PIDFile = old.PIDFile }},
		{"lock_file", old.LockFile, cfg.LockFile, func() { cfg.LockFile = old.LockFile }},
		{"control_socket", old.ControlSocket, cfg.ControlSocket, func() { cfg.ControlSocket = old.ControlSocket }},
		{"user", old.User, cfg.User, func() { cfg.User = old.User }},
		{"group", old.Group, cfg.Group, func() { cfg.Group = old.Group }},
		{"daemon", old.Daemon, cfg.Daemon, func() { cfg.Daemon = old.Daemon }},
		{"limits", old.Limits, cfg.Limits, func() { cfg.Limits = old.Limits }},
		{"admin", old.Admin, cfg.Admin, func() { cfg.Admin = old.Admin }},
		{"rate_limit_zone_size", old.RateLimitZoneSize, cfg.RateLimitZoneSize, func() { cfg.RateLimitZoneSize = old.RateLimitZoneSize }},
		{"upgrade_timeout", old.UpgradeTimeout, cfg.UpgradeTimeout, func() { cfg.UpgradeTimeout = old.UpgradeTimeout }},
		{"log.format", old.Log.Format, cfg.Log.Format, func() { cfg.Log.Format = old.Log.Format }},
	}
	for _, f := range fixed {
		if !reflect.DeepEqual(f.old, f.new) {
			m.log.Warn("setting cannot change by reload, keeping its value (restart or upgrade to apply)",
				"setting", f.name, "value", fmt.Sprint(deref(f.old)), "ignored", fmt.Sprint(deref(f.new)))
			f.restore()
		}
	}
}

func deref(v any) any {
	if a, ok := v.(*config.Admin); ok {
		if a == nil {
			return "none"
		}
		return *a
	}
	return v
}

func pids(g *generation) []int {
	var out []int
	for _, w := range g.workers() {
		out = append(out, w.pid)
	}
	return out
}

func reloadMessage(g *generation) string {
	return fmt.Sprintf("reloaded: generation %d serving (%d workers)", g.id, len(g.slots))
}
