package master

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/pingora-go/pingora/config"
	"github.com/zclconf/go-cty/cty"
)

// Signals lists the `-s` commands, for -h.
var Signals = []struct{ Name, Help string }{
	{"reload", "reload the configuration; waits until the new workers serve"},
	{"upgrade", "binary upgrade; waits until the new master serves"},
	{"reopen", "reopen the log files"},
	{"stop", "fast stop"},
	{"quit", "graceful stop; waits until the master exited"},
	{"status", "print the master's and workers' state"},
}

// Control is `-s NAME`: it sends the command to the running master over
// its control socket and waits for the outcome. Exit code 0 on success, 1
// with the reason on stderr otherwise.
func Control(opts Options, name string) int {
	if !knownCommands[name] {
		fmt.Fprintf(opts.stderr(), "pingora-master: unknown signal %q (want reload, upgrade, reopen, stop, quit or status)\n", name)
		return 2
	}
	path, err := controlPath(opts.ConfigPath)
	if err != nil {
		fmt.Fprintf(opts.stderr(), "pingora-master: %v\n", err)
		return 1
	}
	resp, err := request(path, name)
	if err != nil {
		fmt.Fprintf(opts.stderr(), "pingora-master: %v\n", err)
		return 1
	}
	if !resp.OK {
		fmt.Fprintf(opts.stderr(), "pingora-master: %s\n", resp.Error)
		return 1
	}
	if resp.Status != nil {
		writeStatus(opts.stdout(), resp.Status, time.Now())
	} else if resp.Message != "" {
		fmt.Fprintln(opts.stdout(), resp.Message)
	}
	return 0
}

func request(path, name string) (*Response, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the master at %s (is it running?): %w", path, err)
	}
	defer conn.Close()
	b, _ := json.Marshal(Request{Command: name})
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("send %s: %w", name, err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: the master closed the connection without an answer", name)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("%s: bad answer from the master: %w", name, err)
	}
	return &resp, nil
}

// controlPath finds the control socket from the config. A config that no
// longer loads (the very mistake `-s reload` should report) is read
// leniently for control_socket and pid_file, so the master can still be
// reached and answer with the diagnostics.
func controlPath(cfgPath string) (string, error) {
	path, src, err := configSource(cfgPath)
	if err != nil {
		return "", err
	}
	var cfg *config.Config
	if path == "" {
		cfg, err = defaultConfig()
	} else {
		cfg, err = config.Load(path)
	}
	if err == nil {
		return cfg.ControlSocket, nil
	}
	return lenientControlPath(src, path), nil
}

// lenientControlPath applies config's defaults by hand: control_socket, or
// pingora.sock beside pid_file, relative paths against the file's
// directory.
func lenientControlPath(src []byte, file string) string {
	dir := filepath.Dir(file)
	get := func(name string) string {
		f, _ := hclsyntax.ParseConfig(src, file, hcl.InitialPos)
		if f == nil {
			return ""
		}
		body, ok := f.Body.(*hclsyntax.Body)
		if !ok || body.Attributes[name] == nil {
			return ""
		}
		v, diags := body.Attributes[name].Expr.Value(nil)
		if diags.HasErrors() || !v.Type().Equals(cty.String) || v.IsNull() || !v.IsKnown() {
			return ""
		}
		s := v.AsString()
		if s != "" && !filepath.IsAbs(s) {
			s = filepath.Join(dir, s)
		}
		return s
	}
	if s := get("control_socket"); s != "" {
		return s
	}
	pid := get("pid_file")
	if pid == "" {
		pid = "/run/pingora/pingora.pid"
	}
	return filepath.Join(filepath.Dir(pid), "pingora.sock")
}

// configSource returns the config's absolute path ("" for the embedded
// default) and its bytes.
func configSource(cfgPath string) (string, []byte, error) {
	if cfgPath == "" {
		if _, err := os.Stat(DefaultConfigPath); err != nil {
			return "", config.DefaultSource(), nil
		}
		cfgPath = DefaultConfigPath
	}
	abs, err := filepath.Abs(cfgPath)
	if err != nil {
		return "", nil, fmt.Errorf("config %s: %w", cfgPath, err)
	}
	src, err := os.ReadFile(abs)
	if err != nil {
		return "", nil, fmt.Errorf("read config: %w", err)
	}
	return abs, src, nil
}
