package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pingora-go/pingora/config"
)

// healthConfig is a config.HealthCheck with defaults applied and the
// expected statuses as a bitmap.
type healthConfig struct {
	path      string
	host      string
	interval  time.Duration
	timeout   time.Duration
	healthy   int
	unhealthy int
	expect    [10]uint64 // bit n: status n passes (0..639)
}

func newHealthConfig(hc config.HealthCheck) *healthConfig {
	c := &healthConfig{
		path:      hc.Path,
		host:      hc.Host,
		interval:  hc.Interval,
		timeout:   hc.Timeout,
		healthy:   hc.Healthy,
		unhealthy: hc.Unhealthy,
	}
	for _, st := range hc.ExpectStatus {
		if st >= 0 && st < 640 {
			c.expect[st>>6] |= 1 << (st & 63)
		}
	}
	return c
}

func (c *healthConfig) passes(status int) bool {
	return status >= 0 && status < 640 && c.expect[status>>6]&(1<<(status&63)) != 0
}

// checker runs the active checks of one server in one process. Every
// worker runs one per server, but only the worker that claims a check
// makes it (run), so the server gets one check per interval from the whole
// machine, and the verdict is the shared slot's.
type checker struct {
	cfg    *healthConfig
	server *Server
	log    hclog.Logger
	req    []byte      // the whole request, built once
	tls    *tls.Config // the upstream's TLS; nil: plain HTTP
}

func newChecker(cfg *healthConfig, s *Server, log hclog.Logger, tlsCfg *tls.Config) *checker {
	host := cfg.host
	if host == "" {
		host = s.Addr
	}
	req := "GET " + cfg.path + " HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"User-Agent: pingora-master-health-check\r\n" +
		"Accept: */*\r\n" +
		"Connection: close\r\n\r\n"
	return &checker{cfg: cfg, server: s, log: log, req: []byte(req), tls: tlsCfg}
}

// run checks when a check is due, until ctx is done. The slot's due time
// is the claim: the worker whose compare-and-swap moves it forward makes
// the check, the others sleep until the new due time. The claim reaches
// past the check's timeout, so checks of one server never overlap; once
// the check is done the due time is set to one interval after its start
// (or its end, for a check slower than the interval). A worker killed
// during a check leaves the claim to expire: one check is late, none is
// lost for good, and no worker is special.
//
// Due times are CLOCK_MONOTONIC readings, which every process of the
// machine shares and which no clock step moves.
func (c *checker) run(ctx context.Context) {
	h := c.server.health()
	hold := int64(max(c.cfg.interval, c.cfg.timeout))
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := monoNow()
		due := h.due.Load()
		if now < due {
			t.Reset(time.Duration(due - now))
			continue
		}
		claim := now + hold
		if !h.due.CompareAndSwap(due, claim) {
			t.Reset(0) // another worker claimed it: read its due time
			continue
		}
		h.touch(time.Now())
		err := c.probe(ctx)
		if ctx.Err() != nil {
			// Cut short by Close: no verdict, and the next owner of the
			// check need not wait out the claim.
			h.due.CompareAndSwap(claim, now+int64(c.cfg.interval))
			return
		}
		h.checks.Add(1)
		c.record(err, time.Now())
		end := monoNow()
		next := max(now+int64(c.cfg.interval), end)
		h.due.CompareAndSwap(claim, next)
		t.Reset(time.Duration(next - end))
	}
}

// monoNow reads CLOCK_MONOTONIC in nanoseconds. It cannot fail on Linux
// (the clock exists and the pointer is valid); were it to, 0 would make
// every check due at once rather than never.
func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// record applies one result to the shared consecutive counters and flips
// the verdict at the thresholds. Counters and verdict are one word,
// changed by one compare-and-swap, so results recorded at once by
// different workers (a check that outlived its claim) each count once;
// the worker whose result flips the verdict logs the transition.
func (c *checker) record(err error, now time.Time) {
	h := c.server.health()
	for {
		w := h.active.Load()
		down, fails, passes, since := unpackActive(w)
		flipped := false
		if err == nil {
			fails = 0
			passes++
			if down && passes >= c.cfg.healthy {
				down, since, flipped = false, now.Unix(), true
			}
		} else {
			passes = 0
			fails++
			if !down && fails >= c.cfg.unhealthy {
				down, since, flipped = true, now.Unix(), true
			}
		}
		if !h.active.CompareAndSwap(w, packActive(down, fails, passes, since)) {
			continue
		}
		switch {
		case flipped && down:
			c.log.Warn("server is down (active check)", "fails", fails, "error", err)
		case flipped:
			c.log.Info("server is up (active check)", "passes", passes)
		case err != nil:
			c.log.Debug("health check failed", "fails", fails, "error", err)
		}
		return
	}
}

// probe makes one check: connect, send GET path with Connection: close,
// read the status line, all within timeout. It returns nil when the status
// is expected. Only the status line is read; closing right after is fine
// since the request asked for Connection: close.
func (c *checker) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.server.Addr)
	if err != nil {
		return fmt.Errorf("connect %s: %w", c.server.Addr, err)
	}
	defer conn.Close()
	if c.tls != nil {
		tc := tls.Client(conn, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake with %s: %w", c.server.Addr, err)
		}
		conn = tc
	}
	// Cancellation (Close, or the timeout) unblocks reads and writes.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write(c.req); err != nil {
		return fmt.Errorf("send check to %s: %w", c.server.Addr, err)
	}
	br := bufio.NewReaderSize(conn, 256)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("read status from %s: %w", c.server.Addr, err)
	}
	status, err := parseStatusLine(line)
	if err != nil {
		return fmt.Errorf("check %s: %w", c.server.Addr, err)
	}
	if !c.cfg.passes(status) {
		return fmt.Errorf("check %s: unexpected status %d", c.server.Addr, status)
	}
	return nil
}

// parseStatusLine returns the status of "HTTP/1.x NNN reason".
func parseStatusLine(line []byte) (int, error) {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return 0, fmt.Errorf("%w: %q", errNoStatus, truncate(line, 64))
	}
	st := 0
	for _, b := range line[9:12] {
		if b < '0' || b > '9' {
			return 0, fmt.Errorf("%w: %q", errNoStatus, truncate(line, 64))
		}
		st = st*10 + int(b-'0')
	}
	return st, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

var errNoStatus = errors.New("no HTTP status line")
