package deploy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"strings"
	"testing"
	"time"
)

// runningExample is deploy/pingora.hcl run by a master on a test machine.
type runningExample struct {
	conf                           string
	public, https, internal, admin string
	acme                           string // where certbot's standalone server would listen
	cert                           exampleCert
	m                              *runningMaster
}

// startExample runs the production example. Only what cannot work on a test
// machine is moved: ports to free loopback ones, /run, /var/log and
// certbot's live directory (with a throwaway certificate) into a temporary
// directory, the worker user to nobody.
func startExample(t *testing.T) *runningExample {
	t.Helper()
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody to run the workers as: %v", err)
	}
	group, err := user.LookupGroupId(nobody.Gid)
	if err != nil {
		t.Skipf("nobody's group: %v", err)
	}
	dir := t.TempDir()
	e := &runningExample{public: freeAddr(t), https: freeAddr(t), internal: freeAddr(t), admin: freeAddr(t), acme: freeAddr(t)}
	e.conf, e.cert = writeExample(t, dir, map[string]string{
		`"0.0.0.0:80"`:      `"` + e.public + `"`,
		`"0.0.0.0:443"`:     `"` + e.https + `"`,
		`"0.0.0.0:8081"`:    `"` + e.internal + `"`,
		`"127.0.0.1:9145"`:  `"` + e.admin + `"`,
		`"127.0.0.1:8402"`:  `"` + e.acme + `"`,
		"/run/pingora/":     dir + "/",
		"/var/log/pingora/": dir + "/",
		`user  = "pingora"`: `user  = "nobody"`,
		`group = "pingora"`: `group = "` + group.Name + `"`,
	})
	e.m = startMaster(t, e.conf, "http://"+e.public+"/healthz")
	return e
}

// The production example does what its comments promise when it runs, not
// only when -t reads it: both plain listeners answer /healthz by
// themselves, the retired host gets its redirect (over HTTP/2 on the HTTPS
// listener too, with the certificate from certbot's directory), ACME
// challenges reach certbot's server, the admin listener serves metrics, `-s status` lists the configured workers and `-s
// quit` stops the master and removes its PID file.
func TestProductionExampleServes(t *testing.T) {
	e := startExample(t)
	conf, public, https, internal, admin, cert, m := e.conf, e.public, e.https, e.internal, e.admin, e.cert, e.m

	cfg := loadConfig(t, conf)

	for _, addr := range []string{public, internal} {
		status, _, body, err := get("http://"+addr+"/healthz", "")
		if err != nil || status != 200 || body != "ok\n" {
			t.Errorf("GET %s/healthz: %d %q %v; want 200 \"ok\\n\"", addr, status, body, err)
		}
	}
	status, hdr, _, err := get("http://"+public+"/anything", "old.example.com")
	if err != nil || status != 301 || hdr.Get("Location") != "https://www.example.com/" {
		t.Errorf("old.example.com: %d Location %q %v; want 301 to https://www.example.com/", status, hdr.Get("Location"), err)
	}
	// The HTTPS listener: the certificate from certbot's directory, HTTP/2
	// chosen by ALPN, the same routes.
	resp, _, err := httpsGet(https, "old.example.com", "/anything", cert.cert)
	if err != nil {
		t.Errorf("GET https://old.example.com/anything: %v", err)
	} else {
		if resp.Proto != "HTTP/2.0" || resp.TLS.NegotiatedProtocol != "h2" {
			t.Errorf("https listener: %s (ALPN %q); want HTTP/2.0 by ALPN h2", resp.Proto, resp.TLS.NegotiatedProtocol)
		}
		if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://www.example.com/" {
			t.Errorf("old.example.com over https: %d Location %q; want 301 to https://www.example.com/", resp.StatusCode, resp.Header.Get("Location"))
		}
		if got := resp.TLS.PeerCertificates[0].SerialNumber; got.Cmp(cert.cert.SerialNumber) != 0 {
			t.Errorf("https listener serves certificate %v, want %v (the one in certbot's directory)", got, cert.cert.SerialNumber)
		}
	}
	// ACME http-01 challenges for the certificate's names reach certbot's
	// standalone server while it listens, and the refusals before do not
	// keep them from it: one keep-alive connection, so one worker, which
	// saw the refusal.
	const challenge = "/.well-known/acme-challenge/tok3n"
	c, err := net.DialTimeout("tcp", public, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	challengeGet := func(host string) (int, string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", challenge, host)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s for %s: %v", challenge, host, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if status, _ := challengeGet("www.example.com"); status != 502 {
		t.Errorf("challenge with certbot not running: %d, want 502", status)
	}
	certbot := acmeServer(t, e.acme)
	for _, host := range []string{"example.com", "www.example.com"} {
		if status, body := challengeGet(host); status != 200 || body != certbot+challenge {
			t.Errorf("challenge for %s: %d %q; want 200 from certbot's server", host, status, body)
		}
	}
	c.Close()
	if status, _, _, err := get("http://"+admin+"/metrics", ""); err != nil || status != 200 {
		t.Errorf("admin %s/metrics: %d %v; want 200", admin, status, err)
	}

	out, code := run(t, nil, "-s", "status", "-c", conf)
	if code != 0 || strings.Count(out, "worker pid=") != cfg.Workers {
		t.Errorf("-s status: exit %d, want 0 and %d workers; output:\n%s", code, cfg.Workers, out)
	}
	if out, code := run(t, nil, "-s", "quit", "-c", conf); code != 0 {
		t.Errorf("-s quit: exit %d; output:\n%s", code, out)
	}
	waitFor(t, 15*time.Second, "the master to exit after -s quit", func() bool {
		select {
		case <-m.exited:
			return true
		default:
			return false
		}
	})
	if m.err != nil {
		t.Errorf("master exit after -s quit: %v; output:\n%s", m.err, m.output())
	}
	if _, err := os.Stat(cfg.PIDFile); !os.IsNotExist(err) {
		t.Errorf("PID file %s still there after a graceful stop (%v)", cfg.PIDFile, err)
	}
}

// acmeServer stands in for certbot's standalone server on addr until the
// test ends: it answers every path with its name and the path.
func acmeServer(t *testing.T, addr string) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s for the ACME server: %v", addr, err)
	}
	const name = "certbot"
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name+r.URL.Path)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return name
}
