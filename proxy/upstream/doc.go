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
// Health is per process: each worker checks and marks on its own, as nginx
// workers do without a shared zone. A fresh pool starts with every server
// healthy so a new worker generation serves at once after a reload.
package upstream
