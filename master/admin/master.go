package admin

import (
	"time"

	"github.com/pingora-go/pingora/config"
)

// Process is the master process as `-s status` reports it; the /status
// document starts with the same fields under the same JSON names.
type Process struct {
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Binary  string    `json:"binary"`
	// ConfigFile is the config path; "" for the embedded default.
	ConfigFile string `json:"config"`
	Generation int    `json:"generation"` // the generation serving
}

// Master is what the master knows about itself: what `-s status` answers,
// and what SetMaster hands the aggregator after every change.
type Master struct {
	Process
	Workers []Worker `json:"workers"`
	// Config is the serving generation's config: the listeners, routes and
	// upstreams the page and /status show come from it. nil shows none.
	Config *config.Config `json:"-"`
}

// Worker is one worker process as the master sees it.
type Worker struct {
	PID        int       `json:"pid"`
	Generation int       `json:"generation"`
	State      string    `json:"state"` // starting, ready, draining, stopping, restarting...
	Started    time.Time `json:"started"`
	Restarts   int       `json:"restarts"` // replacements of this worker's slot
}

// Outcomes counts an operation's results.
type Outcomes struct {
	OK     uint64 `json:"ok"`
	Failed uint64 `json:"failed"`
}

func (o *Outcomes) count(ok bool) {
	if ok {
		o.OK++
	} else {
		o.Failed++
	}
}
