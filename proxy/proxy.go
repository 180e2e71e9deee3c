package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/config"
	"github.com/pingora-go/pingora/proxy/ratelimit"
	"github.com/pingora-go/pingora/proxy/upstream"
)

// Options are the process-side inputs of a Proxy that are not configuration.
type Options struct {
	Logger    hclog.Logger // nil: null logger
	AccessLog io.Writer    // nil: no access log; the proxy buffers writes itself
	// SessionTicketKeys are TLS session-ticket keys, the current one
	// first (see SetSessionTicketKeys); nil: each listener's own.
	SessionTicketKeys [][32]byte
	// RateLimitZone holds the machine-scope rate limits: the zone the
	// master shares among its workers. nil: the proxy makes a zone of its
	// own (of cfg.RateLimitZoneSize) when a route needs one, so without a
	// master the machine is this process.
	RateLimitZone *ratelimit.Zone
	// HealthZone holds the upstream servers' health: the table the master
	// shares among its workers, so that they check each server once
	// between them and agree on it. nil: the proxy makes a table of its
	// own, so without a master the machine is this process.
	HealthZone *upstream.HealthTable
}

// Proxy serves one configuration on the listeners handed to Serve. Its
// zero value is not usable: build it with New.
type Proxy struct {
	log hclog.Logger

	listeners map[string]*listenerState // by config name
	routes    []*route
	upstreams []*upstreamState
	zone      *ratelimit.Zone // machine-scope rate limits; nil when none
	health    *upstream.HealthTable
	// stores are the rate limit stores the routes' cluster-scope limits
	// use, one connection each per worker.
	stores []*ratelimit.Store
	alog   atomic.Pointer[accessLog] // nil: no access log

	upBufs        *bufPools       // upstream connection buffers
	clientWriters *bufPools       // client writers (readers are per listener)
	ctx           context.Context // cancelled by Close: aborts dials
	cancel        context.CancelFunc

	reqIDPrefix [16]byte
	reqIDSeq    atomic.Uint64

	// lifecycle
	ready      chan struct{}
	acceptStop chan struct{} // closed when the listeners close: accept loops waiting for a slot return
	stopOnce   sync.Once
	stopped    chan struct{} // closed when Serve returns
	idle       chan struct{} // closed when draining and no connection is left
	mu         sync.Mutex
	lns        []net.Listener
	conns      map[*clientConn]struct{} // connections on a goroutine
	lot        *parkingLot              // idle connections without one; nil: none (park.go)
	cutting    bool                     // cutAll has begun: nothing parks or resumes
	acceptors  []*rawAcceptor
	ccPool     sync.Pool        // *clientConn, buffers and all
	tunnelBufs sync.Pool        // *[]byte copy buffers of tunnels (tunnel.go)
	closer     fileCloser       // client sockets (see fdclose.go)
	handoff    chan *clientConn // hands connections to idle connection goroutines
	waitIdle   bool             // close idle when the last connection ends
	idleClosed bool
	serveOnce  sync.Once
	drainOnce  sync.Once
	closeOnce  sync.Once
	finOnce    sync.Once
	acceptWG   sync.WaitGroup
	draining   atomic.Bool
	closing    atomic.Bool
	serveErr   error

	stats counters
}

// listenerState is one config listener: its timeouts, route table and
// read buffers (sized for its max_header_size; bodyReaders add
// client_body_buffer_size, for connections buffering a body).
type listenerState struct {
	cfg         config.Listener
	table       *routeTable
	readers     *bufPools
	bodyReaders *bufPools
	bodyBufs    atomic.Int64 // body buffers taken by connections now

	// conns counts this worker's connections on the listener when
	// max_connections caps them; a connection ending at the cap sends on
	// slot, waking the accept loop.
	conns atomic.Int64
	slot  chan struct{}

	parked parkedList // under Proxy.mu

	tls     *tls.Config    // nil: plain HTTP (tls.go)
	h2      *h2Server      // nil: no HTTP/2 (h2.go)
	trusted []netip.Prefix // who may send a PROXY header; none: anyone (proxyproto.go)
	realIP  bool           // trusted proxies name the client in X-Forwarded-For (realclient.go)
}

// Buffer sizes. The client read buffer must hold a whole request head;
// upstream reads are larger because bodies stream through them.
const (
	minClientReadBuf = 4 << 10
	clientWriteBuf   = 8 << 10
	upstreamReadBuf  = 32 << 10
	upstreamWriteBuf = 8 << 10
)

