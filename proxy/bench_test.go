package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/pingora-go/pingora/config"
)

// The per-request pieces, with allocations reported: all should be 0.

var benchHead = []byte("GET /api/v1/items?id=42 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: wrk/4.2\r\n" +
	"Accept: */*\r\nAccept-Encoding: gzip\r\nX-Forwarded-For: 10.0.0.1\r\nCookie: a=b; c=d\r\n\r\n")

func benchProxy(b *testing.B) *Proxy {
	cfg := testConfig("127.0.0.1:1", "localhost:1")
	mk := func(name, host, prefix string) config.Route {
		return config.Route{Name: name, Host: host, PathPrefix: prefix, Upstream: "app", MaxBodySize: -1,
			ResponseHeaders: map[string]string{"X-Served-By": "pingora"}}
	}
	cfg.Routes = []config.Route{mk("any", "", "/"), mk("static", "", "/static/"), mk("www", "www.example.com", "/"),
		mk("api", "api.example.com", "/api/"), mk("api-v1", "api.example.com", "/api/v1/"), mk("wild", "*.example.com", "/")}
	p, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

func BenchmarkRouteMatch(b *testing.B) {
	p := benchProxy(b)
	tab := p.listeners["public"].table
	host, path := []byte("API.example.com:8080"), []byte("/api/v1/items")
	b.ReportAllocs()
	for b.Loop() {
		if rt := tab.match(host, path); rt == nil || rt.name != "api-v1" {
			b.Fatal(rt)
		}
	}
}

func BenchmarkParseRequest(b *testing.B) {
	var r request
	r.headers = make([]header, 0, 32)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchHead)))
	for b.Loop() {
		if parseRequest(&r, benchHead) != parseOK {
			b.Fatal("parse")
		}
	}
}

// BenchmarkHeaderRewrite parses a request and writes the upstream head.
func BenchmarkHeaderRewrite(b *testing.B) {
	p := benchProxy(b)
	rt := p.listeners["public"].table.match([]byte("api.example.com"), []byte("/api/v1/items"))
	var r request
	r.headers = make([]header, 0, 32)
	bw := bufio.NewWriterSize(io.Discard, 8<<10)
	var idBuf [32]byte
	uh := upstreamHead{clientIP: []byte("127.0.0.1"), host: []byte("127.0.0.1:1")}
	b.ReportAllocs()
	for b.Loop() {
		if parseRequest(&r, benchHead) != parseOK {
			b.Fatal("parse")
		}
		uh.reqID = p.newRequestID(idBuf[:0])
		writeUpstreamHead(bw, rt, &r, &uh)
		bw.Flush()
	}
}

// rawHTTPBackend answers every request head with a fixed response,
// allocating nothing per request (so the benchmark counts the proxy's).
func rawHTTPBackend(b testing.TB, resp string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	respb := []byte(resp)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 16<<10)
				n := 0
				for {
					k, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += k
					for {
						i := bytes.Index(buf[:n], crlfcrlf)
						if i < 0 {
							break
						}
						if _, err := c.Write(respb); err != nil {
							return
						}
						n = copy(buf, buf[i+4:n])
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkProxyKeepAlive is a full proxied request over loopback on a
// keep-alive client connection: client -> proxy -> backend and back.
func BenchmarkProxyKeepAlive(b *testing.B) {
	body := string(bytes.Repeat([]byte("x"), 100))
	addr := rawHTTPBackend(b, "HTTP/1.1 200 OK\r\nServer: raw\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"+body)
	cfg := testConfig(addr)
	cfg.Routes[0].ResponseHeaders = map[string]string{"X-Served-By": "pingora"}
	r := Start(b, cfg, Options{})
	c, err := net.Dial("tcp", r.Addr("public"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n")
	// Learn the response length once (it is the same every time).
	c.Write(req)
	first := make([]byte, 4096)
	n, err := c.Read(first)
	if err != nil || !bytes.HasSuffix(first[:n], []byte(body)) {
		b.Fatalf("first response %q %v", first[:n], err)
	}
	resp := make([]byte, n)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProxyNewConn is a full proxied request on a new client
// connection each time (the "Connection: close" load).
func BenchmarkProxyNewConn(b *testing.B) {
	body := string(bytes.Repeat([]byte("x"), 100))
	addr := rawHTTPBackend(b, "HTTP/1.1 200 OK\r\nServer: raw\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"+body)
	cfg := testConfig(addr)
	cfg.Routes[0].ResponseHeaders = map[string]string{"X-Served-By": "pingora"}
	r := Start(b, cfg, Options{})
	req := []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
	buf := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", r.Addr("public"))
		if err != nil {
			b.Fatal(err)
		}
		c.Write(req)
		n := 0
		for {
			k, err := c.Read(buf[n:])
			n += k
			if err != nil {
				break
			}
		}
		c.Close()
		if !bytes.HasSuffix(buf[:n], []byte(body)) {
			b.Fatalf("response %q", buf[:n])
		}
	}
}
