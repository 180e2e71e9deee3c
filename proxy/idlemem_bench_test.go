package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
)

// BenchmarkIdleConnMemory is what an idle keep-alive connection costs the
// proxy's heap once parked, plain, over TLS (1.3, full handshake, ECDSA
// P-256) and HTTP/2 over TLS: idleMemConns connections, each after one GET, held by
// deploy/bench/idleconns in a child process so that the heap measured is
// the server's alone. It reports the live heap (heap-B/conn) and the heap
// spans in use (inuse-B/conn) per connection; -memprofile with
// -memprofilerate 1 says where it goes. memory.sh measures the worker's RSS.
//
//	go test -run '^$' -bench IdleConnMemory -benchtime 1x ./proxy/
func BenchmarkIdleConnMemory(b *testing.B) {
	const idleMemConns = 2000
	bin := filepath.Join(b.TempDir(), "idleconns")
	if out, err := exec.Command("go", "build", "-o", bin, "../deploy/bench/idleconns").CombinedOutput(); err != nil {
		b.Fatalf("building idleconns: %v\n%s", err, out)
	}
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 100))
	}))
	b.Cleanup(be.Close)
	certs, err := filepath.Abs(filepath.Join("..", "config", "testdata", "tls"))
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
listener "plain" {
  address           = "127.0.0.1:2"
  keepalive_timeout = "600s"
}
listener "tls" {
  address           = "127.0.0.1:1"
  keepalive_timeout = "600s"
  tls {
    certificate {
      cert_file = "%s/a.pem"
      key_file  = "%s/a.key"
    }
  }
}
upstream "app" {
  server %q {}
  keepalive_conns = 4
}
route "all" { upstream = "app" }
`, certs, certs, be.Listener.Addr().String())), "bench.hcl")
	if err != nil {
		b.Fatal(err)
	}
	r := Start(b, cfg, Options{})
	goroutines := runtime.NumGoroutine()
	// hold opens n idle connections and returns what ends them.
	hold := func(proto string, n int) func() {
		ls := proto
		if proto == "h2" {
			ls = "tls" // h2 by ALPN
		}
		cmd := exec.Command(bin, "-proto", proto, "-addr", r.Addr(ls), "-n", strconv.Itoa(n), "-host", "a.example")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.HasPrefix(line, "ready") {
			cmd.Process.Kill()
			cmd.Wait()
			b.Fatalf("idleconns -proto %s: %q %v", proto, line, err)
		}
		WaitFor(b, time.Minute, "the connections parked", func() bool { return r.P.Stats().ParkedConns == int64(n) })
		// The goroutines that served them linger for connGoroutineIdle,
		// with their stacks. (The backend keeps one per upstream
		// connection, of which the proxy keeps keepalive_conns.)
		WaitFor(b, time.Minute, "the serving goroutines gone", func() bool { return runtime.NumGoroutine() <= goroutines+16 })
		return func() {
			stdin.Close()
			cmd.Wait()
			WaitFor(b, time.Minute, "the connections gone", func() bool { return r.P.Stats().ActiveConns == 0 })
		}
	}
	settled := func() (ms runtime.MemStats) {
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms
	}
	for _, proto := range []string{"plain", "tls", "h2"} {
		b.Run(proto, func(b *testing.B) {
			hold(proto, 200)() // pools, the upstream connection, crypto's tables
			var heap, inuse float64
			for range b.N {
				before := settled()
				release := hold(proto, idleMemConns)
				after := settled()
				release()
				heap += float64(after.HeapAlloc) - float64(before.HeapAlloc)
				inuse += float64(after.HeapInuse) - float64(before.HeapInuse)
			}
			b.ReportMetric(heap/float64(b.N*idleMemConns), "heap-B/conn")
			b.ReportMetric(inuse/float64(b.N*idleMemConns), "inuse-B/conn")
		})
	}
}
