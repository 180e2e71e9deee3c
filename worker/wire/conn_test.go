package wire

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSendRecvWithDescriptorsAndEOF(t *testing.T) {
	master, theirs, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	worker, err := FileConn(theirs)
	theirs.Close()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := master.Send(Message{Type: TypeReopen, Files: []string{FileAccessLog}}, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Two messages stay two messages (SOCK_SEQPACKET keeps boundaries).
	if err := master.Send(Message{Type: TypeDrain, Deadline: 42}); err != nil {
		t.Fatal(err)
	}
	m, files, err := worker.Recv()
	if err != nil || m.Type != TypeReopen || len(files) != 1 || m.Files[0] != FileAccessLog {
		t.Fatalf("got %+v %v %v", m, files, err)
	}
	if _, err := files[0].WriteString("via SCM_RIGHTS\n"); err != nil {
		t.Fatal(err)
	}
	files[0].Close()
	if b, _ := os.ReadFile(path); string(b) != "via SCM_RIGHTS\n" {
		t.Fatalf("file content %q", b)
	}
	m, files, err = worker.Recv()
	if err != nil || m.Type != TypeDrain || m.Deadline != 42 || len(files) != 0 {
		t.Fatalf("got %+v %v %v", m, files, err)
	}
	master.Close()
	if _, _, err := worker.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the peer closed: %v, want EOF", err)
	}
}

func TestSendRejectsOversizedMessage(t *testing.T) {
	c, theirs, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	defer c.Close()
	big := make([]byte, MaxMessage)
	for i := range big {
		big[i] = 'x'
	}
	if err := c.Send(Message{Type: TypeError, Error: string(big)}); err == nil {
		t.Fatal("oversized message sent")
	}
}

// TestRecvRefusesOversizedMessage: Send bounds what an honest peer sends,
// but a compromised worker writes to its socket directly. Recv reads into
// its fixed MaxMessage buffer and refuses what did not fit, rather than
// decoding a truncated message or growing a buffer.
func TestRecvRefusesOversizedMessage(t *testing.T) {
	c, theirs, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	defer c.Close()
	big := []byte(`{"type":"error","error":"` + strings.Repeat("x", MaxMessage) + `"}`)
	if _, err := unix.Write(int(theirs.Fd()), big); err != nil {
		t.Fatalf("raw write of %d bytes: %v", len(big), err)
	}
	if _, _, err := c.Recv(); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("Recv of a %d-byte message: err %v, want a truncated-message error", len(big), err)
	}
}
