#!/usr/bin/env bash
# What `make bench-memory` runs: the memory of nginx and pingora-master side
# by side (issue 14), on pairs.sh's setup: the same nginx backend, nginx as a
# proxy with worker_processes 1 and the same keep-alive settings,
# pingora-master with one worker (memory.hcl.tmpl), the proxies pinned to
# PROXY_CPU and the load to LOAD_CPU.
#
#   deploy/bench/memory.sh
#   COUNTS="1000 10000" DUR=10s BIN=/tmp/pm deploy/bench/memory.sh
#   COUNTS= CONF=my.hcl.tmpl deploy/bench/memory.sh   # wrk and at-rest figures only
#   PROTOS=h2 COUNTS=1000 deploy/bench/memory.sh      # idle HTTP/2 connections only
#
# For each N in COUNTS (default 1000 10000 50000; an N the open files limit
# cannot hold is skipped, with the reason) and each protocol in PROTOS
# (default "plain tls h2": HTTP/1.1, HTTP/1.1 over TLS, HTTP/2 over TLS; both
# proxies with the same ECDSA P-256 certificate, config/testdata/tls/a.pem,
# nginx with ssl_session_cache off and http2 on its h2 port),
# deploy/bench/idleconns opens N client connections to each proxy, each
# sends one GET on keep-alive (TLS: after a full handshake) and reads the
# response, then all stay idle; the worker's RSS before and SETTLE
# seconds after the last one went idle (default 6: pingora-master parks idle
# connections and gives back what the burst of opening them used once parking
# pauses, see proxy/park.go; nginx is measured after the same wait) gives
# bytes per idle connection (VmRSS of /proc/PID/status, and Rss of
# smaps_rollup). Then wrk -t1 -c1000 -dDUR against each with the worker's RSS
# sampled every 100 ms (peak), and the masters' and workers' RSS at rest.
# Each measurement starts a fresh pair of proxies. The figures are
# comparable within one run only.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
COUNTS=${COUNTS:-1000 10000 50000} DUR=${DUR:-10s} SETTLE=${SETTLE:-6}
PROTOS=${PROTOS:-plain tls h2}
PROXY_CPU=${PROXY_CPU:-1} LOAD_CPU=${LOAD_CPU:-0}
bin=${BIN:-$root/bin/pingora-master}
tmpl=${CONF:-$root/deploy/bench/memory.hcl.tmpl}
for tool in nginx wrk curl taskset setsid go; do
  command -v "$tool" >/dev/null || { echo "memory: missing $tool (see deploy/bench/bench.sh)" >&2; exit 2; }
done
[[ -n ${BIN:-} ]] || make -s -C "$root" build
[[ -x $bin ]] || { echo "memory: $bin is not an executable" >&2; exit 2; }

# Each idle client costs the proxy two descriptors at most (the client and,
# for nginx while a request runs, an upstream), and this script one: raise
# the limit as far as the kernel lets us (root may raise the hard limit up to
# fs.nr_open), then say what we got.
want=$((2 * 50000 + 4096))
nr_open=$(cat /proc/sys/fs/nr_open 2>/dev/null || echo "$want")
((want > nr_open)) && want=$nr_open
ulimit -Hn "$want" 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
echo "## open files limit: $nofile (hard $(ulimit -Hn), wanted $want)"

