package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pingora-go/pingora/config"
)

// Pool is the servers of one upstream with their balancer and health
// checks. Pick is safe for concurrent use.
type Pool struct {
	name    string
	balance string
	servers []*Server
	primary balancer
	backup  balancer // nil when there are no backup servers
	log     hclog.Logger

	check  *healthConfig       // nil: no active checks
	tls    *config.UpstreamTLS // checks speak TLS too; nil: plain
	shared bool                // the servers' health is in a HealthTable

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewPool builds the pool for cfg, an upstream of a config that config.Load
// built (every default applied, every value checked: the pool applies and
// checks nothing of its own). The servers' health lives in table, shared
// with every pool of every process that maps it and has the same upstream
// name and server address; a nil table keeps it to this pool. A nil log
// discards logs. The one error is a balancer this package does not know;
// the pool starts no goroutine until Start.
func NewPool(cfg config.Upstream, table *HealthTable, log hclog.Logger) (*Pool, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	p := &Pool{
		name:    cfg.Name,
		balance: cfg.Balance,
		log:     log,
		tls:     cfg.TLS,
	}
	var primary, backup []*Server
	for i, sc := range cfg.Servers {
		s := &Server{
			Addr:        sc.Address,
			Weight:      sc.Weight,
			Backup:      sc.Backup,
			slot:        i + 1,
			maxFails:    sc.MaxFails,
			failTimeout: sc.FailTimeout,
			log:         log.With("upstream", cfg.Name, "server", sc.Address),
			activeOff:   cfg.HealthCheck == nil,
		}
		if table != nil {
			if s.sh = table.slot(cfg.Name, sc.Address, time.Now()); s.sh == nil {
				s.log.Warn("the shared health zone is full: this worker keeps the server's health to itself")
			} else {
				p.shared = true
			}
		}
		p.servers = append(p.servers, s)
		if s.Backup {
			backup = append(backup, s)
		} else {
			primary = append(primary, s)
		}
	}
	if len(primary) == 1 && len(backup) == 0 {
		// As nginx: a lone server is never taken out by passive marking,
		// max_fails or not. Marking it down would only turn the errors of
		// some requests into 503 for every client for fail_timeout, with
		// nowhere else to send them. Failures are still counted.
		primary[0].maxFails = 0
	}
	var err error
	if p.primary, err = newBalancer(p.balance, primary); err != nil {
		return nil, fmt.Errorf("upstream %q: %w", cfg.Name, err)
	}
	if len(backup) > 0 {
		if p.backup, err = newBalancer(p.balance, backup); err != nil {
			return nil, fmt.Errorf("upstream %q: %w", cfg.Name, err)
		}
	}
	if cfg.HealthCheck != nil {
		p.check = newHealthConfig(*cfg.HealthCheck)
	}
	return p, nil
}

// Name is the upstream's config name.
func (p *Pool) Name() string { return p.name }

// Balance is the balancing algorithm in use.
func (p *Pool) Balance() string { return p.balance }

// Servers returns every server, primaries and backups, in config order.
// The slice is shared: do not modify it.
func (p *Pool) Servers() []*Server { return p.servers }

// Pick chooses the server for one attempt of a request: a usable (healthy,
// not in tried) primary by the pool's balancer, else a usable backup, else
// nil (the proxy answers 503). key matters only for hash and fnv; tried may
// be nil. Pick does not add the server to tried or count it in flight: the
// caller does, with tried.Add and Begin/End.
func (p *Pool) Pick(key []byte, tried *Tried) *Server {
	s := pickFrom(p.primary, key, tried)
	if s == nil && p.backup != nil {
		s = pickFrom(p.backup, key, tried)
	}
	if s != nil {
		s.picks.Add(1)
	}
	return s
}

// Start launches active health checks, one goroutine per server, if the
// upstream has a health_check block, and keeps the servers' shared slots
// marked in use. Until checks fail, every server counts as healthy (see
// doc-upstream): a fresh worker must serve at once, not wait `healthy`
// intervals; a server an earlier generation's checks found down stays down
// until it passes. An upstream without checks clears the shared verdict,
// so that checks enabled again by a later reload start from up rather
// than from a verdict nobody has kept current. Start is idempotent; after
// Close it does nothing.
func (p *Pool) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.closed {
		return
	}
	p.started = true
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	if p.shared {
		p.wg.Add(1)
		go p.keep(ctx)
	}
	if p.check == nil {
		for _, s := range p.servers {
			if s.sh != nil {
				s.sh.active.Store(0)
			}
		}
		return
	}
	hlog := p.log.Named("health")
	hlog.Info("active health checks started; servers count as healthy until checks fail",
		"upstream", p.name, "path", p.check.path, "interval", p.check.interval,
		"healthy", p.check.healthy, "unhealthy", p.check.unhealthy, "shared", p.shared)
	for _, s := range p.servers {
		slog := hlog.With("upstream", p.name, "server", s.Addr)
		var tlsCfg *tls.Config
		if p.tls != nil {
			var err error
			if tlsCfg, err = p.tls.ClientConfig(s.Addr); err != nil {
				slog.Error("no health checks for this server: its TLS settings do not load", "error", err)
				continue
			}
		}
		c := newChecker(p.check, s, slog, tlsCfg)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			c.run(ctx)
		}()
	}
}

// keep touches the servers' shared slots every touchEvery until ctx is
// done, so that no new server takes a slot a live pool still uses (see
// HealthTable.slot).
func (p *Pool) keep(ctx context.Context) {
	defer p.wg.Done()
	t := time.NewTicker(touchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, s := range p.servers {
				if s.sh != nil {
					s.sh.touch(now)
				}
			}
		}
	}
}

// Close stops the health checks and waits for their goroutines to end (an
// in-progress check is cut short). The pool can still Pick afterwards, on
// the last known health. Close is idempotent.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	cancel := p.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	p.wg.Wait()
}
