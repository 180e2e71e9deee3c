#!/usr/bin/env bash
# What `make bench-tls` runs: TLS termination side by side, nginx, HAProxy and
# pingora-master with the same ECDSA P-256 certificate
# (config/testdata/tls/a.pem), on pairs.sh's setup: one nginx backend on
# LOAD_CPU, each proxy with one worker pinned to PROXY_CPU, wrk on LOAD_CPU
# over https. Two runs: keep-alive clients, then a new TLS connection (a full
# handshake, no resumption: wrk keeps no sessions) per request. cpu-us/req is
# each proxy's own CPU time per request, all its processes summed.
#
#   deploy/bench/tls.sh
#   DUR=10s CONNS=100 BIN=/tmp/pm deploy/bench/tls.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DUR=${DUR:-8s} CONNS=${CONNS:-50}
PROXY_CPU=${PROXY_CPU:-1} LOAD_CPU=${LOAD_CPU:-0}
bin=${BIN:-$root/bin/pingora-master}
for tool in nginx haproxy wrk curl taskset setsid; do
  command -v "$tool" >/dev/null || { echo "tls: missing $tool (see deploy/bench/bench.sh)" >&2; exit 2; }
done
[[ -n ${BIN:-} ]] || make -s -C "$root" build
. "$root/deploy/bench/lib.sh"
. "$root/deploy/bench/tlslib.sh"
tls_files
tls_nginx_conf "$dir/nginx.conf" "127.0.0.1:19101 ssl backlog=4096"
tls_haproxy_conf "$dir/haproxy.cfg" "127.0.0.1:19102 ssl crt $dir/haproxy.pem alpn http/1.1"
tls_project_conf "$dir/pm.hcl" 19103

bench_start_backend
setsid taskset -c "$PROXY_CPU" nginx -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 & pids+=($!); sid_nginx=$!
setsid taskset -c "$PROXY_CPU" haproxy -f "$dir/haproxy.cfg" >"$dir/haproxy.out" 2>&1 & pids+=($!); sid_haproxy=$!
setsid taskset -c "$PROXY_CPU" "$bin" -c "$dir/pm.hcl" >"$dir/pm.out" 2>&1 & pids+=($!); sid_project=$!
for port in 19101 19102 19103; do
  for _ in $(seq 100); do curl -kfs "https://127.0.0.1:$port/" >/dev/null 2>&1 && continue 2; sleep 0.1; done
  echo "tls: nothing answers on :$port; output:" >&2; tail -5 "$dir"/*.out "$dir"/*.err >&2 2>/dev/null; exit 1
done
cat >"$dir/pct.lua" <<'L'
done = function(summary, latency, requests)
  io.write(string.format("p50=%.2fms p99=%.2fms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
L
hz=$(getconf CLK_TCK)
version=$("$bin" -v 2>/dev/null | head -1)
for mode in keepalive close; do
  hdr=(); label="keep-alive clients over TLS"
  [[ $mode == close ]] && hdr=(-H "Connection: close") label="a new TLS connection per request (full handshake)"
  echo "## $label: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs; $version; ECDSA P-256, DUR=$DUR CONNS=$CONNS"
  printf '%-10s %12s %10s %10s %12s  %s\n' proxy req/s p50 p99 cpu-us/req errors
  for side in nginx:19101:$sid_nginx haproxy:19102:$sid_haproxy project:19103:$sid_project; do
    IFS=: read -r name port sid <<<"$side"
    before=$(ticks "$sid")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DUR" -s "$dir/pct.lua" "${hdr[@]}" "https://127.0.0.1:$port/")
    after=$(ticks "$sid")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    errs=$(awk '/Non-2xx|Socket errors/' <<<"$out" | tr '\n' ' ')
    cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
    read -r p50 p99 <<<"$(tail -1 <<<"$out" | sed 's/p50=//; s/p99=//')"
    printf '%-10s %12s %10s %10s %12s  %s\n' "$name" "$rps" "$p50" "$p99" "$cpu" "${errs:-no errors}"
  done
done
