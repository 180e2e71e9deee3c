package proxy_test

// HTTP/2 to clients, proxied to HTTP/1.1 upstreams: every rule of the
// HTTP/1.1 path holds for a stream (routing, header rules, limits, rate
// limits, timeouts, the access log, draining), and the known HTTP/2 attacks
// and H2->H1 smuggling tricks get nowhere. Well-behaved clients are x/net's
// own Transport, over TLS (h2 by ALPN) and over cleartext (h2c with prior
// knowledge); the attacks are written frame by frame with a raw Framer.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/pingora-go/pingora/config"

	"github.com/pingora-go/pingora/proxy"
)

// h2Config has an h2 listener (TLS, h2 chosen by ALPN) and an h2c one
// (cleartext, prior knowledge), both extended by @LISTENER@, both routing by
// @ROUTES@ to upstream "app" (server @BE@, extended by @UPSTREAM@).
const h2Config = `
access_log { file = "/dev/null" } # the lines go to the test's sink
listener "h2" {
  address = "127.0.0.1:1"
  @LISTENER@
  tls {
    certificate {
      cert_file = "@CERTS@/a.pem"
      key_file  = "@CERTS@/a.key"
    }
  }
}
listener "h2c" {
  address = "127.0.0.1:2" # never bound: the test's own listener stands in
  h2c     = true
  @LISTENER@
}
upstream "app" {
  @UPSTREAM@
  server "@BE@" {}
}
@ROUTES@
`

// h2Setup is what h2Proxy fills into h2Config; empty Routes is one
// catch-all route to "app".
type h2Setup struct {
	BE, Listener, Upstream, Routes string
	Opts                           proxy.Options
}

func h2Proxy(t *testing.T, s h2Setup) *proxy.Running {
	t.Helper()
	if s.Routes == "" {
		s.Routes = `route "all" { upstream = "app" }`
	}
	return startProxy(t, expand(h2Config, map[string]string{
		"CERTS": testCerts(t), "BE": s.BE, "LISTENER": s.Listener, "UPSTREAM": s.Upstream, "ROUTES": s.Routes,
	}), s.Opts)
}

// h2Modes are the two ways a client reaches HTTP/2: the listener's name
// is the mode's.
var h2Modes = []string{"h2", "h2c"}

// h2Client is x/net's HTTP/2 client for listener mode of rp, and the base
// URL to use with it. It speaks nothing but HTTP/2: a proxy answering in
// HTTP/1.1 fails every request.
func h2Client(t *testing.T, rp *proxy.Running, mode string) (*http.Client, string) {
	t.Helper()
	tr := &http2.Transport{DisableCompression: true}
	base := "https://" + rp.Addr(mode)
	if mode == "h2c" {
		tr.AllowHTTP = true
		tr.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		base = "http://" + rp.Addr(mode)
	} else {
		tr.TLSClientConfig = &tls.Config{RootCAs: certPool(t), ServerName: "a.example", NextProtos: []string{"h2"}}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, base
}

// h2Do is do for an HTTP/2 client: it also checks that the answer came
// over HTTP/2.
func h2Do(t *testing.T, c *http.Client, method, url, host string, body io.Reader, hdr map[string]string) result {
	t.Helper()
	r := do(t, c, method, url, host, body, hdr)
	if r.Proto != "HTTP/2.0" {
		t.Fatalf("%s %s: answered over %s, want HTTP/2", method, url, r.Proto)
	}
	return r
}

// ---- a recording upstream ----

// recBackend is an HTTP/1.1 upstream that records what reached it, whole
// body included, and how many requests it was handling at once: what the
// attack and smuggling tests must prove did or did not get through.
type recBackend struct {
	Addr string

	mu   sync.Mutex
	reqs []recReq

	started     atomic.Int64 // requests whose head arrived
	inflight    atomic.Int64
	maxInflight atomic.Int64
	conns       atomic.Int64
	arrived     chan string
}

type recReq struct {
	Method, URI, Host string
	Header            http.Header
	CL                int64
	Body              string
	BodyErr           error
}

func startRecBackend(t *testing.T) *recBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &recBackend{Addr: ln.Addr().String(), arrived: make(chan string, 4096)}
	srv := &http.Server{
		Handler: http.HandlerFunc(b.serveHTTP),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				b.conns.Add(1)
			}
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

func (b *recBackend) serveHTTP(w http.ResponseWriter, r *http.Request) {
	b.started.Add(1)
	n := b.inflight.Add(1)
	defer b.inflight.Add(-1)
	for {
		m := b.maxInflight.Load()
		if n <= m || b.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case b.arrived <- r.RequestURI:
	default:
	}
	body, err := io.ReadAll(r.Body)
	b.mu.Lock()
	b.reqs = append(b.reqs, recReq{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(),
		CL: r.ContentLength, Body: string(body), BodyErr: err})
	b.mu.Unlock()
	if err != nil {
		return
	}
	if d, _ := time.ParseDuration(r.URL.Query().Get("sleep")); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	fmt.Fprintf(w, "%s %s body=%q", r.Method, r.RequestURI, body)
}

func (b *recBackend) requests() []recReq {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]recReq(nil), b.reqs...)
}

// waitArrival waits until n requests for uri have reached the handler.
func (b *recBackend) waitArrival(t *testing.T, uri string, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for n > 0 {
		select {
		case u := <-b.arrived:
			if u == uri {
				n--
			}
		case <-timeout:
			t.Fatalf("%d more request(s) for %s did not reach the upstream within 10s", n, uri)
		}
	}
}

// ---- a raw HTTP/2 client ----

// h2Raw is an HTTP/2 client connection written frame by frame, for what
// a well-behaved client never sends.
type h2Raw struct {
	t   *testing.T
	c   net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer

	// What the server said: its settings, and a GOAWAY once one came.
	settings map[http2.SettingID]uint32
	goAway   *http2.GoAwayFrame
	streams  map[uint32]*h2Outcome
}

