package proxy

import (
	"bufio"
	"strconv"
	"time"
)

// This file writes the responses the proxy makes itself: a route's fixed
// respond block and the short text/plain error responses. Both are
// rendered once (at New or package init) so that answering costs a few
// buffered writes and no allocation. The clientConn methods at its end
// answer a request with them and log the error responses.

// connMode is what a response says about the client connection.
type connMode uint8

const (
	connDefault   connMode = iota // HTTP/1.1 keep-alive: nothing to say
	connClose                     // "Connection: close": closed after this response
	connKeepAlive                 // "Connection: keep-alive" to an HTTP/1.0 client
)

var connHeaderLines = [...]string{
	connDefault:   "",
	connClose:     "Connection: close\r\n",
	connKeepAlive: "Connection: keep-alive\r\n",
}

// fixedResponse is a route's respond block, pre-rendered.
type fixedResponse struct {
	status  int
	line    []byte // status line
	headers []byte // Content-Type (unless set), Content-Length, route headers
	body    []byte
}

func newFixedResponse(status int, body string, set []setHeader) *fixedResponse {
	if status == 0 {
		status = statusOK
	}
	f := &fixedResponse{status: status, line: statusLine(status), body: []byte(body)}
	hasType := false
	for _, h := range set {
		if equalFoldString(h.name, "content-type") {
			hasType = true
		}
		f.headers = append(f.headers, h.name...)
		f.headers = append(f.headers, ": "...)
		f.headers = append(f.headers, h.value...)
		f.headers = append(f.headers, "\r\n"...)
	}
	if !hasType && len(body) > 0 {
		f.headers = append(f.headers, "Content-Type: text/plain; charset=utf-8\r\n"...)
	}
	if status >= statusOK && status != statusNoContent && status != statusNotModified {
		f.headers = append(f.headers, "Content-Length: "...)
		f.headers = strconv.AppendInt(f.headers, int64(len(body)), 10)
		f.headers = append(f.headers, "\r\n"...)
	} else {
		f.body = nil
	}
	return f
}

// write sends the response and returns the bytes written; retryAfter > 0
// adds Retry-After (seconds).
func (f *fixedResponse) write(bw *bufio.Writer, mode connMode, head bool, retryAfter int64) int {
	n, _ := bw.Write(f.line)
	m, _ := bw.Write(f.headers)
	n += m
	if retryAfter > 0 {
		m, _ = bw.WriteString("Retry-After: ")
		n += m
		n += writeInt(bw, retryAfter, 10)
		m, _ = bw.WriteString("\r\n")
		n += m
	}
	m, _ = bw.WriteString(connHeaderLines[mode])
	n += m
	m, _ = bw.WriteString("\r\n")
	n += m
	if !head {
		m, _ = bw.Write(f.body)
		n += m
	}
	return n
}

// errorResponses are the error statuses, pre-rendered like a respond block:
// "502 Bad Gateway\n" as text/plain.
var errorResponses = func() map[int]*fixedResponse {
	m := map[int]*fixedResponse{}
	for code := range statusTexts {
		if code >= statusBadRequest {
			m[code] = newFixedResponse(code, strconv.Itoa(code)+" "+statusTexts[code]+"\n", nil)
		}
	}
	return m
}()

// writeError sends an error response; retryAfter > 0 adds Retry-After
// (seconds). It returns the bytes written.
func writeError(bw *bufio.Writer, status int, mode connMode, retryAfter int64, head bool) int {
	e := errorResponses[status]
	if e == nil {
		e = errorResponses[statusInternalError]
	}
	return e.write(bw, mode, head, retryAfter)
}

func statusLine(code int) []byte {
	text := statusTexts[code]
	if text == "" {
		text = "Status " + strconv.Itoa(code)
	}
	return []byte("HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n")
}

var statusTexts = map[int]string{
	100: "Continue", 101: "Switching Protocols",
	200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
	301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
	307: "Temporary Redirect", 308: "Permanent Redirect",
	400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
	405: "Method Not Allowed", 408: "Request Timeout", 410: "Gone",
	413: "Content Too Large", 414: "URI Too Long", 417: "Expectation Failed", 421: "Misdirected Request",
	429: "Too Many Requests", 431: "Request Header Fields Too Large",
	500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
	503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}

// consumeRequest drops the request's input from the read buffer. A body
// that is not there is not read: it reports false, and the connection
// closes after the response.
func (cc *clientConn) consumeRequest(ex *exchange) bool {
	if !ex.bodyBuffered {
		return false
	}
	cc.br.Discard(ex.headLen + ex.bodyLen)
	return ex.keep
}

// respondFixed answers a request with its respond route's fixed response.
func (cc *clientConn) respondFixed(ex *exchange) bool {
	keep := cc.consumeRequest(ex)
	cc.ensureWriteDeadline()
	ex.rt.respond.write(cc.bw, cc.connMode(keep), cc.req.isHead, 0)
	ex.status = ex.rt.respond.status
	if err := cc.bw.Flush(); err != nil {
		return false
	}
	return keep
}

// refuse answers a request with an error status of the proxy's own (no
// route, rate limited, too large, no server), consuming its input.
func (cc *clientConn) refuse(ex *exchange, status int, retryAfter int64, cause error) bool {
	return cc.sendError(ex, status, cc.consumeRequest(ex), retryAfter, cause)
}

// connMode is what the response says about the connection.
func (cc *clientConn) connMode(keep bool) connMode {
	switch {
	case !keep:
		return connClose
	case cc.req.minor == 0:
		return connKeepAlive
	}
	return connDefault
}

// sendError sends an error response and logs it. It reports whether the
// connection stays open.
func (cc *clientConn) sendError(ex *exchange, status int, keep bool, retryAfter int64, cause error) bool {
	cc.now = time.Now() // an error may come after a long wait
	cc.ensureWriteDeadline()
	writeError(cc.bw, status, cc.connMode(keep), retryAfter, cc.req.isHead && status != statusBadRequest)
	ex.status = status
	err := cc.bw.Flush()
	cc.logError(ex, status, cause)
	return keep && err == nil
}

// logFields are what every error-log line about an exchange names.
func (cc *clientConn) logFields(ex *exchange, status int) []any {
	return []any{"status", status, "route", ex.routeName(), "upstream", ex.upstream, "client", string(cc.remote)}
}

// logError logs an error response with its route and upstream: 5xx as
// warnings, 4xx as info.
func (cc *clientConn) logError(ex *exchange, status int, cause error) {
	log := cc.p.log
	if (status >= statusInternalError && !log.IsWarn()) || (status < statusInternalError && !log.IsInfo()) {
		return
	}
	args := cc.logFields(ex, status)
	if cc.req.method != nil && status != statusBadRequest && status != statusHeaderTooLarge {
		args = append(args, "method", string(cc.req.method))
	}
	if cause != nil {
		args = append(args, "error", cause.Error())
	}
	if status >= statusInternalError {
		log.Warn("error response", args...)
	} else {
		log.Info("error response", args...)
	}
}

// routeName is the matched route's name for the logs; empty before
// routing or when nothing matched.
func (ex *exchange) routeName() string {
	if ex.rt == nil {
		return ""
	}
	return ex.rt.name
}
