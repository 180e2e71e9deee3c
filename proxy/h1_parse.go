package proxy

import "bytes"

// This file is the strict HTTP/1.1 head parser, shared by requests (from
// clients) and responses (from upstreams). It works in place: every slice
// it stores points into the head it was given, so parsing allocates
// nothing. It rejects rather than repairs anything two HTTP implementations
// could read differently (the root of request smuggling): both
// Content-Length and Transfer-Encoding, conflicting Content-Length values,
// a Transfer-Encoding other than exactly "chunked", obs-folded lines,
// whitespace before a colon, bare CR or LF, invalid name bytes.

// hdrKind classifies a header name once, at parse time, so that rewriting
// never compares names again.
type hdrKind uint8

const (
	hdrOther hdrKind = iota
	hdrHost
	hdrContentLength
	hdrTransferEncoding
	hdrConnection
	hdrHopByHop // Keep-Alive, Proxy-Connection, TE, Trailer, Proxy-Authenticate, Proxy-Authorization
	hdrUpgrade
	hdrExpect
	hdrXForwardedFor
	hdrXForwardedProto
	hdrXForwardedHost
	hdrXRequestID
)

// header is one header line; name and value point into the head.
type header struct {
	name, value []byte
	kind        hdrKind
}

const (
	maxHeaders    = 128 // more is 431 (requests) or 502 (responses)
	maxConnTokens = 16  // tokens in Connection headers; more is 400
)

// parseOK is the parsers' outcome for a message they accept; any other
// outcome is the status to answer with.
const parseOK = 0

// fields is what requests and responses share: the header lines and the
// framing and connection semantics read from them.
type fields struct {
	headers       []header
	contentLength int64 // -1: absent
	chunked       bool
	connClose     bool
	connKeepAlive bool
	connUpgrade   bool   // "upgrade" token in Connection
	upgrade       []byte // Upgrade header value; nil when absent
	connTokens    [maxConnTokens][]byte
	nConnTokens   int
}

func (f *fields) reset() {
	f.headers = f.headers[:0]
	f.contentLength = -1
	f.chunked = false
	f.connClose = false
	f.connKeepAlive = false
	f.connUpgrade = false
	f.upgrade = nil
	f.nConnTokens = 0
}

// namedInConnection reports whether a header name is listed in the
// Connection header (and so is hop-by-hop for this message).
func (f *fields) namedInConnection(name []byte) bool {
	for i := 0; i < f.nConnTokens; i++ {
		if equalFold(f.connTokens[i], name) {
			return true
		}
	}
	return false
}

// request is a parsed request head. It is reused for every request of a
// connection.
type request struct {
	fields
	method []byte
	target []byte // request-target as sent upstream (origin-form)
	path   []byte // target without the query, for routing
	host   []byte // Host header (or absolute-form authority)
	minor  byte   // HTTP/1.minor
	hostN  int    // Host header lines seen

	isHead     bool
	idempotent bool
	expect100  bool
	reqID      []byte // X-Request-Id from the client; nil when absent
}

// keepAlive is the client's own wish to keep the connection.
func (r *request) keepAlive() bool {
	if r.minor == 0 {
		return r.connKeepAlive && !r.connClose
	}
	return !r.connClose
}

// hasBody reports whether a request body follows the head.
func (r *request) hasBody() bool { return r.chunked || r.contentLength > 0 }

// response is a parsed upstream response head.
type response struct {
	fields
	status     int
	minor      byte
	statusRest []byte // "200 OK": everything after "HTTP/1.x "
}

// keepAlive reports whether the upstream lets us reuse the connection.
func (r *response) keepAlive() bool {
	if r.minor == 0 {
		return r.connKeepAlive && !r.connClose
	}
	return !r.connClose
}

