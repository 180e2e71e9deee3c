package admin

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// chromium finds a headless-capable Chromium. Absent, the test skips with
// the reason, except in CI (CI set), where the browser test must run.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatal("chromium not found and CI is set: the status page browser test must run in CI (apt-get install chromium)")
	}
	t.Skip("chromium not found: skipping the status page browser test (apt-get install chromium; with CI=true this is a failure)")
	return ""
}

// TestStatusPageInBrowser loads / in headless Chromium and checks the
// rendered DOM shows the live figures. Between the page load and its first
// refresh the test changes a worker's request count: the dumped DOM must
// show the new count, which only the page's own refresh can have fetched.
func TestStatusPageInBrowser(t *testing.T) {
	browser := chromium(t)
	var a Aggregator
	g2 := t0.Add(time.Hour)
	w3101 := traffic(3101, 2, g2, 4242)
	w3101.ActiveConns = 17
	w3102 := traffic(3102, 2, g2, 2)
	w3102.Routes = nil
	w3102.Unrouted = [5]uint64{}
	w3102.Requests = 0
	w3102.Upstreams[0].Servers[1].Healthy = false
	mustObserve(t, &a, w3101, w3102)
	a.SetMaster(fixtureMaster(2,
		Worker{PID: 3101, Generation: 2, State: "ready", Started: g2},
		Worker{PID: 3102, Generation: 2, State: "ready", Started: g2, Restarts: 1},
		Worker{PID: 2101, Generation: 1, State: "draining", Started: t0},
	))
	a.CountReload(true)

	var pageLoads, refreshes atomic.Int32
	h := New(nil, &a).Handler()
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			if r.URL.Path != "/" {
				return
			}
			if r.URL.Query().Get("fragment") != "" {
				refreshes.Add(1)
				return
			}
			if pageLoads.Add(1) == 1 {
				// Served the first paint: now the figures move on.
				w := traffic(3101, 2, g2, 9191)
				w.ActiveConns = 23
				if err := a.Observe(w, fixtureNames); err != nil {
					t.Error(err)
				}
			}
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000",
		"--dump-dom", "http://"+ln.Addr().String()+"/")
	cmd.WaitDelay = 5 * time.Second // helpers that keep stdout open must not hang the test
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	dom := string(out)
	if pageLoads.Load() != 1 || refreshes.Load() < 1 {
		t.Fatalf("page loads %d, refreshes %d: the page did not refresh by itself\n%s", pageLoads.Load(), refreshes.Load(), dom)
	}

	cell := func(re string) {
		t.Helper()
		if !regexp.MustCompile(re).MatchString(dom) {
			t.Errorf("rendered page lacks %s", re)
		}
	}
	// The refreshed figure, not the first paint's.
	cell(`id="total-requests">9191<`)
	if strings.Contains(dom, "4242") {
		t.Error("the page still shows the first paint's count 4242")
	}
	// Workers by generation, with their pids and live figures.
	cell(`generation 2 \(serving\): 3 workers|generation 2 \(serving\): 2 workers`)
	cell(`<tr class="ready"><td class="n">3101</td><td>ready</td>.*<td class="n">9191</td><td class="n">[0-9.]+</td><td class="n">23</td>`)
	cell(`<td class="n">3102</td><td>ready</td>`)
	cell(`generation 1: 1 worker, 1 draining`)
	cell(`<tr class="draining"><td class="n">2101</td>`)
	// Master, listeners, routes, upstream servers with health and traffic.
	cell(`<td>pid</td><td class="n">4000</td>`)
	cell(`<td>reloads ok / failed</td><td class="n">1 / 0</td>`)
	cell(`<td>public</td><td>127.0.0.1:8080</td>`)
	cell(`<td>api</td><td>public</td><td>\*</td><td>/api/</td>\s*<td>upstream backend</td><td class="n">0</td><td class="n">9189</td>`)
	cell(`<td>static</td><td>public, internal</td><td>\*\.example\.com</td>`)
	cell(`upstream backend \(round_robin\)`)
	cell(`<tr class="up"><td>127.0.0.1:9001</td><td class="n">3</td><td></td><td>UP</td><td class="n">2/2</td><td class="n"></td><td class="n">0</td><td class="n">9191</td>`)
	cell(`<tr class="partial"><td>127.0.0.1:9002</td><td class="n">1</td><td>backup</td><td>PARTIAL</td><td class="n">1/2</td>`)
	cell(`<span id="conn" class="">live</span>`)
}
