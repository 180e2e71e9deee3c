#!/usr/bin/env bash
# The cost of accepting new connections with several workers: one shared
# listening socket (every worker wakes for every connection) against
# per-worker SO_REUSEPORT sockets (`reuseport = true`). pingora-master runs
# with WORKERS workers in front of the bench backend (nginx returning 100
# bytes, as pairs.sh), first with reuseport off, then on; wrk opens a new
# connection per request (Connection: close) for DUR. Printed per run:
# requests, context switches of the workers per connection (voluntary and
# non-voluntary, every thread's /proc/<pid>/task/<tid>/status before and
# after), and CPU time of
# the master and workers per request.
#
#   deploy/bench/accept.sh                 # 4 workers, 2 runs of 5s
#   WORKERS=8 DUR=10s CONNS=100 PROXY_CPU=0,1 deploy/bench/accept.sh
#   BIN=/tmp/pm deploy/bench/accept.sh     # another build
#
# PROXY_CPU pins the master and its workers, LOAD_CPU the backend and wrk
# (as pairs.sh: 1 and 0). On a shared machine the figures move from run to
# run: compare the two lines of one run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORKERS=${WORKERS:-4} DUR=${DUR:-5s} CONNS=${CONNS:-50}
PROXY_CPU=${PROXY_CPU:-1} LOAD_CPU=${LOAD_CPU:-0}
bin=${BIN:-$root/bin/pingora-master}
tmpl=$root/deploy/bench/bench.hcl.tmpl
for tool in nginx wrk curl taskset setsid; do
  command -v "$tool" >/dev/null || { echo "accept: missing $tool (see deploy/bench/bench.sh)" >&2; exit 2; }
done
[[ -n ${BIN:-} ]] || make -s -C "$root" build
. "$root/deploy/bench/lib.sh"
chmod 755 "$dir" # the workers run as nobody
listen=127.0.0.1:19006
bench_start_backend

# conf REUSEPORT: the bench template with WORKERS workers and the listener's
# reuseport set.
conf() {
  sed -e "s/{listen}/$listen/g" -e "s/{backend}/$back/g" -e "s/{backend_port}/${back##*:}/g" \
    -e "s|/tmp/pingora-bench|$dir/pingora-bench|g" -e "s/^workers .*/workers = $WORKERS/" \
    -e "s/^\(  address *= \"$listen\"\)$/\1\n  reuseport = $1/" "$tmpl" >"$dir/accept.hcl"
  grep -q "reuseport = $1" "$dir/accept.hcl" || { echo "accept: could not set reuseport in $tmpl" >&2; exit 1; }
}
switches() { # voluntary + non-voluntary context switches of processes $@,
  # every thread (/proc/<pid>/status alone counts the main thread's)
  local n=0 p
  for p in "$@"; do
    n=$((n + $(cat /proc/"$p"/task/*/status 2>/dev/null |
      awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ {s += $2} END {print s + 0}')))
  done
  echo "$n"
}
hz=$(getconf CLK_TCK)
echo "## accept cost, $WORKERS workers on CPU $PROXY_CPU, $DUR of new connections ($CONNS at once): $(date -u '+%Y-%m-%d %H:%M UTC'), $("$bin" -v 2>/dev/null | head -1)"
for reuse in false true; do
  conf "$reuse"
  setsid taskset -c "$PROXY_CPU" "$bin" -c "$dir/accept.hcl" >"$dir/master.out" 2>&1 & sid=$!
  pids+=("$sid")
  for _ in $(seq 100); do curl -fs "http://$listen/" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs "http://$listen/" >/dev/null || { echo "accept: nothing answers on $listen:" >&2; tail -5 "$dir/master.out" >&2; exit 1; }
  workers=$(ps -o pid= --ppid "$sid" | tr '\n' ' ')
  [[ $(wc -w <<<"$workers") -eq $WORKERS ]] || { echo "accept: want $WORKERS workers, found: $workers" >&2; exit 1; }
  # shellcheck disable=SC2086
  sw0=$(switches $workers) t0=$(ticks "$sid")
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DUR" -H "Connection: close" "http://$listen/")
  # shellcheck disable=SC2086
  sw1=$(switches $workers) t1=$(ticks "$sid")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  errs=$(awk '/Non-2xx|Socket errors/' <<<"$out" | tr '\n' ' ')
  awk -v r="$reuse" -v n="$reqs" -v sw=$((sw1 - sw0)) -v t=$((t1 - t0)) -v hz="$hz" -v e="$errs" \
    'BEGIN {printf "reuseport=%-5s requests=%-7d ctxsw/conn=%.2f cpu-us/req=%.1f %s\n", r, n, sw / n, t / hz * 1e6 / n, e}'
  kill -TERM "$sid"
  for _ in $(seq 100); do kill -0 "$sid" 2>/dev/null || break; sleep 0.1; done
  wait "$sid" 2>/dev/null || true
done