// dialH2Raw opens an HTTP/2 connection to the listener mode of rp (its
// preface and empty SETTINGS sent) and reads the server's SETTINGS.
// rcvBuf > 0 shrinks the socket's receive buffer, so that what the
// server sends and the client does not read backs up in the server.
func dialH2Raw(t *testing.T, rp *proxy.Running, mode string, rcvBuf int) *h2Raw {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if rcvBuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvBuf)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	var c net.Conn
	var err error
	if mode == "h2" {
		c, err = tls.DialWithDialer(&d, "tcp", rp.Addr(mode), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err == nil && c.(*tls.Conn).ConnectionState().NegotiatedProtocol != "h2" {
			t.Fatalf("ALPN chose %q, want h2", c.(*tls.Conn).ConnectionState().NegotiatedProtocol)
		}
	} else {
		c, err = d.Dial("tcp", rp.Addr(mode))
	}
	if err != nil {
		t.Fatalf("dial %s: %v", mode, err)
	}
	t.Cleanup(func() { c.Close() })
	h := &h2Raw{t: t, c: c, settings: map[http2.SettingID]uint32{}, streams: map[uint32]*h2Outcome{}}
	h.fr = http2.NewFramer(c, c)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.fr.MaxHeaderListSize = 1 << 20
	h.enc = hpack.NewEncoder(&h.hb)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatalf("preface: %v", err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatalf("SETTINGS: %v", err)
	}
	f, err := h.fr.ReadFrame()
	if err != nil {
		t.Fatalf("reading the server's SETTINGS: %v", err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("first frame from the server %v, want its SETTINGS", f)
	}
	sf.ForeachSetting(func(s http2.Setting) error { h.settings[s.ID] = s.Val; return nil })
	if err := h.fr.WriteSettingsAck(); err != nil {
		t.Fatalf("SETTINGS ack: %v", err)
	}
	c.SetDeadline(time.Time{})
	return h
}

// block encodes header fields (name, value pairs) with the connection's
// encoder; nothing is validated, so a test can send what x/net's
// Transport would refuse.
func (h *h2Raw) block(fields ...string) []byte {
	h.hb.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(h.hb.Bytes())
}

// reqFields are the pseudo-header fields of a request, then extra.
func reqFields(method, path string, extra ...string) []string {
	return append([]string{":method", method, ":scheme", "https", ":authority", "h2.example", ":path", path}, extra...)
}

// headers sends one HEADERS frame, END_HEADERS set.
func (h *h2Raw) headers(id uint32, endStream bool, fields ...string) {
	h.t.Helper()
	h.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.block(fields...), EndStream: endStream, EndHeaders: true}); err != nil {
		h.t.Fatalf("HEADERS on stream %d: %v", id, err)
	}
}

func (h *h2Raw) data(id uint32, endStream bool, b string) {
	h.t.Helper()
	h.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := h.fr.WriteData(id, endStream, []byte(b)); err != nil {
		h.t.Fatalf("DATA on stream %d: %v", id, err)
	}
}

// h2Outcome is how a stream ended for the client.
type h2Outcome struct {
	Status int
	Header http.Header
	Body   string
	Ended  bool          // END_STREAM came
	Reset  bool          // RST_STREAM came
	Code   http2.ErrCode // its code
	Err    error         // the connection failed or closed first
}

func (o h2Outcome) String() string {
	switch {
	case o.Reset:
		return "RST_STREAM " + o.Code.String()
	case o.Ended:
		return fmt.Sprintf("%d %q", o.Status, clip(o.Body))
	}
	return fmt.Sprintf("no end (status %d, %d body bytes): %v", o.Status, len(o.Body), o.Err)
}

// refused reports whether the server refused the stream: RST_STREAM, a 4xx
// answer, or the connection ended over it.
func (o h2Outcome) refused() bool {
	return o.Reset || (o.Ended && o.Status >= 400 && o.Status < 500) || o.Err != nil
}

// await reads frames until stream id ends, or the connection does.
func (h *h2Raw) await(id uint32, d time.Duration) h2Outcome {
	h.t.Helper()
	err := h.pump(d, func() bool { o := h.streams[id]; return o != nil && (o.Ended || o.Reset) })
	o := h.stream(id)
	if !o.Ended && !o.Reset {
		o.Err = err
	}
	return *o
}

func (h *h2Raw) stream(id uint32) *h2Outcome {
	o := h.streams[id]
	if o == nil {
		o = &h2Outcome{Header: http.Header{}}
		h.streams[id] = o
	}
	return o
}

// pump reads frames into the streams' outcomes, answering the server's
// SETTINGS and PINGs and crediting DATA back, until done is true (checked
// after each frame), the connection fails, or d passes.
func (h *h2Raw) pump(d time.Duration, done func() bool) error {
	h.c.SetReadDeadline(time.Now().Add(d))
	defer h.c.SetReadDeadline(time.Time{})
	for !done() {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			h.goAway = &http2.GoAwayFrame{FrameHeader: f.FrameHeader, LastStreamID: f.LastStreamID, ErrCode: f.ErrCode}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				h.fr.WritePing(true, f.Data)
			}
		case *http2.DataFrame:
			o := h.stream(f.StreamID)
			o.Body += string(f.Data())
			if n := len(f.Data()); n > 0 {
				h.fr.WriteWindowUpdate(0, uint32(n))
				h.fr.WriteWindowUpdate(f.StreamID, uint32(n))
			}
			o.Ended = o.Ended || f.StreamEnded()
		case *http2.MetaHeadersFrame:
			o := h.stream(f.StreamID)
			for _, hf := range f.Fields {
				if hf.Name == ":status" {
					if s, _ := strconv.Atoi(hf.Value); s >= 200 || o.Status == 0 {
						o.Status = s
					}
				} else {
					o.Header.Add(hf.Name, hf.Value)
				}
			}
			o.Ended = o.Ended || f.StreamEnded()
		case *http2.RSTStreamFrame:
			o := h.stream(f.StreamID)
			o.Reset, o.Code = true, f.ErrCode
		}
	}
	return nil
}

// closedWithin reads (and drops) frames until the connection closes or d
// passes; it reports whether it closed.
func (h *h2Raw) closedWithin(d time.Duration) bool {
	err := h.pump(d, func() bool { return false })
	ne, ok := err.(net.Error)
	return !ok || !ne.Timeout()
}

// ---- the HTTP/1.1 rules over HTTP/2 ----

// Routing by host (:authority, port or not) and path prefix picks the
// same route as for HTTP/1.1.
func TestE2EH2Routing(t *testing.T) {
	t.Parallel()
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	rp := h2Proxy(t, h2Setup{BE: a.Addr, Routes: expand(`
upstream "b" {
  server "@B@" {}
}
upstream "c" {
  server "@C@" {}
}
route "api" {
  host        = "shop.example"
  path_prefix = "/api/"
  upstream    = "c"
}
route "shop" {
  host     = "shop.example"
  upstream = "b"
}
route "all" { upstream = "app" }
`, map[string]string{"B": b.Addr, "C": c.Addr})})
	for _, mode := range h2Modes {
		cl, base := h2Client(t, rp, mode)
		for _, tc := range []struct{ host, path, want string }{
			{"shop.example", "/api/v1", "c"},
			{"shop.example:8443", "/api/v1", "c"},
			{"shop.example", "/apix", "b"},
			{"SHOP.example", "/", "b"},
			{"other.example", "/api/v1", "a"},
		} {
			r := h2Do(t, cl, "GET", base+tc.path, tc.host, nil, nil)
			if r.Status != 200 || r.Header.Get("X-Backend") != tc.want {
				t.Errorf("%s: %s%s went to %q (status %d), want backend %s", mode, tc.host, tc.path, r.Header.Get("X-Backend"), r.Status, tc.want)
			}
			if s := seenByBackend(t, r.Body); s.URI != tc.path || s.Host != tc.host {
				t.Errorf("%s: upstream saw URI %q Host %q, want %q and :authority %q", mode, s.URI, s.Host, tc.path, tc.host)
			}
		}
	}
}

