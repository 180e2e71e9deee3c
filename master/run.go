package master

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/pingora-go/pingora/config"
)

// lockFileName is the name the instance lock is handed over under.
const lockFileName = "pingora-lock"

// Run is the master: it returns the process exit code. Start order: load
// and validate the config; take the instance lock; daemonize if asked; set
// rlimits; bind every listener; spawn the workers; once every worker is
// ready, write the PID file, tell systemd READY=1, release the waiting
// daemon parent (or the old master of an upgrade); then serve commands
// until stopped.
func Run(opts Options) int {
	// Nothing inherited reaches a worker unless passed on purpose; this
	// covers tableflip's pipes (fds 3 and 4 in a new master, inherited
	// without close-on-exec) and the daemon's descriptors too.
	closeOnExecAll()
	dc := takeDaemonChild()
	rep := &reporter{stderr: opts.stderr()}
	if dc != nil {
		rep.pipe = dc.ready
	}

	exe, err := os.Executable()
	if err != nil {
		return rep.fail(fmt.Errorf("locate own binary: %w", err))
	}
	cfgPath, cfg, err := loadInitial(opts.ConfigPath)
	opt := tableflip.Options{}
	if cfg != nil {
		opt.UpgradeTimeout = cfg.UpgradeTimeout
	}
	// The upgrader comes before anything can fail past the config, so
	// that a new master started by an upgrade can tell the old one why it
	// failed (a config that no longer loads, say).
	upg, uerr := tableflip.New(opt)
	if uerr == nil && upg.HasParent() {
		if f, _ := upg.File(fileUpgradeReport); f != nil {
			rep.upgrade = f
		}
	}
	if err != nil {
		return rep.fail(err)
	}
	if uerr != nil {
		return rep.fail(fmt.Errorf("upgrader: %w", uerr))
	}

	lock, err := takeLock(cfg, upg, dc)
	if err != nil {
		return rep.fail(err)
	}
	var args []string
	if cfgPath != "" {
		args = []string{"-c", cfgPath}
	}
	if (opts.Daemon || cfg.Daemon) && dc == nil && !upg.HasParent() {
		return daemonize(exe, args, lock, opts.stderr())
	}
	// tableflip starts the new master from os.Args, relative to the first
	// working directory: make both independent of how we were started.
	os.Args = append([]string{exe}, args...)

	m := &Master{
		opts:    opts,
		cfgPath: cfgPath,
		exe:     exe,
		cfg:     cfg,
		upg:     upg,
		lock:    lock,
		notify:  newNotifier(),
		events:  make(chan func(), 256),
		cmds:    make(chan *command, 64),
		started: time.Now(),
	}
	if err := m.start(); err != nil {
		if m.log != nil {
			m.log.Error("start failed", "error", err)
		}
		m.abortStart()
		return rep.fail(err)
	}
	rep.ready()
	// Ready tells the previous master (after an upgrade) that we serve, and
	// closes inherited descriptors we did not claim.
	if err := upg.Ready(); err != nil {
		m.log.Warn("cannot tell the previous master we are ready", "error", err)
	}
	if upg.HasParent() {
		// The old master's counters end with it: a successful upgrade is
		// counted by the master it made.
		m.countUpgrade(true)
	}
	m.serveAdmin()
	m.log.Info("serving", "generation", m.gen.id, "workers", pids(m.gen))
	return m.loop()
}

// takeLock takes the instance lock, or adopts the one handed over by the
// daemon's starting process or the previous master.
func takeLock(cfg *config.Config, upg *tableflip.Upgrader, dc *daemonChild) (*Lock, error) {
	if upg.HasParent() {
		f, err := upg.File(lockFileName)
		if err != nil {
			return nil, fmt.Errorf("inherited lock: %w", err)
		}
		if f != nil {
			return InheritLock(cfg.LockFile, f)
		}
	}
	if dc != nil {
		return InheritLock(cfg.LockFile, dc.lock)
	}
	return AcquireLock(cfg.LockFile, cfg.PIDFile)
}

