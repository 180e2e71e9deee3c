package config

import (
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
)

// check runs the validations that relate blocks to each other: names are
// unique, references resolve, no two listeners bind the same port, no two
// routes claim the same requests. It also fills each route's listeners
// (every listener when absent). cfg's slices are index-aligned with r's.
func (b *builder) check(r *rawFile, cfg *Config) {
	listeners := b.checkListeners(r, cfg)
	upstreams := b.checkUpstreams(r)
	used := b.checkRoutes(r, cfg, listeners, upstreams)

	// After a dangling reference ("ap" for "app"), "app is unused" would
	// only repeat the same mistake less clearly: say it once.
	for _, u := range r.Upstreams {
		if _, ok := upstreams[u.Name]; ok && !used.upstreams[u.Name] && !used.dangling {
			b.warnf(u.NameRange, "Unused upstream",
				"upstream %q is not used by any route; remove it or point a route at it with upstream = %q", u.Name, u.Name)
		}
	}
	b.checkConnectionCap(r, cfg)
	for _, l := range r.Listeners {
		if _, ok := listeners[l.Name]; ok && len(r.Routes) > 0 && !used.listeners[l.Name] && !used.dangling {
			b.warnf(l.NameRange, "Listener without routes",
				"no route serves listener %q: it will answer every request with 404", l.Name)
		}
	}
}

// checkName reports an empty, malformed or duplicate block name, and records
// a good one in seen. It returns whether the name is usable as a reference.
func (b *builder) checkName(kind, name string, rng hcl.Range, seen map[string]hcl.Range) bool {
	switch {
	case name == "":
		b.errorf(rng, "Empty name", "a %s needs a name, e.g. %s \"main\"", kind, kind)
		return false
	case !validName(name):
		b.errorf(rng, "Invalid name", "%s name %q: use letters, digits, '-', '_' and '.' only", kind, name)
		return false
	}
	if first, dup := seen[name]; dup {
		b.errorf(rng, "Duplicate "+kind, "%s %q is already defined at %s", kind, name, posText(first))
		return false
	}
	seen[name] = rng
	return true
}

func validName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// posText is "file:line,col", how a message refers to another place.
func posText(r hcl.Range) string {
	return fmt.Sprintf("%s:%d,%d", r.Filename, r.Start.Line, r.Start.Column)
}

// bound is a socket the master will bind, to find two that collide.
type bound struct {
	what string // `listener "public"` or `admin`
	addr string
	rng  hcl.Range
}

// collides reports whether a and b cannot both be bound: the same address,
// or the same port with either on every interface.
func collides(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp {
		return false
	}
	return ah == bh || isWildcard(ah) || isWildcard(bh)
}

