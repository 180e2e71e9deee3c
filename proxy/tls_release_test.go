package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
)

// A wave of TLS handshakes that has gone quiet gives memory back as a wave
// of parked connections does: once releaseMinParked of them have come since
// the last release and none for releaseQuiet, at most once per releaseEvery.
func TestReleaseDueAfterHandshakeWave(t *testing.T) {
	lot := &parkingLot{}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at         time.Duration
		handshakes uint64
		want       bool
	}{
		{0, 0, false},
		{time.Second, releaseMinParked + 500, false},                       // the wave is still coming
		{time.Second + releaseQuiet - time.Millisecond, 1500, false},       // not quiet long enough
		{time.Second + releaseQuiet, releaseMinParked + 500, true},         // quiet: release
		{2*time.Second + 2*releaseQuiet, 2*releaseMinParked + 600, false},  // a second wave, too soon
		{releaseEvery + 10*time.Second, 2*releaseMinParked + 600, true},    // and later
		{2*releaseEvery + 20*time.Second, 3*releaseMinParked + 500, false}, // fewer than releaseMinParked since
	}
	for i, s := range steps {
		if got := lot.releaseDue(t0.Add(s.at), s.handshakes); got != s.want {
			t.Fatalf("step %d (%v, %d handshakes): releaseDue = %v, want %v", i, s.at, s.handshakes, got, s.want)
		}
	}
}

// This Go's crypto/tls.Conn has the input buffers dropTLSInput drops: a
// Go release that renames them must not go unnoticed (the cut would
// silently stop).
func TestTLSInputFieldsFound(t *testing.T) {
	if !tlsInput.ok {
		t.Fatal("crypto/tls.Conn has no rawInput, input and hand of the expected types: idle TLS connections keep their input buffers")
	}
}

// A parked TLS connection keeps no input buffer, but a connection that
// parks holding part of a record (a request whose record the network
// split, the rest late) keeps that part, and the request is served once
// the rest comes.
func TestParkedTLSConnectionDropsItsInputBuffers(t *testing.T) {
	be := newBackend(t, nil)
	certs, err := filepath.Abs(filepath.Join("..", "config", "testdata", "tls"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
listener "https" {
  address = "127.0.0.1:1"
  tls {
    certificate {
      cert_file = "%s/a.pem"
      key_file  = "%s/a.key"
    }
  }
}
upstream "app" {
  server %q {}
}
route "all" { upstream = "app" }
`, certs, certs, be.Listener.Addr().String())), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	r := Start(t, cfg, Options{})
	// parkedInput is the input the parked connection holds (-1: none
	// parked) and whether its buffers have any capacity left.
	parkedInput := func() (held int, buffers bool) {
		r.P.mu.Lock()
		defer r.P.mu.Unlock()
		for _, fc := range r.P.lot.byFD {
			v := reflect.ValueOf(fc.parked.tls).Elem()
			raw, hand := v.FieldByName("rawInput"), v.FieldByName("hand")
			length := func(b reflect.Value) int { return b.FieldByName("buf").Len() - int(b.FieldByName("off").Int()) }
			return length(raw) + length(hand), raw.FieldByName("buf").Cap()+hand.FieldByName("buf").Cap() > 0
		}
		return -1, false
	}

	raw, err := net.Dial("tcp", r.Addr("https"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	sw := &splitWriter{Conn: raw}
	c := tls.Client(sw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	br := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	get := func(path string) {
		t.Helper()
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
			t.Fatal(err)
		}
		if sw.held != nil {
			WaitFor(t, 5*time.Second, "parked with part of a record", func() bool { n, _ := parkedInput(); return n > 0 })
			if _, err := raw.Write(sw.held); err != nil {
				t.Fatal(err)
			}
			sw.held = nil
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
	}
	get("/whole")
	WaitFor(t, 5*time.Second, "parked", func() bool { n, _ := parkedInput(); return n == 0 })
	if _, buffers := parkedInput(); buffers {
		t.Fatal("a parked TLS connection kept its input buffers")
	}
	sw.holdBack = 20 // of the next request's record
	get("/split")
}

// splitWriter writes all but the last holdBack bytes of its next write,
// keeping those in held.
type splitWriter struct {
	net.Conn
	holdBack int
	held     []byte
}

func (w *splitWriter) Write(b []byte) (int, error) {
	if w.holdBack == 0 || len(b) <= w.holdBack {
		return w.Conn.Write(b)
	}
	cut := len(b) - w.holdBack
	w.held, w.holdBack = append([]byte(nil), b[cut:]...), 0
	if _, err := w.Conn.Write(b[:cut]); err != nil {
		return 0, err
	}
	return len(b), nil
}
