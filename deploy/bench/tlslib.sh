# The TLS peers of tls.sh and h2.sh: sourced after lib.sh, not run. nginx,
# HAProxy and pingora-master with the same ECDSA P-256 certificate
# (config/testdata/tls/a.pem), each proxying to lib.sh's backend ($back) with
# keep-alive upstream connections; the scripts differ only in the listening
# side. Needs $root and $dir.
#
#   tls_files                              # cert.pem, key.pem, haproxy.pem in $dir
#   tls_nginx_conf FILE LISTEN...          # one server, a listen directive per argument
#   tls_haproxy_conf FILE BIND...          # one frontend, a bind line per argument
#   tls_project_conf FILE TLS_PORT [H2C_PORT]   # bench.hcl.tmpl, its listener with TLS;
#                                          # with H2C_PORT a second, cleartext h2c one

tls_files() {
  local certs=$root/config/testdata/tls
  install -m 0644 "$certs/a.pem" "$dir/cert.pem"
  install -m 0600 "$certs/a.key" "$dir/key.pem"
  cat "$dir/cert.pem" "$dir/key.pem" >"$dir/haproxy.pem"
}

tls_nginx_conf() {
  local file=$1 l listens=
  shift
  for l in "$@"; do listens+="listen $l; "; done
  cat >"$file" <<C
worker_processes 1; daemon off; pid $dir/nginx.pid; error_log $dir/nginx.err;
events { worker_connections 4096; }
http { access_log off; upstream b { server $back; keepalive 128; }
  server { $listens keepalive_requests 100000;
    ssl_certificate $dir/cert.pem; ssl_certificate_key $dir/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
C
}

tls_haproxy_conf() {
  local file=$1 b
  shift
  cat >"$file" <<C
global
  nbthread 1
  maxconn 8192
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
$(for b in "$@"; do echo "  bind $b"; done)
  default_backend b
backend b
  server s1 $back
C
}

tls_project_conf() {
  local file=$1 port=$2 h2c=${3:-}
  sed -e "s/{listen}/127.0.0.1:$port/g" -e "s/{backend}/$back/g" -e "s/{backend_port}/${back##*:}/g" \
    -e "s|/tmp/pingora-bench|$dir/pingora-bench|g" "$root/deploy/bench/bench.hcl.tmpl" |
    awk -v d="$dir" '
      { print }
      /^listener "bench" \{/ { print "  tls {\n    certificate {\n      cert_file = \"" d "/cert.pem\"\n      key_file  = \"" d "/key.pem\"\n    }\n  }" }
    ' >"$file"
  [[ -z $h2c ]] || cat >>"$file" <<C

listener "h2c" {
  address            = "127.0.0.1:$h2c"
  keepalive_timeout  = "75s"
  keepalive_requests = 100000
  h2c                = true
}
C
}
