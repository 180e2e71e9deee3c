#!/usr/bin/env bash
# nginx and pingora-master measured by turns, ROUNDS pairs, on the same load as
# peers.sh (same backend, same nginx proxy config, same pinning): both proxies
# run for the whole script and take wrk's load one after the other, so that a
# noisy neighbour on the VM hits both sides of a pair alike. peers.sh gives one
# sample per proxy and measures the project last; for figures to quote, run
# this too and give the ranges.
#
#   deploy/bench/pairs.sh                         # new connection per request, 4 pairs
#   MODE=keepalive ROUNDS=6 DUR=8s deploy/bench/pairs.sh
#   BIN=/tmp/pm-fifo CONF=my.hcl.tmpl deploy/bench/pairs.sh
#
# CONF is a pingora-master config template ({listen}, {backend},
# {backend_port}); default deploy/bench/bench.hcl.tmpl. cpu is each proxy's
# own CPU time per request (all its processes); percentiles are wrk's.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MODE=${MODE:-close} ROUNDS=${ROUNDS:-4} DUR=${DUR:-6s} CONNS=${CONNS:-50}
PROXY_CPU=${PROXY_CPU:-1} LOAD_CPU=${LOAD_CPU:-0}
bin=${BIN:-$root/bin/pingora-master}
tmpl=${CONF:-$root/deploy/bench/bench.hcl.tmpl}
for tool in nginx wrk curl taskset setsid; do
  command -v "$tool" >/dev/null || { echo "pairs: missing $tool (see deploy/bench/bench.sh)" >&2; exit 2; }
done
[[ -n ${BIN:-} ]] || make -s -C "$root" build
dir=$(mktemp -d) pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
back=127.0.0.1:19000
body=$(printf 'x%.0s' $(seq 1 100))
cat >"$dir/backend.conf" <<C
worker_processes 1; daemon off; pid $dir/backend.pid; error_log $dir/backend.err;
events { worker_connections 4096; }
http { access_log off; server { listen $back backlog=4096; keepalive_requests 100000;
  location / { return 200 "$body"; } } }
C
cat >"$dir/nginx.conf" <<C
worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/nginx.err;
events { worker_connections 4096; }
http { access_log off; upstream b { server $back; keepalive 128; }
  server { listen 127.0.0.1:19001 backlog=4096; keepalive_requests 100000;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
C
sed -e "s/{listen}/127.0.0.1:19004/g" -e "s/{backend}/$back/g" -e "s/{backend_port}/${back##*:}/g" \
  -e "s|/tmp/pingora-bench|$dir/pingora-bench|g" "$tmpl" >"$dir/project.hcl"

setsid taskset -c "$LOAD_CPU" nginx -c "$dir/backend.conf" -p "$dir" >/dev/null 2>&1 & pids+=($!)
setsid taskset -c "$PROXY_CPU" nginx -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 & pids+=($!); nginx_sid=$!
setsid taskset -c "$PROXY_CPU" "$bin" -c "$dir/project.hcl" >"$dir/project.out" 2>&1 & pids+=($!); project_sid=$!
for port in 19001 19004; do
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1 && continue 2; sleep 0.1; done
  echo "pairs: nothing answers on :$port; project output:" >&2; tail -5 "$dir/project.out" >&2; exit 1
done
cat >"$dir/pct.lua" <<'L'
done = function(summary, latency, requests)
  for _, p in pairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%g=%.2fms ", p, latency:percentile(p) / 1000))
  end
  io.write("\n")
end
L
ticks() { # CPU clock ticks of every process in session $1
  local t=0 p
  for p in $(ps -e -o sid=,pid= | awk -v s="$1" '$1==s {print $2}'); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
hdr=(); [[ $MODE == close ]] && hdr=(-H "Connection: close")
hz=$(getconf CLK_TCK)
echo "## $MODE, $ROUNDS pairs of $DUR, $CONNS connections: $(date -u '+%Y-%m-%d %H:%M UTC'), $("$bin" -v 2>/dev/null | head -1)"
for r in $(seq "$ROUNDS"); do
  for side in nginx:19001:$nginx_sid project:19004:$project_sid; do
    IFS=: read -r name port sid <<<"$side"
    before=$(ticks "$sid")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DUR" -s "$dir/pct.lua" "${hdr[@]}" "http://127.0.0.1:$port/")
    after=$(ticks "$sid")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    errs=$(awk '/Non-2xx|Socket errors/' <<<"$out" | tr '\n' ' ')
    cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
    printf '%s %-8s req/s=%-10s cpu-us/req=%-5s %s%s\n' "$r" "$name" "$rps" "$cpu" "$(tail -1 <<<"$out")" "${errs:+ $errs}"
  done
done
