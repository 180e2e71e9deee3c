// Command pingora-master is a reverse-proxy daemon: a root master that binds
// the listening ports and supervises unprivileged worker processes running
// the proxy. See README.md.
//
// main only parses flags and picks a mode: worker (hidden, started by the
// master), -check-wake-order (hidden, a release build's self-check), -v,
// -t, -s, or the master itself.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/pingora-go/pingora/cmd/pingora-master/internal/wakeorder"
	"github.com/pingora-go/pingora/master"
	"github.com/pingora-go/pingora/worker"
)

// Set by the Makefile with -ldflags -X.
var (
	version = "dev"
	commit  = "unknown"
)

// runtimePatch names the change made to the Go runtime this binary was
// built with ("" for the stock runtime). It is set by a file that only
// the build overlay of deploy/build/runtime-overlay.sh adds, the same
// overlay that patches the runtime, so it cannot claim a patch the binary
// lacks.
var runtimePatch string

// goRuntime is the Go release, with the runtime patch if there is one.
func goRuntime() string {
	if runtimePatch == "" {
		return runtime.Version()
	}
	return runtime.Version() + "+" + runtimePatch
}

func main() {
	if worker.IsWorker(os.Args) {
		os.Exit(worker.Main())
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pingora-master", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		conf      string
		daemon    bool
		test      bool
		sig       string
		showVers  bool
		checkWake bool
	)
	for _, n := range []string{"c", "conf"} {
		fs.StringVar(&conf, n, "", "configuration `FILE` (default "+master.DefaultConfigPath+" if it exists, else the embedded default)")
	}
	for _, n := range []string{"d", "daemon"} {
		fs.BoolVar(&daemon, n, false, "run in the background; returns once serving")
	}
	for _, n := range []string{"t", "test"} {
		fs.BoolVar(&test, n, false, "test the configuration and exit")
	}
	for _, n := range []string{"s", "signal"} {
		fs.StringVar(&sig, n, "", "send `SIGNAL` to the running master and wait for the outcome")
	}
	for _, n := range []string{"v", "version"} {
		fs.BoolVar(&showVers, n, false, "print the version and exit")
	}
	// Not in the usage text: release builds run it on the artifact they ship.
	fs.BoolVar(&checkWake, "check-wake-order", false, "check that ready goroutines run in epoll's order and exit")
	fs.Usage = func() { usage(stderr) }
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pingora-master: unexpected argument %q\n", fs.Arg(0))
		usage(stderr)
		return 2
	}
	opts := master.Options{ConfigPath: conf, Daemon: daemon, Version: version, GoRuntime: goRuntime(), Stdout: stdout, Stderr: stderr}
	switch {
	case showVers:
		fmt.Fprintf(stdout, "pingora-master %s (commit %s, %s %s/%s)\n", version, commit, goRuntime(), runtime.GOOS, runtime.GOARCH)
		return 0
	case checkWake:
		return wakeorder.SelfCheck(stdout, stderr, goRuntime())
	case test:
		return master.Test(opts)
	case sig != "":
		return master.Control(opts, sig)
	}
	return master.Run(opts)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `Usage: pingora-master [-c FILE] [-d] [-t] [-s SIGNAL] [-v]

Options:
  -c, --conf FILE      configuration file (default %s if it exists,
                       else the embedded default: 127.0.0.1:8080, no root needed)
  -d, --daemon         run in the background; returns 0 once serving, 1 with the reason
  -t, --test           test the configuration and exit
  -s, --signal SIGNAL  send SIGNAL to the running master and wait for the outcome
  -v, --version        print version, commit and Go version
  -h, --help           this help

Signals (-s SIGNAL, or the Unix signal to the master's pid):
`, master.DefaultConfigPath)
	sigs := map[string]string{"reload": "HUP", "upgrade": "USR2", "reopen": "USR1", "stop": "INT", "quit": "TERM, QUIT", "status": "-"}
	for _, s := range master.Signals {
		fmt.Fprintf(w, "  %-8s %-11s %s\n", s.Name, sigs[s.Name], s.Help)
	}
}