var (
	tcharTable = func() (t [256]bool) {
		for c := '0'; c <= '9'; c++ {
			t[c] = true
		}
		for c := 'a'; c <= 'z'; c++ {
			t[c] = true
			t[c-'a'+'A'] = true
		}
		for _, c := range "!#$%&'*+-.^_`|~" {
			t[c] = true
		}
		return t
	}()
	// valueTable is true for bytes allowed in a header value (field-vchar,
	// SP, HTAB, obs-text): no CTL, so no bare CR or LF.
	valueTable = func() (t [256]bool) {
		for c := 0; c < 256; c++ {
			t[c] = c == '\t' || (c >= 0x20 && c != 0x7f)
		}
		return t
	}()
	lowerTable = func() (t [256]byte) {
		for c := 0; c < 256; c++ {
			t[c] = byte(c)
			if c >= 'A' && c <= 'Z' {
				t[c] = byte(c) + 'a' - 'A'
			}
		}
		return t
	}()
)

// equalFold compares ASCII case-insensitively.
func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lowerTable[a[i]] != lowerTable[b[i]] {
			return false
		}
	}
	return true
}

// equalFoldString compares b with a lower-case ASCII string.
func equalFoldString(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		if lowerTable[b[i]] != lower[i] {
			return false
		}
	}
	return true
}

// classify maps a header name to its kind; the length switch keeps it to
// at most two comparisons.
func classify(name []byte) hdrKind {
	switch len(name) {
	case 2:
		if equalFoldString(name, "te") {
			return hdrHopByHop
		}
	case 4:
		if equalFoldString(name, "host") {
			return hdrHost
		}
	case 6:
		if equalFoldString(name, "expect") {
			return hdrExpect
		}
	case 7:
		if equalFoldString(name, "upgrade") {
			return hdrUpgrade
		}
		if equalFoldString(name, "trailer") {
			return hdrHopByHop
		}
	case 10:
		if equalFoldString(name, "connection") {
			return hdrConnection
		}
		if equalFoldString(name, "keep-alive") {
			return hdrHopByHop
		}
	case 12:
		if equalFoldString(name, "x-request-id") {
			return hdrXRequestID
		}
	case 14:
		if equalFoldString(name, "content-length") {
			return hdrContentLength
		}
	case 15:
		if equalFoldString(name, "x-forwarded-for") {
			return hdrXForwardedFor
		}
	case 16:
		if equalFoldString(name, "proxy-connection") {
			return hdrHopByHop
		}
		if equalFoldString(name, "x-forwarded-host") {
			return hdrXForwardedHost
		}
	case 17:
		if equalFoldString(name, "transfer-encoding") {
			return hdrTransferEncoding
		}
		if equalFoldString(name, "x-forwarded-proto") {
			return hdrXForwardedProto
		}
	case 18:
		if equalFoldString(name, "proxy-authenticate") {
			return hdrHopByHop
		}
	case 19:
		if equalFoldString(name, "proxy-authorization") {
			return hdrHopByHop
		}
	}
	return hdrOther
}

// trimOWS strips optional whitespace (SP, HTAB) at both ends.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// parseContentLength reads a Content-Length value: digits only, or a list
// of identical digit strings ("5, 5", which RFC 9110 lets a recipient
// collapse). Anything else, including a sign or a value above 2^60, fails.
func parseContentLength(v []byte) (int64, bool) {
	n := int64(-1)
	for len(v) > 0 {
		var elem []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			elem, v = trimOWS(v[:i]), v[i+1:]
			if len(v) == 0 {
				return 0, false // trailing comma
			}
		} else {
			elem, v = trimOWS(v), nil
		}
		if len(elem) == 0 || len(elem) > 18 {
			return 0, false
		}
		var x int64
		for _, c := range elem {
			if c < '0' || c > '9' {
				return 0, false
			}
			x = x*10 + int64(c-'0')
		}
		if n >= 0 && x != n {
			return 0, false
		}
		n = x
	}
	return n, n >= 0
}

