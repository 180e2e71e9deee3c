package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is the admin HTTP listener. It is off the hot path (a scrape or a
// page view every few seconds), so it uses net/http with timeouts that keep
// a slow or idle client from holding it.
type Server struct {
	log  hclog.Logger
	agg  *Aggregator
	http *http.Server
	now  func() time.Time
	// refresh, when set, runs before each view is rendered (SetRefresh).
	refresh atomic.Pointer[func(context.Context)]
}

// refreshTimeout bounds how long a view waits for fresh samples: a worker
// that does not answer in time shows its previous sample.
const refreshTimeout = 500 * time.Millisecond

// SetRefresh sets fn to be called before /metrics, /status and the page
// are rendered, with a context that ends after at most half a second. The
// master passes a function that asks every live worker for a fresh sample
// and returns once they are all in (or the context ended), so a scrape
// shows the counters as of the scrape, not as of the last periodic sample.
// A nil fn turns it off.
func (s *Server) SetRefresh(fn func(context.Context)) {
	if fn == nil {
		s.refresh.Store(nil)
		return
	}
	s.refresh.Store(&fn)
}

// refreshed runs the refresh function, if any, before h.
func (s *Server) refreshed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fn := s.refresh.Load(); fn != nil {
			ctx, cancel := context.WithTimeout(r.Context(), refreshTimeout)
			(*fn)(ctx)
			cancel()
		}
		h.ServeHTTP(w, r)
	})
}

// New returns a Server showing agg; a nil agg is a fresh, empty one (see
// Aggregator). A nil log discards.
func New(log hclog.Logger, agg *Aggregator) *Server {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if agg == nil {
		agg = new(Aggregator)
	}
	s := &Server{log: log, agg: agg, now: time.Now}
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	return s
}

// Aggregator is the aggregator the server shows.
func (s *Server) Aggregator() *Aggregator { return s.agg }

// Serve serves ln until Shutdown; it returns nil after Shutdown and the
// accept error otherwise. The caller binds ln (the master binds the admin
// address like its other listeners, so it survives binary upgrades).
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info("admin listener serving", "address", ln.Addr().String())
	if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin listener %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting, closes the listener, and waits for requests in
// progress until ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
		return fmt.Errorf("admin listener shutdown: %w", err)
	}
	return nil
}

// Handler routes /, /status and /metrics; anything else is 404, and only
// GET and HEAD are served.
func (s *Server) Handler() http.Handler {
	metrics := promhttp.HandlerFor(newRegistry(s.agg), promhttp.HandlerOpts{
		ErrorLog:            s.log.Named("metrics").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.refreshed(metrics))
	mux.Handle("GET /status", s.refreshed(http.HandlerFunc(s.serveStatus)))
	mux.Handle("GET /{$}", s.refreshed(http.HandlerFunc(s.servePage)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	body, err := json.MarshalIndent(s.agg.Status(s.now()), "", "  ")
	if err != nil {
		s.log.Error("status encoding failed", "error", err)
		http.Error(w, "status encoding failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(body, '\n'))
}

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	fragment := r.URL.Query().Get("fragment") != ""
	if err := renderPage(&buf, s.agg.Status(s.now()), fragment); err != nil {
		s.log.Error("status page rendering failed", "error", err)
		http.Error(w, "status page rendering failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Write(buf.Bytes())
}
