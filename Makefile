# pingora-master build, test and benchmark entry points.
GO      ?= go
PREFIX  ?= /usr/local
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# Every build and test uses the Go runtime with the one change in
# deploy/build/runtime-overlay.sh (the poller's wake order), through a build
# overlay, tests' own `go build`s included. RUNTIME_PATCH=0 builds with the
# stock runtime; where the change does not apply, the script says so and the
# stock runtime is used, unless RUNTIME_PATCH=required (release builds),
# which stops instead.
RUNTIME_PATCH ?= 1
ifneq ($(filter 1 required,$(RUNTIME_PATCH)),)
OVERLAY := $(shell RUNTIME_PATCH=$(RUNTIME_PATCH) deploy/build/runtime-overlay.sh $(CURDIR)/bin/.overlay)
endif
ifeq ($(RUNTIME_PATCH):$(OVERLAY),required:)
$(error RUNTIME_PATCH=required and the runtime patch does not apply (see above))
endif
export GOFLAGS := $(strip $(GOFLAGS) $(OVERLAY))

.PHONY: build run test bench bench-pairs bench-reload install clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/pingora-master ./cmd/pingora-master

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
# (../shared/bench/peers.sh), keep-alive and new-connection runs.
bench: build
	deploy/bench/bench.sh

# nginx and pingora-master by turns, 4 pairs of each mode (figures to quote:
# see README.md, Benchmarks).
bench-pairs: build
	MODE=keepalive deploy/bench/pairs.sh
	MODE=close deploy/bench/pairs.sh

# SIGHUP -> new generation serving and SIGUSR2 -> new master serving,
# 20 runs each with 2 workers: median and max (needs root).
bench-reload:
	$(GO) test -count=1 -run '^$$' -bench 'Reload|Upgrade' -benchtime 20x ./cmd/pingora-master/

install: build
	install -D -m 0755 bin/pingora-master $(DESTDIR)$(PREFIX)/sbin/pingora-master

clean:
	rm -rf bin
