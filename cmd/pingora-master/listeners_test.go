package main

import (
	"fmt"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestReloadAddsAndRemovesListeners: a reload that adds a listener binds it
// and serves the new config there too; a reload that removes it closes the
// port once the old generation is gone, while the first port serves on.
func TestReloadAddsAndRemovesListeners(t *testing.T) {
	in := newInstance(t, 2)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)

	port2 := freePort(t)
	addr2 := net.JoinHostPort("127.0.0.1", strconv.Itoa(port2))
	p := in.Params
	p.Gen = 1
	p.Extra = fmt.Sprintf("listener \"second\" {\n  address = %q\n}\n", addr2)
	in.WriteConfig(p)
	if r := in.Ctl("reload"); r.Code != 0 {
		t.Fatalf("-s reload adding a listener: want exit 0\n%s", r)
	}
	in.WaitVanished("old workers", workers, drainTimeout)
	workers = in.WaitWorkers(master, 2, workers, 5*time.Second)
	in.assertOnlyGen(1)
	if status, body, err := get(addr2, "/gen"); err != nil || status != 200 || body != "gen 1" {
		t.Fatalf("new listener %s: %d %q %v, want 200 \"gen 1\"", addr2, status, body, err)
	}

	p.Gen = 2
	p.Extra = ""
	in.WriteConfig(p)
	if r := in.Ctl("reload"); r.Code != 0 {
		t.Fatalf("-s reload removing a listener: want exit 0\n%s", r)
	}
	in.WaitVanished("old workers", workers, drainTimeout)
	in.WaitWorkers(master, 2, workers, 5*time.Second)
	in.assertOnlyGen(2)
	waitFor(t, 5*time.Second, "the removed listener closed", func() (bool, string) {
		c, err := net.DialTimeout("tcp", addr2, time.Second)
		if err != nil {
			return true, ""
		}
		c.Close()
		return false, addr2 + " still accepts connections"
	})
}

// TestReloadDuringReload: two reloads asked for back to back (the second
// while the first may still run) are both honoured in order: the last
// config written is the one served, nothing is lost or left half done.
func TestReloadDuringReload(t *testing.T) {
	in := newInstance(t, 2)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)

	in.SetGen(1)
	first := make(chan result, 1)
	go func() { first <- in.Ctl("reload") }()
	// The second request goes in once the first is being handled (the log
	// says so), so the master sees it during the first reload.
	waitFor(t, 10*time.Second, "the first reload under way", func() (bool, string) {
		return lineOf(readText(in.ErrLog), "reloading") > 0, "no \"reloading\" line yet"
	})
	in.SetGen(2)
	in.Signal(syscall.SIGHUP)
	if r := <-first; r.Code != 0 {
		t.Fatalf("first -s reload: want exit 0\n%s", r)
	}
	waitFor(t, 15*time.Second, "generation 2 served", func() (bool, string) { return in.servesGen(2) })
	in.WaitVanished("generation 0 workers", workers, drainTimeout)
	now := in.WaitWorkers(master, 2, workers, drainTimeout)
	in.assertOnlyGen(2)
	t.Logf("workers %v -> %v", workers, now)
}
