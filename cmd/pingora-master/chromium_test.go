package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chromium finds a headless-capable Chromium.
func chromium(t *testing.T) string {
	t.Helper()
	return requireTool(t, "the browser tests", "chromium", "chromium", "chromium-browser", "google-chrome")
}

// requireTool finds the first of names on PATH, a tool the test named by
// what needs. Absent, the test skips with the reason, except in CI (CI
// set), where it must run: .ci/run installs the Debian package pkg.
func requireTool(t *testing.T, what, pkg string, names ...string) string {
	t.Helper()
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatalf("%s not found and CI is set: %s must run in CI (apt-get install %s)", names[0], what, pkg)
	}
	t.Skipf("%s not found: skipping %s (apt-get install %s; with CI=true this is a failure)", names[0], what, pkg)
	return ""
}

// spkiPin is the base64 SHA-256 of a certificate's public key, as
// Chromium's --ignore-certificate-errors-spki-list takes it: the browser
// trusts exactly the test certificate, not any certificate at all.
func spkiPin(t *testing.T, certFile string) string {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", certFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", certFile, err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// accessLine is the part of an access log line these tests read.
type accessLine struct {
	Path     string `json:"path"`
	Protocol string `json:"protocol"`
	Status   int    `json:"status"`
	Route    string `json:"route"`
}

// accessLines reads the access log's lines of route.
func (in *instance) accessLines(t *testing.T, route string) []accessLine {
	t.Helper()
	var out []accessLine
	sc := bufio.NewScanner(strings.NewReader(readText(in.AccessLog)))
	for sc.Scan() {
		var l accessLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("access log line %q: %v", sc.Text(), err)
		}
		if l.Route == route {
			out = append(out, l)
		}
	}
	return out
}

// TestStatusPageInChromiumOverH2: the status page, reached through a TLS
// listener of the proxy whose route forwards to the admin listener, renders
// in headless Chromium with the live figures of this instance, and its own
// refresh comes back through the proxy too; Chromium spoke HTTP/2 (ALPN) for
// the page and for every refresh, as the access log records.
func TestStatusPageInChromiumOverH2(t *testing.T) {
	browser := chromium(t)
	in := newInstance(t, 2)
	admin := withAdmin(in)
	tlsAddr := in.addTLSListener()
	in.Params.Extra += fmt.Sprintf(`
upstream "admin" {
  server %q {}
}

route "status" {
  listeners = ["secure"]
  upstream  = "admin"
}
`, admin)
	in.WriteConfig(in.Params)
	in.Start()
	master := in.MustMasterPID()
	workers := in.WaitWorkers(master, 2, nil, 5*time.Second)
	sendApp(t, in, 7, 0, "before")
	waitAppRequests(t, admin, 7)
	st, body := getStatus(t, admin)
	var totals struct {
		Totals struct {
			Requests int `json:"requests"`
		} `json:"totals"`
	}
	if err := json.Unmarshal([]byte(body), &totals); err != nil {
		t.Fatalf("/status: %v", err)
	}
	// Requests are counted once answered: the first paint, served while
	// the page's own request is on its way, shows before; a refresh after
	// it shows more.
	before := totals.Totals.Requests
	if before < 7 || st.Generation == 0 {
		t.Fatalf("/status before the page: %d requests, generation %d\n%s", before, st.Generation, body)
	}

	_, port, _ := net.SplitHostPort(tlsAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000",
		"--host-resolver-rules=MAP a.example 127.0.0.1",
		"--ignore-certificate-errors-spki-list="+spkiPin(t, filepath.Join(in.Dir, "site.pem")),
		"--dump-dom", "https://a.example:"+port+"/")
	cmd.WaitDelay = 5 * time.Second // helpers that keep stdout open must not hang the test
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	dom := string(out)

	cell := func(re string) {
		t.Helper()
		if !regexp.MustCompile(re).MatchString(dom) {
			t.Errorf("rendered page lacks %s", re)
		}
	}
	m := regexp.MustCompile(`id="total-requests">(\d+)<`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("rendered page has no total-requests figure\n%s", dom)
	}
	if shown, _ := strconv.Atoi(m[1]); shown <= before {
		t.Errorf("page shows %d requests, the first paint's %d or fewer: it did not refresh by itself", shown, before)
	}
	cell(`<span id="conn" class="">live</span>`)
	cell(fmt.Sprintf(`generation %d \(serving\): 2 workers`, st.Generation))
	for _, w := range workers {
		cell(fmt.Sprintf(`<tr class="ready"><td class="n">%d</td><td>ready</td>`, w))
	}
	cell(fmt.Sprintf(`<td>pid</td><td class="n">%d</td>`, master))
	cell(fmt.Sprintf(`<td>secure</td><td>%s</td>`, regexp.QuoteMeta(tlsAddr)))
	cell(`<td>status</td><td>secure</td><td>\*</td><td>/</td>\s*<td>upstream admin</td>`)
	cell(`<td>app</td><td>[a-z2, ]*</td><td>\*</td><td>/app/</td>\s*<td>upstream app</td><td class="n">0</td><td class="n">7</td>`)
	cell(`upstream admin \(round_robin\)`)
	cell(fmt.Sprintf(`<tr class="up"><td>%s</td>`, regexp.QuoteMeta(admin)))

	// The access log (flushed every 100 ms) shows how Chromium came.
	var lines []accessLine
	waitFor(t, 5*time.Second, "the page and a refresh in the access log", func() (bool, string) {
		lines = in.accessLines(t, "status")
		page, refresh := false, false
		for _, l := range lines {
			page = page || l.Path == "/" && l.Status == 200
			refresh = refresh || l.Path == "/?fragment=1" && l.Status == 200
		}
		return page && refresh, fmt.Sprintf("route status lines: %+v", lines)
	})
	for _, l := range lines {
		if l.Protocol != "HTTP/2.0" {
			t.Errorf("Chromium's %s came over %s, want HTTP/2.0", l.Path, l.Protocol)
		}
	}
	t.Logf("Chromium over h2: %d requests on route status: %+v", len(lines), lines)
}
