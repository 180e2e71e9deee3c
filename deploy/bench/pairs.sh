#!/usr/bin/env bash
# Two servers measured by turns, ROUNDS pairs, on the same load as peers.sh
# (same backend, same nginx proxy config, same pinning): both run for the
# whole script and take wrk's load one after the other, so that a noisy
# neighbour on the VM hits both sides of a pair alike. peers.sh gives one
# sample per proxy and measures the project last; for figures to quote, run
# this too and give the ranges.
#
# The two sides are nginx and pingora-master (BIN), or, with BIN_A and BIN_B,
# two builds of pingora-master (e.g. the stock and the patched Go runtime:
# `make bench-runtime`); the side that goes first swaps every pair.
#
#   deploy/bench/pairs.sh                         # new connection per request, 4 pairs
#   MODE=keepalive ROUNDS=6 DUR=8s deploy/bench/pairs.sh
#   BIN=/tmp/pm-fifo CONF=my.hcl.tmpl deploy/bench/pairs.sh
#   BIN_A=bin/pingora-master.stock BIN_B=bin/pingora-master.fifo \
#     NAME_A=stock NAME_B=fifo MODE=keepalive ROUNDS=10 deploy/bench/pairs.sh
#
# CONF is a pingora-master config template ({listen}, {backend},
# {backend_port}); default deploy/bench/bench.hcl.tmpl. cpu is each server's
# own CPU time per request (all its processes); percentiles are wrk's. After
# the pairs, the spread per side: min/median/max of p99 and of cpu-us/req,
# and the second side's p99 minus the first's, pair by pair.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MODE=${MODE:-close} ROUNDS=${ROUNDS:-4} DUR=${DUR:-6s} CONNS=${CONNS:-50}
PROXY_CPU=${PROXY_CPU:-1} LOAD_CPU=${LOAD_CPU:-0}
bin=${BIN:-$root/bin/pingora-master}
tmpl=${CONF:-$root/deploy/bench/bench.hcl.tmpl}
if [[ -n ${BIN_A:-}${BIN_B:-} ]]; then
  [[ -x ${BIN_A:-} && -x ${BIN_B:-} ]] || { echo "pairs: BIN_A and BIN_B must both be executables" >&2; exit 2; }
  name_a=${NAME_A:-a} name_b=${NAME_B:-b}
else
  name_a=nginx name_b=project
fi
for tool in nginx wrk curl taskset setsid; do
  command -v "$tool" >/dev/null || { echo "pairs: missing $tool (see deploy/bench/bench.sh)" >&2; exit 2; }
