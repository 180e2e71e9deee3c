package master

import (
	"fmt"
	"os"

	"github.com/cloudflare/tableflip"
	"github.com/hashicorp/go-hclog"
	"github.com/pingora-go/pingora/worker/wire"
	"golang.org/x/sys/unix"
)

// openZone returns the shared memory every worker maps for the
// machine-scope rate limits: the one the previous master of a binary
// upgrade handed over when it has the configured size, else a new memfd of
// size bytes (zero-filled; the workers lay it out). Either way it is
// handed to the next master, so counters survive upgrades as they survive
// reloads (the master keeps it for its whole life, whatever the
// generations do).
//
// The master never reads or writes the memory: it knows its size and
// name, not its layout, which is the workers' (the name carries the
// layout's version, so a binary with another layout gets a fresh zone).
func openZone(upg *tableflip.Upgrader, size int64, log hclog.Logger) (*os.File, error) {
	return openShared(upg, sharedZone{
		layout: wire.RateLimitZoneLayout, memfd: "pingora-ratelimit-zone", what: "rate-limit zone",
		lost: "rate limits start afresh", sizeSetting: "rate_limit_zone_size",
	}, size, log)
}

// openHealthZone returns the shared memory of the upstream servers'
// health (active-check verdicts, passive failure counts), as openZone
// does for the rate limits: kept across reloads, handed over on an
// upgrade, so that a server found down stays down until it passes checks.
// Its size is fixed by the layout.
func openHealthZone(upg *tableflip.Upgrader, log hclog.Logger) (*os.File, error) {
	return openShared(upg, sharedZone{
		layout: wire.HealthZoneLayout, memfd: "pingora-health-zone", what: "health zone",
		lost: "every upstream server starts healthy", sizeSetting: "the health zone's layout",
	}, wire.HealthZoneSize, log)
}

// sharedZone names one piece of shared memory in logs and hand-overs.
type sharedZone struct {
	layout      string // the hand-over name: the layout and its version
	memfd       string // the memfd's name, as /proc shows it
	what        string
	lost        string // what starting with a fresh zone means
	sizeSetting string // what sets its size
}

func openShared(upg *tableflip.Upgrader, z sharedZone, size int64, log hclog.Logger) (*os.File, error) {
	name := z.layout
	if upg.HasParent() {
		f, err := upg.File(name)
		switch {
		case err != nil:
			log.Warn("cannot take over the previous master's "+z.what+": "+z.lost, "error", err)
		case f != nil:
			st, err := f.Stat()
			if err == nil && st.Size() == size {
				log.Info(z.what+" taken over from the previous master", "size", size)
				return f, nil
			}
			f.Close()
			if err != nil {
				log.Warn("cannot use the previous master's "+z.what+": "+z.lost, "error", err)
			} else {
				log.Warn(z.sizeSetting+" changed: new "+z.what+", "+z.lost, "was", st.Size(), "size", size)
			}
		}
	}
	f, err := newMemfd(z.memfd, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", z.what, err)
	}
	if err := upg.AddFile(name, f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s hand-over: %w", z.what, err)
	}
	return f, nil
}

// newMemfd is size bytes of anonymous shared memory as a descriptor,
// sealed at that size: a worker can write it but cannot shrink it under
// the other workers (their mappings would fault) or grow it.
func newMemfd(name string, size int64) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if err := unix.Ftruncate(fd, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("ftruncate %d: %w", size, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal: %w", err)
	}
	return f, nil
}
