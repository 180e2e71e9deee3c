package proxy_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"testing"

	"github.com/pingora-go/pingora/proxy"
)

// HTTP/2 over TLS end to end, streams in parallel on one connection: each
// gets its own answer whole, and the connection is HTTP/2 (its TLS
// passes the check of TestE2EH2RefusesProhibitedCipherSuites).
func TestH2OverTLSParallelStreams(t *testing.T) {
	be := startBackend(t, "b")
	rp := oneCertProxy(t, be, "", "", proxy.Options{})
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	type result struct {
		proto string
		err   error
		n     int
	}
	results := make(chan result)
	for range 20 {
		go func() {
			resp, err := c.Get("https://" + rp.Addr("https") + "/")
			if err != nil {
				results <- result{err: err}
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
				t.Errorf("TLS state %+v", resp.TLS)
			}
			results <- result{proto: resp.Proto, err: err, n: len(body)}
		}()
	}
	for range 20 {
		r := <-results
		if r.err != nil || r.proto != "HTTP/2.0" || r.n == 0 {
			t.Fatalf("stream: proto %q, %d bytes of body, %v", r.proto, r.n, r.err)
		}
	}
}
