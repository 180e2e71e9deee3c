package worker

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/pingora-go/pingora/worker/wire"
	"golang.org/x/sys/unix"
)

// privCheckEnv makes the test binary a stand-in worker: it runs
// checkPrivileges against the handshake in the variable and prints the
// result. privCheckNNP sets no_new_privs first, as the master's spawner
// thread would have.
const (
	privCheckEnv = "PINGORA_TEST_PRIVCHECK"
	privCheckNNP = "PINGORA_TEST_PRIVCHECK_NNP"
)

func init() {
	// init runs on the main thread, whose attributes /proc/self/status
	// shows.
	if os.Getenv(privCheckNNP) == "1" {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			fmt.Printf("prctl: %v\n", err)
			os.Exit(3)
		}
	}
	if hs := os.Getenv(privCheckEnv); hs != "" {
		var h wire.Handshake
		if err := json.Unmarshal([]byte(hs), &h); err != nil {
			fmt.Printf("handshake: %v\n", err)
			os.Exit(3)
		}
		if err := checkPrivileges(&h); err != nil {
			fmt.Printf("refused: %v\n", err)
		} else {
			fmt.Println("ok")
		}
		os.Exit(0)
	}
}

// TestCheckPrivilegesWantsNoNewPrivsAndEmptyBoundingSet runs the check in
// processes of another uid (nobody) that dropped uid and groups but lack
// the rest of what the master does for its workers: without no_new_privs
// the check refuses; with it but a full bounding set it still refuses.
func TestCheckPrivilegesWantsNoNewPrivsAndEmptyBoundingSet(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs the check as uid 65534 (nobody)")
	}
	const uid, gid = 65534, 65534
	hs, _ := json.Marshal(&wire.Handshake{Unprivileged: true, UID: uid, GID: gid})
	run := func(nnp bool) string {
		// As the master execs workers: the test binary's directory is
		// root's only.
		cmd := exec.Command("/proc/self/exe", "-test.run=^$")
		cmd.Dir = "/"
		cmd.Env = []string{privCheckEnv + "=" + string(hs)}
		if nnp {
			cmd.Env = append(cmd.Env, privCheckNNP+"=1")
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{gid}}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("stand-in worker: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run(false); !strings.Contains(got, "refused: no_new_privs is not set") {
		t.Errorf("without no_new_privs: %q, want it refused for no_new_privs", got)
	}
	if got := run(true); !strings.Contains(got, "refused: capability bounding set is") {
		t.Errorf("with no_new_privs but a full bounding set: %q, want it refused for the bounding set", got)
	}
}
