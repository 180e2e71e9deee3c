# Shared by the benchmark scripts (pairs.sh, accept.sh, tls.sh):
# sourced, not run. It makes the run's directory and its clean-up, and
# starts the nginx backend every benchmark proxies to: one worker on
# LOAD_CPU at 127.0.0.1:19000, a 100-byte answer, keep-alive for 100,000
# requests (as ../shared/bench/peers.sh's).
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   bench_start_backend             # sets back=127.0.0.1:19000
#   ... setsid taskset ... & pids+=($!)   # everything started joins the clean-up
#   ticks SID                       # CPU clock ticks of session SID so far

dir=$(mktemp -d) pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

back=127.0.0.1:19000
bench_start_backend() {
  local body
  body=$(printf 'x%.0s' $(seq 1 100))
  cat >"$dir/backend.conf" <<C
worker_processes 1; daemon off; pid $dir/backend.pid; error_log $dir/backend.err;
events { worker_connections 4096; }
http { access_log off; server { listen $back backlog=4096; keepalive_requests 100000;
  location / { return 200 "$body"; } } }
C
  setsid taskset -c "$LOAD_CPU" nginx -c "$dir/backend.conf" -p "$dir" >/dev/null 2>&1 & pids+=($!)
}

ticks() { # CPU clock ticks of every process in session $1
  local t=0 p
  for p in $(ps -e -o sid=,pid= | awk -v s="$1" '$1==s {print $2}'); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
