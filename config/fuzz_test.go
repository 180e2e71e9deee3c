package config_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pingora-go/pingora/config"
)

// FuzzParse feeds the loader arbitrary text, seeded with the real configs of
// testdata/ and the embedded default. No input may panic it; a rejected input
// must come back as a *config.Error that renders; an accepted one must hold
// what consumers rely on without checking (references resolve, defaults are
// applied) and survive the JSON trip to the workers.
func FuzzParse(f *testing.F) {
	f.Add(config.DefaultSource())
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.hcl"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range seeds {
		src, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := config.Parse(src, "fuzz.hcl")
		if err != nil {
			var cerr *config.Error
			if !errors.As(err, &cerr) {
				t.Fatalf("error is %T, not *config.Error: %v", err, err)
			}
			if len(cerr.Diags.Errs()) == 0 || cerr.Error() == "" {
				t.Fatalf("error without an error diagnostic: %#v", cerr.Diags)
			}
			return
		}
		checkInvariants(t, cfg)
	})
}

// checkInvariants asserts what every accepted config guarantees.
func checkInvariants(t *testing.T, cfg *config.Config) {
	t.Helper()
	if len(cfg.Listeners) == 0 || len(cfg.Routes) == 0 {
		t.Fatalf("accepted without listeners or routes: %+v", cfg)
	}
	if cfg.Workers < 1 || cfg.WorkerThreads < 1 || cfg.PIDFile == "" || cfg.LockFile == "" || cfg.ControlSocket == "" {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	var listeners []string
	for _, l := range cfg.Listeners {
		if l.Name == "" || l.Address == "" || l.ClientHeaderTimeout <= 0 || l.MaxHeaderSize <= 0 {
			t.Fatalf("listener not defaulted: %+v", l)
		}
		listeners = append(listeners, l.Name)
	}
	upstreams := map[string]bool{}
	for _, u := range cfg.Upstreams {
		if len(u.Servers) == 0 || u.Balance == "" || u.HashKey == "" || u.ConnectTimeout <= 0 {
			t.Fatalf("upstream not defaulted: %+v", u)
		}
		for _, s := range u.Servers {
			if s.Weight < 1 || s.FailTimeout <= 0 {
				t.Fatalf("server not defaulted: %+v", s)
			}
		}
		upstreams[u.Name] = true
	}
	for _, r := range cfg.Routes {
		if (r.Upstream == "") == (r.Respond == nil) {
			t.Fatalf("route %q has not exactly one of upstream and respond", r.Name)
		}
		if r.Upstream != "" && !upstreams[r.Upstream] {
			t.Fatalf("route %q names unknown upstream %q", r.Name, r.Upstream)
		}
		if len(r.Listeners) == 0 || !strings.HasPrefix(r.PathPrefix, "/") {
			t.Fatalf("route not defaulted: %+v", r)
		}
		for _, l := range r.Listeners {
			if !slices.Contains(listeners, l) {
				t.Fatalf("route %q names unknown listener %q", r.Name, l)
			}
		}
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var back config.Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	back.Warnings = cfg.Warnings // not sent to workers
	if !reflect.DeepEqual(cfg, &back) {
		t.Fatalf("JSON round trip changed the config:\n%+v\n%+v", cfg, &back)
	}
}
