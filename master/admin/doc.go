// Package admin is the master's admin HTTP listener: Prometheus metrics on
// /metrics, the `-s status` content and more as JSON on /status, and a
// self-refreshing HTML status page on /, in the spirit of HAProxy's stats
// page. It runs in the master only; workers never serve it.
//
// The master never imports the proxy, so what workers report is a set of
// plain data types (WorkerSample and the types inside it, all with JSON
// tags: a worker sends one as JSON over its control channel). They are
// defined in worker/wire, the protocol package both processes share, and
// aliased here under the same names; a worker needs only wire, never this
// package.
//
// # Input API (what the master calls)
//
// One *Aggregator holds everything the admin listener shows. Every method is
// safe for concurrent use, cheap, and never blocks on I/O, so the master's
// loop can call them inline:
//
//   - Observe(WorkerSample): the latest cumulative counters of one live
//     worker, replacing its previous sample. The master asks each worker for
//     a sample about once a second (and may ask on each scrape); a worker
//     that exits gracefully should send a final sample just before exiting,
//     which the master Observes before it calls Retire.
//   - Retire(pid): the worker is gone (drained, stopped, crashed). Its last
//     sample is folded into retired totals, so every counter summed across
//     workers stays monotonic across reloads, binary-upgrade drains and
//     crashes. What a crashed worker counted after its last sample is lost:
//     that is why the sampling interval is short.
//   - SetMaster(Master): the master's own facts (pid, start time, binary,
//     config file and current config, generation, the worker list with
//     states and restarts). Call it after every change the master makes: a
//     spawn, a worker becoming ready, draining or exiting, a promotion.
//   - CountReload(ok), CountUpgrade(ok), CountWorkerRestart(): outcome
//     counters, one call per event.
//
// Then New(logger, aggregator) makes the Server; SetRefresh(fn), optional,
// lets the master fetch fresh samples before each page, /status or scrape
// is rendered; Serve(listener) serves the admin address until
// Shutdown(ctx).
//
// Gauges (active connections, in-flight requests, upstream server health
// and in-flight) come only from live workers; counters are retired totals
// plus the live workers' latest samples.
//
// # Access
//
// The listener has no authentication of its own: who may reach it is decided
// by the address it is bound to. Bind it to loopback or to a private
// management interface, never to a public one.
package admin
