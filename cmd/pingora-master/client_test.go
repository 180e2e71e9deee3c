package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// A raw HTTP/1.1 client over net.Conn. The tests do not use net/http's
// Transport for traffic through the proxy because it silently retries a
// request that failed on a reused connection (idempotent ones, and any
// request it believes was not sent): that would hide exactly the failures
// these tests exist to count. Here a request is written once, and whatever
// happens to it is the result.

// response is one parsed answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
	// Close is set when the server said Connection: close (or HTTP/1.0):
	// the connection must not carry another request.
	Close bool
}

// requestTimeout bounds one request end to end; far above anything the
// tests wait for on purpose (the 3 s slow request).
const requestTimeout = 15 * time.Second

// conn is one client connection with its reader.
type conn struct {
	c  net.Conn
	br *bufio.Reader
	// used counts the requests that completed on this connection.
	used int
}

func dial(addr string) (*conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &conn{c: c, br: bufio.NewReader(c)}, nil
}

// dialTLS is dial over TLS (the test certificate's name; not verified: the
// load checks answers, not certificates).
func dialTLS(addr string) (*conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: "a.example", InsecureSkipVerify: true})
	if err != nil {
		return nil, fmt.Errorf("TLS dial %s: %w", addr, err)
	}
	return &conn{c: c, br: bufio.NewReader(c)}, nil
}

func (c *conn) Close() error { return c.c.Close() }

// do sends one request and reads its whole answer. closeAfter asks the
// server to close the connection after it (a client opening a connection per
// request, as net/http does with DisableKeepAlives). Errors say at which step
// the request failed.
func (c *conn) do(method, path string, body []byte, closeAfter bool) (*response, error) {
	if err := c.c.SetDeadline(time.Now().Add(requestTimeout)); err != nil {
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: pingora.test\r\nUser-Agent: pingora-it\r\n", method, path)
	if closeAfter {
		req.WriteString("Connection: close\r\n")
	}
	if body != nil {
		fmt.Fprintf(&req, "Content-Type: application/octet-stream\r\nContent-Length: %d\r\nX-Body-Length: %d\r\n", len(body), len(body))
	}
	req.WriteString("\r\n")
	req.Write(body)
	if _, err := c.c.Write(req.Bytes()); err != nil {
		return nil, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return nil, fmt.Errorf("read response head: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read response body (status %d): %w", resp.StatusCode, err)
	}
	c.used++
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: data, Close: resp.Close}, nil
}

// fetch makes one request on a connection of its own.
func fetch(addr, method, path string, body []byte) (*response, error) {
	c, err := dial(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.do(method, path, body, true)
}

// get is fetch for a GET, answering with status and body only.
func get(addr, path string) (int, string, error) {
	r, err := fetch(addr, http.MethodGet, path, nil)
	if err != nil {
		return 0, "", err
	}
	return r.Status, string(r.Body), nil
}

// describe renders a response for failure messages.
func (r *response) describe() string {
	b := r.Body
	if len(b) > 200 {
		b = b[:200]
	}
	return "status " + strconv.Itoa(r.Status) + " body " + strconv.Quote(string(b))
}