// Request and response header rules, X-Forwarded-*, hop-by-hop removal
// both ways, and the HTTP/1.1 request the upstream gets (Host from
// :authority; the body framed by Content-Length when the client declared
// one, else chunked).
func TestE2EH2Headers(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "hdr")
	rp := h2Proxy(t, h2Setup{BE: be.Addr, Routes: `
route "rewrite" {
  path_prefix             = "/hdrs"
  upstream                = "app"
  request_headers         = { "X-Added" = "by-route" }
  remove_request_headers  = ["X-Remove-Me"]
  response_headers        = { "X-Served-By" = "pingora" }
  remove_response_headers = ["X-Backend-Secret"]
}
route "all" { upstream = "app" }
`})
	for _, mode := range h2Modes {
		cl, base := h2Client(t, rp, mode)
		r := h2Do(t, cl, "GET", base+"/hdrs?q=1", "shop.example:8080", nil, map[string]string{
			"Proxy-Authorization": "Basic Zm9vOmJhcg==",
			"X-Remove-Me":         "gone",
			"X-Added":             "from-client",
			"X-End-To-End":        "kept",
			"X-Forwarded-For":     "203.0.113.7",
			"Te":                  "trailers",
		})
		if r.Status != 200 {
			t.Fatalf("%s: status %d %q", mode, r.Status, clip(r.Body))
		}
		s := seenByBackend(t, r.Body)
		for _, h := range []string{"Proxy-Authorization", "X-Remove-Me", "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade"} {
			if v := s.Header.Values(h); len(v) > 0 {
				t.Errorf("%s: upstream received %s: %q", mode, h, v)
			}
		}
		if v := s.Header.Values("Te"); len(v) > 1 || len(v) == 1 && v[0] != "trailers" {
			t.Errorf("%s: upstream received TE %q", mode, v)
		}
		if v := s.Header.Values("X-Added"); len(v) != 1 || v[0] != "by-route" {
			t.Errorf("%s: X-Added %q, want [by-route]", mode, v)
		}
		if v := s.Header.Get("X-End-To-End"); v != "kept" {
			t.Errorf("%s: X-End-To-End %q, want kept", mode, v)
		}
		proto := map[string]string{"h2": "https", "h2c": "http"}[mode]
		if v := s.Header.Get("X-Forwarded-Proto"); v != proto {
			t.Errorf("%s: X-Forwarded-Proto %q, want %s", mode, v, proto)
		}
		if v := strings.Join(s.Header.Values("X-Forwarded-For"), ", "); v != "203.0.113.7, 127.0.0.1" {
			t.Errorf("%s: X-Forwarded-For %q, want the client's with 127.0.0.1 appended", mode, v)
		}
		if v := s.Header.Get("X-Forwarded-Host"); v != "shop.example:8080" {
			t.Errorf("%s: X-Forwarded-Host %q, want the :authority", mode, v)
		}
		if s.Header.Get("X-Request-Id") == "" {
			t.Errorf("%s: no X-Request-Id added", mode)
		}
		if s.URI != "/hdrs?q=1" || s.Host != "shop.example:8080" {
			t.Errorf("%s: upstream saw URI %q Host %q", mode, s.URI, s.Host)
		}
		// Response side: the upstream's hop-by-hop fields stay upstream.
		// (Connection and Keep-Alive are never HTTP/2 fields; X-Hop,
		// named by Connection, only the proxy knows to drop.)
		for _, h := range []string{"X-Hop", "Keep-Alive", "Connection", "X-Backend-Secret"} {
			if v := r.Header.Values(h); len(v) > 0 {
				t.Errorf("%s: client received %s %q", mode, h, v)
			}
		}
		if v := r.Header.Values("X-Served-By"); len(v) != 1 || v[0] != "pingora" {
			t.Errorf("%s: X-Served-By %q, want [pingora]", mode, v)
		}

		// The body's framing upstream: Content-Length when declared,
		// chunked when not (a body streamed from a pipe).
		r = h2Do(t, cl, "POST", base+"/upload", "x", strings.NewReader("declared"), nil)
		if want := fmt.Sprintf("n=8 crc=%08x te=[] cl=8", crc32.ChecksumIEEE([]byte("declared"))); r.Body != want {
			t.Errorf("%s: POST with a length: upstream says %q, want %q", mode, r.Body, want)
		}
		pr, pw := io.Pipe()
		go func() {
			io.WriteString(pw, "not ")
			io.WriteString(pw, "declared")
			pw.Close()
		}()
		r = h2Do(t, cl, "POST", base+"/upload", "x", pr, nil)
		if want := fmt.Sprintf("n=12 crc=%08x te=[chunked] cl=-1", crc32.ChecksumIEEE([]byte("not declared"))); r.Body != want {
			t.Errorf("%s: POST without a length: upstream says %q, want %q", mode, r.Body, want)
		}
	}
}

// HEAD gets the headers a GET would, and no body; an interim 103 from the
// upstream reaches the client before the final response.
func TestE2EH2HeadAndInterim(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "head")
	hints := proxy.RawBackend(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 4096)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var req []byte
		for !bytes.Contains(req, []byte("\r\n\r\n")) {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			req = append(req, buf[:n]...)
		}
		io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfinal")
	})
	rp := h2Proxy(t, h2Setup{BE: be.Addr, Routes: expand(`
upstream "hints" {
  server "@HINTS@" {}
}
route "hints" {
  path_prefix = "/hints"
  upstream    = "hints"
}
route "all" { upstream = "app" }
`, map[string]string{"HINTS": hints})})
	for _, mode := range h2Modes {
		cl, base := h2Client(t, rp, mode)
		r := h2Do(t, cl, "HEAD", base+"/big?n=12345", "x", nil, nil)
		if r.Status != 200 || r.Body != "" || r.Header.Get("Content-Length") != "12345" {
			t.Errorf("%s: HEAD: status %d, Content-Length %q, %d body bytes; want 200, 12345, none", mode, r.Status, r.Header.Get("Content-Length"), len(r.Body))
		}

		var interim []string
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			interim = append(interim, fmt.Sprintf("%d %s", code, h.Get("Link")))
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", base+"/hints", nil)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s: GET /hints: %v", mode, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "final" {
			t.Errorf("%s: after 103: status %d %q, want 200 final", mode, resp.StatusCode, body)
		}
		if len(interim) != 1 || interim[0] != "103 </style.css>; rel=preload" {
			t.Errorf("%s: interim responses %q, want the upstream's one 103 with its Link", mode, interim)
		}
	}
}

// Large bodies go both ways whole, within HTTP/2 flow control (far more
// than the 64 KiB initial windows).
func TestE2EH2LargeBodies(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "big")
	rp := h2Proxy(t, h2Setup{BE: be.Addr, Listener: `max_body_size = 0`})
	const n = 3 << 20
	for _, mode := range h2Modes {
		cl, base := h2Client(t, rp, mode)
		for _, q := range []string{"", "&chunked=1"} {
			r := h2Do(t, cl, "GET", base+"/big?n="+strconv.Itoa(n)+q, "x", nil, nil)
			if r.Status != 200 || len(r.Body) != n || crc32.ChecksumIEEE([]byte(r.Body)) != patternCRC(n) {
				t.Errorf("%s: download%s: status %d, %d bytes, want 200 and the %d-byte pattern", mode, q, r.Status, len(r.Body), n)
			}
		}
		r := h2Do(t, cl, "POST", base+"/upload", "x", newPattern(n), nil)
		if want := fmt.Sprintf("n=%d crc=%08x te=[chunked] cl=-1", n, patternCRC(n)); r.Body != want {
			t.Errorf("%s: upload of unknown length: upstream says %q, want %q", mode, r.Body, want)
		}
		body, _ := io.ReadAll(newPattern(n))
		r = h2Do(t, cl, "POST", base+"/upload", "x", bytes.NewReader(body), nil)
		if want := fmt.Sprintf("n=%d crc=%08x te=[] cl=%d", n, patternCRC(n), n); r.Body != want {
			t.Errorf("%s: upload with content-length: upstream says %q, want %q", mode, r.Body, want)
		}
	}
}

