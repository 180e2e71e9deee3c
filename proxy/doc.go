// Package proxy is pingora-master's HTTP/1.1 reverse-proxy engine: it routes
// requests arriving on listeners handed to it (by host and path prefix) to
// upstream pools or to fixed responses, and streams bodies both ways.
//
// The data path is written directly on net.Conn rather than on net/http:
// measured, net/http costs several times nginx's CPU per request. A goroutine
// serves each client connection with pooled bufio readers and writers; the
// request head is parsed in place (header slices point into the read buffer)
// and the upstream request head is written straight into the upstream
// connection's buffered writer, so a keep-alive request allocates nothing in
// steady state.
//
// The parser is strict on purpose (request smuggling): ambiguous framing is
// answered with 400 and a closed connection, never forwarded.
//
// The package knows nothing of processes: the worker hands it listeners and
// tells it when to drain.
package proxy
