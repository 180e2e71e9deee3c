package master

import (
	"bytes"
	"testing"
	"time"

	"github.com/pingora-go/pingora/master/admin"
)

func TestStatusText(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	st := &admin.Master{
		Process: admin.Process{
			PID: 10, Started: now.Add(-time.Hour - 2*time.Second), Binary: "/usr/sbin/pingora-master",
			Generation: 3,
		},
		Workers: []admin.Worker{
			{PID: 11, Generation: 3, State: "ready", Started: now.Add(-5 * time.Second), Restarts: 1},
		},
	}
	var b bytes.Buffer
	writeStatus(&b, st, now)
	want := `master pid: 10
uptime: 1h0m2s
binary: /usr/sbin/pingora-master
config: (embedded default)
generation: 3
worker pid=11 generation=3 state=ready uptime=5s restarts=1
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}
