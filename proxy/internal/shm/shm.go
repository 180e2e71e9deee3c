// Package shm maps the shared-memory files the master makes (memfds, see
// master/zone.go) and every worker maps: the machine's rate-limit zone
// and its upstream health table. One mapping path for both, so that they
// check and map a file the same way.
package shm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Map maps all of f, read-write and shared with the other processes that
// map it, once its size is within [min, max]; what names the memory in
// errors ("rate-limit zone"). The mapping lives as long as the process,
// unless the caller unmaps it (Unmap) on finding it unusable.
func Map(f *os.File, what string, min, max int64) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	size := st.Size()
	if size < min || size > max {
		return nil, fmt.Errorf("%s: size %d is out of range", what, size)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", what, err)
	}
	return mem, nil
}

// Unmap gives back a mapping Map made.
func Unmap(mem []byte) { unix.Munmap(mem) }
