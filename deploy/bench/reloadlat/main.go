// Command reloadlat measures a proxy's reload as an outside client sees it,
// for deploy/bench/reload.sh. Each run writes the config of the next
// version (the template with every {v} replaced by the version number,
// written beside and renamed over -conf, as an editor would), signals the
// master named by -pidfile, and times
//
//   - serve: from the signal until a fresh TCP connection's GET / is
//     answered with the body "v<version>" (a new connection every -interval,
//     Connection: close, each read to the end);
//   - gone: from the signal until every process that was the master's child
//     before it (the old workers) has exited (or is a zombie: it has exited,
//     its parent has not yet reaped it).
//
// With -upgrade the signal starts a new master (pingora-master's SIGUSR2,
// nginx's binary upgrade): the old master counts among the old processes,
// with -quit-old it gets SIGQUIT as soon as the PID file names a new master
// that has its workers (nginx's binary upgrade leaves that step to the
// operator: here it is done as a script would, at once), and each next run
// signals the master that the PID file names by then.
//
// Between runs, untimed, it waits for the master to have -workers children
// again, none of them old, then -settle more, so that each run starts from a
// quiet, single generation (HAProxy 2.6's master loses a SIGUSR2 sent right
// after its previous reload finished). It prints one line per run, then a summary line:
//
//	run 3 serve-ms 4.812 gone-ms 6.020 errors 0
//	summary runs 20 serve-ms median 4.9 max 7.1 min 3.8 gone-ms median 6.2 max 9.0 min 5.1 errors 0
//
// errors counts polls that got no complete HTTP answer (refused, reset,
// cut short): a reload that loses no request shows 0. Answers of the old
// version are not errors, they are what a client sees until the switch.
//
//	go run ./deploy/bench/reloadlat -addr 127.0.0.1:19301 -pidfile /tmp/x/nginx.pid \
//	    -conf /tmp/x/nginx.conf -template /tmp/x/nginx.conf.tmpl -signal HUP -n 20
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "the proxy, host:port")
	pidFile := flag.String("pidfile", "", "the master's PID file")
	conf := flag.String("conf", "", "the config file the master reads")
	tmpl := flag.String("template", "", "the config template; {v} is the version")
	sigName := flag.String("signal", "HUP", "the reload signal: HUP or USR2")
	n := flag.Int("n", 20, "runs")
	first := flag.Int("first", 1, "the version the proxy serves now; the runs go to first+1, first+2, ...")
	workers := flag.Int("workers", 1, "the master's children once a reload has settled")
	interval := flag.Duration("interval", 250*time.Microsecond, "pause between two polls")
	timeout := flag.Duration("timeout", 30*time.Second, "give up a run after this long")
	settle := flag.Duration("settle", 200*time.Millisecond, "pause before each signal, once the previous run has settled")
	upgrade := flag.Bool("upgrade", false, "the signal starts a new master: the old master is one of the old processes, and the next run signals the master the PID file then names")
	quitOld := flag.Bool("quit-old", false, "with -upgrade, send SIGQUIT to the old master as soon as the PID file names a new master that has -workers children (nginx's binary upgrade, done by a script)")
	flag.Parse()
	sig, ok := map[string]syscall.Signal{"HUP": syscall.SIGHUP, "USR2": syscall.SIGUSR2}[*sigName]
	if !ok || *pidFile == "" || *conf == "" || *tmpl == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "reloadlat: need -pidfile, -conf, -template, -n >= 1 and -signal HUP or USR2")
		os.Exit(2)
	}
	text, err := os.ReadFile(*tmpl)
	if err != nil {
		fail(err)
	}
	r := runner{addr: *addr, interval: *interval, timeout: *timeout}
	master, err := readPID(*pidFile)
	if err != nil {
		fail(err)
	}
	if err := r.waitServes(*first); err != nil {
		fail(fmt.Errorf("before the first run: %w", err))
	}
	old, err := r.waitChildren(master, *workers, nil)
	if err != nil {
		fail(err)
	}
	var serve, gone []time.Duration
	errs := 0
	for i := 1; i <= *n; i++ {
		v := *first + i
		if err := writeConfig(*conf, bytes.ReplaceAll(text, []byte("{v}"), []byte(strconv.Itoa(v)))); err != nil {
			fail(err)
		}
		if *upgrade {
			old = append(old, master)
		}
		time.Sleep(*settle)
		t0 := time.Now()
		if err := syscall.Kill(master, sig); err != nil {
			fail(fmt.Errorf("signal master %d: %w", master, err))
		}
		var each func() error
		if *quitOld {
			each = quitWhenUp(*pidFile, master, *workers)
		}
		e, err := r.pollServes(v, t0, each)
		if err != nil {
			fail(fmt.Errorf("run %d: %w", i, err))
		}
		s := time.Since(t0)
		if each != nil {
			// Should the new version have served before the new master
			// was seen to be up, the old master has its SIGQUIT now.
			for deadline := t0.Add(*timeout); alive(master) && time.Now().Before(deadline); time.Sleep(*interval) {
				if err := each(); err != nil {
					fail(fmt.Errorf("run %d: %w", i, err))
				}
			}
		}
		if err := r.waitExited(old, t0); err != nil {
			fail(fmt.Errorf("run %d: %w", i, err))
		}
		g := time.Since(t0)
		serve, gone, errs = append(serve, s), append(gone, g), errs+e
		fmt.Printf("run %d serve-ms %.3f gone-ms %.3f errors %d\n", i, ms(s), ms(g), e)
		if *upgrade {
			if master, err = r.waitNewMaster(*pidFile, master); err != nil {
				fail(fmt.Errorf("run %d: %w", i, err))
			}
		}
		if old, err = r.waitChildren(master, *workers, old); err != nil {
			fail(fmt.Errorf("run %d: %w", i, err))
		}
	}
	fmt.Printf("summary runs %d serve-ms %s gone-ms %s errors %d\n", *n, stats(serve), stats(gone), errs)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "reloadlat: %v\n", err)
	os.Exit(1)
}