dir=$(mktemp -d) pids=()
cleanup() {
  for p in "${proxies[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
(cd "$root" && go build -o "$dir/idleconns" ./deploy/bench/idleconns)
. "$root/deploy/bench/tlslib.sh"
tls_files

back=127.0.0.1:19000
body=$(printf 'x%.0s' $(seq 1 100))
conns=$((nofile > 4096 ? nofile - 64 : 4096))
cat >"$dir/backend.conf" <<C
worker_processes 1; daemon off; pid $dir/backend.pid; error_log $dir/backend.err;
worker_rlimit_nofile $nofile;
events { worker_connections 4096; }
http { access_log off; server { listen $back backlog=4096; keepalive_requests 100000;
  location / { return 200 "$body"; } } }
C
# As pairs.sh's nginx, with worker_connections (and its files limit) raised
# to hold the idle clients: nginx's own connection cap.
cat >"$dir/nginx.conf" <<C
worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/nginx.err;
worker_rlimit_nofile $nofile;
events { worker_connections $conns; }
http { access_log off; upstream b { server $back; keepalive 128; }
  server { listen 127.0.0.1:19001 backlog=4096; listen 127.0.0.1:19011 ssl backlog=4096;
    listen 127.0.0.1:19021 ssl http2 backlog=4096;
    keepalive_requests 100000; keepalive_timeout 75s;
    ssl_certificate $dir/cert.pem; ssl_certificate_key $dir/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
C
sed -e "s/{listen}/127.0.0.1:19004/g" -e "s/{backend}/$back/g" -e "s/{backend_port}/${back##*:}/g" \
  -e "s/{nofile}/$nofile/g" -e "s|{dir}|$dir|g" "$tmpl" >"$dir/pm.hcl"
# The same listener again with TLS, for the tls and h2 clients (ALPN).
cat >>"$dir/pm.hcl" <<C

listener "tls" {
  address            = "127.0.0.1:19014"
  keepalive_timeout  = "75s"
  keepalive_requests = 100000
  backlog            = 4096
  tls {
    certificate {
      cert_file = "$dir/cert.pem"
      key_file  = "$dir/key.pem"
    }
  }
}
C
"$bin" -t -c "$dir/pm.hcl" >/dev/null

setsid taskset -c "$LOAD_CPU" nginx -c "$dir/backend.conf" -p "$dir" >/dev/null 2>&1 & pids+=($!)
worker_of() { # the one worker process (child) of master $1
  local w
  for _ in $(seq 100); do
    w=$(ps -o pid= --ppid "$1" | awk 'NR==1 {print $1}')
    [[ -n $w ]] && { echo "$w"; return; }
    sleep 0.1
  done
  echo "memory: no worker under pid $1" >&2
  exit 1
}
# Every measurement gets a fresh pair of proxies, so that none starts with
# what the one before left in the worker (Go returns freed memory to the
# system only slowly).
proxies=()
start_proxies() {
  setsid taskset -c "$PROXY_CPU" nginx -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 & proxies=($!); nginx_master=$!
  setsid taskset -c "$PROXY_CPU" "$bin" -c "$dir/pm.hcl" >"$dir/pm.out" 2>&1 & proxies+=($!); pm_master=$!
  local port
  for port in 19001 19004; do
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1 && continue 2; sleep 0.1; done
    echo "memory: nothing answers on :$port; output:" >&2; tail -5 "$dir"/*.out "$dir"/*.err >&2; exit 1
  done
  nginx_worker=$(worker_of "$nginx_master")
  pm_worker=$(worker_of "$pm_master")
}
stop_proxies() {
  local p
  for p in "${proxies[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  for p in "${proxies[@]}"; do wait "$p" 2>/dev/null || true; done
  proxies=()
}
start_proxies
vmrss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; }      # bytes
rollup() { awk '/^Rss:/ {print $2 * 1024}' "/proc/$1/smaps_rollup"; } # bytes
mb() { awk -v b="$1" 'BEGIN {printf "%.1f MB", b / 1048576}'; }

# At rest: after one request each (the readiness probes above).
declare -A rest
for side in nginx pm; do
  m=${side}_master w=${side}_worker
  rest[$side.master]=$(vmrss "${!m}") rest[$side.worker]=$(vmrss "${!w}")
done

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -1)
version=$("$bin" -v 2>/dev/null | head -1 || true)
echo "## memory: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, ${cpu:-$(uname -m)}, $(uname -sr)"
echo "## ${version:-pingora-master}; nginx $(nginx -v 2>&1 | sed 's|.*/||')"
printf '%-38s %18s %18s\n' "" "nginx" "pingora-master"

idle() { # idle SIDE PORT N SOURCE PROTO: prints "vmrss-per-conn rollup-per-conn"
  local w=$1_worker v0 r0 v1 r1 line
  v0=$(vmrss "${!w}") r0=$(rollup "${!w}")
  # A new source address for each run: the last run's ports are in TIME_WAIT.
  coproc HOLD { taskset -c "$LOAD_CPU" "$dir/idleconns" -proto "$5" -addr "127.0.0.1:$2" -n "$3" -per-source 10000 -first-source "$4"; }
  local pid=$HOLD_PID in=${HOLD[1]}
  if ! read -r line <&"${HOLD[0]}" || [[ $line != "ready $3" ]]; then
    echo "memory: idleconns -proto $5 to :$2 with $3 connections did not get ready" >&2
    exec {in}>&-; wait "$pid" || true; return 1
  fi
  sleep "$SETTLE"
  v1=$(vmrss "${!w}") r1=$(rollup "${!w}")
  exec {in}>&- # idleconns closes its connections when its stdin closes
  wait "$pid" || true
  awk -v a="$v0" -v b="$v1" -v c="$r0" -v d="$r1" -v n="$3" \
    'BEGIN {printf "%d %d %.1f %.1f\n", (b - a) / n, (d - c) / n, a / 1048576, b / 1048576}'
}
status=0 source=2
for n in $COUNTS; do
  # The proxy holds n client descriptors; idleconns, in this shell's limit, n.
  if ((n + 256 > nofile)); then
    printf '%-38s %s\n' "idle $n" "skipped: open files limit $nofile"
    continue
  fi
  for proto in $PROTOS; do
    case $proto in
    plain) ports="19001 19004" ;;
    tls) ports="19011 19014" ;;
    h2) ports="19021 19014" ;;
    *) echo "memory: unknown protocol $proto in PROTOS (plain, tls, h2)" >&2; exit 2 ;;
    esac
    read -r nginx_port pm_port <<<"$ports"
    stop_proxies; start_proxies
    out=()
    for side in nginx:$nginx_port pm:$pm_port; do
      if r=$(idle "${side%%:*}" "${side##*:}" "$n" "$source" "$proto"); then
        read -r v rr a b <<<"$r"
        out+=("$v B ($rr) $a->$b MB")
      else
        out+=("failed"); status=1
      fi
      source=$((source + (n + 9999) / 10000))
    done
    printf '%-38s %28s   %28s\n' "idle $n $proto: B/conn (smaps) RSS" "${out[0]}" "${out[1]}"
  done
