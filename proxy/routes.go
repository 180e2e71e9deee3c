package proxy

import (
	"bytes"
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/pingora-go/pingora/config"
	"github.com/pingora-go/pingora/proxy/ratelimit"
)

// route is one config route, resolved for the request path: header edits
// as byte slices, its upstream, its limiter, its counters.
type route struct {
	idx     int
	name    string
	prefix  []byte
	maxBody int64 // -1: the listener's
	// bufferBody overrides the listener's request_buffering; nil: inherit.
	bufferBody *bool

	up      *upstreamState // nil for a respond route
	respond *fixedResponse // nil for a proxy route

	reqSet     []setHeader
	reqDrop    [][]byte // lower-case names removed from requests (removals and names set)
	respSet    []setHeader
	respDrop   [][]byte // lower-case names removed from responses
	respSetRaw []byte   // respSet rendered as header lines

	// the route sets these itself, so the proxy does not add its own
	setsXFF, setsXFProto, setsXFHost, setsReqID, setsHost bool
	dropsXFF                                              bool // incoming X-Forwarded-For is not kept

	limiter     ratelimit.Admitter // nil: no rate limit
	limitHeader []byte             // nil: key on the client IP

	// responses by status class (1xx..5xx), for Stats
	responses [5]atomic.Uint64
}

// setHeader is a header a route sets.
type setHeader struct {
	name, value []byte
}

// dropsRequest reports whether the route removes (or replaces) a request
// header by this name.
func (rt *route) dropsRequest(name []byte) bool {
	for _, d := range rt.reqDrop {
		if equalFold(name, d) {
			return true
		}
	}
	return false
}

func (rt *route) dropsResponse(name []byte) bool {
	for _, d := range rt.respDrop {
		if equalFold(name, d) {
			return true
		}
	}
	return false
}

// routeTable finds the route of a request on one listener. Precedence, as
// nginx's server_name: routes for the exact host, then for the longest
// matching "*.suffix", then routes without a host; within each group the
// longest path prefix wins. A group that has no matching prefix falls
// through to the next one.
type routeTable struct {
	exact map[string][]*route // lower-case host without port
	wild  []wildRoutes        // longest suffix first
	any   []*route
}

type wildRoutes struct {
	suffix []byte // ".example.com"
	routes []*route
}

var slashPath = []byte("/")

// match returns the route for a request, or nil.
func (t *routeTable) match(host, path []byte) *route {
	if len(path) == 0 {
		path = slashPath // OPTIONS *
	}
	var buf [256]byte
	h := normalizeHost(buf[:0], host)
	if len(h) > 0 {
		if rs, ok := t.exact[string(h)]; ok {
			if rt := byPrefix(rs, path); rt != nil {
				return rt
			}
		}
		for i := range t.wild {
			w := &t.wild[i]
			if len(h) > len(w.suffix) && bytes.HasSuffix(h, w.suffix) {
				if rt := byPrefix(w.routes, path); rt != nil {
					return rt
				}
			}
		}
	}
	return byPrefix(t.any, path)
}

// byPrefix returns the first route (they are sorted longest prefix first)
// whose prefix starts path.
func byPrefix(rs []*route, path []byte) *route {
	for _, rt := range rs {
		if bytes.HasPrefix(path, rt.prefix) {
			return rt
		}
	}
	return nil
}

// normalizeHost appends host to dst lower-cased, without its port and a
// trailing dot. It returns nil for a host that does not fit dst's capacity.
func normalizeHost(dst, host []byte) []byte {
	if len(host) > 0 && host[0] == '[' {
		if i := bytes.IndexByte(host, ']'); i > 0 {
			host = host[:i+1]
		}
	} else if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if len(host) > 0 && host[len(host)-1] == '.' {
		host = host[:len(host)-1]
	}
	if len(host) > cap(dst)-len(dst) {
		return nil
	}
	for _, c := range host {
		dst = append(dst, lowerTable[c])
	}
	return dst
}

