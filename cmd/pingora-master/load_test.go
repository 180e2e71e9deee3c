package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// loadSpec is a bounded load: KeepAlive clients that reuse one connection
// for as long as the server allows, and Fresh clients that open a connection
// per request; each picks GET or POST at random for every request. A client never retries
// anything: a request that fails is counted as failed, GET or POST.
type loadSpec struct {
	Addr      string
	Backend   *backend
	KeepAlive int
	Fresh     int
	// TLSAddr, when set, is a TLS listener of the same config that
	// TLSKeepAlive and TLSFresh more clients load the same way.
	TLSAddr      string
	TLSKeepAlive int
	TLSFresh     int
	// H2Addr (a TLS listener, h2 by ALPN) and H2CAddr (a listener with
	// h2c) get H2Conns HTTP/2 clients each, every one a Transport
	// carrying H2Streams concurrent request loops (h2load_test.go).
	H2Addr    string
	H2CAddr   string
	H2Conns   int
	H2Streams int
	// Pause between two requests of one client: the load is paced so that
	// the two cores are shared with the master, its workers and the backend.
	Pause time.Duration
	// MaxPerClient and MaxDuration bound the run in count and time.
	MaxPerClient int
	MaxDuration  time.Duration
}

// load is a running load; stop it to get the report.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	ok      map[string]int // "GET keep-alive" -> successes
	failed  map[string]int // "POST keep-alive reused conn: read response head: EOF" -> count
	samples []string       // the first failures in full
	reconn  int            // keep-alive connections the server closed with Connection: close
	total   int
	h2      h2Counts
}

// loadReport is what a stopped load measured.
type loadReport struct {
	OK       map[string]int
	Failed   map[string]int
	Samples  []string
	Reconn   int
	Total    int
	Duration time.Duration
	H2       h2Counts
}

// FailedTotal is the number of failed requests, all kinds.
func (r loadReport) FailedTotal() int {
	n := 0
	for _, c := range r.Failed {
		n += c
	}
	return n
}

// OKTotal is the number of successful requests, all kinds.
func (r loadReport) OKTotal() int {
	n := 0
	for _, c := range r.OK {
		n += c
	}
	return n
}

func (r loadReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests in %v (%.0f/s), %d ok, %d failed, %d keep-alive connections closed by the server with Connection: close\n",
		r.Total, r.Duration.Round(time.Millisecond), float64(r.Total)/r.Duration.Seconds(), r.OKTotal(), r.FailedTotal(), r.Reconn)
	if r.H2.DialsTLS+r.H2.DialsH2C > 0 {
		fmt.Fprintf(&b, "  HTTP/2 connections opened: %d over TLS, %d h2c; %d requests refused by a GOAWAY and retried by the Transport\n",
			r.H2.DialsTLS, r.H2.DialsH2C, r.H2.Retried)
	}
	for _, k := range sortedKeys(r.OK) {
		fmt.Fprintf(&b, "  ok     %-22s %d\n", k, r.OK[k])
	}
	for _, k := range sortedKeys(r.Failed) {
		fmt.Fprintf(&b, "  FAILED %-60s %d\n", k, r.Failed[k])
	}
	for _, s := range r.Samples {
		fmt.Fprintf(&b, "  sample: %s\n", s)
	}
	return b.String()
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// finish waits for every client to reach its bounds, then reports.
func (l *load) finish(started time.Time) loadReport {
	l.wg.Wait()
	return l.stop(started)
}

// startLoad starts the clients; they run until stop, MaxPerClient or
// MaxDuration, whichever comes first.
func startLoad(spec loadSpec) *load {
	ctx, cancel := context.WithTimeout(context.Background(), spec.MaxDuration)
	l := &load{cancel: cancel, ok: map[string]int{}, failed: map[string]int{}}
	for i := 0; i < spec.KeepAlive; i++ {
		l.wg.Add(1)
		go l.client(ctx, spec, i, true)
	}
	for i := 0; i < spec.Fresh; i++ {
		l.wg.Add(1)
		go l.client(ctx, spec, spec.KeepAlive+i, false)
	}
	if spec.TLSAddr != "" {
		tlsSpec := spec
		tlsSpec.Addr = spec.TLSAddr
		first := spec.KeepAlive + spec.Fresh
		for i := 0; i < spec.TLSKeepAlive+spec.TLSFresh; i++ {
			l.wg.Add(1)
			go l.client(ctx, tlsSpec, first+i, i < spec.TLSKeepAlive)
		}
	}
	l.startH2(ctx, spec)
	return l
}

