// Package master is pingora-master's root process: it loads the config,
// takes the instance lock, daemonizes, sets resource limits, binds every
// listening socket (through tableflip, so they survive a binary upgrade),
// spawns unprivileged workers that inherit those sockets, and supervises
// them. Reloads (SIGHUP), binary upgrades (SIGUSR2), log reopening (SIGUSR1)
// and stops arrive as signals or over a Unix control socket and are handled
// one at a time in the master's loop. With an admin block the master also
// serves /metrics, /status and a status page (package admin), summing the
// counters its workers report over the control socket.
//
// The master never imports the proxy: workers run it, in separate
// processes, and speak to the master through the worker/wire protocol.
package master
