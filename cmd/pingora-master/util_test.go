// Small helpers shared by the tests: polling with a deadline, ports,
// files, and matching positions and values in output.

package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond every few milliseconds until it holds, failing the
// test with cond's last explanation after timeout.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// refusedAddr returns a loopback address whose connections are refused,
// for the lifetime of the test: its port is held by a bound socket that
// does not listen. A port merely closed again (freePort) could be taken
// by another listener meanwhile, and /dead/ would then get its answers.
func refusedAddr(tb testing.TB) string {
	tb.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// freePort finds a loopback port nobody listens on right now.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func openAppend(tb testing.TB, path string) *os.File {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	return out.Close()
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// readText is a file's content, "" when absent.
func readText(path string) string {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Sprintf("<read %s: %v>", path, err)
	}
	return string(b)
}

// after is s past its first n bytes ("" when s is shorter: a file that was
// replaced).
func after(s string, n int) string {
	if n > len(s) {
		return ""
	}
	return s[n:]
}

// tail is the last n lines of a file.
func tail(path string, n int) string {
	lines := strings.Split(strings.TrimRight(readText(path), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lineOf is the 1-based line of text where sub first appears (0: nowhere).
func lineOf(text, sub string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			return i + 1
		}
	}
	return 0
}

// positionRE matches FILE:LINE followed by a column (":COL" as gcc and go
// vet write it, or ",COL" as hcl.Range does): the file:line:col of a
// diagnostic.
func positionRE(file string, line int) *regexp.Regexp {
	return regexp.MustCompile(regexp.QuoteMeta(file) + ":" + strconv.Itoa(line) + `[:,]\d+`)
}

// containsField reports whether s holds v as a whole value (pid=123,
// "pid":123, [123]), not as part of a longer number.
func containsField(s, v string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], v)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(v)
		before := j == 0 || !isDigit(s[j-1])
		after := end == len(s) || !isDigit(s[end])
		if before && after {
			return true
		}
		i = j + 1
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