// buildRoutes resolves every config route and the table of each listener.
// Machine-scope rate limits take their buckets from zone, cluster-scope
// ones from their store.
func buildRoutes(cfg *config.Config, ups map[string]*upstreamState, zone *ratelimit.Zone, stores map[config.RateLimitStore]*ratelimit.Store) ([]*route, map[string]*routeTable) {
	routes := make([]*route, 0, len(cfg.Routes))
	tables := make(map[string]*routeTable, len(cfg.Listeners))
	for _, l := range cfg.Listeners {
		tables[l.Name] = &routeTable{exact: map[string][]*route{}}
	}
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		rt := buildRoute(i, rc, ups, zone, stores)
		routes = append(routes, rt)
		host := strings.ToLower(strings.TrimSuffix(rc.Host, "."))
		for _, ln := range rc.Listeners {
			t := tables[ln]
			switch {
			case host == "":
				t.any = append(t.any, rt)
			case strings.HasPrefix(host, "*."):
				suffix := []byte(host[1:])
				k := slices.IndexFunc(t.wild, func(w wildRoutes) bool { return bytes.Equal(w.suffix, suffix) })
				if k < 0 {
					t.wild = append(t.wild, wildRoutes{suffix: suffix})
					k = len(t.wild) - 1
				}
				t.wild[k].routes = append(t.wild[k].routes, rt)
			default:
				t.exact[host] = append(t.exact[host], rt)
			}
		}
	}
	longestFirst := func(rs []*route) {
		sort.SliceStable(rs, func(a, b int) bool { return len(rs[a].prefix) > len(rs[b].prefix) })
	}
	for _, t := range tables {
		for _, rs := range t.exact {
			longestFirst(rs)
		}
		for _, w := range t.wild {
			longestFirst(w.routes)
		}
		longestFirst(t.any)
		sort.SliceStable(t.wild, func(a, b int) bool { return len(t.wild[a].suffix) > len(t.wild[b].suffix) })
	}
	return routes, tables
}

func buildRoute(idx int, rc *config.Route, ups map[string]*upstreamState, zone *ratelimit.Zone, stores map[config.RateLimitStore]*ratelimit.Store) *route {
	rt := &route{idx: idx, name: rc.Name, prefix: []byte(rc.PathPrefix), maxBody: rc.MaxBodySize, bufferBody: rc.RequestBuffering}
	rt.reqSet = headerSet(rc.RequestHeaders)
	rt.respSet = headerSet(rc.ResponseHeaders)
	rt.reqDrop = dropList(rc.RemoveRequestHeaders, rt.reqSet)
	rt.respDrop = dropList(rc.RemoveResponseHeaders, rt.respSet)
	for _, h := range rt.reqSet {
		switch classify(h.name) {
		case hdrXForwardedFor:
			rt.setsXFF = true
		case hdrXForwardedProto:
			rt.setsXFProto = true
		case hdrXForwardedHost:
			rt.setsXFHost = true
		case hdrXRequestID:
			rt.setsReqID = true
		case hdrHost:
			rt.setsHost = true
		}
	}
	rt.dropsXFF = rt.setsXFF || rt.dropsRequest([]byte("x-forwarded-for"))
	for _, h := range rt.respSet {
		rt.respSetRaw = append(rt.respSetRaw, h.name...)
		rt.respSetRaw = append(rt.respSetRaw, ": "...)
		rt.respSetRaw = append(rt.respSetRaw, h.value...)
		rt.respSetRaw = append(rt.respSetRaw, "\r\n"...)
	}
	if rc.Respond != nil {
		rt.respond = newFixedResponse(rc.Respond.Status, rc.Respond.Body, rt.respSet)
	} else {
		rt.up = ups[rc.Upstream]
	}
	if rl := rc.RateLimit; rl != nil {
		if name, ok := strings.CutPrefix(rl.Key, "header:"); ok {
			rt.limitHeader = []byte(name)
		}
		// The identity is the route and the limit, so the next
		// generation (reload, upgrade) continues the zone's buckets.
		id := ratelimit.LimitID(rc.Name, rl.Requests, rl.Per, rl.Burst, rl.Key)
		switch rl.Scope {
		case config.ScopeWorker:
			rt.limiter = ratelimit.New(rl.Requests, rl.Per, rl.Burst)
		case config.ScopeCluster:
			// Without the store, the machine's workers limit together.
			rt.limiter = ratelimit.NewCluster(stores[*rl.Store], rc.Name, rl.Requests, rl.Per, rl.Burst,
				zone.Limit(id, rl.Requests, rl.Per, rl.Burst))
		default:
			rt.limiter = zone.Limit(id, rl.Requests, rl.Per, rl.Burst)
		}
	}
	return rt
}

