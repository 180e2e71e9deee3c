// Package redistest runs a real redis-server for tests: on a free loopback
// port, without persistence, stopped when the test ends. Tests that need
// one are skipped, with the reason, where the binary is not installed
// (Debian: apt-get install redis-server; .ci/run does).
package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Binary is where Debian's redis-server package puts the server.
const Binary = "/usr/bin/redis-server"

// startTimeout bounds a server's start (it answers PING within
// milliseconds on an idle machine).
const startTimeout = 10 * time.Second

// Server is one redis-server process.
type Server struct {
	tb   testing.TB
	bin  string
	Port int
	Addr string // 127.0.0.1:port
	cmd  *exec.Cmd
	exit chan struct{}
}

// Start runs a redis-server on a free loopback port and waits until it
// answers PING; the test's cleanup stops it.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil {
		if bin, err = exec.LookPath("redis-server"); err != nil {
			tb.Skipf("needs redis-server (Debian package redis-server): %v", err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{tb: tb, bin: bin, Port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	s.Restart()
	tb.Cleanup(s.Stop)
	return s
}

// URL is the store setting that points at the server's database db.
func (s *Server) URL(db int) string { return fmt.Sprintf("redis://%s/%d", s.Addr, db) }

// Restart starts the server again on the same port (after Stop) and waits
// until it answers PING. Its data starts empty.
func (s *Server) Restart() {
	s.tb.Helper()
	if s.cmd != nil {
		s.tb.Fatal("redistest: Restart of a running server")
	}
	cmd := exec.Command(s.bin, "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("start %s: %v", s.bin, err)
	}
	s.cmd, s.exit = cmd, make(chan struct{})
	go func(exit chan struct{}) { cmd.Wait(); close(exit) }(s.exit)
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.Ping()
		if err == nil {
			return
		}
		select {
		case <-s.exit:
			s.cmd = nil
			s.tb.Fatalf("redis-server on port %d exited at start: %s", s.Port, out.String())
		default:
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server on port %d does not answer PING after %v: %v", s.Port, startTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL: as abrupt as a crash) and waits until
// it is gone. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exit
	s.cmd = nil
}

// Ping sends PING on a connection of its own.
func (s *Server) Ping() error {
	r, err := s.Do("PING")
	if err != nil {
		return err
	}
	if r != "PONG" {
		return fmt.Errorf("PING answered %q", r)
	}
	return nil
}

// Do sends one command on a connection of its own and returns its reply
// as text: a status or bulk string, an integer, or an error reply as an
// error. Array replies are not read.
func (s *Server) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}
