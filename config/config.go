// Package config loads, defaults and validates pingora-master's HCL
// configuration. It knows nothing of processes or HTTP: it turns a file into
// a typed, fully defaulted Config, or into HCL diagnostics that name the
// file, line and column of every problem at once.
//
// The typed Config is also what the master hands to its workers (as JSON over
// a pipe), so workers never open the config file or anything it names.
package config

import "time"

// Config is a loaded, defaulted and validated configuration. Every field
// holds its final value: consumers never apply defaults of their own, and
// CheckBuilt lets them assert that a Config came from the loader.
type Config struct {
	// File is the absolute path the config was loaded from ("" for the
	// embedded default).
	File string `json:"file"`

	PIDFile       string `json:"pid_file"`       // default /run/pingora/pingora.pid
	LockFile      string `json:"lock_file"`      // default PIDFile + ".lock"
	ControlSocket string `json:"control_socket"` // default dir(PIDFile)/pingora.sock

	// User and Group the workers run as when the master is root.
	// User defaults to "nobody"; Group to the user's primary group
	// (resolved by the master, not here).
	User  string `json:"user"`
	Group string `json:"group"`

	Workers       int `json:"workers"`        // default runtime.NumCPU()
	WorkerThreads int `json:"worker_threads"` // GOMAXPROCS per worker; unset or 0 in the file: CPUs / workers, at least 1

	ShutdownTimeout time.Duration `json:"shutdown_timeout"` // default 30s
	ReloadTimeout   time.Duration `json:"reload_timeout"`   // default 30s
	UpgradeTimeout  time.Duration `json:"upgrade_timeout"`  // default 60s
	// WorkerHeartbeatTimeout is how long a serving worker may leave the
	// master's heartbeat unanswered before the master kills and replaces
	// it; a replacement must be ready within reload_timeout. Default 10s,
	// at least 100ms.
	WorkerHeartbeatTimeout time.Duration `json:"worker_heartbeat_timeout"`
	Daemon                 bool          `json:"daemon"`

	// Env is the whole environment workers get besides what the master
	// itself passes them, as nginx's env directive: "NAME" passes the
	// master's value of NAME (nothing when it is unset), "NAME=value" sets
	// it. Everything else in the master's environment stays with the
	// master. Always starts with "TZ" unless the file names TZ itself.
	Env []string `json:"env"`

	// MaxDrainingGenerations caps how many old generations may drain at
	// once after reloads (default 4, 1..64): past it, the oldest is cut at
	// once, so a burst of reloads with long-lived connections cannot pile
	// up workers.
	MaxDrainingGenerations int `json:"max_draining_generations"`

	// RateLimitZoneSize is the size in bytes of the shared memory the
	// master creates for the machine-wide rate limits (default 10m, 64k to
	// 1g). Each key of each limit takes one 16-byte slot; a full zone
	// forgets the least recently limited key. The zone lives as long as
	// the master (and is handed over by a binary upgrade), so its size
	// cannot change by reload.
	RateLimitZoneSize int64 `json:"rate_limit_zone_size"`

	Log       Log        `json:"log"`
	AccessLog *AccessLog `json:"access_log,omitempty"` // nil: no access log
	Limits    Limits     `json:"limits"`
	Admin     *Admin     `json:"admin,omitempty"` // nil: no admin listener

	Listeners []Listener `json:"listeners"`
	Upstreams []Upstream `json:"upstreams"`
	Routes    []Route    `json:"routes"`

	// Warnings are the problems that did not stop the load (an unused
	// upstream, say), one line each as "file:line,col: summary: detail", for
	// the master to log. They stay with the master: not sent to workers.
	Warnings []string `json:"-"`
}

// Log is where and how the master and workers write their own log.
type Log struct {
	File   string `json:"file"`   // "" : stderr
	Level  string `json:"level"`  // trace debug info warn error; default info
	Format string `json:"format"` // text or json; default text
}

