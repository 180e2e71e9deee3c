# pingora-master build, test and benchmark entry points.
GO      ?= go
PREFIX  ?= /usr/local
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# Builds use the stock Go runtime unless RUNTIME_PATCH asks for the one
# change in deploy/build/runtime-overlay.sh (the poller's wake order):
# RUNTIME_PATCH=1 applies it through a build overlay in GOFLAGS, tests' own
# `go build`s included, where the stock runtime is shown to run ready
# goroutines in reverse (elsewhere it says why and uses the stock runtime);
# RUNTIME_PATCH=required stops instead. The binary's build information
# records it (`go version -m bin/pingora-master` shows
# `-tags=pingora_netpoll_fifo`). It is opt-in because `make bench-runtime`
# shows it lowering p99 in every pair with a new connection per request but
# not beyond the pairs' spread with keep-alive clients
# (deploy/build/go-issue-netpoll-order.md has the figures).
RUNTIME_PATCH ?= 0
ifneq ($(filter 1 required,$(RUNTIME_PATCH)),)
OVERLAY := $(shell RUNTIME_PATCH=$(RUNTIME_PATCH) deploy/build/runtime-overlay.sh $(CURDIR)/bin/.overlay)
ifneq ($(.SHELLSTATUS),0)
$(error RUNTIME_PATCH=required and the runtime patch does not apply (see above))
endif
endif
# A make started by this one (bench-runtime) chooses its own runtime.
export GOFLAGS := $(strip $(filter-out -overlay=% -tags=pingora_netpoll_fifo,$(GOFLAGS)) $(OVERLAY))

# Where `make build` writes the binary.
BIN ?= bin/pingora-master

.PHONY: build run test bench bench-limiter bench-tls bench-h2 bench-pairs bench-runtime bench-reload bench-accept bench-memory install clean

# A patched binary checks its own wake order (the hidden -check-wake-order)
# where it can run here, i.e. unless cross-compiled.
native = $(shell [ "$$($(GO) env GOOS GOARCH)" = "$$($(GO) env GOHOSTOS GOHOSTARCH)" ] && echo yes)

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/pingora-master
	$(if $(OVERLAY),$(if $(native),$(BIN) -check-wake-order >/dev/null))

# The main job: the master in the foreground, two workers, on the embedded
# default config (no root, no backend needed). Try: curl localhost:8080
run: build
	./bin/pingora-master

# Every test. -race where it fits the CI budget (the engine and config);
# the process tests build and run the real binary.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 8m ./config/... ./proxy/...
	$(GO) test -count=1 -timeout 8m ./worker/... ./master/... ./cmd/... ./deploy/...

# CPU per request against nginx, HAProxy and Caddy on the same load
# (../shared/bench/peers.sh), keep-alive and new-connection runs; then the
# same over TLS against nginx and HAProxy (bench-tls), then HTTP/2
# (bench-h2); first the rate limiters' own cost (bench-limiter).
bench: build bench-limiter
	deploy/bench/bench.sh
	BIN=$(BIN) deploy/bench/tls.sh
	BIN=$(BIN) deploy/bench/h2.sh

# TLS termination against nginx and HAProxy, same certificate and pinning.
bench-tls: build
	BIN=$(BIN) deploy/bench/tls.sh

# HTTP/2 against nginx and HAProxy (h2load: h2 over TLS, h2c, serial),
# CPU per request and req/s, ROUNDS rounds of DUR each.
bench-h2: build
	BIN=$(BIN) deploy/bench/h2.sh

# nginx and pingora-master by turns, 4 pairs of each mode (figures to quote:
# see README.md, Benchmarks).
bench-pairs: build
	MODE=keepalive deploy/bench/pairs.sh
	MODE=close deploy/bench/pairs.sh

# The same commit built with the stock runtime and with the patched one,
# measured by turns (keep-alive, then a new connection per request), ROUNDS
# pairs of DUR each: per pair, then min/median/max of p99 and CPU per
# request for each build. Run it on a quiet machine; it decides the
# RUNTIME_PATCH default above (deploy/build/go-issue-netpoll-order.md).
bench-runtime: ROUNDS ?= 10
bench-runtime: DUR ?= 6s
bench-runtime:
	$(MAKE) build RUNTIME_PATCH=0 BIN=bin/pingora-master.stock
	$(MAKE) build RUNTIME_PATCH=required BIN=bin/pingora-master.fifo
	bin/pingora-master.fifo -check-wake-order
	MODE=keepalive ROUNDS=$(ROUNDS) DUR=$(DUR) BIN_A=bin/pingora-master.stock BIN_B=bin/pingora-master.fifo NAME_A=stock NAME_B=fifo deploy/bench/pairs.sh
	MODE=close ROUNDS=$(ROUNDS) DUR=$(DUR) BIN_A=bin/pingora-master.stock BIN_B=bin/pingora-master.fifo NAME_A=stock NAME_B=fifo deploy/bench/pairs.sh

# New connections with 4 workers: one shared listening socket against
# per-worker SO_REUSEPORT sockets (listener reuseport); context switches per
# connection and CPU per request of each (needs root).
bench-accept: build
	deploy/bench/accept.sh

# Worker memory against nginx (issue 14): bytes per idle keep-alive client
# connection at 1,000, 10,000 and 50,000 (as far as the open files limit
# allows), plain, over TLS and HTTP/2 over TLS (PROTOS), peak RSS under
# wrk -c1000, and master and worker RSS at rest.
bench-memory: build
	deploy/bench/memory.sh

# The rate limiters' cost per request: the machine-wide zone with 4
# goroutines contending on one core (goal: at most 150 ns, no allocation),
# and a cluster limit spending leased tokens.
bench-limiter:
	$(GO) test -count=1 -run '^$$' -bench 'SharedLimiter|ClusterAllowLeased$$' -benchmem -cpu 1 ./proxy/ratelimit/

# Reload latency as a client sees it, nginx, HAProxy and pingora-master
# with one worker each, 20 runs (deploy/bench/reload.sh); then pingora-master
# alone, SIGHUP -> new generation serving and SIGUSR2 -> new master serving,
# 20 runs each with 2 workers: median and max (needs root).
bench-reload: build
	BIN=$(BIN) deploy/bench/reload.sh
	$(GO) test -count=1 -run '^$$' -bench 'Reload|Upgrade' -benchtime 20x ./cmd/pingora-master/

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/sbin/pingora-master

clean:
	rm -rf bin
