package deploy_test

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
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

func listenerPort(t *testing.T, cfg *config.Config) int {
	t.Helper()
	if len(cfg.Listeners) != 1 {
		t.Fatalf("want one listener in the container config, got %d", len(cfg.Listeners))
	}
	_, port, err := net.SplitHostPort(cfg.Listeners[0].Address)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
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

// The ConfigMap carries exactly kubernetes/pingora.hcl, which loads; the
// pod gives the drain time to finish and probes a route the config answers.
func TestKubernetesManifest(t *testing.T) {
	manifest := readFile(t, k8sYAML)
	if got, want := configMapData(t, manifest), readFile(t, k8sHCL); got != want {
		t.Fatalf("the ConfigMap's pingora.hcl differs from %s: keep them identical", k8sHCL)
	}
	checkConfig(t, k8sHCL)
	cfg := loadConfig(t, k8sHCL)

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
	if port := yamlInt(t, manifest, "containerPort"); port != listenerPort(t, cfg) {
		t.Errorf("containerPort %d, but the config listens on %d", port, listenerPort(t, cfg))
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

// The Nomad job is valid HCL; its template, rendered as Nomad would (Go
// text/template with env and nomadService), is a config that loads; SIGHUP
// on a re-render, SIGTERM and a kill_timeout that outlasts the drain yet
// stays under Nomad's default max_kill_timeout (30s).
func TestNomadJob(t *testing.T) {
	src := []byte(readFile(t, nomadJob))
	file, diags := hclsyntax.ParseConfig(src, nomadJob, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s", diags.Error())
	}
	job := nomadBlock(t, file.Body.(*hclsyntax.Body), "job")
	group := nomadBlock(t, job, "group")
	task := nomadBlock(t, group, "task")
	tmpl := nomadBlock(t, task, "template")

	if got := nomadString(t, task, "kill_signal"); got != "SIGTERM" {
		t.Errorf("kill_signal = %q, want SIGTERM", got)
	}
	if got := nomadString(t, tmpl, "change_mode"); got != "signal" {
		t.Errorf("template change_mode = %q, want signal", got)
	}
	if got := nomadString(t, tmpl, "change_signal"); got != "SIGHUP" {
		t.Errorf("template change_signal = %q, want SIGHUP (reload)", got)
	}
	var args []string
	for _, v := range nomadAttr(t, nomadBlock(t, task, "config"), "args").AsValueSlice() {
		args = append(args, v.AsString())
	}
	dest := nomadString(t, tmpl, "destination")
	if want := []string{"-c", "/" + dest}; strings.Join(args, " ") != strings.Join(want, " ") {
		t.Errorf("args %q do not load the rendered template %q (want %q)", args, dest, want)
	}

	// Render the template as consul-template would, with two instances of
	// the "app" service.
	type service struct {
		Address string
		Port    int
	}
	funcs := template.FuncMap{
		"env": func(name string) string {
			return map[string]string{"NOMAD_PORT_http": "8080"}[name]
		},
		"nomadService": func(name string) []service {
			if name != "app" {
				t.Errorf("template asks for service %q", name)
			}
			return []service{{"10.0.0.1", 8080}, {"10.0.0.2", 8081}}
		},
	}
	tp, err := template.New("pingora.hcl").Funcs(funcs).Parse(nomadString(t, tmpl, "data"))
	if err != nil {
		t.Fatalf("template data: %v", err)
	}
	var rendered bytes.Buffer
	if err := tp.Execute(&rendered, nil); err != nil {
		t.Fatalf("render template: %v", err)
	}
	path := filepath.Join(t.TempDir(), "pingora.hcl")
	if err := os.WriteFile(path, rendered.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	checkConfig(t, path)
	cfg := loadConfig(t, path)
	if cfg.User != "pingora" {
		t.Errorf("the Nomad job's workers run as %q, want pingora (the image's own user)", cfg.User)
	}
	if n := len(cfg.Upstreams[0].Servers); n != 2 {
		t.Errorf("rendered upstream has %d servers, want the 2 service instances:\n%s", n, rendered.String())
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
	cfg := loadConfig(t, k8sHCL)
	if got, want := final["EXPOSE"], strconv.Itoa(listenerPort(t, cfg)); got != want {
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
	for _, p := range []string{"./cmd/pingora-master", "deploy/kubernetes/pingora.hcl", "deploy/build/runtime-overlay.sh"} {
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