// AccessLog is the per-request JSON log.
type AccessLog struct {
	File          string        `json:"file"`
	BufferSize    int           `json:"buffer_size"`    // bytes; default 64 KiB
	FlushInterval time.Duration `json:"flush_interval"` // default 1s
}

// Limits are the resource limits the master sets on itself before it
// binds or spawns anything (workers inherit them).
type Limits struct {
	NoFile uint64 `json:"nofile"` // default 65535; 0: leave as inherited
	Core   int64  `json:"core"`   // bytes; default 0 (no core dumps); -1: leave as inherited
}

// Admin is the master's own HTTP listener for metrics and status.
type Admin struct {
	Address string `json:"address"`
}

// Listener is one listening socket, bound by the master.
type Listener struct {
	Name    string `json:"name"`
	Address string `json:"address"`       // host:port
	TLS     *TLS   `json:"tls,omitempty"` // nil: plain HTTP

	// ProxyProtocol: every connection starts with a PROXY protocol
	// header (v1 or v2, HAProxy's accept-proxy, nginx's "listen ...
	// proxy_protocol"), from a load balancer in front; the client
	// address it carries is the connection's for everything
	// (X-Forwarded-For, rate limits, hashing, the access log). A
	// connection without one is closed. Default false.
	ProxyProtocol bool `json:"proxy_protocol"`
	// TrustedProxies are proxies in front (CIDR prefixes), as nginx's
	// set_real_ip_from. With ProxyProtocol, the peers allowed to send the
	// header (a connection from any other is closed; empty: any peer).
	// Without it, a request from one of them takes its client address
	// from X-Forwarded-For: the rightmost address that is not itself a
	// trusted proxy (nginx's real_ip_recursive), for rate limits, hashing
	// and the access log; the X-Forwarded-For sent upstream still ends
	// with the peer's address.
	TrustedProxies []string `json:"trusted_proxies,omitempty"`

	// HTTP2 serves HTTP/2 as well as HTTP/1.1: on a TLS listener to
	// clients that choose h2 by ALPN, on a plain one only with H2C.
	// Default true.
	HTTP2 bool `json:"http2"`
	// H2C accepts cleartext HTTP/2 with prior knowledge on a plain
	// listener (a connection that opens with the HTTP/2 preface; others
	// speak HTTP/1.1 on the same port), for a load balancer in front that
	// speaks h2 to its backends. No Upgrade: h2c (RFC 9113 drops it).
	// Default false.
	H2C bool `json:"h2c"`
	// MaxConcurrentStreams is how many requests one HTTP/2 connection may
	// have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); default 128.
	MaxConcurrentStreams int `json:"max_concurrent_streams"`

	ClientHeaderTimeout time.Duration `json:"client_header_timeout"` // default 60s
	ClientBodyTimeout   time.Duration `json:"client_body_timeout"`   // between body reads; default 60s
	SendTimeout         time.Duration `json:"send_timeout"`          // a write to the client may block this long; default 60s
	KeepaliveTimeout    time.Duration `json:"keepalive_timeout"`     // idle keep-alive; default 75s
	KeepaliveRequests   int           `json:"keepalive_requests"`    // per connection; default 10000; 0: unlimited
	MaxHeaderSize       int           `json:"max_header_size"`       // request line + headers, bytes; default 16 KiB
	MaxBodySize         int64         `json:"max_body_size"`         // bytes; default 1 MiB; 0: unlimited

	// DeferAccept sets TCP_DEFER_ACCEPT on the socket (nginx's "listen
	// ... deferred", HAProxy's "defer-accept"): a connection reaches a
	// worker only once its first data has arrived, so that accepting and
	// reading the request are one wake-up. A client that connects and
	// stays silent is held by the kernel for up to ClientHeaderTimeout
	// instead. Default false.
	DeferAccept bool `json:"defer_accept"`

	// Backlog is the accept queue's length (nginx's "listen ... backlog=",
	// HAProxy's "backlog"): connections the kernel holds, handshake done,
	// until a worker accepts them; beyond it new connections' SYNs are
	// dropped (the client retries). 0, the default: the system's maximum,
	// net.core.somaxconn, as Go's own listeners use.
	Backlog int `json:"backlog"`

	// ReusePort gives each worker slot a listening socket of its own,
	// bound with SO_REUSEPORT (nginx's "listen ... reuseport"): the
	// kernel spreads new connections over the sockets, and only the
	// worker owning a socket wakes for a connection queued in it, where
	// with one shared socket every worker wakes for every connection.
	// The trade-off: a connection queued in a hung worker's socket waits
	// until worker_heartbeat_timeout replaces that worker; a reload that
	// lowers workers closes the surplus sockets once no generation uses
	// them, resetting what is still queued in them (unless the system has
	// net.ipv4.tcp_migrate_req=1); and turning it on or off for an
	// address needs a restart. Default false.
	ReusePort bool `json:"reuseport"`

	// MaxConnections caps the client connections each worker holds on
	// this listener at once (nginx's worker_connections, per listener).
	// At the cap a worker stops accepting: further connections wait in
	// the kernel's accept queue (or go to another worker) instead of
	// being accepted and left unserved. 0, the default: no cap (the
	// open files limit still applies).
	MaxConnections int `json:"max_connections"`

	// RequestBuffering reads a request body of at most
	// ClientBodyBufferSize bytes whole before an upstream server is
	// picked (nginx's proxy_request_buffering), so that a slow client
	// holds no upstream connection while it uploads. Larger bodies, and
	// every body when it is false, stream to the server as they arrive.
	// Default true; a route may override it.
	RequestBuffering bool `json:"request_buffering"`
	// ClientBodyBufferSize is the largest body buffered (nginx's
	// client_body_buffer_size). A connection holds a buffer this large
	// only while it buffers a body. Default 64 KiB.
	ClientBodyBufferSize int `json:"client_body_buffer_size"`
	// RequestTimeout bounds a whole request from its first byte: the head
	// and, when buffered, the body must have arrived within it, however
	// steadily they trickle in (HAProxy's "timeout http-request" with
	// "option http-buffer-request"); else 408. ClientHeaderTimeout and
	// ClientBodyTimeout still bound the head and each body read. A
	// streamed body is bounded by ClientBodyTimeout alone. Default 60s.
	RequestTimeout time.Duration `json:"request_timeout"`
}