// Total is the number of requests finished so far (ok or failed).
func (l *load) Total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// stop lets each client finish the request it has on the wire (stopping
// never cuts a request), then reports.
func (l *load) stop(started time.Time) loadReport {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadReport{OK: l.ok, Failed: l.failed, Samples: l.samples, Reconn: l.reconn, Total: l.total, Duration: time.Since(started), H2: l.h2}
}

func (l *load) record(kind string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	if err == nil {
		l.ok[kind]++
		return
	}
	l.failed[kind+": "+squashDigits(err.Error())]++
	if len(l.samples) < 10 {
		l.samples = append(l.samples, fmt.Sprintf("%s %s: %s", time.Now().Format("15:04:05.000"), kind, err))
	}
}

// squashDigits groups errors that differ only by port or id numbers.
func squashDigits(s string) string {
	var b strings.Builder
	prevDigit := false
	for _, r := range s {
		if r >= '0' && r <= '9' {
			if !prevDigit {
				b.WriteByte('N')
			}
			prevDigit = true
			continue
		}
		prevDigit = false
		b.WriteRune(r)
	}
	return b.String()
}

// client is one load client. Keep-alive clients keep their connection until
// the server says Connection: close; a failure on a reused connection is a
// failure (the proxy promised never to close an idle connection under a
// request on its way).
func (l *load) client(ctx context.Context, spec loadSpec, id int, keepAlive bool) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	mode := "new-conn"
	if keepAlive {
		mode = "keep-alive"
	}
	connect := dial
	if spec.TLSAddr != "" && spec.Addr == spec.TLSAddr {
		mode += " tls"
		connect = dialTLS
	}
	var c *conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	tick := time.NewTicker(spec.Pause)
	defer tick.Stop()
	for n := 0; n < spec.MaxPerClient; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		post := rng.IntN(2) == 1
		method := http.MethodGet
		if post {
			method = http.MethodPost
		}
		kind := method + " " + mode
		if c == nil {
			var err error
			if c, err = connect(spec.Addr); err != nil {
				l.record(kind+" new conn", err)
				continue
			}
		}
		where := " new conn"
		if c.used > 0 {
			where = " reused conn"
		}
		reqID := fmt.Sprintf("c%d-r%d", id, n)
		var body []byte
		path := "/app/get?id=" + reqID
		if post {
			body = payload(rng, reqID)
			path = "/app/echo?id=" + reqID
		}
		resp, err := c.do(method, path, body, !keepAlive)
		if err == nil {
			err = checkAnswer(spec.Backend, reqID, body, resp)
		}
		l.record(kind+where, err)
		if err != nil || !keepAlive || resp.Close {
			if err == nil && keepAlive {
				l.mu.Lock()
				l.reconn++
				l.mu.Unlock()
			}
			c.Close()
			c = nil
		}
	}
}

// payload is a POST body of 64 B to 16 KiB that names its request, so an
// answer meant for another request can't pass the echo check.
func payload(rng *rand.Rand, reqID string) []byte {
	n := 64 + rng.IntN(16<<10)
	var b bytes.Buffer
	b.Grow(n)
	b.WriteString(reqID)
	b.WriteByte(':')
	for b.Len() < n {
		b.WriteByte(byte('a' + rng.IntN(26)))
	}
	return b.Bytes()
}

// checkAnswer verifies a load answer came whole from the backend: the GET
// text names the request, the POST echo is byte for byte the body sent.
func checkAnswer(be *backend, reqID string, body []byte, r *response) error {
	if r.Status != http.StatusOK {
		return fmt.Errorf("bad answer: %s", r.describe())
	}
	if body == nil {
		if want := be.getBody(reqID); string(r.Body) != want {
			return fmt.Errorf("GET answer %q, want %q", r.Body, want)
		}
		return nil
	}
	if !bytes.Equal(r.Body, body) {
		return fmt.Errorf("POST echo differs: sent %d bytes, got %d back", len(body), len(r.Body))
	}
	return nil
}