type runner struct {
	addr     string
	interval time.Duration
	timeout  time.Duration
}

// get makes one GET / on a new connection and returns the body.
func (r runner) get() (string, error) {
	c, err := net.DialTimeout("tcp", r.addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	raw, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		return "", err
	}
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(head, []byte("HTTP/1.1 200 ")) {
		return "", fmt.Errorf("not a 200 answer: %.80q", raw)
	}
	return string(body), nil
}

// quitWhenUp returns a check to call while polling: it sends SIGQUIT to the
// old master, once, as soon as the PID file names a new master with n
// children. Quitting it sooner would not lose a connection (the new master
// holds the listening sockets) but leave them unanswered meanwhile; later,
// fresh connections still land on the old workers: an idle old worker
// keeps taking them.
func quitWhenUp(pidFile string, old, n int) func() error {
	done := false
	return func() error {
		if done {
			return nil
		}
		pid, err := readPID(pidFile)
		if err != nil || pid == old || len(children(pid)) < n {
			return nil
		}
		done = true
		if err := syscall.Kill(old, syscall.SIGQUIT); err != nil {
			return fmt.Errorf("SIGQUIT to the old master %d: %w", old, err)
		}
		return nil
	}
}

// pollServes polls until version v is served and returns how many polls
// failed meanwhile; each, unless nil, runs before every poll.
func (r runner) pollServes(v int, t0 time.Time, each func() error) (int, error) {
	want, errs, last := "v"+strconv.Itoa(v), 0, ""
	for time.Since(t0) < r.timeout {
		if each != nil {
			if err := each(); err != nil {
				return errs, err
			}
		}
		body, err := r.get()
		if err == nil && body == want {
			return errs, nil
		}
		if err != nil {
			errs++
			last = err.Error()
		} else {
			last = fmt.Sprintf("body %q", body)
		}
		time.Sleep(r.interval)
	}
	return errs, fmt.Errorf("%s not served within %v (last: %s)", want, r.timeout, last)
}

func (r runner) waitServes(v int) error {
	_, err := r.pollServes(v, time.Now(), nil)
	return err
}

// waitExited waits until every pid has exited.
func (r runner) waitExited(pids []int, t0 time.Time) error {
	for time.Since(t0) < r.timeout {
		if !slices.ContainsFunc(pids, alive) {
			return nil
		}
		time.Sleep(r.interval)
	}
	return fmt.Errorf("old processes %v still running after %v", pids, r.timeout)
}

// waitChildren waits until master has exactly n children, none in old.
func (r runner) waitChildren(master, n int, old []int) ([]int, error) {
	t0, got := time.Now(), []int(nil)
	for time.Since(t0) < r.timeout {
		got = children(master)
		if len(got) == n && !slices.ContainsFunc(got, func(p int) bool { return slices.Contains(old, p) }) {
			return got, nil
		}
		time.Sleep(time.Millisecond)
	}
	return nil, fmt.Errorf("master %d: children %v, want %d new ones (old %v)", master, got, n, old)
}

// waitNewMaster waits until the PID file names a live process other than
// old.
func (r runner) waitNewMaster(pidFile string, old int) (int, error) {
	t0, why := time.Now(), ""
	for time.Since(t0) < r.timeout {
		pid, err := readPID(pidFile)
		if err == nil && pid != old && alive(pid) {
			return pid, nil
		}
		why = fmt.Sprintf("%d %v", pid, err)
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("the PID file names no new master (last: %s)", why)
}

// children lists the live children of pid, from /proc.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, ppid, ok := stat(p)
		if ok && ppid == pid && state != "Z" {
			out = append(out, p)
		}
	}
	return out
}

func alive(pid int) bool {
	state, _, ok := stat(pid)
	return ok && state != "Z"
}

// stat reads a process's state and parent from /proc/PID/stat.
func stat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, false
	}
	// The command name is in parentheses and may hold anything: the fields
	// that follow start after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("PID file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("PID file %s: %q is not a PID", path, b)
	}
	return pid, nil
}

func writeConfig(path string, text []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, text, 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(fmt.Errorf("write config: %w", err), os.Remove(tmp))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// stats formats median, max and min in milliseconds.
func stats(d []time.Duration) string {
	d = slices.Clone(d)
	slices.Sort(d)
	median := d[len(d)/2]
	if len(d)%2 == 0 {
		median = (d[len(d)/2-1] + d[len(d)/2]) / 2
	}
	return fmt.Sprintf("median %.1f max %.1f min %.1f", ms(median), ms(d[len(d)-1]), ms(d[0]))
}
