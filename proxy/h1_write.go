package proxy

import (
	"bufio"
	"strconv"
)

// This file renders heads: the request head sent upstream and the
// response head sent to the client. Both are written field by field
// straight into the connection's bufio.Writer from the parsed slices, so
// no head is ever built as a string or a map.

// upstreamHead is what writeUpstreamHead needs besides the request.
type upstreamHead struct {
	clientIP []byte
	reqID    []byte // generated X-Request-Id; nil when the client sent one
	upgrade  bool   // forward Connection: Upgrade and the Upgrade header
	host     []byte // Host for requests without one (HTTP/1.0): the server address
	https    bool   // the client came over TLS: X-Forwarded-Proto: https
}

// writeUpstreamHead writes the request head for the upstream: HTTP/1.1,
// hop-by-hop headers removed (and those named in Connection), route
// removals and sets applied, X-Forwarded-* and X-Request-Id added, body
// framing normalized (one Content-Length, or Transfer-Encoding: chunked).
func writeUpstreamHead(bw *bufio.Writer, rt *route, req *request, uh *upstreamHead) {
	bw.Write(req.method)
	bw.WriteByte(' ')
	if len(req.target) == 0 || req.target[0] == '?' {
		bw.WriteByte('/') // absolute-form without a path: origin-form starts with "/"
	}
	bw.Write(req.target)
	bw.WriteString(" HTTP/1.1\r\n")

	for i := range req.headers {
		h := &req.headers[i]
		switch h.kind {
		case hdrOther, hdrHost, hdrXRequestID:
			if len(rt.reqDrop) > 0 && rt.dropsRequest(h.name) {
				continue
			}
		case hdrUpgrade:
			if !uh.upgrade {
				continue
			}
		default:
			// Connection, hop-by-hop, Expect (answered here), framing
			// (rewritten below), X-Forwarded-* (rewritten below).
			continue
		}
		// Connection may name only end-to-end fields the proxy does not
		// manage: Host and X-Request-Id stay whatever it names.
		if req.nConnTokens > 0 && h.kind == hdrOther && req.namedInConnection(h.name) {
			continue
		}
		bw.Write(h.name)
		bw.WriteString(": ")
		bw.Write(h.value)
		bw.WriteString("\r\n")
	}
	if req.hostN == 0 && !rt.setsHost {
		bw.WriteString("Host: ")
		if len(req.host) > 0 {
			bw.Write(req.host) // HTTP/1.0 absolute-form: its authority
		} else {
			bw.Write(uh.host)
		}
		bw.WriteString("\r\n")
	}
	if !rt.setsXFF {
		bw.WriteString("X-Forwarded-For: ")
		if !rt.dropsXFF {
			for i := range req.headers {
				if h := &req.headers[i]; h.kind == hdrXForwardedFor && len(h.value) > 0 {
					bw.Write(h.value)
					bw.WriteString(", ")
				}
			}
		}
		bw.Write(uh.clientIP)
		bw.WriteString("\r\n")
	}
	if !rt.setsXFProto {
		if uh.https {
			bw.WriteString("X-Forwarded-Proto: https\r\n")
		} else {
			bw.WriteString("X-Forwarded-Proto: http\r\n")
		}
	}
	if !rt.setsXFHost && len(req.host) > 0 {
		bw.WriteString("X-Forwarded-Host: ")
		bw.Write(req.host)
		bw.WriteString("\r\n")
	}
	if uh.reqID != nil && !rt.setsReqID {
		bw.WriteString("X-Request-Id: ")
		bw.Write(uh.reqID)
		bw.WriteString("\r\n")
	}
	for _, h := range rt.reqSet {
		bw.Write(h.name)
		bw.WriteString(": ")
		bw.Write(h.value)
		bw.WriteString("\r\n")
	}
	switch {
	case req.chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case req.contentLength >= 0:
		bw.WriteString("Content-Length: ")
		writeInt(bw, req.contentLength, 10)
		bw.WriteString("\r\n")
	}
	if uh.upgrade {
		bw.WriteString("Connection: Upgrade\r\n")
	}
	bw.WriteString("\r\n")
}

// bodyMode is how a response body travels to the client.
type bodyMode uint8

const (
	bodyNone    bodyMode = iota // HEAD, 1xx, 204, 304
	bodyFixed                   // Content-Length, copied exactly
	bodyChunked                 // chunked, passed through (validated)
	bodyDechunk                 // chunked, decoded for an HTTP/1.0 client (then close)
	bodyRechunk                 // read to close, chunked for an HTTP/1.1 client
	bodyToClose                 // read to close, raw to an HTTP/1.0 client (then close)
)

// writeClientHead writes the response head for the client.
func writeClientHead(bw *bufio.Writer, rt *route, resp *response, body bodyMode, mode connMode, upgraded bool) {
	writeResponseFields(bw, rt, resp, upgraded)
	bw.Write(rt.respSetRaw)
	// A 204 has no body, so no Content-Length either (RFC 9110 8.6); a
	// 304's is the length the 200 would have had, and stays.
	if resp.contentLength >= 0 && (body == bodyFixed || body == bodyNone) && resp.status != statusNoContent {
		bw.WriteString("Content-Length: ")
		writeInt(bw, resp.contentLength, 10)
		bw.WriteString("\r\n")
	}
	if body == bodyChunked || body == bodyRechunk {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if upgraded {
		bw.WriteString("Connection: Upgrade\r\n")
	} else {
		bw.WriteString(connHeaderLines[mode])
	}
	bw.WriteString("\r\n")
}

// writeInterimHead writes a 1xx interim response (103 Early Hints, say)
// for an HTTP/1.1 client: the status line and the end-to-end fields, no
// framing or connection fields (RFC 9110 15.2).
func writeInterimHead(bw *bufio.Writer, rt *route, resp *response) {
	writeResponseFields(bw, rt, resp, false)
	bw.WriteString("\r\n")
}

// writeResponseFields writes the status line and the fields of resp that
// are forwarded: not framing, hop-by-hop or dropped ones, nor those the
// Connection header names.
func writeResponseFields(bw *bufio.Writer, rt *route, resp *response, upgraded bool) {
	bw.WriteString("HTTP/1.1 ")
	bw.Write(resp.statusRest)
	bw.WriteString("\r\n")
	for i := range resp.headers {
		h := &resp.headers[i]
		switch h.kind {
		case hdrContentLength, hdrConnection, hdrTransferEncoding, hdrHopByHop:
			continue
		case hdrUpgrade:
			if !upgraded {
				continue
			}
		}
		if len(rt.respDrop) > 0 && rt.dropsResponse(h.name) {
			continue
		}
		if resp.nConnTokens > 0 && h.kind != hdrUpgrade && resp.namedInConnection(h.name) {
			continue
		}
		bw.Write(h.name)
		bw.WriteString(": ")
		bw.Write(h.value)
		bw.WriteString("\r\n")
	}
}

// writeInt writes n in the given base straight into bw's buffer (a
// stack array would escape through bufio's io.Writer and cost an
// allocation).
func writeInt(bw *bufio.Writer, n int64, base int) int {
	if bw.Available() < 24 {
		bw.Flush()
	}
	b := strconv.AppendInt(bw.AvailableBuffer(), n, base)
	k, _ := bw.Write(b)
	return k
}