// New builds a proxy from a validated, defaulted configuration. It starts
// nothing but the access log flusher and the rate limiters' janitors
// (Close stops them): Serve starts serving.
func New(cfg *config.Config, opts Options) (*Proxy, error) {
	if cfg == nil {
		return nil, errors.New("proxy: nil config")
	}
	// Config is the one place that defaults and validates; the proxy
	// takes its values as they are and only asserts that they were.
	if err := cfg.CheckBuilt(); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if opts.AccessLog != nil && cfg.AccessLog == nil {
		return nil, errors.New("proxy: an access log sink was given but the config has no access_log block")
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	p := &Proxy{
		log:           log,
		listeners:     map[string]*listenerState{},
		upBufs:        newBufPools(upstreamReadBuf, upstreamWriteBuf),
		clientWriters: newBufPools(0, clientWriteBuf),
		ready:         make(chan struct{}),
		acceptStop:    make(chan struct{}),
		stopped:       make(chan struct{}),
		idle:          make(chan struct{}),
		conns:         map[*clientConn]struct{}{},
		handoff:       make(chan *clientConn),
	}
	health := opts.HealthZone
	if health == nil {
		n := 0
		for _, uc := range cfg.Upstreams {
			n += len(uc.Servers)
		}
		health = upstream.NewPrivateHealthTable(n)
	}
	p.health = health
	ups := map[string]*upstreamState{}
	for _, uc := range cfg.Upstreams {
		u, err := newUpstreamState(uc, health, log)
		if err != nil {
			p.closeUpstreams()
			return nil, fmt.Errorf("proxy: %w", err)
		}
		ups[uc.Name] = u
		p.upstreams = append(p.upstreams, u)
	}
	zone := opts.RateLimitZone
	if zone == nil && needsZone(cfg) {
		var err error
		if zone, err = ratelimit.NewPrivateZone(cfg.RateLimitZoneSize); err != nil {
			p.closeUpstreams()
			return nil, fmt.Errorf("proxy: %w", err)
		}
	}
	p.zone = zone
	stores := map[config.RateLimitStore]*ratelimit.Store{}
	for _, rc := range cfg.Routes {
		if rl := rc.RateLimit; rl != nil && rl.Store != nil && stores[*rl.Store] == nil {
			st := rl.Store
			s := ratelimit.NewStore(ratelimit.StoreOptions{
				Name: st.URL, Addr: st.Addr, DB: st.DB, Username: st.Username, Password: st.Password,
			}, log.Named("ratelimit"))
			stores[*st] = s
			p.stores = append(p.stores, s)
		}
	}
	routes, tables := buildRoutes(cfg, ups, zone, stores)
	p.routes = routes
	for _, l := range cfg.Listeners {
		readBuf := max(l.MaxHeaderSize, minClientReadBuf)
		ls := &listenerState{
			cfg:         l,
			table:       tables[l.Name],
			readers:     newBufPools(readBuf, 0),
			bodyReaders: newBufPools(readBuf+l.ClientBodyBufferSize, 0),
			slot:        make(chan struct{}, 1),
		}
		for _, t := range l.TrustedProxies {
			pfx, err := netip.ParsePrefix(t)
			if err != nil {
				p.closeUpstreams()
				return nil, fmt.Errorf("proxy: listener %q: trusted_proxies: %w", l.Name, err)
			}
			ls.trusted = append(ls.trusted, pfx)
		}
		ls.realIP = len(ls.trusted) > 0 && !l.ProxyProtocol
		if l.TLS != nil {
			var err error
			if ls.tls, err = serverTLS(l.Name, l.TLS); err != nil {
				p.closeUpstreams()
				return nil, fmt.Errorf("proxy: %w", err)
			}
		}
		if l.H2C || (ls.tls != nil && slices.Contains(ls.tls.NextProtos, config.ALPNHTTP2)) {
			ls.h2 = newH2Server(ls, &p.stats.h2)
		}
		p.listeners[l.Name] = ls
	}
	p.SetSessionTicketKeys(opts.SessionTicketKeys)
	// 64 random bits per proxy instance (so per worker and per reload);
	// they are drawn into their own array because hex.Encode cannot work
	// in place: encoding over its source would leave 8 random bits.
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		p.closeUpstreams()
		return nil, fmt.Errorf("proxy: request id seed: %w", err)
	}
	hex.Encode(p.reqIDPrefix[:], seed[:])
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if opts.AccessLog != nil {
		alog := log.Named("access_log")
		a := newAccessLog(opts.AccessLog, cfg.AccessLog.BufferSize, cfg.AccessLog.FlushInterval, func(err error) {
			alog.Error("write failed", "error", err)
		})
		p.alog.Store(a)
		go a.run()
	}
	return p, nil
}