// max_body_size (declared or counted), max_header_size, rate limits,
// upstream timeouts and refusals answer as on HTTP/1.1; each exchange is
// logged with "protocol":"HTTP/2.0".
func TestE2EH2Limits(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "lim")
	logBuf := &proxy.SyncBuffer{}
	rp := h2Proxy(t, h2Setup{BE: be.Addr, Listener: `
  max_body_size   = 1000
  max_header_size = 4096`, Upstream: `response_header_timeout = "300ms"`, Opts: proxy.Options{AccessLog: logBuf},
		Routes: expand(`
upstream "dead" {
  server "@DEAD@" { max_fails = 0 }
}
route "dead" {
  path_prefix = "/dead"
  upstream    = "dead"
}
route "limited" {
  path_prefix = "/limited"
  upstream    = "app"
  rate_limit {
    requests = 1
    per      = "1m"
    burst    = 0
    key      = "header:X-User"
  }
}
route "all" { upstream = "app" }
`, map[string]string{"DEAD": refusedAddr(t)})})
	for _, mode := range h2Modes {
		cl, base := h2Client(t, rp, mode)
		before := be.hits()
		if r := h2Do(t, cl, "POST", base+"/echo", "x", strings.NewReader(strings.Repeat("b", 1000)), nil); r.Status != 200 || len(r.Body) != 1000 {
			t.Errorf("%s: 1000-byte body: status %d, %d bytes back", mode, r.Status, len(r.Body))
		}
		if r := h2Do(t, cl, "POST", base+"/echo", "x", strings.NewReader(strings.Repeat("b", 1001)), nil); r.Status != 413 {
			t.Errorf("%s: 1001-byte body with content-length: status %d, want 413", mode, r.Status)
		}
		// No length declared: the proxy counts what comes.
		if r := h2Do(t, cl, "POST", base+"/echo", "x", io.MultiReader(strings.NewReader(strings.Repeat("c", 700)), strings.NewReader(strings.Repeat("c", 700))), nil); r.Status != 413 {
			t.Errorf("%s: 1400-byte body without content-length: status %d, want 413", mode, r.Status)
		}
		// Under the header list size the listener advertises (4416: an
		// allowance over max_header_size, which x/net's client respects)
		// but over max_header_size once rendered as HTTP/1.1: the engine
		// refuses it. (Past the advertised size: TestE2EH2HPACKBomb.)
		if r := h2Do(t, cl, "GET", base+"/big-head", "x", nil, map[string]string{"X-Big": strings.Repeat("a", 4100)}); r.Status != 431 {
			t.Errorf("%s: 4100-byte header over max_header_size 4096: status %d, want 431", mode, r.Status)
		}
		if got := be.hits() - before; got != 1 { // request_buffering: a body over the limit is refused before it goes upstream
			t.Errorf("%s: the upstream saw %d requests, want 1 (none over the body limit nor the big head)", mode, got)
		}

		user := map[string]string{"X-User": mode}
		if r := h2Do(t, cl, "GET", base+"/limited", "x", nil, user); r.Status != 200 {
			t.Errorf("%s: first limited request: status %d", mode, r.Status)
		}
		r := h2Do(t, cl, "GET", base+"/limited", "x", nil, user)
		if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); r.Status != 429 || err != nil || ra < 1 || ra > 60 {
			t.Errorf("%s: second limited request: status %d Retry-After %q, want 429 with whole seconds", mode, r.Status, r.Header.Get("Retry-After"))
		}
		if r := h2Do(t, cl, "GET", base+"/sleep?d=3s", "x", nil, nil); r.Status != 504 {
			t.Errorf("%s: upstream slower than response_header_timeout: status %d, want 504", mode, r.Status)
		}
		if r := h2Do(t, cl, "GET", base+"/dead", "x", nil, nil); r.Status != 502 {
			t.Errorf("%s: refused upstream: status %d, want 502", mode, r.Status)
		}
	}
	// A line for each exchange the engine answered, as it ends: two of
	// each of these (h2 and h2c), all of them HTTP/2.0. A head too large
	// to parse is logged without method and path, as on HTTP/1.1.
	want := []string{"POST /echo 200", "POST /echo 413", "  431", "GET /limited 200", "GET /limited 429", "GET /sleep 504", "GET /dead 502"}
	var lines []map[string]any
	missing := ""
	defer func() {
		if t.Failed() {
			t.Logf("missing %s", missing)
		}
	}()
	proxy.WaitFor(t, 5*time.Second, "every exchange logged", func() bool {
		lines = accessLines(t, logBuf.String())
		seen := map[string]int{}
		for _, m := range lines {
			path, _, _ := strings.Cut(str(m, "path"), "?")
			seen[fmt.Sprintf("%s %s %d", str(m, "method"), path, int(num(m, "status")))]++
		}
		for _, w := range want {
			if seen[w] < 2 {
				missing = fmt.Sprintf("%q in %v", w, seen)
				return false
			}
		}
		return true
	})
	for _, m := range lines {
		if p := str(m, "protocol"); p != "HTTP/2.0" {
			t.Errorf("access log line for %v %v: protocol %q, want HTTP/2.0", m["path"], m["status"], p)
		}
	}
}

// ---- draining ----

// Drain sends GOAWAY; the stream in flight completes with its whole body;
// a stream opened after the GOAWAY is not served (it never reaches the
// upstream); the connection closes once the stream is done, and Serve
// returns well before the deadline.
func TestE2EH2Drain(t *testing.T) {
	t.Parallel()
	for _, mode := range h2Modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			be := startRecBackend(t)
			rp := h2Proxy(t, h2Setup{BE: be.Addr, Listener: `keepalive_timeout = "30s"`})
			h := dialH2Raw(t, rp, mode, 0)
			const slow = "/slow?sleep=800ms"
			h.headers(1, true, reqFields("GET", slow)...)
			be.waitArrival(t, slow, 1)
			rp.P.Drain(time.Now().Add(20 * time.Second))

			// The GOAWAY comes while stream 1 is still waiting upstream.
			if err := h.pump(5*time.Second, func() bool { return h.goAway != nil }); err != nil {
				t.Fatalf("no GOAWAY after Drain: %v", err)
			}
			if o := h.stream(1); o.Ended || o.Reset {
				t.Fatalf("stream 1 ended before the GOAWAY came: %v", o)
			}
			if h.goAway.ErrCode != http2.ErrCodeNo || h.goAway.LastStreamID < 1 {
				t.Errorf("GOAWAY %v last stream %d, want NO_ERROR covering stream 1", h.goAway.ErrCode, h.goAway.LastStreamID)
			}
			h.headers(3, true, reqFields("GET", "/after-goaway")...)

			o := h.await(1, 10*time.Second)
			if !o.Ended || o.Status != 200 || o.Body != `GET `+slow+` body=""` {
				t.Errorf("in-flight stream: %v, want 200 with its whole body", o)
			}
			o = h.await(3, 5*time.Second)
			if o.Ended {
				t.Errorf("stream opened after GOAWAY was served: %v", o)
			}
			if o.Err == nil && !(o.Reset && o.Code == http2.ErrCodeRefusedStream) {
				t.Errorf("stream opened after GOAWAY: %v, want REFUSED_STREAM or no answer before the connection closes", o)
			}
			if !h.closedWithin(5 * time.Second) {
				t.Errorf("connection still open after its last stream was done, during drain")
			}
			if !rp.Served(5 * time.Second) {
				t.Errorf("Serve did not return within 5s of the connection closing (deadline 20s away)")
			}
			for _, r := range be.requests() {
				if r.URI == "/after-goaway" {
					t.Errorf("a stream opened after GOAWAY reached the upstream")
				}
			}
		})
	}
}

