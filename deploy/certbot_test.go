package deploy_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const certbotHook = "certbot/pingora-reload"

// runHook runs the deploy hook as certbot does (RENEWED_LINEAGE set), on
// the test's binary and config, and returns its output and exit code.
func runHook(t *testing.T, conf, lineage string) (string, int) {
	t.Helper()
	bin := binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, certbotHook)
	cmd.Env = append(testEnv(), "PINGORA_MASTER="+bin, "PINGORA_CONFIG="+conf, "RENEWED_LINEAGE="+lineage)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish in 30s; output:\n%s", certbotHook, out.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", certbotHook, err)
	}
	return out.String(), 0
}

// The hook is what its install line says: executable, valid sh, and by
// default it reloads the installed master with the installed config.
func TestCertbotHookInstalls(t *testing.T) {
	st, err := os.Stat(certbotHook)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable: certbot skips it", certbotHook)
	}
	if out, err := exec.Command("sh", "-n", certbotHook).CombinedOutput(); err != nil {
		t.Fatalf("sh -n %s: %v\n%s", certbotHook, err, out)
	}
	src := readFile(t, certbotHook)
	for _, want := range []string{
		"/etc/letsencrypt/renewal-hooks/deploy/",
		"${PINGORA_MASTER:-" + installedBin + "}",
		"${PINGORA_CONFIG:-" + installedCfg + "}",
		`"$bin" -s reload -c "$conf"`,
	} {
		if !strings.Contains(src, want) {
			t.Errorf("%s lacks %q", certbotHook, want)
		}
	}
}

// A renewal reaches clients through the hook: certbot replaces the files in
// the example's certificate directory, the hook reloads the running master,
// and a new connection gets the new certificate. A renewal gone wrong (a
// certificate with another certificate's key) makes the hook fail with the
// master's diagnostic, and the previous certificate is still served.
func TestCertbotHookServesRenewedCertificate(t *testing.T) {
	e := startExample(t)
	lineage := filepath.Dir(e.cert.certFile)
	const host = "www.example.com"
	serial, err := servedSerial(e.https, host)
	if err != nil || serial.Cmp(e.cert.cert.SerialNumber) != 0 {
		t.Fatalf("before renewal: serial %v (%v), want %v", serial, err, e.cert.cert.SerialNumber)
	}

	renewed := writeCert(t, e.cert.certFile, e.cert.keyFile, exampleNames...)
	if out, code := runHook(t, e.conf, lineage); code != 0 {
		t.Fatalf("hook after a renewal: exit %d, want 0; output:\n%s", code, out)
	}
	if serial, err := servedSerial(e.https, host); err != nil || serial.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("after the hook: serial %v (%v), want the renewed %v (old %v)", serial, err, renewed.SerialNumber, e.cert.cert.SerialNumber)
	}

	// A certificate whose key is not the one in privkey.pem.
	other := t.TempDir()
	writeCert(t, filepath.Join(other, "cert.pem"), filepath.Join(other, "key.pem"), exampleNames...)
	if err := os.Rename(filepath.Join(other, "cert.pem"), e.cert.certFile); err != nil {
		t.Fatal(err)
	}
	out, code := runHook(t, e.conf, lineage)
	if code == 0 || !strings.Contains(out, e.cert.keyFile) || !strings.Contains(out, "does not match") ||
		!strings.Contains(out, "pingora-reload: ") {
		t.Errorf("hook after a mismatched renewal: exit %d, want non-zero with its own line and the master's diagnostic naming %s; output:\n%s",
			code, e.cert.keyFile, out)
	}
	if serial, err := servedSerial(e.https, host); err != nil || serial.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("after the failed reload: serial %v (%v), want the previous %v still served", serial, err, renewed.SerialNumber)
	}
}