// start does everything from the logs to the PID file.
func (m *Master) start() error {
	cfg := m.cfg
	keys, err := rotateTicketKeys(nil)
	if err != nil {
		return err
	}
	m.ticketKeys = keys
	logs, err := openLogTargets(cfg)
	if err != nil {
		return err
	}
	m.logs = logs
	m.logOut = &swapWriter{w: logs.errorLog()}
	m.log = newLogger(cfg.Log, m.logOut)
	args := []any{"version", m.opts.Version, "binary", m.exe}
	if m.opts.GoRuntime != "" {
		args = append(args, "go", m.opts.GoRuntime)
	}
	if m.upg.HasParent() {
		args = append(args, "upgraded_from", os.Getppid())
	}
	if m.cfgPath != "" {
		args = append(args, "config", m.cfgPath)
	}
	m.log.Info("starting", args...)
	if m.cfgPath == "" {
		m.log.Info("no -c given and " + DefaultConfigPath + " does not exist: using the embedded default config")
	}
	m.logWarnings(cfg)
	m.lock.writePID(os.Getpid())
	if !m.upg.HasParent() {
		// Hand the lock to any future new master.
		if err := m.upg.AddFile(lockFileName, m.lock.File()); err != nil {
			return fmt.Errorf("lock hand-over: %w", err)
		}
	}
	if err := setLimits(cfg.Limits, m.log); err != nil {
		return err
	}
	if m.ident, err = resolveIdentity(cfg); err != nil {
		return err
	}
	if !m.ident.privileged {
		m.log.Warn("master is not root: workers run as its own user, without privilege drop", "uid", m.ident.uid)
	} else {
		m.log.Debug("workers run as", "user", m.ident.user, "group", m.ident.group, "uid", m.ident.uid, "gid", m.ident.gid)
	}

	if m.zone, err = openZone(m.upg, cfg.RateLimitZoneSize, m.log); err != nil {
		return err
	}
	if m.health, err = openHealthZone(m.upg, m.log); err != nil {
		return err
	}
	m.lns = newListenerSet(m.upg.Fds, takeActivated(m.log), m.log)
	if err := m.lns.bindAll(cfg.Listeners, cfg.Workers); err != nil {
		return err
	}
	if err := m.lns.setOptions(cfg.Listeners); err != nil {
		return err
	}
	if err := m.bindAdmin(); err != nil {
		return err
	}
	for _, a := range m.lns.dropActivated() {
		m.log.Warn("socket from systemd matches no listener address, closing it", "socket", a)
	}
	m.spawn = newSpawner()
	m.watchSignals()
	if n, err := strconv.Atoi(os.Getenv(envNextGeneration)); err == nil && n > 0 {
		m.nextGen = n - 1
	}
	os.Unsetenv(envNextGeneration)

	g, err := m.startGeneration(cfg, m.logs)
	if err != nil {
		return err
	}
	if err := m.awaitGeneration(g, cfg.ReloadTimeout); err != nil {
		return fmt.Errorf("workers: %w", err)
	}
	m.gen = g
	m.publishAdmin()

	if m.ctl, err = listenControl(cfg.ControlSocket, m.cmds, m.log); err != nil {
		return err
	}
	if err := WritePIDFile(cfg.PIDFile, os.Getpid()); err != nil {
		return err
	}
	if m.upg.HasParent() {
		m.notify.readyAsMain()
	} else {
		m.notify.ready()
	}
	m.superviseWorkers()
	m.scheduleTicketRotation()
	m.warnExpiringCerts(m.cfg, time.Now())
	m.scheduleCertCheck()
	return nil
}

// abortStart undoes a failed start: workers stopped, nothing left behind.
func (m *Master) abortStart() {
	m.stopping = true
	for _, g := range append([]*generation(nil), m.gens...) {
		m.killGeneration(g)
	}
	if m.liveWorkers() > 0 {
		m.wait(2*time.Second, func() bool { return m.liveWorkers() == 0 })
	}
	if m.ctl != nil {
		m.ctl.close()
	}
	m.stopAdmin()
	if m.lns != nil {
		m.lns.closeAll()
	}
	RemovePIDFile(m.cfg.PIDFile, os.Getpid())
	m.upg.Stop()
	m.lock.Release()
	m.logs.close()
}