// ---- attacks ----

// rawFrames builds frames into a buffer, to be written in one go (as
// fast as an attacker would), with the connection's HPACK encoder.
func (h *h2Raw) rawFrames(build func(fr *http2.Framer)) []byte {
	var buf bytes.Buffer
	build(http2.NewFramer(&buf, nil))
	return buf.Bytes()
}

// flood writes b to the connection until it fails (the server closed
// it, or took none of a write for d) or it was written times times; it
// returns how many times it was written whole.
func (h *h2Raw) flood(b []byte, times int, d time.Duration) (int, error) {
	defer h.c.SetWriteDeadline(time.Time{})
	for i := 0; i < times; i++ {
		h.c.SetWriteDeadline(time.Now().Add(d))
		if _, err := h.c.Write(b); err != nil {
			return i, err
		}
	}
	return times, nil
}

// Rapid reset (CVE-2023-44487): thousands of streams opened and reset at
// once. No more than max_concurrent_streams requests are ever in progress
// upstream; the proxy stays up for others; every stream's exchange ends
// (nothing left in flight); and the attacker's connection is closed.
func TestE2EH2RapidReset(t *testing.T) {
	t.Parallel()
	be := startRecBackend(t)
	rp := h2Proxy(t, h2Setup{BE: be.Addr, Listener: `max_concurrent_streams = 8`})
	const n = 3000
	h := dialH2Raw(t, rp, "h2c", 0)
	frames := h.rawFrames(func(fr *http2.Framer) {
		for id := uint32(1); id < 2*n; id += 2 {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.block(reqFields("GET", "/rr?sleep=30s")...), EndStream: true, EndHeaders: true})
			fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
	})
	sent := make(chan error, 1)
	go func() {
		_, err := h.flood(frames, 1, 10*time.Second)
		sent <- err
	}()
	// Meanwhile, another client is served.
	cl, base := h2Client(t, rp, "h2")
	if r := h2Do(t, cl, "GET", base+"/other", "x", nil, nil); r.Status != 200 {
		t.Errorf("another client during the flood: status %d", r.Status)
	}
	if !h.closedWithin(10 * time.Second) {
		t.Errorf("the attacker's connection is still open 10s after %d rapid resets", n)
	}
	<-sent
	if h.goAway != nil {
		t.Logf("GOAWAY %v", h.goAway.ErrCode)
	}
	proxy.WaitFor(t, 5*time.Second, "no request in flight", func() bool { return rp.P.Stats().InFlight == 0 })
	// Counted for /metrics: the client's resets, and the GOAWAY.
	h2 := rp.P.Stats().H2
	if h2[config.H2ClientResets] == 0 || h2[config.H2GoAwaySent+int(http2.ErrCodeEnhanceYourCalm)] != 1 {
		t.Errorf("client resets counted %d, GOAWAY ENHANCE_YOUR_CALM %d, want some and 1",
			h2[config.H2ClientResets], h2[config.H2GoAwaySent+int(http2.ErrCodeEnhanceYourCalm)])
	}
	if m := be.maxInflight.Load(); m > 8 {
		t.Errorf("upstream handled %d requests at once, want at most max_concurrent_streams 8", m)
	}
	// A stream whose handler started before its reset was read may reach
	// the upstream (and is cut there at once); the flood must not turn
	// into as many upstream requests. (At most 8 handlers run at a time,
	// a stream reset while it waits for one never starts, and the
	// connection is given up on once more than 4*8 streams wait: a few
	// get in at most, depending on timing.)
	reached := 0
	for _, r := range be.requests() {
		if strings.HasPrefix(r.URI, "/rr") {
			reached++
		}
	}
	if reached > n/10 {
		t.Errorf("%d of %d reset streams reached the upstream, want at most a tenth", reached, n)
	}
	t.Logf("%d of %d reset streams reached the upstream", reached, n)
	if r := h2Do(t, cl, "GET", base+"/after", "x", nil, nil); r.Status != 200 {
		t.Errorf("after the flood: status %d", r.Status)
	}
}

// Past max_concurrent_streams (advertised in SETTINGS, 128 by default) a
// new stream is refused with RST_STREAM, and no more than the limit
// reach the upstream at once; x/net's client, which keeps to the limit,
// gets every request answered.
func TestE2EH2MaxConcurrentStreams(t *testing.T) {
	t.Parallel()
	be := startRecBackend(t)
	rp := h2Proxy(t, h2Setup{BE: be.Addr, Listener: `max_concurrent_streams = 4`})
	def := h2Proxy(t, h2Setup{BE: be.Addr})
	if got := dialH2Raw(t, def, "h2c", 0).settings[http2.SettingMaxConcurrentStreams]; got != 128 {
		t.Errorf("default SETTINGS_MAX_CONCURRENT_STREAMS %d, want 128", got)
	}
	for _, mode := range h2Modes {
		h := dialH2Raw(t, rp, mode, 0)
		if got := h.settings[http2.SettingMaxConcurrentStreams]; got != 4 {
			t.Errorf("%s: SETTINGS_MAX_CONCURRENT_STREAMS %d, want 4", mode, got)
		}
		uri := "/many-" + mode + "?sleep=1s"
		for id := uint32(1); id <= 19; id += 2 { // 10 streams
			h.headers(id, true, reqFields("GET", uri)...)
		}
		be.waitArrival(t, uri, 4)
		for id := uint32(1); id <= 19; id += 2 {
			o := h.await(id, 10*time.Second)
			switch {
			case id <= 7 && (!o.Ended || o.Status != 200):
				t.Errorf("%s: stream %d within the limit: %v, want 200", mode, id, o)
			case id > 7 && !(o.Reset && (o.Code == http2.ErrCodeRefusedStream || o.Code == http2.ErrCodeProtocol)):
				t.Errorf("%s: stream %d over the limit: %v, want RST_STREAM REFUSED_STREAM or PROTOCOL_ERROR", mode, id, o)
			}
		}
	}
	if m := be.maxInflight.Load(); m != 4 {
		t.Errorf("upstream handled %d requests at once, want max_concurrent_streams 4", m)
	}
	// Counted for /metrics: 6 refused on each of the two connections.
	if n := rp.P.Stats().H2[config.H2ResetSent+int(http2.ErrCodeRefusedStream)]; n != 12 {
		t.Errorf("RST_STREAM REFUSED_STREAM counted %d times, want 12", n)
	}
	// x/net's client, which keeps to the limit (opening another
	// connection when one is full), gets every request answered. (Not
	// StrictMaxConcurrentStreams: x/net v0.63.0's client then leaves
	// requests waiting for a free stream forever, against x/net's own
	// server too.)
	cl, base := h2Client(t, rp, "h2")
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := cl.Get(base + "/queued?sleep=100ms")
			if err != nil {
				t.Logf("queued request: %v", err)
				failed.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("10 concurrent requests from x/net's client: %d failed", failed.Load())
	}
}

