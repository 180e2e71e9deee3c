#!/bin/sh
# runtime-overlay.sh OUTDIR: prepares the one change pingora-master makes to
# the Go runtime it is built with, as a `go build -overlay` file (no copy of
# GOROOT, nothing written outside OUTDIR), and prints the flags to pass:
#
#   -overlay=OUTDIR/overlay.json -tags=pingora_netpoll_fifo
#
# The Makefile puts them in GOFLAGS for every build and test. OUTDIR gets Go
# files of other packages: keep it where ./... does not look (a directory
# whose name starts with a dot, as the Makefile's bin/.overlay).
#
# The change. On Linux, the stock runtime.netpoll collects the goroutines
# whose descriptors epoll reported ready by pushing each onto the head of a
# list, and the scheduler runs that list from the head: within each poll the
# descriptor that became ready last is served first and the one that has
# waited longest last. Event loops (nginx, HAProxy) serve epoll's list in
# order. On a worker's one P under load that reversal shows at the proxy's
# tail latency (deploy/build/go-issue-netpoll-order.md has the measurements
# and the text proposed upstream). The patched netpoll reverses the list
# before returning it (a walk over at most 128 entries, once per poll), so
# the ready goroutines run in epoll's order.
#
# When it applies. The edit is textual (netpoll's final `return toRun,
# delta`), so the text alone does not prove the runtime still reverses the
# order: a Go release that fixed the order and kept that line would be
# turned back to the reversed order. Before patching, the script therefore
# builds cmd/pingora-master/internal/wakeorder/probe with the stock runtime
# and runs it; the patch is applied only when the probe shows the reversed
# order ("lifo") and the line is found exactly once in netpoll. A cross
# build to another architecture is probed on the host's, which has the same
# netpoll_epoll.go (the host must be Linux). The probe's verdict is kept in
# OUTDIR/probe, keyed by the Go release, the poller's source and the
# probe's, so a make that starts again skips it.
#
#   stock order  line found  result
#   lifo         yes         patched runtime, flags printed
#   fifo         -           stock runtime (already in epoll's order), nothing printed, exit 0
#   lifo         no          stock runtime, warning; RUNTIME_PATCH=required: exit 1
#   mixed/error  -           stock runtime, warning; RUNTIME_PATCH=required: exit 1
#   (not Linux)  -           stock runtime, warning; RUNTIME_PATCH=required: exit 1
#
# RUNTIME_PATCH=0 prints nothing (the stock runtime, asked for);
# RUNTIME_PATCH=required (a patched release build) turns each
# warning into a failure, so a release never ships the reversed order
# unnoticed after a Go upgrade. A stock runtime that is already in order
# satisfies it.
#
# What the binary records. The overlay adds a file to cmd/pingora-master
# that sets runtimePatch, so `pingora-master -v`, the master's start-up log
# line and TestRuntimeNetpollOrder know the binary carries the patch: the
# file exists only in builds that also have the patched runtime. The build
# tag pingora_netpoll_fifo selects no code; it is there because build tags
# are recorded in the binary's build information (`go version -m` shows
# `build -tags=pingora_netpoll_fifo`), where SBOM and vulnerability
# scanners look, while -overlay is never recorded and -ldflags is not in a
# -trimpath build. A build without the patch has neither.
#
# What the binary checks. `pingora-master -check-wake-order` (hidden) runs
# the same probe in the binary itself and fails unless ready goroutines run
# in epoll's order; `make build` runs it on a patched native binary, and the
# Dockerfile on the binary the image ships.
#
# Test hooks: RUNTIME_SRC, another copy of netpoll_epoll.go to patch (a Go
# release that lacks the line); RUNTIME_PROBE_GOFLAGS, GOFLAGS for the
# probe's build (an overlay stands for a Go release already in order).
set -eu

