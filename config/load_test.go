package config_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
)

// load loads a file of testdata and fails the test on any error.
func load(t *testing.T, name string) *config.Config {
	t.Helper()
	cfg, err := config.Load(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("Load(%s): %v", name, err)
	}
	return cfg
}

func TestIssueExampleLoadsWithDefaults(t *testing.T) {
	cfg := load(t, "issue-example.hcl")
	abs, _ := filepath.Abs("testdata/issue-example.hcl")

	want := &config.Config{
		File:                   abs,
		PIDFile:                "/run/pingora/pingora.pid",
		LockFile:               "/run/pingora/pingora.pid.lock",
		ControlSocket:          "/run/pingora/pingora.sock",
		User:                   "pingora",
		Group:                  "pingora",
		Workers:                4,
		WorkerThreads:          max(1, runtime.NumCPU()/4),
		ShutdownTimeout:        30 * time.Second,
		ReloadTimeout:          30 * time.Second,
		UpgradeTimeout:         60 * time.Second,
		MaxDrainingGenerations: 4,
		Env:                    []string{"TZ"},
		WorkerHeartbeatTimeout: 10 * time.Second,
		RateLimitZoneSize:      10 << 20,
		Log:                    config.Log{File: "/var/log/pingora/error.log", Level: "info", Format: "text"},
		AccessLog:              &config.AccessLog{File: "/var/log/pingora/access.log", BufferSize: 64 << 10, FlushInterval: time.Second},
		Limits:                 config.Limits{NoFile: 65535, Core: 0},
		Listeners: []config.Listener{{
			Name:                 "public",
			Address:              "0.0.0.0:80",
			HTTP2:                true,
			MaxConcurrentStreams: 128,
			ClientHeaderTimeout:  60 * time.Second,
			ClientBodyTimeout:    60 * time.Second,
			SendTimeout:          60 * time.Second,
			KeepaliveTimeout:     75 * time.Second,
			KeepaliveRequests:    10000,
			MaxHeaderSize:        16 << 10,
			MaxBodySize:          1 << 20,
			RequestBuffering:     true,
			ClientBodyBufferSize: 64 << 10,
			RequestTimeout:       60 * time.Second,
		}},
		Upstreams: []config.Upstream{{
			Name: "app",
			Servers: []config.Server{
				{Address: "10.0.0.1:8080", Weight: 1, MaxFails: 1, FailTimeout: 10 * time.Second},
				{Address: "10.0.0.2:8080", Weight: 2, MaxFails: 1, FailTimeout: 10 * time.Second},
			},
			Balance:               "round_robin",
			HashKey:               "client_ip",
			ConnectTimeout:        5 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			ReadTimeout:           60 * time.Second,
			IdleTimeout:           60 * time.Second,
			TunnelTimeout:         time.Hour,
			KeepaliveConns:        64,
			Retries:               2,
			HealthCheck: &config.HealthCheck{
				Path: "/health", Interval: 2 * time.Second, Timeout: 2 * time.Second,
				Healthy: 2, Unhealthy: 3, ExpectStatus: statusRange(200, 399),
			},
		}},
		Routes: []config.Route{{
			Name:            "api",
			Listeners:       []string{"public"},
			Host:            "api.example.com",
			PathPrefix:      "/api/",
			Upstream:        "app",
			ResponseHeaders: map[string]string{"X-Served-By": "pingora"},
			MaxBodySize:     -1,
			RateLimit:       &config.RateLimit{Requests: 100, Per: time.Second, Burst: 20, Key: "client_ip", Scope: config.ScopeMachine},
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		got, _ := json.MarshalIndent(cfg, "", "  ")
		exp, _ := json.MarshalIndent(want, "", "  ")
		t.Fatalf("config differs\n got: %s\nwant: %s", got, exp)
	}
}

func statusRange(lo, hi int) []int {
	var s []int
	for c := lo; c <= hi; c++ {
		s = append(s, c)
	}
	return s
}

// TestEverySettingIsRead writes every attribute with a non-default value,
// so a setting that is parsed but dropped on the way to Config shows up.
func TestEverySettingIsRead(t *testing.T) {
	t.Setenv("PINGORA_TEST_ENV", "staging")
	cfg := load(t, "full.hcl")
	dir, _ := filepath.Abs("testdata")

	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	check("pid_file", cfg.PIDFile, filepath.Join(dir, "run/pingora.pid"))
	check("lock_file", cfg.LockFile, filepath.Join(dir, "run/pingora.lock"))
	check("control_socket", cfg.ControlSocket, filepath.Join(dir, "run/ctl.sock"))
	check("user", cfg.User, "www-data")
	check("group", cfg.Group, "www-data")
	check("workers", cfg.Workers, 3)
	check("worker_threads", cfg.WorkerThreads, 2)
	check("shutdown_timeout", cfg.ShutdownTimeout, 45*time.Second)
	check("reload_timeout", cfg.ReloadTimeout, 20*time.Second)
	check("upgrade_timeout", cfg.UpgradeTimeout, 2*time.Minute)
	check("max_draining_generations", cfg.MaxDrainingGenerations, 2)
	check("worker_heartbeat_timeout", cfg.WorkerHeartbeatTimeout, 5*time.Second)
	check("rate_limit_zone_size", cfg.RateLimitZoneSize, int64(2<<20))
	check("daemon", cfg.Daemon, true)
	check("env", cfg.Env, []string{"TZ", "LANG", "GODEBUG=madvdontneed=1"})
	check("log", cfg.Log, config.Log{File: filepath.Join(dir, "log/error.log"), Level: "debug", Format: "json"})
	check("access_log", *cfg.AccessLog, config.AccessLog{File: filepath.Join(dir, "log/access.log"), BufferSize: 128 << 10, FlushInterval: 500 * time.Millisecond})
	check("limits", cfg.Limits, config.Limits{NoFile: 1048576, Core: 1 << 30})
	check("admin", *cfg.Admin, config.Admin{Address: "127.0.0.1:9000"})
	check("listener public", cfg.Listeners[0], config.Listener{
		Name: "public", Address: "[::]:8443",
		ClientHeaderTimeout: 10 * time.Second, ClientBodyTimeout: 20 * time.Second,
		SendTimeout: 40 * time.Second, KeepaliveTimeout: 30 * time.Second, KeepaliveRequests: 500,
		MaxHeaderSize: 32 << 10, MaxBodySize: 10 << 20, DeferAccept: true, Backlog: 511, ReusePort: true,
		MaxConnections: 4096, RequestBuffering: false, ClientBodyBufferSize: 128 << 10, RequestTimeout: 15 * time.Second,
		HTTP2: true, H2C: true, MaxConcurrentStreams: 64,
	})
	u := cfg.Upstreams[0]
	check("balance", u.Balance, "hash")
	check("hash_key", u.HashKey, "header:X-User")
	check("upstream timeouts", []time.Duration{u.ConnectTimeout, u.ResponseHeaderTimeout, u.ReadTimeout, u.IdleTimeout, u.TunnelTimeout},
		[]time.Duration{time.Second, 15 * time.Second, 25 * time.Second, 90 * time.Second, 10 * time.Minute})
	check("keepalive_conns", u.KeepaliveConns, 16)
	check("retries", u.Retries, 1)
	check("servers", u.Servers, []config.Server{
		{Address: "10.0.0.1:8080", Weight: 3, MaxFails: 5, FailTimeout: 30 * time.Second},
		{Address: "app-backup.internal:8080", Weight: 1, MaxFails: 1, FailTimeout: 10 * time.Second, Backup: true},
	})
	check("health_check", *u.HealthCheck, config.HealthCheck{
		Path: "/healthz", Host: "app.internal", Interval: 3 * time.Second, Timeout: time.Second,
		Healthy: 1, Unhealthy: 2, ExpectStatus: []int{200, 204},
	})
	r := cfg.Routes[0]
	check("route host (lower-cased)", r.Host, "*.example.com")
	check("path_prefix", r.PathPrefix, "/api/")
	check("request_headers (env)", r.RequestHeaders, map[string]string{"X-Env": "staging"})
	check("remove_request_headers", r.RemoveRequestHeaders, []string{"Cookie"})
	check("response_headers", r.ResponseHeaders, map[string]string{"X-Served-By": "pingora"})
	check("remove_response_headers", r.RemoveResponseHeaders, []string{"Server", "X-Powered-By"})
	check("route max_body_size", r.MaxBodySize, int64(0))
	check("route request_buffering", r.RequestBuffering != nil && *r.RequestBuffering, true)
	check("route request_buffering inherited", cfg.Routes[1].RequestBuffering, (*bool)(nil))
	check("rate_limit", *r.RateLimit, config.RateLimit{Requests: 10, Per: time.Minute, Burst: 5, Key: "header:X-Api-Key", Scope: config.ScopeCluster,
		Store: &config.RateLimitStore{URL: "redis://cache.internal:6380/2", Addr: "cache.internal:6380", DB: 2, Username: "pingora", Password: "s3cret"}})
	check("respond", *cfg.Routes[1].Respond, config.Respond{Status: 204})
	check("warnings", cfg.Warnings, []string(nil))
}

func TestEmbeddedDefaultLoads(t *testing.T) {
	cfg, err := config.Default(false)
	if err != nil {
		t.Fatalf("embedded default: %v", err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("embedded default has warnings: %q", cfg.Warnings)
	}
	if cfg.File != "" || cfg.PIDFile != "/tmp/pingora-master.pid" || cfg.Workers != 2 {
		t.Errorf("file %q, pid_file %q, workers %d", cfg.File, cfg.PIDFile, cfg.Workers)
	}
	if cfg.LockFile != "/tmp/pingora-master.pid.lock" || cfg.ControlSocket != "/tmp/pingora.sock" {
		t.Errorf("unprivileged: lock_file %q, control_socket %q; want them beside the PID file in /tmp", cfg.LockFile, cfg.ControlSocket)
	}
	// As root, never /tmp: another user could plant a symlink there.
	root, err := config.Default(true)
	if err != nil {
		t.Fatalf("embedded default, privileged: %v", err)
	}
	for what, p := range map[string]string{"pid_file": root.PIDFile, "lock_file": root.LockFile, "control_socket": root.ControlSocket} {
		if !strings.HasPrefix(p, "/run/pingora/") {
			t.Errorf("privileged: %s %q, want it under /run/pingora", what, p)
		}
	}
	if len(cfg.Listeners) != 2 || cfg.Listeners[0].Address != "127.0.0.1:8080" || cfg.Listeners[1].Address != "127.0.0.1:8081" {
		t.Errorf("listeners: %+v", cfg.Listeners)
	}
	hello := cfg.Routes[1]
	if hello.Respond == nil || hello.Respond.Status != 200 || !strings.HasPrefix(hello.Respond.Body, "Hello from pingora-master") {
		t.Errorf("route hello: %+v", hello)
	}
	if cfg.Routes[0].Upstream != "self" || cfg.Upstreams[0].Servers[0].Address != cfg.Listeners[1].Address {
		t.Errorf("route proxied does not go through the backend listener: %+v", cfg.Routes[0])
	}
	// DefaultSource hands out a copy: scribbling on it changes nothing.
	src := config.DefaultSource()
	clear(src)
	if _, err := config.Parse(config.DefaultSource(), config.DefaultFilename); err != nil {
		t.Fatalf("default after scribbling on a copy: %v", err)
	}
}

func TestRouteListenersDefaultToEveryListener(t *testing.T) {
	cfg, err := config.Parse([]byte(`
listener "a" { address = "127.0.0.1:1001" }
listener "b" { address = "127.0.0.1:1002" }
route "all" {
  respond {}
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Routes[0].Listeners; !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("listeners = %q, want every listener", got)
	}
	if r := cfg.Routes[0].Respond; r == nil || r.Status != 200 || r.Body != "" {
		t.Errorf("respond {} = %+v, want status 200 and no body", r)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	t.Setenv("PINGORA_TEST_ENV", "x")
	for _, name := range []string{"issue-example.hcl", "full.hcl"} {
		cfg := load(t, name)
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var back config.Config
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cfg, &back) {
			t.Errorf("%s: JSON round trip changed the config:\nbefore %+v\nafter  %+v", name, cfg, &back)
		}
	}
}

func TestRelativePathsResolveAgainstConfigDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pingora.hcl")
	writeFile(t, path, `
pid_file = "run/pingora.pid"
log { file = "logs/error.log" }
access_log { file = "../access.log" }
listener "l" { address = "127.0.0.1:1000" }
route "r" {
  respond {}
}
`)
	// Load from another working directory, by a relative path: the result
	// must not depend on where the master was started.
	wd := t.TempDir()
	t.Chdir(wd)
	rel, err := filepath.Rel(wd, path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(rel)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"file":           path,
		"pid_file":       filepath.Join(dir, "run/pingora.pid"),
		"lock_file":      filepath.Join(dir, "run/pingora.pid.lock"),
		"control_socket": filepath.Join(dir, "run/pingora.sock"),
		"log.file":       filepath.Join(dir, "logs/error.log"),
		"access_log":     filepath.Join(filepath.Dir(dir), "access.log"),
	}
	got := map[string]string{
		"file":           cfg.File,
		"pid_file":       cfg.PIDFile,
		"lock_file":      cfg.LockFile,
		"control_socket": cfg.ControlSocket,
		"log.file":       cfg.Log.File,
		"access_log":     cfg.AccessLog.File,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("paths:\n got %v\nwant %v", got, want)
	}
}

func TestParseWithBareNameResolvesAgainstWorkingDir(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	cfg, err := config.Parse([]byte(`
pid_file = "p.pid"
listener "l" { address = "127.0.0.1:1000" }
route "r" {
  respond {}
}
`), "inline.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PIDFile != filepath.Join(wd, "p.pid") || cfg.File != "" {
		t.Errorf("pid_file %q (want under %s), file %q (want empty)", cfg.PIDFile, wd, cfg.File)
	}
}

// TestReloadSeesNewText guards against hclparse's cache by file name: two
// loads of the same path must each read what is there now.
func TestReloadSeesNewText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.hcl")
	for _, workers := range []string{"3", "5"} {
		writeFile(t, path, "workers = "+workers+"\nlistener \"l\" { address = \"127.0.0.1:1000\" }\nroute \"r\" {\n  respond {}\n}\n")
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Workers; got != map[string]int{"3": 3, "5": 5}[workers] {
			t.Fatalf("workers = %d after writing %s", got, workers)
		}
	}
}

func TestUnreadableFileIsPlainError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.hcl")
	_, err := config.Load(path)
	var cerr *config.Error
	if err == nil || errors.As(err, &cerr) {
		t.Fatalf("err = %v (%T), want a plain read error", err, err)
	}
	if !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %q, want it to name %s and wrap ErrNotExist", err, path)
	}
}

func TestEnvFunction(t *testing.T) {
	t.Setenv("PINGORA_TEST_ADDR", "127.0.0.1:7777")
	t.Setenv("PINGORA_TEST_EMPTY", "")
	src := `
user = env("PINGORA_TEST_EMPTY", "fallback-not-used")
listener "l" { address = env("PINGORA_TEST_ADDR") }
route "r" {
  respond { body = env("PINGORA_TEST_SURELY_UNSET", "fallback") }
}
`
	cfg, err := config.Parse([]byte(src), "env.hcl")
	if err == nil {
		t.Fatalf("user = \"\" from an empty variable was accepted: %+v", cfg)
	}
	if !strings.Contains(err.Error(), "env.hcl:2,8") || !strings.Contains(err.Error(), "user: must not be empty") {
		t.Errorf("want the empty user reported at 2,8:\n%v", err)
	}

	src = strings.Replace(src, `env("PINGORA_TEST_EMPTY", "fallback-not-used")`, `"u${env("PINGORA_TEST_EMPTY", "x")}"`, 1)
	cfg, err = config.Parse([]byte(src), "env.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "u" || cfg.Listeners[0].Address != "127.0.0.1:7777" || cfg.Routes[0].Respond.Body != "fallback" {
		t.Errorf("user %q, address %q, body %q", cfg.User, cfg.Listeners[0].Address, cfg.Routes[0].Respond.Body)
	}

	_, err = config.Parse([]byte(`listener "l" { address = env("PINGORA_TEST_SURELY_UNSET") }`+"\nroute \"r\" {\n  respond {}\n}\n"), "env.hcl")
	e := configError(t, err)
	if d := findDiag(e, 1, 31); d == nil || !strings.Contains(d.Detail, `"PINGORA_TEST_SURELY_UNSET" is not set`) {
		t.Errorf("want the unset variable named at 1,31:\n%v", err)
	}
	if n := len(e.Diags.Errs()); n != 1 {
		t.Errorf("%d errors, want only the unset variable:\n%v", n, err)
	}
	if strings.Contains(err.Error(), "Missing required argument") || strings.Contains(err.Error(), "Invalid address") {
		t.Errorf("an unset variable must not also be reported as a missing or bad address:\n%v", err)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestEnvList: workers get TZ and what env lists, as nginx's env
// directive; bad, reserved and repeated names are errors at the element.
func TestEnvList(t *testing.T) {
	const base = "listener \"l\" { address = \"127.0.0.1:1\" }\nroute \"r\" {\n  respond {}\n}\n"
	cfg, err := config.Parse([]byte(base), "env.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Env, []string{"TZ"}) {
		t.Errorf("no env: %q, want [TZ]", cfg.Env)
	}
	cfg, err = config.Parse([]byte(`env = ["LANG", "GODEBUG=madvdontneed=1", "TZ=UTC", "EMPTY="]`+"\n"+base), "env.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"TZ=UTC", "LANG", "GODEBUG=madvdontneed=1", "EMPTY="}; !reflect.DeepEqual(cfg.Env, want) {
		t.Errorf("env: %q, want %q", cfg.Env, want)
	}
	_, err = config.Parse([]byte(`env = ["LANG", "1BAD", "PINGORA_WORKER=1", "LANG=C", "A B", "NOTIFY_SOCKET", "LISTEN_FDS=3"]`+"\n"+base), "env.hcl")
	if err == nil {
		t.Fatal("bad env list accepted")
	}
	for _, want := range []string{
		`env.hcl:1,16: Error: Invalid environment variable`,
		`env.hcl:1,24: Error: Reserved environment variable`,
		`env.hcl:1,44: Error: Duplicate environment variable`,
		`env.hcl:1,54: Error: Invalid environment variable`,
		`env.hcl:1,61: Error: Reserved environment variable`,
		`env.hcl:1,78: Error: Reserved environment variable`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("diagnostics lack %q:\n%s", want, err)
		}
	}
}

// TestLoadedConfigsPassCheckBuilt: whatever the loader returns is what
// CheckBuilt asserts (the proxy relies on it), for the embedded default,
// the smallest file and the files that set everything; a hand-made Config
// is refused.
func TestLoadedConfigsPassCheckBuilt(t *testing.T) {
	t.Setenv("PINGORA_TEST_ENV", "staging")
	cfgs := map[string]*config.Config{
		"full.hcl":          load(t, "full.hcl"),
		"issue-example.hcl": load(t, "issue-example.hcl"),
	}
	for _, privileged := range []bool{true, false} {
		def, err := config.Default(privileged)
		if err != nil {
			t.Fatal(err)
		}
		cfgs[fmt.Sprintf("default (privileged %v)", privileged)] = def
	}
	smallest, err := config.Parse([]byte(`listener "l" { address = "127.0.0.1:1" }
route "r" {
  respond {}
}`), "min.hcl")
	if err != nil {
		t.Fatal(err)
	}
	cfgs["min.hcl"] = smallest
	for name, cfg := range cfgs {
		if err := cfg.CheckBuilt(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	hand := &config.Config{Listeners: []config.Listener{{Name: "l", Address: "127.0.0.1:1"}}}
	if err := hand.CheckBuilt(); !errors.Is(err, config.ErrNotValidated) {
		t.Errorf("hand-made config: CheckBuilt = %v, want ErrNotValidated", err)
	}
}
