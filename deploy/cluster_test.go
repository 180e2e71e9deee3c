package deploy_test

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/pingora-go/pingora/config"
)

// Neither Docker, Kubernetes nor Nomad runs here. What can be checked is
// checked: the configs they carry load with -t, and the timeouts, ports,
// probes and signals in the manifests agree with those configs.

const (
	k8sYAML   = "kubernetes/pingora.yaml"
	k8sHCL    = "kubernetes/pingora.hcl"
	nomadJob  = "nomad/pingora.nomad.hcl"
	dockerDir = "docker"
	dockerHCL = "docker/pingora.hcl"
)

// configMapData extracts the `pingora.hcl: |` block scalar of the ConfigMap
// in the manifest (YAML's clip chomping: one final newline).
func configMapData(t *testing.T, manifest string) string {
	t.Helper()
	lines := strings.Split(manifest, "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == "pingora.hcl: |" {
			start = i + 1
			break
		}
	}
	if start < 0 {
		t.Fatalf("%s: no `pingora.hcl: |` in the ConfigMap", k8sYAML)
	}
	const indent = "    "
	var b strings.Builder
	for _, l := range lines[start:] {
		if strings.TrimSpace(l) != "" && !strings.HasPrefix(l, indent) {
			break
		}
		b.WriteString(strings.TrimPrefix(l, indent))
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// listenerPort is the port of the container config's only listener with
// TLS (tls true) or without.
func listenerPort(t *testing.T, cfg *config.Config, tls bool) int {
	t.Helper()
	var found []config.Listener
	for _, l := range cfg.Listeners {
		if (l.TLS != nil) == tls {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one listener with TLS %v in the container config, got %d", tls, len(found))
	}
	_, port, err := net.SplitHostPort(found[0].Address)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
}

// yamlItems returns the keys of every list item `- name: NAME` of the
// manifest, nested keys joined with dots ("secret.defaultMode"), comments
// left out. Enough YAML for the manifest's few lists of named items.
func yamlItems(manifest, name string) []map[string]string {
	lines := strings.Split(manifest, "\n")
	var items []map[string]string
	for i, l := range lines {
		s := strings.TrimLeft(l, " ")
		if s != "- name: "+name {
			continue
		}
		keyIndent := len(l) - len(s) + 2
		item := map[string]string{"name": name}
		type parent struct {
			indent int
			key    string
		}
		var parents []parent
		for _, l := range lines[i+1:] {
			s := strings.TrimLeft(l, " ")
			if s == "" || strings.HasPrefix(s, "#") {
				continue
			}
			indent := len(l) - len(s)
			if indent < keyIndent || strings.HasPrefix(s, "- ") {
				break
			}
			key, value, _ := strings.Cut(s, ":")
			value, _, _ = strings.Cut(value, " #")
			for len(parents) > 0 && parents[len(parents)-1].indent >= indent {
				parents = parents[:len(parents)-1]
			}
			for j := len(parents) - 1; j >= 0; j-- {
				key = parents[j].key + "." + key
			}
			if value = strings.TrimSpace(value); value == "" {
				parents = append(parents, parent{indent, strings.TrimSpace(s[:strings.Index(s, ":")])})
				continue
			}
			item[key] = value
		}
		items = append(items, item)
	}
	return items
}

// hasYAMLItem reports whether the manifest has a list item `- name: NAME`
// with all of want's keys and values.
func hasYAMLItem(manifest, name string, want map[string]string) bool {
	for _, item := range yamlItems(manifest, name) {
		ok := true
		for k, v := range want {
			ok = ok && item[k] == v
		}
		if ok {
			return true
		}
	}
	return false
}

// writeWithCert writes the config file src into a temporary directory with
// prefix, where its certificate and key are read, moved into it, and a new
// certificate there as certName and keyName. It returns the path.
func writeWithCert(t *testing.T, src, prefix, certName, keyName string) string {
	t.Helper()
	text := readFile(t, src)
	if !strings.Contains(text, prefix+certName) || !strings.Contains(text, prefix+keyName) {
		t.Fatalf("%s does not read %s%s and %s%s: update this test with it", src, prefix, certName, prefix, keyName)
	}
	dir := t.TempDir()
	writeCert(t, filepath.Join(dir, certName), filepath.Join(dir, keyName), exampleNames...)
	path := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, prefix, dir+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// yamlInt finds `key: N` in the manifest.
func yamlInt(t *testing.T, src, key string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(key) + `:\s*(\d+)\b`).FindStringSubmatch(src)
	if m == nil {
		t.Fatalf("%s: no %s", k8sYAML, key)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// The ConfigMap carries exactly kubernetes/pingora.hcl, which loads with a
// certificate where the pod mounts the TLS Secret; the pod gives the drain
// time to finish, probes a route the config answers, and exposes both
// listeners; the Secret is mounted read-only, readable by its owner (root,
// the master) only, at the path the config reads.
func TestKubernetesManifest(t *testing.T) {
	manifest := readFile(t, k8sYAML)
	if got, want := configMapData(t, manifest), readFile(t, k8sHCL); got != want {
		t.Fatalf("the ConfigMap's pingora.hcl differs from %s: keep them identical", k8sHCL)
	}
	const tlsMount = "/etc/pingora/tls"
	conf := writeWithCert(t, k8sHCL, tlsMount+"/", "tls.crt", "tls.key") // a kubernetes.io/tls Secret's keys
	checkConfig(t, conf)
	cfg := loadConfig(t, conf)

	for _, kind := range []string{"ConfigMap", "Deployment", "Service"} {
		if !regexp.MustCompile(`(?m)^kind: ` + kind + `$`).MatchString(manifest) {
			t.Errorf("no %s in %s", kind, k8sYAML)
		}
	}
	grace := time.Duration(yamlInt(t, manifest, "terminationGracePeriodSeconds")) * time.Second
	preStop := time.Duration(yamlInt(t, manifest, "seconds")) * time.Second // preStop sleep
	if grace <= preStop+cfg.ShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %v <= preStop %v + shutdown_timeout %v: the kubelet would SIGKILL the drain",
			grace, preStop, cfg.ShutdownTimeout)
	}
	for name, port := range map[string]int{"http": listenerPort(t, cfg, false), "https": listenerPort(t, cfg, true)} {
		if !hasYAMLItem(manifest, name, map[string]string{"containerPort": strconv.Itoa(port)}) {
			t.Errorf("no container port %s: %d, the config's listener", name, port)
		}
	}
	if !hasYAMLItem(manifest, "https", map[string]string{"port": "443", "targetPort": "https"}) {
		t.Errorf("the Service has no port 443 to the container's https port")
	}
	if !hasYAMLItem(manifest, "tls", map[string]string{"mountPath": tlsMount, "readOnly": "true"}) {
		t.Errorf("no read-only volume mount tls at %s", tlsMount)
	}
	if !hasYAMLItem(manifest, "tls", map[string]string{"secret.secretName": "pingora-tls", "secret.defaultMode": "0400"}) {
		t.Errorf("volume tls is not the Secret pingora-tls with defaultMode 0400 (the master, root, reads it; nobody else)")
	}
	if !strings.Contains(manifest, "kubectl create secret tls pingora-tls ") {
		t.Errorf("%s does not say how to make the Secret pingora-tls (kubernetes.io/tls)", k8sYAML)
	}
	probe := regexp.MustCompile(`(?m)^\s*path:\s*(\S+)`).FindAllStringSubmatch(manifest, -1)
	if len(probe) == 0 {
		t.Fatal("no probe path")
	}
	for _, p := range probe {
		if !hasRespondRoute(cfg.Routes, p[1]) {
			t.Errorf("probe path %s is not answered by a respond route of the config", p[1])
		}
	}
	for _, want := range []string{
		`args: ["-c", "/etc/pingora/pingora.hcl"]`,
		"mountPath: /etc/pingora\n",
		`add: ["SETUID", "SETGID", "KILL", "SETPCAP"]`,
		"runAsUser: 0",
	} {
		if !strings.Contains(manifest, want) {
			t.Errorf("%s lacks %q", k8sYAML, want)
		}
	}
}

// nomadBlock returns the only block of type typ in body.
func nomadBlock(t *testing.T, body *hclsyntax.Body, typ string) *hclsyntax.Body {
	t.Helper()
	var found *hclsyntax.Body
	for _, b := range body.Blocks {
		if b.Type == typ {
			if found != nil {
				t.Fatalf("%s: more than one %s block", nomadJob, typ)
			}
			found = b.Body
		}
	}
	if found == nil {
		t.Fatalf("%s: no %s block", nomadJob, typ)
	}
	return found
}

// nomadAttr evaluates a constant attribute of the job.
func nomadAttr(t *testing.T, body *hclsyntax.Body, name string) cty.Value {
	t.Helper()
	a, ok := body.Attributes[name]
	if !ok {
		t.Fatalf("%s: no attribute %s", nomadJob, name)
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("%s: %s: %s", nomadJob, name, diags.Error())
	}
	return v
}

func nomadString(t *testing.T, body *hclsyntax.Body, name string) string {
	t.Helper()
	v := nomadAttr(t, body, name)
	if v.Type() != cty.String {
		t.Fatalf("%s: %s is not a string", nomadJob, name)
	}
	return v.AsString()
}

// nomadTemplates returns the task's template blocks by destination.
func nomadTemplates(t *testing.T, task *hclsyntax.Body) map[string]*hclsyntax.Body {
	t.Helper()
	tmpls := map[string]*hclsyntax.Body{}
	for _, b := range task.Blocks {
		if b.Type == "template" {
			tmpls[nomadString(t, b.Body, "destination")] = b.Body
		}
	}
	return tmpls
}

// The Nomad job is valid HCL; its templates, rendered as Nomad would (Go
// text/template with env, nomadService and nomadVar), are a config that
// loads and the certificate and key it reads; every template change is a
// reload (SIGHUP); the certificate and key are root's only (0600) in the
// task's secrets directory; SIGTERM and a kill_timeout that outlasts the
// drain yet stays under Nomad's default max_kill_timeout (30s).
func TestNomadJob(t *testing.T) {
	src := []byte(readFile(t, nomadJob))
	file, diags := hclsyntax.ParseConfig(src, nomadJob, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s", diags.Error())
	}
	job := nomadBlock(t, file.Body.(*hclsyntax.Body), "job")
	group := nomadBlock(t, job, "group")
	task := nomadBlock(t, group, "task")
	tmpls := nomadTemplates(t, task)

	if got := nomadString(t, task, "kill_signal"); got != "SIGTERM" {
		t.Errorf("kill_signal = %q, want SIGTERM", got)
	}
	for dest, tmpl := range tmpls {
		if got := nomadString(t, tmpl, "change_mode"); got != "signal" {
			t.Errorf("template %s: change_mode = %q, want signal", dest, got)
		}
		if got := nomadString(t, tmpl, "change_signal"); got != "SIGHUP" {
			t.Errorf("template %s: change_signal = %q, want SIGHUP (reload)", dest, got)
		}
	}
	var args []string
	for _, v := range nomadAttr(t, nomadBlock(t, task, "config"), "args").AsValueSlice() {
		args = append(args, v.AsString())
	}
	if len(args) != 2 || args[0] != "-c" || tmpls[strings.TrimPrefix(args[1], "/")] == nil {
		t.Fatalf("args %q do not load a rendered template (%d templates)", args, len(tmpls))
	}
	confDest := strings.TrimPrefix(args[1], "/")

	// Render the templates as consul-template would, with two instances of
	// the "app" service and a certificate in the task's variable, into a
	// task directory (the container sees local/ and secrets/ at the root).
	type service struct {
		Address string
		Port    int
	}
	certDir := t.TempDir()
	writeCert(t, filepath.Join(certDir, "crt"), filepath.Join(certDir, "key"), exampleNames...)
	const taskVar = "nomad/jobs/pingora/proxy/pingora" // job, group, task: the task's own
	funcs := template.FuncMap{
		"env": func(name string) string {
			return map[string]string{"NOMAD_PORT_http": "8080", "NOMAD_PORT_https": "8443"}[name]
		},
		"nomadService": func(name string) []service {
			if name != "app" {
				t.Errorf("template asks for service %q", name)
			}
			return []service{{"10.0.0.1", 8080}, {"10.0.0.2", 8081}}
		},
		"nomadVar": func(path string) map[string]string {
			if path != taskVar {
				t.Errorf("template reads variable %q; the task may read %s without an ACL policy", path, taskVar)
			}
			return map[string]string{"cert": readFile(t, filepath.Join(certDir, "crt")), "key": readFile(t, filepath.Join(certDir, "key"))}
		},
	}
	taskDir := t.TempDir()
	rendered := map[string]string{}
	for dest, tmpl := range tmpls {
		tp, err := template.New(dest).Funcs(funcs).Parse(nomadString(t, tmpl, "data"))
		if err != nil {
			t.Fatalf("template %s: %v", dest, err)
		}
		var out bytes.Buffer
		if err := tp.Execute(&out, nil); err != nil {
			t.Fatalf("render template %s: %v", dest, err)
		}
		text := out.String()
		if dest == confDest {
			text = strings.ReplaceAll(text, `"/secrets/`, `"`+taskDir+`/secrets/`)
		}
		rendered[dest] = text
		path := filepath.Join(taskDir, dest)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(taskDir, confDest)
	checkConfig(t, path)
	cfg := loadConfig(t, path)
	if cfg.User != "pingora" {
		t.Errorf("the Nomad job's workers run as %q, want pingora (the image's own user)", cfg.User)
	}
	if n := len(cfg.Upstreams[0].Servers); n != 2 {
		t.Errorf("rendered upstream has %d servers, want the 2 service instances:\n%s", n, rendered[confDest])
	}
	listenerPort(t, cfg, false)
	listenerPort(t, cfg, true)
	for _, l := range cfg.Listeners {
		if l.TLS == nil {
			continue
		}
		for _, c := range l.TLS.Certificates {
			for _, f := range []string{c.CertFile, c.KeyFile} {
				dest, _ := filepath.Rel(taskDir, f)
				tmpl := tmpls[dest]
				switch {
				case tmpl == nil:
					t.Errorf("listener %q reads %s, which no template renders", l.Name, f)
				case !strings.HasPrefix(dest, "secrets/"):
					t.Errorf("template %s: not in secrets/, the task's private directory", dest)
				case nomadString(t, tmpl, "perms") != "0600":
					t.Errorf("template %s: perms %q, want \"0600\" (the master, root, reads it; nobody else)", dest, nomadString(t, tmpl, "perms"))
				}
			}
		}
	}
	ports := nomadBlock(t, group, "network")
	var portNames []string
	for _, b := range ports.Blocks {
		if b.Type == "port" {
			portNames = append(portNames, b.Labels[0])
		}
	}
	var mapped []string
	for _, v := range nomadAttr(t, nomadBlock(t, task, "config"), "ports").AsValueSlice() {
		mapped = append(mapped, v.AsString())
	}
	if !slices.Contains(portNames, "https") || !slices.Contains(mapped, "https") {
		t.Errorf("port https: in the network block %v, mapped into the container %v; want both", portNames, mapped)
	}

	kill, err := time.ParseDuration(nomadString(t, task, "kill_timeout"))
	if err != nil {
		t.Fatal(err)
	}
	if kill <= cfg.ShutdownTimeout || kill > 30*time.Second {
		t.Errorf("kill_timeout %v: want above shutdown_timeout %v and at most 30s", kill, cfg.ShutdownTimeout)
	}
	check := nomadBlock(t, nomadBlock(t, group, "service"), "check")
	if p := nomadString(t, check, "path"); !hasRespondRoute(cfg.Routes, p) {
		t.Errorf("service check path %s is not answered by a respond route", p)
	}
}

// dockerInstructions returns the Dockerfile's instructions, continuation
// lines joined, comments dropped.
func dockerInstructions(t *testing.T) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	for _, l := range strings.Split(readFile(t, filepath.Join(dockerDir, "Dockerfile")), "\n") {
		s := strings.TrimSpace(l)
		if cur.Len() == 0 && (s == "" || strings.HasPrefix(s, "#")) {
			continue
		}
		if strings.HasSuffix(s, "\\") {
			cur.WriteString(strings.TrimSuffix(s, "\\") + " ")
			continue
		}
		cur.WriteString(s)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

// The image builds the real command, ships a config that loads, runs the
// master as root (it drops the workers itself) as PID 1 with the exec form,
// and stops it with SIGTERM. (No Docker daemon here: a static check.)
func TestDockerfile(t *testing.T) {
	ins := dockerInstructions(t)
	var froms []string
	final := map[string]string{}
	for _, in := range ins {
		op, arg, _ := strings.Cut(in, " ")
		if op == "FROM" {
			froms = append(froms, arg)
			final = map[string]string{}
		}
		final[op] = arg
	}
	if len(froms) < 2 || !strings.HasSuffix(froms[0], " AS build") {
		t.Errorf("want a multi-stage build starting with `FROM ... AS build`, got %q", froms)
	}
	want := map[string]string{
		"ENTRYPOINT": `["/usr/local/sbin/pingora-master"]`,
		"CMD":        `["-c", "/etc/pingora/pingora.hcl"]`,
		"STOPSIGNAL": "SIGTERM",
		"USER":       "0:0",
	}
	for op, v := range want {
		if final[op] != v {
			t.Errorf("final stage %s %q, want %q", op, final[op], v)
		}
	}
	checkConfig(t, dockerHCL)
	cfg := loadConfig(t, dockerHCL)
	if len(cfg.Listeners) != 1 || cfg.Listeners[0].TLS != nil {
		t.Errorf("the image's config has %d listeners; want one, plain HTTP (the image has no certificate)", len(cfg.Listeners))
	}
	if got, want := final["EXPOSE"], strconv.Itoa(listenerPort(t, cfg, false)); got != want {
		t.Errorf("EXPOSE %q, but the image's config listens on %s", got, want)
	}

	all := strings.Join(ins, "\n")
	// The image's config runs workers as pingora: the image must have it.
	if cfg.User != "pingora" {
		t.Errorf("the image's config runs workers as %q, want pingora", cfg.User)
	}
	if !strings.Contains(all, "pingora:x:10001:10001:") || !strings.Contains(all, "pingora:x:10001:' >> /out/etc/group") {
		t.Errorf("the image does not add user and group pingora to /etc/passwd and /etc/group")
	}
	// The image follows make build's default runtime, and a patched
	// artifact checks its own wake order.
	if !strings.Contains(all, "ARG RUNTIME_PATCH=0") {
		t.Errorf("the image build does not default to make build's runtime (ARG RUNTIME_PATCH=0)")
	}
	if !strings.Contains(all, `if [ -n "$overlay" ] || [ "${RUNTIME_PATCH}" = required ]; then`) ||
		!strings.Contains(all, "/out/usr/local/sbin/pingora-master -check-wake-order") {
		t.Errorf("a patched image build does not check the artifact's wake order")
	}
	for _, p := range []string{"./cmd/pingora-master", "deploy/" + dockerHCL, "deploy/build/runtime-overlay.sh"} {
		if !strings.Contains(all, p) {
			t.Errorf("the Dockerfile no longer uses %s", p)
		}
		if _, err := os.Stat(filepath.Join("..", p)); err != nil {
			t.Errorf("the Dockerfile uses %s: %v", p, err)
		}
	}
	ignore := readFile(t, filepath.Join(dockerDir, "Dockerfile.dockerignore"))
	for _, p := range []string{".git", "bin"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(p) + `$`).MatchString(ignore) {
			t.Errorf("Dockerfile.dockerignore does not leave out %s", p)
		}
	}
}
