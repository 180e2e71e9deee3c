# Every setting written out, none left to its default.
pid_file         = "run/pingora.pid"
lock_file        = "run/pingora.lock"
control_socket   = "run/ctl.sock"
user             = "www-data"
group            = "www-data"
workers          = 3
worker_threads   = 2
shutdown_timeout = "45s"
reload_timeout   = "20s"
upgrade_timeout  = "2m"
max_draining_generations = 2
rate_limit_zone_size     = "2m"
worker_heartbeat_timeout = "5s"
daemon           = true
env              = ["LANG", "GODEBUG=madvdontneed=1"]

log {
  file   = "log/error.log"
  level  = "debug"
  format = "json"
}
access_log {
  file           = "log/access.log"
  buffer_size    = "128k"
  flush_interval = "500ms"
}
limits {
  nofile = 1048576
  core   = "1g"
}
admin {
  address = "127.0.0.1:9000"
}
listener "public" {
  address               = "[::]:8443"
  client_header_timeout = "10s"
  client_body_timeout   = "20s"
  send_timeout          = "40s"
  keepalive_timeout     = "30s"
  keepalive_requests    = 500
  max_header_size       = "32k"
  max_body_size         = "10m"
  defer_accept          = true
  backlog               = 511
  reuseport             = true
  max_connections       = 4096
  request_buffering     = false
  client_body_buffer_size = "128k"
  request_timeout       = "15s"
  h2c                    = true
  max_concurrent_streams = 64
}
listener "internal" {
  address = "127.0.0.1:8444"
}
upstream "app" {
  balance                 = "hash"
  hash_key                = "header:X-User"
  connect_timeout         = "1s"
  response_header_timeout = "15s"
  read_timeout            = "25s"
  idle_timeout            = "90s"
  tunnel_timeout          = "10m"
  keepalive_conns         = 16
  retries                 = 1
  server "10.0.0.1:8080" {
    weight       = 3
    max_fails    = 5
    fail_timeout = "30s"
  }
  server "app-backup.internal:8080" { backup = true }
  health_check {
    path          = "/healthz"
    host          = "app.internal"
    interval      = "3s"
    timeout       = "1s"
    healthy       = 1
    unhealthy     = 2
    expect_status = [200, 204]
  }
}
route "api" {
  listeners               = ["public"]
  host                    = "*.Example.com"
  path_prefix             = "/api/"
  upstream                = "app"
  request_headers         = { "X-Env" = env("PINGORA_TEST_ENV", "prod") }
  remove_request_headers  = ["Cookie"]
  response_headers        = { "X-Served-By" = "pingora" }
  remove_response_headers = ["Server", "X-Powered-By"]
  max_body_size           = "0"
  request_buffering       = true
  rate_limit {
    requests = 10
    per      = "1m"
    burst    = 5
    key      = "header:X-Api-Key"
    store    = "redis://pingora:s3cret@cache.internal:6380/2"
  }
}
route "health" {
  listeners = ["internal"]
  respond {
    status = 204
  }
}
