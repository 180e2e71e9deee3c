package master

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pingora-go/pingora/config"
)

// DefaultConfigPath is read when no -c is given and it exists; otherwise
// the embedded default config (config.DefaultSource) is used.
const DefaultConfigPath = "/etc/pingora/pingora.hcl"

// Options are the command-line inputs of the master.
type Options struct {
	ConfigPath string // -c; "" : DefaultConfigPath or the embedded default
	Daemon     bool   // -d
	Version    string // for the start-up log line
	GoRuntime  string // Go release and runtime patch, for the same line
	Stdout     io.Writer
	Stderr     io.Writer
}

func (o Options) stdout() io.Writer {
	if o.Stdout != nil {
		return o.Stdout
	}
	return os.Stdout
}

func (o Options) stderr() io.Writer {
	if o.Stderr != nil {
		return o.Stderr
	}
	return os.Stderr
}

// loadInitial loads the config the master starts from. path is the
// absolute config path, "" for the embedded default.
func loadInitial(cfgPath string) (path string, cfg *config.Config, err error) {
	path, _, err = configSource(cfgPath)
	if err != nil {
		return "", nil, err
	}
	if path == "" {
		cfg, err = defaultConfig()
		return "", cfg, err
	}
	cfg, err = config.Load(path)
	return path, cfg, err
}

// defaultConfig parses the embedded default for this process: as root its
// PID file, lock and control socket are in /run/pingora, never in /tmp.
func defaultConfig() (*config.Config, error) {
	return config.Default(os.Geteuid() == 0)
}

// Test is `-t`: load and validate the config, never bind anything. It
// prints "configuration FILE is ok" (exit 0) or the diagnostics (exit 1).
func Test(opts Options) int {
	path, cfg, err := loadInitial(opts.ConfigPath)
	name := path
	if name == "" {
		name = config.DefaultFilename
	}
	if err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			fmt.Fprintln(opts.stderr(), cerr.Error())
			fmt.Fprintf(opts.stderr(), "configuration %s test failed\n", name)
		} else {
			fmt.Fprintf(opts.stderr(), "pingora-master: %v\n", err)
		}
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(opts.stderr(), "warning: %s\n", w)
	}
	fmt.Fprintf(opts.stdout(), "configuration %s is ok\n", name)
	return 0
}