// needsZone reports whether a route has a rate limit that uses the
// machine's zone: a machine-scope one, or a cluster-scope one (whose
// fallback it is while the store is down).
func needsZone(cfg *config.Config) bool {
	for _, r := range cfg.Routes {
		if r.RateLimit != nil && r.RateLimit.Scope != config.ScopeWorker {
			return true
		}
	}
	return false
}

func (p *Proxy) closeUpstreams() {
	for _, u := range p.upstreams {
		u.pool.Close()
	}
	for _, rt := range p.routes {
		if l, ok := rt.limiter.(interface{ Close() }); ok {
			l.Close() // its janitor or lease work; a zone limiter has none
		}
	}
	for _, s := range p.stores {
		s.Close()
	}
}

// Serve accepts on listeners keyed by config listener name and blocks
// until the proxy has stopped: after Drain, when every connection is done
// or the deadline passed; after Close, at once. Ready is closed once every
// accept loop runs. Config listeners missing from the map are not served;
// a name that is not a config listener is an error. Serve owns the
// listeners: stop it with Drain or Close (it accepts on a duplicate of
// each TCP listening socket, so closing a listener from outside does not
// stop it accepting).
func (p *Proxy) Serve(listeners map[string]net.Listener) error {
	first := false
	p.serveOnce.Do(func() { first = true })
	if !first {
		return errors.New("proxy: Serve called twice")
	}
	for name := range listeners {
		if p.listeners[name] == nil {
			return fmt.Errorf("proxy: listener %q is not in the config", name)
		}
	}
	p.closer.open()
	p.openParkingLot()
	// The raw acceptors are set up before Ready, so that a ready proxy
	// holds exactly its duplicates of the listening sockets (acceptorFor
	// closes the listener's own descriptor).
	acceptors := make(map[string]*rawAcceptor, len(listeners))
	for name, ln := range listeners {
		acceptors[name] = p.acceptorFor(ln)
	}
	p.mu.Lock()
	if p.draining.Load() {
		p.mu.Unlock()
		close(p.ready)
		<-p.stopped
		return p.serveErr
	}
	for name, ln := range listeners {
		p.lns = append(p.lns, ln)
		ls := p.listeners[name]
		p.acceptWG.Add(1)
		go p.acceptLoop(ls, ln, acceptors[name])
	}
	p.mu.Unlock()
	for _, u := range p.upstreams {
		u.pool.Start()
	}
	go p.janitor()
	p.log.Info("serving", "listeners", len(listeners), "routes", len(p.routes))
	close(p.ready)
	<-p.stopped
	p.mu.Lock()
	err := p.serveErr
	p.mu.Unlock()
	return err
}

// Ready is closed once every accept loop runs.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

// acceptLoop accepts on ra, the raw acceptor of ln, or on ln itself when
// it has none (a listener that is not a TCP socket).
func (p *Proxy) acceptLoop(ls *listenerState, ln net.Listener, ra *rawAcceptor) {
	defer p.acceptWG.Done()
	var backoff time.Duration
	capped := int64(ls.cfg.MaxConnections)
	for {
		if capped > 0 && !p.waitConnSlot(ls, capped) {
			return
		}
		var c net.Conn
		var err error
		if ra != nil {
			c, err = ra.accept()
		} else {
			c, err = ln.Accept()
		}
		if err != nil {
			if p.draining.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAccept(err) {
				// Out of file descriptors or a connection aborted in the
				// queue: back off as net/http does, keep serving.
				if p.closer.relieve(err) {
					// Closed sockets' descriptor numbers parked for a
					// batch close (fdclose.go) were free for the taking:
					// try again at once.
					continue
				}
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				p.log.Warn("accept failed; retrying", "listener", ls.cfg.Name, "error", err, "delay", backoff)
				time.Sleep(backoff)
				continue
			}
			p.log.Error("accept failed; draining", "listener", ls.cfg.Name, "error", err)
			p.mu.Lock()
			if p.serveErr == nil {
				p.serveErr = fmt.Errorf("accept on listener %q: %w", ls.cfg.Name, err)
			}
			p.mu.Unlock()
			go p.Drain(time.Now().Add(30 * time.Second))
			return
		}
		backoff = 0
		if ra != nil && ra.blocking && !ra.warned {
			ra.warned = true
			p.log.Warn("listening socket is in blocking mode (something cleared O_NONBLOCK); accepting through the scheduler, which costs a thread per wait",
				"listener", ls.cfg.Name)
		}
		if capped > 0 {
			ls.conns.Add(1) // finish takes it back
		}
		cc := p.newClientConn(ls, c)
		if cc == nil {
			if capped > 0 {
				ls.conns.Add(-1)
			}
			continue
		}
		select {
		case p.handoff <- cc: // an idle connection goroutine takes it
		default:
			go p.serveConns(cc)
		}
	}
}

