// The admin listener seen from outside: /metrics and /status scraped from
// the real master while it reloads and upgrades, checked against the
// requests the test itself sent.

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// withAdmin adds an admin block on a free loopback port to the instance's
// config and returns its address.
func withAdmin(in *instance) string {
	in.tb.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(in.tb)))
	p := in.Params
	p.Extra = fmt.Sprintf("admin {\n  address = %q\n}\n", addr)
	in.WriteConfig(p)
	return addr
}

// sendApp sends n requests to the "app" route, each on a connection of its
// own, and checks every answer: 200 from the backend, with the config
// generation gen visible in X-Config-Gen.
func sendApp(t *testing.T, in *instance, n, gen int, tag string) {
	t.Helper()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s-%d", tag, i)
		r, err := fetch(in.Addr, http.MethodGet, "/app/get?id="+id, nil)
		if err != nil {
			t.Fatalf("request %s: %v", id, err)
		}
		if r.Status != 200 || string(r.Body) != in.Backend.getBody(id) || r.Header.Get("X-Config-Gen") != strconv.Itoa(gen) {
			t.Fatalf("request %s: %s, X-Config-Gen %q; want 200 from the backend with X-Config-Gen %d",
				id, r.describe(), r.Header.Get("X-Config-Gen"), gen)
		}
	}
}

// adminGet fetches path from the admin listener on a connection of its own.
func adminGet(addr, path string) ([]byte, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s\n%s", path, resp.Status, body)
	}
	return body, nil
}

// metrics is one scrape: series as printed (`name{label="v",...}`) to value.
type metrics map[string]float64

func scrape(t *testing.T, addr string) metrics {
	t.Helper()
	body, err := adminGet(addr, "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	m := metrics{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("bad /metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad /metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// sum adds the series of metric name whose labels include every one of
// labels (`route="app"`), and says which series it added.
func (m metrics) sum(name string, labels ...string) (float64, string) {
	var total float64
	var seen []string
	for series, v := range m {
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(series, l)
		}
		if ok {
			total += v
			seen = append(seen, fmt.Sprintf("%s %g", series, v))
		}
	}
	sort.Strings(seen)
	return total, strings.Join(seen, "; ")
}

// value is one series' value, failing the test when it is absent.
func (m metrics) value(t *testing.T, series string) float64 {
	t.Helper()
	v, ok := m[series]
	if !ok {
		t.Fatalf("/metrics has no %s", series)
	}
	return v
}

// waitAppRequests scrapes until pingora_requests_total summed over route
// "app" reaches want, failing at once if it ever goes past it (a request
// counted twice) and after a deadline if it never gets there (one lost).
func waitAppRequests(t *testing.T, addr string, want int) metrics {
	t.Helper()
	var m metrics
	waitFor(t, 5*time.Second, fmt.Sprintf("pingora_requests_total{route=\"app\"} to sum to %d", want), func() (bool, string) {
		m = scrape(t, addr)
		got, series := m.sum("pingora_requests_total", `route="app"`)
		if got > float64(want) {
			t.Fatalf("pingora_requests_total{route=\"app\"} sums to %g, more than the %d requests sent: %s", got, want, series)
		}
		return got == float64(want), fmt.Sprintf("sums to %g: %s", got, series)
	})
	return m
}

// adminStatus is the part of /status these tests check.
type adminStatus struct {
	PID        int `json:"pid"`
	Generation int `json:"generation"`
	Workers    []struct {
		PID        int    `json:"pid"`
		Generation int    `json:"generation"`
		State      string `json:"state"`
		Restarts   int    `json:"restarts"`
		Sampled    bool   `json:"sampled"`
	} `json:"workers"`
	Routes []struct {
		Name     string `json:"name"`
		Requests uint64 `json:"requests"`
	} `json:"routes"`
	Reloads struct {
		OK     uint64 `json:"ok"`
		Failed uint64 `json:"failed"`
	} `json:"reloads"`
	Upgrades struct {
		OK     uint64 `json:"ok"`
		Failed uint64 `json:"failed"`
	} `json:"upgrades"`
}

func getStatus(t *testing.T, addr string) (*adminStatus, string) {
	t.Helper()
	body, err := adminGet(addr, "/status")
	if err != nil {
		t.Fatalf("status %s: %v", addr, err)
	}
	var st adminStatus
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("/status is not the JSON document: %v\n%s", err, body)
	}
	return &st, string(body)
}

func (st *adminStatus) routeRequests(name string) uint64 {
	for _, r := range st.Routes {
		if r.Name == name {
			return r.Requests
		}
	}
	return 0
}

