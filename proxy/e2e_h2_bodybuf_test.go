package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"golang.org/x/net/http2"
)

// TestH2BufferedBodyReturnsItsBuffers: an HTTP/2 stream whose body is
// buffered (larger than the read buffer, within client_body_buffer_size)
// moves onto a body buffer; when the stream ends both buffers go back to
// their pools and its pooled state is clean, so the streams and HTTP/1.1
// connections served next buffer their own bodies whole. (Once, the body
// buffer went back as a read buffer and the next request's growth was
// skipped: bodies over 16 KiB then failed at random with status 0.)
func TestH2BufferedBodyReturnsItsBuffers(t *testing.T) {
	be := startBackend(t, "b1")
	run := h2Proxy(t, h2Setup{BE: be.Addr})
	addr := run.Addr("h2c")
	cl, _ := h2Client(t, run, "h2c")
	h2 := cl.Transport.(*http2.Transport)
	defer h2.CloseIdleConnections()
	h1 := newClient()
	defer h1.CloseIdleConnections()

	post := func(rt http.RoundTripper, what string, i int) error {
		body := bytes.Repeat([]byte{byte('a' + i%26)}, 20<<10+i*97)
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/echo", bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return fmt.Errorf("%s POST %d: %w", what, i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, body) {
			return fmt.Errorf("%s POST %d (%d bytes): status %d, %d bytes back, %v; want 200 and the body", what, i, len(body), resp.StatusCode, len(got), err)
		}
		return nil
	}
	// Concurrent streams, so that a stream's clientConn can meet a read
	// buffer other than the one the last stream left behind.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				rt, what := http.RoundTripper(h2), "HTTP/2"
				if i%3 == 2 {
					rt, what = h1.Transport, "HTTP/1.1"
				}
				if err := post(rt, what, g*10+i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
