package config

import (
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Defaults that are not simply written inline below.
const (
	defaultPIDFile      = "/run/pingora/pingora.pid"
	defaultUser         = "nobody"
	defaultNoFile       = 65535
	maxWorkers          = 1024
	maxWeight           = 1000
	maxControlSocketLen = 107 // sun_path is 108 bytes with the NUL
	// The rate-limit zone: 10m as nginx's usual limit_req_zone, at least
	// 64k (a few thousand keys), at most 1g (it is shared memory every
	// worker maps).
	defaultRateLimitZone = 10 << 20
	minRateLimitZone     = 64 << 10
	maxRateLimitZone     = 1 << 30
	minHeartbeatTimeout  = 100 * time.Millisecond
)

// build checks every value of the file on its own and converts it into the
// typed Config with all defaults applied, then runs the checks that relate
// values to each other (names, references, duplicates).
func (b *builder) build(r *rawFile) *Config {
	top := b.scope("", r.Body)
	cfg := &Config{}

	cfg.PIDFile = top.path("pid_file", r.PIDFile, b.pidFile, false)
	cfg.LockFile = top.path("lock_file", r.LockFile, cfg.PIDFile+".lock", false)
	cfg.ControlSocket = top.path("control_socket", r.ControlSocket,
		filepath.Join(filepath.Dir(cfg.PIDFile), "pingora.sock"), false)
	if len(cfg.ControlSocket) > maxControlSocketLen {
		rng := valueRange(r.Body, "control_socket")
		if !present(r.Body, "control_socket") {
			rng = valueRange(r.Body, "pid_file")
		}
		b.errorf(rng, "Control socket path too long",
			"control socket %q is %d bytes; a unix socket path may have at most %d. Set control_socket to a shorter path.",
			cfg.ControlSocket, len(cfg.ControlSocket), maxControlSocketLen)
	}

	cfg.User = top.str("user", r.User, defaultUser)
	if r.Group != nil {
		cfg.Group = top.str("group", r.Group, "")
	}

	cfg.Workers = top.integer("workers", r.Workers, min(runtime.NumCPU(), maxWorkers), 1, maxWorkers)
	cfg.WorkerThreads = top.integer("worker_threads", r.WorkerThreads, 0, 0, 1024)
	if cfg.WorkerThreads == 0 {
		cfg.WorkerThreads = max(1, runtime.NumCPU()/cfg.Workers)
	}

	cfg.ShutdownTimeout = top.duration("shutdown_timeout", r.ShutdownTimeout, 30*time.Second)
	cfg.ReloadTimeout = top.duration("reload_timeout", r.ReloadTimeout, 30*time.Second)
	cfg.UpgradeTimeout = top.duration("upgrade_timeout", r.UpgradeTimeout, 60*time.Second)
	cfg.MaxDrainingGenerations = top.integer("max_draining_generations", r.MaxDrainingGenerations, 4, 1, 64)
	cfg.RateLimitZoneSize = top.size("rate_limit_zone_size", r.RateLimitZoneSize, defaultRateLimitZone, minRateLimitZone, maxRateLimitZone)
	cfg.WorkerHeartbeatTimeout = top.duration("worker_heartbeat_timeout", r.HeartbeatTimeout, 10*time.Second)
	if cfg.WorkerHeartbeatTimeout < minHeartbeatTimeout {
		top.errorf("worker_heartbeat_timeout", "Invalid duration",
			"%q is too short: a worker busy for a moment (a garbage collection, a loaded machine) would be killed; it must be at least %s",
			*r.HeartbeatTimeout, minHeartbeatTimeout)
		cfg.WorkerHeartbeatTimeout = 10 * time.Second
	}
	if r.Daemon != nil {
		cfg.Daemon = *r.Daemon
	}
	cfg.Env = b.env(r)

	cfg.Log = b.log(r.Log)
	cfg.AccessLog = b.accessLog(r.AccessLog)
	cfg.Limits = b.limits(r.Limits)
	if r.Admin != nil {
		s := b.scope("admin", r.Admin.Body)
		a := &Admin{Address: r.Admin.Address}
		if b.decoded(r.Admin.Body, "address") {
			a.Address = s.address("address", r.Admin.Address, bindAddr)
		}
		cfg.Admin = a
	}

	for _, l := range r.Listeners {
		cfg.Listeners = append(cfg.Listeners, b.listener(l))
	}
	for _, u := range r.Upstreams {
		cfg.Upstreams = append(cfg.Upstreams, b.upstream(u))
	}
	for _, rt := range r.Routes {
		cfg.Routes = append(cfg.Routes, b.route(rt))
	}

	b.check(r, cfg)
	return cfg
}

// env checks the env list: NAME or NAME=value, each name once, and none
// of the names the master sets or strips itself. TZ comes first unless
// listed (nginx keeps TZ too).
func (b *builder) env(r *rawFile) []string {
	out := []string{"TZ"}
	seen := map[string]int{} // name -> index in r.Env
	for i, kv := range r.Env {
		name, _, _ := strings.Cut(kv, "=")
		rng := elemRange(r.Body, "env", i)
		switch {
		case !validEnvName(name) || strings.ContainsRune(kv, 0):
			b.errorf(rng, "Invalid environment variable",
				"env: %q: write NAME to pass the master's value or NAME=value to set one; a name is letters, digits and _, not starting with a digit", kv)
			continue
		case strings.HasPrefix(name, "PINGORA_") || name == "NOTIFY_SOCKET" || strings.HasPrefix(name, "LISTEN_"):
			b.errorf(rng, "Reserved environment variable",
				"env: %s is pingora-master's or systemd's own and never passed to workers", name)
			continue
		}
		if j, dup := seen[name]; dup {
			b.errorf(rng, "Duplicate environment variable", "env: %s is already listed (element %d)", name, j+1)
			continue
		}
		seen[name] = i
		if name == "TZ" {
			out[0] = kv
			continue
		}
		out = append(out, kv)
	}
	return out
}

// validEnvName is the portable shell name syntax.
func validEnvName(name string) bool {
	if name == "" || (name[0] >= '0' && name[0] <= '9') {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func (b *builder) log(r *rawLog) Log {
	l := Log{Level: "info", Format: "text"}
	if r == nil {
		return l
	}
	s := b.scope("log", r.Body)
	l.File = s.path("file", r.File, "", true)
	l.Level = s.enum("level", r.Level, l.Level, "trace", "debug", "info", "warn", "error")
	l.Format = s.enum("format", r.Format, l.Format, "text", "json")
	return l
}

func (b *builder) accessLog(r *rawAccessLog) *AccessLog {
	if r == nil {
		return nil
	}
	s := b.scope("access_log", r.Body)
	a := &AccessLog{}
	if b.decoded(r.Body, "file") {
		file := r.File
		a.File = s.path("file", &file, "", false)
	}
	a.BufferSize = int(s.size("buffer_size", r.BufferSize, 64<<10, 1, 64<<20))
	a.FlushInterval = s.duration("flush_interval", r.FlushInterval, time.Second)
	return a
}

func (b *builder) limits(r *rawLimits) Limits {
	l := Limits{NoFile: defaultNoFile}
	if r == nil {
		return l
	}
	s := b.scope("limits", r.Body)
	if r.NoFile != nil {
		if *r.NoFile < 0 {
			s.errorf("nofile", "Invalid value", "%d: the open files limit must be 0 (leave as inherited) or more", *r.NoFile)
		} else {
			l.NoFile = uint64(*r.NoFile)
		}
	}
	l.Core = s.size("core", r.Core, 0, -1, math.MaxInt64)
	return l
}

func (b *builder) listener(r *rawListener) Listener {
	s := b.scope(fmt.Sprintf("listener %q", r.Name), r.Body)
	l := Listener{Name: r.Name, Address: r.Address}
	if b.decoded(r.Body, "address") {
		l.Address = s.address("address", r.Address, bindAddr)
	}
	l.ClientHeaderTimeout = s.duration("client_header_timeout", r.ClientHeaderTimeout, 60*time.Second)
	l.ClientBodyTimeout = s.duration("client_body_timeout", r.ClientBodyTimeout, 60*time.Second)
	l.SendTimeout = s.duration("send_timeout", r.SendTimeout, 60*time.Second)
	l.KeepaliveTimeout = s.duration("keepalive_timeout", r.KeepaliveTimeout, 75*time.Second)
	l.KeepaliveRequests = s.integer("keepalive_requests", r.KeepaliveRequests, 10000, 0, math.MaxInt32)
	l.MaxHeaderSize = int(s.size("max_header_size", r.MaxHeaderSize, 16<<10, 1<<10, 1<<20))
	l.MaxBodySize = s.size("max_body_size", r.MaxBodySize, 1<<20, 0, math.MaxInt64)
	if r.DeferAccept != nil {
		l.DeferAccept = *r.DeferAccept
	}
	l.Backlog = s.integer("backlog", r.Backlog, 0, 0, 65535)
	if r.ReusePort != nil {
		l.ReusePort = *r.ReusePort
	}
	l.MaxConnections = s.integer("max_connections", r.MaxConnections, 0, 0, math.MaxInt32)
	l.RequestBuffering = true
	if r.RequestBuffering != nil {
		l.RequestBuffering = *r.RequestBuffering
	}
	l.ClientBodyBufferSize = int(s.size("client_body_buffer_size", r.ClientBodyBufferSize, 64<<10, 1<<10, 16<<20))
	l.RequestTimeout = s.duration("request_timeout", r.RequestTimeout, 60*time.Second)
	if r.TLS != nil {
		l.TLS = b.listenerTLS(r.Name, r.TLS)
	}
	if r.ProxyProtocol != nil {
		l.ProxyProtocol = *r.ProxyProtocol
	}
	l.TrustedProxies = s.prefixes("trusted_proxies", r.TrustedProxies)
	l.HTTP2 = r.HTTP2 == nil || *r.HTTP2
	if r.H2C != nil {
		l.H2C = *r.H2C
	}
	l.MaxConcurrentStreams = s.integer("max_concurrent_streams", r.MaxConcurrentStreams, 128, 1, 1000)
	switch {
	case l.H2C && l.TLS != nil:
		s.errorf("h2c", "Invalid value", "h2c is cleartext HTTP/2; on a TLS listener HTTP/2 is chosen by ALPN (http2 = true)")
	case l.H2C && !l.HTTP2:
		s.errorf("h2c", "Invalid value", "h2c = true needs http2 (leave http2 out or set it to true)")
	case l.TLS != nil && !l.HTTP2:
		if r.TLS.ALPN == nil {
			l.TLS.ALPN = []string{ALPNHTTP1}
		} else if slices.Contains(l.TLS.ALPN, ALPNHTTP2) {
			b.errorf(valueRange(r.TLS.Body, "alpn"), "Invalid value", "listener %q: alpn offers %q but http2 = false", r.Name, ALPNHTTP2)
		}
	}
	return l
}

func (b *builder) upstream(r *rawUpstream) Upstream {
	s := b.scope(fmt.Sprintf("upstream %q", r.Name), r.Body)
	u := Upstream{Name: r.Name}
	for _, srv := range r.Servers {
		u.Servers = append(u.Servers, b.server(r.Name, srv))
	}
	u.Balance = s.enum("balance", r.Balance, "round_robin", "round_robin", "least_conn", "random", "hash", "fnv")
	u.HashKey = "client_ip"
	if r.HashKey != nil {
		k, err := parseKey(*r.HashKey, "client_ip", "uri")
		if err != nil {
			s.errorf("hash_key", "Invalid hash key", "%s", err)
		} else {
			u.HashKey = k
		}
		balanceOK := r.Balance == nil || *r.Balance == u.Balance
		if balanceOK && u.Balance != "hash" && u.Balance != "fnv" {
			b.warnf(valueRange(r.Body, "hash_key"), "Unused hash key",
				"upstream %q: hash_key has no effect with balance = %q; it is used by \"hash\" and \"fnv\"", r.Name, u.Balance)
		}
	}
	if r.TLS != nil {
		u.TLS = b.upstreamTLS(r.Name, r.TLS)
	}
	u.ConnectTimeout = s.duration("connect_timeout", r.ConnectTimeout, 5*time.Second)
	u.ResponseHeaderTimeout = s.duration("response_header_timeout", r.ResponseHeaderTimeout, 60*time.Second)
	u.ReadTimeout = s.duration("read_timeout", r.ReadTimeout, 60*time.Second)
	u.IdleTimeout = s.duration("idle_timeout", r.IdleTimeout, 60*time.Second)
	u.TunnelTimeout = s.duration("tunnel_timeout", r.TunnelTimeout, time.Hour)
	u.KeepaliveConns = s.integer("keepalive_conns", r.KeepaliveConns, 64, 0, 1<<16)
	u.Retries = s.integer("retries", r.Retries, 2, 0, 100)
	if r.HealthCheck != nil {
		u.HealthCheck = b.healthCheck(r.Name, r.HealthCheck)
	}
	return u
}

func (b *builder) server(upstream string, r *rawServer) Server {
	s := b.scope(fmt.Sprintf("upstream %q server %q", upstream, r.Address), r.Body)
	srv := Server{Address: r.Address}
	if a, err := parseAddress(r.Address, dialAddr); err != nil {
		b.errorf(r.AddressRange, "Invalid server address", "upstream %q: server %s", upstream, err)
	} else {
		srv.Address = a
	}
	srv.Weight = s.integer("weight", r.Weight, 1, 1, maxWeight)
	srv.MaxFails = s.integer("max_fails", r.MaxFails, 1, 0, math.MaxInt32)
	srv.FailTimeout = s.duration("fail_timeout", r.FailTimeout, 10*time.Second)
	if r.Backup != nil {
		srv.Backup = *r.Backup
	}
	return srv
}

func (b *builder) healthCheck(upstream string, r *rawHealthCheck) *HealthCheck {
	s := b.scope(fmt.Sprintf("upstream %q health_check", upstream), r.Body)
	h := &HealthCheck{}
	h.Path = s.str("path", r.Path, "/")
	if !strings.HasPrefix(h.Path, "/") || !validRequestTarget(h.Path) {
		s.errorf("path", "Invalid path", "%q must start with \"/\" and have no spaces or control characters", h.Path)
		h.Path = "/"
	}
	if r.Host != nil {
		h.Host = s.str("host", r.Host, "")
		if !validHeaderValue(h.Host) || strings.ContainsAny(h.Host, " \t") {
			s.errorf("host", "Invalid host", "%q cannot be sent as a Host header", h.Host)
			h.Host = ""
		}
	}
	h.Interval = s.duration("interval", r.Interval, 5*time.Second)
	h.Timeout = s.duration("timeout", r.Timeout, 2*time.Second)
	h.Healthy = s.integer("healthy", r.Healthy, 2, 1, 1000)
	h.Unhealthy = s.integer("unhealthy", r.Unhealthy, 3, 1, 1000)
	if r.ExpectStatus == nil {
		for code := 200; code <= 399; code++ {
			h.ExpectStatus = append(h.ExpectStatus, code)
		}
		return h
	}
	if len(r.ExpectStatus) == 0 {
		s.errorf("expect_status", "Empty list", "list at least one status, or leave it out for 200-399")
	}
	for i, code := range r.ExpectStatus {
		if code < 100 || code > 599 {
			b.errorf(elemRange(r.Body, "expect_status", i), "Invalid status",
				"%s: %d is not an HTTP status (100-599)", s.name("expect_status"), code)
			continue
		}
		h.ExpectStatus = append(h.ExpectStatus, code)
	}
	return h
}

// validRequestTarget reports whether p can be sent as a request target:
// no spaces or control characters.
func validRequestTarget(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] == 0x7f {
			return false
		}
	}
	return true
}

func (b *builder) route(r *rawRoute) Route {
	s := b.scope(fmt.Sprintf("route %q", r.Name), r.Body)
	rt := Route{Name: r.Name, MaxBodySize: -1}
	if len(r.Listeners) > 0 {
		rt.Listeners = r.Listeners
	}
	if r.Host != nil && *r.Host != "" {
		h, err := parseRouteHost(*r.Host)
		if err != nil {
			s.errorf("host", "Invalid host", "%s", err)
			b.unmatchable[r] = true
		} else {
			rt.Host = h
		}
	}
	rt.PathPrefix = "/"
	if r.PathPrefix != nil {
		if !strings.HasPrefix(*r.PathPrefix, "/") || !validRequestTarget(*r.PathPrefix) {
			s.errorf("path_prefix", "Invalid path prefix", "%q must start with \"/\" and have no spaces or control characters", *r.PathPrefix)
			b.unmatchable[r] = true
		} else if why := unnormalizedPrefix(*r.PathPrefix); why != "" {
			s.errorf("path_prefix", "Invalid path prefix",
				"%q %s: requests are matched on their normalized path (percent-escapes decoded except %%25, repeated slashes merged, \".\" and \"..\" segments removed), so it could never match; write the prefix in that form",
				*r.PathPrefix, why)
			b.unmatchable[r] = true
		} else {
			rt.PathPrefix = *r.PathPrefix
		}
	}
	if r.Upstream != nil {
		rt.Upstream = *r.Upstream
	}
	if r.Respond != nil {
		rt.Respond = b.respond(r.Name, r.Respond)
	}
	rt.RequestHeaders = s.headerMap("request_headers", r.RequestHeaders)
	rt.RemoveRequestHeaders = s.headerNames("remove_request_headers", r.RemoveRequestHeaders)
	rt.ResponseHeaders = s.headerMap("response_headers", r.ResponseHeaders)
	rt.RemoveResponseHeaders = s.headerNames("remove_response_headers", r.RemoveResponseHeaders)
	rt.MaxBodySize = s.size("max_body_size", r.MaxBodySize, -1, -1, math.MaxInt64)
	if r.RequestBuffering != nil {
		v := *r.RequestBuffering
		rt.RequestBuffering = &v
	}
	if r.RateLimit != nil {
		rt.RateLimit = b.rateLimit(r.Name, r.RateLimit)
	}
	return rt
}

func (b *builder) respond(route string, r *rawRespond) *Respond {
	s := b.scope(fmt.Sprintf("route %q respond", route), r.HCLBody)
	res := &Respond{}
	res.Status = s.integer("status", r.Status, 200, 100, 599)
	if r.Body != nil {
		res.Body = *r.Body
	}
	return res
}

func (b *builder) rateLimit(route string, r *rawRateLimit) *RateLimit {
	s := b.scope(fmt.Sprintf("route %q rate_limit", route), r.Body)
	rl := &RateLimit{Requests: r.Requests}
	if b.decoded(r.Body, "requests") && r.Requests < 1 {
		s.errorf("requests", "Invalid value", "%d: a rate limit allows at least 1 request per period", r.Requests)
		rl.Requests = 1
	}
	rl.Per = s.duration("per", r.Per, time.Second)
	rl.Burst = s.integer("burst", r.Burst, 0, 0, math.MaxInt32)
	defScope := ScopeMachine
	if r.Store != nil {
		defScope = ScopeCluster
	}
	rl.Scope = s.enum("scope", r.Scope, defScope, ScopeMachine, ScopeWorker, ScopeCluster)
	rl.Key = "client_ip"
	if r.Key != nil {
		k, err := parseKey(*r.Key, "client_ip")
		if err != nil {
			s.errorf("key", "Invalid rate limit key", "%s", err)
		} else {
			rl.Key = k
		}
	}
	if r.Store != nil {
		st, err := parseStoreURL(*r.Store)
		if err != nil {
			s.errorf("store", "Invalid rate limit store", "%q: %s", redactURL(*r.Store), err)
		} else {
			rl.Store = st
		}
	}
	switch {
	case rl.Scope == ScopeCluster && r.Store == nil:
		s.errorf("scope", "Missing rate limit store", `"cluster" keeps the buckets in a store: set store = "redis://host:6379/0"`)
	case rl.Scope != ScopeCluster && r.Store != nil:
		s.errorf("store", "Rate limit store unused", "a %q scope limit keeps its buckets in this machine: leave store out, or set scope = %q", rl.Scope, ScopeCluster)
		rl.Store = nil
	}
	return rl
}

// unnormalizedPrefix says why a path prefix is not in the normal form the
// proxy matches request paths in ("" when it is): a prefix that is not
// could only ever be compared against paths that never occur, and a deny
// route written as "/admin//" or "/%61dmin/" would silently protect
// nothing.
func unnormalizedPrefix(p string) string {
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '%' && !strings.HasPrefix(p[i:], "%25"):
			return "has a percent-escape"
		case p[i] == '/' && i+1 < len(p) && p[i+1] == '/':
			return "has repeated slashes"
		case p[i] == '/':
			seg := p[i+1:]
			if j := strings.IndexByte(seg, '/'); j >= 0 {
				seg = seg[:j]
			} else {
				continue // the last segment may be a partial name: "/." matches "/.well-known"
			}
			if seg == "." || seg == ".." {
				return "has a \".\" or \"..\" segment"
			}
		}
	}
	return ""
}