// parseFields parses header lines. b starts at the first header line and
// ends with the empty line's CRLF. It returns parseOK or the status to answer.
func (f *fields) parseFields(b []byte) int {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 1 || b[i-1] != '\r' {
			return statusBadRequest // bare LF, or a head that does not end in CRLF
		}
		line := b[:i-1]
		b = b[i+1:]
		if len(line) == 0 {
			if len(b) != 0 {
				return statusBadRequest
			}
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return statusBadRequest // obs-fold
		}
		n := 0
		for n < len(line) && tcharTable[line[n]] {
			n++
		}
		if n == 0 || n == len(line) || line[n] != ':' {
			return statusBadRequest // empty name, bad name byte, or whitespace before the colon
		}
		name := line[:n]
		value := line[n+1:]
		for _, c := range value {
			if !valueTable[c] {
				return statusBadRequest // CTL, bare CR included
			}
		}
		value = trimOWS(value)
		if len(f.headers) >= maxHeaders {
			return statusHeaderTooLarge
		}
		kind := classify(name)
		switch kind {
		case hdrContentLength:
			n, ok := parseContentLength(value)
			if !ok || (f.contentLength >= 0 && n != f.contentLength) {
				return statusBadRequest
			}
			f.contentLength = n
		case hdrTransferEncoding:
			if f.chunked || !equalFoldString(value, "chunked") {
				return statusBadRequest
			}
			f.chunked = true
		case hdrConnection:
			if !f.parseConnection(value) {
				return statusBadRequest
			}
		case hdrUpgrade:
			f.upgrade = value
		}
		f.headers = append(f.headers, header{name: name, value: value, kind: kind})
	}
	if f.chunked && f.contentLength >= 0 {
		return statusBadRequest
	}
	return parseOK
}

// parseConnection records the tokens of one Connection header.
func (f *fields) parseConnection(v []byte) bool {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = trimOWS(v[:i]), v[i+1:]
		} else {
			tok, v = trimOWS(v), nil
		}
		if len(tok) == 0 {
			continue
		}
		for _, c := range tok {
			if !tcharTable[c] {
				return false
			}
		}
		switch {
		case equalFoldString(tok, "close"):
			f.connClose = true
		case equalFoldString(tok, "keep-alive"):
			f.connKeepAlive = true
		case equalFoldString(tok, "upgrade"):
			f.connUpgrade = true
		}
		if f.nConnTokens == maxConnTokens {
			return false
		}
		f.connTokens[f.nConnTokens] = tok
		f.nConnTokens++
	}
	return true
}

// parseRequest parses a complete request head (ending in CRLFCRLF) into r.
// It returns parseOK or the status to answer (the connection is then closed).
func parseRequest(r *request, head []byte) int {
	r.reset()
	r.method, r.target, r.path, r.host, r.reqID = nil, nil, nil, nil, nil
	r.hostN = 0
	r.isHead, r.idempotent, r.expect100 = false, false, false

	i := bytes.IndexByte(head, '\n')
	if i < 1 || head[i-1] != '\r' {
		return statusBadRequest
	}
	line := head[:i-1]
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return statusBadRequest
	}
	r.method = line[:sp]
	for _, c := range r.method {
		if !tcharTable[c] {
			return statusBadRequest
		}
	}
	line = line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return statusBadRequest
	}
	r.target = line[:sp]
	for _, c := range r.target {
		if c <= ' ' || c == 0x7f || c == '#' {
			return statusBadRequest // a fragment is never sent (RFC 9110 7.1)
		}
	}
	version := line[sp+1:]
	if len(version) != 8 || string(version[:5]) != "HTTP/" || version[6] != '.' {
		return statusBadRequest
	}
	if version[5] != '1' || (version[7] != '0' && version[7] != '1') {
		if version[5] >= '0' && version[5] <= '9' && version[7] >= '0' && version[7] <= '9' {
			return statusVersionUnsupported
		}
		return statusBadRequest
	}
	r.minor = version[7] - '0'

	if st := r.parseFields(head[i+1:]); st != parseOK {
		return st
	}
	for j := range r.headers {
		h := &r.headers[j]
		switch h.kind {
		case hdrHost:
			r.hostN++
			r.host = h.value
		case hdrExpect:
			if equalFoldString(h.value, "100-continue") {
				r.expect100 = true
			}
		case hdrXRequestID:
			if r.reqID == nil {
				r.reqID = h.value
			}
		}
	}
	if r.hostN > 1 || (r.minor == 1 && r.hostN == 0) || !validHost(r.host) {
		return statusBadRequest
	}
	if r.minor == 0 && r.chunked {
		return statusBadRequest // HTTP/1.0 has no chunked coding: a smuggling vector
	}

	switch string(r.method) {
	case "GET", "OPTIONS", "PUT", "DELETE", "TRACE":
		r.idempotent = true
	case "HEAD":
		r.idempotent, r.isHead = true, true
	case "CONNECT":
		return statusMethodNotAllowed
	}

	t := r.target
	switch {
	case t[0] == '/':
	case len(t) == 1 && t[0] == '*':
		if string(r.method) != "OPTIONS" {
			return statusBadRequest // asterisk-form is for OPTIONS only (RFC 9112 3.2.4)
		}
		r.path = t[:0]
		return parseOK
	case len(t) > 7 && (equalFoldString(t[:7], "http://") || (len(t) > 8 && equalFoldString(t[:8], "https://"))):
		// absolute-form: the authority is the host (RFC 9112 3.2.2: it
		// wins over a Host header, which is rewritten to match), and the
		// origin-form is forwarded.
		rest := t[7:]
		if t[4] != ':' {
			rest = t[8:]
		}
		end := len(rest)
		for k, c := range rest {
			if c == '/' || c == '?' {
				end = k
				break
			}
		}
		authority := rest[:end]
		if len(authority) == 0 || bytes.IndexByte(authority, '@') >= 0 || !validHost(authority) {
			return statusBadRequest // no host, or userinfo (a phishing and confusion vector)
		}
		r.host = authority
		for j := range r.headers {
			if r.headers[j].kind == hdrHost {
				r.headers[j].value = authority
			}
		}
		r.target = rest[end:] // empty or "?query": writeUpstreamHead adds the "/"
	default:
		return statusBadRequest
	}
	r.path = r.target
	if q := bytes.IndexByte(r.path, '?'); q >= 0 {
		r.path = r.path[:q]
	}
	return parseOK
}