done

peak() { # peak PID PORT: the worker's peak VmRSS during wrk, in bytes
  local p=0 v
  taskset -c "$LOAD_CPU" wrk -t1 -c1000 -d"$DUR" "http://127.0.0.1:$2/" >"$dir/wrk.$2" 2>&1 &
  local load=$!
  while kill -0 "$load" 2>/dev/null; do
    v=$(vmrss "$1"); ((v > p)) && p=$v
    sleep 0.1
  done
  wait "$load" || true
  echo "$p"
}
stop_proxies; start_proxies
pn=$(peak "$nginx_worker" 19001) pp=$(peak "$pm_worker" 19004)
rps() { awk '/Requests\/sec/ {print $2}' "$dir/wrk.$1"; }
printf '%-38s %28s   %28s\n' "wrk -c1000 $DUR: peak RSS" "$(mb "$pn") ($(rps 19001) r/s)" "$(mb "$pp") ($(rps 19004) r/s)"
printf '%-38s %28s   %28s\n' "master RSS at rest" "$(mb "${rest[nginx.master]}")" "$(mb "${rest[pm.master]}")"
printf '%-38s %28s   %28s\n' "worker RSS at rest" "$(mb "${rest[nginx.worker]}")" "$(mb "${rest[pm.worker]}")"
exit "$status"
