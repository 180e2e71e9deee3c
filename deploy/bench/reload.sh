#!/usr/bin/env bash
# What `make bench-reload` runs (with the Go benchmarks of the upgrade): the
# reload latency of nginx, HAProxy and pingora-master measured the same way,
# as an outside client sees it. Each proxy has one worker pinned to
# PROXY_CPU and one route that answers by itself (no backend) with a body
# naming its config's version: nginx `return 200 "vN"`, HAProxy
# `http-request return ... string "vN"`, pingora-master `respond { body =
# "vN" }`. deploy/bench/reloadlat, on LOAD_CPU, does RUNS runs on each: write
# the next version's config, signal the master (nginx: SIGHUP, as `nginx -s
# reload` sends; HAProxy 2.6 in master-worker mode, -W: SIGUSR2;
# pingora-master: SIGHUP), then time
#   serve  until a fresh TCP connection's GET / gets the new version's body
#          (a new connection every 250 us)
#   gone   until the old worker process has exited
# and count the polls that got no answer at all (errors). Between runs,
# untimed, it waits for the master to have one new worker again, then
# 200 ms more: HAProxy 2.6's master loses a SIGUSR2 that comes right after
# its previous reload has finished (seen here with no pause: the new version
# never served), so every proxy gets the same pause.
#
# Then the binary upgrade, where one exists, the same way (UPGRADE_RUNS runs,
# default RUNS; UPGRADE_RUNS=0 skips it): pingora-master's SIGUSR2 (a new
# master, which retires the old one itself) and nginx's USR2, with SIGQUIT
# to the old master as soon as the PID file names the new master and it has
# its worker (nginx leaves that step to the operator; here it is done as a
# script would, at once; quitting only once the new version has answered
# would measure luck: an idle old worker keeps taking fresh connections, seen
# here as 6-70 ms with polls every 250 us and up to 300 ms every 5 ms). nginx ignores USR2 while its
# parent is the one it started under (its check that no other binary runs),
# so the nginx of this part runs as a daemon (`daemon on`). HAProxy has no
# separate step: its master-worker reload above already re-executes the
# binary. Here gone also waits for the old master.
#
#   deploy/bench/reload.sh
#   RUNS=50 BIN=/tmp/pm deploy/bench/reload.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUNS=${RUNS:-20} UPGRADE_RUNS=${UPGRADE_RUNS:-${RUNS:-20}}
PROXY_CPU=${PROXY_CPU:-1} LOAD_CPU=${LOAD_CPU:-0}
bin=${BIN:-$root/bin/pingora-master}
for tool in nginx haproxy go curl taskset setsid; do
  command -v "$tool" >/dev/null || { echo "reload: missing $tool (apt-get install nginx haproxy curl)" >&2; exit 2; }
done
[[ -n ${BIN:-} ]] || make -s -C "$root" build
[[ -x $bin ]] || { echo "reload: $bin is not an executable" >&2; exit 2; }
. "$root/deploy/bench/lib.sh"
# The daemon nginx of the upgrade part has left our process groups: by its
# PID files (the old master's, should a run stop half way, is .oldbin).
trap 'for f in "$dir"/nginxup.pid "$dir"/nginxup.pid.oldbin; do [[ -s $f ]] && kill -TERM "$(cat "$f")" 2>/dev/null; done; cleanup' EXIT
(cd "$root" && go build -o "$dir/reloadlat" ./deploy/bench/reloadlat)

# The templates: {v} is the version reloadlat writes in.
cat >"$dir/nginx.tmpl" <<C
# version {v}
worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/nginx.err;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:19301;
  location / { default_type text/plain; return 200 "v{v}"; } } }
C
sed -e 's/daemon off;/daemon on;/' -e "s|$dir/nginx\\.|$dir/nginxup.|g" -e 's/:19301;/:19311;/' "$dir/nginx.tmpl" >"$dir/nginxup.tmpl"
cat >"$dir/haproxy.tmpl" <<C
# version {v}
global
  nbthread 1
  pidfile $dir/haproxy.pid
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend f
  bind 127.0.0.1:19302
  http-request return status 200 content-type text/plain string "v{v}"
C
cat >"$dir/pm.tmpl" <<C
# version {v}
pid_file       = "$dir/pm.pid"
lock_file      = "$dir/pm.lock"
control_socket = "$dir/pm.sock"
user             = "nobody"
workers          = 1
worker_threads   = 1
shutdown_timeout = "5s"
log {
  level = "warn"
}
listener "bench" {
  address = "127.0.0.1:19303"
}
route "version" {
  respond {
    status = 200
    body   = "v{v}"
  }
}
C
for p in nginx:conf nginxup:conf haproxy:cfg pm:hcl; do
  sed 's/{v}/0/g' "$dir/${p%%:*}.tmpl" >"$dir/${p%%:*}.${p#*:}"
