package config_test

import (
	"reflect"
	"testing"

	"github.com/pingora-go/pingora/config"
)

// TestRateLimitStoreForms: the URL forms an operator writes, with the
// defaults filled in (port 6379, database 0) and the password kept out of
// the URL that logs and metrics show.
func TestRateLimitStoreForms(t *testing.T) {
	for in, want := range map[string]config.RateLimitStore{
		"redis://cache":                     {URL: "redis://cache:6379/0", Addr: "cache:6379"},
		"redis://10.0.0.5:6380/3":           {URL: "redis://10.0.0.5:6380/3", Addr: "10.0.0.5:6380", DB: 3},
		"redis://[::1]:7000/":               {URL: "redis://[::1]:7000/0", Addr: "[::1]:7000"},
		"redis://:pw@cache:6379/1":          {URL: "redis://cache:6379/1", Addr: "cache:6379", DB: 1, Password: "pw"},
		"redis://app:p%40ss@cache.local/15": {URL: "redis://cache.local:6379/15", Addr: "cache.local:6379", DB: 15, Username: "app", Password: "p@ss"},
	} {
		src := `listener "l" { address = "127.0.0.1:1000" }
route "r" {
  respond {}
  rate_limit {
    requests = 10
    store    = "` + in + `"
  }
}
`
		cfg, err := config.Parse([]byte(src), "store.hcl")
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := cfg.Routes[0].RateLimit.Store; got == nil || !reflect.DeepEqual(*got, want) {
			t.Errorf("%s: store %+v, want %+v", in, got, want)
		}
	}
}
