# The example configuration of issue 2, as a user would write it.
pid_file         = "/run/pingora/pingora.pid"
user             = "pingora"      # workers run as this user/group when the master is root
group            = "pingora"
workers          = 4              # default: number of CPUs
shutdown_timeout = "30s"          # how long old workers may drain
daemon           = false          # -d sets it too

log {
  file   = "/var/log/pingora/error.log"   # absent: stderr
  level  = "info"                         # trace debug info warn error
  format = "text"                         # or "json"
}
access_log {
  file = "/var/log/pingora/access.log"    # block absent: no access log
}
limits {
  nofile = 65535
  core   = 0
}
listener "public" {
  address = "0.0.0.0:80"
}
upstream "app" {
  server "10.0.0.1:8080" {}
  server "10.0.0.2:8080" { weight = 2 }
  balance = "round_robin"                 # least_conn, random, hash
  health_check {
    path     = "/health"
    interval = "2s"
  }
}
route "api" {
  listeners        = ["public"]           # default: every listener
  host             = "api.example.com"    # exact or "*.example.com"; absent: any
  path_prefix      = "/api/"              # default "/"
  upstream         = "app"
  response_headers = { "X-Served-By" = "pingora" }
  rate_limit {
    requests = 100
    per      = "1s"
    burst    = 20
    key      = "client_ip"                # or "header:NAME"
  }
}