// checkWorkers checks that /status lists exactly workers, all of
// generation gen, ready and sampled.
func (st *adminStatus) checkWorkers(t *testing.T, workers []int, gen int, body string) {
	t.Helper()
	var pids []int
	for _, w := range st.Workers {
		pids = append(pids, w.PID)
		if w.Generation != gen || w.State != "ready" || !w.Sampled {
			t.Errorf("/status worker %d: generation %d state %q sampled %v; want generation %d, ready, sampled",
				w.PID, w.Generation, w.State, w.Sampled, gen)
		}
	}
	slices.Sort(pids)
	want := slices.Clone(workers)
	slices.Sort(want)
	if !slices.Equal(pids, want) {
		t.Errorf("/status lists workers %v; the master's workers are %v\n%s", pids, want, body)
	}
}

// TestMetricsSpanReload: requests counted through /metrics match the
// requests sent, exactly, across a reload: what the first generation
// counted is still there once its workers have exited (including what they
// served after the last scrape and while draining, which only their final
// report carries), and the second generation's requests add to it. The
// reload is counted, the generation shown, and /status lists the draining
// workers during the drain and the new workers after it.
func TestMetricsSpanReload(t *testing.T) {
	in := newInstance(t, 2)
	admin := withAdmin(in)
	in.Start()
	master := in.MustMasterPID()
	oldWorkers := in.WaitWorkers(master, 2, nil, 5*time.Second)

	const n1, n2, m = 40, 10, 30
	sendApp(t, in, n1, 0, "before")
	before := waitAppRequests(t, admin, n1)
	if g := before.value(t, "pingora_generation"); g != 1 {
		t.Errorf("pingora_generation %g before the reload, want 1", g)
	}
	if v := before.value(t, "pingora_workers_reporting"); v != 2 {
		t.Errorf("pingora_workers_reporting %g, want 2", v)
	}

	// A request the first generation is still serving when the reload
	// drains it, and more requests no scrape has seen: only the retiring
	// workers' final reports can carry them.
	slow := make(chan error, 1)
	go func() {
		r, err := fetch(in.Addr, http.MethodGet, "/app/slow", nil)
		if err == nil && (r.Status != 200 || string(r.Body) != "slow done" || r.Header.Get("X-Config-Gen") != "0") {
			err = fmt.Errorf("%s, X-Config-Gen %q; want 200 \"slow done\" from generation 0", r.describe(), r.Header.Get("X-Config-Gen"))
		}
		slow <- err
	}()
	select {
	case <-in.Backend.SlowArrived:
	case err := <-slow:
		t.Fatalf("slow request: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not reach the backend within 10s")
	}
	sendApp(t, in, n2, 0, "unscraped")

	in.SetGen(1)
	if r := in.Ctl("reload"); r.Code != 0 {
		t.Fatalf("-s reload: %s", r)
	}
	in.assertServesNow("right after -s reload returned 0", 1)
	during, body := getStatus(t, admin)
	draining := 0
	for _, w := range during.Workers {
		if w.Generation == 1 {
			if w.State != "draining" {
				t.Errorf("/status during the drain: worker %d of generation 1 is %q, want draining", w.PID, w.State)
			}
			draining++
		}
	}
	if during.Generation != 2 || draining == 0 {
		t.Errorf("/status during the drain: generation %d, %d draining workers; want generation 2 and the worker serving the slow request draining\n%s",
			during.Generation, draining, body)
	}
	select {
	case err := <-slow:
		if err != nil {
			t.Fatalf("slow request across the reload: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not finish within 10s")
	}
	in.WaitVanished("the first generation's workers", oldWorkers, drainTimeout)
	newWorkers := in.WaitWorkers(master, 2, oldWorkers, 5*time.Second)

	// Only retired workers counted route "app" so far.
	const first = n1 + n2 + 1
	waitAppRequests(t, admin, first)
	sendApp(t, in, m, 1, "after")
	after := waitAppRequests(t, admin, first+m)

	for series, want := range map[string]float64{
		`pingora_reloads_total{outcome="ok"}`:     1,
		`pingora_reloads_total{outcome="failed"}`: 0,
		`pingora_generation`:                      2,
		`pingora_workers{state="ready"}`:          2,
		`pingora_workers_reporting`:               2,
		`pingora_worker_restarts_total`:           0,
	} {
		if got := after.value(t, series); got != want {
			t.Errorf("%s = %g, want %g", series, got, want)
		}
	}
	if got, series := after.sum("pingora_requests_total", `route="app"`, `class="2xx"`); got != first+m {
		t.Errorf("route app 2xx = %g, want %d (every answer was a 200): %s", got, first+m, series)
	}

	// Latency is counted once per answered request, across generations too.
	all, _ := after.sum("pingora_requests_total")
	if got := after.value(t, "pingora_request_duration_seconds_count"); got != all {
		t.Errorf("pingora_request_duration_seconds_count = %g, want one per answered request (%g)", got, all)
	}

	st, body := getStatus(t, admin)
	if st.PID != master || st.Generation != 2 {
		t.Errorf("/status: pid %d generation %d; want master %d, generation 2", st.PID, st.Generation, master)
	}
	st.checkWorkers(t, newWorkers, 2, body)
	if got := st.routeRequests("app"); got != first+m {
		t.Errorf("/status route app: %d requests, want %d", got, first+m)
	}
	if st.Reloads.OK != 1 || st.Reloads.Failed != 0 {
		t.Errorf("/status reloads %+v, want 1 ok", st.Reloads)
	}
}

// TestAdminListenerSurvivesUpgrade: the admin address is handed over to the
// new master of a binary upgrade like the proxy's listeners: it keeps
// answering throughout (never a refused connection), and afterwards it is
// the new master that answers, with the upgrade counted and the generation
// numbering carried on.
func TestAdminListenerSurvivesUpgrade(t *testing.T) {
	in := newInstance(t, 2)
	admin := withAdmin(in)
	in.Start()
	master := in.MustMasterPID()
	oldWorkers := in.WaitWorkers(master, 2, nil, 5*time.Second)
	sendApp(t, in, 5, 0, "old")
	waitAppRequests(t, admin, 5)

	// Scrape without pause while the upgrade runs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var refused []string
	scrapes := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			default:
			}
			_, err := adminGet(admin, "/metrics")
			mu.Lock()
			scrapes++
			if errors.Is(err, syscall.ECONNREFUSED) {
				refused = append(refused, err.Error())
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()

	in.SetGen(1)
	r := in.Ctl("upgrade")
	if r.Code != 0 {
		close(stop)
		wg.Wait()
		t.Fatalf("-s upgrade: %s", r)
	}
	newMaster := in.WaitServing(nil, 1)
	in.WaitDead("the old master", []int{master}, drainTimeout)
	in.WaitVanished("the old workers", oldWorkers, 5*time.Second)
	newWorkers := in.WaitWorkers(newMaster, 2, oldWorkers, 5*time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d scrapes during the upgrade", scrapes)
	if len(refused) > 0 {
		t.Errorf("%d of %d scrapes during the upgrade were refused: %v", len(refused), scrapes, refused[0])
	}

	// A new master starts counting afresh (a counter reset to Prometheus).
	sendApp(t, in, 7, 1, "new")
	after := waitAppRequests(t, admin, 7)
	for series, want := range map[string]float64{
		`pingora_upgrades_total{outcome="ok"}`: 1,
		`pingora_reloads_total{outcome="ok"}`:  0,
		`pingora_generation`:                   2,
	} {
		if got := after.value(t, series); got != want {
			t.Errorf("%s = %g, want %g", series, got, want)
		}
	}
	st, body := getStatus(t, admin)
	if st.PID != newMaster || st.Generation != 2 {
		t.Errorf("/status after the upgrade: pid %d generation %d; want the new master %d, generation 2", st.PID, st.Generation, newMaster)
	}
	st.checkWorkers(t, newWorkers, 2, body)
}

// TestMetricsSurviveWorkerCrash: a worker killed outright cannot send a
// final report, but what it had reported stays counted once it is gone,
// its replacement is counted as a restart, and /status lists the
// replacement in its slot.
func TestMetricsSurviveWorkerCrash(t *testing.T) {
	in := newInstance(t, 2)
	admin := withAdmin(in)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)

	const n = 20
	sendApp(t, in, n, 0, "before")
	waitAppRequests(t, admin, n) // every worker has reported all of them

	victim := workers[0]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	in.WaitVanished("the killed worker", []int{victim}, 5*time.Second)
	now := in.WaitWorkers(master, 2, []int{victim}, 10*time.Second)
	// The replacement is up once the master shows it ready and reporting.
	waitFor(t, 10*time.Second, "the replacement worker ready in /status", func() (bool, string) {
		st, body := getStatus(t, admin)
		for _, w := range st.Workers {
			if w.State != "ready" || !w.Sampled {
				return false, body
			}
		}
		return len(st.Workers) == 2, body
	})

	m := waitAppRequests(t, admin, n)
	if got := m.value(t, "pingora_worker_restarts_total"); got != 1 {
		t.Errorf("pingora_worker_restarts_total = %g, want 1", got)
	}
	sendApp(t, in, 5, 0, "after")
	waitAppRequests(t, admin, n+5)

	// The surviving worker keeps its pid; the replacement is new.
	st, body := getStatus(t, admin)
	st.checkWorkers(t, now, 1, body)
	for _, w := range st.Workers {
		want := 0
		if !slices.Contains(workers, w.PID) {
			want = 1 // the replacement
		}
		if w.Restarts != want {
			t.Errorf("/status worker %d: restarts %d, want %d\n%s", w.PID, w.Restarts, want, body)
		}
	}
}
