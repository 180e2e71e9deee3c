package wire

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
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
