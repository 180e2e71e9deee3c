package master

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pingora-go/pingora/config"
)

// A certificate within 14 days of its end is a warning naming it; one
// further out is not.
func TestExpiringCertificateWarns(t *testing.T) {
	out, err := os.Create(filepath.Join(t.TempDir(), "master.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	m := &Master{log: newLogger(config.Log{Level: "info"}, out)}
	now := time.Now()
	cfg := &config.Config{Listeners: []config.Listener{{Name: "https", TLS: &config.TLS{Certificates: []config.Certificate{
		{CertFile: "/etc/ssl/soon.pem", Names: []string{"soon.example"}, NotAfter: now.Add(10 * 24 * time.Hour)},
		{CertFile: "/etc/ssl/later.pem", Names: []string{"later.example"}, NotAfter: now.Add(30 * 24 * time.Hour)},
	}}}}}
	m.warnExpiringCerts(cfg, now)
	b, _ := os.ReadFile(out.Name())
	log := string(b)
	if !strings.Contains(log, "TLS certificate expires soon") || !strings.Contains(log, "/etc/ssl/soon.pem") {
		t.Errorf("no warning for the certificate 10 days from its end:\n%s", log)
	}
	if strings.Contains(log, "later.pem") {
		t.Errorf("a warning for a certificate 30 days from its end:\n%s", log)
	}
}