// Upstream is a named pool of servers a route can proxy to.
type Upstream struct {
	Name    string   `json:"name"`
	Servers []Server `json:"servers"`
	Balance string   `json:"balance"`  // round_robin (default), least_conn, random (two choices), hash (ketama ring), fnv (FNV-1a modulo)
	HashKey string   `json:"hash_key"` // client_ip (default), uri, header:NAME; only for hash
	// TLS: the servers speak HTTPS (nil: plain HTTP).
	TLS *UpstreamTLS `json:"tls,omitempty"`

	ConnectTimeout        time.Duration `json:"connect_timeout"`         // default 5s
	ResponseHeaderTimeout time.Duration `json:"response_header_timeout"` // default 60s
	ReadTimeout           time.Duration `json:"read_timeout"`            // between body reads; default 60s
	IdleTimeout           time.Duration `json:"idle_timeout"`            // pooled connection; default 60s
	TunnelTimeout         time.Duration `json:"tunnel_timeout"`          // upgraded connection with no bytes either way; default 1h
	KeepaliveConns        int           `json:"keepalive_conns"`         // idle conns kept per server; default 64; 0: no reuse
	Retries               int           `json:"retries"`                 // extra attempts; default 2

	HealthCheck *HealthCheck `json:"health_check,omitempty"` // nil: passive only
}

