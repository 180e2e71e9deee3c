package master

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPIDFileWriteReadRemoveOnlyOurs(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "x.pid")
	if err := WritePIDFile(p, 123); err != nil {
		t.Fatal(err)
	}
	if pid, err := ReadPIDFile(p); err != nil || pid != 123 {
		t.Fatalf("read %d %v", pid, err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	// Replaced atomically: no temporary file left beside it.
	if err := WritePIDFile(p, 456); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("left-over files: %v", entries)
	}
	// Another master's file (after an upgrade) is left alone.
	if err := RemovePIDFile(p, 123); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal("removed a pid file naming another process")
	}
	if err := RemovePIDFile(p, 456); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("own pid file not removed")
	}
	if err := RemovePIDFile(p, 456); err != nil {
		t.Fatalf("removing an absent pid file: %v", err)
	}
}

func TestReadPIDFileRejectsGarbage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.pid")
	for _, content := range []string{"", "abc", "-3", "0"} {
		os.WriteFile(p, []byte(content), 0o644)
		if pid, err := ReadPIDFile(p); err == nil {
			t.Errorf("%q: got pid %d, want an error", content, pid)
		}
	}
}
