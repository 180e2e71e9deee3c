package ratelimit

import (
	"bufio"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The store client speaks RESP (the Redis protocol) itself over one TCP
// connection per worker and store: the protocol subset a lease needs
// (EVALSHA, SCRIPT LOAD, AUTH, SELECT, PING and their replies) is a couple
// of hundred lines, where a client library would add a module and its
// connection pool, retries and context plumbing that the lease design does
// not want (a lease request is never retried or waited for: the next
// request asks again).

// Store timing. A store slower than ioTimeout is treated as down: limits
// fall back to each worker's own until it answers again.
const (
	dialTimeout = 500 * time.Millisecond
	ioTimeout   = 500 * time.Millisecond
	// pingEvery keeps an idle connection checked, so an outage shows (in
	// the log, the metrics, and in limits falling back) without traffic.
	pingEvery  = time.Second
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
	// maxBatch is how many lease requests go out in one write.
	maxBatch = 256
	// queueLen is how many lease requests may wait for the connection;
	// when it is full a limiter asks again on a later request.
	queueLen = 4096
	// maxReplyLine bounds a reply line (errors, lengths, integers).
	maxReplyLine = 4 << 10
)

// leaseScript is the bucket every instance shares, kept in Redis as GCRA
// state like Limiter's: KEYS[1] holds tat (microseconds, Redis's clock, so
// instances' clocks need not agree). It hands out up to ARGV[3] tokens at
// once, as many as the bucket holds with a tolerance of ARGV[2] µs (burst
// plus lease-1 tokens, so that a lease can be taken whole), one token being
// ARGV[1] µs. It returns {tokens granted, µs until ARGV[3] more would be}.
// The key expires when the bucket is full again: an absent key is a full
// bucket.
const leaseScript = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tol = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then tat = now end
local n = 0
if tat - now <= tol then
  n = math.floor((now + tol - tat) / interval) + 1
  if n > want then n = want end
  tat = tat + n * interval
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1)
end
local ready = tat + (want - 1) * interval - now - tol
if ready < 0 then ready = 0 end
return {n, math.floor(ready)}
`

var leaseSHA = func() string {
	sum := sha1.Sum([]byte(leaseScript))
	return hex.EncodeToString(sum[:])
}()

// StoreOptions say where a store is. Name is how logs and metrics call it
// (the URL without its password).
type StoreOptions struct {
	Name     string
	Addr     string // host:port
	DB       int
	Username string
	Password string
}

// Store is one worker's connection to a rate limit store, shared by every
// Cluster limiter pointing at it. Limiters hand it lease requests without
// waiting; it sends them pipelined, in batches, and gives each limiter its
// answer. It reconnects with backoff on its own; while it is down,
// limiters fall back to their local limits (see Cluster).
type Store struct {
	opts StoreOptions
	log  hclog.Logger
	reqs chan leaseRequest
	// state is generation<<1 | up. The generation counts connections: a
	// lease answered on an earlier connection, or a balance taken before
	// an outage, belongs to an older one and is dropped.
	state  atomic.Uint64
	errors atomic.Uint64

	stop chan struct{}
	done chan struct{}
	once sync.Once

	outage bool // run's: an outage has been logged and not yet ended
}

// leaseRequest asks the store for want tokens of one key's bucket on
// behalf of c.
type leaseRequest struct {
	c    *Cluster
	hash uint64
	key  string
	want int64
	gen  uint64
}

// NewStore starts connecting to a store; Close stops it.
func NewStore(opts StoreOptions, log hclog.Logger) *Store {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Store{
		opts: opts,
		log:  log,
		reqs: make(chan leaseRequest, queueLen),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go s.run()
	return s
}

// Name is the store's name from its options.
func (s *Store) Name() string { return s.opts.Name }

// Up reports whether the store is connected and answering.
func (s *Store) Up() bool { return s.state.Load()&1 == 1 }

// Errors counts failures talking to the store: connections refused or
// lost, timeouts, error replies.
func (s *Store) Errors() uint64 { return s.errors.Load() }

// Close disconnects and stops reconnecting. Idempotent.
func (s *Store) Close() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// enqueue hands r to the connection without waiting; false when the queue
// is full.
func (s *Store) enqueue(r leaseRequest) bool {
	select {
	case s.reqs <- r:
		return true
	default:
		return false
	}
}

var errStopped = errors.New("store closed")

func (s *Store) run() {
	defer close(s.done)
	backoff := minBackoff
	for {
		conn, err := s.connect()
		if err == nil {
			s.markUp()
			backoff = minBackoff
			err = s.serve(conn)
			conn.c.Close()
		}
		if errors.Is(err, errStopped) {
			s.state.Store(s.state.Load() &^ 1)
			return
		}
		s.markDown(err)
		if !s.pause(backoff) {
			return
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (s *Store) markUp() {
	gen := s.state.Load()>>1 + 1
	s.state.Store(gen<<1 | 1)
	if s.outage {
		s.log.Info("rate limit store reachable again: shared limits apply", "store", s.opts.Name)
		s.outage = false
	}
}

// markDown logs once per outage, not per failed attempt: a store that
// stays down leaves one warning and a growing error count.
func (s *Store) markDown(err error) {
	s.errors.Add(1)
	s.state.Store(s.state.Load() &^ 1)
	if !s.outage {
		s.log.Warn("rate limit store unreachable: each worker enforces shared limits on its own until it is back",
			"store", s.opts.Name, "error", err)
		s.outage = true
	}
}

// pause waits d between connection attempts, dropping the lease requests
// queued meanwhile (their limiters are on their local limits and start
// afresh with the next connection). It reports false when closed.
func (s *Store) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return false
		case <-t.C:
			return true
		case <-s.reqs:
		}
	}
}

// respConn is a connection with its reader and a reusable write buffer.
type respConn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
}

func (s *Store) connect() (*respConn, error) {
	c, err := net.DialTimeout("tcp", s.opts.Addr, dialTimeout)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", s.opts.Addr, err)
	}
	rc := &respConn{c: c, r: bufio.NewReaderSize(c, 16<<10), buf: make([]byte, 0, 16<<10)}
	if err := s.handshake(rc); err != nil {
		c.Close()
		return nil, err
	}
	return rc, nil
}

// handshake authenticates, selects the database and loads the script (so
// EVALSHA finds it, after a store restart too).
func (s *Store) handshake(rc *respConn) error {
	rc.c.SetDeadline(time.Now().Add(ioTimeout))
	o := &s.opts
	if o.Password != "" {
		if o.Username != "" {
			rc.buf = appendCommand(rc.buf[:0], "AUTH", o.Username, o.Password)
		} else {
			rc.buf = appendCommand(rc.buf[:0], "AUTH", o.Password)
		}
		if err := rc.roundTrip(); err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
		if _, err := rc.readSimple(); err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
	}
	if o.DB != 0 {
		rc.buf = appendCommand(rc.buf[:0], "SELECT", strconv.Itoa(o.DB))
		if err := rc.roundTrip(); err != nil {
			return fmt.Errorf("SELECT %d: %w", o.DB, err)
		}
		if _, err := rc.readSimple(); err != nil {
			return fmt.Errorf("SELECT %d: %w", o.DB, err)
		}
	}
	rc.buf = appendCommand(rc.buf[:0], "SCRIPT", "LOAD", leaseScript)
	if err := rc.roundTrip(); err != nil {
		return fmt.Errorf("SCRIPT LOAD: %w", err)
	}
	sha, err := rc.readBulk()
	if err != nil {
		return fmt.Errorf("SCRIPT LOAD: %w", err)
	}
	if string(sha) != leaseSHA {
		return fmt.Errorf("SCRIPT LOAD: the store answered %q, want %s", sha, leaseSHA)
	}
	return nil
}

// roundTrip writes the buffer.
func (rc *respConn) roundTrip() error {
	_, err := rc.c.Write(rc.buf)
	return err
}

// serve sends lease requests in batches until the connection fails or the
// store is closed. An idle connection is PINGed.
func (s *Store) serve(rc *respConn) error {
	batch := make([]leaseRequest, 0, maxBatch)
	idle := time.NewTimer(pingEvery)
	defer idle.Stop()
	for {
		batch = batch[:0]
		select {
		case <-s.stop:
			return errStopped
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-idle.C:
			if err := rc.ping(); err != nil {
				return err
			}
			idle.Reset(pingEvery)
			continue
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		rc.buf = rc.buf[:0]
		for i := range batch {
			rc.buf = appendLease(rc.buf, &batch[i])
		}
		rc.c.SetDeadline(time.Now().Add(ioTimeout))
		if err := rc.roundTrip(); err != nil {
			return fmt.Errorf("send leases: %w", err)
		}
		for i := range batch {
			r := &batch[i]
			n, ready, err := rc.readLease()
			var re replyError
			switch {
			case errors.As(err, &re):
				// One key's failure (a foreign value under our key, say);
				// the connection is fine.
				s.errors.Add(1)
				r.c.answer(r, 0, errorRetry, true)
			case err != nil:
				return fmt.Errorf("read leases: %w", err)
			default:
				r.c.answer(r, n, time.Duration(ready)*time.Microsecond, false)
			}
			r.c = nil // the batch array must not keep a closed limiter alive
		}
		if !idle.Stop() {
			select {
			case <-idle.C:
			default:
			}
		}
		idle.Reset(pingEvery)
	}
}

// errorRetry is how long a key whose lease got an error reply waits
// before asking again (it is on its local limit meanwhile).
const errorRetry = time.Second

func (rc *respConn) ping() error {
	rc.c.SetDeadline(time.Now().Add(ioTimeout))
	rc.buf = appendCommand(rc.buf[:0], "PING")
	if err := rc.roundTrip(); err != nil {
		return fmt.Errorf("PING: %w", err)
	}
	if _, err := rc.readSimple(); err != nil {
		return fmt.Errorf("PING: %w", err)
	}
	return nil
}

// appendCommand appends a command as a RESP array of bulk strings.
func appendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = appendBulk(b, a)
	}
	return b
}

func appendBulk(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, "\r\n"...)
	b = append(b, s...)
	return append(b, "\r\n"...)
}

// appendLease appends EVALSHA of the lease script for r, without
// building its strings: the key is the limiter's prefix and r's key.
func appendLease(b []byte, r *leaseRequest) []byte {
	c := r.c
	b = append(b, "*7\r\n$7\r\nEVALSHA\r\n$40\r\n"...)
	b = append(b, leaseSHA...)
	b = append(b, "\r\n$1\r\n1\r\n$"...)
	b = strconv.AppendInt(b, int64(len(c.prefix)+len(r.key)), 10)
	b = append(b, "\r\n"...)
	b = append(b, c.prefix...)
	b = append(b, r.key...)
	b = append(b, "\r\n"...)
	b = appendBulk(b, c.intervalArg)
	b = appendBulk(b, c.toleranceArg)
	var num [20]byte
	return appendBulkBytes(b, strconv.AppendInt(num[:0], r.want, 10))
}

func appendBulkBytes(b, s []byte) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, "\r\n"...)
	b = append(b, s...)
	return append(b, "\r\n"...)
}

// replyError is an error reply (-ERR ...): the command failed, the
// connection did not.
type replyError string

func (e replyError) Error() string { return string(e) }

// readLine returns the next reply line without its CRLF. The slice is
// only valid until the next read.
func (rc *respConn) readLine() ([]byte, error) {
	line, err := rc.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("reply line too long")
		}
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("malformed reply line %q", line)
	}
	return line[:len(line)-2], nil
}

// readSimple reads a status reply (+OK, +PONG).
func (rc *respConn) readSimple() (string, error) {
	line, err := rc.readLine()
	if err != nil {
		return "", err
	}
	switch line[0] {
	case '+':
		return string(line[1:]), nil
	case '-':
		return "", replyError(line[1:])
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// readBulk reads a bulk string reply.
func (rc *respConn) readBulk() ([]byte, error) {
	line, err := rc.readLine()
	if err != nil {
		return nil, err
	}
	switch line[0] {
	case '$':
	case '-':
		return nil, replyError(line[1:])
	default:
		return nil, fmt.Errorf("unexpected reply %q", line)
	}
	n, ok := parseInt(line[1:])
	if !ok || n < 0 || n > maxReplyLine {
		return nil, fmt.Errorf("bad bulk length %q", line)
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(rc.r, buf); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// readLease reads the script's {granted, ready} reply.
func (rc *respConn) readLease() (granted, readyMicros int64, err error) {
	line, err := rc.readLine()
	if err != nil {
		return 0, 0, err
	}
	switch {
	case line[0] == '-':
		return 0, 0, replyError(line[1:])
	case string(line) != "*2":
		return 0, 0, fmt.Errorf("unexpected reply %q", line)
	}
	var v [2]int64
	for i := range v {
		line, err := rc.readLine()
		if err != nil {
			return 0, 0, err
		}
		n, ok := parseInt(line[1:])
		if line[0] != ':' || !ok {
			return 0, 0, fmt.Errorf("unexpected reply element %q", line)
		}
		v[i] = n
	}
	if v[0] < 0 || v[1] < 0 {
		return 0, 0, fmt.Errorf("lease reply out of range: %d, %d", v[0], v[1])
	}
	return v[0], v[1], nil
}

// parseInt parses a decimal integer without allocating.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}
