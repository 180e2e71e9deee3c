package config

import (
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// scope reads the attributes of one block (or of the top level): each
// method takes the decoded value (nil: absent), checks it, reports a problem
// at the attribute with the block named in the message, and returns the
// value or, when absent or bad, the default.
type scope struct {
	b    *builder
	what string // `listener "public"`; "" at the top level
	body hcl.Body
}

func (b *builder) scope(what string, body hcl.Body) scope {
	return scope{b: b, what: what, body: body}
}

// name is how messages call attribute attr: `listener "public" address`.
func (s scope) name(attr string) string {
	if s.what == "" {
		return attr
	}
	return s.what + " " + attr
}

func (s scope) errorf(attr, summary, format string, args ...any) {
	s.b.errorf(valueRange(s.body, attr), summary, "%s: %s", s.name(attr), fmt.Sprintf(format, args...))
}

// duration parses a duration that must be more than zero.
func (s scope) duration(attr string, v *string, def time.Duration) time.Duration {
	if v == nil {
		return def
	}
	d, err := parseDuration(*v)
	if err != nil {
		s.errorf(attr, "Invalid duration", "%s", err)
		return def
	}
	if d <= 0 {
		s.errorf(attr, "Invalid duration", "%q must be more than zero", *v)
		return def
	}
	return d
}

// size parses a byte size that must lie in [lo, hi].
func (s scope) size(attr string, v *string, def, lo, hi int64) int64 {
	if v == nil {
		return def
	}
	n, err := parseSize(*v)
	if err != nil {
		s.errorf(attr, "Invalid size", "%s", err)
		return def
	}
	if n < lo || n > hi {
		if hi == math.MaxInt64 {
			s.errorf(attr, "Invalid size", "%q is out of range: it must be at least %s", *v, sizeText(lo))
		} else {
			s.errorf(attr, "Invalid size", "%q is out of range: it must be from %s to %s", *v, sizeText(lo), sizeText(hi))
		}
		return def
	}
	return n
}

// sizeText renders n bytes the way a user would write it.
func sizeText(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dg", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dm", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dk", n>>10)
	}
	return fmt.Sprint(n)
}

// integer checks a whole number against [lo, hi].
func (s scope) integer(attr string, v *int, def, lo, hi int) int {
	if v == nil {
		return def
	}
	if *v < lo || *v > hi {
		s.errorf(attr, "Invalid value", "%d is out of range: it must be from %d to %d", *v, lo, hi)
		return def
	}
	return *v
}

// enum checks a value against a fixed set.
func (s scope) enum(attr string, v *string, def string, allowed ...string) string {
	if v == nil {
		return def
	}
	if !slices.Contains(allowed, *v) {
		s.errorf(attr, "Invalid value", "%q is not one of %s", *v, quoteList(allowed))
		return def
	}
	return *v
}

// str returns a string that, when given, must not be empty.
func (s scope) str(attr string, v *string, def string) string {
	if v == nil {
		return def
	}
	if *v == "" {
		if def == "" {
			s.errorf(attr, "Empty value", "must not be empty (leave it out instead)")
		} else {
			s.errorf(attr, "Empty value", "must not be empty (leave it out for the default %q)", def)
		}
		return def
	}
	return *v
}

// path returns a file path made absolute against the config's directory.
// When optional, an explicit "" is kept (it means "none": stderr for the
// log); otherwise "" is an error.
func (s scope) path(attr string, v *string, def string, optional bool) string {
	if v == nil {
		return def
	}
	if *v == "" {
		if optional {
			return ""
		}
		s.errorf(attr, "Empty path", "must name a file")
		return def
	}
	return s.b.abs(*v)
}

// abs makes p absolute against the config's directory.
func (b *builder) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(b.baseDir, p)
}

// prefixes checks a list of IP prefixes ("10.0.0.0/8") or addresses (a
// single host) and returns them canonical.
func (s scope) prefixes(attr string, v []string) []string {
	var out []string
	for _, p := range v {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			ip, ierr := netip.ParseAddr(p)
			if ierr != nil {
				s.errorf(attr, "Invalid address prefix", "%q is not an IP address or prefix such as \"10.0.0.0/8\"", p)
				continue
			}
			pfx = netip.PrefixFrom(ip, ip.BitLen())
		}
		out = append(out, pfx.Masked().String())
	}
	return out
}

// address checks a host:port and returns it canonical.
func (s scope) address(attr, v string, kind addrKind) string {
	a, err := parseAddress(v, kind)
	if err != nil {
		s.errorf(attr, "Invalid address", "%s", err)
		return v
	}
	return a
}

// headerNames checks a list of header names.
func (s scope) headerNames(attr string, names []string) []string {
	for i, n := range names {
		if !validToken(n) {
			s.b.errorf(elemRange(s.body, attr, i), "Invalid header name", "%s: %q is not a valid header name (letters, digits and !#$%%&'*+-.^_`|~ only)", s.name(attr), n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return names
}

// headerMap checks a map of header names to values.
func (s scope) headerMap(attr string, m map[string]string) map[string]string {
	for _, k := range sortedKeys(m) {
		if !validToken(k) {
			s.b.errorf(keyRange(s.body, attr, k), "Invalid header name", "%s: %q is not a valid header name (letters, digits and !#$%%&'*+-.^_`|~ only)", s.name(attr), k)
		}
		if proxyManagedHeader(k) {
			s.b.errorf(keyRange(s.body, attr, k), "Header managed by the proxy", "%s: %q cannot be set: the proxy owns message framing and hop-by-hop headers (Content-Length, Transfer-Encoding, Connection, Keep-Alive, TE, Trailer, Upgrade, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, Expect)", s.name(attr), k)
		}
		if !validHeaderValue(m[k]) {
			s.b.errorf(keyRange(s.body, attr, k), "Invalid header value", "%s: the value of %q has a control character (a newline, say), which would break the header block", s.name(attr), k)
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
