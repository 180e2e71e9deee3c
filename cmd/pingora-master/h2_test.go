package main

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestH2WithCurlAndOpenSSL: clients nobody here wrote speak HTTP/2 to the
// daemon: curl --http2 over TLS (h2 by ALPN), curl --http2-prior-knowledge
// to an h2c listener, and curl --http1.1 to the same TLS listener still
// gets HTTP/1.1; openssl s_client offering h2 has it chosen.
func TestH2WithCurlAndOpenSSL(t *testing.T) {
	for _, tool := range []string{"curl", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	in := newInstance(t, 1)
	tlsAddr := in.addTLSListener()
	h2cPort := freePort(t)
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	in.Params.Extra += fmt.Sprintf(`
listener "cleartext-h2" {
  address = "127.0.0.1:%d"
  h2c     = true
}
admin {
  address = %q
}
`, h2cPort, admin)
	in.WriteConfig(in.Params)
	in.Start()
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	certs := filepath.Join("..", "..", "config", "testdata", "tls")

	// curl prints the body, then the protocol version it used.
	curl := func(args ...string) (body, version string) {
		t.Helper()
		args = append([]string{"-sS", "--max-time", "10", "-w", "\n%{http_version}"}, args...)
		out, err := exec.Command("curl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		i := strings.LastIndexByte(string(out), '\n')
		return string(out[:i]), string(out[i+1:])
	}
	tlsArgs := []string{"--cacert", filepath.Join(certs, "a.pem"), "--resolve", "a.example:" + tlsPort + ":127.0.0.1", "https://a.example:" + tlsPort + "/gen"}
	for _, c := range []struct {
		name, want string
		args       []string
	}{
		{"--http2 over TLS", "2", append([]string{"--http2"}, tlsArgs...)},
		{"--http1.1 over TLS", "1.1", append([]string{"--http1.1"}, tlsArgs...)},
		{"--http2-prior-knowledge to h2c", "2", []string{"--http2-prior-knowledge", "http://127.0.0.1:" + strconv.Itoa(h2cPort) + "/gen"}},
	} {
		if body, version := curl(c.args...); body != "gen 0" || version != c.want {
			t.Errorf("curl %s: %q over HTTP/%s, want \"gen 0\" over HTTP/%s", c.name, body, version, c.want)
		}
	}

	// The master's /metrics counts them: two HTTP/2 connections, a
	// stream each (workers report every few seconds).
	waitFor(t, 15*time.Second, "the HTTP/2 requests counted in /metrics", func() (bool, string) {
		m := scrape(t, admin)
		conns, _ := m.sum("pingora_http2_connections_total")
		streams, _ := m.sum("pingora_http2_streams_total")
		return conns >= 2 && streams >= 2, fmt.Sprintf("connections %g, streams %g", conns, streams)
	})

	cmd := exec.Command("openssl", "s_client", "-connect", tlsAddr, "-servername", "a.example", "-alpn", "h2")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ALPN protocol: h2") {
		t.Errorf("openssl s_client -alpn h2: %v; want \"ALPN protocol: h2\" in\n%s", err, out)
	}
}
