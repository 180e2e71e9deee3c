// Package worker is the worker process: started by the master from the
// same binary in a hidden mode, as the unprivileged user, it receives the
// validated config, its listeners and log descriptors, checks that it
// really cannot regain root, runs the proxy, obeys the master's drain,
// stop and reopen commands, and reports the proxy's counters when asked
// (and once more as it exits) for the master's admin listener. If the master disappears it stops accepting
// and exits within two seconds: no orphan keeps serving an old config.
package worker
