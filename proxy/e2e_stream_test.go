package proxy_test

// Streaming of large bodies, with the proxy's memory measured. To measure the
// proxy alone (not the test's backends and clients), the proxy runs in a child
// process: the test binary re-executed with PINGORA_E2E_CHILD set runs only
// TestE2EProxyChild, which serves the given config on a loopback port it
// reports on stdout, until its stdin closes. A test function, not TestMain,
// so the proxy package's own tests remain free to define TestMain.
//
// Under -race the child is this package's test binary built without the race
// detector (go test -c, from the build cache go vet has filled): the
// detector's shadow memory alone is ~20 MiB of RSS and it slows the copy
// loops about fivefold, and a shipped proxy carries neither. The streaming
// path still runs under the race detector in TestE2EStreamingInProcess.

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
	"github.com/pingora-go/pingora/proxy"
)

const (
	childEnv    = "PINGORA_E2E_CHILD"
	childListen = "PINGORA_E2E_LISTEN "
	rssLimit    = 64 << 20
)

// TestE2EProxyChild is not a test on its own: it is the body of the child
// process the streaming test starts.
func TestE2EProxyChild(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("helper: runs only in the child process started by TestE2EStreamingLargeBodies")
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("child: load %s: %v", path, err)
	}
	p, err := proxy.New(cfg, proxy.Options{Logger: proxy.LoggerFor(t)})
	if err != nil {
		t.Fatalf("child: proxy.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("child: listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(map[string]net.Listener{cfg.Listeners[0].Name: ln}) }()
	select {
	case <-p.Ready():
	case err := <-served:
		t.Fatalf("child: Serve returned before Ready: %v", err)
	}
	fmt.Printf("%s%s\n", childListen, ln.Addr())
	io.Copy(io.Discard, os.Stdin) // the parent closes our stdin to stop us
	p.Close()
	<-served
}

// childProxy is a proxy running in a child process.
type childProxy struct {
	Addr   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *bytes.Buffer
	out    *proxy.SyncBuffer // the child's stdout but the listen line
}

// startChildProxy writes src to a file and runs the proxy on it in a child
// process; cleanup stops it (closing its stdin, then killing it by pid if
// it does not exit within 5s).
func startChildProxy(t *testing.T, src string) *childProxy {
	t.Helper()
	path := t.TempDir() + "/child.hcl"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(childBinary(t), "-test.run=^TestE2EProxyChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	cp := &childProxy{cmd: cmd, stderr: &bytes.Buffer{}, out: &proxy.SyncBuffer{}}
	cmd.Stderr = cp.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if cp.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child proxy: %v", err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		cp.stdin.Close()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			t.Errorf("child proxy did not stop within 5s of its stdin closing; killing pid %d", cmd.Process.Pid)
			cmd.Process.Kill()
			<-exited
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), childListen); ok {
				addr <- a
			} else {
				cp.out.Write([]byte(sc.Text() + "\n"))
			}
		}
		cmd.Wait()
		close(exited)
	}()
	select {
	case cp.Addr = <-addr:
	case <-exited:
		t.Fatalf("child proxy exited before listening; output:\n%s%s", cp.out.String(), cp.stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("child proxy not listening within 20s")
	}
	return cp
}

// childBinary is the test binary to run as the child: this one, or when it
// carries the race detector, the same package built without it.
func childBinary(t *testing.T) string {
	t.Helper()
	if !raceEnabled {
		return os.Args[0]
	}
	out := t.TempDir() + "/proxy-norace.test"
	start := time.Now()
	// The working directory of a test is its package directory.
	build := exec.Command("go", "test", "-c", "-o", out, ".")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the child without -race: %v\n%s", err, msg)
	}
	t.Logf("child built without -race in %v", time.Since(start))
	return out
}

