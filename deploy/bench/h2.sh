#!/usr/bin/env bash
# What `make bench-h2` runs: HTTP/2 side by side, nginx, HAProxy and
# pingora-master on tls.sh's setup (tlslib.sh: the same ECDSA P-256
# certificate, the same nginx backend on LOAD_CPU speaking HTTP/1.1, each
# proxy with one worker pinned to PROXY_CPU), h2load on LOAD_CPU. Three
# loads, each proxy in turn, ROUNDS times (the rounds show the spread on a
# shared machine):
#   h2    TLS, ALPN h2: CONNS connections with STREAMS streams each
#   h2c   cleartext HTTP/2 with prior knowledge, the same load
#   serial  TLS h2, one connection, one stream: latency
# cpu-us/req is each proxy's own CPU time per request (utime+stime of all
# its processes over the run, /proc/PID/stat); mean and max are h2load's
# time for request.
#
#   deploy/bench/h2.sh
#   DUR=10s ROUNDS=5 BIN=/tmp/pm deploy/bench/h2.sh
#   ONLY="h2 serial" deploy/bench/h2.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DUR=${DUR:-5s} ROUNDS=${ROUNDS:-3} CONNS=${CONNS:-10} STREAMS=${STREAMS:-10}
ONLY=${ONLY:-h2 h2c serial}
PROXY_CPU=${PROXY_CPU:-1} LOAD_CPU=${LOAD_CPU:-0}
bin=${BIN:-$root/bin/pingora-master}
for tool in nginx haproxy h2load curl taskset setsid; do
  command -v "$tool" >/dev/null || { echo "h2: missing $tool (apt-get install nginx haproxy nghttp2-client curl)" >&2; exit 2; }
done
[[ -n ${BIN:-} ]] || make -s -C "$root" build
. "$root/deploy/bench/lib.sh"
. "$root/deploy/bench/tlslib.sh"
tls_files
# nginx 1.22 takes "http2" per listen; without ssl it is h2c by prior knowledge.
tls_nginx_conf "$dir/nginx.conf" "127.0.0.1:19201 ssl http2 backlog=4096" "127.0.0.1:19211 http2 backlog=4096"
tls_haproxy_conf "$dir/haproxy.cfg" "127.0.0.1:19202 ssl crt $dir/haproxy.pem alpn h2,http/1.1" "127.0.0.1:19212 proto h2"
tls_project_conf "$dir/pm.hcl" 19203 19213
"$bin" -t -c "$dir/pm.hcl" >/dev/null

bench_start_backend
setsid taskset -c "$PROXY_CPU" nginx -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 & pids+=($!); sid_nginx=$!
setsid taskset -c "$PROXY_CPU" haproxy -f "$dir/haproxy.cfg" >"$dir/haproxy.out" 2>&1 & pids+=($!); sid_haproxy=$!
setsid taskset -c "$PROXY_CPU" "$bin" -c "$dir/pm.hcl" >"$dir/pm.out" 2>&1 & pids+=($!); sid_project=$!
for port in 19201 19202 19203; do
  for _ in $(seq 100); do curl -kfs --http2 "https://127.0.0.1:$port/" >/dev/null 2>&1 && continue 2; sleep 0.1; done
  echo "h2: nothing answers h2 on :$port; output:" >&2; tail -5 "$dir"/*.out "$dir"/*.err >&2 2>/dev/null; exit 1
done
for port in 19211 19212 19213; do
  for _ in $(seq 100); do curl -fs --http2-prior-knowledge "http://127.0.0.1:$port/" >/dev/null 2>&1 && continue 2; sleep 0.1; done
  echo "h2: nothing answers h2c on :$port; output:" >&2; tail -5 "$dir"/*.out "$dir"/*.err >&2 2>/dev/null; exit 1
done

hz=$(getconf CLK_TCK)
version=$("$bin" -v 2>/dev/null | head -1)
cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -1)
echo "## HTTP/2: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ${cpu:+($cpu)}; $version; nginx $(nginx -v 2>&1 | sed 's|.*/||'), HAProxy $(haproxy -v | awk 'NR==1 {print $3}'), $(h2load --version | head -1)"
echo "## ECDSA P-256; DUR=$DUR ROUNDS=$ROUNDS; h2 and h2c: h2load -c$CONNS -m$STREAMS; serial: h2load -c1 -m1 over TLS"
for mode in $ONLY; do
  case $mode in
  h2) scheme=https off=0 load=(-c"$CONNS" -m"$STREAMS") label="h2 over TLS, $CONNS connections x $STREAMS streams" ;;
  h2c) scheme=http off=10 load=(-c"$CONNS" -m"$STREAMS") label="h2c (prior knowledge), $CONNS connections x $STREAMS streams" ;;
  serial) scheme=https off=0 load=(-c1 -m1) label="h2 over TLS, one connection, one stream at a time" ;;
  *) echo "h2: unknown mode $mode (h2, h2c, serial)" >&2; exit 2 ;;
  esac
  echo "## $label"
  printf '%-10s %5s %10s %10s %10s %12s  %s\n' proxy round req/s mean max cpu-us/req errors
  for round in $(seq "$ROUNDS"); do
    for side in nginx:19201:$sid_nginx haproxy:19202:$sid_haproxy project:19203:$sid_project; do
      IFS=: read -r name port sid <<<"$side"
      port=$((port + off))
      before=$(ticks "$sid")
      out=$(taskset -c "$LOAD_CPU" h2load -t1 "${load[@]}" -D "${DUR%s}" "$scheme://127.0.0.1:$port/" 2>&1) || true
      after=$(ticks "$sid")
      # "requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, 0 errored, 0 timeout"
      read -r total ok failed errored timeout <<<"$(awk '/^requests:/ {print $2, $8, $10, $12, $14}' <<<"$out")"
      rps=$(awk '/^finished in/ {print $4}' <<<"$out")
      read -r tmax tmean <<<"$(awk '/^time for request:/ {print $5, $6}' <<<"$out")"
      errs="no errors"
      if [[ -z $ok ]]; then
        errs="h2load: $(tail -1 <<<"$out")" ok=0
      elif ((ok != total || failed + errored + timeout > 0)); then
        errs="$((total - ok)) not 2xx/ok ($failed failed, $errored errored, $timeout timeout)"
      fi
      cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$ok" 'BEGIN {if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-"}')
      printf '%-10s %5s %10s %10s %10s %12s  %s\n' "$name" "$round" "${rps:--}" "${tmean:--}" "${tmax:--}" "$cpu" "$errs"
    done
  done
done
