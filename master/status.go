package master

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pingora-go/pingora/master/admin"
)

// stateNotResponding is how `-s status` shows a ready worker that has
// missed a heartbeat (see heartbeat.go).
const stateNotResponding = "not-responding"

// status is what `-s status` reports (the /status page adds the workers'
// samples to it).
func (m *Master) status() *admin.Master {
	st := &admin.Master{Process: admin.Process{
		PID:        os.Getpid(),
		Started:    m.started,
		Binary:     m.exe,
		ConfigFile: m.cfgPath,
	}}
	if m.gen != nil {
		st.Generation = m.gen.id
	}
	for _, g := range m.gens {
		for _, s := range g.slots {
			if s.w == nil {
				continue
			}
			state := string(s.w.state)
			if s.w.missed && s.w.state == stateReady {
				state = stateNotResponding
			}
			if !s.w.alive() {
				if g.retiring {
					continue
				}
				state = "restarting"
			}
			st.Workers = append(st.Workers, admin.Worker{
				PID:        s.w.pid,
				Generation: g.id,
				State:      state,
				Started:    s.w.started,
				Restarts:   s.restarts,
			})
		}
	}
	return st
}

// writeStatus prints the status in its stable text form:
//
//	master pid: 1234
//	uptime: 1h2m3s
//	binary: /usr/local/sbin/pingora-master
//	config: /etc/pingora/pingora.hcl
//	generation: 3
//	worker pid=1240 generation=3 state=ready uptime=5m2s restarts=0
func writeStatus(w io.Writer, s *admin.Master, now time.Time) {
	cfg := s.ConfigFile
	if cfg == "" {
		cfg = "(embedded default)"
	}
	fmt.Fprintf(w, "master pid: %d\n", s.PID)
	fmt.Fprintf(w, "uptime: %s\n", uptime(now, s.Started))
	fmt.Fprintf(w, "binary: %s\n", s.Binary)
	fmt.Fprintf(w, "config: %s\n", cfg)
	fmt.Fprintf(w, "generation: %d\n", s.Generation)
	for _, wk := range s.Workers {
		fmt.Fprintf(w, "worker pid=%d generation=%d state=%s uptime=%s restarts=%d\n",
			wk.PID, wk.Generation, wk.State, uptime(now, wk.Started), wk.Restarts)
	}
}

func uptime(now, since time.Time) time.Duration {
	d := now.Sub(since)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second)
}