// procStatus reads a "Name:   N kB" line of /proc/PID/status in bytes.
func procStatus(t testing.TB, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read status of pid %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestE2EStreamingLargeBodies moves 1 GiB down and 1 GiB up (once with a
// Content-Length, once chunked) through the proxy and checks every byte
// arrived (length and CRC) while the proxy's peak RSS stayed under 64 MiB:
// bodies are streamed, never held. Neither side of the test holds the data
// either: it is generated and hashed on the fly.
func TestE2EStreamingLargeBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 3 GiB through the proxy; skipped in -short mode")
	}
	const n = 1 << 30
	be := startBackend(t, "stream")
	cp := startChildProxy(t, expand(`
listener "pub" {
  address       = "127.0.0.1:1"
  max_body_size = 0
}
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}))
	pid := cp.cmd.Process.Pid
	t.Logf("child proxy pid %d: VmHWM %d KiB before the transfers", pid, procStatus(t, pid, "VmHWM")>>10)

	wantCRC := make(chan uint32, 1)
	go func() { wantCRC <- patternCRC(n) }()
	c := newClient()
	url := "http://" + cp.Addr

	t.Run("download", func(t *testing.T) {
		start := time.Now()
		resp, err := c.Get(url + "/big?n=" + strconv.Itoa(n))
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer resp.Body.Close()
		h := crc32.NewIEEE()
		got, err := io.CopyBuffer(h, resp.Body, make([]byte, 256<<10))
		if err != nil || got != n || resp.StatusCode != 200 {
			t.Fatalf("status %d, read %d of %d bytes: %v", resp.StatusCode, got, n, err)
		}
		// The backend records what it sent after its last write, which
		// the client may have read before.
		proxy.WaitFor(t, 5*time.Second, "the backend to record the download", func() bool { return be.lastLen.Load() == n })
		if h.Sum32() != be.lastCRC.Load() {
			t.Errorf("downloaded CRC %08x, the backend sent %08x", h.Sum32(), be.lastCRC.Load())
		}
		t.Logf("1 GiB download in %v", time.Since(start))
	})
	want := <-wantCRC
	for _, chunked := range []bool{false, true} {
		name := "upload Content-Length"
		if chunked {
			name = "upload chunked"
		}
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			req, err := http.NewRequest("POST", url+"/upload", io.NopCloser(newPattern(n)))
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = n
			if chunked {
				req.ContentLength = -1
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			prefix := fmt.Sprintf("n=%d crc=%08x ", n, want)
			if resp.StatusCode != 200 || !strings.HasPrefix(string(body), prefix) {
				t.Fatalf("status %d, backend got %q, want %q", resp.StatusCode, clip(string(body)), prefix+"...")
			}
			t.Logf("1 GiB %s in %v (backend: %s)", name, time.Since(start), body)
		})
	}
	hwm := procStatus(t, pid, "VmHWM")
	t.Logf("child proxy peak RSS (VmHWM) %d KiB", hwm>>10)
	if hwm >= rssLimit {
		t.Errorf("proxy peak RSS %d MiB, want < 64 MiB while streaming 1 GiB bodies", hwm>>20)
	}
}

// TestE2EStreamingInProcess streams 32 MiB bodies both ways through a proxy
// in this process, so that the streaming path (chunked both ways included)
// also runs under the race detector; the child of the large test may not.
func TestE2EStreamingInProcess(t *testing.T) {
	t.Parallel()
	const n = 32 << 20
	be := startBackend(t, "stream")
	rp := startProxy(t, expand(`
listener "pub" {
  address       = "127.0.0.1:1"
  max_body_size = 0
}
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{})
	want := patternCRC(n)
	c := newClient()
	for _, chunked := range []bool{false, true} {
		q := ""
		if chunked {
			q = "&chunked=1"
		}
		resp, err := c.Get(rp.URL("pub") + "/big?n=" + strconv.Itoa(n) + q)
		if err != nil {
			t.Fatalf("GET (chunked %v): %v", chunked, err)
		}
		h := crc32.NewIEEE()
		got, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || got != n || h.Sum32() != want {
			t.Errorf("download (chunked %v): status %d, %d of %d bytes, crc %08x want %08x, err %v", chunked, resp.StatusCode, got, n, h.Sum32(), want, err)
		}
		if chunked && resp.ContentLength != -1 {
			t.Logf("chunked download arrived with Content-Length %d", resp.ContentLength)
		}

		req, _ := http.NewRequest("POST", rp.URL("pub")+"/upload", io.NopCloser(newPattern(n)))
		req.ContentLength = n
		if chunked {
			req.ContentLength = -1
		}
		resp, err = c.Do(req)
		if err != nil {
			t.Fatalf("POST (chunked %v): %v", chunked, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if prefix := fmt.Sprintf("n=%d crc=%08x ", n, want); resp.StatusCode != 200 || !strings.HasPrefix(string(body), prefix) {
			t.Errorf("upload (chunked %v): status %d, backend got %q, want %q", chunked, resp.StatusCode, clip(string(body)), prefix+"...")
		}
	}
}

// TestE2EStreamingFlushesPartialResponse: the response head and the first
// body bytes reach the client while the upstream is still producing the rest
// (server-sent events, long polling, slow generators), not when a buffer
// fills or the upstream finishes.
func TestE2EStreamingFlushesPartialResponse(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "trickle")
	rp := startProxy(t, expand(`
listener "pub" { address = "127.0.0.1:1" }
upstream "app" {
  read_timeout = "30s"
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{})
	rc := proxy.DialRaw(t, rp.Addr("pub"))
	start := time.Now()
	rc.Send("GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
	rc.Conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(rc.BR, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("response head not received within 3s while the upstream holds the rest of the body (%v): %v", time.Since(start), err)
	}
	part := make([]byte, len("first part;"))
	if _, err := io.ReadFull(resp.Body, part); err != nil || string(part) != "first part;" {
		t.Fatalf("first body bytes %q not received within 3s: %v", part, err)
	}
	t.Logf("head and first part after %v", time.Since(start))
}

// TestE2EStreamingFlushesPartialRequest: with request_buffering off, body
// bytes a client has sent reach the upstream while the client is still
// sending (a slow or interactive upload), not when a buffer fills or the
// body ends.
func TestE2EStreamingFlushesPartialRequest(t *testing.T) {
	t.Parallel()
	be := startBackend(t, "progress")
	rp := startProxy(t, expand(`
listener "pub" {
  address           = "127.0.0.1:1"
  request_buffering = false
}
upstream "app" {
  server "@BE@" {}
}
route "all" { upstream = "app" }
`, map[string]string{"BE": be.Addr}), proxy.Options{})
	for _, framing := range []string{"Transfer-Encoding: chunked", "Content-Length: 10"} {
		rc := proxy.DialRaw(t, rp.Addr("pub"))
		first, rest := "5\r\nhello\r\n", "5\r\nworld\r\n0\r\n\r\n"
		if framing != "Transfer-Encoding: chunked" {
			first, rest = "hello", "world"
		}
		rc.Send("POST /progress HTTP/1.1\r\nHost: x\r\n" + framing + "\r\n\r\n" + first)
		select {
		case n := <-be.progress:
			if n != 5 {
				t.Errorf("%s: backend received %d bytes, want the 5 sent so far", framing, n)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("%s: the first 5 body bytes did not reach the backend within 3s while the client was still sending", framing)
		}
		rc.Send(rest)
		if resp, body := rc.MustRead("POST"); resp.StatusCode != 200 || body != "received 10" {
			t.Errorf("%s: status %d %q, want 200 %q", framing, resp.StatusCode, clip(body), "received 10")
		}
		for len(be.progress) > 0 {
			<-be.progress
		}
	}
}