// waitConnSlot returns once the listener has fewer than limit
// connections in this process (max_connections), or false when the proxy
// stops accepting meanwhile. Until then nothing is accepted: new
// connections wait in the kernel's accept queue, where another worker
// may take them, instead of being accepted and left unserved.
func (p *Proxy) waitConnSlot(ls *listenerState, limit int64) bool {
	for ls.conns.Load() >= limit {
		select {
		case <-ls.slot:
		case <-p.acceptStop:
			return false
		}
	}
	return true
}

// connDone takes a connection off its listener's count when
// max_connections caps it, waking the accept loop if it waits for a slot.
func (ls *listenerState) connDone() {
	limit := int64(ls.cfg.MaxConnections)
	if limit <= 0 {
		return
	}
	if ls.conns.Add(-1) < limit {
		select {
		case ls.slot <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// Connection goroutines outlive their connection (or its parking) for a
// while and take the next one: a new connection then costs no goroutine
// creation and no stack growth (measured: a few percent of the CPU of a
// request on a new connection). Under steady traffic they are taken long
// before this; after a burst, their stacks are freed soon after it.
const connGoroutineIdle = 2 * time.Second

func (p *Proxy) serveConns(cc *clientConn) {
	var t *time.Timer
	for {
		cc.serve()
		if t == nil {
			t = time.NewTimer(connGoroutineIdle)
		} else {
			t.Reset(connGoroutineIdle)
		}
		select {
		case cc = <-p.handoff:
		case <-t.C:
			return
		case <-p.stopped:
			return
		}
	}
}

// Drain stops accepting (closing this process's listeners; the sockets stay
// open in the master, so queued connections go to other workers) and
// finishes what is in flight. Each connection's next response says
// "Connection: close" and the connection is closed after it; an idle
// keep-alive connection is left alone (a request may be on its way) until
// its next response or its keep-alive timeout. At the deadline whatever
// is left is cut. Drain returns at once; Serve returns when done.
func (p *Proxy) Drain(deadline time.Time) {
	p.drainOnce.Do(func() {
		p.draining.Store(true)
		p.closeListeners()
		// Pooled upstream connections go now: a draining proxy sends each
		// request at most once more, and an idle pooled connection would
		// otherwise hold its upstream (itself, in the embedded default) in
		// a keep-alive wait until the deadline.
		p.closeIdleUpstreams()
		// Health checks are the serving generation's to make: a draining
		// one keeps the shared verdict it reads, under a config that may
		// have changed the checks.
		for _, u := range p.upstreams {
			go u.pool.Close()
		}
		for _, ls := range p.listeners {
			if ls.h2 != nil {
				ls.h2.goAway()
			}
		}
		p.log.Info("draining", "deadline", deadline.Format(time.RFC3339), "connections", p.stats.active.Load())
		go p.drainWait(deadline)
	})
}

func (p *Proxy) drainWait(deadline time.Time) {
	p.acceptWG.Wait() // no connection can be added after this
	p.mu.Lock()
	if p.connCount() == 0 {
		p.mu.Unlock()
		p.finish()
		return
	}
	p.waitIdle = true
	p.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.idle:
		p.log.Info("drained: no connection left")
	case <-t.C:
		p.mu.Lock()
		n := p.connCount()
		p.mu.Unlock()
		p.log.Warn("drain deadline reached; cutting connections", "connections", n)
		p.cutAll()
	case <-p.stopped:
		return
	}
	p.finish()
}

// Close stops at once: listeners and every connection are closed.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.closing.Store(true)
		p.draining.Store(true)
		p.closeListeners()
		p.cutAll()
		// The cut connections fail fast: give them a moment to write
		// their access log lines (a client may already have its answer).
		p.mu.Lock()
		if p.connCount() > 0 && !p.idleClosed {
			p.waitIdle = true
		}
		wait := p.waitIdle
		p.mu.Unlock()
		if wait {
			t := time.NewTimer(time.Second)
			select {
			case <-p.idle:
			case <-t.C:
			}
			t.Stop()
		}
		p.finish()
	})
	return nil
}

