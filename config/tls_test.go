package config_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pingora-go/pingora/config"
)

// tlsFiles copies the test certificates into a directory of the test's
// with the modes an installation would give them (git keeps no modes).
func tlsFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"a.pem", "a.key", "b.pem", "b.key", "client-ca.pem"} {
		b, err := os.ReadFile(filepath.Join("testdata", "tls", name))
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tlsConfig is a config in dir with one TLS listener whose tls block is
// body.
func tlsConfig(t *testing.T, dir, body string) (*config.Config, error) {
	t.Helper()
	path := filepath.Join(dir, "tls.hcl")
	src := "listener \"https\" {\n  address = \"127.0.0.1:8443\"\n  tls {\n" + body + "  }\n}\nroute \"r\" {\n  respond {}\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return config.Load(path)
}

// The master reads the certificates (relative paths against the config's
// directory) and the config carries the PEM material and the names; no
// path to a file reaches the JSON a worker receives.
func TestTLSListenerLoads(t *testing.T) {
	dir := tlsFiles(t)
	cfg, err := tlsConfig(t, dir, `    certificate {
      cert_file = "a.pem"
      key_file  = "a.key"
    }
    certificate {
      cert_file = "b.pem"
      key_file  = "`+filepath.Join(dir, "b.key")+`"
    }
    min_version = "1.3"
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	tl := cfg.Listeners[0].TLS
	if tl == nil || len(tl.Certificates) != 2 || tl.MinVersion != "1.3" {
		t.Fatalf("tls = %+v", tl)
	}
	a := tl.Certificates[0]
	if a.CertFile != filepath.Join(dir, "a.pem") || len(a.CertPEM) == 0 || len(a.KeyPEM) == 0 ||
		strings.Join(a.Names, ",") != "a.example,*.a.example" || a.NotAfter.Year() != 2126 {
		t.Errorf("first certificate: file %s, names %v, expires %v", a.CertFile, a.Names, a.NotAfter)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"a.pem", "a.key", "b.pem", "b.key"} {
		if strings.Contains(string(js), f) {
			t.Errorf("the workers' JSON names %s: %s", f, js)
		}
	}
	var back config.Config
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Listeners[0].TLS.Certificates[1]; string(got.KeyPEM) != string(tl.Certificates[1].KeyPEM) {
		t.Error("the key did not survive the trip to a worker")
	}
	if err := back.CheckBuilt(); err != nil {
		t.Error(err)
	}
}

// Bad TLS input is an error at the attribute that names the file, with
// the file named and the reason.
func TestTLSListenerErrors(t *testing.T) {
	dir := tlsFiles(t)
	cases := []struct {
		name, body string
		line, col  int
		want       []string
	}{
		{"missing certificate file", "    certificate {\n      cert_file = \"nope.pem\"\n      key_file  = \"a.key\"\n    }\n", 5, 19, []string{"Cannot read certificate", "nope.pem", "no such file"}},
		{"missing key file", "    certificate {\n      cert_file = \"a.pem\"\n      key_file  = \"nope.key\"\n    }\n", 6, 19, []string{"Cannot read key", "nope.key"}},
		{"key of another certificate", "    certificate {\n      cert_file = \"a.pem\"\n      key_file  = \"b.key\"\n    }\n", 6, 19, []string{"Invalid certificate or key", "a.pem", "b.key", "does not match"}},
		{"key file as certificate", "    certificate {\n      cert_file = \"a.key\"\n      key_file  = \"a.key\"\n    }\n", 6, 19, []string{"Invalid certificate or key", "a.key"}},
		{"no certificate", "    min_version = \"1.2\"\n", 3, 3, []string{"Missing certificate", "at least one certificate"}},
		{"old protocol", "    certificate {\n      cert_file = \"a.pem\"\n      key_file  = \"a.key\"\n    }\n    min_version = \"1.1\"\n", 8, 19, []string{"min_version", `"1.1" is not one of`}},
		{"client_auth without a CA", "    certificate {\n      cert_file = \"a.pem\"\n      key_file  = \"a.key\"\n    }\n    client_auth = \"require\"\n", 8, 19, []string{"Missing client_ca_file", "require"}},
		{"client CA not PEM", "    certificate {\n      cert_file = \"a.pem\"\n      key_file  = \"a.key\"\n    }\n    client_auth = \"request\"\n    client_ca_file = \"a.key\"\n", 9, 22, []string{"Invalid CA", "client_ca_file", "a.key", "no PEM certificate"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := tlsConfig(t, dir, c.body)
			e := configError(t, err)
			d := findDiag(e, c.line, c.col)
			if d == nil {
				t.Fatalf("no error at %d:%d; got:\n%v", c.line, c.col, err)
			}
			text := d.Summary + ": " + d.Detail
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("diagnostic %q lacks %q", text, w)
				}
			}
		})
	}
}

// A private key others can read loads, with a warning that says so.
func TestTLSKeyReadableByOthersWarns(t *testing.T) {
	dir := tlsFiles(t)
	if err := os.Chmod(filepath.Join(dir, "a.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := tlsConfig(t, dir, "    certificate {\n      cert_file = \"a.pem\"\n      key_file  = \"a.key\"\n    }\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "chmod 600") {
		t.Errorf("warnings = %v, want one about the key's mode", cfg.Warnings)
	}
}

// client_auth with a client CA, and session tickets turned off, reach the
// config as PEM and flags; the CA's path does not.
func TestTLSClientAuthLoads(t *testing.T) {
	dir := tlsFiles(t)
	cfg, err := tlsConfig(t, dir, "    certificate {\n      cert_file = \"a.pem\"\n      key_file  = \"a.key\"\n    }\n    client_auth = \"require\"\n    client_ca_file = \"client-ca.pem\"\n    session_tickets = false\n")
	if err != nil {
		t.Fatal(err)
	}
	tl := cfg.Listeners[0].TLS
	if tl.ClientAuth != "require" || len(tl.ClientCAPEM) == 0 || tl.SessionTickets {
		t.Errorf("client_auth %q, CA %d bytes, session_tickets %v", tl.ClientAuth, len(tl.ClientCAPEM), tl.SessionTickets)
	}
	js, _ := json.Marshal(cfg)
	if strings.Contains(string(js), "client-ca.pem") {
		t.Error("the workers' JSON names the client CA file")
	}
	def, err := tlsConfig(t, dir, "    certificate {\n      cert_file = \"a.pem\"\n      key_file  = \"a.key\"\n    }\n")
	if err != nil {
		t.Fatal(err)
	}
	if d := def.Listeners[0].TLS; d.ClientAuth != "none" || !d.SessionTickets || d.MinVersion != "1.2" {
		t.Errorf("defaults: client_auth %q, session_tickets %v, min_version %q", d.ClientAuth, d.SessionTickets, d.MinVersion)
	}
}

// An upstream tls block: files read by the master into PEM; a client
// certificate needs both files; insecure_skip_verify is warned.
func TestUpstreamTLS(t *testing.T) {
	dir := tlsFiles(t)
	load := func(block string) (*config.Config, error) {
		path := filepath.Join(dir, "up.hcl")
		src := "listener \"l\" { address = \"127.0.0.1:1000\" }\nupstream \"app\" {\n  server \"10.0.0.1:443\" {}\n  tls {\n" + block + "  }\n}\nroute \"r\" { upstream = \"app\" }\n"
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return config.Load(path)
	}
	cfg, err := load("    server_name = \"api.internal\"\n    ca_file = \"client-ca.pem\"\n    cert_file = \"b.pem\"\n    key_file = \"b.key\"\n")
	if err != nil {
		t.Fatal(err)
	}
	ut := cfg.Upstreams[0].TLS
	if ut == nil || ut.ServerName != "api.internal" || len(ut.CAPEM) == 0 || ut.ClientCert == nil ||
		len(ut.ClientCert.CertPEM) == 0 || len(ut.ClientCert.KeyPEM) == 0 {
		t.Fatalf("upstream tls = %+v", ut)
	}
	if c, err := ut.ClientConfig("10.0.0.1:443"); err != nil || c.ServerName != "api.internal" || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Errorf("ClientConfig: %v %+v", err, c)
	}
	if js, _ := json.Marshal(cfg); strings.Contains(string(js), "b.key") || strings.Contains(string(js), "client-ca.pem") {
		t.Error("the workers' JSON names a file of the master's")
	}

	cfg, err = load("    insecure_skip_verify = true\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "accepts any certificate") {
		t.Errorf("warnings %v", cfg.Warnings)
	}
	if c, _ := cfg.Upstreams[0].TLS.ClientConfig("10.0.0.1:443"); c.ServerName != "10.0.0.1" {
		t.Errorf("default server name %q, want the server's host", c.ServerName)
	}

	_, err = load("    cert_file = \"b.pem\"\n")
	if err == nil || !strings.Contains(err.Error(), "both cert_file and key_file") {
		t.Errorf("a certificate without its key: %v", err)
	}
}
