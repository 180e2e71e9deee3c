package proxy

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// A cleartext HTTP/2 connection yields what was read before it began,
// however much, then the socket's bytes, in order, read in frame-sized
// pieces as x/net reads them.
func TestH2CConnReadsInOrder(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	pre := bytes.Repeat([]byte("p"), 3*h2ReadBuf+7) // more than one buffer
	rest := make([]byte, 5*h2ReadBuf)
	for i := range rest {
		rest[i] = byte(i % 251)
	}
	want := append(bytes.Clone(pre), rest...)
	go func() {
		for len(rest) > 0 { // uneven writes: some reads find more than they ask for
			n := min(len(rest), 1000+len(rest)%3000)
			b.Write(rest[:n])
			rest = rest[n:]
		}
		b.Close()
	}()
	c := &h2In{Conn: a, pool: &sync.Pool{}, pre: pre}
	var got []byte
	for i := 0; ; i++ {
		p := make([]byte, []int{9, 100, 9, 16384, 9, 1}[i%6])
		n, err := io.ReadFull(c, p)
		got = append(got, p[:n]...)
		if err != nil {
			break
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