out=${1:?usage: runtime-overlay.sh OUTDIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
tag=pingora_netpoll_fifo
warn() {
	if [ "${RUNTIME_PATCH:-}" = required ]; then
		echo "runtime-overlay: $*; RUNTIME_PATCH=required, so the build stops" >&2
		exit 1
	fi
	echo "runtime-overlay: $*; building with the stock Go runtime" >&2
	exit 0
}

if [ "${RUNTIME_PATCH:-}" = 0 ]; then
	echo "runtime-overlay: RUNTIME_PATCH=0; building with the stock Go runtime" >&2
	exit 0
fi
case $(go env GOOS) in linux) ;; *) warn "the patch is for Linux's poller (epoll)" ;; esac
src=${RUNTIME_SRC:-$(go env GOROOT)/src/runtime/netpoll_epoll.go}
[ -r "$src" ] || warn "$src not found"
mkdir -p "$out"
out=$(cd "$out" && pwd)
for p in "$src" "$out" "$root"; do
	case $p in *[\ \"\\]*) warn "path with a space, quote or backslash: $p" ;; esac
done

# The stock runtime's order, from the probe (cached). The probe is built
# without the caller's overlay, whatever GOFLAGS says, as a plain `go build`
# would build it.
probe_flags=${RUNTIME_PROBE_GOFLAGS-$(printf '%s\n' ${GOFLAGS:-} | grep -v -e '^-overlay=' -e "^-tags=$tag\$" | tr '\n' ' ')}
probe_dir=$root/cmd/pingora-master/internal/wakeorder
key=$( {
	go env GOVERSION GOHOSTARCH GOROOT
	echo "$probe_flags"
	cat "$(go env GOROOT)/src/runtime/netpoll_epoll.go" "$probe_dir"/*.go "$probe_dir"/probe/*.go
} | cksum)
order= cached_key= cached_order=
if [ -r "$out/probe" ]; then
	read -r cached_key cached_order <"$out/probe" || true
	[ "$cached_key" = "$(echo "$key" | tr ' ' _)" ] && order=$cached_order
fi
if [ -z "$order" ]; then
	rm -f "$out/probe"
	# For the host, which must be Linux: a cross build to another
	# architecture has the same netpoll_epoll.go, and the probe has to run.
	[ "$(go env GOHOSTOS)" = linux ] || warn "the wake-order probe needs a Linux host"
	observed=$(cd "$root" && GOOS=linux GOARCH=$(go env GOHOSTARCH) GOFLAGS="$probe_flags" \
		go run ./cmd/pingora-master/internal/wakeorder/probe 2>&1) ||
		warn "the wake-order probe did not run: $observed"
	order=${observed%% *}
	[ "$order" = lifo ] || [ "$order" = fifo ] || warn "$(go env GOVERSION): the stock runtime's wake order is neither reversed nor epoll's ($observed)"
	echo "$(echo "$key" | tr ' ' _) $order" >"$out/probe.new"
	mv "$out/probe.new" "$out/probe"
fi
if [ "$order" = fifo ]; then
	rm -f "$out/overlay.json"
	echo "runtime-overlay: $(go env GOVERSION) already runs ready goroutines in epoll's order; the patch is not applied" >&2
	exit 0
fi

# In func netpoll, and only there, the list is returned by this one line.
awk '
/^func netpoll\(/ { infn = 1 }
infn && /^}/ { infn = 0 }
infn && $0 == "\treturn toRun, delta" {
	print "\t// pingora-master (deploy/build/runtime-overlay.sh): run the"
	print "\t// ready goroutines in the order epoll reported them."
	print "\tvar inOrder gList"
	print "\tfor !toRun.empty() {"
	print "\t\tinOrder.push(toRun.pop())"
	print "\t}"
	print "\treturn inOrder, delta"
	n++
	next
}
{ print }
END { exit n == 1 ? 0 : 1 }
' "$src" >"$out/netpoll_epoll.go.new" || {
	rm -f "$out/netpoll_epoll.go.new"
	warn "$(go env GOVERSION): netpoll_epoll.go does not end netpoll with the expected line"
}

cat >"$out/runtime_patch.go.new" <<'GO'
// Code generated by deploy/build/runtime-overlay.sh. DO NOT EDIT.

package main

func init() { runtimePatch = "netpoll-fifo" }
GO

printf '{"Replace":{"%s":"%s","%s":"%s"}}\n' \
	"$src" "$out/netpoll_epoll.go" \
	"$root/cmd/pingora-master/runtime_patch.go" "$out/runtime_patch.go" >"$out/overlay.json.new"

# Each file is replaced by a rename, never rewritten in place: make runs
# this script whenever it starts, and a test may run make while builds of
# other test packages read the overlay (a truncated netpoll_epoll.go does
# not compile).
for f in netpoll_epoll.go runtime_patch.go overlay.json; do
	mv "$out/$f.new" "$out/$f"
done
echo "-overlay=$out/overlay.json -tags=$tag"
