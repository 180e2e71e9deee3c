package deploy_test

import (
	"os"
	"os/user"
	"strings"
	"testing"
	"time"
)

// The production example does what its comments promise when it runs, not
// only when -t reads it: both listeners answer /healthz by themselves, the
// retired host gets its redirect (over HTTP/2 on the HTTPS listener too), the admin listener serves metrics, `-s
// status` lists the configured workers and `-s quit` stops the master and
// removes its PID file. Only what cannot work on a test machine is moved:
// ports to free loopback ones, /run, /var/log and certbot's live directory
// (with a throwaway certificate) into a temporary directory, the worker user
// to nobody. The HTTPS listener serves HTTP/2 to a client that offers it.
func TestProductionExampleServes(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody to run the workers as: %v", err)
	}
	group, err := user.LookupGroupId(nobody.Gid)
	if err != nil {
		t.Skipf("nobody's group: %v", err)
	}
	dir := t.TempDir()
	public, https, internal, admin := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	conf, cert := writeExample(t, dir, map[string]string{
		`"0.0.0.0:80"`:      `"` + public + `"`,
		`"0.0.0.0:443"`:     `"` + https + `"`,
		`"0.0.0.0:8081"`:    `"` + internal + `"`,
		`"127.0.0.1:9145"`:  `"` + admin + `"`,
		"/run/pingora/":     dir + "/",
		"/var/log/pingora/": dir + "/",
		`user  = "pingora"`: `user  = "nobody"`,
		`group = "pingora"`: `group = "` + group.Name + `"`,
	})
	cfg := loadConfig(t, conf)
	m := startMaster(t, conf, "http://"+public+"/healthz")

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
