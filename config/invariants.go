package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotValidated is what CheckBuilt wraps: the Config did not come out of
// Load or Parse (or was changed since), so a consumer cannot trust it.
var ErrNotValidated = errors.New("config not validated")

// CheckBuilt asserts what every Config that Load or Parse returns holds:
// every default applied, every reference resolved. Consumers (the proxy)
// apply no defaults and repeat no validation of their own; they call this
// once instead, so that a hand-made Config fails with an error that says
// so rather than serving with zero timeouts or panicking on a missing
// upstream. It is not a validation pass: diagnostics for users come from
// the loader.
func (c *Config) CheckBuilt() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	listeners := make(map[string]bool, len(c.Listeners))
	for _, l := range c.Listeners {
		listeners[l.Name] = true
		if l.Name == "" || l.ClientHeaderTimeout <= 0 || l.ClientBodyTimeout <= 0 || l.SendTimeout <= 0 ||
			l.KeepaliveTimeout <= 0 || l.MaxHeaderSize <= 0 || l.ClientBodyBufferSize <= 0 || l.RequestTimeout < 0 {
			bad("listener %q has unset timeouts or sizes", l.Name)
		}
		if t := l.TLS; t != nil && (len(t.Certificates) == 0 || t.MinVersion == "" || t.ClientAuth == "" ||
			(t.ClientAuth != "none" && len(t.ClientCAPEM) == 0)) {
			bad("listener %q: tls has no certificate or min_version", l.Name)
		}
		if t := l.TLS; t != nil {
			for _, c := range t.Certificates {
				if len(c.CertPEM) == 0 || len(c.KeyPEM) == 0 {
					bad("listener %q: a tls certificate has no PEM material", l.Name)
				}
			}
		}
	}
	upstreams := make(map[string]bool, len(c.Upstreams))
	for _, u := range c.Upstreams {
		upstreams[u.Name] = true
		if u.Name == "" || len(u.Servers) == 0 || u.Balance == "" || u.ConnectTimeout <= 0 ||
			u.ResponseHeaderTimeout <= 0 || u.ReadTimeout <= 0 || u.IdleTimeout <= 0 || u.TunnelTimeout <= 0 {
			bad("upstream %q has no servers or unset timeouts", u.Name)
		}
		if (u.Balance == "hash" || u.Balance == "fnv") && !knownKey(u.HashKey, "client_ip", "uri") {
			bad("upstream %q: hash_key %q", u.Name, u.HashKey)
		}
		for _, s := range u.Servers {
			if s.Address == "" || s.Weight < 1 || s.FailTimeout <= 0 || s.MaxFails < 0 {
				bad("upstream %q: server %q has unset weight or fail_timeout", u.Name, s.Address)
			}
		}
		if h := u.HealthCheck; h != nil && (!strings.HasPrefix(h.Path, "/") || h.Interval <= 0 ||
			h.Timeout <= 0 || h.Healthy < 1 || h.Unhealthy < 1 || len(h.ExpectStatus) == 0) {
			bad("upstream %q: health_check has unset fields", u.Name)
		}
	}
	for _, r := range c.Routes {
		if !strings.HasPrefix(r.PathPrefix, "/") || len(r.Listeners) == 0 {
			bad("route %q has no path_prefix or no listeners", r.Name)
		}
		for _, l := range r.Listeners {
			if !listeners[l] {
				bad("route %q: unknown listener %q", r.Name, l)
			}
		}
		if (r.Respond == nil) == (r.Upstream == "") || (r.Upstream != "" && !upstreams[r.Upstream]) {
			bad("route %q: needs exactly one known upstream or respond", r.Name)
		}
		if rl := r.RateLimit; rl != nil && (rl.Requests < 1 || rl.Per <= 0 || !knownKey(rl.Key, "client_ip") ||
			(rl.Scope != ScopeMachine && rl.Scope != ScopeWorker && rl.Scope != ScopeCluster) ||
			(rl.Scope == ScopeCluster) != (rl.Store != nil)) {
			bad("route %q: rate_limit has unset fields", r.Name)
		}
		if rl := r.RateLimit; rl != nil && rl.Store != nil && (rl.Store.Addr == "" || rl.Store.URL == "") {
			bad("route %q: rate_limit store has no address", r.Name)
		}
	}
	if c.RateLimitZoneSize <= 0 {
		bad("rate_limit_zone_size is unset")
	}
	if a := c.AccessLog; a != nil && (a.BufferSize <= 0 || a.FlushInterval <= 0) {
		bad("access_log has no buffer_size or flush_interval")
	}
	if problems != nil {
		return fmt.Errorf("%w (use config.Load or config.Parse): %s", ErrNotValidated, strings.Join(problems, "; "))
	}
	return nil
}

// knownKey reports whether k is one of the plain keys or header:NAME, the
// forms the loader produces for hash_key and rate_limit key.
func knownKey(k string, plain ...string) bool {
	for _, p := range plain {
		if k == p {
			return true
		}
	}
	return strings.HasPrefix(k, "header:") && len(k) > len("header:")
}