func isWildcard(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

func (b *builder) checkListeners(r *rawFile, cfg *Config) map[string]hcl.Range {
	names := map[string]hcl.Range{}
	if len(r.Listeners) == 0 {
		b.errorf(b.fileRange, "No listener",
			"the config has no listener block, so the proxy would accept nothing; add one, e.g. listener \"public\" { address = \"0.0.0.0:80\" }")
	}
	var socks []bound
	for i, l := range r.Listeners {
		b.checkName("listener", l.Name, l.NameRange, names)
		if !b.decoded(l.Body, "address") {
			continue
		}
		if _, err := parseAddress(l.Address, bindAddr); err == nil {
			socks = append(socks, bound{fmt.Sprintf("listener %q", l.Name), cfg.Listeners[i].Address, valueRange(l.Body, "address")})
		}
	}
	if r.Admin != nil && b.decoded(r.Admin.Body, "address") {
		if _, err := parseAddress(r.Admin.Address, bindAddr); err == nil {
			socks = append(socks, bound{"admin", cfg.Admin.Address, valueRange(r.Admin.Body, "address")})
		}
	}
	for i, s := range socks {
		for _, prev := range socks[:i] {
			if collides(prev.addr, s.addr) {
				b.errorf(s.rng, "Address already used",
					"%s address %q collides with %s address %q (at %s): both cannot bind that port",
					s.what, s.addr, prev.what, prev.addr, posText(prev.rng))
				break
			}
		}
	}
	return names
}

func (b *builder) checkUpstreams(r *rawFile) map[string]hcl.Range {
	names := map[string]hcl.Range{}
	for _, u := range r.Upstreams {
		b.checkName("upstream", u.Name, u.NameRange, names)
		if len(u.Servers) == 0 {
			b.errorf(u.NameRange, "Upstream without servers",
				"upstream %q has no server; add one, e.g. server \"10.0.0.1:8080\" {}", u.Name)
			continue
		}
		seen := map[string]hcl.Range{}
		primaries := 0
		for _, s := range u.Servers {
			if s.Backup == nil || !*s.Backup {
				primaries++
			}
			addr, err := parseAddress(s.Address, dialAddr)
			if err != nil {
				continue // reported by server()
			}
			if first, dup := seen[addr]; dup {
				b.errorf(s.AddressRange, "Duplicate server",
					"upstream %q lists server %q twice (first at %s); use weight to send it more traffic", u.Name, s.Address, posText(first))
				continue
			}
			seen[addr] = s.AddressRange
		}
		if primaries == 0 {
			b.errorf(u.NameRange, "Upstream without primary servers",
				"every server of upstream %q is a backup; backups are used only when no primary server is healthy, so at least one must not be a backup", u.Name)
		}
	}
	return names
}

// usage records which upstreams and listeners some route uses.
type usage struct {
	upstreams map[string]bool
	listeners map[string]bool
	dangling  bool // some route names an upstream or listener that does not exist
}

// routeKey is what two routes must not share: the same requests on the same
// listener would always go to the first.
type routeKey struct{ listener, host, prefix string }

func (b *builder) checkRoutes(r *rawFile, cfg *Config, listeners, upstreams map[string]hcl.Range) usage {
	used := usage{upstreams: map[string]bool{}, listeners: map[string]bool{}}
	if len(r.Routes) == 0 {
		b.errorf(b.fileRange, "No route",
			"the config has no route block, so the proxy would answer every request with 404; add one, e.g. route \"all\" { upstream = \"app\" }")
	}
	var allListeners []string
	for _, l := range r.Listeners {
		if !slices.Contains(allListeners, l.Name) {
			allListeners = append(allListeners, l.Name)
		}
	}

	names := map[string]hcl.Range{}
	claimed := map[routeKey]string{} // -> route name
	claimedAt := map[string]hcl.Range{}
	for i, rr := range r.Routes {
		rt := &cfg.Routes[i]
		b.checkName("route", rr.Name, rr.NameRange, names)
		claimedAt[rr.Name] = rr.NameRange
		b.checkRouteTarget(rr, upstreams, &used)

		if rr.Listeners == nil { // absent, or null
			rt.Listeners = slices.Clone(allListeners)
		} else if len(rr.Listeners) == 0 {
			b.errorf(valueRange(rr.Body, "listeners"), "Empty list",
				"route %q: listeners is empty; list at least one listener, or leave it out for every listener", rr.Name)
		}
		for j, name := range rr.Listeners {
			rng := elemRange(rr.Body, "listeners", j)
			switch {
			case slices.Index(rr.Listeners, name) < j:
				b.errorf(rng, "Duplicate listener", "route %q lists listener %q twice", rr.Name, name)
			case !hasKey(listeners, name):
				used.dangling = true
				b.errorf(rng, "Unknown listener", "route %q: there is no listener %q; %s", rr.Name, name, defined("listener", name, listeners))
			}
		}

		matchOK := !b.unmatchable[rr] &&
			(!present(rr.Body, "host") || b.decoded(rr.Body, "host")) &&
			(!present(rr.Body, "path_prefix") || b.decoded(rr.Body, "path_prefix"))
		for _, l := range rt.Listeners {
			used.listeners[l] = true
			if !matchOK {
				continue
			}
			k := routeKey{l, rt.Host, rt.PathPrefix}
			if first, dup := claimed[k]; dup && first != rr.Name {
				host := rt.Host
				if host == "" {
					host = "any host"
				} else {
					host = strconv.Quote(host)
				}
				b.errorf(rr.NameRange, "Duplicate route",
					"route %q matches the same requests as route %q (at %s): %s, path_prefix %q, on listener %q; the second would never be used",
					rr.Name, first, posText(claimedAt[first]), host, rt.PathPrefix, l)
				break
			}
			claimed[k] = rr.Name
		}
	}
	return used
}

// checkRouteTarget checks that a route has exactly one of upstream and
// respond, and that its upstream exists.
func (b *builder) checkRouteTarget(rr *rawRoute, upstreams map[string]hcl.Range, used *usage) {
	// An upstream whose expression failed counts as given: its failure is
	// reported already. upstream = null counts as absent.
	hasUpstream := rr.Upstream != nil || b.failed(rr.Body, "upstream")
	switch {
	case hasUpstream && rr.Respond != nil:
		b.errorf(valueRange(rr.Body, "upstream"), "Upstream and respond",
			"route %q has both upstream and a respond block; a route either proxies or answers by itself: keep one", rr.Name)
	case !hasUpstream && rr.Respond == nil:
		b.errorf(rr.DefRange, "Route without target",
			"route %q needs upstream = \"NAME\" to proxy, or a respond { status = 200 } block to answer by itself", rr.Name)
	}
	if rr.Upstream == nil {
		return
	}
	name := *rr.Upstream
	used.upstreams[name] = true
	if !hasKey(upstreams, name) {
		used.dangling = true
		b.errorf(valueRange(rr.Body, "upstream"), "Unknown upstream",
			"route %q: there is no upstream %q; %s", rr.Name, name, defined("upstream", name, upstreams))
	}
}

func hasKey(m map[string]hcl.Range, k string) bool {
	_, ok := m[k]
	return ok
}

// defined lists the names of a kind of block for a "there is no X"
// message, starting with the likely intended one when name is a near miss.
func defined(kind, name string, m map[string]hcl.Range) string {
	if len(m) == 0 {
		return "no " + kind + " is defined"
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	text := "defined: "
	for i, n := range names {
		if i > 0 {
			text += ", "
		}
		text += strconv.Quote(n)
	}
	best, bestDist := "", 3 // a typo is at most two edits away
	for _, n := range names {
		if d := levenshtein.Distance(name, n, nil); d < bestDist && d < len(name) {
			best, bestDist = n, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %q? (%s)", best, text)
	}
	return text
}

// checkConnectionCap warns when the listeners' max_connections, two
// descriptors each (client and upstream), could exhaust a worker's open
// files limit: the cap would then never be reached, and accepts would fail
// with EMFILE instead.
func (b *builder) checkConnectionCap(r *rawFile, cfg *Config) {
	nofile := cfg.Limits.NoFile
	if nofile == 0 {
		return
	}
	var sum uint64
	last := -1
	for i, l := range cfg.Listeners {
		if l.MaxConnections > 0 {
			sum += 2 * uint64(l.MaxConnections)
			last = i
		}
	}
	if last < 0 || sum < nofile {
		return
	}
	b.warnf(valueRange(r.Listeners[last].Body, "max_connections"), "Connection cap above the open files limit",
		"max_connections of the listeners allows %d descriptors per worker (a client and an upstream connection each), "+
			"not below limits nofile = %d: raise nofile or lower max_connections", sum, nofile)
}