done
[[ -n ${BIN:-}${BIN_A:-} ]] || make -s -C "$root" build
. "$root/deploy/bench/lib.sh"
cat >"$dir/nginx.conf" <<C
worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/nginx.err;
events { worker_connections 4096; }
http { access_log off; upstream b { server $back; keepalive 128; }
  server { listen 127.0.0.1:19001 backlog=4096; keepalive_requests 100000;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
C
project_conf() { # project_conf PORT NAME: the template for one pingora-master
  sed -e "s/{listen}/127.0.0.1:$1/g" -e "s/{backend}/$back/g" -e "s/{backend_port}/${back##*:}/g" \
    -e "s|/tmp/pingora-bench|$dir/pingora-bench-$2|g" "$tmpl" >"$dir/$2.hcl"
}

bench_start_backend
if [[ -n ${BIN_A:-} ]]; then
  project_conf 19004 a; project_conf 19005 b
  setsid taskset -c "$PROXY_CPU" "$BIN_A" -c "$dir/a.hcl" >"$dir/a.out" 2>&1 & pids+=($!); sid_a=$!
  setsid taskset -c "$PROXY_CPU" "$BIN_B" -c "$dir/b.hcl" >"$dir/b.out" 2>&1 & pids+=($!); sid_b=$!
  port_a=19004 port_b=19005 label="$name_a: $("$BIN_A" -v 2>/dev/null | head -1); $name_b: $("$BIN_B" -v 2>/dev/null | head -1)"
else
  project_conf 19004 b
  setsid taskset -c "$PROXY_CPU" nginx -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 & pids+=($!); sid_a=$!
  setsid taskset -c "$PROXY_CPU" "$bin" -c "$dir/b.hcl" >"$dir/b.out" 2>&1 & pids+=($!); sid_b=$!
  port_a=19001 port_b=19004 label=$("$bin" -v 2>/dev/null | head -1)
fi
for port in "$port_a" "$port_b"; do
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1 && continue 2; sleep 0.1; done
  echo "pairs: nothing answers on :$port; output:" >&2; tail -5 "$dir"/*.out >&2; exit 1
done
cat >"$dir/pct.lua" <<'L'
done = function(summary, latency, requests)
  for _, p in pairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%g=%.2fms ", p, latency:percentile(p) / 1000))
  end
  io.write("\n")
end
L
hdr=(); [[ $MODE == close ]] && hdr=(-H "Connection: close")
hz=$(getconf CLK_TCK)
echo "## $MODE, $ROUNDS pairs of $DUR, $CONNS connections: $(date -u '+%Y-%m-%d %H:%M UTC'), $label"
: >"$dir/results"
for r in $(seq "$ROUNDS"); do
  sides=("$name_a:$port_a:$sid_a" "$name_b:$port_b:$sid_b")
  ((r % 2)) || sides=("${sides[1]}" "${sides[0]}")
  for side in "${sides[@]}"; do
    IFS=: read -r name port sid <<<"$side"
    before=$(ticks "$sid")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DUR" -s "$dir/pct.lua" "${hdr[@]}" "http://127.0.0.1:$port/")
    after=$(ticks "$sid")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    errs=$(awk '/Non-2xx|Socket errors/' <<<"$out" | tr '\n' ' ')
    cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
    pcts=$(tail -1 <<<"$out")
    printf '%s %-8s req/s=%-10s cpu-us/req=%-5s %s%s\n' "$r" "$name" "$rps" "$cpu" "$pcts" "${errs:+ $errs}"
    p99=$(sed -n 's/.*p99=\([0-9.]*\)ms.*/\1/p' <<<"$pcts")
    echo "$r $name ${p99:-nan} $cpu" >>"$dir/results"
  done
done
# The spread: min/median/max per side, and B's p99 minus A's per pair.
awk -v a="$name_a" -v b="$name_b" '
function spread(v, n,   i, j, t, m) {
  for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
  m = n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2
  return sprintf("%.2f / %.2f / %.2f", v[1], m, v[n])
}
{ p99[$2, $1] = $3; cpu[$2, $1] = $4; if ($1 > n) n = $1 }
END {
  print "## spread over " n " pairs (min / median / max)"
  for (s = 0; s < 2; s++) {
    name = s ? b : a
    for (r = 1; r <= n; r++) { vp[r] = p99[name, r]; vc[r] = cpu[name, r] }
    printf "%-8s p99 ms %s   cpu-us/req %s\n", name, spread(vp, n), spread(vc, n)
  }
  below = 0
  for (r = 1; r <= n; r++) { d[r] = p99[b, r] - p99[a, r]; if (d[r] < 0) below++ }
  printf "%s p99 - %s p99, per pair: %s ms; %s lower in %d of %d pairs\n", b, a, spread(d, n), b, below, n
  for (r = 1; r <= n; r++) { vp[r] = p99[a, r]; vc[r] = p99[b, r] }
  spread(vp, n); spread(vc, n)
  if (n < 3) verdict = "too few pairs to judge"
  else if (vc[n] < vp[1]) verdict = b " lower beyond the spread (its highest p99 is under " a "\047s lowest)"
  else if (vp[n] < vc[1]) verdict = a " lower beyond the spread (its highest p99 is under " b "\047s lowest)"
  else verdict = "within the spread (the p99 ranges overlap)"
  print "p99: " verdict
  # The pairs ran by turns, so each pair shares the state of the machine: the
  # per-pair differences are the sharper test. Their whole range on one
  # side of zero is a difference beyond the spread of the pairs too.
  if (n < 3) paired = "too few pairs to judge"
  else if (below == n) paired = b " lower in every pair (differences " spread(d, n) " ms, all below zero)"
  else if (below == 0) paired = a " lower in every pair"
  else paired = "no side lower in every pair"
  print "p99, paired: " paired
}' "$dir/results"