// Server is one upstream server.
type Server struct {
	Address     string        `json:"address"`
	Weight      int           `json:"weight"`       // default 1
	MaxFails    int           `json:"max_fails"`    // default 1; 0: passive marking off
	FailTimeout time.Duration `json:"fail_timeout"` // default 10s
	Backup      bool          `json:"backup"`       // used only when no primary is healthy
}

// HealthCheck is an active HTTP check of every server of an upstream.
type HealthCheck struct {
	Path      string        `json:"path"`      // default "/"
	Host      string        `json:"host"`      // Host header; "" (default): the server address
	Interval  time.Duration `json:"interval"`  // default 5s
	Timeout   time.Duration `json:"timeout"`   // default 2s
	Healthy   int           `json:"healthy"`   // consecutive passes to mark up; default 2
	Unhealthy int           `json:"unhealthy"` // consecutive failures to mark down; default 3
	// ExpectStatus lists acceptable statuses; default 200-399.
	ExpectStatus []int `json:"expect_status"`
}

// Route maps requests, by listener, host and path prefix, to an upstream or
// to a fixed response.
type Route struct {
	Name       string   `json:"name"`
	Listeners  []string `json:"listeners"`   // filled with every listener when absent
	Host       string   `json:"host"`        // "" any; exact, or "*.example.com"; lower case
	PathPrefix string   `json:"path_prefix"` // default "/"

	Upstream string   `json:"upstream,omitempty"` // exactly one of Upstream and Respond
	Respond  *Respond `json:"respond,omitempty"`

	RequestHeaders        map[string]string `json:"request_headers,omitempty"` // set on the way up
	RemoveRequestHeaders  []string          `json:"remove_request_headers,omitempty"`
	ResponseHeaders       map[string]string `json:"response_headers,omitempty"` // set on the way down
	RemoveResponseHeaders []string          `json:"remove_response_headers,omitempty"`

	// MaxBodySize overrides the listener's; -1: inherit.
	MaxBodySize int64 `json:"max_body_size"`

	// RequestBuffering overrides the listener's request_buffering; nil:
	// inherit.
	RequestBuffering *bool `json:"request_buffering,omitempty"`

	RateLimit *RateLimit `json:"rate_limit,omitempty"`
}

// Respond is a fixed answer a route gives by itself (nginx's return).
type Respond struct {
	Status int    `json:"status"` // default 200
	Body   string `json:"body"`
}

// RateLimit is a token bucket per key.
type RateLimit struct {
	Requests int           `json:"requests"`
	Per      time.Duration `json:"per"`   // default 1s
	Burst    int           `json:"burst"` // default 0: no burst beyond the rate
	Key      string        `json:"key"`   // client_ip (default) or header:NAME
	// Scope is where the buckets live: ScopeMachine (default), in the
	// master's shared zone, one limit for all workers of the machine;
	// ScopeWorker, in each worker's own memory (with N workers a client
	// may get up to N times the limit); or ScopeCluster (the default when
	// Store is set), in Store, one limit for every instance using it.
	Scope string `json:"scope"`
	// Store is the server a cluster-scope limit keeps its buckets in;
	// set exactly when Scope is ScopeCluster.
	Store *RateLimitStore `json:"store,omitempty"`
}

// RateLimitStore is the Redis (or Valkey) server a shared rate limit keeps
// its buckets in, from `store = "redis://[[user]:password@]host[:port][/db]"`.
type RateLimitStore struct {
	// URL is the setting without its password: safe for logs, status and
	// the metrics' store label.
	URL      string `json:"url"`
	Addr     string `json:"addr"` // host:port; the port defaults to 6379
	DB       int    `json:"db"`   // SELECTed after connecting; default 0
	Username string `json:"username,omitempty"`
	// Password is sent with AUTH. It travels to the workers inside the
	// config (the master's pipe); URL, which is what is shown, leaves it
	// out.
	Password string `json:"password,omitempty"`
}

// Rate limit scopes.
const (
	ScopeMachine = "machine"
	ScopeWorker  = "worker"
	ScopeCluster = "cluster"
)
