// Command idleconns holds N idle keep-alive connections to a proxy for
// deploy/bench/memory.sh: each connection sends one GET, reads the whole
// response, then stays open and silent. Once every connection is idle it
// prints "ready N" on stdout, and it holds them until stdin closes or a
// signal arrives, so that the caller can measure the proxy's memory meanwhile.
// -proto says what the connections speak: HTTP/1.1 (plain), HTTP/1.1 over
// TLS (tls), HTTP/2 over TLS (h2) or cleartext HTTP/2 (h2c); TLS
// connections do a full handshake and verify no certificate.
//
//	go run ./deploy/bench/idleconns -addr 127.0.0.1:19001 -n 10000 </dev/fd/3
//	go run ./deploy/bench/idleconns -proto h2 -addr 127.0.0.1:19021 -n 1000
//
// Loopback has about 28,000 ephemeral ports per source address, so past
// -per-source connections it binds the next 127.0.0.x source address.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "the proxy, host:port")
	n := flag.Int("n", 1000, "idle connections to hold")
	batch := flag.Int("batch", 200, "connections opened concurrently")
	perSource := flag.Int("per-source", 20000, "connections per 127.0.0.x source address")
	firstSource := flag.Int("first-source", 1, "x of the first 127.0.0.x source address (a caller running several times in a row moves it on: the ports of closed connections stay in TIME_WAIT)")
	host := flag.String("host", "localhost", "the Host header")
	proto := flag.String("proto", "plain", "plain, tls, h2 (over TLS) or h2c")
	flag.Parse()
	switch *proto {
	case "plain", "tls", "h2", "h2c":
	default:
		fmt.Fprintf(os.Stderr, "idleconns: -proto %q: want plain, tls, h2 or h2c\n", *proto)
		os.Exit(2)
	}

	if *firstSource < 1 || *firstSource > 254 {
		fmt.Fprintf(os.Stderr, "idleconns: -first-source %d: want 1 to 254\n", *firstSource)
		os.Exit(2)
	}
	conns, err := openIdle(*addr, *host, *proto, *n, *batch, *perSource, *firstSource)
	if err != nil {
		fmt.Fprintf(os.Stderr, "idleconns: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("ready %d\n", len(conns))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case <-stop:
	case <-stdinClosed:
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

// openIdle opens n connections, batch at a time, each having sent one request
// and read its response in full.
func openIdle(addr, host, proto string, n, batch, perSource, firstSource int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	request := []byte("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
	for start := 0; start < n; start += batch {
		end := min(start+batch, n)
		var wg sync.WaitGroup
		errs := make([]error, end-start)
		for i := start; i < end; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				conns[i], errs[i-start] = openOne(addr, host, proto, request, firstSource+i/perSource)
			}(i)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				for _, c := range conns[:end] {
					if c != nil {
						_ = c.Close()
					}
				}
				return nil, fmt.Errorf("after %d connections: %w", start, err)
			}
		}
	}
	return conns, nil
}

// openOne dials from 127.0.0.source, sends request and reads one
// response with a Content-Length body (HTTP/2: one GET stream).
func openOne(addr, host, proto string, request []byte, source int) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(min(source, 254)))}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if proto == "tls" || proto == "h2" {
		alpn := "http/1.1"
		if proto == "h2" {
			alpn = "h2"
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: host, NextProtos: []string{alpn}})
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		if got := tc.ConnectionState().NegotiatedProtocol; got != alpn {
			c.Close()
			return nil, fmt.Errorf("ALPN chose %q, not %q", got, alpn)
		}
		c = tc
	}
	if proto == "h2" || proto == "h2c" {
		if err := h2Get(c, host); err != nil {
			c.Close()
			return nil, fmt.Errorf("HTTP/2 GET: %w", err)
		}
		return c, nil
	}
	if _, err := c.Write(request); err != nil {
		c.Close()
		return nil, fmt.Errorf("send request: %w", err)
	}
	if err := readResponse(bufio.NewReaderSize(c, 1024)); err != nil {
		c.Close()
		return nil, fmt.Errorf("read response: %w", err)
	}
	return c, nil
}

// readResponse reads a response head and its Content-Length body; the
// reader buffers only what the response sent, as no second request follows.
func readResponse(r *bufio.Reader) error {
	status, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(status, "HTTP/1.1 200") {
		return fmt.Errorf("status line %q", strings.TrimSpace(status))
	}
	length := -1
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		name, value, _ := strings.Cut(line, ":")
		if strings.EqualFold(name, "Content-Length") {
			if length, err = strconv.Atoi(strings.TrimSpace(value)); err != nil {
				return fmt.Errorf("content-length %q: %w", value, err)
			}
		}
	}
	if length < 0 {
		return fmt.Errorf("response without Content-Length")
	}
	_, err = io.CopyN(io.Discard, r, int64(length))
	return err
}

// h2Get opens the HTTP/2 connection c with an empty SETTINGS frame, sends
// GET / on stream 1 and reads frames until the stream ends with a 200,
// acknowledging the server's SETTINGS on the way.
func h2Get(c net.Conn, host string) error {
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", host}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	bw := bufio.NewWriterSize(c, 1024)
	fr := http2.NewFramer(bw, bufio.NewReaderSize(c, 1024))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	bw.WriteString(http2.ClientPreface)
	fr.WriteSettings()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true})
	if err := bw.Flush(); err != nil {
		return err
	}
	status := ""
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		ended := false
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
				if err := bw.Flush(); err != nil {
					return err
				}
			}
		case *http2.MetaHeadersFrame:
			if s := f.PseudoValue("status"); s != "" && s[0] != '1' {
				status = s
			}
			ended = f.StreamEnded()
		case *http2.DataFrame:
			ended = f.StreamEnded()
		case *http2.RSTStreamFrame:
			return fmt.Errorf("stream reset: %v", f.ErrCode)
		case *http2.GoAwayFrame:
			return fmt.Errorf("GOAWAY: %v", f.ErrCode)
		}
		if ended {
			if status != "200" {
				return errors.New("status " + status)
			}
			return nil
		}
	}
}