// acceptorFor returns the raw acceptor of a listener (see accept.go), or
// nil to use ln.Accept. The acceptor is closed with the listeners.
func (p *Proxy) acceptorFor(ln net.Listener) *rawAcceptor {
	ra := newRawAcceptor(ln)
	if ra == nil {
		return nil
	}
	p.mu.Lock()
	if p.draining.Load() {
		p.mu.Unlock()
		ra.close()
		return nil
	}
	p.acceptors = append(p.acceptors, ra)
	p.mu.Unlock()
	// The listener's own descriptor is not used any more. Closed, it
	// leaves the poller: while it was registered, every incoming
	// connection fired two poller entries (the listener's and the
	// duplicate's). The socket stays open through the duplicate (and the
	// master's copy); closeListeners closes ln again, harmlessly.
	ln.Close()
	return ra
}

// closeListeners closes this process's listeners. It does not hold p.mu
// while closing: a Close can wait for an accept in progress, and nothing
// else may stall behind it.
func (p *Proxy) closeListeners() {
	p.stopOnce.Do(func() { close(p.acceptStop) })
	p.mu.Lock()
	lns, acc := p.lns, p.acceptors
	p.lns, p.acceptors = nil, nil
	p.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	for _, a := range acc {
		a.close()
	}
}

// cutAll closes every client connection and the upstream connection it is
// using; their goroutines then fail fast and clean up.
func (p *Proxy) cutAll() {
	// From here on no connection parks or comes back from the lot, so
	// none can slip between the two sets while they are cut.
	p.mu.Lock()
	p.cutting = true
	p.mu.Unlock()
	p.cutParked()
	p.mu.Lock()
	defer p.mu.Unlock()
	for cc := range p.conns {
		cc.cut()
	}
}

// connCount is how many client connections there are, parked or not.
// Called with p.mu held.
func (p *Proxy) connCount() int {
	n := len(p.conns)
	if p.lot != nil {
		n += len(p.lot.byFD)
	}
	return n
}

// noteConnGone closes idle when a drain waits for the last connection and
// it is gone. Called with p.mu held.
func (p *Proxy) noteConnGone() {
	if p.waitIdle && !p.idleClosed && p.connCount() == 0 {
		p.waitIdle = false
		p.idleClosed = true
		close(p.idle)
	}
}

// finish flushes the access log, closes upstream pools and limiters, and
// lets Serve return.
func (p *Proxy) finish() {
	p.finOnce.Do(func() {
		p.closing.Store(true)
		p.cancel()
		p.closeIdleUpstreams()
		p.closeUpstreams()
		p.closeParkingLot()
		p.closer.shut()
		if a := p.alog.Load(); a != nil {
			a.close()
		}
		close(p.stopped)
	})
}

// closeIdleUpstreams closes every pooled upstream connection and stops
// pooling new ones.
func (p *Proxy) closeIdleUpstreams() {
	for _, u := range p.upstreams {
		for _, ss := range u.servers {
			ss.closeIdle()
		}
	}
}

// janitor closes expired idle upstream connections now and then, so an
// idle proxy does not hold them (Get closes expired ones lazily too).
func (p *Proxy) janitor() {
	every := 5 * time.Second
	for _, u := range p.upstreams {
		every = min(every, max(u.idleTimeout/2, 100*time.Millisecond))
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			// Closed sockets' files wait for a full batch; when the
			// traffic stops they would wait forever.
			p.closer.flush()
			for _, u := range p.upstreams {
				for _, ss := range u.servers {
					ss.sweep(now)
				}
			}
		case <-p.stopped:
			return
		}
	}
}

// SetAccessLog flushes the access log to the old writer and switches to w
// (nil: stop logging). The caller closes the old writer afterwards. A
// proxy built without an access log starts one.
func (p *Proxy) SetAccessLog(w io.Writer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.alog.Load()
	if a != nil {
		a.swap(w)
		return
	}
	if w == nil {
		return
	}
	alog := p.log.Named("access_log")
	a = newAccessLog(w, 64<<10, time.Second, func(err error) {
		alog.Error("write failed", "error", err)
	})
	p.alog.Store(a)
	go a.run()
}

// isTemporaryAccept reports accept errors that say nothing about the
// listener itself.
func isTemporaryAccept(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM)
}
