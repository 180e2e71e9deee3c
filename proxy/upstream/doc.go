// Package upstream holds pingora-master's upstream pools: the servers of one
// config.Upstream, their health (active HTTP checks and nginx-style passive
// marking), and the balancers that pick a server for each request attempt.
//
// Everything here is built for the request path of a busy proxy: Pick,
// Begin/End, Succeed and Healthy are safe for concurrent use from many
// goroutines and allocate nothing, so the per-request cost is a few atomic
// loads and, for the stateful balancers (round_robin, least_conn), one short
// critical section.
//
// Health is per machine: pools keep their servers' health in a HealthTable
// that every worker maps (the master's shared memory), so the workers make
// each active check once per interval between them, count passive failures
// together and follow one verdict, which a reload or an upgrade keeps for
// the servers it keeps. A server never seen starts healthy, so a new worker
// generation serves at once. Without a table (a Server built by hand) the
// health is the process's own.
package upstream