// regNameTable is true for the bytes of an RFC 3986 reg-name (unreserved,
// sub-delims, and '%' of a pct-encoding) and so of an IPv4 address.
var regNameTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-._~!$&'()*+,;=%" {
		t[c] = true
	}
	return t
}()

// validHost reports whether a Host value (or an absolute-form authority
// without userinfo) is uri-host [ ":" port ]: a reg-name, an IPv4 address
// or a bracketed IP-literal, and a port of digits. Empty is valid (RFC
// 9112 3.2 allows an empty Host). Anything else could be read differently
// by the routing here and by the backend.
func validHost(h []byte) bool {
	if len(h) == 0 {
		return true
	}
	var port []byte
	if h[0] == '[' {
		i := bytes.IndexByte(h, ']')
		if i < 2 {
			return false
		}
		for _, c := range h[1:i] {
			if unhex(c) < 0 && c != ':' && c != '.' && c != 'v' && c != 'V' {
				return false
			}
		}
		if i+1 < len(h) {
			if h[i+1] != ':' {
				return false
			}
			port = h[i+2:]
		}
	} else {
		name := h
		if i := bytes.IndexByte(h, ':'); i >= 0 {
			name, port = h[:i], h[i+1:]
		}
		if len(name) == 0 {
			return false
		}
		for k := 0; k < len(name); k++ {
			c := name[k]
			if !regNameTable[c] {
				return false
			}
			if c == '%' {
				if k+2 >= len(name) || unhex(name[k+1]) < 0 || unhex(name[k+2]) < 0 {
					return false
				}
				k += 2
			}
		}
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseResponse parses a complete response head into r. Any problem is an
// invalid upstream response (the caller answers 502).
func parseResponse(r *response, head []byte) int {
	r.reset()
	i := bytes.IndexByte(head, '\n')
	if i < 1 || head[i-1] != '\r' {
		return statusBadRequest
	}
	line := head[:i-1]
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return statusBadRequest
	}
	r.minor = line[7] - '0'
	d0, d1, d2 := line[9], line[10], line[11]
	if d0 < '1' || d0 > '5' || d1 < '0' || d1 > '9' || d2 < '0' || d2 > '9' {
		return statusBadRequest
	}
	r.status = int(d0-'0')*100 + int(d1-'0')*10 + int(d2-'0')
	if len(line) > 12 && line[12] != ' ' {
		return statusBadRequest
	}
	for _, c := range line[12:] {
		if !valueTable[c] {
			return statusBadRequest
		}
	}
	r.statusRest = line[9:]
	return r.parseFields(head[i+1:])
}
