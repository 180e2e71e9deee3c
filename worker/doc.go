// Package worker is the worker process: started by the master from the
// same binary in a hidden mode, as the unprivileged user, it receives the
// validated config, its listeners and log descriptors, checks that it
// really cannot regain root, runs the proxy, and obeys the master's drain,
// stop and reopen commands. If the master disappears it stops accepting
// and exits within two seconds: no orphan keeps serving an old config.
package worker
