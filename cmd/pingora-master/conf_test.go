// The test configuration: one HCL template whose generation number shows
// in the answers, so a test sees which config is served.

package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"text/template"
)

// confParams are the knobs of the test config; every generation of a test
// changes Gen, which the config makes visible in answers.
type confParams struct {
	Dir      string
	Port     int
	Backend  string
	DeadAddr string // a loopback address nothing listens on: 502s on /dead/
	Gen      int
	Workers  int
	Shutdown string // shutdown_timeout
	LogLevel string
	// ReusePort sets reuseport = true on the "public" listener.
	ReusePort bool
	Extra     string // appended verbatim
}

// confTemplate is the HCL of issue 2's schema. /gen answers by itself with
// the generation (the new config visibly served); /app/ proxies to the
// backend and sets X-Config-Gen.
var confTemplate = template.Must(template.New("conf").Parse(`# pingora-master integration test, generation {{.Gen}}
pid_file         = "{{.Dir}}/run/pingora.pid"
user             = "nobody"
group            = "nogroup"
workers          = {{.Workers}}
shutdown_timeout = "{{.Shutdown}}"

log {
  file  = "{{.Dir}}/log/error.log"
  level = "{{.LogLevel}}"
}

access_log {
  file           = "{{.Dir}}/log/access.log"
  flush_interval = "100ms"
}

listener "public" {
  address           = "127.0.0.1:{{.Port}}"
  keepalive_timeout = "5s"
{{- if .ReusePort}}
  reuseport         = true
{{- end}}
}

upstream "app" {
  server "{{.Backend}}" {}
}

upstream "dead" {
  server "{{.DeadAddr}}" {
    max_fails = 0
  }
}

route "app" {
  path_prefix      = "/app/"
  upstream         = "app"
  response_headers = { "X-Config-Gen" = "{{.Gen}}" }
}

route "dead" {
  path_prefix = "/dead/"
  upstream    = "dead"
}

route "gen" {
  path_prefix = "/gen"
  respond {
    status = 200
    body   = "gen {{.Gen}}"
  }
}
{{.Extra}}`))

// WriteConfig renders p into the instance's config file (atomically, as an
// operator's editor or config management would).
func (in *instance) WriteConfig(p confParams) {
	in.tb.Helper()
	in.Params = p
	var b bytes.Buffer
	if err := confTemplate.Execute(&b, p); err != nil {
		in.tb.Fatal(err)
	}
	in.WriteConfigText(b.String())
}

// ConfigText renders p without writing it.
func (in *instance) ConfigText(p confParams) string {
	var b bytes.Buffer
	if err := confTemplate.Execute(&b, p); err != nil {
		in.tb.Fatal(err)
	}
	return b.String()
}

// WriteConfigText replaces the config file with text.
func (in *instance) WriteConfigText(text string) {
	in.tb.Helper()
	tmp := in.Conf + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		in.tb.Fatal(err)
	}
	if err := os.Rename(tmp, in.Conf); err != nil {
		in.tb.Fatal(err)
	}
}

// SetGen writes the current config with generation gen.
func (in *instance) SetGen(gen int) {
	p := in.Params
	p.Gen = gen
	in.WriteConfig(p)
}

// renderConf renders p for a test that needs no instance.
func renderConf(t *testing.T, p confParams) string {
	var b strings.Builder
	if err := confTemplate.Execute(&b, p); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
