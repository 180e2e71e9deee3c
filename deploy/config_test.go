package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pingora-go/pingora/config"
)

// The production example must load as shipped (with a certificate where
// certbot puts it), and its env() default must be what the comment says:
// workers from PINGORA_WORKERS, else 4.
func TestProductionExampleLoads(t *testing.T) {
	conf := example(t)
	checkConfig(t, conf)
	checkConfig(t, conf, "PINGORA_WORKERS=8")

	cfg := loadConfig(t, conf)
	if cfg.Workers != 4 {
		t.Errorf("workers without PINGORA_WORKERS = %d, want 4", cfg.Workers)
	}
	if cfg.User != "pingora" || cfg.Group != "pingora" {
		t.Errorf("user/group = %q/%q, want pingora/pingora (the sysusers.d user)", cfg.User, cfg.Group)
	}
	if cfg.Daemon {
		t.Error("daemon = true: the systemd unit (Type=notify) needs the master in the foreground")
	}
	if !hasRespondRoute(cfg.Routes, "/healthz") {
		t.Error("no respond route for /healthz: the health endpoint the docs point load balancers at")
	}
	var limited bool
	for _, r := range cfg.Routes {
		limited = limited || r.RateLimit != nil
	}
	if !limited {
		t.Error("no rate-limited route in the production example")
	}
	checkExampleTLS(t, cfg)
	if len(cfg.Upstreams) < 2 {
		t.Errorf("%d upstreams, want at least 2", len(cfg.Upstreams))
	}
	for _, u := range cfg.Upstreams {
		// certbot's server listens only while it renews: a check would
		// keep it marked down.
		if u.HealthCheck == nil && u.Name != "acme" {
			t.Errorf("upstream %q has no health_check", u.Name)
		}
	}
}

// checkExampleTLS: the example has an HTTPS listener on certbot's files,
// offering h2, and every route to an application on the plain listener is
// served on it too (but the ACME challenges, which come over plain HTTP).
func checkExampleTLS(t *testing.T, cfg *config.Config) {
	t.Helper()
	var https *config.Listener
	for i, l := range cfg.Listeners {
		if l.TLS != nil {
			https = &cfg.Listeners[i]
		}
	}
	if https == nil {
		t.Fatal("no TLS listener in the production example")
	}
	if !https.HTTP2 || !slices.Contains(https.TLS.ALPN, config.ALPNHTTP2) {
		t.Errorf("listener %q: http2 %v, ALPN %q; want h2 offered", https.Name, https.HTTP2, https.TLS.ALPN)
	}
	if https.TLS.MinVersion != "1.2" || !https.TLS.SessionTickets {
		t.Errorf("listener %q: min_version %q, session tickets %v; the comments say 1.2 and on", https.Name, https.TLS.MinVersion, https.TLS.SessionTickets)
	}
	for _, r := range cfg.Routes {
		if slices.Contains(r.Listeners, "public") && r.Upstream != "" && r.Upstream != "acme" && !slices.Contains(r.Listeners, https.Name) {
			t.Errorf("route %q serves the plain listener but not %q", r.Name, https.Name)
		}
	}
}

// placeholder matches what peers.sh and bench.sh fill in.
var placeholder = regexp.MustCompile(`\{[a-z_]+\}`)

// renderBench fills in the bench template as bench.sh and peers.sh do.
func renderBench(t *testing.T, listen, backendHost, backendPort string) string {
	t.Helper()
	src := readFile(t, "bench/bench.hcl.tmpl")
	for _, want := range []string{"{listen}", "{backend}", "{backend_port}"} {
		if !strings.Contains(src, want) {
			t.Fatalf("bench template has no %s", want)
		}
	}
	src = strings.NewReplacer(
		"{backend_port}", backendPort,
		"{listen}", listen,
		"{backend}", backendHost+":"+backendPort,
	).Replace(src)
	if left := placeholder.FindAllString(src, -1); left != nil {
		t.Fatalf("bench template: placeholders nobody fills in: %v", left)
	}
	path := filepath.Join(t.TempDir(), "bench.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The benchmark config, rendered with peers.sh's addresses, loads and is the
// setup the speed goal names: one worker, two upstream servers, one route,
// a response header, no access log, nothing written outside /tmp.
func TestBenchTemplateLoads(t *testing.T) {
	path := renderBench(t, "127.0.0.1:19004", "127.0.0.1", "19000")
	checkConfig(t, path)

	cfg := loadConfig(t, path)
	if cfg.Workers != 1 {
		t.Errorf("workers = %d, want 1 (peers.sh gives every proxy one worker)", cfg.Workers)
	}
	if cfg.AccessLog != nil {
		t.Error("access log on: the benchmark setup has it off")
	}
	if len(cfg.Routes) != 1 || len(cfg.Upstreams) != 1 || len(cfg.Upstreams[0].Servers) != 2 {
		t.Errorf("want one route to one upstream of two servers; got %d routes, %d upstreams", len(cfg.Routes), len(cfg.Upstreams))
	}
	if len(cfg.Routes) == 1 && len(cfg.Routes[0].ResponseHeaders) == 0 {
		t.Error("the bench route sets no response header")
	}
	for _, p := range []string{cfg.PIDFile, cfg.LockFile, cfg.ControlSocket} {
		if !strings.HasPrefix(p, "/tmp/") {
			t.Errorf("%s is outside /tmp: the benchmark must run without /run/pingora", p)
		}
	}
}

// bench.sh is what `make bench` runs: it must be executable, valid bash, and
// able to read the backend port from peers.sh the way it does.
func TestBenchScript(t *testing.T) {
	st, err := os.Stat("bench/bench.sh")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&0o111 == 0 {
		t.Error("bench/bench.sh is not executable")
	}
	bash := lookTool(t, "bash", "bash")
	if out, err := exec.Command(bash, "-n", "bench/bench.sh").CombinedOutput(); err != nil {
		t.Fatalf("bash -n bench/bench.sh: %v\n%s", err, out)
	}

	peers := filepath.Join("..", "..", "shared", "bench", "peers.sh")
	src, err := os.ReadFile(peers)
	if err != nil {
		t.Skipf("peers.sh not beside the repository (%v): bench.sh takes PEERS= then", err)
	}
	back := regexp.MustCompile(`(?m)^BACK=(\S+?):(\d+)\s*$`).FindSubmatch(src)
	if back == nil {
		t.Fatalf("%s has no BACK=host:port line; bench.sh reads the backend port from it", peers)
	}
	for _, want := range []string{"{listen}", "{backend}", "PROJECT_CONF", "PROJECT_CMD", "{conf}"} {
		if !strings.Contains(string(src), want) {
			t.Errorf("peers.sh no longer mentions %s, which bench.sh relies on", want)
		}
	}
	checkConfig(t, renderBench(t, "127.0.0.1:19004", string(back[1]), string(back[2])))
}
