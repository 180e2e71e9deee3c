// Command idleconns holds N idle keep-alive connections to an HTTP/1.1 proxy
// for deploy/bench/memory.sh: each connection sends one GET, reads the whole
// response, then stays open and silent. Once every connection is idle it
// prints "ready N" on stdout, and it holds them until stdin closes or a
// signal arrives, so that the caller can measure the proxy's memory meanwhile.
//
//	go run ./deploy/bench/idleconns -addr 127.0.0.1:19001 -n 10000 </dev/fd/3
//
// Loopback has about 28,000 ephemeral ports per source address, so past
// -per-source connections it binds the next 127.0.0.x source address.
package main

import (
	"bufio"
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
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "the proxy, host:port")
	n := flag.Int("n", 1000, "idle connections to hold")
	batch := flag.Int("batch", 200, "connections opened concurrently")
	perSource := flag.Int("per-source", 20000, "connections per 127.0.0.x source address")
	firstSource := flag.Int("first-source", 1, "x of the first 127.0.0.x source address (a caller running several times in a row moves it on: the ports of closed connections stay in TIME_WAIT)")
	host := flag.String("host", "localhost", "the Host header")
	flag.Parse()

	if *firstSource < 1 || *firstSource > 254 {
		fmt.Fprintf(os.Stderr, "idleconns: -first-source %d: want 1 to 254\n", *firstSource)
		os.Exit(2)
	}
	conns, err := openIdle(*addr, *host, *n, *batch, *perSource, *firstSource)
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
func openIdle(addr, host string, n, batch, perSource, firstSource int) ([]net.Conn, error) {
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
				conns[i], errs[i-start] = openOne(addr, request, firstSource+i/perSource)
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
// response with a Content-Length body.
func openOne(addr string, request []byte, source int) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(min(source, 254)))}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
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
