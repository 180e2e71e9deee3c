package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestH2SessionResumesAfterReloadGoAway: an HTTP/2 client keeps its
// connection open across a reload; the old worker's GOAWAY sends it to a
// new connection, which resumes the client's TLS session on a worker of
// the new generation (the session-ticket keys survive the reload) and
// speaks h2 again.
func TestH2SessionResumesAfterReloadGoAway(t *testing.T) {
	in := newInstance(t, 2)
	addr := in.addTLSListener()
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)

	type dialed struct {
		resumed bool
		proto   string
	}
	var mu sync.Mutex
	var dials []dialed
	cache := tls.NewLRUClientSessionCache(8)
	tr := &http2.Transport{
		DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			d := &tls.Dialer{Config: &tls.Config{ServerName: "a.example", InsecureSkipVerify: true, NextProtos: []string{"h2"}, ClientSessionCache: cache}}
			c, err := d.DialContext(ctx, network, a)
			if err != nil {
				return nil, err
			}
			st := c.(*tls.Conn).ConnectionState()
			mu.Lock()
			dials = append(dials, dialed{st.DidResume, st.NegotiatedProtocol})
			mu.Unlock()
			return c, nil
		},
	}
	defer tr.CloseIdleConnections()
	get := func(what string) (body string, reused bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused }})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/gen", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s: GET /gen: %v", what, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("%s: GET /gen: %s %s %q %v", what, resp.Proto, resp.Status, b, err)
		}
		return string(b), reused
	}

	// Two requests: the second reuses the connection, and by then the
	// client holds the ticket the server sent after the handshake.
	get("first request")
	if body, reused := get("second request"); body != "gen 0" || !reused {
		t.Fatalf("before the reload: %q on a reused connection %v; want \"gen 0\" on the first connection", body, reused)
	}
	in.SetGen(1)
	if r := in.Ctl("reload"); r.Code != 0 {
		t.Fatalf("-s reload: %s", r)
	}
	// The old workers leave only once the client's connection is gone: it
	// took the GOAWAY.
	in.WaitVanished(fmt.Sprintf("old workers %v", workers), workers, drainTimeout)
	body, reused := get("after the reload")
	if body != "gen 1" || reused {
		t.Errorf("after the reload: %q on a reused connection %v; want \"gen 1\" on a new connection", body, reused)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dials) != 2 {
		t.Fatalf("connections opened: %+v; want 2 (the first, and one after the GOAWAY)", dials)
	}
	if dials[0].resumed || dials[0].proto != "h2" {
		t.Errorf("first connection: %+v; want a full handshake choosing h2", dials[0])
	}
	if !dials[1].resumed || dials[1].proto != "h2" {
		t.Errorf("connection after the reload: %+v; want a resumed session choosing h2", dials[1])
	}
}
