package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// defaultStorePort is Redis's (and Valkey's) port.
const defaultStorePort = "6379"

// parseStoreURL reads a rate limit store URL:
// redis://[[user]:password@]host[:port][/db]. rediss:// (TLS) is refused
// rather than silently spoken in plain text: the client has no TLS.
func parseStoreURL(s string) (*RateLimitStore, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("not a URL: %v", err)
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		return nil, errors.New("TLS to the store (rediss://) is not supported: use redis:// on a private network, or a local TLS tunnel (stunnel, spiped) and point redis:// at it")
	case "":
		return nil, errors.New(`missing scheme: write "redis://host:6379/0"`)
	default:
		return nil, fmt.Errorf("scheme %q is not supported: the store is a Redis or Valkey server, redis://host:port/db", u.Scheme)
	}
	if u.Opaque != "" {
		return nil, errors.New(`write "redis://host:port", with the two slashes`)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("takes no query (?...) or fragment (#...)")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return nil, errors.New("no host")
	}
	if port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return nil, errors.New("empty port")
		}
		port = defaultStorePort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	st := &RateLimitStore{Addr: net.JoinHostPort(host, port)}
	switch db := strings.TrimPrefix(u.Path, "/"); {
	case db == "":
	case strings.Contains(db, "/"):
		return nil, fmt.Errorf("path %q: the path is one database number, as /0", u.Path)
	default:
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 || n > math.MaxInt32 {
			return nil, fmt.Errorf("database %q is not a number from 0 up", db)
		}
		st.DB = n
	}
	if u.User != nil {
		st.Username = u.User.Username()
		st.Password, _ = u.User.Password()
		if st.Password == "" {
			return nil, errors.New(`user without password: write "redis://:password@host" (or "user:password@")`)
		}
	}
	st.URL = "redis://" + st.Addr + "/" + strconv.Itoa(st.DB)
	return st, nil
}

// redactURL hides the password of a store URL in messages: config
// diagnostics are logged and shown to whoever runs -t.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		// Unparsable: hide whatever sits between "://" and the last '@'.
		if i, j := strings.Index(s, "://"), strings.LastIndexByte(s, '@'); i >= 0 && j > i {
			return s[:i+3] + "xxxxx" + s[j:]
		}
		return s
	}
	if u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	return u.Redacted()
}