// CONTINUATION flood (CVE-2024-27316): a header block that never ends.
// The connection is closed once the block is past the header limit,
// long before the attacker is done sending; nothing reaches the upstream.
// A block of empty CONTINUATION frames, which no size limit stops, holds
// no memory, and the connection (no stream open yet) is closed at
// keepalive_timeout.
func TestE2EH2ContinuationFlood(t *testing.T) {
	// Not parallel: it measures the heap, which other tests would move.
	be := startRecBackend(t)
	rp := h2Proxy(t, h2Setup{BE: be.Addr, Listener: `
  max_header_size   = 4096
  keepalive_timeout = "1s"`})
	for _, mode := range h2Modes {
		h := dialH2Raw(t, rp, mode, 0)
		h.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block(reqFields("GET", "/cont")...), EndStream: true})
		// Fields never indexed: each CONTINUATION adds 1 KiB to the list.
		h.hb.Reset()
		h.enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("a", 1000), Sensitive: true})
		frag := bytes.Clone(h.hb.Bytes())
		frames := h.rawFrames(func(fr *http2.Framer) {
			for range 64 {
				fr.WriteContinuation(1, false, frag)
			}
		})
		const times = 1000 // 64 MiB of header block if nobody stops it
		sent := make(chan int, 1)
		go func() { n, _ := h.flood(frames, times, 10*time.Second); sent <- n }()
		if !h.closedWithin(10 * time.Second) {
			t.Errorf("%s: connection still open during an endless header block", mode)
		}
		if n := <-sent; n == times {
			t.Errorf("%s: the server took all %d MiB of the header block", mode, times*64/1024)
		}
		if h.goAway != nil && h.goAway.ErrCode == http2.ErrCodeNo {
			t.Errorf("%s: GOAWAY %v, want an error", mode, h.goAway.ErrCode)
		}
	}

	h := dialH2Raw(t, rp, "h2c", 0)
	h.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block(reqFields("GET", "/cont")...), EndStream: true})
	empty := h.rawFrames(func(fr *http2.Framer) {
		for range 100 {
			fr.WriteContinuation(1, false, nil)
		}
	})
	before, start := heapInUse(), time.Now()
	var err error
	for err == nil && time.Since(start) < 10*time.Second {
		_, err = h.flood(empty, 1, 5*time.Second)
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Errorf("a connection sending empty CONTINUATION frames for 10s is still open (keepalive_timeout 1s)")
	}
	if grew := heapInUse() - before; grew > 16<<20 {
		t.Errorf("the heap grew by %d MiB during a flood of empty CONTINUATION frames", grew>>20)
	}
	if n := be.started.Load(); n != 0 {
		t.Errorf("%d request(s) reached the upstream", n)
	}
}

// HPACK bomb: a few KiB of header block that decode into megabytes (one
// large field put in the dynamic table, then referenced over and over),
// and a plain header list over the advertised limit. Each is refused (431
// or a connection error) while it decodes, bounded by max_header_size:
// what gets to the engine is the 431 alone (counted and logged as an
// HTTP/1.1 head too large is), never the upstream; and the proxy serves
// on.
func TestE2EH2HPACKBomb(t *testing.T) {
	t.Parallel()
	be := startRecBackend(t)
	rp := h2Proxy(t, h2Setup{BE: be.Addr, Listener: `max_header_size = 4096`})
	// The engine's count of answered requests: the good ones and the
	// 431s. (A request is counted as its exchange ends, just after its
	// answer.)
	answered := uint64(0)
	counted := func(what string) {
		t.Helper()
		proxy.WaitFor(t, 3*time.Second, fmt.Sprintf("%d requests answered by the engine, %s", answered, what), func() bool { return rp.P.Stats().Requests == answered })
	}
	for _, mode := range h2Modes {
		cl, base := h2Client(t, rp, mode)
		for _, tc := range []struct {
			name  string
			field hpack.HeaderField
			times int
		}{
			{"dynamic table references", hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("b", 4000)}, 4000},
			{"one field over the limit", hpack.HeaderField{Name: "x-big", Value: strings.Repeat("c", 6000)}, 1},
		} {
			h := dialH2Raw(t, rp, mode, 0)
			h.hb.Reset()
			fields := reqFields("GET", "/bomb")
			for i := 0; i < len(fields); i += 2 {
				h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
			}
			for range tc.times {
				h.enc.WriteField(tc.field)
			}
			block := bytes.Clone(h.hb.Bytes())
			if tc.times > 1 && len(block) > 16000 {
				t.Fatalf("the bomb's block is %d bytes: the encoder did not index the field", len(block))
			}
			h.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: true})
			o := h.await(1, 10*time.Second)
			if !(o.Ended && o.Status == 431) && o.Err == nil && !o.Reset {
				t.Errorf("%s: %s: %v, want 431, a reset or a connection error", mode, tc.name, o)
			}
			if o.Ended && o.Status == 431 {
				answered++
			}
			if h2Do(t, cl, "GET", base+"/fine", "x", nil, nil).Status != 200 {
				t.Errorf("%s: after %s, a request was not served", mode, tc.name)
			}
			answered++
			counted(fmt.Sprintf("none of them the %s of %s", tc.name, mode))
		}
	}
	for _, r := range be.requests() {
		if r.URI == "/bomb" {
			t.Errorf("a header bomb reached the upstream")
		}
	}
}

