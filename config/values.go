package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The parsers below check one value each, knowing nothing of where it was
// written; the builder turns their errors into diagnostics at the right
// place. Their messages are read by operators: they say what was expected.

// parseDuration accepts Go durations ("30s", "1m30s", "500ms").
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write a number and a unit, e.g. \"30s\", \"500ms\", \"2m\"", s)
	}
	return d, nil
}

// parseSize accepts a byte count as nginx writes it: digits with an optional
// k, m or g suffix (either case) for KiB, MiB and GiB: "64k", "1m", "1048576".
// A leading "-" is accepted so callers can allow -1 where it means "inherit".
func parseSize(s string) (int64, error) {
	bad := fmt.Errorf("%q is not a size: write a number of bytes with an optional k, m or g suffix, e.g. \"64k\", \"1m\", \"1048576\"", s)
	t := strings.TrimSpace(s)
	neg := strings.HasPrefix(t, "-")
	t = strings.TrimPrefix(t, "-")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult != 1 {
			t = t[:len(t)-1]
		}
	}
	if t == "" || strings.TrimLeft(t, "0123456789") != "" {
		return 0, bad
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large for a size", s)
	}
	n *= mult
	if neg {
		n = -n
	}
	return n, nil
}

// addrKind says what host part an address may have.
type addrKind int

const (
	// bindAddr is an address to listen on: an IP literal, or no host at all
	// (":8080", every interface). Names are refused: "localhost" may resolve
	// to ::1 or 127.0.0.1 depending on the machine, and a listener must bind
	// the same socket on every start.
	bindAddr addrKind = iota
	// dialAddr is an address to connect to: an IP literal or a DNS name.
	dialAddr
)

// parseAddress checks host:port and returns it in canonical form (IPv6 in
// brackets, IPv4-mapped and zero-padded forms normalised) so that duplicates
// are found however they were written.
func parseAddress(s string, kind addrKind) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port (%s); write e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"", s, addrErrText(err))
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || port != strconv.Itoa(p) {
		return "", fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, port)
	}
	if host == "" {
		if kind == dialAddr {
			return "", fmt.Errorf("%q has no host: write the server's IP address or name, e.g. \"10.0.0.1:8080\"", s)
		}
		return net.JoinHostPort("", port), nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.JoinHostPort(ip.String(), port), nil
	}
	if kind == bindAddr {
		return "", fmt.Errorf("%q: a listener binds an IP address, not the name %q; write e.g. \"127.0.0.1:%s\", \"[::1]:%s\" or \":%s\" (every interface)", s, host, port, port, port)
	}
	if !validHostname(host) {
		return "", fmt.Errorf("%q: %q is neither an IP address nor a valid host name", s, host)
	}
	return net.JoinHostPort(strings.ToLower(host), port), nil
}

// addrErrText is the reason of a net.SplitHostPort error without the
// repeated address.
func addrErrText(err error) string {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}

// validHostname reports whether s is a DNS name: dot-separated labels of
// letters, digits, '-' and '_', none empty or longer than 63, at most 253
// in all.
func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}

// parseRouteHost checks a route's host: an exact name or "*.suffix", with no
// port, and returns it lower-cased (Host matching is case-insensitive, so
// the proxy can compare bytes).
func parseRouteHost(s string) (string, error) {
	name := strings.TrimPrefix(s, "*.")
	switch {
	case strings.Contains(s, ":"):
		return "", fmt.Errorf("%q has a port: a route matches the host name only (the port is the listener's)", s)
	case strings.Contains(name, "*"):
		return "", fmt.Errorf("%q: a wildcard is allowed only as the first label, as in \"*.example.com\"", s)
	case !validHostname(name):
		return "", fmt.Errorf("%q is not a host name: write an exact name such as \"api.example.com\" or a wildcard such as \"*.example.com\"", s)
	}
	return strings.ToLower(s), nil
}

// validToken reports whether s is an HTTP token (RFC 9110 section 5.6.2), the
// grammar of a header field name.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s can be sent as a header value: no CR,
// LF or NUL (which would split or end the header block: response splitting)
// and no other control character but tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// parseKey checks a hash or rate-limit key: one of the fixed names, or
// "header:NAME" with NAME a valid header name.
func parseKey(s string, fixed ...string) (string, error) {
	for _, f := range fixed {
		if s == f {
			return s, nil
		}
	}
	if name, ok := strings.CutPrefix(s, "header:"); ok {
		if !validToken(name) {
			return "", fmt.Errorf("%q: %q is not a valid header name", s, name)
		}
		return s, nil
	}
	return "", fmt.Errorf("%q is not a key: use %s", s, quoteList(append(slices.Clone(fixed), "header:NAME")))
}

// quoteList renders names as `"a", "b" or "c"`.
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	if len(q) <= 1 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// proxyManagedHeader reports whether a header is one the proxy writes or
// strips itself (framing and hop-by-hop), so a route may not set it: a
// configured Content-Length or Connection would corrupt the message.
func proxyManagedHeader(name string) bool {
	switch strings.ToLower(name) {
	case "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
		"upgrade", "proxy-connection", "proxy-authenticate", "proxy-authorization", "expect":
		return true
	}
	return false
}
