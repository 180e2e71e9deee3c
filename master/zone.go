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
	name := wire.RateLimitZoneLayout
	if upg.HasParent() {
		f, err := upg.File(name)
		switch {
		case err != nil:
			log.Warn("cannot take over the previous master's rate-limit zone: rate limits start afresh", "error", err)
		case f != nil:
			st, err := f.Stat()
			if err == nil && st.Size() == size {
				log.Info("rate-limit zone taken over from the previous master", "size", size)
				return f, nil
			}
			f.Close()
			if err != nil {
				log.Warn("cannot use the previous master's rate-limit zone: rate limits start afresh", "error", err)
			} else {
				log.Warn("rate_limit_zone_size changed: new zone, rate limits start afresh", "was", st.Size(), "size", size)
			}
		}
	}
	f, err := newMemfd("pingora-ratelimit-zone", size)
	if err != nil {
		return nil, fmt.Errorf("rate-limit zone: %w", err)
	}
	if err := upg.AddFile(name, f); err != nil {
		f.Close()
		return nil, fmt.Errorf("rate-limit zone hand-over: %w", err)
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
