package master

import (
	"os"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/config"
)

// Master is the running master process. Its state is owned by the loop
// goroutine: other goroutines (signals, the control socket, worker
// watchers, timers) send it closures on events or commands on cmds, so no
// lock guards it and operations never interleave.
type Master struct {
	log    hclog.Logger
	logOut *swapWriter
	opts   Options

	cfgPath string // absolute; "" for the embedded default
	// ticketKeys are the TLS session-ticket keys every worker uses
	// (tickets.go), the current one first.
	ticketKeys [][32]byte
	exe        string // this binary, resolved at start
	cfg        *config.Config
	ident      *identity
	upg        *tableflip.Upgrader
	lock       *Lock
	lns        *listenerSet
	// zone is the shared memory of the machine-scope rate limits, passed
	// to every worker (zone.go).
	zone *os.File
	// health is the shared memory of the upstream servers' health,
	// passed to every worker (zone.go).
	health *os.File
	spawn  *spawner
	logs   *logTargets
	ctl    *controlServer
	notify *notifier
	adm    *adminListener // nil without an admin block

	gen     *generation   // the generation serving
	gens    []*generation // every generation with live workers, gen included
	nextGen int

	events  chan func()
	cmds    chan *command
	pending []*command

	started time.Time
	// interrupted: a fast stop arrived while the loop waited on something.
	interrupted bool
	stopping    bool
	upgrading   bool
	// successor is the new master's pid once a binary upgrade handed
	// over to it: commands for the service go there from then on.
	successor int
}
