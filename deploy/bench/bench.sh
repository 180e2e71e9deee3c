#!/usr/bin/env bash
# What `make bench` runs: pingora-master side by side with nginx, HAProxy and
# Caddy, using the shared peers.sh (same backend, same load, each proxy on one
# pinned CPU), twice: keep-alive clients, then a new connection per request.
#
#   deploy/bench/bench.sh                  # from anywhere in the repository
#   PEERS=/path/to/peers.sh DUR=15s CONNS=100 ONLY="nginx project" deploy/bench/bench.sh
#   BIN=/tmp/pm-fifo deploy/bench/bench.sh  # measure another build instead
#
# DUR, CONNS, ONLY, PROXY_CPU and LOAD_CPU are passed on to peers.sh.
# The figures are comparable within one run only; cpu-us/req is the proxy's
# own CPU time (master and worker together) per request: lower is better.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
peers=${PEERS:-$root/../shared/bench/peers.sh}
tmpl=$root/deploy/bench/bench.hcl.tmpl
# BIN: another build to measure (e.g. one made with a patched Go toolchain,
# see README.md); by default the repository's, built here.
bin=${BIN:-$root/bin/pingora-master}

if [[ ! -f $peers ]]; then
  echo "bench: peers.sh not found at $peers; set PEERS=/path/to/peers.sh" >&2
  exit 2
fi
if (($(nproc) < 2)); then
  echo "bench: peers.sh pins the proxy to CPU 1 and the load to CPU 0; this machine has $(nproc) CPU" >&2
  exit 2
fi

# Tools peers.sh runs. nginx (the backend and a peer), wrk, curl, taskset and
# setsid are required; HAProxy and Caddy are skipped by peers.sh when absent,
# but the comparison is the point, so install them too when we can.
declare -A pkg=([nginx]=nginx [haproxy]=haproxy [caddy]=caddy [wrk]=wrk [curl]=curl
  [taskset]=util-linux [setsid]=util-linux)
missing=()
for tool in nginx haproxy caddy wrk curl taskset setsid; do
  command -v "$tool" >/dev/null || missing+=("${pkg[$tool]}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "bench: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bench: missing ${missing[*]}; install them first, e.g." >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    for tool in nginx wrk curl taskset setsid; do
      command -v "$tool" >/dev/null || exit 2
    done
    echo "bench: going on without the missing peers" >&2
  fi
fi

# The binary under test, built as `make build` builds it.
if [[ -n ${BIN:-} ]]; then
  [[ -x $bin ]] || { echo "bench: BIN=$bin is not an executable" >&2; exit 2; }
elif command -v make >/dev/null; then
  make -s -C "$root" build
else
  (cd "$root" && GOFLAGS="$(deploy/build/runtime-overlay.sh "$root/bin/.overlay")" \
    go build -trimpath -o bin/pingora-master ./cmd/pingora-master)
fi

# peers.sh fills in {listen} and {backend}; the template's second server is
# the same backend by name (localhost:PORT), so fill in the port here, read
# from peers.sh's own BACK= line.
back=$(sed -n 's/^BACK=\([^[:space:]]*\).*/\1/p' "$peers" | head -1)
port=${back##*:}
if [[ ! $port =~ ^[0-9]+$ ]]; then
  echo "bench: cannot find the backend port (BACK=host:port) in $peers" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
conf_tmpl=$work/bench.hcl.tmpl
sed -e "s/{backend_port}/$port/g" "$tmpl" >"$conf_tmpl"

# Fail here, with the diagnostics, rather than as "did not answer" in peers.sh.
sed -e "s/{listen}/127.0.0.1:1/g" -e "s/{backend}/$back/g" "$conf_tmpl" >"$work/check.hcl"
"$bin" -t -c "$work/check.hcl" >/dev/null

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -1)
machine="$(nproc) CPUs, ${cpu:-$(uname -m)}, $(uname -sr)"
version=$("$bin" -v 2>/dev/null | head -1 || true)

status=0
for mode in keepalive close; do
  case $mode in
  keepalive) what="keep-alive clients" ;;
  close) what="a new connection per request (Connection: close)" ;;
  esac
  echo
  echo "## ${what}: $(date -u '+%Y-%m-%d %H:%M UTC'), ${machine}"
  echo "## ${version:-pingora-master}; DUR=${DUR:-8s} CONNS=${CONNS:-50}"
  MODE=$mode PROJECT_CONF=$conf_tmpl PROJECT_CMD="$bin -c {conf}" \
    bash "$peers" || status=$?
done
exit "$status"
