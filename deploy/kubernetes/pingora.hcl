# pingora-master in a container (the Docker image's default config and the
# Kubernetes ConfigMap in pingora.yaml, which must hold this text exactly:
# deploy/deploy_test.go checks it).
#
# Logs go to stderr and the access log to stdout, where the platform
# collects them. The master runs as root inside the container and starts its
# workers as pingora, a user of their own (the image's /etc/passwd has it).

pid_file = "/run/pingora/pingora.pid"
user     = "pingora"

# Match the pod's CPU limit: the default (one worker per CPU) counts the
# node's CPUs, not the container's share.
workers = 2

# terminationGracePeriodSeconds (45) > preStop sleep (5) + shutdown_timeout.
shutdown_timeout = "30s"

log {
  level  = "info"
  format = "json"
}

access_log {
  file = "/dev/stdout"
}

listener "http" {
  address = "0.0.0.0:8080"
}

# The application behind this proxy, by its Service name: kube-proxy spreads
# the connections over the Service's pods.
upstream "app" {
  server "app.default.svc.cluster.local:8080" {}
  balance         = "least_conn"
  connect_timeout = "2s"
  retries         = 2
}

# Readiness and liveness probes: answered by the workers themselves.
route "health" {
  path_prefix = "/healthz"
  respond {
    status = 200
    body   = "ok\n"
  }
}

route "app" {
  upstream         = "app"
  response_headers = { "X-Served-By" = "pingora-master" }
}
