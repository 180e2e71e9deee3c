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

// checker runs the active checks of one server.
type checker struct {
	cfg    *healthConfig
	server *Server
	log    hclog.Logger
	req    []byte      // the whole request, built once
	tls    *tls.Config // the upstream's TLS; nil: plain HTTP

	passes, fails int // consecutive results, owned by run's goroutine
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

// run checks at once, then every interval, until ctx is done.
func (c *checker) run(ctx context.Context) {
	t := time.NewTicker(c.cfg.interval)
	defer t.Stop()
	for {
		c.record(c.probe(ctx))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// record applies one result to the consecutive counters and flips the
// server's active state at the thresholds, logging each transition.
func (c *checker) record(err error) {
	s := c.server
	if err == nil {
		c.fails = 0
		c.passes++
		if s.activeDown.Load() && c.passes >= c.cfg.healthy {
			s.activeDown.Store(false)
			c.log.Info("server is up (active check)", "passes", c.passes)
		}
		return
	}
	c.passes = 0
	c.fails++
	if !s.activeDown.Load() && c.fails >= c.cfg.unhealthy {
		s.activeDown.Store(true)
		c.log.Warn("server is down (active check)", "fails", c.fails, "error", err)
		return
	}
	c.log.Debug("health check failed", "fails", c.fails, "error", err)
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
