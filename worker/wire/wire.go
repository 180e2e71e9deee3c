// Package wire is the protocol between the master and its workers: how a
// worker is started (argv, environment, descriptor numbers), the handshake
// the master writes on the config pipe, the messages both sides exchange
// over the control socket, and the counters a worker reports in them for
// the master's admin listener (WorkerSample).
//
// It lives beside the worker because it is the worker's interface, and it
// imports neither the proxy nor the master so that both ends can share it
// without breaking the import rule (the master never imports the proxy).
package wire

import (
	"github.com/pingora-go/pingora/config"
)

// How a worker process is recognised and what it finds at fixed
// descriptor numbers. Workers are exec'd as "/proc/self/exe worker" with
// EnvWorker set: both are needed, so a user typing "pingora-master worker"
// gets the ordinary command line instead of a half-started worker.
const (
	ArgWorker   = "worker"
	EnvWorker   = "PINGORA_WORKER"
	WorkerValue = "1"

	// ControlFD is the worker's end of the SOCK_SEQPACKET socket pair.
	ControlFD = 3
	// HandshakeFD is the read end of the pipe carrying the Handshake as
	// JSON; the master closes its end once written, so EOF ends it.
	HandshakeFD = 4
	// FirstExtraFD is where the access log and listeners start; their
	// numbers are in the Handshake.
	FirstExtraFD = 5
)

// Handshake is everything a worker needs to serve, sent once at start.
// The worker never opens the config file nor anything it names: log files
// and listeners arrive as descriptors, the config as the already validated,
// defaulted value.
type Handshake struct {
	Generation int `json:"generation"`
	MasterPID  int `json:"master_pid"`
	// Workers is how many workers the generation has (for GOMAXPROCS).
	Workers int `json:"workers"`
	// Unprivileged is set when the master is root and switched the worker
	// to the configured user: the worker then refuses to run as root.
	Unprivileged bool `json:"unprivileged"`
	UID          int  `json:"uid"`
	GID          int  `json:"gid"`
	// Listeners maps config listener names to inherited descriptors.
	Listeners map[string]int `json:"listeners"`
	// AccessLogFD is the inherited access log, 0 when there is none.
	AccessLogFD int `json:"access_log_fd"`
	// ErrorLogIsFile says fd 2 is the configured error log (not the
	// master's stderr), so a reopen will replace it.
	ErrorLogIsFile bool `json:"error_log_is_file"`
	// NoFile is the RLIMIT_NOFILE soft limit the worker sets on itself
	// first thing: the master's own, as `limits { nofile }` made it. The
	// exec alone does not carry it: every Go program raises its soft
	// limit to the hard one at start. 0: leave it so.
	NoFile uint64 `json:"nofile,omitempty"`
	// TicketKeys are the TLS session-ticket keys, the current one first
	// (see TypeTicketKeys).
	TicketKeys [][32]byte `json:"ticket_keys,omitempty"`
	// RateLimitZoneFD is the inherited shared memory (a memfd the master
	// owns, of config rate_limit_zone_size bytes) holding the
	// machine-scope rate limits; the worker maps it shared. 0: none.
	RateLimitZoneFD int `json:"rate_limit_zone_fd,omitempty"`
	// HealthZoneFD is the inherited shared memory (a memfd the master
	// owns, of HealthZoneSize bytes) holding the upstream servers' health
	// for every worker; the worker maps it shared. 0: none.
	HealthZoneFD int `json:"health_zone_fd,omitempty"`

	Config *config.Config `json:"config"`
}

// RateLimitZoneLayout names the layout of the rate-limit zone the worker
// puts in the master's memory. The master hands the zone to the next
// master of a binary upgrade under this name, so a binary with another
// layout (another name) gets a fresh zone instead of misreading the old
// one. It equals proxy/ratelimit.ZoneLayout (a worker test checks).
const RateLimitZoneLayout = "pingora-ratelimit-zone-v1"

// HealthZoneLayout names the layout of the upstream health zone, as
// RateLimitZoneLayout does; HealthZoneSize is its size, which the layout
// fixes. They equal proxy/upstream's HealthTableLayout and
// HealthTableSize (a worker test checks).
const (
	HealthZoneLayout = "pingora-health-zone-v1"
	HealthZoneSize   = 4096 + 8192*64
)

// Message types. Worker to master: Ready, Error, Reopened, Draining,
// Sample, Heartbeat. Master to worker: Drain, Stop, Reopen, Stats,
// Heartbeat.
const (
	TypeReady    = "ready"    // the proxy accepts on every listener
	TypeError    = "error"    // the worker cannot serve; Error says why; it exits next
	TypeDrain    = "drain"    // stop accepting, finish in-flight work by Deadline, exit
	TypeStop     = "stop"     // fast stop: close everything, exit
	TypeReopen   = "reopen"   // new log descriptors attached, in the order of Files
	TypeReopened = "reopened" // the worker writes to the new descriptors now
	TypeDraining = "draining" // after Drain: the worker no longer accepts
	// TypeStats asks a serving worker for a Sample. The master sends it
	// only when an admin listener is configured.
	TypeStats = "stats"
	// TypeSample carries the worker's counters in Sample: the answer to
	// Stats, and, unasked, the final one a worker that served sends just
	// before it exits (so the master's retired totals are exact).
	TypeSample = "sample"
	// TypeHeartbeat is the master asking a serving worker whether it is
	// alive, and the worker's answer, which carries the same Seq. It is
	// answered from the worker's control loop, whatever the admin block
	// says; a worker that leaves it unanswered for worker_heartbeat_timeout
	// is killed and replaced.
	TypeHeartbeat = "heartbeat"
	// TypeTicketKeys carries the master's rotated TLS session-ticket keys
	// in TicketKeys, for every TLS listener of the worker.
	TypeTicketKeys = "ticket_keys"
)

// File names used in Message.Files for a reopen.
const (
	FileErrorLog  = "error_log"
	FileAccessLog = "access_log"
)

// Message is one control-socket message. SOCK_SEQPACKET keeps message
// boundaries, so each is one JSON document in one datagram, with any
// descriptors attached as SCM_RIGHTS.
type Message struct {
	Type string `json:"type"`
	// Deadline for a drain, in Unix nanoseconds (the master's clock; both
	// ends share the host).
	Deadline int64  `json:"deadline,omitempty"`
	Error    string `json:"error,omitempty"`
	// Files names the attached descriptors, in order.
	Files []string `json:"files,omitempty"`
	// Sample is set on a TypeSample message.
	Sample *WorkerSample `json:"sample,omitempty"`
	// TicketKeys is set on a TypeTicketKeys message.
	TicketKeys [][32]byte `json:"ticket_keys,omitempty"`
	// Seq numbers a heartbeat; the answer repeats it.
	Seq uint64 `json:"seq,omitempty"`
}
