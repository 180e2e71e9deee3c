package proxy_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/pingora-go/pingora/proxy"
)

// An idle TLS keep-alive connection parks as a plain one does (no
// goroutine), comes back with its TLS state when the next request comes,
// and is closed when its keep-alive time is over, and by Close.
func TestTLSConnectionParksAndResumes(t *testing.T) {
	be := startBackend(t, "b")
	rp := oneCertProxy(t, be, `keepalive_timeout = "1500ms"`, "", proxy.Options{})
	dial := func() (*tls.Conn, *bufio.Reader) {
		c, err := tls.Dial("tcp", rp.Addr("https"), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	get := func(c *tls.Conn, br *bufio.Reader, path string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("GET %s: %d, close %v", path, resp.StatusCode, resp.Close)
		}
	}
	c, br := dial()
	get(c, br, "/first")
	proxy.WaitFor(t, 5*time.Second, "the TLS connection parked", func() bool { return rp.P.Stats().ParkedConns == 1 })
	get(c, br, "/after-parking") // and two requests in one write: one record holds both
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, p := range []string{"/a", "/b"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("pipelined GET %s: %v %v", p, resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	proxy.WaitFor(t, 5*time.Second, "the TLS connection parked again", func() bool { return rp.P.Stats().ParkedConns == 1 })

	// Its keep-alive time runs on while parked.
	idleFrom := time.Now()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from an idle connection", n)
	}
	if idle := time.Since(idleFrom); idle < time.Second {
		t.Fatalf("closed after %v idle, before keepalive_timeout", idle)
	}
	proxy.WaitFor(t, 5*time.Second, "no connection left", func() bool {
		s := rp.P.Stats()
		return s.ActiveConns == 0 && s.ParkedConns == 0
	})

	// Close cuts a parked one.
	c2, br2 := dial()
	get(c2, br2, "/second")
	proxy.WaitFor(t, 5*time.Second, "the second connection parked", func() bool { return rp.P.Stats().ParkedConns == 1 })
	rp.P.Close()
	c2.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("parked TLS connection not closed by Close: %v", err)
	}
}
