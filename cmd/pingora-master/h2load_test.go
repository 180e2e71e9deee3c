package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// HTTP/2 load clients. Unlike the HTTP/1 clients (client_test.go), these
// use a real HTTP/2 client, x/net's Transport, because what an h2 client
// does at a drain is part of the protocol: a GOAWAY names the last stream
// the server took, and the Transport replays the requests above it on a
// new connection. It replays nothing else the server may have seen (only
// REFUSED_STREAM, and requests for a connection already unusable before
// they went out): a stream the server took and then lost, reset or cut
// with its connection, is an error here, counted as a failure (see
// TestLoadClientCountsLostH2Streams).

// h2Counts is what the HTTP/2 clients saw of their connections.
type h2Counts struct {
	DialsTLS int // connections opened to the TLS listener
	DialsH2C int // connections opened to the h2c listener
	// Retried counts requests that went out more than once: the first
	// try refused by a GOAWAY (or on a connection already going away).
	Retried int
}

// startH2 starts the HTTP/2 clients of spec.
func (l *load) startH2(ctx context.Context, spec loadSpec) {
	id := spec.KeepAlive + spec.Fresh + spec.TLSKeepAlive + spec.TLSFresh
	for _, addr := range []string{spec.H2Addr, spec.H2CAddr} {
		if addr == "" {
			continue
		}
		tlsConn := addr == spec.H2Addr
		for i := 0; i < spec.H2Conns; i++ {
			tr := l.h2Transport(tlsConn)
			var wg sync.WaitGroup
			for j := 0; j < spec.H2Streams; j++ {
				wg.Add(1)
				l.wg.Add(1)
				go func(id int) {
					defer wg.Done()
					l.h2Client(ctx, spec, tr, addr, tlsConn, id)
				}(id)
				id++
			}
			go func() {
				wg.Wait()
				tr.CloseIdleConnections()
			}()
		}
	}
}

// h2Transport is one HTTP/2 client: its connections, one at a time unless
// a GOAWAY has it open the next while the last streams finish on the old.
func (l *load) h2Transport(overTLS bool) *http2.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	count := func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if overTLS {
			l.h2.DialsTLS++
		} else {
			l.h2.DialsH2C++
		}
	}
	return &http2.Transport{
		AllowHTTP:          !overTLS,
		DisableCompression: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			count()
			if !overTLS {
				return d.DialContext(ctx, network, addr)
			}
			td := &tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: "a.example", InsecureSkipVerify: true, NextProtos: []string{"h2"}}}
			c, err := td.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if p := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "h2" {
				c.Close()
				return nil, fmt.Errorf("ALPN chose %q, want h2", p)
			}
			return c, nil
		},
	}
}

// h2Client is one request loop on tr: paced, GET or POST at random, each
// request sent through the Transport once (its only replays are those a
// GOAWAY asks for) and its answer checked as the HTTP/1 clients' are.
func (l *load) h2Client(ctx context.Context, spec loadSpec, tr *http2.Transport, addr string, overTLS bool, id int) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	scheme, mode := "https", "h2 tls"
	if !overTLS {
		scheme, mode = "http", "h2c"
	}
	tick := time.NewTicker(spec.Pause)
	defer tick.Stop()
	for n := 0; n < spec.MaxPerClient; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		reqID := fmt.Sprintf("c%d-r%d", id, n)
		method, path := http.MethodGet, "/app/get?id="+reqID
		var body []byte
		if rng.IntN(2) == 1 {
			method, path = http.MethodPost, "/app/echo?id="+reqID
			body = payload(rng, reqID)
		}
		tries, reused, err := h2Do(tr, method, scheme+"://"+addr+path, body, reqID, spec.Backend)
		where := " new conn"
		if reused {
			where = " reused conn"
		}
		l.record(method+" "+mode+where, err)
		if tries > 1 {
			l.mu.Lock()
			l.h2.Retried++
			l.mu.Unlock()
		}
	}
}

// h2Do makes one request and checks its answer. It reports how many
// connections the Transport tried it on and whether the first had carried
// requests before.
func h2Do(tr *http2.Transport, method, url string, body []byte, reqID string, be *backend) (tries int, reused bool, err error) {
	// Stopping the load must not cut a request: each has its own
	// deadline, not the load's context.
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
		if tries == 0 {
			reused = ci.Reused
		}
		tries++
	}})
	var rd io.Reader
	if body != nil {
		// A bytes.Reader gives the request a GetBody: a POST refused by
		// a GOAWAY can be replayed.
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, false, err
	}
	req.Host = "pingora.test"
	req.Header.Set("User-Agent", "pingora-it-h2")
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("X-Body-Length", fmt.Sprint(len(body)))
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return tries, reused, fmt.Errorf("round trip: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return tries, reused, fmt.Errorf("read response body (status %d): %w", resp.StatusCode, err)
	}
	if resp.ProtoMajor != 2 {
		return tries, reused, fmt.Errorf("answered in %s, want HTTP/2", resp.Proto)
	}
	return tries, reused, checkAnswer(be, reqID, body, &response{Status: resp.StatusCode, Header: resp.Header, Body: data})
}

// addH2CListener gives the instance's config a plain listener "h2c" on a
// free port that takes prior-knowledge HTTP/2, and returns its address.
func (in *instance) addH2CListener() string {
	in.tb.Helper()
	port := freePort(in.tb)
	in.Params.Extra += fmt.Sprintf(`
listener "h2c" {
  address = "127.0.0.1:%d"
  h2c     = true
}
`, port)
	in.WriteConfig(in.Params)
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
}
