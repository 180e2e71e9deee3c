package config

import "github.com/hashicorp/hcl/v2"

// The raw* types are the file as written, decoded by gohcl: nothing
// defaulted or checked yet. Optional attributes are pointers (nil: absent),
// durations and sizes are strings (so "5s" and "1m" survive to be parsed with
// a good message), and every block keeps its Body and ranges so that the
// validation pass can point at the exact attribute or label it complains of.
// gohcl rejects unknown attributes and blocks by itself.

type rawFile struct {
	PIDFile          *string  `hcl:"pid_file,optional"`
	LockFile         *string  `hcl:"lock_file,optional"`
	ControlSocket    *string  `hcl:"control_socket,optional"`
	User             *string  `hcl:"user,optional"`
	Group            *string  `hcl:"group,optional"`
	Workers          *int     `hcl:"workers,optional"`
	WorkerThreads    *int     `hcl:"worker_threads,optional"`
	ShutdownTimeout  *string  `hcl:"shutdown_timeout,optional"`
	ReloadTimeout    *string  `hcl:"reload_timeout,optional"`
	UpgradeTimeout   *string  `hcl:"upgrade_timeout,optional"`
	HeartbeatTimeout *string  `hcl:"worker_heartbeat_timeout,optional"`
	Daemon           *bool    `hcl:"daemon,optional"`
	Env              []string `hcl:"env,optional"`

	MaxDrainingGenerations *int    `hcl:"max_draining_generations,optional"`
	RateLimitZoneSize      *string `hcl:"rate_limit_zone_size,optional"`

	Log       *rawLog        `hcl:"log,block"`
	AccessLog *rawAccessLog  `hcl:"access_log,block"`
	Limits    *rawLimits     `hcl:"limits,block"`
	Admin     *rawAdmin      `hcl:"admin,block"`
	Listeners []*rawListener `hcl:"listener,block"`
	Upstreams []*rawUpstream `hcl:"upstream,block"`
	Routes    []*rawRoute    `hcl:"route,block"`

	Body hcl.Body `hcl:",body"`
}

type rawLog struct {
	File   *string `hcl:"file,optional"`
	Level  *string `hcl:"level,optional"`
	Format *string `hcl:"format,optional"`

	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

type rawAccessLog struct {
	File          string  `hcl:"file"`
	BufferSize    *string `hcl:"buffer_size,optional"`
	FlushInterval *string `hcl:"flush_interval,optional"`

	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

type rawLimits struct {
	NoFile *int64  `hcl:"nofile,optional"`
	Core   *string `hcl:"core,optional"`

	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

type rawAdmin struct {
	Address string `hcl:"address"`

	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

type rawListener struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	Address   string    `hcl:"address"`

	ClientHeaderTimeout *string `hcl:"client_header_timeout,optional"`
	ClientBodyTimeout   *string `hcl:"client_body_timeout,optional"`
	SendTimeout         *string `hcl:"send_timeout,optional"`
	KeepaliveTimeout    *string `hcl:"keepalive_timeout,optional"`
	KeepaliveRequests   *int    `hcl:"keepalive_requests,optional"`
	MaxHeaderSize       *string `hcl:"max_header_size,optional"`
	MaxBodySize         *string `hcl:"max_body_size,optional"`
	DeferAccept         *bool   `hcl:"defer_accept,optional"`
	Backlog             *int    `hcl:"backlog,optional"`
	ReusePort           *bool   `hcl:"reuseport,optional"`
	MaxConnections      *int    `hcl:"max_connections,optional"`

	RequestBuffering     *bool   `hcl:"request_buffering,optional"`
	ClientBodyBufferSize *string `hcl:"client_body_buffer_size,optional"`
	RequestTimeout       *string `hcl:"request_timeout,optional"`

	TLS *rawTLS `hcl:"tls,block"`

	ProxyProtocol  *bool    `hcl:"proxy_protocol,optional"`
	TrustedProxies []string `hcl:"trusted_proxies,optional"`

	HTTP2                *bool `hcl:"http2,optional"`
	H2C                  *bool `hcl:"h2c,optional"`
	MaxConcurrentStreams *int  `hcl:"max_concurrent_streams,optional"`

	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

type rawUpstream struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`

	Servers     []*rawServer    `hcl:"server,block"`
	Balance     *string         `hcl:"balance,optional"`
	HashKey     *string         `hcl:"hash_key,optional"`
	HealthCheck *rawHealthCheck `hcl:"health_check,block"`
	TLS         *rawUpstreamTLS `hcl:"tls,block"`

	ConnectTimeout        *string `hcl:"connect_timeout,optional"`
	ResponseHeaderTimeout *string `hcl:"response_header_timeout,optional"`
	ReadTimeout           *string `hcl:"read_timeout,optional"`
	IdleTimeout           *string `hcl:"idle_timeout,optional"`
	TunnelTimeout         *string `hcl:"tunnel_timeout,optional"`
	KeepaliveConns        *int    `hcl:"keepalive_conns,optional"`
	Retries               *int    `hcl:"retries,optional"`

	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

type rawServer struct {
	Address      string    `hcl:"address,label"`
	AddressRange hcl.Range `hcl:"address,label_range"`

	Weight      *int    `hcl:"weight,optional"`
	MaxFails    *int    `hcl:"max_fails,optional"`
	FailTimeout *string `hcl:"fail_timeout,optional"`
	Backup      *bool   `hcl:"backup,optional"`

	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

type rawHealthCheck struct {
	Path         *string `hcl:"path,optional"`
	Host         *string `hcl:"host,optional"`
	Interval     *string `hcl:"interval,optional"`
	Timeout      *string `hcl:"timeout,optional"`
	Healthy      *int    `hcl:"healthy,optional"`
	Unhealthy    *int    `hcl:"unhealthy,optional"`
	ExpectStatus []int   `hcl:"expect_status,optional"`

	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

type rawRoute struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`

	Listeners  []string    `hcl:"listeners,optional"`
	Host       *string     `hcl:"host,optional"`
	PathPrefix *string     `hcl:"path_prefix,optional"`
	Upstream   *string     `hcl:"upstream,optional"`
	Respond    *rawRespond `hcl:"respond,block"`

	RequestHeaders        map[string]string `hcl:"request_headers,optional"`
	RemoveRequestHeaders  []string          `hcl:"remove_request_headers,optional"`
	ResponseHeaders       map[string]string `hcl:"response_headers,optional"`
	RemoveResponseHeaders []string          `hcl:"remove_response_headers,optional"`
	MaxBodySize           *string           `hcl:"max_body_size,optional"`
	RequestBuffering      *bool             `hcl:"request_buffering,optional"`

	RateLimit *rawRateLimit `hcl:"rate_limit,block"`

	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

type rawRespond struct {
	Status *int    `hcl:"status,optional"`
	Body   *string `hcl:"body,optional"`

	// HCLBody, not Body: "body" is an attribute of this block.
	HCLBody  hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}

type rawRateLimit struct {
	Requests int     `hcl:"requests"`
	Per      *string `hcl:"per,optional"`
	Burst    *int    `hcl:"burst,optional"`
	Key      *string `hcl:"key,optional"`
	Scope    *string `hcl:"scope,optional"`
	Store    *string `hcl:"store,optional"`

	Body     hcl.Body  `hcl:",body"`
	DefRange hcl.Range `hcl:",def_range"`
}