done
"$bin" -t -c "$dir/pm.hcl" >/dev/null
haproxy -c -q -f "$dir/haproxy.cfg"
nginx -t -q -c "$dir/nginx.conf" -p "$dir"
nginx -t -q -c "$dir/nginxup.conf" -p "$dir"

setsid taskset -c "$PROXY_CPU" nginx -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 & pids+=($!)
setsid taskset -c "$PROXY_CPU" haproxy -W -f "$dir/haproxy.cfg" >"$dir/haproxy.out" 2>&1 & pids+=($!)
setsid taskset -c "$PROXY_CPU" "$bin" -c "$dir/pm.hcl" >"$dir/pm.out" 2>&1 & pids+=($!)
for port in 19301 19302 19303; do
  for _ in $(seq 100); do [[ $(curl -fs "http://127.0.0.1:$port/" 2>/dev/null) == v0 ]] && continue 2; sleep 0.1; done
  echo "reload: nothing answers v0 on :$port; output:" >&2; tail -5 "$dir"/*.out "$dir"/*.err >&2 2>/dev/null; exit 1
done

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
# measure TITLE RUNS FIRST [reloadlat flags] NAME:PORT:SIGNAL:EXT... prints the table.
measure() {
  local title=$1 runs=$2 first=$3 side name port sig ext out smed smax smin gmed gmax errs
  shift 3
  local flags=()
  while [[ $1 == -* ]]; do flags+=("$1"); shift; done
  echo "## $title: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)); $(nginx -v 2>&1 | sed 's/.*: //'), HAProxy $(haproxy -v | awk 'NR==1 {print $3}'), $("$bin" -v 2>/dev/null | head -1) at $commit; one worker each, $runs runs"
  printf '%-16s %8s %8s %8s %10s %8s %7s\n' proxy serve-med max min gone-med max errors
  for side in "$@"; do
    IFS=: read -r name port sig ext <<<"$side"
    out=$(taskset -c "$LOAD_CPU" "$dir/reloadlat" -addr "127.0.0.1:$port" -pidfile "$dir/$name.pid" \
      -conf "$dir/$name.$ext" -template "$dir/$name.tmpl" -signal "$sig" -first "$first" -n "$runs" "${flags[@]}") ||
      { echo "reload: $name failed; output:" >&2; tail -5 "$dir"/*.out "$dir"/*.err >&2 2>/dev/null; exit 1; }
    # summary runs N serve-ms median A max B min C gone-ms median D max E min F errors G
    read -r _ _ _ _ _ smed _ smax _ smin _ _ gmed _ gmax _ _ _ errs <<<"$(grep '^summary' <<<"$out")"
    case $name in pm) name=pingora-master ;; nginxup) name=nginx ;; esac
    printf '%-16s %8s %8s %8s %10s %8s %7s\n' "$name" "$smed" "$smax" "$smin" "$gmed" "$gmax" "$errs"
    [[ -z ${VERBOSE:-} ]] || sed 's/^/  /' <<<"$out" | grep -v summary
  done
}
measure "reload, as a client sees it" "$RUNS" 0 nginx:19301:HUP:conf haproxy:19302:USR2:cfg pm:19303:HUP:hcl
echo "(ms from the signal; serve: a fresh connection gets the new config's answer; gone: the old worker has exited; errors: polls with no answer)"
((UPGRADE_RUNS > 0)) || exit 0
echo
# By its full path: the new master is executed from the old one's argv[0].
taskset -c "$PROXY_CPU" "$(command -v nginx)" -c "$dir/nginxup.conf" -p "$dir" >/dev/null 2>&1
for _ in $(seq 100); do [[ $(curl -fs http://127.0.0.1:19311/ 2>/dev/null) == v0 ]] && break; sleep 0.1; done
# pingora-master goes on from the version its reloads left it at.
measure "binary upgrade, as a client sees it (nginx: USR2, then QUIT to the old master once the new one has its worker)" \
  "$UPGRADE_RUNS" 0 -upgrade -quit-old nginxup:19311:USR2:conf
measure "binary upgrade, pingora-master: SIGUSR2" "$UPGRADE_RUNS" "$RUNS" -upgrade pm:19303:USR2:hcl | tail -n +3
echo "(gone: the old master and its workers have exited)"
