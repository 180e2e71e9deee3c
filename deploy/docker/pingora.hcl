# pingora-master in a container: the Docker image's default config
# (deploy/docker/Dockerfile checks it with -t and installs it as
# /etc/pingora/pingora.hcl). Plain HTTP, so that the image runs as built;
# deploy/kubernetes/pingora.hcl adds an HTTPS listener whose certificate is
# mounted into the container.
#
# Logs go to stderr and the access log to stdout, where the platform
# collects them. The master runs as root inside the container and starts its
# workers as pingora, a user of their own (the image's /etc/passwd has it).

pid_file = "/run/pingora/pingora.pid"
user     = "pingora"

# Match the container's CPU limit: the default (one worker per CPU) counts
# the host's CPUs, not the container's share.
workers = 2

# docker stop --stop-timeout (45 in the Dockerfile's example) > shutdown_timeout.
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

# The application behind this proxy, by a name the container resolves.
upstream "app" {
  server "app:8080" {}
  balance         = "least_conn"
  connect_timeout = "2s"
  retries         = 2
}

# Health checks (the orchestrator's, a load balancer's): answered by the
# workers themselves.
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
