# The embedded default: no root and no backend needed. "public" proxies to
# "backend", a second listener of this same daemon that answers by itself.
# No pid_file: a master started as root keeps its PID file, lock and control
# socket in /run/pingora, any other user in /tmp (see config.Default).
workers  = 2
listener "public"  { address = "127.0.0.1:8080" }
listener "backend" { address = "127.0.0.1:8081" }
upstream "self" {
  server "127.0.0.1:8081" {}
}
route "proxied" {
  listeners        = ["public"]
  upstream         = "self"
  response_headers = { "X-Served-By" = "pingora-master" }
}
route "hello" {
  listeners = ["backend"]
  respond {
    status = 200
    body   = "Hello from pingora-master: this answer came through the proxy.\n"
  }
}
