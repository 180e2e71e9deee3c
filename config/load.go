package config

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
)

//go:embed default.hcl
var defaultSource []byte

// DefaultFilename is the name diagnostics give the embedded default config.
// Relative paths in it resolve against the working directory.
const DefaultFilename = "<default>"

// DefaultSource returns the embedded default configuration (default.hcl):
// a proxy that needs no root and no backend, for `make run` and first steps.
// The slice is a copy: callers may keep or change it.
func DefaultSource() []byte {
	return append([]byte(nil), defaultSource...)
}

// UnprivilegedPIDFile is the embedded default's PID file for a master that
// does not run as root, which cannot create /run/pingora. Its lock file
// and control socket go beside it, in /tmp.
const UnprivilegedPIDFile = "/tmp/pingora-master.pid"

// Default parses the embedded default configuration (DefaultSource). Its
// PID file, and the lock file and control socket beside it, default as in
// any config to /run/pingora when privileged (the master runs as root:
// never a world-writable directory such as /tmp, where another user could
// plant what root then opens), and to UnprivilegedPIDFile otherwise, so
// that `make run` works for any user.
func Default(privileged bool) (*Config, error) {
	if privileged {
		return Parse(defaultSource, DefaultFilename)
	}
	return parse(defaultSource, DefaultFilename, UnprivilegedPIDFile)
}

// Load reads the config file at path, then parses, defaults and validates it
// as Parse does. Config.File is the absolute path, and relative paths in the
// file resolve against the file's directory (as nginx resolves against its
// prefix), so the result does not depend on the working directory.
//
// A file that cannot be read is a plain error naming the path; a file with
// problems is a *Error listing all of them.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	src, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(src, abs)
	if err != nil {
		return nil, err
	}
	cfg.File = abs
	return cfg, nil
}

// Parse parses, defaults and validates a config from src. filename is the
// name diagnostics use; relative paths in the config resolve against its
// directory (the working directory for a bare name such as DefaultFilename).
// Config.File is left empty: only Load knows the source is a file on disk.
//
// Every problem found is reported at once in a *Error; warnings (which do
// not stop the load) are in Config.Warnings.
func Parse(src []byte, filename string) (*Config, error) {
	return parse(src, filename, defaultPIDFile)
}

// parse is Parse with the pid_file default given.
func parse(src []byte, filename, pidFile string) (*Config, error) {
	// A fresh parser each time: hclparse caches files by name, and a reload
	// of the same path must see the new text.
	parser := hclparse.NewParser()
	file, diags := parser.ParseHCL(src, filename)
	fail := func(diags hcl.Diagnostics) error {
		sortDiagnostics(diags)
		return &Error{Diags: diags, Files: parser.Files()}
	}
	if diags.HasErrors() || file == nil {
		return nil, fail(diags)
	}

	var raw rawFile
	diags = append(diags, gohcl.DecodeBody(file.Body, evalContext(), &raw)...)

	baseDir, err := filepath.Abs(filepath.Dir(filename))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", filename, err)
	}
	b := &builder{baseDir: baseDir, fileRange: fileStart(file), unmatchable: map[*rawRoute]bool{}, pidFile: pidFile}
	b.diags = dropUnknownNoise(diags)
	b.forgetFailed(reflect.ValueOf(&raw))
	cfg := b.build(&raw)
	if b.diags.HasErrors() {
		return nil, fail(b.diags)
	}
	sortDiagnostics(b.diags)
	cfg.Warnings = warningLines(b.diags)
	return cfg, nil
}

// dropUnknownNoise removes gohcl's "value must be known" complaints. The
// config has no variables, so a value is unknown only when its expression
// failed (an unset env(), an unknown function), and that failure is already
// reported, better worded, next to it. Kept if it is the only error, so that
// an unknown value can never pass silently.
func dropUnknownNoise(diags hcl.Diagnostics) hcl.Diagnostics {
	isNoise := func(d *hcl.Diagnostic) bool {
		return d.Summary == "Unsuitable value type" && strings.HasSuffix(d.Detail, "value must be known")
	}
	other := false
	for _, d := range diags {
		if d.Severity == hcl.DiagError && !isNoise(d) {
			other = true
		}
	}
	if !other {
		return diags
	}
	var out hcl.Diagnostics
	for _, d := range diags {
		if !isNoise(d) {
			out = append(out, d)
		}
	}
	return out
}

// fileStart is the position diagnostics about the file as a whole (no
// listener at all, say) point at: its first character.
func fileStart(f *hcl.File) hcl.Range {
	r := f.Body.MissingItemRange()
	r.End = r.Start
	return r
}
