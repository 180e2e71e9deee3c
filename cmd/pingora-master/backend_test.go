package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// backend is the upstream the proxy forwards to: a net/http server on
// loopback inside the test process. Its answers identify it and the request
// (so a misrouted or stale answer is visible), and it echoes POST bodies so
// the load client can check every byte went through.
type backend struct {
	Name string
	Addr string
	srv  *http.Server
	// SlowArrived receives one value each time a /app/slow request reaches
	// the backend: the test's readiness signal that the request is in flight.
	SlowArrived chan struct{}
	// SlowFor is how long /app/slow takes to answer.
	SlowFor time.Duration
}

// startBackend serves on a fresh loopback port until the test ends.
func startBackend(tb testing.TB, name string) *backend {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("backend listen: %v", err)
	}
	b := &backend{
		Name:        name,
		Addr:        ln.Addr().String(),
		SlowArrived: make(chan struct{}, 16),
		SlowFor:     3 * time.Second,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/app/get", b.get)
	mux.HandleFunc("/app/echo", b.echo)
	mux.HandleFunc("/app/slow", b.slow)
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := b.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("backend %s: %v", name, err)
		}
	}()
	tb.Cleanup(func() { _ = b.srv.Close() })
	return b
}

// getBody is what the backend answers to GET /app/get?id=ID.
func (b *backend) getBody(id string) string {
	return fmt.Sprintf("backend %s GET %s", b.Name, id)
}

func (b *backend) get(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "want GET", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("X-Backend", b.Name)
	io.WriteString(w, b.getBody(r.URL.Query().Get("id")))
}

// echo answers a POST with its body, after checking the body has the length
// the client declared (a truncated upload must not look like success).
func (b *backend) echo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "want POST", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if want := r.Header.Get("X-Body-Length"); want != strconv.Itoa(len(body)) {
		http.Error(w, fmt.Sprintf("body length %d, client sent %s", len(body), want), http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Backend", b.Name)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(body)
}

// slow takes SlowFor to answer: the in-flight request of the graceful-stop
// test.
func (b *backend) slow(w http.ResponseWriter, r *http.Request) {
	select {
	case b.SlowArrived <- struct{}{}:
	default:
	}
	select {
	case <-time.After(b.SlowFor):
	case <-r.Context().Done():
		return
	}
	w.Header().Set("X-Backend", b.Name)
	io.WriteString(w, "slow done")
}
