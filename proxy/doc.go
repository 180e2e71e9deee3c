// Package proxy is pingora-master's HTTP/1.1 reverse-proxy engine (plain or
// over TLS, optionally behind the PROXY protocol): it routes
// requests arriving on listeners handed to it (by host and path prefix) to
// upstream pools or to fixed responses, and streams bodies both ways.
//
// The package knows nothing of processes: the worker hands it listeners and
// tells it when to drain. Serve owns the listeners it is given; stop it with
// Drain (graceful) or Close (fast).
//
// # Why an engine of its own
//
// The data path is written directly on net.Conn rather than on net/http:
// httputil.ReverseProxy costs about 71 us of CPU per request on the
// project's benchmark, 3.8 times nginx's, and a minimal fasthttp
// proxy only matches nginx while leaving less control over draining, framing
// checks and streaming. The engine is held to nginx's CPU per request, so
// every per-request cost below is there for a measured reason.
//
// # Requests without allocation
//
// A goroutine serves each client connection. Serving goroutines and their
// connection structs are reused for the next accepted connection, so a new
// connection creates no goroutine and grows no stack. Readers and writers
// are pooled bufio buffers. The request head is parsed in place (header
// slices point into the read buffer, and each header's kind is classified
// once, at parse time) and the upstream request head is written field by
// field straight into the upstream connection's buffered writer, so a
// keep-alive request allocates nothing in steady state (BenchmarkProxyKeepAlive
// reports 0 allocs/op).
//
// The parser is strict on purpose (request smuggling): ambiguous framing is
// answered with 400 and a closed connection, never forwarded, and the fuzz
// targets check that what it accepts frames a body exactly as net/http's
// reader does.
//
// Read and write deadlines are set again only when the wanted deadline has
// drifted by more than 1/16 of the timeout (setDeadlines): a busy keep-alive
// connection pays one deadline update every few seconds rather than one per
// request, and timeouts hold to within about 6%.
//
// A pooled upstream connection is probed (a non-blocking MSG_PEEK) before
// every reuse, however briefly it was idle: bytes an upstream sent after a
// complete response would otherwise be read as the next client's response.
// Anything readable closes it. The probe is one system call per reuse
// (strace: recvfrom 2 -> 3 per proxied request). A pooled connection that still turns
// out dead is retried on a fresh connection to the same server when the
// whole request is still in the buffer and none of it was sent, or it is
// idempotent.
//
// # Layout
//
// The files fall into groups, so that the HTTP/2 front end can sit beside
// the HTTP/1 one and share forwarding:
//
//   - HTTP/1 codec (h1_*.go): message heads read from a buffer
//     (h1_head.go), parsed in place (h1_parse.go), chunked framing
//     (h1_chunked.go), heads rendered (h1_write.go), bodies streamed with
//     their framing checked (h1_body.go). Nothing in it knows of routes,
//     upstreams or connections' lifecycles.
//   - The client side: accepting (accept.go), a connection's opening, the
//     PROXY protocol header (proxyproto.go) then TLS (tls.go), its
//     lifecycle and request dispatch (conn.go), idle connections kept
//     without a goroutine or buffers (park.go), descriptors closed off the
//     hot path (fdclose.go), raw socket I/O (sockio.go), answers of the
//     proxy's own (respond.go, status.go), the access log (accesslog.go).
//   - HTTP/2 (h2*.go): the listener's side and the connection's input
//     (h2.go), the connection loop: frames, stream states, flow control,
//     the attack defences (h2_conn.go), frames and HPACK written
//     (h2_frame.go) through one coalescing writer (h2_writer.go), idle
//     connections parked (h2_park.go), each stream served as one request
//     of the HTTP/1 engine (h2_stream.go). x/net's Framer and HPACK
//     decoder read and validate what clients send. The loop is ours
//     because x/net's server, used first, cost about 1.7 times nginx's CPU
//     per request (make bench-h2): a channel hand-off per frame read and
//     per frame written, a goroutine per asynchronous write, an
//     http.Request per stream, and two goroutines per idle connection.
//     h2spec (145/145, TLS and h2c) and the end-to-end tests guard it.
//     With it, 11.4-11.8 us per request against nginx's 12.8-13.3 (h2load
//     -c10 -m10 over TLS), and 6.6 kB per idle connection (nginx: 21 kB).
//   - Forwarding: routing (routes.go), a request to an upstream with
//     retries (forward.go), request bodies buffered before an upstream is
//     picked (bodybuf.go), upstream connections and their pool
//     (upconn.go), upgraded connections (tunnel.go); balancing and health
//     in the upstream package, rate limits in ratelimit.
//   - The whole: Proxy, its listeners, draining and statistics (proxy.go,
//     stats.go, bufpool.go).
//
// A request's state travels on one exchange value from its parsed head to
// its access-log line.
//
// # System calls outside the scheduler
//
// A read or write through net.Conn enters the scheduler's syscall state. On
// a worker with one P, the scheduler hands the P to another thread whenever
// a loopback write (which runs the receiver's TCP stack inline) outlasts a
// sysmon tick: measured, 0.18 context switches per request against nginx's
// 0.01, a fifth of the CPU. Client and upstream sockets are therefore read
// and written with raw recvfrom(2) and sendto(2) through syscall.RawConn
// (sockio.go). The sockets are non-blocking, so the calls never block:
// EAGAIN parks the goroutine in Go's poller exactly as net.Conn would,
// deadlines included.
//
// No serving goroutine yields (runtime.Gosched) in the hope that a read will
// find data: a yielding goroutine goes to the global run queue, which a busy
// one-P scheduler serves last, and tail latency at saturation becomes
// erratic.
//
// # The accept path
//
// net.TCPListener.Accept costs, per connection, five setsockopt calls and a
// getsockname, each a scheduler-managed system call. The engine instead
// accepts on a duplicate of each TCP listening socket opened as an *os.File
// (same poller, same deadlines; accept.go) and closes the listener it was
// handed once the duplicate accepts, so each listening socket has one poller
// entry, not two fired by every incoming connection. Closing a net.Listener
// from outside therefore does not stop Serve.
//
//   - accept4(2) is a raw call while the listening socket is non-blocking.
//     That flag belongs to the open file description, shared with the master
//     and every other worker, so it is checked (a raw fcntl) each time the
//     poller hands the socket over; should anything clear it, accept goes
//     back to a managed call, which parks a thread instead of freezing the
//     worker.
//   - The peer address is read into a reused buffer: no Sockaddr, TCPAddr or
//     IP allocation per connection.
//   - TCP keep-alive probes stay off, as nginx's default. TCP_NODELAY is set
//     with a raw call before a connection's second send rather than at
//     accept: Nagle never delays a first send, so a one-response connection
//     saves the call (a tunnel sets it before its copy loops).
//   - The last response on a connection that closes goes out with MSG_MORE
//     and shutdown(SHUT_WR) right after it, so the FIN rides on the last data
//     segment instead of a segment of its own: one segment less per
//     connection, and on loopback the receiving side's work runs on the
//     sender's CPU too.
//
// With a new connection per request, this accept path takes the system calls
// per request (counted with strace) from net.TCPListener's 14.5 to 10,
// nginx's count, and the worker's CPU per request from 45 to 31 us.
//
// # Closing without a managed system call
//
// close(2) of a finished client socket is the other scheduler-managed call
// per connection, and each one woke the runtime's monitor thread (sysmon)
// whenever the worker had been idle a moment before; while busy, sysmon then
// polled every 20 us, about a tenth of the worker's CPU, nearly all context
// switches. A finished socket is therefore released by a raw dup3(2) of a
// placeholder eventfd over its descriptor (fdclose.go): the kernel releases
// the socket and its epoll registration there and then, while the descriptor
// number stays taken until its *os.File is closed with the ordinary Close,
// 64 at a time, by the janitor when traffic stops, or at once when accept4
// or an upstream dial runs out of descriptors. A worker may thus hold up to
// 63 descriptors more than it has connections; /proc/PID/fd shows them as
// anon_inode:[eventfd], all the same eventfd. The batch is 64 because the
// closes of a batch run in a row on the worker's one P: batches of 512
// cut sysmon's wake-ups further but held the P for about half a millisecond
// and raised p50 and p99.
//
// # TCP_DEFER_ACCEPT
//
// A client that opens a connection per request sends its request a moment
// after the handshake (about 1.7 ms under the benchmark's load), so each
// connection costs a wake-up to accept it, a recvfrom that finds nothing and
// a second wake-up for the request. A listener's defer_accept has the kernel
// queue the connection only once the request is in: about 20% less CPU per
// request in that mode. It is off by default, as in nginx and HAProxy,
// because a silent client is then held by the kernel, unseen by the worker.
//
// # The poller's wake order (the runtime patch)
//
// Go's poller on Linux (runtime.netpoll) builds its list of goroutines to
// wake by pushing each ready descriptor's goroutine onto the head of a list,
// so the scheduler runs them in the reverse of epoll's order: within each
// poll, the connection that became ready last is served first and the one
// that has waited longest last. nginx serves epoll's list in order. With the
// proxy's own work under 50 us per request at p99 and its accept queue
// shorter than nginx's, that reversal is what remains of the tail-latency
// gap: built with the stock runtime, keep-alive p99 is 1.1-1.4 times
// nginx's, and p50 with a new connection per request is about 0.2 ms higher.
//
// `make build RUNTIME_PATCH=1` builds with the list put back in epoll's
// order, a one-statement change applied through a `go build -overlay`
// (deploy/build/runtime-overlay.sh documents it). It is opt-in: measured by
// turns against the stock build, it lowers p99 in every pair with a new
// connection per request, but with keep-alive clients only in most pairs,
// not beyond their spread (deploy/build/go-issue-netpoll-order.md).
// TestRuntimeNetpollOrder (cmd/pingora-master) checks that a build
// claiming the patch wakes goroutines in order. The engine is correct on
// the stock runtime, only slower at the tail.
//
// The same order cannot be had in user space at an acceptable cost. Waking
// goroutines from an epoll instance of the proxy's own through channels
// puts each woken goroutine in the scheduler's run-next slot, ahead of every
// queued one, which is last-in first-out again; working around that slot
// and registering every socket in two epoll sets costs 3-4 us per request
// with new connections and 17-18% more CPU, with twice nginx's p99, with
// keep-alive clients. An engine without a goroutine per connection (state
// machines driven by its own epoll, as nginx) would not need the patch, but
// it would be a different engine.
//
// # What remains
//
// With a new connection per request the gap to nginx is CPU, most of it the
// runtime's system calls: about 18 per request against nginx's 10-11. The
// extra ones are two recvfrom calls that find nothing (Go's poller forgets a
// readiness seen before a read begins, so every read tries the socket
// first: once on the fresh client socket, once on the upstream socket right
// after the request is sent), fcntl calls (os.NewFile's mode check and the
// O_NONBLOCK guard of the raw accept4), a second accept4 that finds the
// queue empty (Go's poller is edge-triggered), a second epoll_pwait per idle
// spell, and the runtime's EPOLL_CTL_DEL at the batched close, which fails
// harmlessly. Skipping an empty read is unsafe with Go's poller: a readiness
// that arrived while the goroutine was busy (a pipelined request, or a
// backend's FIN on a pooled connection) would be lost and the read would
// wait for its timeout. Keeping a readiness across the start of a read
// fixes that only if the poller also reports a pending end of stream
// (EPOLLRDHUP), which it does not pass on: a peer whose FIN comes with its
// data produces one edge for both, and a read that waits first would wait
// for an edge that never comes.
package proxy