// headerSet turns a config map (names and values checked by config) into
// sorted header lines.
func headerSet(m map[string]string) []setHeader {
	out := make([]setHeader, 0, len(m))
	for name, value := range m {
		out = append(out, setHeader{name: []byte(name), value: []byte(strings.TrimSpace(value))})
	}
	sort.Slice(out, func(a, b int) bool { return bytes.Compare(out[a].name, out[b].name) < 0 })
	return out
}

// dropList is the lower-case names removed: those listed plus those set
// (set replaces).
func dropList(remove []string, set []setHeader) [][]byte {
	var out [][]byte
	for _, n := range remove {
		out = append(out, []byte(strings.ToLower(n)))
	}
	for _, h := range set {
		out = append(out, bytes.ToLower(h.name))
	}
	return out
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tcharTable[s[i]] {
			return false
		}
	}
	return true
}

// pathNeedsNormalizing is the fast check of the common case: a path with
// no '%', no "//" and no "/." is already in normal form and is matched as
// it is, with no copy.
func pathNeedsNormalizing(p []byte) bool {
	for i, c := range p {
		switch c {
		case '%':
			return true
		case '/':
			if i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.') {
				return true
			}
		}
	}
	return false
}

// appendNormalizedPath appends to dst the form of path p that routes are
// matched against: every percent-escape decoded except %25 (kept, so that
// normalizing is idempotent and "%2541" never becomes "A"), a decoded '/'
// is a separator like any other (as in nginx, so "/x%2F..%2Fadmin/" is
// "/admin/"), repeated slashes merged, "." and ".." segments removed, a
// trailing slash kept. It reports false for a path that does not start
// with '/', a malformed escape, or ".." climbing above the root: those
// are answered 400. p must not overlap dst's spare capacity.
func appendNormalizedPath(dst, p []byte) ([]byte, bool) {
	if len(p) == 0 || p[0] != '/' {
		return dst, false
	}
	base := len(dst)
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' {
			if i+2 >= len(p) {
				return dst[:base], false
			}
			hi, lo := unhex(p[i+1]), unhex(p[i+2])
			if hi < 0 || lo < 0 {
				return dst[:base], false
			}
			i += 2
			if c = byte(hi<<4 | lo); c == '%' {
				dst = append(dst, "%25"...)
				continue
			}
		}
		dst = append(dst, c)
	}
	// Remove dot segments and empty ones in place: the output never gets
	// ahead of the input (it writes "/seg" where the input had "/seg").
	b := dst[base:]
	w, r := 0, 0
	dir := false // the output ends in a directory: add a trailing '/'
	for r < len(b) {
		for r < len(b) && b[r] == '/' {
			r++
		}
		start := r
		for r < len(b) && b[r] != '/' {
			r++
		}
		seg := b[start:r]
		switch {
		case len(seg) == 0: // trailing slash
			dir = true
		case len(seg) == 1 && seg[0] == '.':
			dir = true
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			if w == 0 {
				return dst[:base], false
			}
			w = bytes.LastIndexByte(b[:w], '/')
			dir = true
		default:
			b[w] = '/'
			copy(b[w+1:], seg)
			w += 1 + len(seg)
			dir = r < len(b)
		}
	}
	if w == 0 || dir {
		b = append(b[:w], '/')
		w++
	}
	return append(dst[:base], b[:w]...), true
}
