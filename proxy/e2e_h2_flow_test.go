package proxy_test

import (
	"bytes"
	"testing"
)

// Bodies the engine never reads (refused by max_body_size before a byte
// of them is taken) give their flow-control window back to the
// connection: many times its 1 MiB window of them pass on one connection.
func TestE2EH2UnreadBodiesReturnTheirWindow(t *testing.T) {
	t.Parallel()
	be := startRecBackend(t)
	rp := h2Proxy(t, h2Setup{BE: be.Addr, Listener: `max_body_size = "1k"`})
	for _, mode := range h2Modes {
		cl, base := h2Client(t, rp, mode)
		body := bytes.Repeat([]byte("b"), 256<<10)
		for i := range 12 { // 3 MiB
			if r := h2Do(t, cl, "POST", base+"/too-big", "x", bytes.NewReader(body), nil); r.Status != 413 {
				t.Fatalf("%s: POST %d of 256 KiB over max_body_size: status %d, want 413", mode, i, r.Status)
			}
		}
		if r := h2Do(t, cl, "POST", base+"/small", "x", bytes.NewReader([]byte("ok")), nil); r.Status != 200 {
			t.Fatalf("%s: a small POST after them: status %d", mode, r.Status)
		}
	}
}