// SETTINGS and PING floods, from a client that sends them and never
// reads: each asks for an answer. The answers fill the sockets' buffers,
// then the bounded queue of what waits to be sent, when the connection is
// closed, long before send_timeout would. (500,000 SETTINGS acks, 4.5 MB,
// may all fit in loopback's socket buffers: that connection may stay
// open, but the heap must not grow with the flood.) Over h2c only: TLS
// changes nothing here.
func TestE2EH2ControlFrameFloods(t *testing.T) {
	// Not parallel: it measures the heap, which other tests would move.
	be := startRecBackend(t)
	rp := h2Proxy(t, h2Setup{BE: be.Addr, Listener: `send_timeout = "60s"`})
	for _, tc := range []struct {
		name      string
		frame     func(fr *http2.Framer)
		times     int // thousands of frames sent at most
		mustClose bool
	}{
		{"SETTINGS", func(fr *http2.Framer) { fr.WriteSettings() }, 500, false},
		{"PING", func(fr *http2.Framer) { fr.WritePing(false, [8]byte{1, 2, 3}) }, 2000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := dialH2Raw(t, rp, "h2c", 4096)
			frames := h.rawFrames(func(fr *http2.Framer) {
				for range 1000 {
					tc.frame(fr)
				}
			})
			before := heapInUse()
			start := time.Now()
			n, err := h.flood(frames, tc.times, 15*time.Second)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the server stopped reading for 15s but kept the connection (%d frames sent)", n*1000)
			}
			if n < tc.times {
				t.Logf("connection closed after about %d frames, %v (%v)", n*1000, time.Since(start), err)
				calm := func() uint64 { return rp.P.Stats().H2[config.H2GoAwaySent+int(http2.ErrCodeEnhanceYourCalm)] }
				proxy.WaitFor(t, 5*time.Second, "the hang-up counted as ENHANCE_YOUR_CALM", func() bool { return calm() > 0 })
				return
			}
			if tc.mustClose {
				t.Errorf("all %d frames taken, their answers unread, and the connection still open", n*1000)
			}
			// Still open: what the flood left must not be held.
			if grew := heapInUse() - before; grew > 32<<20 {
				t.Errorf("the heap grew by %d MiB during a flood of %d frames whose answers were not read", grew>>20, n*1000)
			}
			if cl, base := h2Client(t, rp, "h2c"); h2Do(t, cl, "GET", base+"/fine", "x", nil, nil).Status != 200 {
				t.Errorf("after the flood, a request was not served")
			}
		})
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// ---- H2 -> H1 smuggling ----

// h2SmugglingProxy routes /stream/ without request buffering (the body
// goes upstream as it comes) and the rest with it.
func h2SmugglingProxy(t *testing.T, be *recBackend) *proxy.Running {
	return h2Proxy(t, h2Setup{BE: be.Addr, Routes: `
route "stream" {
  path_prefix       = "/stream/"
  upstream          = "app"
  request_buffering = false
}
route "all" { upstream = "app" }
`})
}

// smuggleCase is one request sent frame by frame: its header fields, and
// DATA frames after (the last one ends the stream; none: HEADERS does).
type smuggleCase struct {
	name   string
	fields []string
	data   []string
}

// sendCase sends c as stream id and returns how it ended.
func (h *h2Raw) sendCase(id uint32, c smuggleCase) h2Outcome {
	h.t.Helper()
	h.headers(id, len(c.data) == 0, c.fields...)
	for i, d := range c.data {
		h.data(id, i == len(c.data)-1, d)
	}
	return h.await(id, 10*time.Second)
}

// runSmuggleCases sends each case on a connection of each mode (a new one
// when the server closed the last), each followed by a good request on
// the same connection when it is still open, and checks that every case
// was refused and that the upstream saw nothing but the good requests,
// each whole.
func runSmuggleCases(t *testing.T, rp *proxy.Running, be *recBackend, cases []smuggleCase) {
	t.Helper()
	good := map[string]bool{}
	for _, mode := range h2Modes {
		var h *h2Raw
		id := uint32(1)
		for i, c := range cases {
			if h == nil {
				h, id = dialH2Raw(t, rp, mode, 0), 1
			}
			if o := h.sendCase(id, c); !o.refused() {
				t.Errorf("%s: %s: %v, want a 4xx, a reset or a connection error", mode, c.name, o)
			}
			id += 2
			if h.goAway != nil || h.stream(id-2).Err != nil {
				h.c.Close()
				h = nil
				continue
			}
			// The same connection, and the upstream connection the case
			// may have used, serve a good request whole.
			uri := fmt.Sprintf("/stream/good-%s-%d", mode, i)
			good[uri] = true
			o := h.sendCase(id, smuggleCase{fields: reqFields("POST", uri, "content-length", "4"), data: []string{"good"}})
			if want := `POST ` + uri + ` body="good"`; !o.Ended || o.Status != 200 || o.Body != want {
				t.Errorf("%s: after %s, a good request on the same connection: %v, want 200 %q", mode, c.name, o, want)
			}
			id += 2
		}
	}
	for _, r := range be.requests() {
		switch {
		case good[r.URI]:
			if r.Body != "good" || r.BodyErr != nil || r.CL != 4 {
				t.Errorf("upstream got the good request %s with body %q (Content-Length %d, error %v)", r.URI, r.Body, r.CL, r.BodyErr)
			}
		case r.BodyErr != nil:
			// A refused body cut short upstream: the request never
			// completed there (the connection was closed under it).
		default:
			t.Errorf("upstream got %s %s (Host %q, headers %v, body %q): a refused request, whole", r.Method, r.URI, r.Host, r.Header, clip(r.Body))
		}
		if strings.Contains(r.URI, "smuggled") || r.Header.Get("X-Injected") != "" {
			t.Errorf("upstream got a smuggled request or field: %s %v", r.URI, r.Header)
		}
	}
}

// CR, LF or NUL in a field name or value, pseudo-header fields included,
// is refused and never reaches the upstream.
func TestE2EH2SmugglingFieldBytes(t *testing.T) {
	t.Parallel()
	be := startRecBackend(t)
	rp := h2SmugglingProxy(t, be)
	with := func(pseudo, v string) []string {
		f := reqFields("GET", "/stream/f")
		for i := 0; i < len(f); i += 2 {
			if f[i] == pseudo {
				f[i+1] = v
			}
		}
		return f
	}
	var cases []smuggleCase
	for _, tc := range []struct{ name, field, value string }{
		{"CRLF in a value", "x-a", "1\r\nx-injected: 1"},
		{"LF in a value", "x-a", "1\nx-injected: 1"},
		{"CR in a value", "x-a", "1\rx-injected: 1"},
		{"NUL in a value", "x-a", "1\x00x-injected: 1"},
		{"CRLF in a name", "x-a\r\nx-injected", "1"},
		{"LF in a name", "x-a\nx-injected", "1"},
		{"NUL in a name", "x-a\x00", "1"},
		{"colon in a name", "x-a:x-injected", "1"},
		{"space in a name", "x-a x-injected", "1"},
		{"upper case in a name", "X-Injected", "1"},
	} {
		cases = append(cases, smuggleCase{name: tc.name, fields: reqFields("GET", "/stream/f", tc.field, tc.value)})
	}
	cases = append(cases,
		smuggleCase{name: "CRLF in :path", fields: with(":path", "/stream/f HTTP/1.1\r\nHost: x\r\n\r\nGET /smuggled")},
		smuggleCase{name: "space in :path", fields: with(":path", "/smuggled HTTP/1.1")},
		smuggleCase{name: "CRLF in :method", fields: with(":method", "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\nGET")},
		smuggleCase{name: "space in :method", fields: with(":method", "GET /smuggled")},
		smuggleCase{name: "CRLF in :authority", fields: with(":authority", "x\r\nx-injected: 1")},
		smuggleCase{name: "NUL in :authority", fields: with(":authority", "x\x00y")},
	)
	runSmuggleCases(t, rp, be, cases)
}

