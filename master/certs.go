package master

import (
	"time"

	"github.com/pingora-go/pingora/config"
)

// Certificate expiry. The master read every TLS certificate; it warns
// while one is within certExpiryWarning of its end (at start, after each
// reload and once a day), so that a renewal that stopped working shows in
// the log weeks before clients refuse the site. /metrics has each
// certificate's end as pingora_tls_certificate_expiry_seconds.

const (
	certExpiryWarning = 14 * 24 * time.Hour
	certCheckEvery    = 24 * time.Hour
)

// warnExpiringCerts logs each certificate of cfg that ends within
// certExpiryWarning of now (or has ended).
func (m *Master) warnExpiringCerts(cfg *config.Config, now time.Time) {
	for _, l := range cfg.Listeners {
		if l.TLS == nil {
			continue
		}
		for _, c := range l.TLS.Certificates {
			left := c.NotAfter.Sub(now)
			if left > certExpiryWarning {
				continue
			}
			m.log.Warn("TLS certificate expires soon; renew it and reload",
				"listener", l.Name, "names", c.Names, "file", c.CertFile,
				"expires", c.NotAfter.UTC().Format(time.RFC3339), "left", left.Round(time.Hour))
		}
	}
}

// scheduleCertCheck repeats the expiry warning every certCheckEvery.
func (m *Master) scheduleCertCheck() {
	time.AfterFunc(certCheckEvery, func() {
		m.events <- func() {
			if m.stopping {
				return
			}
			m.warnExpiringCerts(m.cfg, time.Now())
			m.scheduleCertCheck()
		}
	})
}
