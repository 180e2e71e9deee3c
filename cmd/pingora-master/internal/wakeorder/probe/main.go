// Command probe prints the wake order of the Go runtime it was built with
// (wakeorder.Observe): one line, "fifo", "lifo" or "mixed", then the order
// the goroutines ran in. deploy/build/runtime-overlay.sh builds it with the
// stock runtime and patches the poller only if it prints "lifo".
package main

import (
	"fmt"
	"os"

	"github.com/pingora-go/pingora/cmd/pingora-master/internal/wakeorder"
)

func main() {
	obs, err := wakeorder.Observe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(obs)
}