// A content-length the DATA frames do not match resets the stream: the
// upstream never gets that request whole (buffered: not at all;
// streamed: cut short, its connection closed), and the next request on
// the upstream connection is not poisoned by the rest.
func TestE2EH2SmugglingContentLength(t *testing.T) {
	t.Parallel()
	be := startRecBackend(t)
	rp := h2SmugglingProxy(t, be)
	const next = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	var cases []smuggleCase
	n := 0
	for _, route := range []string{"/buf/", "/stream/"} {
		post := func(cl ...string) []string {
			var f []string
			for _, v := range cl {
				f = append(f, "content-length", v)
			}
			n++
			return reqFields("POST", fmt.Sprintf("%scl-%d", route, n), f...)
		}
		cases = append(cases,
			smuggleCase{route + ": DATA short of content-length", post("10"), []string{"hello"}},
			smuggleCase{route + ": DATA past content-length", post("5"), []string{"hello" + next}},
			smuggleCase{route + ": DATA past content-length, second frame", post("5"), []string{"hello", next}},
			smuggleCase{route + ": content-length and no DATA", post("5"), nil},
			smuggleCase{route + ": two content-lengths", post("5", "41"), []string{"hello" + next}},
			smuggleCase{route + ": content-length not a number", post("5x"), []string{"hello"}},
		)
	}
	runSmuggleCases(t, rp, be, cases)
}

// Connection-specific fields (connection, keep-alive, proxy-connection,
// transfer-encoding, upgrade, te other than trailers) are refused, with a
// 400 or a stream reset, and never reach the upstream; te: trailers is
// let through, and the upstream gets no te but that.
func TestE2EH2SmugglingConnectionFields(t *testing.T) {
	t.Parallel()
	be := startRecBackend(t)
	rp := h2SmugglingProxy(t, be)
	var cases []smuggleCase
	for _, f := range [][2]string{
		{"connection", "close"},
		{"connection", "keep-alive"},
		{"keep-alive", "timeout=5"},
		{"proxy-connection", "keep-alive"},
		{"transfer-encoding", "chunked"},
		{"upgrade", "websocket"},
		{"te", "gzip"},
		{"te", "trailers, gzip"},
	} {
		cases = append(cases, smuggleCase{f[0] + ": " + f[1], reqFields("POST", "/stream/cs", f[0], f[1]), []string{"0\r\n\r\n" + "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"}})
	}
	runSmuggleCases(t, rp, be, cases)

	h := dialH2Raw(t, rp, "h2c", 0)
	if o := h.sendCase(1, smuggleCase{fields: reqFields("GET", "/te-trailers", "te", "trailers")}); !o.Ended || o.Status != 200 {
		t.Errorf("te: trailers: %v, want 200", o)
	}
	for _, r := range be.requests() {
		if r.URI == "/te-trailers" {
			if v := r.Header.Values("Te"); len(v) > 1 || len(v) == 1 && v[0] != "trailers" {
				t.Errorf("upstream got TE %q", v)
			}
			return
		}
	}
	t.Errorf("the te: trailers request did not reach the upstream")
}

// A request whose target is ambiguous is malformed (RFC 9113 8.3.1) and
// never reaches the upstream: a host field naming another authority, two
// host fields, userinfo or a path in :authority, and a :path that is not
// origin-form (an absolute URI the engine could route by).
func TestE2EH2SmugglingAuthorityAndPath(t *testing.T) {
	t.Parallel()
	be := startRecBackend(t)
	rp := h2SmugglingProxy(t, be)
	target := func(authority, path string, extra ...string) []string {
		return append([]string{":method", "GET", ":scheme", "https", ":authority", authority, ":path", path}, extra...)
	}
	runSmuggleCases(t, rp, be, []smuggleCase{
		{name: "host naming another authority", fields: target("h2.example", "/stream/a", "host", "smuggled.example")},
		{name: "two host fields", fields: target("h2.example", "/stream/a", "host", "h2.example", "host", "h2.example")},
		{name: "userinfo in :authority", fields: target("smuggled@h2.example", "/stream/a")},
		{name: "a path in :authority", fields: target("h2.example/smuggled", "/stream/a")},
		{name: "absolute-form :path", fields: target("h2.example", "http://smuggled.example/stream/a")},
		{name: ":path without a slash", fields: target("h2.example", "smuggled")},
	})
}

// A stream whose body outgrew the connection's read buffer (buffered in a
// body buffer) leaves nothing behind for the next stream served by the
// same pooled state: bodies of every kind keep arriving whole.
func TestE2EH2BodyBuffersReused(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "bufs")
	rp := h2Proxy(t, h2Setup{BE: be.Addr})
	cl, base := h2Client(t, rp, "h2c")
	declared := strings.Repeat("d", 20<<10) // past the 16 KiB read buffer, within client_body_buffer_size
	for i := range 20 {
		r := h2Do(t, cl, "POST", base+"/upload", "x", strings.NewReader(declared), nil)
		if want := fmt.Sprintf("n=%d crc=%08x te=[] cl=%d", len(declared), crc32.ChecksumIEEE([]byte(declared)), len(declared)); r.Body != want {
			t.Fatalf("round %d: a 20 KiB body with content-length: upstream says %q, want %q", i, r.Body, want)
		}
		r = h2Do(t, cl, "POST", base+"/upload", "x", io.MultiReader(newPattern(40<<10), newPattern(40<<10)), nil)
		if want := fmt.Sprintf("n=%d crc=%08x te=[chunked] cl=-1", 80<<10, crc32.Update(patternCRC(40<<10), crc32.IEEETable, mustRead(newPattern(40<<10)))); r.Body != want {
			t.Fatalf("round %d: an 80 KiB body of unknown length: upstream says %q, want %q", i, r.Body, want)
		}
	}
}

func mustRead(r io.Reader) []byte {
	b, _ := io.ReadAll(r)
	return b
}

// HTTP/2 over TLS 1.2 takes an AEAD suite with an ephemeral key exchange
// (RFC 9113 9.2.2): a client offering only a CBC suite, which the
// listener still grants HTTP/1.1 clients, is refused with GOAWAY
// INADEQUATE_SECURITY; one offering GCM is served.
func TestE2EH2RefusesProhibitedCipherSuites(t *testing.T) {
	t.Parallel()
	be := startRecBackend(t)
	rp := h2Proxy(t, h2Setup{BE: be.Addr})
	dial := func(suite uint16) *http2.Framer {
		c, err := tls.Dial("tcp", rp.Addr("h2"), &tls.Config{RootCAs: certPool(t), ServerName: "a.example",
			MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatalf("TLS 1.2 with %s: %v", tls.CipherSuiteName(suite), err)
		}
		t.Cleanup(func() { c.Close() })
		if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
			t.Fatalf("%s: ALPN chose %q, want h2", tls.CipherSuiteName(suite), p)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, http2.ClientPreface)
		fr := http2.NewFramer(c, c)
		fr.WriteSettings()
		return fr
	}
	fr := dial(tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA)
	f, err := fr.ReadFrame()
	if g, ok := f.(*http2.GoAwayFrame); err != nil || !ok || g.ErrCode != http2.ErrCodeInadequateSecurity {
		t.Fatalf("HTTP/2 over a CBC suite: first frame %v (%v), want GOAWAY INADEQUATE_SECURITY", f, err)
	}
	fr = dial(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
	if f, err := fr.ReadFrame(); err != nil {
		t.Fatalf("HTTP/2 over a GCM suite: %v", err)
	} else if _, ok := f.(*http2.SettingsFrame); !ok {
		t.Fatalf("HTTP/2 over a GCM suite: first frame %v, want SETTINGS", f)
	}
}
