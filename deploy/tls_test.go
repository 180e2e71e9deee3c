package deploy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certbotLive is where deploy/pingora.hcl reads its certificate and key:
// certbot's files for example.com. Tests move it into a temporary directory.
const certbotLive = "/etc/letsencrypt/live/example.com/"

// exampleNames are the names of the example's certificate: the hosts its
// routes serve.
var exampleNames = []string{"example.com", "*.example.com"}

// writeCert writes a new self-signed ECDSA certificate for names (random
// serial) to certPath and its key to keyPath, with certbot's modes (key
// 0600), each by rename so that no reader sees half a file, and returns
// the certificate.
func writeCert(t *testing.T, certPath, keyPath string, names ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// Self-signed: the client trusts it as its own root.
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	writeAtomic(t, keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func writeAtomic(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// exampleCert is the throwaway certificate an example config was written
// with, and where it lives.
type exampleCert struct {
	cert              *x509.Certificate
	certFile, keyFile string
}

// writeExample writes deploy/pingora.hcl into dir as a test can load it:
// certbot's live directory moved to dir/live, holding a new certificate,
// and each key of repl replaced by its value (each must be in the file: a
// change to the example must not silently leave a test on the old text).
// Nothing else of the file changes.
func writeExample(t *testing.T, dir string, repl map[string]string) (string, exampleCert) {
	t.Helper()
	live := filepath.Join(dir, "live") + "/"
	if err := os.Mkdir(live, 0o700); err != nil {
		t.Fatal(err)
	}
	c := exampleCert{certFile: live + "fullchain.pem", keyFile: live + "privkey.pem"}
	c.cert = writeCert(t, c.certFile, c.keyFile, exampleNames...)

	src := readFile(t, "pingora.hcl")
	all := map[string]string{certbotLive: live}
	for old, repl := range repl {
		all[old] = repl
	}
	for old, repl := range all {
		if !strings.Contains(src, old) {
			t.Fatalf("pingora.hcl no longer contains %s: update this test with it", old)
		}
		src = strings.ReplaceAll(src, old, repl)
	}
	conf := filepath.Join(dir, "pingora.hcl")
	if err := os.WriteFile(conf, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf, c
}

// example is deploy/pingora.hcl with only its certificate moved (see
// writeExample), for the tests that load it and check what it says.
func example(t *testing.T) string {
	t.Helper()
	conf, _ := writeExample(t, t.TempDir(), nil)
	return conf
}

// httpsGet sends one GET for https://host/path to addr on a new connection,
// trusting only root and offering h2 and http/1.1 by ALPN, as a browser
// does. It returns the response (body read) and the body.
func httpsGet(addr, host, path string, root *x509.Certificate) (*http.Response, string, error) {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true, // a custom dialer or TLS config turns h2 off otherwise
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{
		Timeout:       5 * time.Second,
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Get("https://" + host + path)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

// servedSerial is the serial of the certificate a new TLS connection to
// addr gets for host. Nothing is verified: the point is which certificate
// is served, the old one included.
func servedSerial(addr, host string) (*big.Int, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: host, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}
